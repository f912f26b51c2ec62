#pragma once
// Post-training int8 inference on the CPU: u8/s8 quantisation of activations, symmetric
// per-output-channel s8 weights, and Linear / Conv2d computed as int8 x int8 products
// accumulated exactly in int32 with the dequantisation (or requantisation to u8) fused into
// the kernel's epilogue (backend/quant.h: oneDNN's int8 matmul when built with it, else
// mox's own VNNI/AVX2/baseline kernel). These ops are inference only: they never record
// gradients (their results do not require grad, whatever the inputs). CPU tensors only.
#include <array>
#include <cstdint>
#include <memory>

#include "mox/tensor/tensor.h"

namespace mox {

// u8 asymmetric affine parameters from an observed range, PyTorch's rule: the range is
// widened to include 0, scale = (max - min) / 255 (scale = 1 when max == min == 0, never
// below float eps), zero_point = clamp(round(-min / scale), 0, 255).
struct QParams {
  float scale = 1;
  int32_t zero_point = 0;
};
QParams choose_qparams_u8(float min, float max);

// q = clamp(round_half_even(x / scale) + zp, 0, 255) (U8); dequantize: (q - zp) * scale (F32).
Tensor quantize_u8(const Tensor& x, QParams p);
Tensor dequantize_u8(const Tensor& q, QParams p);

// Weights: symmetric per output channel (dim 0): scale[c] = max|w[c,...]| / 127 (1.0 when
// the channel is all zero), q = clamp(round_half_even(w / scale), -127, 127) as I8.
// Works for [N, K] and [OC, IC, kh, kw].
struct QWeight {
  Tensor q;      // I8, w's shape
  Tensor scale;  // F32 [N]
  Tensor bias;   // F32 [N] or undefined
  // Kernel-private cache (cpu::QGemmWeights: K padded to 64, row sums for the zero-point
  // correction; with oneDNN also the static-mode primitives keyed by input shape and
  // quantisation parameters), built by make_qweight*; rebuilt per call if a QWeight is
  // assembled by hand.
  std::shared_ptr<void> prepared;
};
QWeight make_qweight(const Tensor& w, const Tensor& bias);
QWeight make_qweight_from_int8(const Tensor& q, const Tensor& scale, const Tensor& bias);

// How the input is quantised. Static: the given (scale, zero_point), u8. DynamicTensor: u8
// with choose_qparams_u8(min(x), max(x)) computed per call. DynamicToken: symmetric per
// row of the flattened [M, K] input: scale_m = max|x_m| / 127 (1 if zero), values in
// [-127, 127].
enum class QActMode { Static, DynamicTensor, DynamicToken };
struct QInput {
  QActMode mode = QActMode::DynamicTensor;
  QParams params;
};
// Output: f32, or (requantize = true) U8 with `params`: q = clamp(round(y / scale) + zp,
// 0, 255) (round half to even). relu is applied before requantisation.
struct QOutput {
  bool relu = false;
  bool requantize = false;
  QParams params;
};

// y[m, n] = act((sum_k (xq[m,k] - zp_x) * wq[n,k]) * (scale_x(m) * w.scale[n]) + bias[n])
// (u8 results: oneDNN's static kernels compute y / out_scale as acc * (scale_x * w.scale[n] /
// out_scale) + bias[n] / out_scale, which may round one unit differently at exact ties)
// x: F32 [..., K] (quantised here per `in`), or U8 [..., K] already quantised (then in.mode
// must be Static and in.params describe it). Result [..., N]: F32, or U8 when out.requantize.
Tensor qlinear(const Tensor& x, const QWeight& w, const QInput& in, const QOutput& out);

// Convolution, groups = 1, stride/padding/dilation as PyTorch's Conv2d (zero padding =
// padding with the input's zero point, i.e. real 0). x: F32 or U8 [N, C, H, W] (any strides;
// dense channels-last memory, strides [H*W*C, 1, W*C, C], is read without a copy); w.q
// [OC, IC, kh, kw]; result [N, OC, OH, OW], F32 or U8 (out.requantize).
// Layout of the result: Static mode with a u8 result (a quantised conv feeding another
// quantised layer) returns it channels-last (strides [OH*OW*OC, 1, OW*OC, OC]) when
// qconv2d_channels_last() is on (default; environment MOX_QCONV_CL=0 starts it off), so that a chain of quantised convolutions (and
// u8 max pooling between them) never changes layout; otherwise contiguous NCHW.
// Static mode runs the whole epilogue inside the kernel: oneDNN's convolution with constant
// scales / zero points / bias / ReLU when built in and enabled, else (few taps, C*kh*kw <= 32)
// mox's direct kernel with the f32 input quantised on the fly; everything else (dynamic
// modes, larger layers without oneDNN) uses im2col + the own int8 GEMM.
// DynamicToken is per image here: scale_b = max|x[b]| / 127 (1 if 0), symmetric, one per batch item.
void set_qconv2d_channels_last(bool on);
bool qconv2d_channels_last();
Tensor qconv2d(const Tensor& x, const QWeight& w, std::array<int64_t, 2> stride,
               std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation, const QInput& in,
               const QOutput& out);

}  // namespace mox
