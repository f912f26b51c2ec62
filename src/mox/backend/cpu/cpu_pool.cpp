// Max and average 2-D pooling over the last two dimensions (planes, H, W), forward and
// backward, f32/f64 (max pooling's forward also u8, for quantised CNNs). Threads split the
// planes; max pooling records the argmax of each window (as h*W+w) for its backward pass.
// u8 max pooling without indices also takes channels-last tensors (shape [N, C, H, W],
// memory [N, H, W, C], as quantised convolutions produce them) and writes a channels-last
// output: the max runs over contiguous C-vectors of the window's taps.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "mox/backend/cpu/conv_internal.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/cpu/simd.h"

namespace mox {

namespace {

struct PoolGeom {
  int64_t planes, H, W, Ho, Wo;
};
PoolGeom pool_geometry(const Tensor& x, const Tensor& y) {
  int64_t nd = x.dim();
  PoolGeom g;
  g.H = x.size(nd - 2), g.W = x.size(nd - 1);
  g.Ho = y.size(nd - 2), g.Wo = y.size(nd - 1);
  g.planes = g.H * g.W == 0 ? 0 : x.numel() / (g.H * g.W);
  return g;
}

// Whether v replaces the running maximum: larger, or NaN (NaN wins like in PyTorch), and the
// first NaN stays. Written as a select, not a branch: on real data the comparison is a coin
// toss, and mispredicted branches made this loop slower than the convolutions around it.
template <typename T>
MOX_INLINE bool pool_take(T v, T best) {
  return ((v > best) | (v != v)) & (best == best);  // bitwise: no short-circuit branches
}

// One plane of 2x2 stride-2 unpadded max pooling (the common case), 8 outputs at a time
// with GCC vector extensions (each ISA clone gets its own instructions): even and odd input
// columns are split by shuffles, maxima and argmaxes are selects.
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef int64_t v8l __attribute__((vector_size(64)));

// pool_take() on 8 lanes (a macro: vector arguments would change the ABI of a function)
#define MOX_POOL_TAKE8(v, best) (((v) > (best)) | ((v) != (v))) & ((best) == (best))

template <typename T>
MOX_INLINE void max_pool_2x2_plane(const T* __restrict xp, const T* xend, int64_t W, int64_t Ho,
                                   int64_t Wo, T* __restrict yp, int64_t* __restrict ip) {
  constexpr bool vec = std::is_same_v<T, float>;
  const v8i even = {0, 2, 4, 6, 8, 10, 12, 14}, odd = {1, 3, 5, 7, 9, 11, 13, 15};
  const v8i lane2 = {0, 2, 4, 6, 8, 10, 12, 14};
  for (int64_t oh = 0; oh < Ho; oh++) {
    const T* r0 = xp + 2 * oh * W;
    const T* r1 = r0 + W;
    T* y = yp + oh * Wo;
    int64_t* id = ip ? ip + oh * Wo : nullptr;
    const int64_t base = 2 * oh * W;
    int64_t ow = 0;
    if constexpr (vec) {
      // 8 outputs at a time, also the last (partial) group so that narrow planes (13 or 5
      // outputs wide in the seed CNN) stay vectorised: its loads run past the row into the
      // next one (lanes that are never stored) or, at the end of the input, go through
      // zero-padded copies
      for (; ow < Wo; ow += 8) {
        const int64_t n = std::min<int64_t>(8, Wo - ow);
        v8f a0, a1, b0, b1;
        if (r1 + 2 * ow + 16 <= xend) {
          __builtin_memcpy(&a0, r0 + 2 * ow, 32);
          __builtin_memcpy(&a1, r0 + 2 * ow + 8, 32);
          __builtin_memcpy(&b0, r1 + 2 * ow, 32);
          __builtin_memcpy(&b1, r1 + 2 * ow + 8, 32);
        } else {
          float ta[16] = {}, tb[16] = {};
          for (int64_t k = 0; k < 2 * n; k++) ta[k] = r0[2 * ow + k], tb[k] = r1[2 * ow + k];
          __builtin_memcpy(&a0, ta, 32);
          __builtin_memcpy(&a1, ta + 8, 32);
          __builtin_memcpy(&b0, tb, 32);
          __builtin_memcpy(&b1, tb + 8, 32);
        }
        const v8f x00 = __builtin_shuffle(a0, a1, even), x01 = __builtin_shuffle(a0, a1, odd);
        const v8f x10 = __builtin_shuffle(b0, b1, even), x11 = __builtin_shuffle(b0, b1, odd);
        v8f best = x00;
        const v8i m1 = MOX_POOL_TAKE8(x01, best);
        best = m1 ? x01 : best;
        const v8i m2 = MOX_POOL_TAKE8(x10, best);
        best = m2 ? x10 : best;
        const v8i m3 = MOX_POOL_TAKE8(x11, best);
        best = m3 ? x11 : best;
        v8l wide = {};
        if (id) {
          const v8i c = lane2 + int32_t(base + 2 * ow);
          v8i arg = m1 ? c + 1 : c;
          arg = m2 ? c + int32_t(W) : arg;
          arg = m3 ? c + int32_t(W + 1) : arg;
          wide = __builtin_convertvector(arg, v8l);
        }
        if (n == 8) {
          __builtin_memcpy(y + ow, &best, 32);
          if (id) __builtin_memcpy(id + ow, &wide, 64);
        } else {
          for (int64_t k = 0; k < n; k++) y[ow + k] = best[k];
          if (id)
            for (int64_t k = 0; k < n; k++) id[ow + k] = wide[k];
        }
      }
    }
    for (; ow < Wo; ow++) {
      T best = r0[2 * ow];
      int64_t arg = base + 2 * ow;
      T v = r0[2 * ow + 1];
      bool t = pool_take(v, best);
      best = t ? v : best, arg = t ? base + 2 * ow + 1 : arg;
      v = r1[2 * ow];
      t = pool_take(v, best);
      best = t ? v : best, arg = t ? base + W + 2 * ow : arg;
      v = r1[2 * ow + 1];
      t = pool_take(v, best);
      best = t ? v : best, arg = t ? base + W + 2 * ow + 1 : arg;
      y[ow] = best;
      if (id) id[ow] = arg;
    }
  }
}

// One plane, any window: padding counts as -inf, so only in-image taps compete.
template <typename T>
MOX_INLINE void max_pool_plane(const T* xp, const PoolGeom& g, const Pool2dParams& p, T* yp,
                               int64_t* ip) {
  for (int64_t oh = 0; oh < g.Ho; oh++) {
    int64_t h0 = oh * p.stride_h - p.pad_h;
    int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, g.H);
    for (int64_t ow = 0; ow < g.Wo; ow++) {
      int64_t w0 = ow * p.stride_w - p.pad_w;
      int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + p.kw, g.W);
      T best = -std::numeric_limits<T>::infinity();
      int64_t arg = hs * g.W + ws;
      for (int64_t h = hs; h < he; h++)
        for (int64_t w = ws; w < we; w++) {
          T v = xp[h * g.W + w];
          bool t = pool_take(v, best);
          best = t ? v : best;
          arg = t ? h * g.W + w : arg;
        }
      yp[oh * g.Wo + ow] = best;
      if (ip) ip[oh * g.Wo + ow] = arg;
    }
  }
}

