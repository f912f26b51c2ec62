// Winograd F(2x2, 3x3) for f32 3x3 stride-1 convolutions, NCHW: the forward output, the
// input gradient (as a convolution of gy with the flipped kernel) and the weight gradient
// (in the Winograd domain, see wino_backward_weight). cpu_conv.cpp dispatches here when
// wino_ok() holds.
// Threads take whole images; BLAS runs single-threaded (see Split in cpu_conv.cpp).
#include <omp.h>

#include <algorithm>

#include "mox/backend/cpu/conv_internal.h"
#include "mox/backend/cpu/simd.h"

namespace mox::cpu::conv {

namespace {

// A 3x3 stride-1 convolution computed on 4x4 input tiles that each give a 2x2 output block:
// 16 products per tile and channel pair instead of 36 multiply-adds (2.25x fewer), batched
// over tiles as 16 GEMMs  M_xi (T, Cout) = V_xi (T, Cin) @ U_xi (Cin, Cout)  (Lavin & Gray,
// "Fast Algorithms for Convolutional Neural Networks", 2016), with
//   U = G g G^T (weights), V = B^T d B (input tiles), y = A^T M A (outputs).
// Tiles are transformed channel-last, so that the transforms vectorise over channels (and
// OpenBLAS picks its small-matrix kernel for the N = Cout GEMMs).
// Used for f32 forward and, as a convolution of gy with the flipped kernel and padding
// 2 - pad, for the input gradient; the weight gradient is computed in the Winograd domain
// (wino_backward_weight). The f32 rounding error stays around 1e-6 relative.

// Tiles per chunk times (Cin + Cout): the chunk's V and M (16 matrices each) take about
// 64 * kWinoChunk bytes per thread, 512 KB: measured on the seed CNN (2 threads), 512 KB
// to 1 MB chunks were fastest, 4 MB ones 15% slower (the data leaves L2 between the
// transforms and the GEMMs). The weight gradient's chunk (the depth of its GEMMs) likewise.
#ifndef MOX_WINO_CHUNK
#define MOX_WINO_CHUNK 8192
#endif
constexpr int64_t kWinoChunk = MOX_WINO_CHUNK;
#ifndef MOX_WINO_WGRAD_CHUNK
#define MOX_WINO_WGRAD_CHUNK 8192
#endif
constexpr int64_t kWinoWgradChunk = MOX_WINO_WGRAD_CHUNK;

// The transforms' row copies and zero runs are short (11 to a few hundred floats): plain
// loops, not a memcpy/memset call each.
#define MOX_WINO_COPY MOX_SIMD __attribute__((optimize("no-tree-loop-distribute-patterns")))

struct WinoGeom {
  int64_t Cin, Cout, H, W, Ho, Wo, ph, pw;
  int64_t th, tw, tiles;  // tiles per image: th x tw
  int64_t Hp, Wp;         // zero-padded input plane that covers every tile
};

WinoGeom wino_geometry(int64_t Cin, int64_t Cout, int64_t H, int64_t W, int64_t ph, int64_t pw) {
  WinoGeom g;
  g.Cin = Cin, g.Cout = Cout, g.H = H, g.W = W, g.ph = ph, g.pw = pw;
  g.Ho = H + 2 * ph - 2, g.Wo = W + 2 * pw - 2;
  g.th = (g.Ho + 1) / 2, g.tw = (g.Wo + 1) / 2, g.tiles = g.th * g.tw;
  g.Hp = 2 * g.th + 2, g.Wp = 2 * g.tw + 2;
  return g;
}

// U (16, Cin, Cout) = G g G^T for every kernel g. Plain: g = w[cout][cin] with w
// (Cout, Cin, 3, 3). Flipped (input gradient): the conv maps O -> C channels with
// g[c][o] = w[o][c] rotated by 180 degrees, w (O, C, 3, 3) = (Cin, Cout, 3, 3).
// Output channels [co0, co1) only (threads split the transform). Blocks of 16 output
// channels: their 9 taps are first gathered into kt[9][16] (the kernels are strided in w),
// then the transform runs over the block as contiguous 16-wide loops, and each of the 16
// results goes to a contiguous run of a U row (scattered scalar stores made this slow).
MOX_SIMD void wino_weights(const float* w, int64_t Cout, int64_t Cin, bool flipped, float* U,
                           int64_t co0, int64_t co1) {
  const int64_t xs = Cin * Cout;  // distance between the 16 U matrices
  // kernel (co, ci) starts at w + co * cs + ci * ks; flipped reads it rotated by 180 degrees
  const int64_t cs = flipped ? 9 : Cin * 9, ks = flipped ? Cout * 9 : 9;
  for (int64_t ci = 0; ci < Cin; ci++)
    for (int64_t c0 = co0; c0 < co1; c0 += 16) {
      const int64_t n = std::min<int64_t>(16, co1 - c0);
      float kt[9][16] = {};
      for (int64_t j = 0; j < n; j++) {
        const float* kp = w + ci * ks + (c0 + j) * cs;
        for (int t = 0; t < 9; t++) kt[t][j] = flipped ? kp[8 - t] : kp[t];
      }
      float u[16][16];
      for (int j = 0; j < 16; j++) {
        float q[4][3];  // G g
        for (int b = 0; b < 3; b++) {
          const float k0 = kt[b][j], k1 = kt[3 + b][j], k2 = kt[6 + b][j];
          q[0][b] = k0;
          q[1][b] = 0.5f * (k0 + k1 + k2);
          q[2][b] = 0.5f * (k0 - k1 + k2);
          q[3][b] = k2;
        }
        for (int r = 0; r < 4; r++) {  // (G g) G^T
          u[r * 4 + 0][j] = q[r][0];
          u[r * 4 + 1][j] = 0.5f * (q[r][0] + q[r][1] + q[r][2]);
          u[r * 4 + 2][j] = 0.5f * (q[r][0] - q[r][1] + q[r][2]);
          u[r * 4 + 3][j] = q[r][2];
        }
      }
      for (int xi = 0; xi < 16; xi++) {
        float* dst = U + xi * xs + ci * Cout + c0;
        for (int64_t j = 0; j < n; j++) dst[j] = u[xi][j];
      }
    }
}

// dst[j * dst_ld + i] = src[i * src_ld + j] for i < rows, j < cols: 8x8 blocks through
// vector shuffles (GCC vector extensions, so each ISA clone gets its own instructions),
// scalar at the edges. The Winograd transforms use it to go channel-last and back.
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
MOX_INLINE void transpose(const float* src, int64_t src_ld, float* dst,
                                                     int64_t dst_ld, int64_t rows, int64_t cols) {
  int64_t i0 = 0;
  for (; i0 + 8 <= rows; i0 += 8) {
    int64_t j0 = 0;
    for (; j0 + 8 <= cols; j0 += 8) {
      v8f r[8];
      for (int k = 0; k < 8; k++) __builtin_memcpy(&r[k], src + (i0 + k) * src_ld + j0, 32);
      const v8i lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
      const v8i lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
      const v8i lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
      v8f t[8], u[8];
      for (int k = 0; k < 8; k += 2) {
        t[k] = __builtin_shuffle(r[k], r[k + 1], lo);
        t[k + 1] = __builtin_shuffle(r[k], r[k + 1], hi);
      }
      for (int k = 0; k < 8; k += 4) {
        u[k] = __builtin_shuffle(t[k], t[k + 2], lo2);
        u[k + 1] = __builtin_shuffle(t[k], t[k + 2], hi2);
        u[k + 2] = __builtin_shuffle(t[k + 1], t[k + 3], lo2);
        u[k + 3] = __builtin_shuffle(t[k + 1], t[k + 3], hi2);
      }
      for (int k = 0; k < 4; k++) {
        v8f a = __builtin_shuffle(u[k], u[k + 4], lo4), b = __builtin_shuffle(u[k], u[k + 4], hi4);
        __builtin_memcpy(dst + (j0 + k) * dst_ld + i0, &a, 32);
        __builtin_memcpy(dst + (j0 + k + 4) * dst_ld + i0, &b, 32);
      }
    }
    for (; j0 < cols; j0++)
      for (int64_t i = i0; i < i0 + 8; i++) dst[j0 * dst_ld + i] = src[i * src_ld + j0];
  }
  for (int64_t j = 0; j < cols; j++)
    for (int64_t i = i0; i < rows; i++) dst[j * dst_ld + i] = src[i * src_ld + j];
}

// One image x (Cin, H, W) -> V[xi][tbase + tile][c] (V is (16, T, Cin)).
// P: scratch for the zero-padded channel-last image (Hp, Wp, Cin); S: (H, W, Cin).
MOX_WINO_COPY void wino_input_f32(const float* x, const WinoGeom& g, float* __restrict V,
                                   int64_t T, int64_t tbase, float* __restrict P,
                                   float* __restrict S) {
  const int64_t C = g.Cin, Wp = g.Wp;
  const int64_t rows = std::min(g.H, g.Hp - g.ph), cols = std::min(g.W, Wp - g.pw);
  // (C, H*W) -> (H*W, C) in one transpose (long rows keep it in 8x8 blocks), then the image
  // rows into the padded plane; only the padding around them is zeroed
  transpose(x, g.H * g.W, S, C, C, g.H * g.W);
  for (int64_t i = 0; i < g.ph * Wp * C; i++) P[i] = 0.0f;
  for (int64_t h = 0; h < rows; h++) {
    const float* src = S + h * g.W * C;
    float* row = P + (h + g.ph) * Wp * C;
    for (int64_t i = 0; i < g.pw * C; i++) row[i] = 0.0f;
    float* dst = row + g.pw * C;
    for (int64_t i = 0; i < cols * C; i++) dst[i] = src[i];
    for (int64_t i = (g.pw + cols) * C; i < Wp * C; i++) row[i] = 0.0f;
  }
  for (int64_t i = (g.ph + rows) * Wp * C; i < g.Hp * Wp * C; i++) P[i] = 0.0f;
  const int64_t xs = T * C;  // distance between the 16 V matrices
  for (int64_t ty = 0; ty < g.th; ty++)
    for (int64_t tx = 0; tx < g.tw; tx++) {
      // the 4x4 patch: rows r0..r3, each 4 channel-vectors wide; named pointers (not arrays
      // of pointers) so that GCC vectorises the channel loop
      const float* r0 = P + (2 * ty * Wp + 2 * tx) * C;
      const float *r1 = r0 + Wp * C, *r2 = r1 + Wp * C, *r3 = r2 + Wp * C;
      float* v = V + (tbase + ty * g.tw + tx) * C;
      float *v0 = v, *v1 = v + xs, *v2 = v + 2 * xs, *v3 = v + 3 * xs;
      float *v4 = v + 4 * xs, *v5 = v + 5 * xs, *v6 = v + 6 * xs, *v7 = v + 7 * xs;
      float *v8 = v + 8 * xs, *v9 = v + 9 * xs, *v10 = v + 10 * xs, *v11 = v + 11 * xs;
      float *v12 = v + 12 * xs, *v13 = v + 13 * xs, *v14 = v + 14 * xs, *v15 = v + 15 * xs;
      const float *r01 = r0 + C, *r02 = r0 + 2 * C, *r03 = r0 + 3 * C;
      const float *r11 = r1 + C, *r12 = r1 + 2 * C, *r13 = r1 + 3 * C;
      const float *r21 = r2 + C, *r22 = r2 + 2 * C, *r23 = r2 + 3 * C;
      const float *r31 = r3 + C, *r32 = r3 + 2 * C, *r33 = r3 + 3 * C;
      // The 16 V and 4x4 patch streams never overlap (distinct rows of distinct buffers),
      // which GCC cannot prove for runtime strides: ivdep lets it vectorise over channels.
#pragma GCC ivdep
      for (int64_t c = 0; c < C; c++) {
        // B^T d: t_kj for the four patch columns j
        const float t00 = r0[c] - r2[c], t10 = r1[c] + r2[c], t20 = r2[c] - r1[c], t30 = r1[c] - r3[c];
        const float t01 = r01[c] - r21[c], t11 = r11[c] + r21[c], t21 = r21[c] - r11[c],
                    t31 = r11[c] - r31[c];
        const float t02 = r02[c] - r22[c], t12 = r12[c] + r22[c], t22 = r22[c] - r12[c],
                    t32 = r12[c] - r32[c];
        const float t03 = r03[c] - r23[c], t13 = r13[c] + r23[c], t23 = r23[c] - r13[c],
                    t33 = r13[c] - r33[c];
        // (B^T d) B: v_{4k+j}
        v0[c] = t00 - t02, v1[c] = t01 + t02, v2[c] = t02 - t01, v3[c] = t01 - t03;
        v4[c] = t10 - t12, v5[c] = t11 + t12, v6[c] = t12 - t11, v7[c] = t11 - t13;
        v8[c] = t20 - t22, v9[c] = t21 + t22, v10[c] = t22 - t21, v11[c] = t21 - t23;
        v12[c] = t30 - t32, v13[c] = t31 + t32, v14[c] = t32 - t31, v15[c] = t31 - t33;
      }
    }
}

// M[xi][tbase + tile][o] (M is (16, T, Cout)) -> one image y (Cout, Ho, Wo) = A^T M A
// (+ bias, then the fused ReLU when relu). Q: scratch for the channel-last output of whole
// tiles (2*th, 2*tw, Cout), and as much again for its transpose.
MOX_WINO_COPY void wino_output_f32(const float* __restrict M, int64_t T, int64_t tbase,
                                    const float* bias, bool relu, const WinoGeom& g, float* y,
                                    float* __restrict Q) {
  const int64_t C = g.Cout, Wq = 2 * g.tw;
  const int64_t xs = T * C;
  for (int64_t ty = 0; ty < g.th; ty++)
    for (int64_t tx = 0; tx < g.tw; tx++) {
      const float* m0 = M + (tbase + ty * g.tw + tx) * C;  // named pointers: see wino_input_f32
      const float *m1 = m0 + xs, *m2 = m0 + 2 * xs, *m3 = m0 + 3 * xs, *m4 = m0 + 4 * xs;
      const float *m5 = m0 + 5 * xs, *m6 = m0 + 6 * xs, *m7 = m0 + 7 * xs, *m8 = m0 + 8 * xs;
      const float *m9 = m0 + 9 * xs, *m10 = m0 + 10 * xs, *m11 = m0 + 11 * xs;
      const float *m12 = m0 + 12 * xs, *m13 = m0 + 13 * xs, *m14 = m0 + 14 * xs;
      const float* m15 = m0 + 15 * xs;
      float* q00 = Q + (2 * ty * Wq + 2 * tx) * C;
      float *q01 = q00 + C, *q10 = q00 + Wq * C, *q11 = q10 + C;
#pragma GCC ivdep
      for (int64_t o = 0; o < C; o++) {
        // A^T M: the four rows folded into two (s0_j, s1_j), then A on the columns
        const float s00 = m0[o] + m4[o] + m8[o], s01 = m1[o] + m5[o] + m9[o],
                    s02 = m2[o] + m6[o] + m10[o], s03 = m3[o] + m7[o] + m11[o];
        const float s10 = m4[o] - m8[o] - m12[o], s11 = m5[o] - m9[o] - m13[o],
                    s12 = m6[o] - m10[o] - m14[o], s13 = m7[o] - m11[o] - m15[o];
        const float b = bias ? bias[o] : 0.0f;
        q00[o] = s00 + s01 + s02 + b;
        q01[o] = s01 - s02 - s03 + b;
        q10[o] = s10 + s11 + s12 + b;
        q11[o] = s11 - s12 - s13 + b;
      }
    }
  const int64_t nq = 2 * g.th * Wq * C;
  if (relu)  // the fused ReLU as the op computes it (NaN -> 0), a pass over Q in cache
    for (int64_t i = 0; i < nq; i++) Q[i] = Q[i] > 0.0f ? Q[i] : 0.0f;
  // channel-last -> (Cout, Ho, Wo), dropping the overhang of odd sizes
  if (Wq == g.Wo && 2 * g.th == g.Ho) {  // even sizes: one transpose (Ho*Wo, Cout) -> (Cout, Ho*Wo)
    transpose(Q, C, y, g.Ho * g.Wo, g.Ho * g.Wo, C);
  } else {
    // one whole transpose (whole 8x8 blocks, unlike narrow per-row ones) into R, then the
    // rows without the overhang
    float* __restrict R = Q + nq;
    const int64_t rows = 2 * g.th * Wq;
    transpose(Q, C, R, rows, rows, C);
    for (int64_t o = 0; o < C; o++)
      for (int64_t h = 0; h < g.Ho; h++) {
        const float* src = R + o * rows + h * Wq;
        float* dst = y + (o * g.Ho + h) * g.Wo;
        for (int64_t w = 0; w < g.Wo; w++) dst[w] = src[w];
      }
  }
}

// x (N, Cin, H, W) -> y (N, Cout, Ho, Wo) with transformed weights U; threads take whole
// images, in chunks whose tiles are multiplied together (larger GEMMs, buffers in cache).
// The kernels w are transformed into U (16, Cin, Cout) inside the parallel region, each
// thread a share of the output channels (serially it idled the other threads).
void wino_conv_f32(const float* x, int64_t N, const float* w, bool flipped, float* U,
                   const float* bias, bool relu, const WinoGeom& g, float* y, int nt) {
  // Chunk: see kWinoChunk.
  const int64_t target = std::clamp<int64_t>(kWinoChunk / (g.Cin + g.Cout), g.tiles, 4096);
  const int64_t nb = std::max<int64_t>(1, target / g.tiles);
  const int64_t T = nb * g.tiles;
  const int64_t scratch = std::max((g.Hp * g.Wp + g.H * g.W) * g.Cin, 8 * g.tiles * g.Cout);
  const int64_t per_thread = 16 * (g.Cin + g.Cout) * T + scratch;
  Tensor buf = empty({nt, per_thread}, DType::F32);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), TT = omp_get_num_threads();
    float* V = buf.data<float>() + t * per_thread;
    float* M = V + 16 * g.Cin * T;
    float* s = M + 16 * g.Cout * T;
    wino_weights(w, g.Cout, g.Cin, flipped, U, part(g.Cout, t, TT), part(g.Cout, t + 1, TT));
#pragma omp barrier
    const int64_t n0 = part(N, t, TT), n1 = part(N, t + 1, TT);
    for (int64_t c0 = n0; c0 < n1; c0 += nb) {
      const int64_t cn = std::min(nb, n1 - c0), Tc = cn * g.tiles;
      for (int64_t j = 0; j < cn; j++)
        wino_input_f32(x + (c0 + j) * g.Cin * g.H * g.W, g, V, T, j * g.tiles, s,
                       s + g.Hp * g.Wp * g.Cin);
      // M_xi (Tc, Cout) = V_xi (Tc, Cin) @ U_xi (Cin, Cout)
      for (int xi = 0; xi < 16; xi++)
        gemm(false, false, Tc, g.Cout, g.Cin, 1.0f, V + xi * T * g.Cin, g.Cin,
             U + xi * g.Cin * g.Cout, g.Cout, 0.0f, M + xi * T * g.Cout, g.Cout);
      for (int64_t j = 0; j < cn; j++)
        wino_output_f32(M, T, j * g.tiles, bias, relu, g, y + (c0 + j) * g.Cout * g.Ho * g.Wo,
                        s);
    }
  }
}

