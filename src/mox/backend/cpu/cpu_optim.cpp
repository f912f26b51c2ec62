// Fused optimiser steps over contiguous parameters: one pass per parameter reads the
// parameter, its gradient and its state, and writes them back. Each follows the
// torch.optim 1.13 single-tensor rule operation by operation (same products, same order,
// scalars computed in double and cast to the element type like PyTorch's Scalar
// arguments), so that f32 results agree with PyTorch to rounding.
//
// Adam / AdamW:
//   g = grad (+ wd * param when weight decay is L2, i.e. Adam)
//   param *= 1 - lr * wd                                (AdamW: decoupled decay)
//   m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2
//   vmax = max(vmax, v)                                 (AMSGrad; the denominator uses vmax)
//   param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// SGD:
//   d = grad (+ wd * param)
//   buf = d (first step) | buf * momentum + (1 - dampening) * d     (momentum != 0)
//   d = nesterov ? d + momentum * buf : buf                          (momentum != 0)
//   param += -lr * d
// RMSprop:
//   d = grad (+ wd * param)
//   sq = sq * alpha + (1 - alpha) * d * d
//   centered: ga = ga * alpha + (1 - alpha) * d;  avg = sqrt(sq - ga * ga) + eps
//   else:     avg = sqrt(sq) + eps
//   momentum > 0: buf = buf * momentum + d / avg;  param += -lr * buf
//   otherwise:    param += -lr * d / avg
// Adagrad:
//   d = grad (+ wd * param);  clr = lr / (1 + (step - 1) * lr_decay)
//   sum += d * d;  param += -clr * d / (sqrt(sum) + eps)
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/cpu/simd.h"

