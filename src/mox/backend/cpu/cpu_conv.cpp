// 2-D convolution, NCHW, f32/f64: the CpuBackend::conv2d / conv2d_backward entry points and
// the im2col + BLAS GEMM per group path (f32 3x3 stride-1 convolutions go to Winograd
// F(2x2, 3x3) in cpu_winograd.cpp for the output and the input and weight gradients).
// Threads split the batch: each thread owns its column buffers (and, in backward, its
// weight/bias-gradient partial sums, added up in thread order so results are deterministic).
// A batch smaller than the thread count is processed one sample at a time with the im2col
// split by channel and the GEMMs split by rows; BLAS itself always runs single-threaded
// (see Split below). 1x1 stride-1 unpadded convolutions skip im2col; f32 convolutions with
// few input channels and no padding (a CNN's first layer) run direct (cpu_conv_direct.cpp)
// for the output and the weight/bias gradients. Every path applies the fused ReLU of
// Conv2dParams::relu to the output while it is in cache.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "mox/backend/cpu/conv_internal.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/cpu/simd.h"

namespace mox::cpu::conv {

namespace {

ConvGeom geometry(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p) {
  ConvGeom g;
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.O = w.size(0), g.kh = w.size(2), g.kw = w.size(3);
  g.Ho = y.size(2), g.Wo = y.size(3);
  g.G = p.groups, g.Cg = g.C / p.groups, g.Og = g.O / p.groups;
  g.P = g.Ho * g.Wo, g.Kc = g.Cg * g.kh * g.kw;
  g.p = p;
  g.pointwise = g.kh == 1 && g.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 &&
                p.pad_w == 0;
  return g;
}

// Output columns [lo, hi) whose input column ow*s - pad + k*dil lies inside [0, W).
inline void valid_range(int64_t Wo, int64_t W, int64_t s, int64_t pad, int64_t off,
                        int64_t& lo, int64_t& hi) {
  // iw = ow*s + off - pad >= 0  <=>  ow >= ceil((pad - off) / s)
  int64_t a = pad - off;
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  // iw < W  <=>  ow*s < W + pad - off  <=>  ow <= (W + pad - off - 1) / s
  int64_t b = W + pad - off - 1;
  hi = b < 0 ? 0 : std::min(Wo, b / s + 1);
  lo = std::min(lo, hi);
}

// Stride 1 along both axes, no column dilation and output width == input width ("same"
// padding along W): then every column-matrix row (c, ki, kj) is the input plane shifted by
// whole rows and by s = kj - pad_w columns, so it is one contiguous block copy plus a few
// edge cells that wrapped around a row end. Rows are short (14-56 pixels in typical CNNs),
// so this avoids a memcpy/memset call per image row.
bool block_shift(const ConvGeom& g) {
  const Conv2dParams& p = g.p;
  return p.stride_h == 1 && p.stride_w == 1 && p.dil_w == 1 && g.Wo == g.W;
}

// Output rows [oh0, oh1) whose input row oh - pad_h + ki*dil_h lies inside [0, H).
inline void valid_rows(const ConvGeom& g, int64_t ki, int64_t& oh0, int64_t& oh1) {
  int64_t off = ki * g.p.dil_h - g.p.pad_h;  // ih = oh + off (stride 1)
  oh0 = std::clamp<int64_t>(-off, 0, g.Ho);
  oh1 = std::clamp<int64_t>(g.H - off, oh0, g.Ho);
}

// x (Cg,H,W) -> col (Cg*kh*kw, Ho*Wo) for channels [c0, c1); out-of-image taps are zero.
template <typename T>
MOX_INLINE void im2col_impl(const T* x, const ConvGeom& g, T* col,
                                                       int64_t c0, int64_t c1) {
  const Conv2dParams& p = g.p;
  if (block_shift(g)) {
    const int64_t W = g.W, P = g.P;
    for (int64_t c = c0; c < c1; c++)
      for (int64_t ki = 0; ki < g.kh; ki++) {
        int64_t oh0, oh1;
        valid_rows(g, ki, oh0, oh1);
        const int64_t off = (ki * p.dil_h - p.pad_h) * W;  // src = dst + off + s
        for (int64_t kj = 0; kj < g.kw; kj++) {
          T* row = col + ((c * g.kh + ki) * g.kw + kj) * P;
          const T* xc = x + c * g.H * W;
          const int64_t s = kj - p.pad_w;
          // whole block, clipped so that the source stays inside this channel's plane
          const int64_t d0 = oh0 * W + std::max<int64_t>(0, -s);
          const int64_t d1 = std::max(d0, oh1 * W - std::max<int64_t>(0, s));
          for (int64_t d = 0; d < d0; d++) row[d] = T(0);
          const T* src = xc + off + s;
          for (int64_t d = d0; d < d1; d++) row[d] = src[d];
          for (int64_t d = d1; d < P; d++) row[d] = T(0);
          // cells whose column wrapped into the neighbouring image row
          if (s > 0)
            for (int64_t oh = oh0; oh < oh1; oh++)
              for (int64_t ow = W - s; ow < W; ow++) row[oh * W + ow] = T(0);
          else if (s < 0)
            for (int64_t oh = oh0; oh < oh1; oh++)
              for (int64_t ow = 0; ow < -s; ow++) row[oh * W + ow] = T(0);
        }
      }
    return;
  }
  for (int64_t c = c0; c < c1; c++)
    for (int64_t ki = 0; ki < g.kh; ki++)
      for (int64_t kj = 0; kj < g.kw; kj++) {
        T* row = col + ((c * g.kh + ki) * g.kw + kj) * g.P;
        int64_t lo, hi;
        valid_range(g.Wo, g.W, p.stride_w, p.pad_w, kj * p.dil_w, lo, hi);
        for (int64_t oh = 0; oh < g.Ho; oh++) {
          T* r = row + oh * g.Wo;
          int64_t ih = oh * p.stride_h - p.pad_h + ki * p.dil_h;
          if (ih < 0 || ih >= g.H) {
            std::fill(r, r + g.Wo, T(0));
            continue;
          }
          const T* xr = x + (c * g.H + ih) * g.W - p.pad_w + kj * p.dil_w;
          std::fill(r, r + lo, T(0));
          if (p.stride_w == 1)
            std::memcpy(r + lo, xr + lo, size_t(hi - lo) * sizeof(T));
          else
            for (int64_t ow = lo; ow < hi; ow++) r[ow] = xr[ow * p.stride_w];
          std::fill(r + hi, r + g.Wo, T(0));
        }
      }
}

// col (Cg*kh*kw, Ho*Wo) -> gx (Cg,H,W) for channels [c0, c1), accumulating (gx must start
// zeroed).
// In the block-shift case `col` is scratch and its wrapped edge cells are overwritten.
template <typename T>
MOX_INLINE void col2im_impl(T* col, const ConvGeom& g, T* gx, int64_t c0,
                                                       int64_t c1) {
  const Conv2dParams& p = g.p;
  if (block_shift(g)) {
    const int64_t W = g.W;
    for (int64_t c = c0; c < c1; c++)
      for (int64_t ki = 0; ki < g.kh; ki++) {
        int64_t oh0, oh1;
        valid_rows(g, ki, oh0, oh1);
        const int64_t off = (ki * p.dil_h - p.pad_h) * W;
        for (int64_t kj = 0; kj < g.kw; kj++) {
          T* row = col + ((c * g.kh + ki) * g.kw + kj) * g.P;
          const int64_t s = kj - p.pad_w;
          // taps that fell on padding must not reach the image: clear them, then add the block
          if (s > 0)
            for (int64_t oh = oh0; oh < oh1; oh++)
              for (int64_t ow = W - s; ow < W; ow++) row[oh * W + ow] = T(0);
          else if (s < 0)
            for (int64_t oh = oh0; oh < oh1; oh++)
              for (int64_t ow = 0; ow < -s; ow++) row[oh * W + ow] = T(0);
          const int64_t d0 = oh0 * W + std::max<int64_t>(0, -s);
          const int64_t d1 = std::max(d0, oh1 * W - std::max<int64_t>(0, s));
          T* dst = gx + c * g.H * W + off + s;
          for (int64_t d = d0; d < d1; d++) dst[d] += row[d];
        }
      }
    return;
  }
  for (int64_t c = c0; c < c1; c++)
    for (int64_t ki = 0; ki < g.kh; ki++)
      for (int64_t kj = 0; kj < g.kw; kj++) {
        const T* row = col + ((c * g.kh + ki) * g.kw + kj) * g.P;
        int64_t lo, hi;
        valid_range(g.Wo, g.W, p.stride_w, p.pad_w, kj * p.dil_w, lo, hi);
        for (int64_t oh = 0; oh < g.Ho; oh++) {
          int64_t ih = oh * p.stride_h - p.pad_h + ki * p.dil_h;
          if (ih < 0 || ih >= g.H) continue;
          const T* r = row + oh * g.Wo;
          T* xr = gx + (c * g.H + ih) * g.W - p.pad_w + kj * p.dil_w;
          if (p.stride_w == 1)
            for (int64_t ow = lo; ow < hi; ow++) xr[ow] += r[ow];
          else
            for (int64_t ow = lo; ow < hi; ow++) xr[ow * p.stride_w] += r[ow];
        }
      }
}

// Per-ISA entry points for f32 (f64 is for gradient tests and uses the portable code). The
// zero runs in im2col are a few cells long: plain stores beat a memset call per run, hence
// no loop-to-memset conversion.
#define MOX_CONV_COPY MOX_SIMD __attribute__((optimize("no-tree-loop-distribute-patterns")))
MOX_CONV_COPY void im2col_f32(const float* x, const ConvGeom& g, float* col, int64_t c0, int64_t c1) {
  im2col_impl(x, g, col, c0, c1);
}
MOX_CONV_COPY void col2im_f32(float* col, const ConvGeom& g, float* gx, int64_t c0, int64_t c1) {
  col2im_impl(col, g, gx, c0, c1);
}
void im2col(const float* x, const ConvGeom& g, float* col, int64_t c0, int64_t c1) {
  im2col_f32(x, g, col, c0, c1);
}
void col2im(float* col, const ConvGeom& g, float* gx, int64_t c0, int64_t c1) {
  col2im_f32(col, g, gx, c0, c1);
}
void im2col(const double* x, const ConvGeom& g, double* col, int64_t c0, int64_t c1) {
  im2col_impl(x, g, col, c0, c1);
}
void col2im(double* col, const ConvGeom& g, double* gx, int64_t c0, int64_t c1) {
  col2im_impl(col, g, gx, c0, c1);
}

// How a convolution is spread over threads. OpenBLAS runs a GEMM on one thread inside an
// active OpenMP region, or when M*N*K <= 65536*4; otherwise it wakes its own threads, which
// on a loaded machine costs more than it saves (64x196x288 sgemm measured at 0.9 GFLOP/s
// with 2 BLAS threads under load vs 95 GFLOP/s on one). So the BLAS calls here always run
// single-threaded and the parallelism is ours:
//   Batch: each thread takes whole samples, with its own column buffers;
//   Rows:  (batch smaller than the thread count) all threads work on one sample at a time,
//          splitting the im2col by channel and each GEMM by output rows.
enum class Split { Serial, Batch, Rows };
constexpr int64_t kBlasSerialMNK = 65536 * 4;

Split choose_split(const ConvGeom& g, int threads) {
  const int64_t mnk = g.Og * g.P * g.Kc;
  const int64_t macs = g.N * g.G * mnk;
  if (threads <= 1) return Split::Serial;
  if (g.N >= threads && (macs >= (int64_t(1) << 22) || mnk > kBlasSerialMNK)) return Split::Batch;
  if (mnk > kBlasSerialMNK) return Split::Rows;
  return Split::Serial;
}

MOX_SIMD void relu_inplace_f32(float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}
void relu_inplace(float* y, int64_t n) { relu_inplace_f32(y, n); }
void relu_inplace(double* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = y[i] > 0.0 ? y[i] : 0.0;
}

// y_g rows [o0, o1) of one sample and group: (o1-o0, P) = w_g rows (o1-o0, Kc) @ B (Kc, P)
// [+ bias broadcast over P]
template <typename T>
void forward_rows(const T* wg, const T* bias_g, const T* B, T* yg, const ConvGeom& g, int64_t o0,
                  int64_t o1) {
  if (o1 <= o0) return;
  if (bias_g)
    for (int64_t o = o0; o < o1; o++) std::fill(yg + o * g.P, yg + (o + 1) * g.P, bias_g[o]);
  gemm(false, false, o1 - o0, g.P, g.Kc, T(1), wg + o0 * g.Kc, g.Kc, B, g.P, bias_g ? T(1) : T(0),
       yg + o0 * g.P, g.P);
  if (g.p.relu) relu_inplace(yg + o0 * g.P, (o1 - o0) * g.P);  // fused ReLU, while in cache
}

// x (N,C,H,W), w (O,Cg,kh,kw), bias (O) -> y (N,O,Ho,Wo)
template <typename T>
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                    const Conv2dParams& p) {
  ConvGeom g = geometry(x, w, y, p);
  const T* xd = x.data<T>();
  const T* wd = w.data<T>();
  const T* bd = bias.defined() ? bias.data<T>() : nullptr;
  T* yd = y.data<T>();
  const int threads = omp_get_max_threads();
  if constexpr (std::is_same_v<T, float>) {
    if (wino_ok(g, g.C, g.O, threads)) {
      wino_forward(xd, wd, bd, yd, g, threads);
      return;
    }
    if (direct_ok(g)) {
      direct_forward(xd, wd, bd, yd, g, threads);
      return;
    }
  }
  const Split split = choose_split(g, threads);
  const int nt = split == Split::Serial ? 1 : threads;
  const int nbuf = split == Split::Batch ? nt : 1;  // Rows mode shares one column buffer
  Tensor cols = g.pointwise ? Tensor() : empty({nbuf, g.Kc * g.P}, dtype_of<T>());
  auto xg_of = [&](int64_t n, int64_t gi) { return xd + (n * g.C + gi * g.Cg) * g.H * g.W; };
  auto yg_of = [&](int64_t n, int64_t gi) { return yd + (n * g.O + gi * g.Og) * g.P; };
  auto bias_of = [&](int64_t gi) { return bd ? bd + gi * g.Og : nullptr; };

  if (split != Split::Rows) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t n = 0; n < g.N; n++) {
      T* col = g.pointwise ? nullptr : cols.data<T>() + omp_get_thread_num() * g.Kc * g.P;
      for (int64_t gi = 0; gi < g.G; gi++) {
        const T* B = xg_of(n, gi);
        if (!g.pointwise) {
          im2col(B, g, col, 0, g.Cg);
          B = col;
        }
        forward_rows(wd + gi * g.Og * g.Kc, bias_of(gi), B, yg_of(n, gi), g, 0, g.Og);
      }
    }
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
    T* col = g.pointwise ? nullptr : cols.data<T>();
    for (int64_t n = 0; n < g.N; n++)
      for (int64_t gi = 0; gi < g.G; gi++) {
        const T* B = xg_of(n, gi);
        if (!g.pointwise) {
          im2col(B, g, col, part(g.Cg, t, T_), part(g.Cg, t + 1, T_));
          B = col;
#pragma omp barrier
        }
        forward_rows(wd + gi * g.Og * g.Kc, bias_of(gi), B, yg_of(n, gi), g, part(g.Og, t, T_),
                     part(g.Og, t + 1, T_));
#pragma omp barrier
      }
  }
}

