#pragma once
// CPU int8 kernels for post-training quantised inference (ops/quant.h is the public API):
// u8 x s8 products accumulated exactly in int32, with the dequantisation / requantisation
// epilogue fused. Free functions in mox::cpu (not Backend virtuals: int8 runs on the CPU only).
//
// Formats:
// - Activations A: u8 [M, K] rows (row stride lda >= K), one zero point `a_zp` for all rows.
//   (Symmetric per-row s8 activations are passed as u8 = s8 + 128 with a_zp = 128: exact.)
// - Weights: QGemmWeights, s8 [N, K] with K zero-padded to Kp (a multiple of 64) so that
//   the kernel's inner loop has no remainder, plus rowsum[n] = sum_k w[n, k] (the zero-point
//   correction: sum_k (a - zp) w = sum_k a w - zp * rowsum).
// - Epilogue, for output (m, n):
//     acc = sum_k a[m,k] w[n,k] - a_zp * rowsum[n]                          (int32, exact)
//     y   = acc * (a_scale[m or 0] * w_scale[n]) + bias[n]                   (f32)
//     y   = max(y, 0) if relu
//     f32 output: y;  u8 output: clamp(round_half_even(y / out_scale) + out_zp, 0, 255)
//   written at out[m * out_rs + n * out_cs] (conv writes NCHW directly: out_rs 1, out_cs P).
// Static quantisation has its own entry points (qlinear_dnnl_static, qconv2d_dnnl_static,
// qconv2d_small_static below) with the epilogue inside the kernel.
// Paths: oneDNN's int8 matmul / convolution (MOX_HAVE_DNNL, on unless MOX_DNNL=0 or
// set_int8_dnnl_enabled(false), for products of at least 2^18 MACs; int32 results, then our
// epilogue), else mox's own kernel: portable C++ dot products that GCC vectorises,
// compiled three times (AVX-512 VNNI -> vpdpbusd, AVX2 -> vpmaddwd, baseline SSE2) and
// picked at run time from the CPU's features; OpenMP over row blocks.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mox::cpu {

struct QGemmWeights {
  int64_t N = 0, K = 0, Kp = 0;
  std::vector<int8_t> w;         // [N, Kp], zero padded
  std::vector<int32_t> rowsum;   // [N]
  std::vector<int8_t> wt;        // [K, N] (row-major), for oneDNN's brgemm kernels
  std::vector<int8_t> wdense;    // [N, K] unpadded (source of oneDNN's convolution weights)
  std::shared_ptr<void> dnnl;    // oneDNN-private state: weights reordered per conv layout
};
// Packs s8 weights w [N, K] (row stride ldw) for qgemm_u8s8.
std::shared_ptr<QGemmWeights> qgemm_pack_weights(const int8_t* w, int64_t N, int64_t K, int64_t ldw);

struct QGemmEpilogue {
  const float* a_scale = nullptr;  // [batch * M] when a_scale_per_row, else [1]
  bool a_scale_per_row = false;
  int32_t a_zp = 0;
  const float* w_scale = nullptr;  // [N]
  const float* bias = nullptr;     // [N] or null
  bool relu = false;
  bool requantize = false;  // u8 output
  float out_scale = 1;
  int32_t out_zp = 0;
};

// out (f32 or u8 per ep.requantize) = epilogue(a [M, K] (lda) x w^T). `batch` > 1 runs
// `batch` independent products: a advances by a_bs elements, out by out_bs elements.
void qgemm_u8s8(int64_t batch, int64_t M, const uint8_t* a, int64_t lda, int64_t a_bs,
                const QGemmWeights& w, const QGemmEpilogue& ep, void* out, int64_t out_rs,
                int64_t out_cs, int64_t out_bs);

// The row layout qgemm_u8s8 wants for A with `rows` = batch * M rows: true: dense rows
// (lda = K, oneDNN's brgemm kernels need them), false: rows padded to w.Kp (the own kernel
// reads Kp bytes per row; padding bytes may hold anything since the packed weights are 0 there).
// Either layout is accepted; the other one costs a copy.
bool qgemm_wants_dense(const QGemmWeights& w, int64_t rows);

// Quantisation helpers (vectorised, OpenMP above a size threshold).
// min and max of x[0..n) (0, 0 for n == 0).
void minmax_f32(const float* x, int64_t n, float& mn, float& mx);
// q[i] = clamp(round_half_even(x[i] / scale) + zp, 0, 255) for a [rows, n] block:
// x row stride ldx, q row stride ldq; q's columns [n, ldq) are set to `pad`.
void quantize_rows_u8(const float* x, int64_t rows, int64_t n, int64_t ldx, float scale,
                      int32_t zp, uint8_t* q, int64_t ldq, uint8_t pad);
// Symmetric per row: scale[r] = max|x_r| / 127 (1 if 0); q = clamp(round_half_even(x / scale),
// -127, 127) + 128 stored as u8 (zero point 128). Padding columns are 128.
void quantize_rows_sym_u8(const float* x, int64_t rows, int64_t n, int64_t ldx, float* scale,
                          uint8_t* q, int64_t ldq);

