#!/usr/bin/python3
"""Checks an ONNX file written by `mox export --format onnx` (src/mox/io/onnx_export.h).

    check_onnx.py MODEL.onnx [CASES.json]

1. onnx.checker.check_model(full_check=True) and strict shape inference;
2. with CASES.json ([{"inputs": {name: file.npy}, "outputs": {name: file.npy}}, ...], paths
   relative to the JSON file): runs the graph on each case's inputs and compares every output
   with the expected one (what mox computed): max |diff| <= 1e-4 * max(1, max |expected|).

Debian has no onnxruntime and ONNX 1.12 no onnx.reference, so the graph runs on the small
numpy interpreter below, which knows exactly the operators the exporter emits and fails
loudly on any other. Prints one JSON line (ir_version, opset, producer, ops, the inferred
output shapes, each case's max |diff|) and exits 0; on a failure prints "FAIL: ..." and
exits 1.
"""
import json
import math
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

TOLERANCE = 1e-4


class Fail(Exception):
    pass


def attrs_of(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


# ---------------------------------------------------------------------------------------------
# Operators: f(inputs, attrs) -> list of outputs. Float results keep the input's dtype.

def same_dtype(f):
    return lambda ins, at: [f(*ins, **at).astype(ins[0].dtype)]


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def gemm(ins, at):
    a, b = ins[0], ins[1]
    if at.get("transA", 0):
        a = a.T
    if at.get("transB", 0):
        b = b.T
    y = at.get("alpha", 1.0) * (a @ b)
    if len(ins) > 2 and ins[2] is not None:
        y = y + at.get("beta", 1.0) * ins[2]
    return [y.astype(ins[0].dtype)]


def pad_spatial(x, pads, value):
    n = x.ndim - 2
    widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + n]) for i in range(n)]
    return np.pad(x, widths, constant_values=value)


def window_count(size, k, s, pad_total, d, ceil_mode):
    span = size + pad_total - ((k - 1) * d + 1)
    return (-(-span // s) if ceil_mode else span // s) + 1


def conv(ins, at):
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    g = at.get("group", 1)
    sh, sw = at.get("strides", [1, 1])
    dh, dw = at.get("dilations", [1, 1])
    pads = at.get("pads", [0, 0, 0, 0])
    xp = pad_spatial(x, pads, 0.0)
    ho = window_count(h, kh, sh, pads[0] + pads[2], dh, False)
    wo = window_count(wd, kw, sw, pads[1] + pads[3], dw, False)
    y = np.zeros((n, o, ho, wo), dtype=np.float64)
    og = o // g
    for gi in range(g):
        xs = xp[:, gi * cg:(gi + 1) * cg]
        ws = w[gi * og:(gi + 1) * og].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
                y[:, gi * og:(gi + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return [y.astype(x.dtype)]


def pool(ins, at, kind):
    x = ins[0]
    kh, kw = at["kernel_shape"]
    sh, sw = at.get("strides", [1, 1])
    pads = at.get("pads", [0, 0, 0, 0])
    ceil_mode = at.get("ceil_mode", 0)
    n, c, h, w = x.shape
    ho = window_count(h, kh, sh, pads[0] + pads[2], 1, ceil_mode)
    wo = window_count(w, kw, sw, pads[1] + pads[3], 1, ceil_mode)
    # Pad generously (ceil_mode windows may run past the declared padding), remembering
    # which cells are real input and which are declared padding.
    extra_h = max(0, (ho - 1) * sh + kh - (h + pads[0] + pads[2]))
    extra_w = max(0, (wo - 1) * sw + kw - (w + pads[1] + pads[3]))
    full = [pads[0], pads[1], pads[2] + extra_h, pads[3] + extra_w]
    fill = -np.inf if kind == "max" else 0.0
    xp = pad_spatial(x.astype(np.float64), full, fill)
    real = pad_spatial(np.ones((1, 1, h, w)), full, 0.0)
    declared = pad_spatial(np.ones((1, 1, h + pads[0] + pads[2], w + pads[1] + pads[3])), [0, 0, extra_h, extra_w], 0.0)
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = (slice(None), slice(None), slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw))
            if kind == "max":
                y[:, :, i, j] = xp[win].max(axis=(2, 3))
            else:
                count = (declared if at.get("count_include_pad", 0) else real)[win].sum()
                y[:, :, i, j] = xp[win].sum(axis=(2, 3)) / count
    return [y.astype(x.dtype)]


def reshape(ins, at):
    x, shape = ins[0], [int(v) for v in ins[1]]
    shape = [x.shape[i] if v == 0 and not at.get("allowzero", 0) else v for i, v in enumerate(shape)]
    return [x.reshape(shape)]


def batch_norm(ins, at):
    x, scale, b, mean, var = ins
    eps = at.get("epsilon", 1e-5)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape) + b.reshape(shape)
    return [y.astype(x.dtype)]


def layer_norm(ins, at):
    x, scale = ins[0], ins[1]
    axis = at.get("axis", -1) % x.ndim
    axes = tuple(range(axis, x.ndim))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + at.get("epsilon", 1e-5)) * scale
    if len(ins) > 2 and ins[2] is not None:
        y = y + ins[2]
    return [y.astype(x.dtype)]


def slice_op(ins, at):
    x, starts, ends = ins[0], ins[1], ins[2]
    axes = ins[3] if len(ins) > 3 else range(len(starts))
    steps = ins[4] if len(ins) > 4 else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return [x[tuple(index)]]


def split(ins, at):
    x = ins[0]
    axis = at.get("axis", 0)
    sizes = list(ins[1]) if len(ins) > 1 else None
    if sizes is None:
        raise Fail("Split without explicit sizes is not used by the exporter")
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


erf = np.vectorize(math.erf, otypes=[np.float64])

OPS = {
    "Gemm": gemm,
    "MatMul": lambda ins, at: [np.matmul(ins[0], ins[1])],
    "Transpose": lambda ins, at: [np.transpose(ins[0], at.get("perm"))],
    "Add": lambda ins, at: [ins[0] + ins[1]],
    "Mul": lambda ins, at: [ins[0] * ins[1]],
    "Div": lambda ins, at: [ins[0] / ins[1]],
    "Pow": lambda ins, at: [np.power(ins[0], ins[1]).astype(ins[0].dtype)],
    "Erf": same_dtype(erf),
    "Tanh": same_dtype(np.tanh),
    "Relu": same_dtype(lambda x: np.maximum(x, 0)),
    "LeakyRelu": same_dtype(lambda x, alpha=0.01: np.where(x >= 0, x, alpha * x)),
    "Elu": same_dtype(lambda x, alpha=1.0: np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))),
    "Selu": same_dtype(lambda x, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875:
                       gamma * np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))),
    "Sigmoid": same_dtype(lambda x: 1 / (1 + np.exp(-x.astype(np.float64)))),
    "Softplus": same_dtype(lambda x: np.logaddexp(0, x.astype(np.float64))),
    "Softmax": same_dtype(lambda x, axis=-1: softmax(x.astype(np.float64), axis)),
    "LogSoftmax": same_dtype(lambda x, axis=-1: np.log(softmax(x.astype(np.float64), axis))),
    "Greater": lambda ins, at: [ins[0] > ins[1]],
    "Where": lambda ins, at: [np.where(ins[0], ins[1], ins[2])],
    "Identity": lambda ins, at: [ins[0]],
    "Conv": conv,
    "MaxPool": lambda ins, at: pool(ins, at, "max"),
    "AveragePool": lambda ins, at: pool(ins, at, "avg"),
    "Flatten": lambda ins, at: [ins[0].reshape(int(np.prod(ins[0].shape[:at.get("axis", 1)])), -1)],
    "Reshape": reshape,
    "BatchNormalization": batch_norm,
    "LayerNormalization": layer_norm,
    "Gather": lambda ins, at: [np.take(ins[0], ins[1], axis=at.get("axis", 0))],
    "ReduceMean": lambda ins, at: [np.mean(ins[0], axis=tuple(at["axes"]), keepdims=bool(at.get("keepdims", 1)))
                                   .astype(ins[0].dtype)],
    "Shape": lambda ins, at: [np.array(ins[0].shape[at.get("start", 0):at.get("end", ins[0].ndim)], dtype=np.int64)],
    "Slice": slice_op,
    "Concat": lambda ins, at: [np.concatenate(ins, axis=at["axis"])],
    "Split": split,
}


