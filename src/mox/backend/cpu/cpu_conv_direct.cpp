// Direct f32 convolution for few input channels (the first layer of an image CNN: 1 or 3
// channels), stride 1, no padding, no dilation, one group. There im2col + GEMM has a depth
// of only C*kh*kw (9 for a grey 3x3 conv), far too shallow for a GEMM kernel, and the
// column matrix is kh*kw times the input. cpu_conv.cpp dispatches here when direct_ok().
//
// "Wide rows": with no padding, output pixel (oh, ow) reads input (oh + ki, ow + kj), so on
// the flat index i = oh*W + ow (the input's row pitch W, not Wo) every tap is the input
// plane shifted by ki*W + kj: out_wide[i] = sum_taps w[tap] * x[i + ki*W + kj]. Flat loops
// over whole planes vectorise without edge cases; the columns ow >= Wo of out_wide are
// garbage and never stored. The last row is cut at Wo so that no read passes the plane.
// Threads take whole samples; the weight and bias gradients are per-thread partial sums
// added in thread order (deterministic for a given thread count).
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "mox/backend/cpu/conv_internal.h"
#include "mox/backend/cpu/simd.h"

namespace mox::cpu::conv {

namespace {

constexpr int64_t kChunk = 64;   // flat outputs per register block (4 AVX-512 vectors)
typedef float v16f __attribute__((vector_size(64)));
constexpr int64_t kMaxTaps = 64;  // C*kh*kw handled by the direct path

// Scratch floats per thread: the sample's input with kChunk zeros after it, and the wide
// output rounded up to whole blocks (blocks past L read the zeros and are never stored).
int64_t direct_scratch(const ConvGeom& g) {
  const int64_t L = (g.Ho - 1) * g.W + g.Wo;
  return g.C * g.H * g.W + kChunk + (L + kChunk - 1) / kChunk * kChunk;
}

// The flat input offset of each tap (c, ki, kj): (c*H + ki)*W + kj.
MOX_INLINE void tap_offsets(const ConvGeom& g, int64_t* off) {
  for (int64_t c = 0, t = 0; c < g.C; c++)
    for (int64_t ki = 0; ki < g.kh; ki++)
      for (int64_t kj = 0; kj < g.kw; kj++) off[t++] = (c * g.H + ki) * g.W + kj;
}

// One output channel's wide rows: wide[i] = [relu](b + sum_t wo[t] * xp[i + off[t]]) for
// i < L rounded up to whole blocks, in blocks of kChunk accumulators held in registers (GCC
// vector extensions: written as a plain loop over a float array, GCC kept the array in
// memory and did not vectorise it).
MOX_INLINE void wide_channel(const float* __restrict xp, const int64_t* off, const float* wo, float b,
                             int64_t taps, int64_t L, bool relu, float* __restrict wide) {
  for (int64_t i0 = 0; i0 < L; i0 += kChunk) {
    v16f a0 = {}, a1 = {}, a2 = {}, a3 = {};
    a0 += b, a1 += b, a2 += b, a3 += b;
    for (int64_t t = 0; t < taps; t++) {
      const float wv = wo[t];
      const float* xs = xp + off[t] + i0;
      v16f x0, x1, x2, x3;
      __builtin_memcpy(&x0, xs, 64);
      __builtin_memcpy(&x1, xs + 16, 64);
      __builtin_memcpy(&x2, xs + 32, 64);
      __builtin_memcpy(&x3, xs + 48, 64);
      a0 += wv * x0, a1 += wv * x1, a2 += wv * x2, a3 += wv * x3;
    }
    if (relu) {
      const v16f z = {};
      a0 = a0 > z ? a0 : z, a1 = a1 > z ? a1 : z, a2 = a2 > z ? a2 : z, a3 = a3 > z ? a3 : z;
    }
    __builtin_memcpy(wide + i0, &a0, 64);
    __builtin_memcpy(wide + i0 + 16, &a1, 64);
    __builtin_memcpy(wide + i0 + 32, &a2, 64);
    __builtin_memcpy(wide + i0 + 48, &a3, 64);
  }
}

// One sample: y (O, Ho, Wo) = [relu](bias + sum over taps of shifted x (C, H, W)).
MOX_SIMD void direct_forward_sample(const float* __restrict x, const float* __restrict w,
                                    const float* bias, float* __restrict y, const ConvGeom& g,
                                    bool relu, float* __restrict scratch) {
  const int64_t W = g.W, L = (g.Ho - 1) * W + g.Wo, taps = g.Kc, in = g.C * g.H * W;
  float* __restrict xp = scratch;  // the input, then kChunk zeros: every block is whole
  float* __restrict wide = scratch + in + kChunk;
  for (int64_t i = 0; i < in; i++) xp[i] = x[i];
  for (int64_t i = in; i < in + kChunk; i++) xp[i] = 0.0f;
  int64_t off[kMaxTaps];
  tap_offsets(g, off);
  for (int64_t o = 0; o < g.O; o++) {
    wide_channel(xp, off, w + o * taps, bias ? bias[o] : 0.0f, taps, L, relu, wide);
    float* yo = y + o * g.Ho * g.Wo;
    for (int64_t oh = 0; oh < g.Ho; oh++) {
      const float* src = wide + oh * W;
      float* dst = yo + oh * g.Wo;
      for (int64_t ow = 0; ow < g.Wo; ow++) dst[ow] = src[ow];
    }
  }
}

// One sample's share of the gradients: gw (O, taps) += sum_i gy_wide[o][i] * x[i + off[t]],
// gb (O) += sum of gy[o]. gyw: scratch of L floats (gy[o] in wide rows, zero in the
// garbage columns, so that they add nothing).
MOX_SIMD void direct_wgrad_sample(const float* __restrict x, const float* __restrict gy,
                                  const float* __restrict yr, float* __restrict gw,
                                  float* __restrict gb, const ConvGeom& g, float* __restrict gyw) {
  const int64_t W = g.W, L = (g.Ho - 1) * W + g.Wo, taps = g.Kc;
  int64_t off[kMaxTaps];
  tap_offsets(g, off);
  for (int64_t o = 0; o < g.O; o++) {
    const float* go = gy + o * g.Ho * g.Wo;
    const float* yo = yr ? yr + o * g.Ho * g.Wo : nullptr;
    for (int64_t oh = 0; oh < g.Ho; oh++) {
      float* dst = gyw + oh * W;
      const float* src = go + oh * g.Wo;
      if (yo) {
        const float* ys = yo + oh * g.Wo;
        for (int64_t ow = 0; ow < g.Wo; ow++) dst[ow] = ys[ow] > 0.0f ? src[ow] : 0.0f;
      } else {
        for (int64_t ow = 0; ow < g.Wo; ow++) dst[ow] = src[ow];
      }
      if (oh + 1 < g.Ho)
        for (int64_t ow = g.Wo; ow < W; ow++) dst[ow] = 0.0f;
    }
    if (gb) {  // over the wide rows: their extra columns are zero
      float s[16] = {}, r = 0.0f;
      int64_t i = 0;
      for (; i + 16 <= L; i += 16)
        for (int j = 0; j < 16; j++) s[j] += gyw[i + j];
      for (; i < L; i++) r += gyw[i];
      for (int j = 0; j < 16; j++) r += s[j];
      gb[o] += r;
    }
    // 9 taps at a time: each gy vector is loaded once for 9 independent accumulators
    // (one accumulator per dot product would wait on the FMA latency)
    float* gwo = gw + o * taps;
    const int64_t L16 = L / 16 * 16;
    for (int64_t t0 = 0; t0 < taps; t0 += 9) {
      const int64_t nk = std::min<int64_t>(9, taps - t0);
      v16f a[9] = {};
      for (int64_t i = 0; i < L16; i += 16) {
        v16f gv;
        __builtin_memcpy(&gv, gyw + i, 64);
        for (int k = 0; k < 9; k++)
          if (k < nk) {
            v16f xv;
            __builtin_memcpy(&xv, x + off[t0 + k] + i, 64);
            a[k] += gv * xv;
          }
      }
      for (int64_t k = 0; k < nk; k++) {
        float r = 0.0f;
        for (int j = 0; j < 16; j++) r += a[k][j];
        const float* xs = x + off[t0 + k];
        for (int64_t i = L16; i < L; i++) r += gyw[i] * xs[i];
        gwo[t0 + k] += r;
      }
    }
  }
}

// Fused first layer, one sample: out (O, Ho/2, Wo/2) = max_pool_2x2(relu(conv)), idx the
// position of each window's maximum as an offset oh*W + ow into the sample's input plane
// (where the backward finds the taps' inputs). The conv rows are computed as in
// direct_forward_sample into `wide`; relu'd values have no NaN, so the first maximum wins.
MOX_SIMD void direct_relu_pool_sample(const float* __restrict x, const float* __restrict w,
                                      const float* bias, float* __restrict out,
                                      int32_t* __restrict idx, const ConvGeom& g,
                                      float* __restrict scratch) {
  const int64_t W = g.W, L = (g.Ho - 1) * W + g.Wo, taps = g.Kc, in = g.C * g.H * W;
  const int64_t Hp = g.Ho / 2, Wp = g.Wo / 2;
  float* __restrict xp = scratch;
  float* __restrict wide = scratch + in + kChunk;
  // staging planes (Hp*Wp + 8 each) after wide and its slack (see relu_pool_scratch)
  float* __restrict stage = wide + (L + kChunk - 1) / kChunk * kChunk + kChunk;
  int32_t* __restrict istage = reinterpret_cast<int32_t*>(stage + Hp * Wp + 8);
  for (int64_t i = 0; i < in; i++) xp[i] = x[i];
  for (int64_t i = in; i < in + kChunk; i++) xp[i] = 0.0f;
  int64_t off[kMaxTaps];
  tap_offsets(g, off);
  typedef float v8f __attribute__((vector_size(32)));
  typedef int32_t v8i __attribute__((vector_size(32)));
  const v8i even = {0, 2, 4, 6, 8, 10, 12, 14}, odd = {1, 3, 5, 7, 9, 11, 13, 15};
  for (int64_t o = 0; o < g.O; o++) {
    wide_channel(xp, off, w + o * taps, bias ? bias[o] : 0.0f, taps, L, /*relu=*/true, wide);
    // 2x2 pooling, 8 windows at a time (wide has slack past L for the last block's loads),
    // stored as whole vectors into a staging plane (a block's lanes past the row end land on
    // the next row's start, rewritten next), then copied out in one block
    float* yo = stage;
    int32_t* io = istage;
    for (int64_t ph = 0; ph < Hp; ph++) {
      const float* r0 = wide + 2 * ph * W;
      const float* r1 = r0 + W;
      for (int64_t pw = 0; pw < Wp; pw += 8) {
        v8f p0, p1, q0, q1;
        __builtin_memcpy(&p0, r0 + 2 * pw, 32);
        __builtin_memcpy(&p1, r0 + 2 * pw + 8, 32);
        __builtin_memcpy(&q0, r1 + 2 * pw, 32);
        __builtin_memcpy(&q1, r1 + 2 * pw + 8, 32);
        const v8f x00 = __builtin_shuffle(p0, p1, even), x01 = __builtin_shuffle(p0, p1, odd);
        const v8f x10 = __builtin_shuffle(q0, q1, even), x11 = __builtin_shuffle(q0, q1, odd);
        const v8i c = even + int32_t(2 * ph * W + 2 * pw);
        v8f best = x00;
        v8i arg = c;
        v8i m = x01 > best;
        best = m ? x01 : best, arg = m ? c + 1 : arg;
        m = x10 > best;
        best = m ? x10 : best, arg = m ? c + int32_t(W) : arg;
        m = x11 > best;
        best = m ? x11 : best, arg = m ? c + int32_t(W + 1) : arg;
        __builtin_memcpy(yo + ph * Wp + pw, &best, 32);
        __builtin_memcpy(io + ph * Wp + pw, &arg, 32);
      }
    }
    std::memcpy(out + o * Hp * Wp, stage, size_t(Hp * Wp) * sizeof(float));
    std::memcpy(idx + o * Hp * Wp, istage, size_t(Hp * Wp) * sizeof(int32_t));
  }
}

// Its weight and bias gradients for one sample, accumulated into gw (O, taps), gb (O): each
// window's gradient reaches the conv output at its maximum, where the ReLU passed it
// (out > 0), so gw[o][t] += g * x[idx + off[t]] and gb[o] += g.
// xs: the sample's input followed by 4 zeros (scratch), so that 4-wide row loads stay inside.
MOX_SIMD void direct_relu_pool_wgrad_sample(const float* __restrict x, const float* __restrict out,
                                            const int32_t* __restrict idx,
                                            const float* __restrict gy, float* __restrict gw,
                                            float* __restrict gb, const ConvGeom& g,
                                            float* __restrict xs) {
  const int64_t taps = g.Kc, Pp = (g.Ho / 2) * (g.Wo / 2), in = g.C * g.H * g.W;
  for (int64_t i = 0; i < in; i++) xs[i] = x[i];
  for (int64_t i = in; i < in + 4; i++) xs[i] = 0.0f;
  if (g.kw <= 4 && g.C * g.kh <= 9) {
    // Each kernel row (c, ki) of a window's patch is one 4-float load: 9 vector
    // accumulators, two sets (even and odd windows) so that the FMA chains overlap.
    typedef float v4f __attribute__((vector_size(16)));
    const int64_t rows = g.C * g.kh;
    int64_t roff[9] = {};
    for (int64_t c = 0, r = 0; c < g.C; c++)
      for (int64_t ki = 0; ki < g.kh; ki++) roff[r++] = (c * g.H + ki) * g.W;
    for (int64_t o = 0; o < g.O; o++) {
      const float* yo = out + o * Pp;
      const float* go = gy + o * Pp;
      const int32_t* io = idx + o * Pp;
      v4f a[9] = {}, b[9] = {};
      float sa = 0.0f, sb = 0.0f;
      int64_t k = 0;
      for (; k + 2 <= Pp; k += 2) {
        const float g0 = yo[k] > 0.0f ? go[k] : 0.0f, g1 = yo[k + 1] > 0.0f ? go[k + 1] : 0.0f;
        sa += g0, sb += g1;
        const float *x0 = xs + io[k], *x1 = xs + io[k + 1];
        for (int r = 0; r < 9; r++)
          if (r < rows) {
            v4f u, v;
            __builtin_memcpy(&u, x0 + roff[r], 16);
            __builtin_memcpy(&v, x1 + roff[r], 16);
            a[r] += g0 * u, b[r] += g1 * v;
          }
      }
      for (; k < Pp; k++) {
        const float g0 = yo[k] > 0.0f ? go[k] : 0.0f;
        sa += g0;
        const float* x0 = xs + io[k];
        for (int r = 0; r < 9; r++)
          if (r < rows) {
            v4f u;
            __builtin_memcpy(&u, x0 + roff[r], 16);
            a[r] += g0 * u;
          }
      }
      if (gw)
        for (int64_t r = 0; r < rows; r++)
          for (int64_t kj = 0; kj < g.kw; kj++) gw[o * taps + r * g.kw + kj] += a[r][kj] + b[r][kj];
      if (gb) gb[o] += sa + sb;
    }
    return;
  }
  int64_t off[kMaxTaps];
  tap_offsets(g, off);
  for (int64_t o = 0; o < g.O; o++) {
    const float* yo = out + o * Pp;
    const float* go = gy + o * Pp;
    const int32_t* io = idx + o * Pp;
    float acc[kMaxTaps] = {};
    float sb = 0.0f;
    for (int64_t k = 0; k < Pp; k++) {
      const float gk = yo[k] > 0.0f ? go[k] : 0.0f;
      sb += gk;
      const float* xk = xs + io[k];
      for (int64_t t = 0; t < taps; t++) acc[t] += gk * xk[off[t]];
    }
    if (gw)
      for (int64_t t = 0; t < taps; t++) gw[o * taps + t] += acc[t];
    if (gb) gb[o] += sb;
  }
}

}  // namespace

bool direct_ok(const ConvGeom& g) {
  const Conv2dParams& p = g.p;
  return g.G == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0 &&
         p.dil_h == 1 && p.dil_w == 1 && g.Kc <= 27 && g.Kc <= kMaxTaps && !g.pointwise &&
         g.Ho >= 1 && g.Wo >= 1;
}

void direct_forward(const float* x, const float* w, const float* bias, float* y,
                    const ConvGeom& g, int nt) {
  nt = int(std::max<int64_t>(1, std::min<int64_t>(nt, g.N)));
  const int64_t S = direct_scratch(g);
  Tensor buf = empty({nt, S}, DType::F32);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    float* wide = buf.data<float>() + t * S;
    for (int64_t n = part(g.N, t, T); n < part(g.N, t + 1, T); n++)
      direct_forward_sample(x + n * g.C * g.H * g.W, w, bias, y + n * g.O * g.Ho * g.Wo, g,
                            g.p.relu, wide);
  }
}