// Path control (for tests and benchmarks).
bool int8_dnnl_available();          // built with oneDNN
void set_int8_dnnl_enabled(bool on);  // default: available and MOX_DNNL != 0
bool int8_dnnl_enabled();
// The own kernel's instruction set: "avx512vnni", "avx2" or "baseline" (the best the CPU
// has, capped by set_int8_isa_cap: 0 baseline, 1 avx2, 2 avx512vnni; -1 = no cap).
std::string int8_kernel_isa();
void set_int8_isa_cap(int cap);
// Products below this many multiply-adds (rows * N * Kp) stay with the own kernel even when
// oneDNN is enabled (its per-call overhead dominates there); default 2^18, -1 restores it.
// Tests set 0 to send every product to oneDNN.
void set_int8_dnnl_min_work(int64_t macs);
// The path of the latest product: "dnnl:<impl>" (e.g. "dnnl:brg:avx512_core_amx") or
// "mox:<isa>"; and the number of products oneDNN computed.
std::string int8_last_path();
int64_t int8_dnnl_calls();

}  // namespace mox::cpu

namespace mox::cpu {
// im2col for u8 images x [images, C, H, W] (contiguous): col [images, P = OH*OW, ldc] with
// col[b, p, (c*kh + i)*kw + j] = x[b, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
// (pad_values[b] outside the image), columns [C*kh*kw, ldc) set to pad_values[b].
void im2col_u8(const uint8_t* x, int64_t images, int64_t C, int64_t H, int64_t W, int64_t kh,
               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
               int64_t OH, int64_t OW, const uint8_t* pad_values, uint8_t* col, int64_t ldc);

// Direct convolution through oneDNN's int8 convolution primitive (preferred: no im2col):
// x u8 NCHW contiguous with zero point ep.a_zp, weights [OC, C, kh, kw], ep.a_scale [N] when
// a_scale_per_row; out NCHW. Returns false (nothing computed) when oneDNN is not built in,
// is disabled, the problem is below the size threshold or oneDNN has no fast kernel.
// Static quantisation (every epilogue parameter a constant of the layer): oneDNN primitives
// with the epilogue as constant attributes (per-channel output scales, source / destination
// zero points, bias, ReLU post-op), fused into oneDNN's AMX / VNNI kernels; cached per
// weights (QGemmWeights::dnnl) by shape and parameter values. Same formulas as QGemmEpilogue
// with one input scale. Return false (nothing computed) when oneDNN is not built in, is
// disabled, the product is below the size threshold or oneDNN has no fast kernel for it.
struct QStaticEpilogue {
  float a_scale = 1;
  int32_t a_zp = 0;
  const float* w_scale = nullptr;  // [N]
  const float* bias = nullptr;     // [N] or null
  bool relu = false;
  bool requantize = false;  // u8 output, else f32
  float out_scale = 1;
  int32_t out_zp = 0;
};
// out [M, N] dense (u8 or f32) = epilogue(a u8 [M, K] dense rows x w^T).
bool qlinear_dnnl_static(int64_t M, const uint8_t* a, const QGemmWeights& w, const QStaticEpilogue& ep,
                         void* out);
// Own direct convolution for few taps (C * kh * kw <= 32, e.g. a 1-channel first layer):
// exact integer sums in f32 FMAs, the f32 input's quantisation (ep.a_scale, ep.a_zp) fused,
// no oneDNN needed. x: f32 (x_f32) or u8, dense channels-last (x_nhwc) or NCHW; out as
// qconv2d_dnnl_static. Returns false when the layer has more taps.
bool qconv2d_small_static(const void* x, bool x_f32, bool x_nhwc, int64_t N, int64_t C, int64_t H, int64_t W,
                          const QGemmWeights& w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                          int64_t pw, int64_t dh, int64_t dw, int64_t OH, int64_t OW,
                          const QStaticEpilogue& ep, bool out_nhwc, void* out);
// Records the path of the latest product for int8_last_path() (kernels in other files).
void note_int8_path(const std::string& path);
// x u8 [N, C, H, W] dense, channels-last (x_nhwc: memory [N, H, W, C]) or NCHW; out dense
// channels-last [N, OH, OW, OC] (out_nhwc) or NCHW, u8 or f32 per ep.requantize.
bool qconv2d_dnnl_static(const uint8_t* x, bool x_nhwc, int64_t N, int64_t C, int64_t H, int64_t W,
                         const QGemmWeights& w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                         int64_t pw, int64_t dh, int64_t dw, int64_t OH, int64_t OW,
                         const QStaticEpilogue& ep, bool out_nhwc, void* out);

bool qconv2d_dnnl_direct(const uint8_t* x, int64_t N, int64_t C, int64_t H, int64_t W,
                         const QGemmWeights& w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                         int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t OH, int64_t OW,
                         const QGemmEpilogue& ep, void* out);
}  // namespace mox::cpu
