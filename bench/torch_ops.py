#!/usr/bin/python3
"""PyTorch's side of the side-by-side benchmark (bench/run.sh runs bench_ops on the same cases).

    /usr/bin/python3 bench/torch_ops.py [--threads T] [--blas] [CASE...]

Prints "<case>\ttorch\t<seconds per iteration>" per case, timed as bench/timing.h times mox
(warm-up >= 0.2 s, samples of >= 5 ms, median of 31). With --blas it prints only the BLAS
library torch loaded.

torch must use the same BLAS as mox (OpenBLAS with OpenMP) for the comparison to mean
anything. Debian's torch links libblas.so.3, which the alternatives system may point at the
reference BLAS; if /proc/self/maps shows that, the script re-executes itself with
LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp (the dynamic loader reads that
variable only at start-up, hence the re-exec).
"""
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def loaded_blas():
    """Paths of the BLAS libraries mapped into this process."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if "blas" in name:
                libs.add(os.path.realpath(path))
    return sorted(libs)


def ensure_openblas():
    libs = loaded_blas()
    if any("openblas" in p for p in libs):
        return libs
    if os.environ.get("MOX_BENCH_REEXEC"):
        sys.exit("torch_ops: still no OpenBLAS after re-exec with LD_LIBRARY_PATH=%s: %s"
                 % (OPENBLAS_DIR, libs))
    env = dict(os.environ, MOX_BENCH_REEXEC="1",
               LD_LIBRARY_PATH=OPENBLAS_DIR + ":" + os.environ.get("LD_LIBRARY_PATH", ""))
    print("torch_ops: torch loaded %s; re-executing with OpenBLAS" % libs, file=sys.stderr)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def median_seconds(f, warmup_s=0.2, sample_s=0.005, samples=31):
    t0 = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - t0 < warmup_s:
        f()
        calls += 1
    per_call = (time.perf_counter() - t0) / calls
    reps = max(1, int(sample_s / per_call))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(reps):
            f()
        times.append((time.perf_counter() - start) / reps)
    return sorted(times)[samples // 2]


def bench_sgemm(n):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    return median_seconds(lambda: torch.matmul(a, b))


def bench_mlp_step():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return median_seconds(step)


def bench_conv():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 32, 14, 14, generator=g).requires_grad_(True)
    w = (torch.randn(64, 32, 3, 3, generator=g) * 0.05).requires_grad_(True)
    b = torch.randn(64, generator=g).requires_grad_(True)
    gy = torch.randn(64, 64, 14, 14, generator=g)

    def step():
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b, padding=1).backward(gy)
    return median_seconds(step)


def bench_softmax():
    x = torch.randn(64, 4096, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        return median_seconds(lambda: torch.softmax(x, -1))


def bench_layer_norm():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 4096, generator=g)
    w, b = torch.randn(4096, generator=g), torch.randn(4096, generator=g)
    with torch.no_grad():
        return median_seconds(lambda: F.layer_norm(x, (4096,), w, b, 1e-5))


def bench_lstm():
    torch.manual_seed(6)
    lstm = torch.nn.LSTM(32, 64, batch_first=True)
    x = torch.randn(64, 50, 32, generator=torch.Generator().manual_seed(6))

    def step():
        lstm.zero_grad()
        lstm(x)[0].sum().backward()
    return median_seconds(step)


def bench_attention():
    # torch 1.13 has no fused attention: the explicit softmax(q k^T / sqrt(d) + mask) v,
    # forward and sum(output).backward(), q, k, v [32, 4, 128, 32] causal.
    g = torch.Generator().manual_seed(7)
    B, H, T, D = 32, 4, 128, 32
    q, k, v = (torch.randn(B, H, T, D, generator=g).requires_grad_() for _ in range(3))
    mask = torch.full((T, T), float("-inf")).triu(1)
    scale = 1.0 / math.sqrt(D)

    def step():
        for t in (q, k, v):
            t.grad = None
        o = torch.softmax(q @ k.transpose(-2, -1) * scale + mask, -1) @ v
        o.sum().backward()
    return median_seconds(step)


CASES = {
    "sgemm_256": lambda: bench_sgemm(256),
    "sgemm_512": lambda: bench_sgemm(512),
    "sgemm_1024": lambda: bench_sgemm(1024),
    "sgemm_2048": lambda: bench_sgemm(2048),
    "mlp_step": bench_mlp_step,
    "conv2d_fwd_bwd": bench_conv,
    "softmax": bench_softmax,
    "layer_norm": bench_layer_norm,
    "lstm_fwd_bwd": bench_lstm,
    "attention_fwd_bwd": bench_attention,
    "attention_naive_fwd_bwd": bench_attention,
}


def main():
    args = sys.argv[1:]
    threads = int(os.environ.get("MOX_NUM_THREADS", "2"))
    names, show_blas = [], False
    i = 0
    while i < len(args):
        if args[i] == "--threads":
            threads = int(args[i + 1])
            i += 1
        elif args[i] == "--blas":
            show_blas = True
        elif args[i].startswith("-"):
            sys.exit("torch_ops: unknown option " + args[i])
        else:
            names.append(args[i])
        i += 1
    libs = ensure_openblas()
    if show_blas:
        print(" ".join(libs))
        return
    torch.set_num_threads(threads)
    for n in names or CASES:
        if n not in CASES:
            sys.exit("torch_ops: unknown case %s (known: %s)" % (n, ", ".join(CASES)))
        print("%s\ttorch\t%.9g" % (n, CASES[n]()), flush=True)


if __name__ == "__main__":
    main()