MOX_SIMD void max_pool_planes_f32(const float* x, const PoolGeom& g, const Pool2dParams& p,
                                  float* y, int64_t* id, int64_t pl0, int64_t pl1) {
  // (int32 indices inside the vector path: planes below 2^31 pixels)
  const bool two = p.kh == 2 && p.kw == 2 && p.stride_h == 2 && p.stride_w == 2 &&
                   p.pad_h == 0 && p.pad_w == 0 && 2 * g.Ho <= g.H && 2 * g.Wo <= g.W &&
                   g.H * g.W < (int64_t(1) << 31);
  for (int64_t pl = pl0; pl < pl1; pl++) {
    const int64_t o = pl * g.Ho * g.Wo;
    if (two)
      max_pool_2x2_plane(x + pl * g.H * g.W, x + pl1 * g.H * g.W, g.W, g.Ho, g.Wo, y + o,
                         id ? id + o : nullptr);
    else
      max_pool_plane(x + pl * g.H * g.W, g, p, y + o, id ? id + o : nullptr);
  }
}
void max_pool_planes(const double* x, const PoolGeom& g, const Pool2dParams& p, double* y,
                     int64_t* id, int64_t pl0, int64_t pl1) {
  for (int64_t pl = pl0; pl < pl1; pl++) {
    const int64_t o = pl * g.Ho * g.Wo;
    max_pool_plane(x + pl * g.H * g.W, g, p, y + o, id ? id + o : nullptr);
  }
}
void max_pool_planes(const float* x, const PoolGeom& g, const Pool2dParams& p, float* y,
                     int64_t* id, int64_t pl0, int64_t pl1) {
  max_pool_planes_f32(x, g, p, y, id, pl0, pl1);
}
// u8 (quantised CNN activations: max commutes with the monotone dequantisation). Padding is
// never a candidate (only in-image taps compete), so the running maximum starts at 0.
MOX_SIMD void max_pool_planes_u8(const uint8_t* x, const PoolGeom& g, const Pool2dParams& p,
                                 uint8_t* y, int64_t* id, int64_t pl0, int64_t pl1) {
  const bool two = p.kh == 2 && p.kw == 2 && p.stride_h == 2 && p.stride_w == 2 &&
                   p.pad_h == 0 && p.pad_w == 0 && 2 * g.Ho <= g.H && 2 * g.Wo <= g.W;
  for (int64_t pl = pl0; pl < pl1; pl++) {
    const int64_t o = pl * g.Ho * g.Wo;
    const uint8_t* xp = x + pl * g.H * g.W;
    if (two && !id) {
      // 2x2 stride 2 without indices (inference): a branch-free loop that vectorises.
      for (int64_t oh = 0; oh < g.Ho; oh++) {
        const uint8_t* __restrict r0 = xp + 2 * oh * g.W;
        const uint8_t* __restrict r1 = r0 + g.W;
        uint8_t* __restrict yo = y + o + oh * g.Wo;
        for (int64_t ow = 0; ow < g.Wo; ow++) {
          const uint8_t a = r0[2 * ow] > r0[2 * ow + 1] ? r0[2 * ow] : r0[2 * ow + 1];
          const uint8_t b = r1[2 * ow] > r1[2 * ow + 1] ? r1[2 * ow] : r1[2 * ow + 1];
          yo[ow] = a > b ? a : b;
        }
      }
    } else {
      max_pool_plane(xp, g, p, y + o, id ? id + o : nullptr);
    }
  }
}
void max_pool_planes(const uint8_t* x, const PoolGeom& g, const Pool2dParams& p, uint8_t* y,
                     int64_t* id, int64_t pl0, int64_t pl1) {
  max_pool_planes_u8(x, g, p, y, id, pl0, pl1);
}

