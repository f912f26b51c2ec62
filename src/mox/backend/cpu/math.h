#pragma once
// Scalar math used inside kernels, overloaded per type: f32 uses the vectorisable
// approximations of simd.h, f64 (gradient tests) uses libm for full precision.
#include <cmath>

#include "mox/backend/cpu/simd.h"

namespace mox::cpu {

MOX_INLINE float m_exp(float x) { return simd::expf_fast(x); }
MOX_INLINE double m_exp(double x) { return std::exp(x); }
MOX_INLINE float m_log(float x) { return simd::logf_fast(x); }
MOX_INLINE double m_log(double x) { return std::log(x); }
MOX_INLINE float m_tanh(float x) { return simd::tanhf_fast(x); }
MOX_INLINE double m_tanh(double x) { return std::tanh(x); }
MOX_INLINE float m_erf(float x) { return simd::erff_fast(x); }
MOX_INLINE double m_erf(double x) { return std::erf(x); }
MOX_INLINE float m_sqrt(float x) { return __builtin_sqrtf(x); }
MOX_INLINE double m_sqrt(double x) { return __builtin_sqrt(x); }
MOX_INLINE float m_log1p(float x) { return std::log1p(x); }
MOX_INLINE double m_log1p(double x) { return std::log1p(x); }
MOX_INLINE float m_expm1(float x) { return std::expm1(x); }
MOX_INLINE double m_expm1(double x) { return std::expm1(x); }
template <typename T> MOX_INLINE T m_sigmoid(T x) { return T(1) / (T(1) + m_exp(-x)); }

}  // namespace mox::cpu