void direct_backward_weight(const float* x, const float* gy, const float* relu_out, float* gw,
                            float* gb, const ConvGeom& g, int nt) {
  nt = int(std::max<int64_t>(1, std::min<int64_t>(nt, g.N)));
  const int64_t L = (g.Ho - 1) * g.W + g.Wo, wsize = g.O * g.Kc, psize = wsize + g.O;
  Tensor buf = empty({nt, psize + L}, DType::F32);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    float* pw = buf.data<float>() + t * (psize + L);
    std::fill(pw, pw + psize, 0.0f);
    for (int64_t n = part(g.N, t, T); n < part(g.N, t + 1, T); n++)
      direct_wgrad_sample(x + n * g.C * g.H * g.W, gy + n * g.O * g.Ho * g.Wo,
                          relu_out ? relu_out + n * g.O * g.Ho * g.Wo : nullptr, pw,
                          gb ? pw + wsize : nullptr, g, pw + psize);
  }
  const float* pd = buf.data<float>();
  for (int k = 0; k < 2; k++) {
    float* out = k == 0 ? gw : gb;
    if (!out) continue;
    const int64_t off = k == 0 ? 0 : wsize, len = k == 0 ? wsize : g.O;
    std::memcpy(out, pd + off, size_t(len) * sizeof(float));
    for (int t = 1; t < nt; t++)
      for (int64_t i = 0; i < len; i++) out[i] += pd[t * (psize + L) + off + i];
  }
}

