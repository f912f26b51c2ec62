#!/usr/bin/python3
"""Writes PyTorch reference results for mox's NN, indexing and loss ops.

Run with Debian's torch:  /usr/bin/python3 tools/fixtures_ops.py
Outputs tests/fixtures/ops/{nn,index,losses}.json, read by tests/ops/test_*_ops.cpp and
tests/ops/test_losses.cpp. Each case stores its inputs, parameters, an upstream gradient
`gy`, the forward output and the gradients of every float input (all f32, flattened).
Inputs are rounded to 4 decimals so that the JSON stays small and exact.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "ops")


def rnd(*shape, lo=-1.0, hi=1.0):
    return (torch.rand(tuple(shape)) * (hi - lo) + lo).round(decimals=4)


def enc(t):
    t = t.detach()
    kind = "f32" if t.is_floating_point() else "i64"
    vals = t.flatten().tolist()
    if kind == "f32":
        vals = [float("%.8g" % v) for v in vals]
    return {"shape": list(t.shape), "dtype": kind, "data": vals}


def case(name, op, params, inputs, fn, extra=None, fixed=("pos_weight",)):
    """Runs fn(**inputs) -> output (or (output, extras)); backprops a random gy.
    Inputs named in `fixed` get no gradient."""
    leaves = {}
    for k, v in inputs.items():
        if v is not None and v.is_floating_point() and k not in fixed:
            v = v.clone().requires_grad_(True)
        leaves[k] = v
    res = fn(**leaves)
    extras = {}
    if isinstance(res, tuple):
        res, extras = res
    gy = rnd(*res.shape, lo=0.5, hi=1.5)
    grads = {}
    if res.requires_grad:
        res.backward(gy)
        for k, v in leaves.items():
            if v is not None and v.is_floating_point() and v.grad is not None:
                grads[k] = enc(v.grad)
    c = {
        "name": name,
        "op": op,
        "params": params,
        "inputs": {k: enc(v) for k, v in inputs.items() if v is not None},
        "gy": enc(gy),
        "output": enc(res),
        "grads": grads,
    }
    for k, v in extras.items():
        c[k] = enc(v)
    if extra:
        c.update(extra)
    return c


def nn_cases():
    cs = []
    p = dict(stride=[2, 1], padding=[1, 2], dilation=[1, 2], groups=2)
    cs.append(case("conv2d_grouped", "conv2d", p,
                   dict(x=rnd(2, 4, 7, 6), w=rnd(6, 2, 3, 3), b=rnd(6)),
                   lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2),
                                            dilation=(1, 2), groups=2)))
    p = dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1)
    cs.append(case("conv2d_pointwise", "conv2d", p, dict(x=rnd(2, 3, 5, 4), w=rnd(4, 3, 1, 1)),
                   lambda x, w: F.conv2d(x, w)))
    p = dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1)
    cs.append(case("conv2d_3x3", "conv2d", p,
                   dict(x=rnd(3, 5, 6, 6), w=rnd(8, 5, 3, 3), b=rnd(8)),
                   lambda x, w, b: F.conv2d(x, w, b, padding=1)))

    p = dict(stride=[1, 1], padding=[1, 2], dilation=[1, 1], groups=1)
    cs.append(case("conv2d_3x3_winograd", "conv2d", p,  # >= 8 channels: mox's Winograd path
                   dict(x=rnd(4, 8, 7, 5), w=rnd(8, 8, 3, 3), b=rnd(8)),
                   lambda x, w, b: F.conv2d(x, w, b, padding=(1, 2))))

    def maxpool(x):
        y, i = F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
        return y, {"indices": i}
    cs.append(case("max_pool2d_ceil", "max_pool2d",
                   dict(kernel=[3, 3], stride=[2, 2], padding=[1, 1], ceil_mode=True),
                   dict(x=rnd(2, 3, 8, 7)), maxpool))
    cs.append(case("max_pool2d_plain", "max_pool2d",
                   dict(kernel=[2, 2], stride=[2, 2], padding=[0, 0], ceil_mode=False),
                   dict(x=rnd(1, 2, 6, 6)),
                   lambda x: (lambda r: (r[0], {"indices": r[1]}))(
                       F.max_pool2d(x, 2, 2, return_indices=True))))
    for cip in (True, False):
        cs.append(case("avg_pool2d_ceil_cip%d" % cip, "avg_pool2d",
                       dict(kernel=[3, 2], stride=[2, 2], padding=[1, 1], ceil_mode=True,
                            count_include_pad=cip),
                       dict(x=rnd(2, 2, 7, 6)),
                       lambda x, cip=cip: F.avg_pool2d(x, (3, 2), 2, 1, ceil_mode=True,
                                                       count_include_pad=cip)))
    cs.append(case("softmax_dim1", "softmax", dict(dim=1, log=False), dict(x=rnd(3, 5, 4, lo=-4, hi=4)),
                   lambda x: torch.softmax(x, 1)))
    cs.append(case("log_softmax_last", "softmax", dict(dim=-1, log=True), dict(x=rnd(4, 7, lo=-4, hi=4)),
                   lambda x: torch.log_softmax(x, -1)))
    cs.append(case("layer_norm_2d", "layer_norm", dict(normalized_shape=[4, 5], eps=1e-5),
                   dict(x=rnd(3, 4, 5, lo=-2, hi=3), w=rnd(4, 5), b=rnd(4, 5)),
                   lambda x, w, b: F.layer_norm(x, (4, 5), w, b, 1e-5)))
    cs.append(case("layer_norm_plain", "layer_norm", dict(normalized_shape=[6], eps=1e-3),
                   dict(x=rnd(5, 6)), lambda x: F.layer_norm(x, (6,), None, None, 1e-3)))

    rm0, rv0 = rnd(3), rnd(3, lo=0.5, hi=1.5)

    def bn_train(x, w, b):
        rm, rv = rm0.clone(), rv0.clone()
        y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
        return y, {"running_mean_after": rm, "running_var_after": rv}
    cs.append(case("batch_norm_train", "batch_norm", dict(training=True, momentum=0.1, eps=1e-5),
                   dict(x=rnd(4, 3, 3, 2, lo=-2, hi=2), w=rnd(3), b=rnd(3)), bn_train,
                   extra={"running_mean": enc(rm0), "running_var": enc(rv0)}))

    def bn_eval(x, w, b):
        return F.batch_norm(x, rm0, rv0, w, b, training=False, eps=1e-5)
    cs.append(case("batch_norm_eval", "batch_norm", dict(training=False, momentum=0.1, eps=1e-5),
                   dict(x=rnd(4, 3, 5), w=rnd(3), b=rnd(3)), bn_eval,
                   extra={"running_mean": enc(rm0), "running_var": enc(rv0)}))
    return cs


def index_cases():
    cs = []
    idx = torch.tensor([2, 0, 2, 3])
    cs.append(case("index_select_dim1", "index_select", dict(dim=1),
                   dict(x=rnd(3, 4, 2), index=idx), lambda x, index: x.index_select(1, index)))
    gidx = torch.randint(0, 5, (3, 4, 2))
    cs.append(case("gather_dim1", "gather", dict(dim=1), dict(x=rnd(3, 5, 2), index=gidx),
                   lambda x, index: x.gather(1, index)))
    sidx = torch.randint(0, 4, (3, 3))
    cs.append(case("scatter_add_dim0", "scatter_add", dict(dim=0),
                   dict(x=rnd(4, 3), index=sidx, src=rnd(3, 3)),
                   lambda x, index, src: x.scatter_add(0, index, src)))
    cs.append(case("index_add_dim0", "index_add", dict(dim=0),
                   dict(x=rnd(4, 3), index=torch.tensor([1, 3, 1, 1, 0]), src=rnd(5, 3)),
                   lambda x, index, src: x.index_add(0, index, src)))
    cs.append(case("embedding_padding", "embedding", dict(padding_idx=1),
                   dict(w=rnd(5, 3), index=torch.tensor([[0, 1, 4], [1, 3, 0]])),
                   lambda w, index: F.embedding(index, w, padding_idx=1)))
    cs.append(case("one_hot", "one_hot", dict(num_classes=5),
                   dict(index=torch.tensor([[0, 4], [2, 2]])),
                   lambda index: F.one_hot(index, 5).float()))
    return cs


def loss_cases():
    cs = []
    t = torch.tensor([1, 2, 6, 0, 2])
    cs.append(case("cross_entropy_smooth_ignore", "cross_entropy",
                   dict(label_smoothing=0.1, reduction="mean", ignore_index=2),
                   dict(x=rnd(5, 7, lo=-3, hi=3), target=t),
                   lambda x, target: F.cross_entropy(x, target, ignore_index=2,
                                                     label_smoothing=0.1)))
    cs.append(case("cross_entropy_spatial_sum", "cross_entropy",
                   dict(label_smoothing=0.0, reduction="sum", ignore_index=-100),
                   dict(x=rnd(2, 4, 3, 2, lo=-3, hi=3), target=torch.randint(0, 4, (2, 3, 2))),
                   lambda x, target: F.cross_entropy(x, target, reduction="sum")))
    cs.append(case("cross_entropy_none", "cross_entropy",
                   dict(label_smoothing=0.2, reduction="none", ignore_index=-100),
                   dict(x=rnd(4, 6, lo=-3, hi=3), target=torch.tensor([5, 0, 3, 3])),
                   lambda x, target: F.cross_entropy(x, target, reduction="none",
                                                     label_smoothing=0.2)))
    prob = torch.softmax(rnd(3, 5, lo=-2, hi=2), 1)
    cs.append(case("cross_entropy_probs", "cross_entropy",
                   dict(label_smoothing=0.1, reduction="mean", ignore_index=-100),
                   dict(x=rnd(3, 5, lo=-3, hi=3), target=prob),
                   lambda x, target: F.cross_entropy(x, target, label_smoothing=0.1)))
    cs.append(case("nll_loss_ignore", "nll_loss", dict(reduction="mean", ignore_index=0),
                   dict(x=torch.log_softmax(rnd(4, 5), 1), target=torch.tensor([0, 3, 1, 4])),
                   lambda x, target: F.nll_loss(x, target, ignore_index=0)))
    a, b = rnd(3, 4, lo=-2, hi=2), rnd(3, 4, lo=-2, hi=2)
    cs.append(case("mse_mean", "mse_loss", dict(reduction="mean"), dict(x=a, y=b),
                   lambda x, y: F.mse_loss(x, y)))
    cs.append(case("l1_sum", "l1_loss", dict(reduction="sum"), dict(x=a, y=b),
                   lambda x, y: F.l1_loss(x, y, reduction="sum")))
    cs.append(case("huber_none", "huber_loss", dict(reduction="none", delta=0.5), dict(x=a, y=b),
                   lambda x, y: F.huber_loss(x, y, reduction="none", delta=0.5)))
    p, y = rnd(3, 4, lo=0.05, hi=0.95), rnd(3, 4, lo=0, hi=1)
    cs.append(case("bce_mean", "binary_cross_entropy", dict(reduction="mean"), dict(x=p, y=y),
                   lambda x, y: F.binary_cross_entropy(x, y)))
    z = rnd(3, 4, lo=-4, hi=4)
    cs.append(case("bce_logits_posweight", "binary_cross_entropy_with_logits",
                   dict(reduction="sum"), dict(x=z, y=y, pos_weight=rnd(4, lo=0.5, hi=3)),
                   lambda x, y, pos_weight: F.binary_cross_entropy_with_logits(
                       x, y, reduction="sum", pos_weight=pos_weight)))
    cs.append(case("bce_logits_mean", "binary_cross_entropy_with_logits",
                   dict(reduction="mean"), dict(x=z, y=y),
                   lambda x, y: F.binary_cross_entropy_with_logits(x, y)))
    lp = torch.log_softmax(rnd(3, 5), 1)
    tp = torch.softmax(rnd(3, 5), 1)
    tp[0, 1] = 0.0
    cs.append(case("kl_div_batchmean", "kl_div", dict(reduction="batchmean", log_target=False),
                   dict(x=lp, y=tp), lambda x, y: F.kl_div(x, y, reduction="batchmean"),
                   fixed=("y",)))  # d/dtarget is -inf at the zero target
    cs.append(case("kl_div_log_target_sum", "kl_div", dict(reduction="sum", log_target=True),
                   dict(x=lp, y=torch.log_softmax(rnd(3, 5), 1)),
                   lambda x, y: F.kl_div(x, y, reduction="sum", log_target=True)))
    # Hinton et al.'s distillation loss as it is written in PyTorch training scripts.
    def distill(T, alpha):
        return lambda x, teacher, target: (
            alpha * T * T * F.kl_div(F.log_softmax(x / T, 1), F.softmax(teacher / T, 1), reduction="batchmean")
            + (1 - alpha) * F.cross_entropy(x, target))
    cs.append(case("distillation_T4", "distillation_loss", dict(temperature=4.0, alpha=0.7),
                   dict(x=rnd(6, 5, lo=-3, hi=3), teacher=rnd(6, 5, lo=-4, hi=4),
                        target=torch.tensor([0, 4, 2, 2, 1, 3])),
                   distill(4.0, 0.7), fixed=("teacher",)))
    cs.append(case("distillation_T1_alpha1", "distillation_loss", dict(temperature=1.0, alpha=1.0),
                   dict(x=rnd(3, 7, lo=-2, hi=2), teacher=rnd(3, 7, lo=-2, hi=2),
                        target=torch.tensor([6, 0, 1])),
                   distill(1.0, 1.0), fixed=("teacher",)))
    return cs


def quant_cases():
    """Fake quantisation (QAT's straight-through estimator): torch's per-tensor and
    per-channel affine fake-quant, values and input gradients."""
    cs = []
    x = rnd(4, 6, lo=-3, hi=3)
    x[0, 0], x[0, 1], x[1, 2] = 0.25, -0.75, 9.0  # ties (round half to even) and a clamped value
    cs.append(case("fake_quant_tensor_int8", "fake_quantize", dict(scale=0.5, zero_point=3, qmin=-128, qmax=127),
                   dict(x=x), lambda x: torch.fake_quantize_per_tensor_affine(x, 0.5, 3, -128, 127)))
    cs.append(case("fake_quant_tensor_uint8_narrow", "fake_quantize",
                   dict(scale=0.05, zero_point=10, qmin=0, qmax=50),
                   dict(x=rnd(3, 5, lo=-1, hi=3)),
                   lambda x: torch.fake_quantize_per_tensor_affine(x, 0.05, 10, 0, 50)))
    scale = torch.tensor([0.1, 0.02, 0.5], dtype=torch.float64)
    zp = torch.tensor([0, 2, -1], dtype=torch.int64)
    cs.append(case("fake_quant_channel_axis0", "fake_quantize_per_channel",
                   dict(axis=0, qmin=-8, qmax=7),
                   dict(x=rnd(3, 4, lo=-2, hi=2), scale=scale, zero_point=zp),
                   lambda x, scale, zero_point: torch.fake_quantize_per_channel_affine(
                       x, scale.float(), zero_point.int(), 0, -8, 7), fixed=("scale",)))
    return cs


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, cases in (("nn", nn_cases()), ("index", index_cases()), ("losses", loss_cases()),
                        ("quant", quant_cases())):
        path = os.path.join(OUT, name + ".json")
        with open(path, "w") as f:
            json.dump({"generator": "tools/fixtures_ops.py", "torch": torch.__version__,
                       "cases": cases}, f, separators=(",", ":"))
        print(path, os.path.getsize(path), "bytes,", len(cases), "cases")


if __name__ == "__main__":
    main()
