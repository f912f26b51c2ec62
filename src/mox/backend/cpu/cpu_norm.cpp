// Row kernels over contiguous [rows, n]: softmax / log-softmax, layer norm and the fused
// softmax cross-entropy, forward and backward. Rows are split across threads; each row is
// processed by a function compiled per instruction set (MOX_SIMD). Reductions in a row
// use a fixed number of lanes so that GCC vectorises them without -ffast-math and the
// summation order (hence the result) does not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mox/backend/arg_checks.h"
#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/cpu/simd.h"

namespace mox {

namespace {

// e^x inside the row kernels: the vectorisable f32 polynomial, libm in f64.
MOX_INLINE float exp_t(float x) { return simd::expf_fast(x); }
MOX_INLINE double exp_t(double x) { return std::exp(x); }

// Lanes per accumulator block: two 512-bit registers' worth.
template <typename T> constexpr int kLanes = 128 / sizeof(T);

template <typename T> MOX_INLINE T fold(const T* acc) {
  T s = 0;
  for (int j = 0; j < kLanes<T>; j++) s += acc[j];
  return s;
}

template <typename T> MOX_INLINE T row_max(const T* x, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L];
  for (int j = 0; j < L; j++) acc[j] = -std::numeric_limits<T>::infinity();
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int j = 0; j < L; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  T m = -std::numeric_limits<T>::infinity();
  for (int j = 0; j < L; j++) m = acc[j] > m ? acc[j] : m;
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

template <typename T> MOX_INLINE T row_sum(const T* x, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int j = 0; j < L; j++) acc[j] += x[i + j];
  T s = fold(acc);
  for (; i < n; i++) s += x[i];
  return s;
}

template <typename T> MOX_INLINE T row_dot(const T* a, const T* b, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int j = 0; j < L; j++) acc[j] += a[i + j] * b[i + j];
  T s = fold(acc);
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

// y = exp(x - m), returns sum(y)
template <typename T> MOX_INLINE T exp_shift_sum(const T* x, T m, T* y, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int j = 0; j < L; j++) {
      T e = exp_t(x[i + j] - m);
      y[i + j] = e;
      acc[j] += e;
    }
  T s = fold(acc);
  for (; i < n; i++) {
    T e = exp_t(x[i] - m);
    y[i] = e;
    s += e;
  }
  return s;
}

// sum(exp(x - m)) without storing
template <typename T> MOX_INLINE T exp_sum(const T* x, T m, int64_t n) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int j = 0; j < L; j++) acc[j] += exp_t(x[i + j] - m);
  T s = fold(acc);
  for (; i < n; i++) s += exp_t(x[i] - m);
  return s;
}

// ---- softmax: x (n) -> y (n) ----
template <typename T> MOX_INLINE void softmax_row(const T* x, T* y, int64_t n, bool log) {
  T m = row_max(x, n);
  if (m == -std::numeric_limits<T>::infinity()) m = 0;  // all -inf: avoid inf - inf
  if (log) {
    T lse = m + std::log(exp_sum(x, m, n));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] - lse;
  } else {
    T inv = T(1) / exp_shift_sum(x, m, y, n);
    for (int64_t i = 0; i < n; i++) y[i] *= inv;
  }
}

// softmax: gx = y * (gy - sum(gy*y)); log-softmax: gx = gy - exp(y) * sum(gy)
template <typename T>
MOX_INLINE void softmax_back_row(const T* y, const T* gy, T* gx, int64_t n, bool log) {
  if (log) {
    T s = row_sum(gy, n);
    for (int64_t i = 0; i < n; i++) gx[i] = gy[i] - exp_t(y[i]) * s;
  } else {
    T s = row_dot(gy, y, n);
    for (int64_t i = 0; i < n; i++) gx[i] = y[i] * (gy[i] - s);
  }
}

