// 2-D convolution (im2col + BLAS GEMM per group) and max/avg pooling, NCHW, f32/f64.
// Threads split the batch: each thread owns its column buffers (and, in backward, its
// weight-gradient partial sum, added up in thread order so results are deterministic).
// When the batch is smaller than the thread count, samples run one after another and the
// GEMMs use BLAS's own threads instead.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/cpu/simd.h"

namespace mox {

namespace {

// Row-major C[M,N] = alpha * op(A) op(B) + beta * C.
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                 int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// Geometry of one convolution, shared by forward and backward.
struct ConvGeom {
  int64_t N, C, H, W, O, Ho, Wo, kh, kw, G, Cg, Og;
  int64_t P;   // Ho*Wo: output pixels per plane
  int64_t Kc;  // Cg*kh*kw: rows of the column matrix (GEMM depth)
  Conv2dParams p;
  bool pointwise;  // 1x1, stride 1, no padding: the input plane already is the column matrix
};

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

// x (Cg,H,W) -> col (Cg*kh*kw, Ho*Wo); out-of-image taps are zero.
template <typename T>
void im2col(const T* x, const ConvGeom& g, T* col) {
  const Conv2dParams& p = g.p;
  for (int64_t c = 0; c < g.Cg; c++)
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

// col (Cg*kh*kw, Ho*Wo) -> gx (Cg,H,W), accumulating (gx must start zeroed).
template <typename T>
void col2im(const T* col, const ConvGeom& g, T* gx) {
  const Conv2dParams& p = g.p;
  for (int64_t c = 0; c < g.Cg; c++)
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

// Threads to split a batch of n samples over (1: run samples serially, BLAS threads inside).
int batch_threads(int64_t n, int64_t macs) {
  int t = omp_get_max_threads();
  if (t <= 1 || n < t || macs < (int64_t(1) << 22)) return 1;
  return t;
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
  int nt = batch_threads(g.N, g.N * g.O * g.P * g.Kc);
  Tensor cols;
  if (!g.pointwise) cols = empty({nt, g.Kc * g.P}, dtype_of<T>());
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t n = 0; n < g.N; n++) {
    T* col = g.pointwise ? nullptr : cols.data<T>() + omp_get_thread_num() * g.Kc * g.P;
    for (int64_t gi = 0; gi < g.G; gi++) {
      const T* xg = xd + (n * g.C + gi * g.Cg) * g.H * g.W;
      T* yg = yd + (n * g.O + gi * g.Og) * g.P;
      if (!g.pointwise) im2col(xg, g, col);
      const T* B = g.pointwise ? xg : col;
      // yg (Og,P) = w_g (Og,Kc) @ col (Kc,P) [+ bias broadcast over P]
      if (bd) {
        for (int64_t o = 0; o < g.Og; o++) std::fill(yg + o * g.P, yg + (o + 1) * g.P, bd[gi * g.Og + o]);
      }
      gemm(false, false, g.Og, g.P, g.Kc, T(1), wd + gi * g.Og * g.Kc, g.Kc, B, g.P,
           bd ? T(1) : T(0), yg, g.P);
    }
  }
}

// gy (N,O,Ho,Wo) -> gx (N,C,H,W), gw (O,Cg,kh,kw), gb (O); each optional.
template <typename T>
void conv2d_backward_impl(const Tensor& x, const Tensor& w, const Tensor& gy, const Tensor& gx,
                          const Tensor& gw, const Tensor& gb, const Conv2dParams& p) {
  ConvGeom g = geometry(x, w, gy, p);
  const T* xd = x.data<T>();
  const T* wd = w.data<T>();
  const T* gyd = gy.data<T>();
  if (gb.defined()) {
    T* gbd = gb.data<T>();
    // gb[o] = sum over n and pixels of gy[n,o,:]
    for (int64_t o = 0; o < g.O; o++) gbd[o] = T(0);
    for (int64_t n = 0; n < g.N; n++)
      for (int64_t o = 0; o < g.O; o++) {
        const T* r = gyd + (n * g.O + o) * g.P;
        T s = 0;
        for (int64_t i = 0; i < g.P; i++) s += r[i];
        gbd[o] += s;
      }
  }
  if (!gx.defined() && !gw.defined()) return;
  int nt = batch_threads(g.N, g.N * g.O * g.P * g.Kc);
  const int64_t wsize = g.O * g.Kc;
  // Per-thread scratch: im2col of x (for gw), column gradient (for gx), partial gw.
  bool need_col = gw.defined() && !g.pointwise;
  bool need_gcol = gx.defined() && !g.pointwise;
  Tensor cols = need_col ? empty({nt, g.Kc * g.P}, dtype_of<T>()) : Tensor();
  Tensor gcols = need_gcol ? empty({nt, g.Kc * g.P}, dtype_of<T>()) : Tensor();
  Tensor gw_parts = gw.defined() && nt > 1 ? empty({nt, wsize}, dtype_of<T>()) : Tensor();
  if (gx.defined()) std::fill(gx.data<T>(), gx.data<T>() + gx.numel(), T(0));

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
    const int64_t n0 = g.N * t / T_, n1 = g.N * (t + 1) / T_;
    T* col = need_col ? cols.data<T>() + t * g.Kc * g.P : nullptr;
    T* gcol = need_gcol ? gcols.data<T>() + t * g.Kc * g.P : nullptr;
    T* gwt = !gw.defined() ? nullptr : (nt > 1 ? gw_parts.data<T>() + t * wsize : gw.data<T>());
    for (int64_t n = n0; n < n1; n++) {
      for (int64_t gi = 0; gi < g.G; gi++) {
        const T* xg = xd + (n * g.C + gi * g.Cg) * g.H * g.W;
        const T* gyg = gyd + (n * g.O + gi * g.Og) * g.P;
        const T* wg = wd + gi * g.Og * g.Kc;
        if (gwt) {
          // gw_g (Og,Kc) += gy_g (Og,P) @ col^T (P,Kc)
          const T* B = xg;
          if (!g.pointwise) {
            im2col(xg, g, col);
            B = col;
          }
          gemm(false, true, g.Og, g.Kc, g.P, T(1), gyg, g.P, B, g.P, n == n0 ? T(0) : T(1),
               gwt + gi * g.Og * g.Kc, g.Kc);
        }
        if (gx.defined()) {
          // gcol (Kc,P) = w_g^T (Kc,Og) @ gy_g (Og,P), scattered back onto the image
          T* gxg = gx.data<T>() + (n * g.C + gi * g.Cg) * g.H * g.W;
          if (g.pointwise) {
            gemm(true, false, g.Kc, g.P, g.Og, T(1), wg, g.Kc, gyg, g.P, T(0), gxg, g.P);
          } else {
            gemm(true, false, g.Kc, g.P, g.Og, T(1), wg, g.Kc, gyg, g.P, T(0), gcol, g.P);
            col2im(gcol, g, gxg);
          }
        }
      }
    }
    if (gwt && n1 == n0) std::fill(gwt, gwt + wsize, T(0));  // a thread without samples
  }
  if (gw.defined() && nt > 1) {
    // Sum the partials in thread order (deterministic for a given thread count).
    T* out = gw.data<T>();
    const T* parts = gw_parts.data<T>();
    std::memcpy(out, parts, size_t(wsize) * sizeof(T));
    for (int t = 1; t < nt; t++)
      for (int64_t i = 0; i < wsize; i++) out[i] += parts[t * wsize + i];
  }
  if (gw.defined() && g.N == 0) std::fill(gw.data<T>(), gw.data<T>() + wsize, T(0));
}

// ---- pooling ----

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

// x (planes,H,W) -> y (planes,Ho,Wo), idx (planes,Ho,Wo) = argmax as h*W+w
template <typename T>
void max_pool_forward(const Tensor& x, const Tensor& y, const Tensor& indices,
                      const Pool2dParams& p) {
  PoolGeom g = pool_geometry(x, y);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  int64_t* id = indices.defined() ? indices.data<int64_t>() : nullptr;
  int nt = cpu::threads_for(g.planes * g.Ho * g.Wo * p.kh * p.kw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    const T* xp = xd + pl * g.H * g.W;
    for (int64_t oh = 0; oh < g.Ho; oh++) {
      int64_t h0 = oh * p.stride_h - p.pad_h;
      int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, g.H);
      for (int64_t ow = 0; ow < g.Wo; ow++) {
        int64_t w0 = ow * p.stride_w - p.pad_w;
        int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + p.kw, g.W);
        // Padding counts as -inf, so only in-image taps compete; NaN wins like in PyTorch.
        T best = -std::numeric_limits<T>::infinity();
        int64_t arg = hs * g.W + ws;
        for (int64_t h = hs; h < he; h++)
          for (int64_t w = ws; w < we; w++) {
            T v = xp[h * g.W + w];
            if (v > best || std::isnan(v)) {
              best = v;
              arg = h * g.W + w;
              if (std::isnan(v)) goto done;
            }
          }
      done:
        int64_t o = (pl * g.Ho + oh) * g.Wo + ow;
        yd[o] = best;
        if (id) id[o] = arg;
      }
    }
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

void check_float(const Tensor& t, const char* op) {
  if (t.dtype() != DType::F32 && t.dtype() != DType::F64)
    throw Error(op, std::string("CPU kernel supports f32 and f64, got ") + t.desc());
}

void check_contig(const Tensor& t, const char* op, const char* what) {
  if (t.defined() && !t.is_contiguous())
    throw Error(op, std::string(what) + " must be contiguous, got strides " +
                        shape_str(t.strides()) + " for " + t.desc());
}

}  // namespace

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
                                 const Conv2dParams& p) {
  check_float(x, "conv2d_backward");
  for (const Tensor* t : {&x, &w, &gy, &gx, &gw, &gb}) check_contig(*t, "conv2d_backward", "tensor");
  if (x.dtype() == DType::F32)
    conv2d_backward_impl<float>(x, w, gy, gx, gw, gb, p);
  else
    conv2d_backward_impl<double>(x, w, gy, gx, gw, gb, p);
}

void CpuBackend::max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices,
                            const Pool2dParams& p) {
  check_float(x, "max_pool2d");
  check_contig(x, "max_pool2d", "input");
  if (x.dtype() == DType::F32)
    max_pool_forward<float>(x, out, indices, p);
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
