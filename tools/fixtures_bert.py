#!/usr/bin/python3
"""Writes a PyTorch reference for mox's BERT (src/mox/nn/models/bert.h), read by
tests/nn/test_bert.cpp:

    /usr/bin/python3 tools/fixtures_bert.py [out_dir]   (default tests/fixtures/bert)

The reference is Hugging Face's BertForMaskedLM / BertForSequenceClassification written out
here in plain torch (torch 1.13 has neither transformers nor safetensors), with the same
parameter names: post-LayerNorm blocks, exact-erf GELU, an additive attention mask of
(1 - mask) * finfo.min as in HF's get_extended_attention_mask, the pooler tanh(dense(h[:, 0])),
and the MLM decoder tied to the word embeddings plus its own bias.

Config: vocab 23, hidden 16, 2 layers, 2 heads, intermediate 32, max positions 12, 2 token
types, layer_norm_eps 1e-12, no dropout; 3 labels for the classifier.

bert.safetensors holds:
  weight.<name>       every parameter (HF names: bert.embeddings.*, bert.encoder.layer.<i>.*,
                      bert.pooler.dense.*, cls.predictions.{transform.*, bias}, classifier.*),
                      drawn at a larger scale than BERT's N(0, 0.02) so that attention is far
                      from uniform and every LayerNorm weight/bias differs from 1/0
  input_ids           i64 [3, 7]
  token_type_ids      i64 [3, 7] (two segments per row)
  attention_mask      i64 [3, 7] (1 = token, 0 = padding; rows 1 and 2 end in padding)
  mlm_labels          i64 [3, 7] (original id at a few real positions, -100 elsewhere)
  mlm_logits          [3, 7, 23]   BertForMaskedLM logits
  sequence_output     [3, 7, 16]   the encoder's last hidden state
  pooled_output       [3, 16]      the pooler's output
  cls_logits          [3, 3]       BertForSequenceClassification logits
  mlm_loss            scalar       cross-entropy of mlm_logits vs mlm_labels (ignore -100)
  grad.<name>         d mlm_loss / d parameter for every BertForMaskedLM parameter (the tied
                      word embedding's gradient includes the decoder's share)
The references are computed in f64 from the f32 weights and inputs and rounded to f32.
"""
import json
import math
import os
import sys

import torch

from fixture_io import save_safetensors
import torch.nn as nn
import torch.nn.functional as F


CONFIG = dict(vocab_size=23, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=32, max_position_embeddings=12, type_vocab_size=2,
              layer_norm_eps=1e-12)
NUM_LABELS = 3


# ------------------------------------------------------------------ the reference BERT

class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], H)
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], H)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], H)
        self.LayerNorm = nn.LayerNorm(H, eps=c["layer_norm_eps"])

    def forward(self, ids, token_type_ids):
        pos = torch.arange(ids.shape[1])
        x = (self.word_embeddings(ids) + self.token_type_embeddings(token_type_ids) +
             self.position_embeddings(pos)[None])
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)

    def forward(self, x, additive_mask):
        B, T, C = x.shape
        nh, hd = self.heads, C // self.heads
        split = lambda t: t.view(B, T, nh, hd).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + additive_mask
        probs = torch.softmax(scores, dim=-1)
        return torch.matmul(probs, v).transpose(1, 2).reshape(B, T, C)


class DenseNorm(nn.Module):
    """HF's BertSelfOutput / BertOutput: LayerNorm(dense(h) + residual)."""

    def __init__(self, n_in, H, eps):
        super().__init__()
        self.dense = nn.Linear(n_in, H)
        self.LayerNorm = nn.LayerNorm(H, eps=eps)

    def forward(self, h, residual):
        return self.LayerNorm(self.dense(h) + residual)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = SelfAttention(c)
        self.output = DenseNorm(c["hidden_size"], c["hidden_size"], c["layer_norm_eps"])

    def forward(self, x, additive_mask):
        return self.output(self.self(x, additive_mask), x)


class Intermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])

    def forward(self, x):
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = DenseNorm(c["intermediate_size"], c["hidden_size"], c["layer_norm_eps"])

    def forward(self, x, additive_mask):
        a = self.attention(x, additive_mask)
        return self.output(self.intermediate(a), a)


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x, additive_mask):
        for layer in self.layer:
            x = layer(x, additive_mask)
        return x


class Pooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


class BertModel(nn.Module):
    def __init__(self, c, add_pooling_layer=True):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.pooler = Pooler(c) if add_pooling_layer else None

    def forward(self, ids, token_type_ids, attention_mask):
        dtype = self.embeddings.word_embeddings.weight.dtype
        m = attention_mask[:, None, None, :].to(dtype)
        additive = (1.0 - m) * torch.finfo(dtype).min
        seq = self.encoder(self.embeddings(ids, token_type_ids), additive)
        return seq, (self.pooler(seq) if self.pooler is not None else None)


