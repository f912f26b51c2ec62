#pragma once
// Run-time SIMD dispatch without intrinsics: hot loops are written as plain C++ that GCC
// auto-vectorises, and MOX_SIMD asks GCC to compile each such function three times
// (x86-64-v4 = AVX-512, x86-64-v3 = AVX2+FMA, baseline x86-64) and pick one at load time
// from the CPU's feature bits (function multi-versioning via ifunc; the micro-architecture
// names like arch=skylake-avx512 would dispatch by CPU model instead, never matching AMD).
// Two things keep the clones vectorised: every helper called from a clone is
// MOX_INLINE (GCC does not inline a plain inline function into a clone compiled for another
// arch, and a call in the loop stops vectorisation; for the same reason bit casts use
// __builtin_bit_cast), and the build uses -fno-trapping-math so that selects (?:)
// if-convert. Other compilers/targets get the portable loop.
// The math below (exp, log, tanh, erf) is branch-free polynomial code so that it
// vectorises too; accuracy is within a few ulp of libm in f32. f64 paths use libm.
#include <bit>
#include <cmath>
#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define MOX_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MOX_SIMD
#endif

// Forced inlining: GCC will not inline a plain inline function into a target_clones
// clone (different target options), which would leave the call unvectorised.
#define MOX_INLINE __attribute__((always_inline)) inline

namespace mox::simd {

// exp(x) for f32: range reduction x = n ln2 + r, degree-6 polynomial on r, scale by 2^n.
// Below -87.3, e^x is denormal or zero: returns exactly 0, like libm's underflow.
MOX_INLINE float expf_fast(float x_in) {
  float x = x_in < -87.3f ? -87.3f : (x_in > 88.7f ? 88.7f : x_in);
  // Round to nearest by adding and removing 1.5 * 2^23 (vectorises everywhere, unlike roundf).
  const float shifter = 12582912.0f;
  float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693145751953125f;  // ln2 hi
  r = r - n * 1.428606765330187045e-06f;  // ln2 lo
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (int32_t(n) + 127) << 23;
  float e = p * __builtin_bit_cast(float, bits);
  return x_in < -87.3f ? 0.0f : e;
}

// log(x) for f32, x > 0 (returns -inf for 0, NaN for negatives via the final select).
MOX_INLINE float logf_fast(float x) {
  int32_t bits = __builtin_bit_cast(int32_t, x);
  int32_t e = ((bits >> 23) & 0xff) - 127;
  float m = __builtin_bit_cast(float, (bits & 0x007fffff) | 0x3f800000);  // [1, 2)
  // move m into [sqrt(1/2), sqrt(2))
  bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  float f = m - 1.0f;
  float s = f / (2.0f + f);
  float z = s * s;
  float w = z * z;
  float t1 = w * (0.40000972152f + w * 0.24279078841f);
  float t2 = z * (0.66666662693f + w * 0.28498786688f);
  float R = t2 + t1;
  float hfsq = 0.5f * f * f;
  float res = float(e) * 0.693147180559945f - ((hfsq - (s * (hfsq + R))) - f);
  res = x == 0.0f ? -INFINITY : res;
  res = x < 0.0f ? NAN : res;
  res = x == INFINITY ? INFINITY : res;
  return res;
}

MOX_INLINE float sigmoidf_fast(float x) { return 1.0f / (1.0f + expf_fast(-x)); }

MOX_INLINE float tanhf_fast(float x) {
  // tanh(x) = 1 - 2/(exp(2x)+1); for small |x| use the odd polynomial to keep relative accuracy
  float ax = x < 0 ? -x : x;
  float e = expf_fast(2.0f * ax);
  float big = 1.0f - 2.0f / (e + 1.0f);
  float x2 = x * x;
  float small = ax * (1.0f + x2 * (-0.33333333f + x2 * (0.13333333f + x2 * (-0.05396825f + x2 * 0.02186949f))));
  float r = ax < 0.0625f ? small : big;
  return x < 0 ? -r : r;
}

// erf(x) for f32: an odd polynomial below |x| = 1 (error ~1e-9), Abramowitz-Stegun
// 7.1.26 above (absolute error < 1.5e-7, relative < 2e-7 there since erf > 0.84).
MOX_INLINE float erff_fast(float x) {
  float ax = x < 0 ? -x : x;
  float x2 = x * x;
  // |x| < 1: odd polynomial
  float p = 7.853861353153693e-5f;
  p = p * x2 + -8.010193625184903e-4f;
  p = p * x2 + 5.188327685732524e-3f;
  p = p * x2 + -2.685381193529856e-2f;
  p = p * x2 + 1.128358514861418e-1f;
  p = p * x2 + -3.761262582423300e-1f;
  p = p * x2 + 1.128379165726710e+0f;
  float small = ax * p;
  // |x| >= 1: Abramowitz-Stegun 7.1.26, absolute error < 1.5e-7
  float t = 1.0f / (1.0f + 0.3275911f * ax);
  float q = 1.061405429f;
  q = q * t + -1.453152027f;
  q = q * t + 1.421413741f;
  q = q * t + -0.284496736f;
  q = q * t + 0.254829592f;
  float big = 1.0f - q * t * expf_fast(-x2);
  float r = ax < 1.0f ? small : big;
  return x < 0 ? -r : r;
}

}  // namespace mox::simd