// gb[o] (+)= sum of gy row o over its P pixels, for rows [o0, o1) of one sample and group
// (folded into the per-sample loop, where gy is already in cache).
template <typename T>
void bias_grad_rows(const T* gyg, T* gbg, bool first, const ConvGeom& g, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; o++) {
    const T* r = gyg + o * g.P;
    T acc[16] = {};
    T s = 0;
    int64_t i = 0;
    for (; i + 16 <= g.P; i += 16)
      for (int j = 0; j < 16; j++) acc[j] += r[i + j];
    for (; i < g.P; i++) s += r[i];
    for (int j = 0; j < 16; j++) s += acc[j];
    gbg[o] = first ? s : gbg[o] + s;
  }
}

// One sample and group of the backward pass, restricted to this thread's share:
// gw_g and gb_g rows [o0, o1) (overwritten when `first`, else accumulated) from gy_g rows
// and col^T, and gx channels [c0, c1) from gcol = w_g^T @ gy_g (its rows for those
// channels). `col` must already hold im2col(x_g).
template <typename T>
void backward_part(const T* xg, const T* gyg, const T* wg, const T* col, T* gcol, T* gwg, T* gbg,
                   bool first, T* gxg, const ConvGeom& g, int64_t o0, int64_t o1, int64_t c0,
                   int64_t c1) {
  const T gw_beta = first ? T(0) : T(1);
  if (gbg) bias_grad_rows(gyg, gbg, first, g, o0, o1);
  if (gwg && o1 > o0) {
    // gw_g (o1-o0, Kc) = beta * gw_g + gy_g (o1-o0, P) @ col^T (P, Kc)
    gemm(false, true, o1 - o0, g.Kc, g.P, T(1), gyg + o0 * g.P, g.P, g.pointwise ? xg : col, g.P,
         gw_beta, gwg + o0 * g.Kc, g.Kc);
  }
  if (gxg && c1 > c0) {
    const int64_t taps = g.kh * g.kw, k0 = c0 * taps, k1 = c1 * taps;
    if (g.pointwise) {
      // gx_g channels (c1-c0, P) = w_g^T (c1-c0, Og) @ gy_g (Og, P)
      gemm(true, false, k1 - k0, g.P, g.Og, T(1), wg + k0, g.Kc, gyg, g.P, T(0), gxg + k0 * g.P,
           g.P);
      return;
    }
    gemm(true, false, k1 - k0, g.P, g.Og, T(1), wg + k0, g.Kc, gyg, g.P, T(0), gcol + k0 * g.P, g.P);
    std::fill(gxg + c0 * g.H * g.W, gxg + c1 * g.H * g.W, T(0));  // zeroed here, while hot
    col2im(gcol, g, gxg, c0, c1);
  }
}