// Channels-last u8: x memory [N, H, W, C], y memory [N, Ho, Wo, C]; rows r0..r1 of the
// N * Ho output rows. Only in-image taps compete (padding never wins), running max from 0.
MOX_SIMD void max_pool_cl_u8_rows(const uint8_t* x, int64_t C, int64_t H, int64_t W, int64_t Ho,
                                  int64_t Wo, const Pool2dParams& p, uint8_t* y, int64_t r0, int64_t r1) {
  const bool two = p.kh == 2 && p.kw == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
                   p.pad_w == 0 && 2 * Ho <= H && 2 * Wo <= W;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t n = r / Ho, oh = r % Ho;
    const uint8_t* xn = x + n * H * W * C;
    uint8_t* __restrict yr = y + r * Wo * C;
    if (two) {
      const uint8_t* __restrict a = xn + (2 * oh) * W * C;
      const uint8_t* __restrict b = a + W * C;
      for (int64_t ow = 0; ow < Wo; ow++) {
        const uint8_t* __restrict a0 = a + 2 * ow * C;
        const uint8_t* __restrict b0 = b + 2 * ow * C;
        uint8_t* __restrict o = yr + ow * C;
        for (int64_t c = 0; c < C; c++) {
          const uint8_t u = a0[c] > a0[c + C] ? a0[c] : a0[c + C];
          const uint8_t v = b0[c] > b0[c + C] ? b0[c] : b0[c + C];
          o[c] = u > v ? u : v;
        }
      }
      continue;
    }
    for (int64_t ow = 0; ow < Wo; ow++) {
      uint8_t* __restrict o = yr + ow * C;
      for (int64_t c = 0; c < C; c++) o[c] = 0;
      for (int64_t i = 0; i < p.kh; i++) {
        const int64_t ih = oh * p.stride_h - p.pad_h + i;
        if (ih < 0 || ih >= H) continue;
        for (int64_t j = 0; j < p.kw; j++) {
          const int64_t iw = ow * p.stride_w - p.pad_w + j;
          if (iw < 0 || iw >= W) continue;
          const uint8_t* __restrict t = xn + (ih * W + iw) * C;
          for (int64_t c = 0; c < C; c++) o[c] = t[c] > o[c] ? t[c] : o[c];
        }
      }
    }
  }
}

