// Neural-network ops: conv2d, pooling, softmax / log-softmax, layer norm, batch norm and
// dropout. Each checks shapes, runs the backend's fused kernel on contiguous f32/f64 data
// (bf16/f16 go through f32) and records its backward.
#include <cmath>

#include "mox/autograd/node.h"
#include "mox/ops/autocast.h"
#include "mox/ops/half.h"
#include "mox/ops/ops.h"

namespace mox {

namespace {

using detail::is_half;
using detail::via_f32;

void check_floating(const Tensor& x, const char* op, const char* what) {
  MOX_CHECK(x.defined(), op, std::string(what) + " is undefined");
  if (!is_floating(x.dtype()))
    throw Error(op, std::string(what) + " must be a floating-point tensor, got " + x.desc());
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op, const char* what) {
  if (b.defined() && b.dtype() != a.dtype())
    throw Error(op, std::string(what) + " " + b.desc() + " must have the input's dtype (" +
                        a.desc() + ")");
}

// Data for a kernel call: no history, contiguous.
Tensor plain(const Tensor& t) { return t.defined() ? t.detach().contiguous() : t; }

Tensor to_f32(const Tensor& t) { return t.defined() ? t.to(DType::F32) : t; }

// PyTorch's pooling output size (dilation 1), including the ceil_mode rule that the last
// window must start inside the input or its left padding.
int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t pad, bool ceil_mode) {
  int64_t num = in + 2 * pad - (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil_mode && (out - 1) * s >= in + pad) out--;
  return out;
}

// Checks a pooling call and returns the output shape (input [N,C,H,W] or [C,H,W]).
Shape pool_shape(const Tensor& x, const Pool2dParams& p, const char* op, bool allow_u8 = false) {
  if (!(allow_u8 && x.dtype() == DType::U8)) check_floating(x, op, "input");
  if (x.dim() != 3 && x.dim() != 4)
    throw Error(op, "expected input [N, C, H, W] or [C, H, W], got " + x.desc());
  if (p.kh <= 0 || p.kw <= 0 || p.stride_h <= 0 || p.stride_w <= 0 || p.pad_h < 0 || p.pad_w < 0)
    throw Error(op, "kernel and stride must be positive and padding non-negative, got kernel " +
                        std::to_string(p.kh) + "x" + std::to_string(p.kw) + " stride " +
                        std::to_string(p.stride_h) + "x" + std::to_string(p.stride_w) +
                        " padding " + std::to_string(p.pad_h) + "x" + std::to_string(p.pad_w));
  if (p.pad_h > p.kh / 2 || p.pad_w > p.kw / 2)
    throw Error(op, "padding should be at most half of the kernel size, got padding " +
                        std::to_string(p.pad_h) + "x" + std::to_string(p.pad_w) + " for kernel " +
                        std::to_string(p.kh) + "x" + std::to_string(p.kw));
  int64_t H = x.size(-2), W = x.size(-1);
  int64_t Ho = pool_out_size(H, p.kh, p.stride_h, p.pad_h, p.ceil_mode);
  int64_t Wo = pool_out_size(W, p.kw, p.stride_w, p.pad_w, p.ceil_mode);
  if (Ho < 1 || Wo < 1)
    throw Error(op, "input " + x.desc() + " is too small for kernel " + std::to_string(p.kh) +
                        "x" + std::to_string(p.kw) + " (output would be " + std::to_string(Ho) +
                        "x" + std::to_string(Wo) + ")");
  Shape s = x.shape();
  s[s.size() - 2] = Ho;
  s[s.size() - 1] = Wo;
  return s;
}

// softmax / log_softmax over the last dim of a contiguous float tensor.
Tensor softmax_last(const Tensor& x, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  Tensor xc = plain(x);
  Tensor out = empty(x.shape(), TensorOptions(x.dtype(), x.device()));
  if (out.numel() > 0) backend_for(x).softmax(xc, out, log);
  if (any_requires_grad({&x})) {
    Tensor y = out.detach();
    record(out, name, {x}, [y, log](const Tensor& g) -> std::vector<Tensor> {
      Tensor gx = empty(y.shape(), TensorOptions(y.dtype(), y.device()));
      if (gx.numel() > 0) backend_for(y).softmax_backward(y, plain(g), gx, log);
      return {gx};
    });
  }
  return out;
}

Tensor softmax_any(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_floating(x, name, "input");
  if (via_f32(x)) return softmax_any(x.to(DType::F32), dim, log).to(x.dtype());
  if (x.dim() == 0) return softmax_any(x.reshape({1}), 0, log).reshape({});
  int64_t d = normalize_dim(dim, x.dim(), name);
  if (d == x.dim() - 1) return softmax_last(x, log);
  // Move dim last, run over rows, move it back; the result is made contiguous like PyTorch's.
  return softmax_last(x.transpose(d, -1).contiguous(), log).transpose(d, -1).contiguous();
}

}  // namespace

