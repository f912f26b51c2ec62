#!/usr/bin/python3
"""PyTorch's reference for bench/compress.sh: the SAME trained model as a mox run folder
(weights read from its model.safetensors, PyTorch state_dict names), in f32 and with
torch.quantization.quantize_dynamic (Linear layers, qint8), timed at batch 1 and batch 256 as
/work/shared/anchors/cpu/bench_int8.py times them, and its test accuracy on Fashion-MNIST.

usage: torch_quant.py --run DIR --arch mlp|cnn [--threads 2] [--json OUT]
Architectures (examples/mlp.toml, examples/cnn.toml):
  mlp  Flatten, Linear(784,128), ReLU, Dropout, Linear(128,10)
  cnn  Conv(1,32,3), ReLU, MaxPool2, Conv(32,64,3), ReLU, MaxPool2, Conv(64,64,3), ReLU,
       Flatten, Linear(576,64), ReLU, Linear(64,10)
(mox's trailing Softmax is left out here: it does not change the argmax)."""
import argparse, json, os, struct, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--run", required=True)
ap.add_argument("--arch", choices=["mlp", "cnn"], required=True)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--json")
ap.add_argument("--anchors", default=os.environ.get("ANCHORS", "/work/shared/anchors/cpu"))
a = ap.parse_args()
sys.path.insert(0, a.anchors)
import bench_mlp as bm  # the anchors' Fashion-MNIST loader and BLAS selection

bm.select_blas("system")  # Debian's libblas.so.3 alternative: OpenBLAS here (recorded as "blas")
import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(a.threads)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        b, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.float32).copy().reshape(v["shape"]))
    return out


if a.arch == "mlp":
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
else:
    m = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(576, 64),
                      nn.ReLU(), nn.Linear(64, 10))
sd = read_safetensors(os.path.join(a.run, "model.safetensors"))
missing = m.load_state_dict(sd, strict=True)
m.eval()
q = torch.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)
xtr, ytr, xte, yte = bm.load_fmnist(torch)  # images in [0, 1], [N, 1, 28, 28]
xte = xte.view(-1, 1, 28, 28)


def acc(net):
    with torch.no_grad():
        return (net(xte).argmax(1) == yte).float().mean().item()


def rate(net, bs, reps):
    x = xte[:bs]
    with torch.no_grad():
        for _ in range(20):
            net(x)
        best = 0
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                net(x)
            best = max(best, bs * reps / (time.perf_counter() - t))
    return best


reps1 = 2000 if a.arch == "mlp" else 500
reps256 = 200 if a.arch == "mlp" else 20
r = {"arch": a.arch, "blas": bm.blas_in_use(), "threads": a.threads, "engine": torch.backends.quantized.engine,
     "torch": torch.__version__,
     "f32": {"acc": acc(m), "img_s_b1": rate(m, 1, reps1), "img_s_b256": rate(m, 256, reps256)},
     "dynamic_int8": {"acc": acc(q), "img_s_b1": rate(q, 1, reps1), "img_s_b256": rate(q, 256, reps256)}}
print(json.dumps(r, indent=1))
if a.json:
    with open(a.json, "w") as f:
        json.dump(r, f, indent=1)