// Dense channels-last [N, C, H, W] (strides [H*W*C, 1, W*C, C]; size-1 dims any stride).
bool channels_last_dense(const Tensor& t) {
  if (t.dim() != 4) return false;
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  const int64_t expect[4] = {H * W * C, 1, W * C, C};
  for (int d = 0; d < 4; d++)
    if (t.size(d) > 1 && t.stride(d) != expect[d]) return false;
  return true;
}

void max_pool_channels_last_u8(const Tensor& x, const Tensor& y, const Pool2dParams& p) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = y.size(2), Wo = y.size(3);
  const uint8_t* xd = x.data<uint8_t>();
  uint8_t* yd = y.data<uint8_t>();
  const int64_t rows = N * Ho;
  const int nt = cpu::threads_for(rows * Wo * C * p.kh * p.kw);
  if (nt <= 1) {
    max_pool_cl_u8_rows(xd, C, H, W, Ho, Wo, p, yd, 0, rows);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
    max_pool_cl_u8_rows(xd, C, H, W, Ho, Wo, p, yd, cpu::conv::part(rows, t, T_), cpu::conv::part(rows, t + 1, T_));
  }
}

// x (planes,H,W) -> y (planes,Ho,Wo), idx (planes,Ho,Wo) = argmax as h*W+w
template <typename T>
void max_pool_forward(const Tensor& x, const Tensor& y, const Tensor& indices,
                      const Pool2dParams& p) {
  PoolGeom g = pool_geometry(x, y);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  int64_t* id = indices.defined() ? indices.data<int64_t>() : nullptr;
  int nt = cpu::threads_for(g.planes * g.Ho * g.Wo * p.kh * p.kw);
  if (nt <= 1) {
    max_pool_planes(xd, g, p, yd, id, 0, g.planes);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
    max_pool_planes(xd, g, p, yd, id, cpu::conv::part(g.planes, t, T_),
                    cpu::conv::part(g.planes, t + 1, T_));
  }
}

template <typename T>
void max_pool_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  PoolGeom g = pool_geometry(gx, gy);
  const T* gyd = gy.data<T>();
  const int64_t* id = indices.data<int64_t>();
  T* gxd = gx.data<T>();
  const int64_t HW = g.H * g.W, P = g.Ho * g.Wo;
  int nt = cpu::threads_for(g.planes * (HW + P));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    T* gp = gxd + pl * HW;
    std::fill(gp, gp + HW, T(0));
    for (int64_t i = 0; i < P; i++) gp[id[pl * P + i]] += gyd[pl * P + i];
  }
}

// Window of output (oh, ow) clipped to the image, and the divisor PyTorch uses.
struct AvgWindow {
  int64_t hs, he, ws, we, div;
};
inline AvgWindow avg_window(int64_t oh, int64_t ow, const PoolGeom& g, const Pool2dParams& p) {
  int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
  int64_t he = std::min(hs + p.kh, g.H + p.pad_h), we = std::min(ws + p.kw, g.W + p.pad_w);
  int64_t pool = (he - hs) * (we - ws);  // includes padding, not the ceil_mode overhang
  hs = std::max<int64_t>(hs, 0), ws = std::max<int64_t>(ws, 0);
  he = std::min(he, g.H), we = std::min(we, g.W);
  int64_t div = p.count_include_pad ? pool : (he - hs) * (we - ws);
  return {hs, he, ws, we, div};
}

