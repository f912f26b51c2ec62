#!/usr/bin/python3
"""Writes the PyTorch reference fixtures for tests/optim (run with Debian's torch 1.13):

    /usr/bin/python3 tools/fixtures_optim.py [out_dir]   (default tests/fixtures/optim)

Files (safetensors, written here with struct + json, since torch 1.13 has no safetensors):
  grads.safetensors       initial parameters param.<i> and 100 gradients grad.<i> [100, ...]
                          per parameter; skip.2 [100] (u8) marks steps where parameter 2 has
                          no gradient (PyTorch then skips it: its step count does not advance)
  <config>.safetensors    final.<i> (f32 run) and final64.<i> (the same in f64) after 100
                          steps; the metadata holds the optimiser and its options, which the
                          C++ test reads to build the same optimiser
  schedulers.safetensors  learning rates per epoch and group for each schedule
  clip.safetensors        gradients before/after clip_grad_norm_ and the total norms
  io_reference.safetensors  one tensor of every dtype plus metadata, for tests/io to compare
                          its own writer with byte for byte
"""
import json
import math
import os
import sys

import torch

from fixture_io import save_safetensors

STEPS = 100
SHAPES = [(4, 5), (7,), (3, 2, 2)]


# ---------------- optimisers ----------------

CONFIGS = {
    "sgd_plain": dict(optimizer="SGD", lr=0.1),
    "sgd_momentum": dict(optimizer="SGD", lr=0.05, momentum=0.9, dampening=0.1),
    "sgd_nesterov": dict(optimizer="SGD", lr=0.05, momentum=0.9, nesterov=True),
    "sgd_weight_decay": dict(optimizer="SGD", lr=0.1, momentum=0.5, weight_decay=0.01,
                             group1_lr=0.02, group1_weight_decay=0.0),
    "adagrad": dict(optimizer="Adagrad", lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1,
                    eps=1e-10, weight_decay=0.01),
    "rmsprop": dict(optimizer="RMSprop", lr=0.01, alpha=0.9),
    "rmsprop_centered_momentum": dict(optimizer="RMSprop", lr=0.01, alpha=0.95, momentum=0.8,
                                      centered=True, weight_decay=0.001, eps=1e-6),
    "adam": dict(optimizer="Adam", lr=0.01, beta1=0.8, beta2=0.99, weight_decay=0.01),
    "adam_amsgrad": dict(optimizer="Adam", lr=0.01, amsgrad=True, halve_lr_at=50),
    "adamw": dict(optimizer="AdamW", lr=0.01, weight_decay=0.1, group1_weight_decay=0.0),
}


def make_optimizer(cfg, params):
    cfg = dict(cfg)
    name = cfg.pop("optimizer")
    cfg.pop("halve_lr_at", None)
    group1 = {k[len("group1_"):]: cfg.pop(k) for k in list(cfg) if k.startswith("group1_")}
    if "beta1" in cfg:
        cfg["betas"] = (cfg.pop("beta1"), cfg.pop("beta2"))
    groups = [{"params": params[:2]}, dict(params=params[2:], **group1)]
    # foreach=False: the single-tensor reference path the rules are documented from
    return getattr(torch.optim, name)(groups, foreach=False, **cfg)


def run_optimizer(cfg, init, grads, skip, dtype):
    params = [p.clone().to(dtype).requires_grad_(True) for p in init]
    opt = make_optimizer(cfg, params)
    for s in range(STEPS):
        if s == cfg.get("halve_lr_at", -1):
            for g in opt.param_groups:
                g["lr"] *= 0.5
        for i, p in enumerate(params):
            p.grad = None if (i == 2 and skip[s]) else grads[i][s].to(dtype).clone()
        opt.step()
    return [p.detach() for p in params]


def write_optimizers(out):
    gen = torch.Generator().manual_seed(1234)
    init = [torch.randn(s, generator=gen) for s in SHAPES]
    grads = [torch.randn((STEPS,) + s, generator=gen) * 0.5 for s in SHAPES]
    skip = torch.tensor([1 if s % 7 == 3 else 0 for s in range(STEPS)], dtype=torch.uint8)
    tensors = {}
    for i, p in enumerate(init):
        tensors[f"param.{i}"] = p
    for i, g in enumerate(grads):
        tensors[f"grad.{i}"] = g
    tensors["skip.2"] = skip
    save_safetensors(os.path.join(out, "grads.safetensors"), tensors)

    for name, cfg in CONFIGS.items():
        f32 = run_optimizer(cfg, init, grads, skip, torch.float32)
        f64 = run_optimizer(cfg, init, grads, skip, torch.float64)
        tensors = {f"final.{i}": p for i, p in enumerate(f32)}
        tensors.update({f"final64.{i}": p for i, p in enumerate(f64)})
        meta = {k: (str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, float)
                    else str(v)) for k, v in cfg.items()}
        save_safetensors(os.path.join(out, name + ".safetensors"), tensors, meta)


# ---------------- schedulers ----------------