// The weight gradient in the Winograd domain. From y = A^T [U . V] A per tile and channel
// pair, dL/dU_xi (Cin, Cout) = sum over tiles of V_xi^T dM_xi with dM = A dY A^T (dY: the
// tile's 2x2 output gradient, zero on the overhang of odd sizes), and dL/dg = G^T dU G:
// 16 GEMMs with the tiles as their (long) depth, instead of im2col + GEMM per image.
//
// One image gy (Cout, Ho, Wo) -> D[xi][tbase + tile][o] (D is (16, T, Cout)).
// Q: scratch (2*th, 2*tw, Cout), and as much again.
MOX_WINO_COPY void wino_grad_output_f32(const float* gy, const WinoGeom& g, float* __restrict D,
                                   int64_t T, int64_t tbase, float* __restrict Q) {
  const int64_t C = g.Cout, Wq = 2 * g.tw, P = g.Ho * g.Wo;
  if (Wq == g.Wo && 2 * g.th == g.Ho) {
    transpose(gy, P, Q, C, C, P);  // (Cout, Ho*Wo) -> (Ho*Wo, Cout)
  } else {
    float* __restrict R = Q + 2 * g.th * Wq * C;
    transpose(gy, P, R, C, C, P);
    for (int64_t i = 0; i < 2 * g.th * Wq * C; i++) Q[i] = 0.0f;  // the overhang stays zero
    for (int64_t h = 0; h < g.Ho; h++)
      for (int64_t i = 0; i < g.Wo * C; i++) Q[h * Wq * C + i] = R[h * g.Wo * C + i];
  }
  const int64_t xs = T * C;
  for (int64_t ty = 0; ty < g.th; ty++)
    for (int64_t tx = 0; tx < g.tw; tx++) {
      const float* d00 = Q + (2 * ty * Wq + 2 * tx) * C;  // named pointers: see wino_input_f32
      const float *d01 = d00 + C, *d10 = d00 + Wq * C, *d11 = d10 + C;
      float* m0 = D + (tbase + ty * g.tw + tx) * C;
      float *m1 = m0 + xs, *m2 = m0 + 2 * xs, *m3 = m0 + 3 * xs, *m4 = m0 + 4 * xs;
      float *m5 = m0 + 5 * xs, *m6 = m0 + 6 * xs, *m7 = m0 + 7 * xs, *m8 = m0 + 8 * xs;
      float *m9 = m0 + 9 * xs, *m10 = m0 + 10 * xs, *m11 = m0 + 11 * xs;
      float *m12 = m0 + 12 * xs, *m13 = m0 + 13 * xs, *m14 = m0 + 14 * xs;
      float* m15 = m0 + 15 * xs;
#pragma GCC ivdep
      for (int64_t o = 0; o < C; o++) {
        // A dY: rows u_r = (d0j, d0j + d1j, d0j - d1j, -d1j); then (A dY) A^T on the columns
        const float a = d00[o], b = d01[o], c = d10[o], d = d11[o];
        const float u10 = a + c, u11 = b + d, u20 = a - c, u21 = b - d;
        m0[o] = a, m1[o] = a + b, m2[o] = a - b, m3[o] = -b;
        m4[o] = u10, m5[o] = u10 + u11, m6[o] = u10 - u11, m7[o] = -u11;
        m8[o] = u20, m9[o] = u20 + u21, m10[o] = u20 - u21, m11[o] = -u21;
        m12[o] = -c, m13[o] = -c - d, m14[o] = d - c, m15[o] = d;
      }
    }
}

