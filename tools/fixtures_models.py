#!/usr/bin/python3
"""Writes PyTorch reference results for whole models, read by tests/parity/:

    /usr/bin/python3 tools/fixtures_models.py [out_dir]   (default tests/fixtures/models)

One safetensors file per model (written with struct + json: torch 1.13 has no safetensors):
  mlp          Linear(784,128) ReLU Linear(128,10) on x [4, 784], cross-entropy
  cnn          Conv2d(1,4,3) ReLU MaxPool2d(2) Conv2d(4,8,3) Flatten Linear(72,5)
               on x [2, 1, 12, 12], cross-entropy
  lstm         LSTM(5, 7, batch_first) -> Linear(7, 3) on the last step, x [2, 4, 5], MSE
  transformer  two pre-norm blocks (LayerNorm, Linear q/k/v/o, causal attention written with
               matmul + softmax, GELU MLP, residuals) + final LayerNorm; d_model 16, 2 heads,
               x [2, 6, 16], MSE
Tensors in each file:
  weight.<name>  the initial parameters (PyTorch state_dict names), f32
  input          x (f32; i64 class ids nowhere: every model here takes floats)
  target         class ids (i64) for cross-entropy, values (f32) for MSE
  output         the model's output;  loss  the scalar loss ("mean" reduction)
  grad.<name>    d loss / d parameter;  grad_input  d loss / d x
Metadata: model, loss, torch version.

The weights and inputs are drawn in f32; the references are computed in f64 from those same
f32 values and rounded to f32 at the end, so that they carry no f32 rounding of their own.
"""
import json
import math
import os
import sys

import torch

from fixture_io import save_safetensors
import torch.nn as nn
import torch.nn.functional as F



# ------------------------------------------------------------------ models

class LSTMHead(nn.Module):
    """LSTM over the sequence, then a Linear on the output of the last time step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 7, batch_first=True)
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y[:, -1])


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        H, hd = self.heads, C // self.heads
        y = self.ln1(x)
        # [B, T, C] -> [B, H, T, hd]
        q = self.q(y).view(B, T, H, hd).transpose(1, 2)
        k = self.k(y).view(B, T, H, hd).transpose(1, 2)
        v = self.v(y).view(B, T, H, hd).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(hd)  # [B, H, T, T]
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        att = att.masked_fill(future, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, C)
        x = x + self.o(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Transformer(nn.Module):
    def __init__(self, d=16, heads=2, layers=2):
        super().__init__()
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x)


def randomize_norms(model, gen):
    """LayerNorm starts at weight 1, bias 0; random values test that they are applied."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


# ------------------------------------------------------------------ cases

def cases():
    g = torch.Generator().manual_seed(20240501)
    torch.manual_seed(1234)  # parameter initialisation

    mlp = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    yield ("mlp", mlp, torch.randn(4, 784, generator=g), torch.randint(0, 10, (4,), generator=g),
           "cross_entropy")

    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3),
                        nn.Flatten(), nn.Linear(72, 5))
    yield ("cnn", cnn, torch.randn(2, 1, 12, 12, generator=g),
           torch.randint(0, 5, (2,), generator=g), "cross_entropy")

    lstm = LSTMHead()
    yield ("lstm", lstm, torch.randn(2, 4, 5, generator=g), torch.randn(2, 3, generator=g), "mse")

    tf = Transformer()
    randomize_norms(tf, g)
    yield ("transformer", tf, torch.randn(2, 6, 16, generator=g),
           torch.randn(2, 6, 16, generator=g), "mse")


def reference(model, x, target, loss_name):
    """Forward + backward in f64 from the f32 weights and inputs."""
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    m64 = model.double()
    x64 = x.double().requires_grad_(True)
    out = m64(x64)
    if loss_name == "cross_entropy":
        loss = F.cross_entropy(out, target)
    else:
        loss = F.mse_loss(out, target.double())
    loss.backward()
    tensors = {}
    for k, v in weights.items():
        tensors["weight." + k] = v.float()
    tensors["input"] = x.float()
    tensors["target"] = target if target.dtype == torch.int64 else target.float()
    tensors["output"] = out.detach().float()
    tensors["loss"] = loss.detach().float()
    for k, p in m64.named_parameters():
        tensors["grad." + k] = p.grad.float()
    tensors["grad_input"] = x64.grad.float()
    return tensors


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "fixtures",
                                                                  "models")
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for name, model, x, target, loss_name in cases():
        tensors = reference(model, x, target, loss_name)
        path = os.path.join(out_dir, name + ".safetensors")
        save_safetensors(path, tensors, {"model": name, "loss": loss_name,
                                         "torch": torch.__version__})
        size = os.path.getsize(path)
        total += size
        print("wrote %s (%d tensors, %.1f KB, loss %.6f)" % (
            os.path.relpath(path), len(tensors), size / 1024, tensors["loss"].item()))
    print("total %.1f KB" % (total / 1024))
    assert total < 1024 * 1024, "model fixtures must stay under 1 MB"


if __name__ == "__main__":
    main()