ConvGeom relu_pool_geometry(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  ConvGeom g;
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.O = w.size(0), g.kh = w.size(2), g.kw = w.size(3);
  g.Ho = g.H - g.kh + 1, g.Wo = g.W - g.kw + 1;
  g.G = 1, g.Cg = g.C, g.Og = g.O;
  g.P = g.Ho * g.Wo, g.Kc = g.C * g.kh * g.kw;
  g.p = p;
  g.pointwise = g.kh == 1 && g.kw == 1;
  return g;
}

}  // namespace mox::cpu::conv

namespace mox {

using namespace cpu::conv;

bool CpuBackend::conv2d_relu_pool2_supported(const Tensor& x, const Tensor& w,
                                             const Conv2dParams& p) {
  if (x.dtype() != DType::F32 || w.dtype() != DType::F32 || x.dim() != 4 || w.dim() != 4 ||
      !x.is_contiguous() || !w.is_contiguous() || p.groups != 1 || w.size(1) != x.size(1) ||
      w.size(2) > x.size(2) || w.size(3) > x.size(3))
    return false;
  ConvGeom g = relu_pool_geometry(x, w, p);
  return direct_ok(g) && g.Ho >= 2 && g.Wo >= 2 && g.H * g.W * g.C < (int64_t(1) << 31);
}

void CpuBackend::conv2d_relu_pool2(const Tensor& x, const Tensor& w, const Tensor& bias,
                                   const Tensor& out, const Tensor& indices,
                                   const Conv2dParams& p) {
  MOX_CHECK(conv2d_relu_pool2_supported(x, w, p), "conv2d_relu_pool2",
            "unsupported input " + x.desc() + " / weight " + w.desc());
  check_contig(bias, "conv2d_relu_pool2", "bias");
  ConvGeom g = relu_pool_geometry(x, w, p);
  const int nt = int(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), g.N)));
  // + slack for the pooling's last loads, + the two staging planes
  const int64_t S = direct_scratch(g) + kChunk + 2 * ((g.Ho / 2) * (g.Wo / 2) + 8);
  Tensor buf = empty({nt, S}, DType::F32);
  const float *xd = x.data<float>(), *wd = w.data<float>();
  const float* bd = bias.defined() ? bias.data<float>() : nullptr;
  float* yd = out.data<float>();
  int32_t* id = indices.data<int32_t>();
  const int64_t Pp = (g.Ho / 2) * (g.Wo / 2);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    float* scratch = buf.data<float>() + t * S;
    for (int64_t n = part(g.N, t, T); n < part(g.N, t + 1, T); n++)
      direct_relu_pool_sample(xd + n * g.C * g.H * g.W, wd, bd, yd + n * g.O * Pp,
                              id + n * g.O * Pp, g, scratch);
  }
}