// x [N,C,H,W], w [O,C/groups,kh,kw], bias [O] -> [N,O,Ho,Wo]
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) {
  const char* op = "conv2d";
  check_floating(x, op, "input");
  check_floating(w, op, "weight");
  check_same_dtype(x, w, op, "weight");
  check_same_dtype(x, bias, op, "bias");
  if (x.dim() != 4) throw Error(op, "expected input [N, C, H, W], got " + x.desc());
  if (w.dim() != 4) throw Error(op, "expected weight [O, C/groups, kh, kw], got " + w.desc());
  if (p.groups < 1) throw Error(op, "groups must be >= 1, got " + std::to_string(p.groups));
  if (p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1 || p.pad_h < 0 || p.pad_w < 0)
    throw Error(op, "stride and dilation must be >= 1 and padding >= 0");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), kh = w.size(2), kw = w.size(3);
  if (C % p.groups != 0 || O % p.groups != 0)
    throw Error(op, "input channels " + std::to_string(C) + " and output channels " +
                        std::to_string(O) + " must both be divisible by groups " +
                        std::to_string(p.groups));
  if (w.size(1) != C / p.groups)
    throw Error(op, "weight " + w.desc() + " expects " + std::to_string(w.size(1) * p.groups) +
                        " input channels (groups " + std::to_string(p.groups) + "), but input " +
                        x.desc() + " has " + std::to_string(C));
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != O))
    throw Error(op, "bias must be [" + std::to_string(O) + "], got " + bias.desc());
  const int64_t ekh = p.dil_h * (kh - 1) + 1, ekw = p.dil_w * (kw - 1) + 1;
  if (ekh > H + 2 * p.pad_h || ekw > W + 2 * p.pad_w)
    throw Error(op, "kernel " + std::to_string(ekh) + "x" + std::to_string(ekw) +
                        " (after dilation) is larger than the padded input " +
                        std::to_string(H + 2 * p.pad_h) + "x" + std::to_string(W + 2 * p.pad_w) +
                        " of " + x.desc());
  if (is_half(x.dtype()))
    return conv2d(to_f32(x), to_f32(w), to_f32(bias), p).to(x.dtype());
  const int64_t Ho = (H + 2 * p.pad_h - ekh) / p.stride_h + 1;
  const int64_t Wo = (W + 2 * p.pad_w - ekw) / p.stride_w + 1;
  Tensor xc = plain(x), wc = plain(w), bc = plain(bias);
  Tensor out = empty({N, O, Ho, Wo}, TensorOptions(x.dtype(), x.device()));
  backend_for(x).conv2d(xc, wc, bc, out, p);
  if (any_requires_grad({&x, &w, &bias})) {
    bool nx = x.requires_grad(), nw = w.requires_grad(), nb = bias.defined() && bias.requires_grad();
    // with the fused ReLU, the gradient reaching the convolution is g where y > 0, else 0
    Tensor y = p.relu ? out.detach() : Tensor();
    record(out, p.relu ? "conv2d_relu" : op, {x, w, bias},
           [xc, wc, y, p, nx, nw, nb](const Tensor& g) -> std::vector<Tensor> {
      TensorOptions o(xc.dtype(), xc.device());
      Tensor gx = nx ? empty(xc.shape(), o) : Tensor();
      Tensor gw = nw ? empty(wc.shape(), o) : Tensor();
      Tensor gb = nb ? empty({wc.size(0)}, o) : Tensor();
      backend_for(xc).conv2d_backward(xc, wc, plain(g), gx, gw, gb, p, y);
      return {gx, gw, gb};
    });
  }
  return out;
}