// Sum of n floats with 16 partial sums (vectorises; one running sum would wait on the add
// latency at every element).
MOX_SIMD float plane_sum(const float* r, int64_t n) {
  float acc[16] = {}, s = 0.0f;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += r[i + j];
  for (; i < n; i++) s += r[i];
  for (int j = 0; j < 16; j++) s += acc[j];
  return s;
}

}  // namespace

// Winograd weight (and bias) gradient: x (N,C,H,W), gy (N,O,Ho,Wo) -> gw (O,C,3,3), gb (O)
// (gb may be null). Threads take whole images with per-thread partial sums, added in thread
// order (deterministic for a given thread count).
void wino_backward_weight(const float* x, const float* gy, float* gw, float* gb,
                          const ConvGeom& c, int nt) {
  WinoGeom g = wino_geometry(c.C, c.O, c.H, c.W, c.p.pad_h, c.p.pad_w);
  const int64_t N = c.N, P = c.Ho * c.Wo;
  const int64_t target = std::clamp<int64_t>(kWinoWgradChunk / (g.Cin + g.Cout), g.tiles, 4096);
  const int64_t nb = std::max<int64_t>(1, target / g.tiles);
  const int64_t T = nb * g.tiles;
  const int64_t scratch = std::max((g.Hp * g.Wp + g.H * g.W) * g.Cin, 8 * g.tiles * g.Cout);
  const int64_t usize = 16 * g.Cin * g.Cout, psize = usize + g.Cout;
  const int64_t per_thread = 16 * (g.Cin + g.Cout) * T + scratch + psize;
  Tensor buf = empty({nt, per_thread}, DType::F32);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), TT = omp_get_num_threads();
    float* V = buf.data<float>() + t * per_thread;
    float* D = V + 16 * g.Cin * T;
    float* s = D + 16 * g.Cout * T;
    float* dU = s + scratch;  // (16, Cin, Cout), then the bias partial (Cout)
    float* pb = dU + usize;
    const int64_t n0 = part(N, t, TT), n1 = part(N, t + 1, TT);
    if (n1 == n0) std::fill(dU, dU + psize, 0.0f);
    for (int64_t c0 = n0; c0 < n1; c0 += nb) {
      const int64_t cn = std::min(nb, n1 - c0), Tc = cn * g.tiles;
      for (int64_t j = 0; j < cn; j++) {
        wino_input_f32(x + (c0 + j) * g.Cin * g.H * g.W, g, V, T, j * g.tiles, s,
                       s + g.Hp * g.Wp * g.Cin);
        wino_grad_output_f32(gy + (c0 + j) * g.Cout * P, g, D, T, j * g.tiles, s);
      }
      // dU_xi (Cin, Cout) (+)= V_xi^T (Cin, Tc) @ D_xi (Tc, Cout)
      const float beta = c0 == n0 ? 0.0f : 1.0f;
      for (int xi = 0; xi < 16; xi++)
        gemm(true, false, g.Cin, g.Cout, Tc, 1.0f, V + xi * T * g.Cin, g.Cin,
             D + xi * T * g.Cout, g.Cout, beta, dU + xi * g.Cin * g.Cout, g.Cout);
    }
    if (gb && n1 > n0)
      for (int64_t o = 0; o < g.Cout; o++) {
        float acc = 0.0f;
        for (int64_t n = n0; n < n1; n++) acc += plane_sum(gy + (n * g.Cout + o) * P, P);
        pb[o] = acc;
      }
