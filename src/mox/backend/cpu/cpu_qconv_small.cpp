// Direct int8 convolution for layers with few taps per output (C * kh * kw <= 32: a CNN's
// first, one-channel layer), static quantisation only (formats: backend/quant.h). Used when
// oneDNN is not built in or is disabled (ops/quant.cpp): there it replaces im2col + the own
// GEMM, whose K would pad 9 taps to 64. With oneDNN, brgconv:avx512_core_vnni stays faster
// on this machine (Fashion-MNIST CNN's 1->32 3x3 layer, 2 threads: batch 256 0.82 ms against
// 1.25 ms here; batch 1 7.5 us both).
//
// The integer sums are computed in f32 FMAs, which is exact: every product (q - zp) * w lies
// in [-255 * 127, 255 * 127] and a sum of at most 32 of them stays far below 2^24. Per image
// (or per band of output rows at small batches) the input is quantised once into a
// zero-padded float plane of (q - zp) values (padding: q = zp, i.e. 0; the f32 -> u8
// quantisation of the input is fused here, q = clamp(round_half_even(x / scale) + zp, 0, 255)),
// then acc[oc] = sum_k tap[k] * w[k][oc] for 4 output pixels at a time, 16 output channels
// per vector (GCC vector extensions), and the epilogue
//   y = acc * (a_scale * w_scale[oc]) + bias[oc];  y = max(y, 0) if relu;
//   u8: clamp(round_half_even(y / out_scale) + out_zp, 0, 255), else f32 y
// (for u8 computed as acc * (a_scale * w_scale / out_scale) + bias / out_scale, as oneDNN
// does: may differ from the division by one unit at exact ties)
// writes channels-last ([N, OH, OW, OC] memory) or NCHW. Compiled per instruction set
// (MOX_SIMD) and threaded over (image, row band) items.
#include <omp.h>

// (vector arguments of the internal helpers never cross a translation unit)
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>
#include <cstring>
#include <vector>

#include "mox/backend/backend.h"
#include "mox/backend/cpu/simd.h"
#include "mox/backend/quant.h"