def lr_table(make, epochs, step_fn=None):
    """lr of both groups at epochs 0..epochs-1 (epoch 0: right after construction)."""
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    opt = torch.optim.SGD([{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 0.02}],
                          lr=0.1)
    sched = make(opt)
    rows = []
    for e in range(epochs):
        rows.append([g["lr"] for g in opt.param_groups])
        opt.step()
        if step_fn:
            step_fn(sched, e)
        else:
            sched.step()
    return torch.tensor(rows, dtype=torch.float64)


def cosine_lambda(base, total, warmup, min_lr):
    def f(t):
        if t < warmup:
            return t / warmup
        progress = min(1.0, (t - warmup) / max(1, total - warmup))
        return (min_lr + (base - min_lr) * (1 + math.cos(math.pi * progress)) / 2) / base
    return f


PLATEAU_METRICS = [1.0, 0.9, 0.85, 0.86, 0.84, 0.86, 0.9, 0.7, 0.71, 0.72, 0.73, 0.69, 0.695,
                   0.69, 0.7, 0.7, 0.5, 0.51, 0.52, 0.53, 0.54, 0.55, 0.56, 0.57, 0.58, 0.59]


def write_schedulers(out):
    S = torch.optim.lr_scheduler
    t = {}
    t["step_lr"] = lr_table(lambda o: S.StepLR(o, step_size=3, gamma=0.5), 20)
    t["exponential_lr"] = lr_table(lambda o: S.ExponentialLR(o, gamma=0.9), 20)
    # CosineAnnealingLR's recursive form, compared up to T_max where the closed form agrees
    t["cosine"] = lr_table(lambda o: S.CosineAnnealingLR(o, T_max=30, eta_min=0.001), 31)
    t["cosine_warmup"] = lr_table(
        lambda o: S.LambdaLR(o, [cosine_lambda(0.1, 50, 10, 0.001),
                                 cosine_lambda(0.02, 50, 10, 0.001)]), 60)
    t["plateau_metrics"] = torch.tensor(PLATEAU_METRICS, dtype=torch.float64)
    m = PLATEAU_METRICS
    t["plateau_min_rel"] = lr_table(
        lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=2, threshold=0.05,
                                      threshold_mode="rel", cooldown=1, min_lr=0.01),
        len(m), lambda s, e: s.step(m[e]))
    t["plateau_max_abs"] = lr_table(
        lambda o: S.ReduceLROnPlateau(o, mode="max", factor=0.3, patience=1, threshold=0.01,
                                      threshold_mode="abs", cooldown=2, min_lr=0.001),
        len(m), lambda s, e: s.step(-m[e]))
    save_safetensors(os.path.join(out, "schedulers.safetensors"), t)


# ---------------- clipping ----------------

CLIP_CASES = [(2.0, 1.0), (1.0, 2.0), (math.inf, 0.5), (3.0, 0.7), (2.0, 100.0)]


def write_clip(out):
    gen = torch.Generator().manual_seed(99)
    grads = [torch.randn(s, generator=gen) for s in SHAPES]
    t = {f"grad.{i}": g for i, g in enumerate(grads)}
    norms = []
    for c, (norm_type, max_norm) in enumerate(CLIP_CASES):
        params = [torch.zeros(s, requires_grad=True) for s in SHAPES]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)))
        for i, p in enumerate(params):
            t[f"case{c}.clipped.{i}"] = p.grad
    t["norm_type"] = torch.tensor([n for n, _ in CLIP_CASES], dtype=torch.float64)
    t["max_norm"] = torch.tensor([m for _, m in CLIP_CASES], dtype=torch.float64)
    t["total_norm"] = torch.tensor(norms, dtype=torch.float64)
    save_safetensors(os.path.join(out, "clip.safetensors"), t)


# ---------------- safetensors reference file ----------------

def write_io_reference(out):
    """Values that the C++ test rebuilds exactly: element i of a [2, 3] tensor is
    (i - 3) * 0.75 for the float types (exact in bf16/f16), (i - 3) * 1000003 for i64 / i32,
    (i - 3) * 41 for i8 and i * 51 for u8; plus a 0-d f32 (2.5) and an empty [0, 4] f32."""
    i = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    t = {}
    for name, dt in [("f32", torch.float32), ("f64", torch.float64), ("bf16", torch.bfloat16),
                     ("f16", torch.float16)]:
        t[name] = ((i - 3) * 0.75).to(dt)
    t["i64"] = ((i - 3) * 1000003).to(torch.int64)
    t["i32"] = ((i - 3) * 1000003).to(torch.int32)
    t["i8"] = ((i - 3) * 41).to(torch.int8)
    t["u8"] = (i * 51).to(torch.uint8)
    t["scalar"] = torch.tensor(2.5, dtype=torch.float32)
    t["empty"] = torch.zeros((0, 4), dtype=torch.float32)
    save_safetensors(os.path.join(out, "io_reference.safetensors"), t,
                     {"format": "pt", "note": "caf\u00e9 \"quoted\""})


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "optim")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    write_optimizers(out)
    write_schedulers(out)
    write_clip(out)
    write_io_reference(out)


if __name__ == "__main__":
    main()