template <typename T>
void avg_pool_forward(const Tensor& x, const Tensor& y, const Pool2dParams& p) {
  PoolGeom g = pool_geometry(x, y);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  int nt = cpu::threads_for(g.planes * g.Ho * g.Wo * p.kh * p.kw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    const T* xp = xd + pl * g.H * g.W;
    for (int64_t oh = 0; oh < g.Ho; oh++)
      for (int64_t ow = 0; ow < g.Wo; ow++) {
        AvgWindow a = avg_window(oh, ow, g, p);
        T s = 0;
        for (int64_t h = a.hs; h < a.he; h++)
          for (int64_t w = a.ws; w < a.we; w++) s += xp[h * g.W + w];
        yd[(pl * g.Ho + oh) * g.Wo + ow] = a.hs >= a.he || a.ws >= a.we ? T(0) : s / T(a.div);
      }
  }
}

template <typename T>
void avg_pool_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) {
  PoolGeom g = pool_geometry(gx, gy);
  const T* gyd = gy.data<T>();
  T* gxd = gx.data<T>();
  int nt = cpu::threads_for(g.planes * g.Ho * g.Wo * p.kh * p.kw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    T* gp = gxd + pl * g.H * g.W;
    std::fill(gp, gp + g.H * g.W, T(0));
    for (int64_t oh = 0; oh < g.Ho; oh++)
      for (int64_t ow = 0; ow < g.Wo; ow++) {
        AvgWindow a = avg_window(oh, ow, g, p);
        if (a.hs >= a.he || a.ws >= a.we) continue;
        T v = gyd[(pl * g.Ho + oh) * g.Wo + ow] / T(a.div);
        for (int64_t h = a.hs; h < a.he; h++)
          for (int64_t w = a.ws; w < a.we; w++) gp[h * g.W + w] += v;
      }
  }
}

}  // namespace

using cpu::conv::check_contig;
using cpu::conv::check_float;

void CpuBackend::max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices,
                            const Pool2dParams& p) {
  if (x.dtype() != DType::U8) check_float(x, "max_pool2d");
  if (x.dtype() == DType::U8 && !indices.defined() && out.dtype() == DType::U8 &&
      channels_last_dense(x) && channels_last_dense(out) && !(x.is_contiguous() && out.is_contiguous())) {
    max_pool_channels_last_u8(x, out, p);  // (a channels-last input with an NCHW output fails below)
    return;
  }
  check_contig(x, "max_pool2d", "input");
  if (x.dtype() == DType::F32)
    max_pool_forward<float>(x, out, indices, p);
  else if (x.dtype() == DType::U8)
    max_pool_forward<uint8_t>(x, out, indices, p);
  else
    max_pool_forward<double>(x, out, indices, p);
}

void CpuBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  check_float(gy, "max_pool2d_backward");
  check_contig(gy, "max_pool2d_backward", "gradient");
  check_contig(indices, "max_pool2d_backward", "indices");
  if (gy.dtype() == DType::F32)
    max_pool_backward<float>(gy, indices, gx);
  else
    max_pool_backward<double>(gy, indices, gx);
}

void CpuBackend::avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p) {
  check_float(x, "avg_pool2d");
  check_contig(x, "avg_pool2d", "input");
  if (x.dtype() == DType::F32)
    avg_pool_forward<float>(x, out, p);
  else
    avg_pool_forward<double>(x, out, p);
}

void CpuBackend::avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) {
  check_float(gy, "avg_pool2d_backward");
  check_contig(gy, "avg_pool2d_backward", "gradient");
  if (gy.dtype() == DType::F32)
    avg_pool_backward<float>(gy, gx, p);
  else
    avg_pool_backward<double>(gy, gx, p);
}

}  // namespace mox