// ---- layer norm: x (n) -> y (n); mean and 1/std of the row ----
template <typename T>
MOX_INLINE void layer_norm_row(const T* x, const T* w, const T* b, T eps, T* y, T* mean_out,
                                      T* rstd_out, int64_t n) {
  constexpr int L = kLanes<T>;
  T mean = row_sum(x, n) / T(n);
  // Two passes (mean, then squared deviations) keep the variance accurate for large means.
  T acc[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int j = 0; j < L; j++) {
      T d = x[i + j] - mean;
      acc[j] += d * d;
    }
  T ss = fold(acc);
  for (; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
  T rstd = T(1) / std::sqrt(ss / T(n) + eps);
  if (w && b)
    for (int64_t k = 0; k < n; k++) y[k] = (x[k] - mean) * rstd * w[k] + b[k];
  else if (w)
    for (int64_t k = 0; k < n; k++) y[k] = (x[k] - mean) * rstd * w[k];
  else if (b)
    for (int64_t k = 0; k < n; k++) y[k] = (x[k] - mean) * rstd + b[k];
  else
    for (int64_t k = 0; k < n; k++) y[k] = (x[k] - mean) * rstd;
  *mean_out = mean;
  *rstd_out = rstd;
}

// gx = rstd * (dxh - mean(dxh) - xhat * mean(dxh * xhat)), dxh = gy * w, xhat = (x-mean)*rstd;
// pw += gy * xhat, pb += gy (partial sums of this thread's rows).
template <typename T>
MOX_INLINE void layer_norm_back_row(const T* gy, const T* x, const T* w, T mean, T rstd,
                                           T* gx, T* pw, T* pb, int64_t n) {
  constexpr int L = kLanes<T>;
  T a1[L] = {}, a2[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int j = 0; j < L; j++) {
      T d = w ? gy[i + j] * w[i + j] : gy[i + j];
      a1[j] += d;
      a2[j] += d * (x[i + j] - mean);
    }
  T s1 = fold(a1), s2 = fold(a2);
  for (; i < n; i++) {
    T d = w ? gy[i] * w[i] : gy[i];
    s1 += d;
    s2 += d * (x[i] - mean);
  }
  const T c1 = s1 / T(n), c2 = s2 * rstd / T(n);  // mean(dxh), mean(dxh * xhat)
  if (gx) {
    if (w)
      for (int64_t k = 0; k < n; k++)
        gx[k] = rstd * (gy[k] * w[k] - c1 - (x[k] - mean) * rstd * c2);
    else
      for (int64_t k = 0; k < n; k++) gx[k] = rstd * (gy[k] - c1 - (x[k] - mean) * rstd * c2);
  }
  if (pw)
    for (int64_t k = 0; k < n; k++) pw[k] += gy[k] * (x[k] - mean) * rstd;
  if (pb)
    for (int64_t k = 0; k < n; k++) pb[k] += gy[k];
}

// ---- cross-entropy over one row of logits z (n) with class t (t < 0: ignored) ----
// loss = (1-eps) * -logp[t] + eps/n * sum_j -logp[j]
// grad = (softmax - (1-eps) onehot(t) - eps/n) * scale
template <typename T>
MOX_INLINE T cross_entropy_row(const T* z, int64_t t, T eps, T* g, T scale, int64_t n) {
  if (t < 0) {
    if (g) std::fill(g, g + n, T(0));
    return 0;
  }
  T m = row_max(z, n);
  T lse = m + std::log(exp_sum(z, m, n));
  T loss = (T(1) - eps) * (lse - z[t]);
  if (eps != T(0)) loss += eps / T(n) * (T(n) * lse - row_sum(z, n));
  if (g) {
    const T off = eps / T(n) * scale;
    for (int64_t j = 0; j < n; j++) g[j] = exp_t(z[j] - lse) * scale - off;
    g[t] -= (T(1) - eps) * scale;
  }
  return loss;
}

// Per-instruction-set entry points for f32; f64 (gradient tests) uses the portable code.
MOX_SIMD void softmax_rows_f32(const float* x, float* y, int64_t r0, int64_t r1, int64_t n,
                               bool log) {
  for (int64_t r = r0; r < r1; r++) softmax_row(x + r * n, y + r * n, n, log);
}
MOX_SIMD void softmax_back_rows_f32(const float* y, const float* gy, float* gx, int64_t r0,
                                    int64_t r1, int64_t n, bool log) {
  for (int64_t r = r0; r < r1; r++) softmax_back_row(y + r * n, gy + r * n, gx + r * n, n, log);
}
MOX_SIMD void layer_norm_rows_f32(const float* x, const float* w, const float* b, float eps,
                                  float* y, float* mean, float* rstd, int64_t r0, int64_t r1,
                                  int64_t n) {
  for (int64_t r = r0; r < r1; r++)
    layer_norm_row(x + r * n, w, b, eps, y + r * n, mean + r, rstd + r, n);
}
MOX_SIMD void layer_norm_back_rows_f32(const float* gy, const float* x, const float* w,
                                       const float* mean, const float* rstd, float* gx,
                                       float* pw, float* pb, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; r++)
    layer_norm_back_row(gy + r * n, x + r * n, w, mean[r], rstd[r], gx ? gx + r * n : nullptr,
                        pw, pb, n);
}
MOX_SIMD void cross_entropy_rows_f32(const float* z, const int64_t* t, float eps, float* loss,
                                     float* g, float scale, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; r++)
    loss[r] = cross_entropy_row(z + r * n, t[r], eps, g ? g + r * n : nullptr, scale, n);
}