namespace mox {

namespace {

// __builtin_sqrt, not std::sqrt: a libstdc++ inline function is not inlined into a clone
// compiled for another arch, and a call per element would stop vectorisation.
MOX_INLINE float sqrt_t(float x) { return __builtin_sqrtf(x); }
MOX_INLINE double sqrt_t(double x) { return __builtin_sqrt(x); }

// Runs chunk(lo, hi) over [0, n), split across threads when n is worth it. Boundaries
// are multiples of 64 elements so that each thread's stores stay on its own cache lines.
// Every element is computed the same way whatever the split: results do not depend on
// the thread count.
template <typename F>
void parallel_chunks(int64_t n, int64_t grain, F&& chunk) {
  const int nt = cpu::threads_for(n, grain);
  if (nt <= 1) {
    chunk(int64_t(0), n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), TT = omp_get_num_threads();
    int64_t lo = (n * t / TT) / 64 * 64, hi = t + 1 == TT ? n : (n * (t + 1) / TT) / 64 * 64;
    if (hi > lo) chunk(lo, hi);
  }
}

// The *_dispatch functions below turn a few runtime flags (`mode`, a bit set) into a
// template parameter, so that each variant is a branch-free loop. They recurse instead of
// taking a lambda: every function between a MOX_SIMD clone and its loop must be
// MOX_INLINE, or the loop is compiled for the baseline instruction set.

// Grad and every state tensor must be defined, contiguous and shaped like the parameter.
void check_operands(const char* op, const Tensor& param, std::initializer_list<const Tensor*> ts,
                    const char* needs) {
  if (param.dtype() != DType::F32 && param.dtype() != DType::F64)
    throw Error(op, "parameters must be f32 or f64, got " + param.desc());
  if (!param.is_contiguous())
    throw Error(op, "parameter must be contiguous, got " + param.desc());
  for (const Tensor* t : ts) {
    if (!t->defined())
      throw Error(op, std::string("missing state tensor (") + needs + ") for parameter " +
                          param.desc());
    if (t->dtype() != param.dtype() || t->numel() != param.numel() || !t->is_contiguous())
      throw Error(op, "grad and state must be contiguous and match parameter " + param.desc() +
                          ", got " + t->desc());
  }
}

// ---------------------------------------------------------------------------------------
// Adam / AdamW

// Scalars of one step, computed once in double like PyTorch's Python-side arithmetic.
struct AdamScalars {
  double b1, b2, one_m_b1, one_m_b2, l2, decay, step_size, bc2_sqrt, eps;
};

AdamScalars adam_scalars(const AdamParams& p) {
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

// w, g, m, v, vmax (n): vmax null unless AMSGrad
template <typename T>
MOX_INLINE void adam_chunk(T* __restrict w, const T* __restrict g, T* __restrict m,
                           T* __restrict v, T* __restrict vmax, int64_t n,
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
  const AdamScalars s = adam_scalars(p);
  T* w = param.data<T>();
  const T* g = grad.data<T>();
  T* md = m.data<T>();
  T* vd = v.data<T>();
  T* xd = p.amsgrad ? vmax.data<T>() : nullptr;
  // Adam does ~15 flops per element, a square root and a division (~2 cycles per element
  // even vectorised): a thread pays for itself from ~16k elements (the seed MLP's 100k
  // first-layer weights take both threads).
  parallel_chunks(param.numel(), 16384, [&](int64_t lo, int64_t hi) {
    adam_chunk_any(w + lo, g + lo, md + lo, vd + lo, xd ? xd + lo : nullptr, hi - lo, s);
  });
}

// ---------------------------------------------------------------------------------------
// SGD

struct SgdScalars {
  double wd, momentum, one_m_dampening, neg_lr;
  bool nesterov;
};
enum SgdMode { kSgdDecay = 1, kSgdMomentum = 2, kSgdFirst = 4 };

// w, g (n); buf (n) when momentum is on (written only, never read, on the first step)
template <typename T, int M>
MOX_INLINE void sgd_chunk(T* __restrict w, const T* __restrict g, T* __restrict buf, int64_t n,
                          const SgdScalars& s) {
  const T wd = T(s.wd), mom = T(s.momentum), damp = T(s.one_m_dampening), neg_lr = T(s.neg_lr);
  const bool nesterov = s.nesterov;
  for (int64_t i = 0; i < n; i++) {
    T d = g[i];
    if constexpr (M & kSgdDecay) d = d + wd * w[i];
    if constexpr (M & kSgdMomentum) {
      T b;
      if constexpr (M & kSgdFirst)
        b = d;
      else
        b = buf[i] * mom + damp * d;
      buf[i] = b;
      d = nesterov ? d + mom * b : b;
    }
    w[i] = w[i] + neg_lr * d;
  }
}

template <typename T, int M = 0>
MOX_INLINE void sgd_dispatch(T* w, const T* g, T* buf, int64_t n, const SgdScalars& s, int mode) {
  if constexpr (M < 8) {
    if (mode == M)
      sgd_chunk<T, M>(w, g, buf, n, s);
    else
      sgd_dispatch<T, M + 1>(w, g, buf, n, s, mode);
  }
}

MOX_SIMD void sgd_chunk_f32(float* w, const float* g, float* buf, int64_t n, const SgdScalars& s,
                            int mode) {
  sgd_dispatch(w, g, buf, n, s, mode);
}
void sgd_chunk_any(float* w, const float* g, float* buf, int64_t n, const SgdScalars& s,
                   int mode) {
  sgd_chunk_f32(w, g, buf, n, s, mode);
}
void sgd_chunk_any(double* w, const double* g, double* buf, int64_t n, const SgdScalars& s,
                   int mode) {
  sgd_dispatch(w, g, buf, n, s, mode);
}

template <typename T>
void sgd_impl(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdParams& p) {
  const SgdScalars s{p.weight_decay, p.momentum, 1.0 - p.dampening, -p.lr, p.nesterov};
  const bool momentum = p.momentum != 0;
  const int mode = (p.weight_decay != 0 ? kSgdDecay : 0) | (momentum ? kSgdMomentum : 0) |
                   (momentum && p.first_step ? kSgdFirst : 0);
  T* w = param.data<T>();
  const T* g = grad.data<T>();
  T* b = momentum ? buf.data<T>() : nullptr;
  parallel_chunks(param.numel(), cpu::kGrain, [&](int64_t lo, int64_t hi) {
    sgd_chunk_any(w + lo, g + lo, b ? b + lo : nullptr, hi - lo, s, mode);
  });
}

// ---------------------------------------------------------------------------------------
// RMSprop

struct RmspropScalars {
  double wd, alpha, one_m_alpha, eps, momentum, neg_lr;
};
enum RmspropMode { kRmsDecay = 1, kRmsCentered = 2, kRmsMomentum = 4 };

// w, g, sq (n); buf (n) when momentum > 0, ga (n) when centered
template <typename T, int M>
MOX_INLINE void rmsprop_chunk(T* __restrict w, const T* __restrict g, T* __restrict sq,
                              T* __restrict buf, T* __restrict ga, int64_t n,
                              const RmspropScalars& s) {
  const T wd = T(s.wd), alpha = T(s.alpha), c = T(s.one_m_alpha), eps = T(s.eps),
          mom = T(s.momentum), neg_lr = T(s.neg_lr);
  for (int64_t i = 0; i < n; i++) {
    T d = g[i];
    if constexpr (M & kRmsDecay) d = d + wd * w[i];
    T sqi = sq[i] * alpha + c * d * d;
    sq[i] = sqi;
    T avg;
    if constexpr (M & kRmsCentered) {
      T gai = ga[i] * alpha + c * d;
      ga[i] = gai;
      avg = sqrt_t(sqi - gai * gai);
    } else {
      avg = sqrt_t(sqi);
    }
    avg = avg + eps;
    if constexpr (M & kRmsMomentum) {
      T b = buf[i] * mom + d / avg;
      buf[i] = b;
      w[i] = w[i] + neg_lr * b;
    } else {
      w[i] = w[i] + neg_lr * d / avg;
    }
  }
}

template <typename T, int M = 0>
MOX_INLINE void rmsprop_dispatch(T* w, const T* g, T* sq, T* buf, T* ga, int64_t n,
                                 const RmspropScalars& s, int mode) {
  if constexpr (M < 8) {
    if (mode == M)
      rmsprop_chunk<T, M>(w, g, sq, buf, ga, n, s);
    else
      rmsprop_dispatch<T, M + 1>(w, g, sq, buf, ga, n, s, mode);
  }
}

MOX_SIMD void rmsprop_chunk_f32(float* w, const float* g, float* sq, float* buf, float* ga,
                                int64_t n, const RmspropScalars& s, int mode) {
  rmsprop_dispatch(w, g, sq, buf, ga, n, s, mode);
}
void rmsprop_chunk_any(float* w, const float* g, float* sq, float* buf, float* ga, int64_t n,
                       const RmspropScalars& s, int mode) {
  rmsprop_chunk_f32(w, g, sq, buf, ga, n, s, mode);
}
void rmsprop_chunk_any(double* w, const double* g, double* sq, double* buf, double* ga,
                       int64_t n, const RmspropScalars& s, int mode) {
  rmsprop_dispatch(w, g, sq, buf, ga, n, s, mode);
}

template <typename T>
void rmsprop_impl(const Tensor& param, const Tensor& grad, const Tensor& square_avg,
                  const Tensor& momentum_buf, const Tensor& grad_avg, const RmspropParams& p) {
  const RmspropScalars s{p.weight_decay, p.alpha, 1.0 - p.alpha, p.eps, p.momentum, -p.lr};
  const bool momentum = p.momentum > 0;
  const int mode = (p.weight_decay != 0 ? kRmsDecay : 0) | (p.centered ? kRmsCentered : 0) |
                   (momentum ? kRmsMomentum : 0);
  T* w = param.data<T>();
  const T* g = grad.data<T>();
  T* sq = square_avg.data<T>();
  T* buf = momentum ? momentum_buf.data<T>() : nullptr;
  T* ga = p.centered ? grad_avg.data<T>() : nullptr;
  parallel_chunks(param.numel(), cpu::kGrain, [&](int64_t lo, int64_t hi) {
    rmsprop_chunk_any(w + lo, g + lo, sq + lo, buf ? buf + lo : nullptr, ga ? ga + lo : nullptr,
                      hi - lo, s, mode);
  });
}

// ---------------------------------------------------------------------------------------
// Adagrad

struct AdagradScalars {
  double wd, eps, neg_clr;
};

// w, g, sum (n)
template <typename T, int Decay>
MOX_INLINE void adagrad_chunk(T* __restrict w, const T* __restrict g, T* __restrict sum,
                              int64_t n, const AdagradScalars& s) {
  const T wd = T(s.wd), eps = T(s.eps), neg_clr = T(s.neg_clr);
  for (int64_t i = 0; i < n; i++) {
    T d = g[i];
    if constexpr (Decay != 0) d = d + wd * w[i];
    T si = sum[i] + d * d;
    sum[i] = si;
    w[i] = w[i] + neg_clr * d / (sqrt_t(si) + eps);
  }
}

template <typename T, int M = 0>
MOX_INLINE void adagrad_dispatch(T* w, const T* g, T* sum, int64_t n, const AdagradScalars& s,
                                 int mode) {
  if constexpr (M < 2) {
    if (mode == M)
      adagrad_chunk<T, M>(w, g, sum, n, s);
    else
      adagrad_dispatch<T, M + 1>(w, g, sum, n, s, mode);
  }
}

MOX_SIMD void adagrad_chunk_f32(float* w, const float* g, float* sum, int64_t n,
                                const AdagradScalars& s, int mode) {
  adagrad_dispatch(w, g, sum, n, s, mode);
}
void adagrad_chunk_any(float* w, const float* g, float* sum, int64_t n, const AdagradScalars& s,
                       int mode) {
  adagrad_chunk_f32(w, g, sum, n, s, mode);
}
void adagrad_chunk_any(double* w, const double* g, double* sum, int64_t n,
                       const AdagradScalars& s, int mode) {
  adagrad_dispatch(w, g, sum, n, s, mode);
}

template <typename T>
void adagrad_impl(const Tensor& param, const Tensor& grad, const Tensor& state_sum,
                  const AdagradParams& p) {
  // Learning-rate decay in double, as PyTorch computes it in Python from the float step.
  const double clr = p.lr / (1.0 + double(p.step - 1) * p.lr_decay);
  const AdagradScalars s{p.weight_decay, p.eps, -clr};
  const int mode = p.weight_decay != 0 ? 1 : 0;
  T* w = param.data<T>();
  const T* g = grad.data<T>();
  T* sum = state_sum.data<T>();
  parallel_chunks(param.numel(), cpu::kGrain, [&](int64_t lo, int64_t hi) {
    adagrad_chunk_any(w + lo, g + lo, sum + lo, hi - lo, s, mode);
  });
}

}  // namespace

void CpuBackend::adam_update(const Tensor& param, const Tensor& grad, const Tensor& m,
                             const Tensor& v, const Tensor& vmax, const AdamParams& p) {
  const char* op = "adam_update";
  if (p.amsgrad)
    check_operands(op, param, {&grad, &m, &v, &vmax}, "amsgrad needs vmax");
  else
    check_operands(op, param, {&grad, &m, &v}, "m and v");
  if (p.step < 1) throw Error(op, "step must be >= 1, got " + std::to_string(p.step));
  if (param.dtype() == DType::F32)
    adam_impl<float>(param, grad, m, v, vmax, p);
  else
    adam_impl<double>(param, grad, m, v, vmax, p);
}

void CpuBackend::sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf,
                            const SgdParams& p) {
  const char* op = "sgd_update";
  if (p.momentum != 0)
    check_operands(op, param, {&grad, &momentum_buf}, "momentum needs momentum_buf");
  else
    check_operands(op, param, {&grad}, "grad");
  if (param.dtype() == DType::F32)
    sgd_impl<float>(param, grad, momentum_buf, p);
  else
    sgd_impl<double>(param, grad, momentum_buf, p);
}

void CpuBackend::rmsprop_update(const Tensor& param, const Tensor& grad, const Tensor& square_avg,
                                const Tensor& momentum_buf, const Tensor& grad_avg,
                                const RmspropParams& p) {
  const char* op = "rmsprop_update";
  check_operands(op, param, {&grad, &square_avg}, "square_avg");
  if (p.momentum > 0) check_operands(op, param, {&momentum_buf}, "momentum needs momentum_buf");
  if (p.centered) check_operands(op, param, {&grad_avg}, "centered needs grad_avg");
  if (param.dtype() == DType::F32)
    rmsprop_impl<float>(param, grad, square_avg, momentum_buf, grad_avg, p);
  else
    rmsprop_impl<double>(param, grad, square_avg, momentum_buf, grad_avg, p);
}

void CpuBackend::adagrad_update(const Tensor& param, const Tensor& grad, const Tensor& state_sum,
                                const AdagradParams& p) {
  const char* op = "adagrad_update";
  check_operands(op, param, {&grad, &state_sum}, "state_sum");
  if (p.step < 1) throw Error(op, "step must be >= 1, got " + std::to_string(p.step));
  if (param.dtype() == DType::F32)
    adagrad_impl<float>(param, grad, state_sum, p);
  else
    adagrad_impl<double>(param, grad, state_sum, p);
}

}  // namespace mox