// gy (N,O,Ho,Wo) -> gx (N,C,H,W), gw (O,Cg,kh,kw), gb (O); each optional.
// gy where y > 0, else 0 (the fused ReLU's backward), over threads.
MOX_SIMD void relu_mask_f32(const float* gy, const float* y, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = y[i] > 0.0f ? gy[i] : 0.0f;
}
void relu_mask(const float* gy, const float* y, float* out, int64_t n) { relu_mask_f32(gy, y, out, n); }
void relu_mask(const double* gy, const double* y, double* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = y[i] > 0.0 ? gy[i] : 0.0;
}

template <typename T>
void conv2d_backward_impl(const Tensor& x, const Tensor& w, const Tensor& gy_in, const Tensor& gx_in,
                          Tensor gw, Tensor gb, const Conv2dParams& p, const Tensor& relu_out) {
  ConvGeom g = geometry(x, w, gy_in, p);
  const T* xd = x.data<T>();
  const T* wd = w.data<T>();
  const int threads = omp_get_max_threads();
  Tensor gx = gx_in, gy = gy_in;
  if constexpr (std::is_same_v<T, float>) {
    // the first layer (direct path, no input gradient): the mask is applied as gy is read
    if (relu_out.defined() && !gx.defined() && (gw.defined() || gb.defined()) && g.N > 0 &&
        direct_ok(g)) {
      direct_backward_weight(xd, gy.data<float>(), relu_out.data<float>(),
                             gw.defined() ? gw.data<float>() : nullptr,
                             gb.defined() ? gb.data<float>() : nullptr, g, threads);
      return;
    }
  }
  if (relu_out.defined()) {  // otherwise one masked copy of gy, read by every kernel below
    Tensor m = empty(gy.shape(), gy.dtype());
    const int64_t n = gy.numel();
    const T* src = gy.data<T>();
    const T* yd = relu_out.data<T>();
    T* dst = m.data<T>();
    const int nt = cpu::threads_for(n);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
      const int64_t lo = part(n, t, T_) / 16 * 16, hi = t + 1 == T_ ? n : part(n, t + 1, T_) / 16 * 16;
      relu_mask(src + lo, yd + lo, dst + lo, hi - lo);
    }
    gy = m;
  }
  const T* gyd = gy.data<T>();
  if constexpr (std::is_same_v<T, float>) {
    // input gradient by Winograd (what remains of gx, gw, gb below goes through im2col)
    if (gx.defined() && wino_ok(g, g.O, g.C, threads)) {
      wino_backward_data(gyd, wd, gx.data<float>(), g, threads);
      gx = Tensor();
    }
  }
  if constexpr (std::is_same_v<T, float>) {
    // weight and bias gradients in the Winograd domain (needs gw; gb comes along)
    if (gw.defined() && g.N > 0 && wino_ok(g, g.C, g.O, threads)) {
      wino_backward_weight(xd, gyd, gw.data<float>(), gb.defined() ? gb.data<float>() : nullptr,
                           g, threads);
      gw = gb = Tensor();
    }
    // weight and bias gradients of a direct-path convolution, directly too
    if ((gw.defined() || gb.defined()) && g.N > 0 && direct_ok(g)) {
      direct_backward_weight(xd, gyd, nullptr, gw.defined() ? gw.data<float>() : nullptr,
                             gb.defined() ? gb.data<float>() : nullptr, g, threads);
      gw = gb = Tensor();
    }
  }
  if (!gx.defined() && !gw.defined() && !gb.defined()) return;
  const int64_t wsize = g.O * g.Kc;
  if (g.N == 0) {
    if (gw.defined()) std::fill(gw.data<T>(), gw.data<T>() + wsize, T(0));
    if (gb.defined()) std::fill(gb.data<T>(), gb.data<T>() + g.O, T(0));
    return;
  }
  const Split split = choose_split(g, threads);
  const int nt = split == Split::Serial ? 1 : threads;
  const int nbuf = split == Split::Batch ? nt : 1;
  const bool need_col = gw.defined() && !g.pointwise;
  const bool need_gcol = gx.defined() && !g.pointwise;
  Tensor cols = need_col ? empty({nbuf, g.Kc * g.P}, dtype_of<T>()) : Tensor();
  Tensor gcols = need_gcol ? empty({nbuf, g.Kc * g.P}, dtype_of<T>()) : Tensor();
  // Batch mode: per-thread partial weight and bias gradients [gw | gb], added in thread
  // order afterwards (deterministic for a given thread count).
  const bool partials = (gw.defined() || gb.defined()) && split == Split::Batch;
  const int64_t psize = wsize + g.O;
  Tensor parts = partials ? empty({nt, psize}, dtype_of<T>()) : Tensor();
  auto xg_of = [&](int64_t n, int64_t gi) { return xd + (n * g.C + gi * g.Cg) * g.H * g.W; };
  auto gyg_of = [&](int64_t n, int64_t gi) { return gyd + (n * g.O + gi * g.Og) * g.P; };
  auto gxg_of = [&](int64_t n, int64_t gi) {
    return gx.defined() ? gx.data<T>() + (n * g.C + gi * g.Cg) * g.H * g.W : nullptr;
  };

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
    if (split != Split::Rows) {
      const int64_t n0 = part(g.N, t, T_), n1 = part(g.N, t + 1, T_);
      T* col = need_col ? cols.data<T>() + t * g.Kc * g.P : nullptr;
      T* gcol = need_gcol ? gcols.data<T>() + t * g.Kc * g.P : nullptr;
      T* part_t = partials ? parts.data<T>() + t * psize : nullptr;
      T* gwt = !gw.defined() ? nullptr : (partials ? part_t : gw.data<T>());
      T* gbt = !gb.defined() ? nullptr : (partials ? part_t + wsize : gb.data<T>());
      for (int64_t n = n0; n < n1; n++)
        for (int64_t gi = 0; gi < g.G; gi++) {
          if (need_col) im2col(xg_of(n, gi), g, col, 0, g.Cg);
          backward_part(xg_of(n, gi), gyg_of(n, gi), wd + gi * g.Og * g.Kc, col, gcol,
                        gwt ? gwt + gi * g.Og * g.Kc : nullptr, gbt ? gbt + gi * g.Og : nullptr,
                        n == n0, gxg_of(n, gi), g, 0, g.Og, 0, g.Cg);
        }
      if (part_t && n1 == n0) std::fill(part_t, part_t + psize, T(0));  // a thread without samples
    } else {
      T* col = need_col ? cols.data<T>() : nullptr;
      T* gcol = need_gcol ? gcols.data<T>() : nullptr;
      const int64_t o0 = part(g.Og, t, T_), o1 = part(g.Og, t + 1, T_);
      const int64_t c0 = part(g.Cg, t, T_), c1 = part(g.Cg, t + 1, T_);
      for (int64_t n = 0; n < g.N; n++)
        for (int64_t gi = 0; gi < g.G; gi++) {
          if (need_col) {
            im2col(xg_of(n, gi), g, col, c0, c1);
#pragma omp barrier
          }
          backward_part(xg_of(n, gi), gyg_of(n, gi), wd + gi * g.Og * g.Kc, col, gcol,
                        gw.defined() ? gw.data<T>() + gi * g.Og * g.Kc : nullptr,
                        gb.defined() ? gb.data<T>() + gi * g.Og : nullptr, n == 0, gxg_of(n, gi),
                        g, o0, o1, c0, c1);
#pragma omp barrier
        }
    }
  }
  if (partials) {
    const T* pd = parts.data<T>();
    for (int k = 0; k < 2; k++) {
      const Tensor& out = k == 0 ? gw : gb;
      if (!out.defined()) continue;
      const int64_t off = k == 0 ? 0 : wsize, len = k == 0 ? wsize : g.O;
      T* o = out.data<T>();
      std::memcpy(o, pd + off, size_t(len) * sizeof(T));
      for (int t = 1; t < nt; t++)
        for (int64_t i = 0; i < len; i++) o[i] += pd[t * psize + off + i];
    }
  }
}

}  // namespace

}  // namespace mox::cpu::conv