void softmax_rows(const float* x, float* y, int64_t r0, int64_t r1, int64_t n, bool log) {
  softmax_rows_f32(x, y, r0, r1, n, log);
}
void softmax_rows(const double* x, double* y, int64_t r0, int64_t r1, int64_t n, bool log) {
  for (int64_t r = r0; r < r1; r++) softmax_row(x + r * n, y + r * n, n, log);
}
void softmax_back_rows(const float* y, const float* gy, float* gx, int64_t r0, int64_t r1,
                       int64_t n, bool log) {
  softmax_back_rows_f32(y, gy, gx, r0, r1, n, log);
}
void softmax_back_rows(const double* y, const double* gy, double* gx, int64_t r0, int64_t r1,
                       int64_t n, bool log) {
  for (int64_t r = r0; r < r1; r++) softmax_back_row(y + r * n, gy + r * n, gx + r * n, n, log);
}
void layer_norm_rows(const float* x, const float* w, const float* b, float eps, float* y,
                     float* mean, float* rstd, int64_t r0, int64_t r1, int64_t n) {
  layer_norm_rows_f32(x, w, b, eps, y, mean, rstd, r0, r1, n);
}
void layer_norm_rows(const double* x, const double* w, const double* b, double eps, double* y,
                     double* mean, double* rstd, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; r++)
    layer_norm_row(x + r * n, w, b, eps, y + r * n, mean + r, rstd + r, n);
}
void layer_norm_back_rows(const float* gy, const float* x, const float* w, const float* mean,
                          const float* rstd, float* gx, float* pw, float* pb, int64_t r0,
                          int64_t r1, int64_t n) {
  layer_norm_back_rows_f32(gy, x, w, mean, rstd, gx, pw, pb, r0, r1, n);
}
void layer_norm_back_rows(const double* gy, const double* x, const double* w, const double* mean,
                          const double* rstd, double* gx, double* pw, double* pb, int64_t r0,
                          int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; r++)
    layer_norm_back_row(gy + r * n, x + r * n, w, mean[r], rstd[r], gx ? gx + r * n : nullptr,
                        pw, pb, n);
}
void cross_entropy_rows(const float* z, const int64_t* t, float eps, float* loss, float* g,
                        float scale, int64_t r0, int64_t r1, int64_t n) {
  cross_entropy_rows_f32(z, t, eps, loss, g, scale, r0, r1, n);
}
void cross_entropy_rows(const double* z, const int64_t* t, double eps, double* loss, double* g,
                        double scale, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; r++)
    loss[r] = cross_entropy_row(z + r * n, t[r], eps, g ? g + r * n : nullptr, scale, n);
}