Tensor conv2d_relu_maxpool2(const Tensor& x, const Tensor& w, const Tensor& bias,
                            const Conv2dParams& p) {
  Conv2dParams q = p;
  q.relu = true;
  Pool2dParams pool;  // 2x2, stride 2
  Backend& be = backend_for(x);
  const bool fused = x.defined() && w.defined() && !(x.requires_grad() && grad_enabled()) &&
                     x.dtype() == w.dtype() && (!bias.defined() || bias.dtype() == x.dtype()) &&
                     x.device() == w.device() && be.conv2d_relu_pool2_supported(x, w, q) &&
                     (!bias.defined() || (bias.dim() == 1 && bias.size(0) == w.size(0)));
  if (!fused) return max_pool2d(conv2d(x, w, bias, q), pool);
  const int64_t Ho = x.size(2) - w.size(2) + 1, Wo = x.size(3) - w.size(3) + 1;
  Shape os{x.size(0), w.size(0), Ho / 2, Wo / 2};
  Tensor wc = plain(w), bc = plain(bias);
  Tensor out = empty(os, TensorOptions(x.dtype(), x.device()));
  Tensor idx = empty(os, TensorOptions(DType::I32, x.device()));
  be.conv2d_relu_pool2(x.detach(), wc, bc, out, idx, q);
  if (any_requires_grad({&w, &bias})) {
    bool nw = w.requires_grad(), nb = bias.defined() && bias.requires_grad();
    Tensor xc = x.detach(), y = out.detach();
    record(out, "conv2d_relu_maxpool2", {x, w, bias},
           [xc, wc, y, idx, q, nw, nb](const Tensor& g) -> std::vector<Tensor> {
             TensorOptions o(xc.dtype(), xc.device());
             Tensor gw = nw ? empty(wc.shape(), o) : Tensor();
             Tensor gb = nb ? empty({wc.size(0)}, o) : Tensor();
             backend_for(xc).conv2d_relu_pool2_backward(xc, wc, y, idx, plain(g), gw, gb, q);
             return {Tensor(), gw, gb};
           });
  }
  return out;
}

ValuesIndices max_pool2d_with_indices(const Tensor& x, const Pool2dParams& p) {
  const char* op = "max_pool2d";
  Shape os = pool_shape(x, p, op);
  if (is_half(x.dtype())) {
    ValuesIndices r = max_pool2d_with_indices(x.to(DType::F32), p);
    return {r.values.to(x.dtype()), r.indices};
  }
  Tensor xc = plain(x);
  Tensor out = empty(os, TensorOptions(x.dtype(), x.device()));
  Tensor idx = empty(os, TensorOptions(DType::I64, x.device()));
  backend_for(x).max_pool2d(xc, out, idx, p);
  if (any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    record(out, op, {x}, [idx, in_shape](const Tensor& g) -> std::vector<Tensor> {
      Tensor gx = empty(in_shape, TensorOptions(g.dtype(), g.device()));
      backend_for(g).max_pool2d_backward(plain(g), idx, gx);
      return {gx};
    });
  }
  return {out, idx};
}