#pragma omp barrier
    // each thread: its output channels' partials summed in thread order, then
    // gw[o][ci] = G^T dU[.][ci][o] G
    const float* base = buf.data<float>() + (16 * (g.Cin + g.Cout) * T + scratch);
    for (int64_t co = part(g.Cout, t, TT); co < part(g.Cout, t + 1, TT); co++) {
      for (int64_t ci = 0; ci < g.Cin; ci++) {
        float u[4][4];
        for (int r = 0; r < 4; r++)
          for (int q = 0; q < 4; q++) {
            const int64_t e = ((r * 4 + q) * g.Cin + ci) * g.Cout + co;
            float v = base[e];
            for (int k = 1; k < TT; k++) v += base[k * per_thread + e];
            u[r][q] = v;
          }
        float h[3][4];  // G^T u: G^T rows (1, .5, .5, 0), (0, .5, -.5, 0), (0, .5, .5, 1)
        for (int q = 0; q < 4; q++) {
          h[0][q] = u[0][q] + 0.5f * (u[1][q] + u[2][q]);
          h[1][q] = 0.5f * (u[1][q] - u[2][q]);
          h[2][q] = 0.5f * (u[1][q] + u[2][q]) + u[3][q];
        }
        float* k = gw + (co * g.Cin + ci) * 9;
        for (int a = 0; a < 3; a++) {  // (G^T u) G
          k[a * 3 + 0] = h[a][0] + 0.5f * (h[a][1] + h[a][2]);
          k[a * 3 + 1] = 0.5f * (h[a][1] - h[a][2]);
          k[a * 3 + 2] = 0.5f * (h[a][1] + h[a][2]) + h[a][3];
        }
      }
      if (gb) {
        float v = base[usize + co];
        for (int k = 1; k < TT; k++) v += base[k * per_thread + usize + co];
        gb[co] = v;
      }
    }
  }
}