// Splits rows [0, rows) into one static block per thread and calls fn(t, r0, r1).
template <typename Fn> void parallel_rows(int64_t rows, int64_t n, int nt, Fn&& fn) {
  if (nt <= 1) {
    fn(0, 0, rows);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    fn(t, rows * t / T, rows * (t + 1) / T);
  }
}

// Rows x n of a 2-D contiguous tensor (a 1-D tensor is one row).
void rows_cols(const Tensor& x, const char* op, int64_t& rows, int64_t& n) {
  if (x.dtype() != DType::F32 && x.dtype() != DType::F64)
    throw Error(op, "CPU kernel supports f32 and f64, got " + x.desc());
  arg_checks::row_shape(x, op, rows, n);
}

using arg_checks::check_like;

template <typename T>
void layer_norm_backward_impl(const Tensor& gy, const Tensor& x, const Tensor& w,
                              const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                              const Tensor& gw, const Tensor& gb, int64_t rows, int64_t n) {
  int nt = cpu::threads_for(rows * n, 16384);
  nt = int(std::min<int64_t>(nt, std::max<int64_t>(rows, 1)));
  bool need_w = gw.defined(), need_b = gb.defined();
  // Per-thread partial sums of gw and gb, added in thread order afterwards.
  Tensor parts = (need_w || need_b) ? zeros({nt, 2, n}, dtype_of<T>()) : Tensor();
  const T* wd = w.defined() ? w.data<T>() : nullptr;
  parallel_rows(rows, n, nt, [&](int t, int64_t r0, int64_t r1) {
    T* pw = need_w ? parts.data<T>() + (t * 2) * n : nullptr;
    T* pb = need_b ? parts.data<T>() + (t * 2 + 1) * n : nullptr;
    layer_norm_back_rows(gy.data<T>(), x.data<T>(), wd, mean.data<T>(), rstd.data<T>(),
                         gx.defined() ? gx.data<T>() : nullptr, pw, pb, r0, r1, n);
  });
  for (int k = 0; k < 2; k++) {
    const Tensor& out = k == 0 ? gw : gb;
    if (!out.defined()) continue;
    T* o = out.data<T>();
    const T* p = parts.data<T>();
    std::memcpy(o, p + k * n, size_t(n) * sizeof(T));
    for (int t = 1; t < nt; t++)
      for (int64_t i = 0; i < n; i++) o[i] += p[(t * 2 + k) * n + i];
  }
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& out, bool log) {
  int64_t rows, n;
  rows_cols(x, "softmax", rows, n);
  check_like(out, x, "softmax", "output");
  int nt = cpu::threads_for(rows * n, 16384);
  nt = int(std::min<int64_t>(nt, std::max<int64_t>(rows, 1)));
  if (x.dtype() == DType::F32)
    parallel_rows(rows, n, nt, [&](int, int64_t r0, int64_t r1) {
      softmax_rows(x.data<float>(), out.data<float>(), r0, r1, n, log);
    });
  else
    parallel_rows(rows, n, nt, [&](int, int64_t r0, int64_t r1) {
      softmax_rows(x.data<double>(), out.data<double>(), r0, r1, n, log);
    });
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  int64_t rows, n;
  rows_cols(y, "softmax_backward", rows, n);
  check_like(gy, y, "softmax_backward", "gradient");
  check_like(gx, y, "softmax_backward", "input gradient");
  int nt = cpu::threads_for(rows * n, 16384);
  nt = int(std::min<int64_t>(nt, std::max<int64_t>(rows, 1)));
  if (y.dtype() == DType::F32)
    parallel_rows(rows, n, nt, [&](int, int64_t r0, int64_t r1) {
      softmax_back_rows(y.data<float>(), gy.data<float>(), gx.data<float>(), r0, r1, n, log);
    });
  else
    parallel_rows(rows, n, nt, [&](int, int64_t r0, int64_t r1) {
      softmax_back_rows(y.data<double>(), gy.data<double>(), gx.data<double>(), r0, r1, n, log);
    });
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                            const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  int64_t rows, n;
  rows_cols(x, "layer_norm", rows, n);
  check_like(out, x, "layer_norm", "output");
  for (const Tensor* t : {&w, &b})
    if (t->defined() && (t->dtype() != x.dtype() || !t->is_contiguous() || t->numel() != n))
      throw Error("layer_norm", "weight/bias must be contiguous " +
                                    std::string(dtype_name(x.dtype())) + "[" + std::to_string(n) +
                                    "], got " + t->desc());
  for (const Tensor* t : {&mean, &rstd})
    if (t->dtype() != x.dtype() || t->numel() != rows || !t->is_contiguous())
      throw Error("layer_norm", "mean/rstd must be contiguous [" + std::to_string(rows) +
                                    "] like the input, got " + t->desc());
  int nt = cpu::threads_for(rows * n, 16384);
  nt = int(std::min<int64_t>(nt, std::max<int64_t>(rows, 1)));
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* wd = w.defined() ? w.data<T>() : nullptr;
    const T* bd = b.defined() ? b.data<T>() : nullptr;
    parallel_rows(rows, n, nt, [&](int, int64_t r0, int64_t r1) {
      layer_norm_rows(x.data<T>(), wd, bd, T(eps), out.data<T>(), mean.data<T>(), rstd.data<T>(),
                      r0, r1, n);
    });
  };
  if (x.dtype() == DType::F32)
    run(float());
  else
    run(double());
}