namespace mox {

using namespace cpu::conv;

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out,
                        const Conv2dParams& p) {
  check_float(x, "conv2d");
  check_contig(x, "conv2d", "input");
  check_contig(w, "conv2d", "weight");
  check_contig(bias, "conv2d", "bias");
  check_contig(out, "conv2d", "output");
  if (out.numel() == 0) return;
  if (x.dtype() == DType::F32)
    conv2d_forward<float>(x, w, bias, out, p);
  else
    conv2d_forward<double>(x, w, bias, out, p);
}

void CpuBackend::conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy,
                                 const Tensor& gx, const Tensor& gw, const Tensor& gb,
                                 const Conv2dParams& p, const Tensor& relu_out) {
  check_float(x, "conv2d_backward");
  for (const Tensor* t : {&x, &w, &gy, &gx, &gw, &gb, &relu_out})
    check_contig(*t, "conv2d_backward", "tensor");
  MOX_CHECK(!relu_out.defined() || (relu_out.shape() == gy.shape() && relu_out.dtype() == gy.dtype()),
            "conv2d_backward", "relu_out " + relu_out.desc() + " must match gy " + gy.desc());
  if (x.dtype() == DType::F32)
    conv2d_backward_impl<float>(x, w, gy, gx, gw, gb, p, relu_out);
  else
    conv2d_backward_impl<double>(x, w, gy, gx, gw, gb, p, relu_out);
}

}  // namespace mox