def run_graph(graph, feeds):
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    values.update(feeds)
    for node in graph.node:  # the checker has verified the nodes are in topological order
        ins = [values[name] if name else None for name in node.input]
        outs = OPS[node.op_type](ins, attrs_of(node))
        if len(outs) != len(node.output):
            raise Fail(f"{node.name}: {node.op_type} gave {len(outs)} outputs, the node names {len(node.output)}")
        for name, v in zip(node.output, outs):
            values[name] = np.asarray(v)
    return {o.name: values[o.name] for o in graph.output}


def dims(value_info):
    return [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None)
            for d in value_info.type.tensor_type.shape.dim]


def main(argv):
    if len(argv) not in (2, 3):
        raise Fail("usage: check_onnx.py MODEL.onnx [CASES.json]")
    model = onnx.load(argv[1])
    onnx.checker.check_model(model, full_check=True)
    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    unknown = sorted({n.op_type for n in model.graph.node if n.op_type not in OPS or n.domain not in ("", "ai.onnx")})
    if unknown:
        raise Fail("operators the checker's interpreter does not know: " + ", ".join(unknown))
    report = {
        "ir_version": model.ir_version,
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": [model.producer_name, model.producer_version],
        "ops": sorted({n.op_type for n in model.graph.node}),
        "inputs": {i.name: dims(i) for i in inferred.graph.input},
        "outputs": {o.name: dims(o) for o in inferred.graph.output},
        "metadata": {p.key: p.value for p in model.metadata_props},
        "cases": [],
    }
    if len(argv) == 3:
        base = os.path.dirname(os.path.abspath(argv[2]))
        with open(argv[2]) as f:
            cases = json.load(f)
        for k, case in enumerate(cases):
            feeds = {name: np.load(os.path.join(base, p)) for name, p in case["inputs"].items()}
            got = run_graph(model.graph, feeds)
            diffs = {}
            for name, p in case["outputs"].items():
                want = np.load(os.path.join(base, p))
                if name not in got:
                    raise Fail(f"case {k}: the graph has no output {name}")
                if got[name].shape != want.shape:
                    raise Fail(f"case {k}: {name} has shape {got[name].shape}, mox's has {want.shape}")
                diff = float(np.max(np.abs(got[name].astype(np.float64) - want))) if want.size else 0.0
                scale = max(1.0, float(np.max(np.abs(want))) if want.size else 0.0)
                if not diff <= TOLERANCE * scale:
                    raise Fail(f"case {k}: {name} differs from mox's by {diff:g} (scale {scale:g})")
                diffs[name] = diff
            report["cases"].append(diffs)
    print(json.dumps(report))


if __name__ == "__main__":
    try:
        main(sys.argv)
    except (Fail, onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        print("FAIL: " + str(e).strip().replace("\n", " "))
        sys.exit(1)