void CpuBackend::layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                     const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                                     const Tensor& gw, const Tensor& gb) {
  int64_t rows, n;
  rows_cols(x, "layer_norm_backward", rows, n);
  check_like(gy, x, "layer_norm_backward", "gradient");
  check_like(gx, x, "layer_norm_backward", "input gradient");
  if (x.dtype() == DType::F32)
    layer_norm_backward_impl<float>(gy, x, w, mean, rstd, gx, gw, gb, rows, n);
  else
    layer_norm_backward_impl<double>(gy, x, w, mean, rstd, gx, gw, gb, rows, n);
}

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, double smoothing,
                               const Tensor& losses, const Tensor& grad, double grad_scale) {
  int64_t rows, n;
  rows_cols(logits, "cross_entropy", rows, n);
  if (target.dtype() != DType::I64 || !target.is_contiguous() || target.numel() != rows)
    throw Error("cross_entropy", "target must be contiguous i64[" + std::to_string(rows) +
                                     "], got " + target.desc());
  if (losses.dtype() != logits.dtype() || !losses.is_contiguous() || losses.numel() != rows)
    throw Error("cross_entropy", "losses must be contiguous " +
                                     std::string(dtype_name(logits.dtype())) + "[" +
                                     std::to_string(rows) + "], got " + losses.desc());
  check_like(grad, logits, "cross_entropy", "gradient");
  const int64_t* td = target.data<int64_t>();
  for (int64_t r = 0; r < rows; r++)
    if (td[r] >= n)
      throw Error("cross_entropy", "target " + std::to_string(td[r]) + " at row " +
                                       std::to_string(r) + " is out of range for " +
                                       std::to_string(n) + " classes");
  int nt = cpu::threads_for(rows * n, 16384);
  nt = int(std::min<int64_t>(nt, std::max<int64_t>(rows, 1)));
  if (logits.dtype() == DType::F32)
    parallel_rows(rows, n, nt, [&](int, int64_t r0, int64_t r1) {
      cross_entropy_rows(logits.data<float>(), td, float(smoothing), losses.data<float>(),
                         grad.defined() ? grad.data<float>() : nullptr, float(grad_scale), r0,
                         r1, n);
    });
  else
    parallel_rows(rows, n, nt, [&](int, int64_t r0, int64_t r1) {
      cross_entropy_rows(logits.data<double>(), td, smoothing, losses.data<double>(),
                         grad.defined() ? grad.data<double>() : nullptr, grad_scale, r0, r1, n);
    });
}

}  // namespace mox