void CpuBackend::conv2d_relu_pool2_backward(const Tensor& x, const Tensor& w, const Tensor& out,
                                            const Tensor& indices, const Tensor& gy,
                                            const Tensor& gw, const Tensor& gb,
                                            const Conv2dParams& p) {
  for (const Tensor* t : {&out, &indices, &gy, &gw, &gb})
    check_contig(*t, "conv2d_relu_pool2_backward", "tensor");
  MOX_CHECK(gy.shape() == out.shape() && indices.shape() == out.shape() &&
                gy.dtype() == DType::F32 && indices.dtype() == DType::I32,
            "conv2d_relu_pool2_backward", "gradient " + gy.desc() + " and indices " +
                                               indices.desc() + " must match output " + out.desc());
  MOX_CHECK(conv2d_relu_pool2_supported(x, w, p), "conv2d_relu_pool2_backward",
            "unsupported input " + x.desc() + " / weight " + w.desc());
  ConvGeom g = relu_pool_geometry(x, w, p);
  const int64_t Pp = out.size(2) * out.size(3), wsize = g.O * g.Kc, psize = wsize + g.O;
  const int64_t per = psize + g.C * g.H * g.W + 4;  // partial sums, then the padded input
  const int nt = int(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), g.N)));
  Tensor buf = empty({nt, per}, DType::F32);
  const float *xd = x.data<float>(), *yd = out.data<float>(), *gyd = gy.data<float>();
  const int32_t* id = indices.data<int32_t>();
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    float* pw = buf.data<float>() + t * per;
    std::fill(pw, pw + psize, 0.0f);
    for (int64_t n = part(g.N, t, T); n < part(g.N, t + 1, T); n++)
      direct_relu_pool_wgrad_sample(xd + n * g.C * g.H * g.W, yd + n * g.O * Pp,
                                    id + n * g.O * Pp, gyd + n * g.O * Pp,
                                    gw.defined() ? pw : nullptr, pw + wsize, g, pw + psize);
  }
  const float* pd = buf.data<float>();
  for (int k = 0; k < 2; k++) {
    const Tensor& dst = k == 0 ? gw : gb;
    if (!dst.defined()) continue;
    const int64_t off = k == 0 ? 0 : wsize, len = k == 0 ? wsize : g.O;
    float* o = dst.data<float>();
    std::memcpy(o, pd + off, size_t(len) * sizeof(float));
    for (int t = 1; t < nt; t++)
      for (int64_t i = 0; i < len; i++) o[i] += pd[t * per + off + i];
  }
}

}  // namespace mox