Tensor max_pool2d(const Tensor& x, const Pool2dParams& p) {
  if (any_requires_grad({&x})) return max_pool2d_with_indices(x, p).values;
  // u8 on the CPU: quantised activations (the max commutes with their monotone dequantisation).
  Shape os = pool_shape(x, p, "max_pool2d", x.device().is_cpu());
  if (is_half(x.dtype())) return max_pool2d(x.to(DType::F32), p).to(x.dtype());
  if (x.dtype() == DType::U8 && x.dim() == 4 && !x.is_contiguous()) {
    // A channels-last u8 tensor (a quantised convolution's output: strides
    // [H*W*C, 1, W*C, C]) is pooled as it lies, into a channels-last result.
    const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
    const int64_t cl[4] = {H * W * C, 1, W * C, C};
    bool is_cl = true;
    for (int d = 0; d < 4; d++) is_cl = is_cl && (x.size(d) == 1 || x.stride(d) == cl[d]);
    if (is_cl) {
      Tensor out = empty({os[0], os[2], os[3], os[1]}, TensorOptions(x.dtype(), x.device())).permute({0, 3, 1, 2});
      backend_for(x).max_pool2d(x.detach(), out, Tensor(), p);
      return out;
    }
  }
  Tensor out = empty(os, TensorOptions(x.dtype(), x.device()));
  backend_for(x).max_pool2d(plain(x), out, Tensor(), p);  // no indices needed without grad
  return out;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p) {
  const char* op = "avg_pool2d";
  Shape os = pool_shape(x, p, op);
  if (is_half(x.dtype())) return avg_pool2d(x.to(DType::F32), p).to(x.dtype());
  Tensor out = empty(os, TensorOptions(x.dtype(), x.device()));
  backend_for(x).avg_pool2d(plain(x), out, p);
  if (any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    record(out, op, {x}, [in_shape, p](const Tensor& g) -> std::vector<Tensor> {
      Tensor gx = empty(in_shape, TensorOptions(g.dtype(), g.device()));
      backend_for(g).avg_pool2d_backward(plain(g), gx, p);
      return {gx};
    });
  }
  return out;
}

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_any(detail::autocast_f32(x), dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_any(detail::autocast_f32(x), dim, true); }

// x [..., *normalized_shape], w and b [*normalized_shape] (optional)
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& w, const Tensor& b,
                  double eps) {
  const char* op = "layer_norm";
  if (autocast_enabled() && x.defined() && detail::is_half(x.dtype()))
    return layer_norm(detail::autocast_f32(x), normalized_shape, detail::autocast_f32(w),
                      detail::autocast_f32(b), eps);
  check_floating(x, op, "input");
  check_same_dtype(x, w, op, "weight");
  check_same_dtype(x, b, op, "bias");
  const int64_t k = int64_t(normalized_shape.size());
  bool ok = k >= 1 && k <= x.dim();
  for (int64_t i = 0; ok && i < k; i++) ok = x.size(x.dim() - k + i) == normalized_shape[i];
  if (!ok)
    throw Error(op, "normalized_shape " + shape_str(normalized_shape) +
                        " must match the trailing dims of input " + x.desc());
  for (const Tensor* t : {&w, &b})
    if (t->defined() && t->shape() != normalized_shape)
      throw Error(op, "weight and bias must have shape " + shape_str(normalized_shape) + ", got " +
                          t->desc());
  if (via_f32(x))
    return layer_norm(x.to(DType::F32), normalized_shape, to_f32(w), to_f32(b), eps).to(x.dtype());
  const int64_t n = shape_numel(normalized_shape);
  const int64_t rows = n == 0 ? 0 : x.numel() / n;
  TensorOptions o(x.dtype(), x.device());
  Tensor xc = plain(x).view({rows, n});
  Tensor wc = w.defined() ? plain(w).view({n}) : Tensor();
  Tensor bc = b.defined() ? plain(b).view({n}) : Tensor();
  Tensor out = empty({rows, n}, o);
  TensorOptions so(detail::stats_dtype(x.dtype()), x.device());
  Tensor mean = empty({rows}, so), rstd = empty({rows}, so);
  if (out.numel() > 0) backend_for(x).layer_norm(xc, wc, bc, eps, out, mean, rstd);
  out = out.view(x.shape());
  if (any_requires_grad({&x, &w, &b})) {
    bool nx = x.requires_grad(), nw = w.defined() && w.requires_grad(),
         nb = b.defined() && b.requires_grad();
    Shape ns = normalized_shape;
    record(out, op, {x, w, b},
           [xc, wc, mean, rstd, nx, nw, nb, ns](const Tensor& g) -> std::vector<Tensor> {
             TensorOptions o(xc.dtype(), xc.device());
             Tensor gx = nx ? empty(xc.shape(), o) : Tensor();
             Tensor gw = nw ? empty({xc.size(1)}, o) : Tensor();
             Tensor gb = nb ? empty({xc.size(1)}, o) : Tensor();
             if (xc.numel() > 0)
               backend_for(xc).layer_norm_backward(plain(g).view(xc.shape()), xc, wc, mean, rstd,
                                                   gx, gw, gb);
             else {
               if (gw.defined()) gw.zero_();
               if (gb.defined()) gb.zero_();
             }
             return {gx.defined() ? gx.view(g.shape()) : gx, gw.defined() ? gw.view(ns) : gw,
                     gb.defined() ? gb.view(ns) : gb};
           });
  }
  return out;
}

