// Fused Adam / AdamW step over contiguous parameters: one pass reads param, grad, m, v
// (and vmax for AMSGrad) and writes them back, following torch.optim.Adam(W) exactly:
//   g = grad (+ wd * param when weight decay is L2, i.e. Adam)
//   param *= 1 - lr * wd                                (AdamW: decoupled decay)
//   m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2
//   vmax = max(vmax, v)                                 (AMSGrad; the denominator uses vmax)
//   param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// in the same operation order as PyTorch, so f32 results agree with it to rounding.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/cpu/simd.h"

namespace mox {

namespace {

// Scalars of one step, computed once in double like PyTorch's Python-side arithmetic.
struct AdamScalars {
  double b1, b2, one_m_b1, one_m_b2, l2, decay, step_size, bc2_sqrt, eps;
};

AdamScalars scalars(const AdamParams& p) {
  AdamScalars s;
  s.b1 = p.beta1, s.b2 = p.beta2;
  s.one_m_b1 = 1.0 - p.beta1, s.one_m_b2 = 1.0 - p.beta2;
  s.l2 = p.decoupled ? 0.0 : p.weight_decay;
  s.decay = p.decoupled ? 1.0 - p.lr * p.weight_decay : 1.0;
  double bc1 = 1.0 - std::pow(p.beta1, double(p.step));
  double bc2 = 1.0 - std::pow(p.beta2, double(p.step));
  s.step_size = p.lr / bc1;
  s.bc2_sqrt = std::sqrt(bc2);
  s.eps = p.eps;
  return s;
}

// __builtin_sqrt, not std::sqrt: a libstdc++ inline function is not inlined into a clone
// compiled for another arch, and a call per element would stop vectorisation.
MOX_INLINE float sqrt_t(float x) { return __builtin_sqrtf(x); }
MOX_INLINE double sqrt_t(double x) { return __builtin_sqrt(x); }

template <typename T>
MOX_INLINE void adam_chunk(T* __restrict w, const T* __restrict g,
                                                      T* __restrict m, T* __restrict v,
                                                      T* __restrict vmax, int64_t n,
                                                      const AdamScalars& s) {
  const T b1 = T(s.b1), b2 = T(s.b2), c1 = T(s.one_m_b1), c2 = T(s.one_m_b2), l2 = T(s.l2),
          decay = T(s.decay), step = T(s.step_size), bc = T(s.bc2_sqrt), eps = T(s.eps);
  for (int64_t i = 0; i < n; i++) {
    T gi = g[i] + l2 * w[i];
    T wi = w[i] * decay;
    T mi = b1 * m[i] + c1 * gi;
    T vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    T vd = vi;
    if (vmax) {
      vd = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vd;
    }
    w[i] = wi - step * mi / (sqrt_t(vd) / bc + eps);
  }
}

MOX_SIMD void adam_chunk_f32(float* w, const float* g, float* m, float* v, float* vmax, int64_t n,
                             const AdamScalars& s) {
  if (vmax)
    adam_chunk(w, g, m, v, vmax, n, s);
  else
    adam_chunk<float>(w, g, m, v, nullptr, n, s);
}

void adam_chunk_any(float* w, const float* g, float* m, float* v, float* vmax, int64_t n,
                    const AdamScalars& s) {
  adam_chunk_f32(w, g, m, v, vmax, n, s);
}
void adam_chunk_any(double* w, const double* g, double* m, double* v, double* vmax, int64_t n,
                    const AdamScalars& s) {
  adam_chunk(w, g, m, v, vmax, n, s);
}

template <typename T>
void adam_impl(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
               const Tensor& vmax, const AdamParams& p) {
  const AdamScalars s = scalars(p);
  const int64_t n = param.numel();
  T* w = param.data<T>();
  const T* g = grad.data<T>();
  T* md = m.data<T>();
  T* vd = v.data<T>();
  T* xd = p.amsgrad ? vmax.data<T>() : nullptr;
  const int nt = cpu::threads_for(n, 65536);
  if (nt <= 1) {
    adam_chunk_any(w, g, md, vd, xd, n, s);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), TT = omp_get_num_threads();
    // 64-element aligned chunk boundaries keep each thread's stores on its own cache lines.
    int64_t lo = (n * t / TT) / 64 * 64, hi = t + 1 == TT ? n : (n * (t + 1) / TT) / 64 * 64;
    if (hi > lo)
      adam_chunk_any(w + lo, g + lo, md + lo, vd + lo, xd ? xd + lo : nullptr, hi - lo, s);
  }
}

}  // namespace

void CpuBackend::adam_update(const Tensor& param, const Tensor& grad, const Tensor& m,
                             const Tensor& v, const Tensor& vmax, const AdamParams& p) {
  const char* op = "adam_update";
  if (param.dtype() != DType::F32 && param.dtype() != DType::F64)
    throw Error(op, "parameters must be f32 or f64, got " + param.desc());
  std::vector<const Tensor*> all{&param, &grad, &m, &v};
  if (p.amsgrad) all.push_back(&vmax);
  for (const Tensor* t : all) {
    if (!t->defined())
      throw Error(op, "missing state tensor (amsgrad needs vmax) for parameter " + param.desc());
    if (t->dtype() != param.dtype() || t->numel() != param.numel() || !t->is_contiguous())
      throw Error(op, "grad and state must be contiguous and match parameter " + param.desc() +
                          ", got " + t->desc());
  }
  if (p.step < 1) throw Error(op, "step must be >= 1, got " + std::to_string(p.step));
  if (param.dtype() == DType::F32)
    adam_impl<float>(param, grad, m, v, vmax, p);
  else
    adam_impl<double>(param, grad, m, v, vmax, p);
}

}  // namespace mox