class Transform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, h):
        return self.LayerNorm(F.gelu(self.dense(h)))


class Predictions(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = Transform(c)
        self.bias = nn.Parameter(torch.zeros(c["vocab_size"]))

    def forward(self, h, decoder_weight):
        return torch.matmul(self.transform(h), decoder_weight.t()) + self.bias


class Cls(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = Predictions(c)


class BertForMaskedLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c, add_pooling_layer=False)
        self.cls = Cls(c)

    def forward(self, ids, token_type_ids, attention_mask):
        seq, _ = self.bert(ids, token_type_ids, attention_mask)
        return self.cls.predictions(seq, self.bert.embeddings.word_embeddings.weight), seq


class BertForSequenceClassification(nn.Module):
    def __init__(self, c, num_labels):
        super().__init__()
        self.bert = BertModel(c)
        self.classifier = nn.Linear(c["hidden_size"], num_labels)

    def forward(self, ids, token_type_ids, attention_mask):
        _, pooled = self.bert(ids, token_type_ids, attention_mask)
        return self.classifier(pooled), pooled


# ------------------------------------------------------------------ the case

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "fixtures",
                                                                  "bert")
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(20261201)
    torch.manual_seed(4321)

    clf = BertForSequenceClassification(CONFIG, NUM_LABELS)
    mlm = BertForMaskedLM(CONFIG)
    # Random weights at a scale where every part matters: embeddings N(0, 1), Linear weights
    # N(0, 0.3), biases N(0, 0.1), LayerNorm weight 1 + N(0, 0.1) and bias N(0, 0.1).
    with torch.no_grad():
        for name, p in clf.named_parameters():
            if name.endswith("embeddings.weight"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif "LayerNorm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".weight"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        mlm.bert.load_state_dict({k: v for k, v in clf.bert.state_dict().items()
                                  if not k.startswith("pooler.")})
        for name, p in mlm.cls.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".weight"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))

    B, T, V = 3, 7, CONFIG["vocab_size"]
    ids = torch.randint(1, V, (B, T), generator=g)
    attention_mask = torch.ones(B, T, dtype=torch.int64)
    attention_mask[1, 5:] = 0
    attention_mask[2, 3:] = 0
    ids[attention_mask == 0] = 0  # pad id
    token_type_ids = torch.zeros(B, T, dtype=torch.int64)
    token_type_ids[0, 4:] = 1
    token_type_ids[1, 3:5] = 1
    token_type_ids[2, 2:3] = 1
    labels = torch.full((B, T), -100, dtype=torch.int64)
    for b, t in [(0, 1), (0, 5), (1, 2), (1, 4), (2, 1)]:
        labels[b, t] = ids[b, t]

    weights = {}
    for k, v in mlm.state_dict().items():
        weights["weight." + k] = v.detach().clone()
    for k, v in clf.state_dict().items():
        if k.startswith("bert.pooler.") or k.startswith("classifier."):
            weights["weight." + k] = v.detach().clone()

    mlm64, clf64 = mlm.double(), clf.double()
    logits, seq = mlm64(ids, token_type_ids, attention_mask)
    loss = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
    loss.backward()
    with torch.no_grad():
        cls_logits, pooled = clf64(ids, token_type_ids, attention_mask)

    tensors = {k: v.float() for k, v in weights.items()}
    tensors["input_ids"] = ids
    tensors["token_type_ids"] = token_type_ids
    tensors["attention_mask"] = attention_mask
    tensors["mlm_labels"] = labels
    tensors["mlm_logits"] = logits.detach().float()
    tensors["sequence_output"] = seq.detach().float()
    tensors["pooled_output"] = pooled.float()
    tensors["cls_logits"] = cls_logits.float()
    tensors["mlm_loss"] = loss.detach().float()
    for k, p in mlm64.named_parameters():
        tensors["grad." + k] = p.grad.float()

    path = os.path.join(out_dir, "bert.safetensors")
    save_safetensors(path, tensors, {"model": "bert", "torch": torch.__version__,
                                     "config": json.dumps(CONFIG), "num_labels": str(NUM_LABELS)})
    size = os.path.getsize(path)
    print("wrote %s (%d tensors, %.1f KB, mlm loss %.6f)" % (
        os.path.relpath(path), len(tensors), size / 1024, loss.item()))
    assert size < 300 * 1024, "bert fixtures must stay under 300 KB"


if __name__ == "__main__":
    main()
