#!/usr/bin/python3
"""Writes a tiny Hugging Face GPT-2 checkpoint and its reference outputs, read by
tests/nn/test_gpt_io.cpp and tests/cli/export_cli_test.cpp:

    /usr/bin/python3 tools/fixtures_gpt2.py [out_dir]   (default tests/fixtures/gpt2)

The model is GPT-2 as transformers' GPT2LMHeadModel computes it, written out here (torch 1.13
has no `transformers`): token + position embeddings, pre-LayerNorm blocks whose projections
are Conv1D layers (y = x @ W + b with W stored [in, out]), causal attention scaled by
1/sqrt(head_dim), the "gelu_new" (tanh) MLP, a final LayerNorm and an lm_head tied to wte.
Size: vocab 50, n_positions 16, n_embd 32, n_layer 2, n_head 4; weights N(0, 0.2) (biases and
LayerNorm parameters too, so that every tensor matters and the logits are far from flat).

Files:
  config.json         the model's config.json as GPT2Config.to_json_file writes it
  model.safetensors   the state dict as GPT2LMHeadModel.save_pretrained writes it with
                      safetensors: "transformer."-prefixed names, Conv1D weights [in, out], the
                      causal-mask buffer transformer.h.<i>.attn.bias (u8 [1, 1, 16, 16], as
                      transformers 4.2x stored it) and no lm_head.weight (tied)
  reference.safetensors
      input_ids   i64 [2, 10]
      logits      f32 [2, 10, 50]  the model's logits for input_ids
      prompt      i64 [1, 4]
      greedy      i64 [1, 8]       8 tokens appended to prompt by greedy decoding, each step a
                                   full forward over prompt + tokens so far, argmax of the last
                                   position's logits
The weights are drawn in f32; the references are computed in f64 from those f32 values and
rounded to f32 at the end. The script checks that every greedy step's best logit leads the
runner-up by a clear margin, so that f32 rounding cannot flip a choice.
"""
import json
import math
import os
import sys

import torch

from fixture_io import save_safetensors


VOCAB, N_POS, N_EMBD, N_LAYER, N_HEAD = 50, 16, 32, 2, 4
STD = 0.2
LN_EPS = 1e-5


def hf_state_dict(gen):
    """Random weights with the names, order and layouts of GPT2LMHeadModel.state_dict()."""
    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * STD

    C = N_EMBD
    sd = {"transformer.wte.weight": rnd(VOCAB, C), "transformer.wpe.weight": rnd(N_POS, C)}
    for i in range(N_LAYER):
        p = "transformer.h.%d." % i
        sd[p + "ln_1.weight"] = 1 + rnd(C)
        sd[p + "ln_1.bias"] = rnd(C)
        # The causal-mask buffer HF registered (persistently, before 4.3x) in every block.
        sd[p + "attn.bias"] = torch.tril(torch.ones(N_POS, N_POS, dtype=torch.uint8)).view(1, 1, N_POS, N_POS)
        sd[p + "attn.c_attn.weight"] = rnd(C, 3 * C)  # Conv1D: [in, out]
        sd[p + "attn.c_attn.bias"] = rnd(3 * C)
        sd[p + "attn.c_proj.weight"] = rnd(C, C)
        sd[p + "attn.c_proj.bias"] = rnd(C)
        sd[p + "ln_2.weight"] = 1 + rnd(C)
        sd[p + "ln_2.bias"] = rnd(C)
        sd[p + "mlp.c_fc.weight"] = rnd(C, 4 * C)
        sd[p + "mlp.c_fc.bias"] = rnd(4 * C)
        sd[p + "mlp.c_proj.weight"] = rnd(4 * C, C)
        sd[p + "mlp.c_proj.bias"] = rnd(C)
    sd["transformer.ln_f.weight"] = 1 + rnd(C)
    sd["transformer.ln_f.bias"] = rnd(C)
    return sd


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def conv1d(x, sd, name):
    """transformers' Conv1D: x @ weight + bias, weight [in, out]."""
    return x @ sd[name + ".weight"] + sd[name + ".bias"]


def layer_norm(x, sd, name):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], LN_EPS)


def forward(sd, ids):
    """GPT2LMHeadModel(input_ids).logits, in the dtype of sd's float tensors."""
    B, T = ids.shape
    C, H = N_EMBD, N_HEAD
    D = C // H
    x = sd["transformer.wte.weight"][ids] + sd["transformer.wpe.weight"][torch.arange(T)]
    for i in range(N_LAYER):
        p = "transformer.h.%d." % i
        a = conv1d(layer_norm(x, sd, p + "ln_1"), sd, p + "attn.c_attn")
        q, k, v = a.split(C, dim=2)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        w = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        mask = sd[p + "attn.bias"][:, :, :T, :T].bool()
        w = torch.where(mask, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        y = torch.softmax(w, dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + conv1d(y, sd, p + "attn.c_proj")
        h = gelu_new(conv1d(layer_norm(x, sd, p + "ln_2"), sd, p + "mlp.c_fc"))
        x = x + conv1d(h, sd, p + "mlp.c_proj")
    x = layer_norm(x, sd, "transformer.ln_f")
    return x @ sd["transformer.wte.weight"].t()  # tied lm_head


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gpt2")
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(2019)
    sd = hf_state_dict(gen)
    sd64 = {k: (v.double() if v.is_floating_point() else v) for k, v in sd.items()}

    input_ids = torch.randint(0, VOCAB, (2, 10), generator=gen)
    logits = forward(sd64, input_ids)

    prompt = torch.randint(0, VOCAB, (1, 4), generator=gen)
    seq = prompt.clone()
    min_margin = float("inf")
    for _ in range(8):
        last = forward(sd64, seq)[0, -1]
        top = torch.topk(last, 2).values
        min_margin = min(min_margin, float(top[0] - top[1]))
        seq = torch.cat([seq, last.argmax().view(1, 1)], dim=1)
    assert min_margin > 1e-2, "greedy step too close to a tie: %g" % min_margin
    greedy = seq[:, prompt.shape[1]:]

    config = {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": VOCAB - 1,
        "embd_pdrop": 0.1,
        "eos_token_id": VOCAB - 1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": LN_EPS,
        "model_type": "gpt2",
        "n_ctx": N_POS,
        "n_embd": N_EMBD,
        "n_head": N_HEAD,
        "n_inner": None,
        "n_layer": N_LAYER,
        "n_positions": N_POS,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": "float32",
        "transformers_version": "4.26.1",
        "use_cache": True,
        "vocab_size": VOCAB,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    save_safetensors(os.path.join(out, "model.safetensors"), sd, {"format": "pt"})
    save_safetensors(os.path.join(out, "reference.safetensors"),
                     {"input_ids": input_ids, "logits": logits.float(), "prompt": prompt, "greedy": greedy},
                     {"torch": torch.__version__, "min_greedy_margin": "%.4f" % min_margin})
    print("wrote %s (greedy %s, min margin %.4f, logits std %.3f)"
          % (out, greedy.tolist(), min_margin, float(logits.std())))


if __name__ == "__main__":
    main()