namespace mox::cpu {

namespace {

struct SmallConv {
  const void* x;
  bool x_f32, x_nhwc;
  int64_t N, C, H, W, OC, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW;
  const float* wt;     // [K, OCp] float weights (tap-major, OC padded to 16)
  const float* scale;  // [OCp] a_scale * w_scale
  const float* bias;   // [OCp] (zeros without bias)
  float in_scale;
  int32_t in_zp;
  bool relu, requant;
  float out_scale;
  int32_t out_zp;
  bool out_nhwc;
  void* out;
};

// 16-lane vectors (GCC vector extensions: one zmm on AVX-512, two ymm on AVX2, four xmm on
// the baseline).
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef uint8_t vb8 __attribute__((vector_size(16)));
MOX_INLINE vf load16(const float* p) {
  vf v;
  std::memcpy(&v, p, 64);
  return v;
}

MOX_INLINE float rhe(float v) {  // round half to even for |v| < 2^22
  const float shifter = 12582912.0f;
  return (v + shifter) - shifter;
}

// Output rows [oh0, oh1) of image n. `plane` is per-thread scratch. wt / scale / bias are
// padded to a multiple of 16 channels.
// KC: the tap count when fixed at compile time (9: one-channel 3x3), else 0.
template <bool RELU, bool REQ, int KC>
MOX_INLINE void small_rows(const SmallConv& c, int64_t n, int64_t oh0, int64_t oh1, float* plane) {
  const int64_t Hp = c.H + 2 * c.ph, Wp = c.W + 2 * c.pw, K = KC ? KC : c.C * c.kh * c.kw, OC = c.OC;
  // input rows needed by output rows [oh0, oh1), in padded coordinates
  const int64_t r0 = oh0 * c.sh, r1 = std::min(Hp, (oh1 - 1) * c.sh + (c.kh - 1) * c.dh + 1);
  const float zp = float(c.in_zp);
  for (int64_t ci = 0; ci < c.C; ci++) {
    float* pc = plane + ci * Hp * Wp;
    for (int64_t r = r0; r < r1; r++) {
      float* pr = pc + r * Wp;
      const int64_t h = r - c.ph;
      if (h < 0 || h >= c.H) {
        for (int64_t j = 0; j < Wp; j++) pr[j] = 0.0f;
        continue;
      }
      for (int64_t j = 0; j < c.pw; j++) pr[j] = 0.0f, pr[Wp - 1 - j] = 0.0f;
      float* __restrict d = pr + c.pw;
      if (c.x_f32) {
        const float* xs = static_cast<const float*>(c.x);
        const int64_t base = c.x_nhwc ? ((n * c.H + h) * c.W) * c.C + ci : ((n * c.C + ci) * c.H + h) * c.W;
        const int64_t step = c.x_nhwc ? c.C : 1;
        const float* __restrict s = xs + base;
        const float in_scale = c.in_scale;
        auto q = [&](float x) {
          float v = x / in_scale;
          v = v < -512.0f ? -512.0f : (v > 512.0f ? 512.0f : v);
          v = rhe(v) + zp;
          v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
          return v - zp;
        };
        if (step == 1) {
          for (int64_t j = 0; j < c.W; j++) d[j] = q(s[j]);
        } else {
          for (int64_t j = 0; j < c.W; j++) d[j] = q(s[j * step]);
        }
      } else {
        const uint8_t* xs = static_cast<const uint8_t*>(c.x);
        const int64_t base = c.x_nhwc ? ((n * c.H + h) * c.W) * c.C + ci : ((n * c.C + ci) * c.H + h) * c.W;
        const int64_t step = c.x_nhwc ? c.C : 1;
        const uint8_t* __restrict s = xs + base;
        for (int64_t j = 0; j < c.W; j++) d[j] = float(s[j * step]) - zp;
      }
    }
  }
  // offsets of the K taps in the padded plane, relative to the window's corner
  int64_t off[32];
  {
    int64_t k = 0;
    for (int64_t ci = 0; ci < c.C; ci++)
      for (int64_t i = 0; i < c.kh; i++)
        for (int64_t j = 0; j < c.kw; j++) off[k++] = (ci * Hp + i * c.dh) * Wp + j * c.dw;
  }
  const int64_t OCp = (OC + 15) / 16 * 16, sw = c.sw;
  const vf zero = vf{} , lo = zero - 512.0f, hi = zero + 512.0f, shift = zero + 12582912.0f;
  // epilogue of 16 channels [o0, o0 + 16) of pixel (oh, ow): stores min(16, OC - o0) of them
  // (always inlined: a vector argument must not cross into code built for another ISA)
  auto finish = [&](vf a, int64_t oh, int64_t ow, int64_t o0) __attribute__((always_inline)) {
    vf v = a * load16(c.scale + o0) + load16(c.bias + o0);
    if (RELU) v = v > zero ? v : zero;
    const int64_t on = std::min<int64_t>(16, OC - o0);
    if (REQ) {
      // (sc and bias hold scale / out_scale and bias / out_scale)
      v = v < lo ? lo : (v > hi ? hi : v);
      v = (v + shift) - shift;  // round half to even
      vi iv = __builtin_convertvector(v, vi) + c.out_zp;
      iv = iv < 0 ? vi{} : iv;
      iv = iv > 255 ? vi{} + 255 : iv;
      if (c.out_nhwc) {
        uint8_t* d = static_cast<uint8_t*>(c.out) + ((n * c.OH + oh) * c.OW + ow) * OC + o0;
        if (on == 16) {
          const vb8 b = __builtin_convertvector(iv, vb8);
          std::memcpy(d, &b, 16);
        } else {
          for (int64_t q = 0; q < on; q++) d[q] = uint8_t(iv[q]);
        }
      } else {
        uint8_t* d = static_cast<uint8_t*>(c.out) + ((n * OC + o0) * c.OH + oh) * c.OW + ow;
        for (int64_t q = 0; q < on; q++) d[q * c.OH * c.OW] = uint8_t(iv[q]);
      }
    } else {
      if (c.out_nhwc) {
        float* d = static_cast<float*>(c.out) + ((n * c.OH + oh) * c.OW + ow) * OC + o0;
        if (on == 16)
          std::memcpy(d, &v, 64);
        else
          for (int64_t q = 0; q < on; q++) d[q] = v[q];
      } else {
        float* d = static_cast<float*>(c.out) + ((n * OC + o0) * c.OH + oh) * c.OW + ow;
        for (int64_t q = 0; q < on; q++) d[q * c.OH * c.OW] = v[q];
      }
    }
  };
  for (int64_t oh = oh0; oh < oh1; oh++) {
    const float* row = plane + oh * c.sh * Wp;
    for (int64_t o0 = 0; o0 < OCp; o0 += 16) {
      const float* wcol = c.wt + o0;
      int64_t ow = 0;
      // 4 pixels at a time: each tap's weight vector loaded once for the four
      for (; ow + 4 <= c.OW; ow += 4) {
        vf a0 = zero, a1 = zero, a2 = zero, a3 = zero;
        const float* b = row + ow * sw;
        for (int64_t k = 0; k < K; k++) {
          const vf wv = load16(wcol + k * OCp);
          const float* t = b + off[k];
          a0 += t[0] * wv;
          a1 += t[sw] * wv;
          a2 += t[2 * sw] * wv;
          a3 += t[3 * sw] * wv;
        }
        finish(a0, oh, ow, o0);
        finish(a1, oh, ow + 1, o0);
        finish(a2, oh, ow + 2, o0);
        finish(a3, oh, ow + 3, o0);
      }
      for (; ow < c.OW; ow++) {
        vf a0 = zero;
        const float* b = row + ow * sw;
        for (int64_t k = 0; k < K; k++) a0 += b[off[k]] * load16(wcol + k * OCp);
        finish(a0, oh, ow, o0);
      }
    }
  }
}

template <bool RELU, bool REQ>
MOX_SIMD void small_rows_t(const SmallConv& c, int64_t n, int64_t oh0, int64_t oh1, float* plane) {
  if (c.C == 1 && c.kh == 3 && c.kw == 3)
    small_rows<RELU, REQ, 9>(c, n, oh0, oh1, plane);
  else
    small_rows<RELU, REQ, 0>(c, n, oh0, oh1, plane);
}

}  // namespace

bool qconv2d_small_static(const void* x, bool x_f32, bool x_nhwc, int64_t N, int64_t C, int64_t H, int64_t W,
                          const QGemmWeights& w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                          int64_t pw, int64_t dh, int64_t dw, int64_t OH, int64_t OW,
                          const QStaticEpilogue& ep, bool out_nhwc, void* out) {
  const int64_t K = C * kh * kw, OC = w.N;
  if (K > 32 || N <= 0 || OC <= 0 || OC > 4096 || w.K != K) return false;
  // weights tap-major as floats, per-channel scales
  const int64_t OCp = (OC + 15) / 16 * 16;
  std::vector<float> wt(static_cast<size_t>(K * OCp), 0.0f), scale(static_cast<size_t>(OCp), 0.0f),
      bias(static_cast<size_t>(OCp), 0.0f);
  for (int64_t o = 0; o < OC; o++) {
    for (int64_t k = 0; k < K; k++) wt[size_t(k * OCp + o)] = float(w.wdense[size_t(o * K + k)]);
    // u8 output: y / out_scale = acc * (s / out_scale) + bias / out_scale (ReLU commutes)
    const float s = ep.a_scale * ep.w_scale[o];
    scale[size_t(o)] = ep.requantize ? s / ep.out_scale : s;
    if (ep.bias) bias[size_t(o)] = ep.requantize ? ep.bias[o] / ep.out_scale : ep.bias[o];
  }
  const SmallConv c{x, x_f32, x_nhwc, N, C, H, W, OC, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW,
                    wt.data(), scale.data(), bias.data(), ep.a_scale, ep.a_zp, ep.relu, ep.requantize,
                    ep.out_scale, ep.out_zp, out_nhwc, out};
  const int nt = get_num_threads();
  const double work = double(N * OH * OW) * double(OC) * double(K);
  const int use = work < double(1 << 16) ? 1 : nt;
  // items: (image, band of rows); enough of them for the threads at small batches
  const int64_t bands = std::min<int64_t>(OH, std::max<int64_t>(1, (4 * use + N - 1) / N));
  const int64_t items = N * bands;
  const size_t plane_sz = size_t(C * (H + 2 * ph) * (W + 2 * pw));
  using RowFn = void (*)(const SmallConv&, int64_t, int64_t, int64_t, float*);
  const RowFn fn = ep.relu ? (ep.requantize ? small_rows_t<true, true> : small_rows_t<true, false>)
                           : (ep.requantize ? small_rows_t<false, true> : small_rows_t<false, false>);
#pragma omp parallel num_threads(use) if (use > 1)
  {
    std::vector<float> plane(plane_sz);
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      const int64_t n = it / bands, b = it % bands;
      const int64_t oh0 = OH * b / bands, oh1 = OH * (b + 1) / bands;
      if (oh1 > oh0) fn(c, n, oh0, oh1, plane.data());
    }
  }
  note_int8_path("mox:direct-small");
  return true;
}

}  // namespace mox::cpu