// Worth it (and valid): 3x3, stride 1, no dilation, one group, padding <= 2 (so that the
// input gradient's padding 2 - pad is valid too), enough channels for the GEMMs to dominate
// the transforms, and a thread split that keeps BLAS single-threaded (see Split in
// cpu_conv.cpp).
bool wino_ok(const ConvGeom& g, int64_t cin, int64_t cout, int threads) {
  const Conv2dParams& p = g.p;
  return g.kh == 3 && g.kw == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 &&
         p.dil_w == 1 && g.G == 1 && p.pad_h <= 2 && p.pad_w <= 2 && cin >= 8 && cout >= 8 &&
         g.Ho >= 2 && g.Wo >= 2 && (threads <= 1 || g.N >= threads);
}

// Winograd forward: x (N,C,H,W), w (O,C,3,3), bias (O) -> y (N,O,Ho,Wo).
void wino_forward(const float* x, const float* w, const float* bias, float* y, const ConvGeom& c,
                  int nt) {
  WinoGeom g = wino_geometry(c.C, c.O, c.H, c.W, c.p.pad_h, c.p.pad_w);
  Tensor U = empty({16, c.C, c.O}, DType::F32);
  wino_conv_f32(x, c.N, w, false, U.data<float>(), bias, c.p.relu, g, y, nt);
}

// Winograd input gradient: gx (N,C,H,W) = conv(gy (N,O,Ho,Wo), rotated w^T, pad 2 - pad).
void wino_backward_data(const float* gy, const float* w, float* gx, const ConvGeom& c, int nt) {
  WinoGeom g = wino_geometry(c.O, c.C, c.Ho, c.Wo, 2 - c.p.pad_h, 2 - c.p.pad_w);
  Tensor U = empty({16, c.O, c.C}, DType::F32);
  wino_conv_f32(gy, c.N, w, true, U.data<float>(), nullptr, false, g, gx, nt);
}

}  // namespace mox::cpu::conv