// x [N, C, *]: normalises each channel over the batch and spatial dims.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& w, const Tensor& b, bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  check_floating(x, op, "input");
  if (x.dim() < 2) throw Error(op, "expected input [N, C] or [N, C, *], got " + x.desc());
  const int64_t C = x.size(1);
  for (const Tensor* t : {&running_mean, &running_var, &w, &b})
    if (t->defined() && (t->dim() != 1 || t->size(0) != C))
      throw Error(op, "weight, bias and running stats must be [" + std::to_string(C) +
                          "] for input " + x.desc() + ", got " + t->desc());
  Shape bshape(size_t(x.dim()), 1);
  bshape[1] = C;
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); d++) dims.push_back(d);
  const int64_t count = C == 0 ? 0 : x.numel() / C;
  Tensor xhat;
  if (training) {
    if (count <= 1)
      throw Error(op, "expected more than 1 value per channel when training, got input " +
                          x.desc());
    Tensor m = mean(x, dims, true);
    Tensor v = var(x, dims, 0, true);  // biased variance normalises, like PyTorch
    xhat = mul(sub(x, m), rsqrt(add(v, eps)));
    NoGradGuard ng;
    if (running_mean.defined()) {
      Tensor rm = running_mean;  // a handle: the update writes the caller's buffer
      rm.mul_(1.0 - momentum);
      rm.add_(m.detach().reshape({C}).to(rm.dtype()), momentum);
    }
    if (running_var.defined()) {
      // Running variance is the unbiased estimate, as in PyTorch.
      Tensor unbiased = mul(v.detach().reshape({C}), double(count) / double(count - 1));
      Tensor rv = running_var;
      rv.mul_(1.0 - momentum);
      rv.add_(unbiased.to(rv.dtype()), momentum);
    }
  } else {
    if (!running_mean.defined() || !running_var.defined())
      throw Error(op, "evaluation mode needs running_mean and running_var");
    Tensor rm = running_mean.detach().to(x.dtype()).reshape(bshape);
    Tensor rv = running_var.detach().to(x.dtype()).reshape(bshape);
    xhat = mul(sub(x, rm), rsqrt(add(rv, eps)));
  }
  Tensor y = xhat;
  if (w.defined()) y = mul(y, w.reshape(bshape));
  if (b.defined()) y = add(y, b.reshape(bshape));
  return y;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  const char* op = "dropout";
  if (!(p >= 0.0 && p <= 1.0))
    throw Error(op, "probability must be in [0, 1], got " + std::to_string(p));
  if (!training || p == 0.0) return x;
  check_floating(x, op, "input");
  Tensor mask = empty(x.shape(), TensorOptions(is_half(x.dtype()) ? DType::F32 : x.dtype(), x.device()));
  if (p == 1.0) {
    mask.zero_();
  } else {
    // keep with probability 1-p; kept values are scaled so the expectation is unchanged
    backend_for(x).bernoulli(mask, 1.0 - p, gen ? *gen : default_generator());
    mask.mul_(1.0 / (1.0 - p));
  }
  return mul(x, mask.to(x.dtype()));
}

}  // namespace mox
