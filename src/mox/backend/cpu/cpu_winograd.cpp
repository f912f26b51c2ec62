// Winograd F(2x2, 3x3) for f32 3x3 stride-1 convolutions, NCHW: the forward output and the
// input gradient (as a convolution of gy with the flipped kernel). cpu_conv.cpp dispatches
// here when wino_ok() holds; the weight and bias gradients always use im2col there.
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
// 2 - pad, for the input gradient. The f32 rounding error stays around 1e-6 relative.

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
void wino_weights(const float* w, int64_t Cout, int64_t Cin, bool flipped, float* U) {
  for (int64_t co = 0; co < Cout; co++)
    for (int64_t ci = 0; ci < Cin; ci++) {
      float k[3][3];
      for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
          k[a][b] = flipped ? w[((ci * Cout + co) * 3 + 2 - a) * 3 + 2 - b]
                            : w[((co * Cin + ci) * 3 + a) * 3 + b];
      float q[4][3];  // G g
      for (int b = 0; b < 3; b++) {
        q[0][b] = k[0][b];
        q[1][b] = 0.5f * (k[0][b] + k[1][b] + k[2][b]);
        q[2][b] = 0.5f * (k[0][b] - k[1][b] + k[2][b]);
        q[3][b] = k[2][b];
      }
      for (int r = 0; r < 4; r++) {  // (G g) G^T
        float u[4] = {q[r][0], 0.5f * (q[r][0] + q[r][1] + q[r][2]),
                      0.5f * (q[r][0] - q[r][1] + q[r][2]), q[r][2]};
        for (int j = 0; j < 4; j++) U[((r * 4 + j) * Cin + ci) * Cout + co] = u[j];
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
MOX_SIMD void wino_input_f32(const float* x, const WinoGeom& g, float* __restrict V,
                                   int64_t T, int64_t tbase, float* __restrict P,
                                   float* __restrict S) {
  const int64_t C = g.Cin, Wp = g.Wp;
  for (int64_t i = 0; i < g.Hp * Wp * C; i++) P[i] = 0.0f;
  const int64_t rows = std::min(g.H, g.Hp - g.ph), cols = std::min(g.W, Wp - g.pw);
  // (C, H*W) -> (H*W, C) in one transpose (long rows keep it in 8x8 blocks), then the image
  // rows into the padded plane
  transpose(x, g.H * g.W, S, C, C, g.H * g.W);
  for (int64_t h = 0; h < rows; h++) {
    const float* src = S + h * g.W * C;
    float* dst = P + ((h + g.ph) * Wp + g.pw) * C;
    for (int64_t i = 0; i < cols * C; i++) dst[i] = src[i];
  }
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
// (+ bias). Q: scratch for the channel-last output of whole tiles (2*th, 2*tw, Cout).
MOX_SIMD void wino_output_f32(const float* __restrict M, int64_t T, int64_t tbase,
                                    const float* bias, const WinoGeom& g, float* y,
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
  // channel-last -> (Cout, Ho, Wo), dropping the overhang of odd sizes
  if (Wq == g.Wo) {  // even width: one transpose (Ho*Wo, Cout) -> (Cout, Ho*Wo)
    transpose(Q, C, y, g.Ho * g.Wo, g.Ho * g.Wo, C);
  } else {
    for (int64_t h = 0; h < g.Ho; h++)  // (w, Cout) -> (Cout, w) for this image row
      transpose(Q + h * Wq * C, C, y + h * g.Wo, g.Ho * g.Wo, g.Wo, C);
  }
}

// x (N, Cin, H, W) -> y (N, Cout, Ho, Wo) with transformed weights U; threads take whole
// images, in chunks whose tiles are multiplied together (larger GEMMs, buffers in cache).
void wino_conv_f32(const float* x, int64_t N, const float* U, const float* bias, const WinoGeom& g,
                   float* y, int nt) {
  // Chunk: about 1 MB of V and M per thread.
  const int64_t target = std::clamp<int64_t>(16384 / (g.Cin + g.Cout), g.tiles, 1024);
  const int64_t nb = std::max<int64_t>(1, target / g.tiles);
  const int64_t T = nb * g.tiles;
  const int64_t scratch = std::max((g.Hp * g.Wp + g.H * g.W) * g.Cin, 4 * g.tiles * g.Cout);
  const int64_t per_thread = 16 * (g.Cin + g.Cout) * T + scratch;
  Tensor buf = empty({nt, per_thread}, DType::F32);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), TT = omp_get_num_threads();
    float* V = buf.data<float>() + t * per_thread;
    float* M = V + 16 * g.Cin * T;
    float* s = M + 16 * g.Cout * T;
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
        wino_output_f32(M, T, j * g.tiles, bias, g, y + (c0 + j) * g.Cout * g.Ho * g.Wo, s);
    }
  }
}

}  // namespace

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
  wino_weights(w, c.O, c.C, false, U.data<float>());
  wino_conv_f32(x, c.N, U.data<float>(), bias, g, y, nt);
}

// Winograd input gradient: gx (N,C,H,W) = conv(gy (N,O,Ho,Wo), rotated w^T, pad 2 - pad).
void wino_backward_data(const float* gy, const float* w, float* gx, const ConvGeom& c, int nt) {
  WinoGeom g = wino_geometry(c.O, c.C, c.Ho, c.Wo, 2 - c.p.pad_h, 2 - c.p.pad_w);
  Tensor U = empty({16, c.O, c.C}, DType::F32);
  wino_weights(w, c.C, c.O, true, U.data<float>());
  wino_conv_f32(gy, c.N, U.data<float>(), nullptr, g, gx, nt);
}

}  // namespace mox::cpu::conv
