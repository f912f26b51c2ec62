// 2-D convolution (im2col + BLAS GEMM per group) and max/avg pooling, NCHW, f32/f64.
// Threads split the batch: each thread owns its column buffers (and, in backward, its
// weight/bias-gradient partial sums, added up in thread order so results are deterministic).
// A batch smaller than the thread count is processed one sample at a time with the im2col
// split by channel and the GEMMs split by rows; BLAS itself always runs single-threaded
// (see Split below). 1x1 stride-1 unpadded convolutions skip im2col; f32 3x3 stride-1
// convolutions use Winograd F(2x2, 3x3) for the output and the input gradient.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/simd.h"
#include "mox/backend/cpu/loops.h"


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

// Stride 1 along both axes, no column dilation and output width == input width ("same"
// padding along W): then every column-matrix row (c, ki, kj) is the input plane shifted by
// whole rows and by s = kj - pad_w columns, so it is one contiguous block copy plus a few
// edge cells that wrapped around a row end. Rows are short (14-56 pixels in typical CNNs),
// so this avoids a memcpy/memset call per image row.
bool block_shift(const ConvGeom& g) {
  const Conv2dParams& p = g.p;
  return p.stride_h == 1 && p.stride_w == 1 && p.dil_w == 1 && g.Wo == g.W;
}

// Output rows [oh0, oh1) whose input row oh - pad_h + ki*dil_h lies inside [0, H).
inline void valid_rows(const ConvGeom& g, int64_t ki, int64_t& oh0, int64_t& oh1) {
  int64_t off = ki * g.p.dil_h - g.p.pad_h;  // ih = oh + off (stride 1)
  oh0 = std::clamp<int64_t>(-off, 0, g.Ho);
  oh1 = std::clamp<int64_t>(g.H - off, oh0, g.Ho);
}

// x (Cg,H,W) -> col (Cg*kh*kw, Ho*Wo) for channels [c0, c1); out-of-image taps are zero.
template <typename T>
MOX_INLINE void im2col_impl(const T* x, const ConvGeom& g, T* col,
                                                       int64_t c0, int64_t c1) {
  const Conv2dParams& p = g.p;
  if (block_shift(g)) {
    const int64_t W = g.W, P = g.P;
    for (int64_t c = c0; c < c1; c++)
      for (int64_t ki = 0; ki < g.kh; ki++) {
        int64_t oh0, oh1;
        valid_rows(g, ki, oh0, oh1);
        const int64_t off = (ki * p.dil_h - p.pad_h) * W;  // src = dst + off + s
        for (int64_t kj = 0; kj < g.kw; kj++) {
          T* row = col + ((c * g.kh + ki) * g.kw + kj) * P;
          const T* xc = x + c * g.H * W;
          const int64_t s = kj - p.pad_w;
          // whole block, clipped so that the source stays inside this channel's plane
          const int64_t d0 = oh0 * W + std::max<int64_t>(0, -s);
          const int64_t d1 = std::max(d0, oh1 * W - std::max<int64_t>(0, s));
          for (int64_t d = 0; d < d0; d++) row[d] = T(0);
          const T* src = xc + off + s;
          for (int64_t d = d0; d < d1; d++) row[d] = src[d];
          for (int64_t d = d1; d < P; d++) row[d] = T(0);
          // cells whose column wrapped into the neighbouring image row
          if (s > 0)
            for (int64_t oh = oh0; oh < oh1; oh++)
              for (int64_t ow = W - s; ow < W; ow++) row[oh * W + ow] = T(0);
          else if (s < 0)
            for (int64_t oh = oh0; oh < oh1; oh++)
              for (int64_t ow = 0; ow < -s; ow++) row[oh * W + ow] = T(0);
        }
      }
    return;
  }
  for (int64_t c = c0; c < c1; c++)
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

// col (Cg*kh*kw, Ho*Wo) -> gx (Cg,H,W) for channels [c0, c1), accumulating (gx must start
// zeroed).
// In the block-shift case `col` is scratch and its wrapped edge cells are overwritten.
template <typename T>
MOX_INLINE void col2im_impl(T* col, const ConvGeom& g, T* gx, int64_t c0,
                                                       int64_t c1) {
  const Conv2dParams& p = g.p;
  if (block_shift(g)) {
    const int64_t W = g.W;
    for (int64_t c = c0; c < c1; c++)
      for (int64_t ki = 0; ki < g.kh; ki++) {
        int64_t oh0, oh1;
        valid_rows(g, ki, oh0, oh1);
        const int64_t off = (ki * p.dil_h - p.pad_h) * W;
        for (int64_t kj = 0; kj < g.kw; kj++) {
          T* row = col + ((c * g.kh + ki) * g.kw + kj) * g.P;
          const int64_t s = kj - p.pad_w;
          // taps that fell on padding must not reach the image: clear them, then add the block
          if (s > 0)
            for (int64_t oh = oh0; oh < oh1; oh++)
              for (int64_t ow = W - s; ow < W; ow++) row[oh * W + ow] = T(0);
          else if (s < 0)
            for (int64_t oh = oh0; oh < oh1; oh++)
              for (int64_t ow = 0; ow < -s; ow++) row[oh * W + ow] = T(0);
          const int64_t d0 = oh0 * W + std::max<int64_t>(0, -s);
          const int64_t d1 = std::max(d0, oh1 * W - std::max<int64_t>(0, s));
          T* dst = gx + c * g.H * W + off + s;
          for (int64_t d = d0; d < d1; d++) dst[d] += row[d];
        }
      }
    return;
  }
  for (int64_t c = c0; c < c1; c++)
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

// Per-ISA entry points for f32 (f64 is for gradient tests and uses the portable code). The
// zero runs in im2col are a few cells long: plain stores beat a memset call per run, hence
// no loop-to-memset conversion.
#define MOX_CONV_COPY MOX_SIMD __attribute__((optimize("no-tree-loop-distribute-patterns")))
MOX_CONV_COPY void im2col_f32(const float* x, const ConvGeom& g, float* col, int64_t c0, int64_t c1) {
  im2col_impl(x, g, col, c0, c1);
}
MOX_CONV_COPY void col2im_f32(float* col, const ConvGeom& g, float* gx, int64_t c0, int64_t c1) {
  col2im_impl(col, g, gx, c0, c1);
}
void im2col(const float* x, const ConvGeom& g, float* col, int64_t c0, int64_t c1) {
  im2col_f32(x, g, col, c0, c1);
}
void col2im(float* col, const ConvGeom& g, float* gx, int64_t c0, int64_t c1) {
  col2im_f32(col, g, gx, c0, c1);
}
void im2col(const double* x, const ConvGeom& g, double* col, int64_t c0, int64_t c1) {
  im2col_impl(x, g, col, c0, c1);
}
void col2im(double* col, const ConvGeom& g, double* gx, int64_t c0, int64_t c1) {
  col2im_impl(col, g, gx, c0, c1);
}

// How a convolution is spread over threads. OpenBLAS runs a GEMM on one thread inside an
// active OpenMP region, or when M*N*K <= 65536*4; otherwise it wakes its own threads, which
// on a loaded machine costs more than it saves (64x196x288 sgemm measured at 0.9 GFLOP/s
// with 2 BLAS threads under load vs 95 GFLOP/s on one). So the BLAS calls here always run
// single-threaded and the parallelism is ours:
//   Batch: each thread takes whole samples, with its own column buffers;
//   Rows:  (batch smaller than the thread count) all threads work on one sample at a time,
//          splitting the im2col by channel and each GEMM by output rows.
enum class Split { Serial, Batch, Rows };
constexpr int64_t kBlasSerialMNK = 65536 * 4;

Split choose_split(const ConvGeom& g, int threads) {
  const int64_t mnk = g.Og * g.P * g.Kc;
  const int64_t macs = g.N * g.G * mnk;
  if (threads <= 1) return Split::Serial;
  if (g.N >= threads && (macs >= (int64_t(1) << 22) || mnk > kBlasSerialMNK)) return Split::Batch;
  if (mnk > kBlasSerialMNK) return Split::Rows;
  return Split::Serial;
}

// Part t of T of [0, n).
inline int64_t part(int64_t n, int t, int T) { return n * t / T; }

// ---- Winograd F(2x2, 3x3) ----
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

// Worth it (and valid): 3x3, stride 1, no dilation, one group, padding <= 2 (so that the
// input gradient's padding 2 - pad is valid too), enough channels for the GEMMs to dominate
// the transforms, and a thread split that keeps BLAS single-threaded (see Split).
bool wino_ok(const ConvGeom& g, int64_t cin, int64_t cout, int threads) {
  const Conv2dParams& p = g.p;
  return g.kh == 3 && g.kw == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 &&
         p.dil_w == 1 && g.G == 1 && p.pad_h <= 2 && p.pad_w <= 2 && cin >= 8 && cout >= 8 &&
         g.Ho >= 2 && g.Wo >= 2 && (threads <= 1 || g.N >= threads);
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

// y_g rows [o0, o1) of one sample and group: (o1-o0, P) = w_g rows (o1-o0, Kc) @ B (Kc, P)
// [+ bias broadcast over P]
template <typename T>
void forward_rows(const T* wg, const T* bias_g, const T* B, T* yg, const ConvGeom& g, int64_t o0,
                  int64_t o1) {
  if (o1 <= o0) return;
  if (bias_g)
    for (int64_t o = o0; o < o1; o++) std::fill(yg + o * g.P, yg + (o + 1) * g.P, bias_g[o]);
  gemm(false, false, o1 - o0, g.P, g.Kc, T(1), wg + o0 * g.Kc, g.Kc, B, g.P, bias_g ? T(1) : T(0),
       yg + o0 * g.P, g.P);
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
  const int threads = omp_get_max_threads();
  if constexpr (std::is_same_v<T, float>) {
    if (wino_ok(g, g.C, g.O, threads)) {
      wino_forward(xd, wd, bd, yd, g, threads);
      return;
    }
  }
  const Split split = choose_split(g, threads);
  const int nt = split == Split::Serial ? 1 : threads;
  const int nbuf = split == Split::Batch ? nt : 1;  // Rows mode shares one column buffer
  Tensor cols = g.pointwise ? Tensor() : empty({nbuf, g.Kc * g.P}, dtype_of<T>());
  auto xg_of = [&](int64_t n, int64_t gi) { return xd + (n * g.C + gi * g.Cg) * g.H * g.W; };
  auto yg_of = [&](int64_t n, int64_t gi) { return yd + (n * g.O + gi * g.Og) * g.P; };
  auto bias_of = [&](int64_t gi) { return bd ? bd + gi * g.Og : nullptr; };

  if (split != Split::Rows) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t n = 0; n < g.N; n++) {
      T* col = g.pointwise ? nullptr : cols.data<T>() + omp_get_thread_num() * g.Kc * g.P;
      for (int64_t gi = 0; gi < g.G; gi++) {
        const T* B = xg_of(n, gi);
        if (!g.pointwise) {
          im2col(B, g, col, 0, g.Cg);
          B = col;
        }
        forward_rows(wd + gi * g.Og * g.Kc, bias_of(gi), B, yg_of(n, gi), g, 0, g.Og);
      }
    }
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
    T* col = g.pointwise ? nullptr : cols.data<T>();
    for (int64_t n = 0; n < g.N; n++)
      for (int64_t gi = 0; gi < g.G; gi++) {
        const T* B = xg_of(n, gi);
        if (!g.pointwise) {
          im2col(B, g, col, part(g.Cg, t, T_), part(g.Cg, t + 1, T_));
          B = col;
#pragma omp barrier
        }
        forward_rows(wd + gi * g.Og * g.Kc, bias_of(gi), B, yg_of(n, gi), g, part(g.Og, t, T_),
                     part(g.Og, t + 1, T_));
#pragma omp barrier
      }
  }
}

// gb[o] (+)= sum of gy row o over its P pixels, for rows [o0, o1) of one sample and group
// (folded into the per-sample loop, where gy is already in cache).
template <typename T>
void bias_grad_rows(const T* gyg, T* gbg, bool first, const ConvGeom& g, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; o++) {
    const T* r = gyg + o * g.P;
    T acc[16] = {};
    T s = 0;
    int64_t i = 0;
    for (; i + 16 <= g.P; i += 16)
      for (int j = 0; j < 16; j++) acc[j] += r[i + j];
    for (; i < g.P; i++) s += r[i];
    for (int j = 0; j < 16; j++) s += acc[j];
    gbg[o] = first ? s : gbg[o] + s;
  }
}

// One sample and group of the backward pass, restricted to this thread's share:
// gw_g and gb_g rows [o0, o1) (overwritten when `first`, else accumulated) from gy_g rows
// and col^T, and gx channels [c0, c1) from gcol = w_g^T @ gy_g (its rows for those
// channels). `col` must already hold im2col(x_g).
template <typename T>
void backward_part(const T* xg, const T* gyg, const T* wg, const T* col, T* gcol, T* gwg, T* gbg,
                   bool first, T* gxg, const ConvGeom& g, int64_t o0, int64_t o1, int64_t c0,
                   int64_t c1) {
  const T gw_beta = first ? T(0) : T(1);
  if (gbg) bias_grad_rows(gyg, gbg, first, g, o0, o1);
  if (gwg && o1 > o0) {
    // gw_g (o1-o0, Kc) = beta * gw_g + gy_g (o1-o0, P) @ col^T (P, Kc)
    gemm(false, true, o1 - o0, g.Kc, g.P, T(1), gyg + o0 * g.P, g.P, g.pointwise ? xg : col, g.P,
         gw_beta, gwg + o0 * g.Kc, g.Kc);
  }
  if (gxg && c1 > c0) {
    const int64_t taps = g.kh * g.kw, k0 = c0 * taps, k1 = c1 * taps;
    if (g.pointwise) {
      // gx_g channels (c1-c0, P) = w_g^T (c1-c0, Og) @ gy_g (Og, P)
      gemm(true, false, k1 - k0, g.P, g.Og, T(1), wg + k0, g.Kc, gyg, g.P, T(0), gxg + k0 * g.P,
           g.P);
      return;
    }
    gemm(true, false, k1 - k0, g.P, g.Og, T(1), wg + k0, g.Kc, gyg, g.P, T(0), gcol + k0 * g.P, g.P);
    std::fill(gxg + c0 * g.H * g.W, gxg + c1 * g.H * g.W, T(0));  // zeroed here, while hot
    col2im(gcol, g, gxg, c0, c1);
  }
}

// gy (N,O,Ho,Wo) -> gx (N,C,H,W), gw (O,Cg,kh,kw), gb (O); each optional.
template <typename T>
void conv2d_backward_impl(const Tensor& x, const Tensor& w, const Tensor& gy, const Tensor& gx_in,
                          const Tensor& gw, const Tensor& gb, const Conv2dParams& p) {
  ConvGeom g = geometry(x, w, gy, p);
  const T* xd = x.data<T>();
  const T* wd = w.data<T>();
  const T* gyd = gy.data<T>();
  const int threads = omp_get_max_threads();
  Tensor gx = gx_in;
  if constexpr (std::is_same_v<T, float>) {
    // input gradient by Winograd; the weight and bias gradients below use im2col
    if (gx.defined() && wino_ok(g, g.O, g.C, threads)) {
      wino_backward_data(gyd, wd, gx.data<float>(), g, threads);
      gx = Tensor();
    }
  }
  if (!gx.defined() && !gw.defined() && !gb.defined()) return;
  const int64_t wsize = g.O * g.Kc;
  if (g.N == 0) {
    if (gw.defined()) std::fill(gw.data<T>(), gw.data<T>() + wsize, T(0));
    if (gb.defined()) std::fill(gb.data<T>(), gb.data<T>() + g.O, T(0));
    return;
  }
  const Split split = choose_split(g, threads);
  const int nt = split == Split::Serial ? 1 : threads;
  const int nbuf = split == Split::Batch ? nt : 1;
  const bool need_col = gw.defined() && !g.pointwise;
  const bool need_gcol = gx.defined() && !g.pointwise;
  Tensor cols = need_col ? empty({nbuf, g.Kc * g.P}, dtype_of<T>()) : Tensor();
  Tensor gcols = need_gcol ? empty({nbuf, g.Kc * g.P}, dtype_of<T>()) : Tensor();
  // Batch mode: per-thread partial weight and bias gradients [gw | gb], added in thread
  // order afterwards (deterministic for a given thread count).
  const bool partials = (gw.defined() || gb.defined()) && split == Split::Batch;
  const int64_t psize = wsize + g.O;
  Tensor parts = partials ? empty({nt, psize}, dtype_of<T>()) : Tensor();
  auto xg_of = [&](int64_t n, int64_t gi) { return xd + (n * g.C + gi * g.Cg) * g.H * g.W; };
  auto gyg_of = [&](int64_t n, int64_t gi) { return gyd + (n * g.O + gi * g.Og) * g.P; };
  auto gxg_of = [&](int64_t n, int64_t gi) {
    return gx.defined() ? gx.data<T>() + (n * g.C + gi * g.Cg) * g.H * g.W : nullptr;
  };

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
    if (split != Split::Rows) {
      const int64_t n0 = part(g.N, t, T_), n1 = part(g.N, t + 1, T_);
      T* col = need_col ? cols.data<T>() + t * g.Kc * g.P : nullptr;
      T* gcol = need_gcol ? gcols.data<T>() + t * g.Kc * g.P : nullptr;
      T* part_t = partials ? parts.data<T>() + t * psize : nullptr;
      T* gwt = !gw.defined() ? nullptr : (partials ? part_t : gw.data<T>());
      T* gbt = !gb.defined() ? nullptr : (partials ? part_t + wsize : gb.data<T>());
      for (int64_t n = n0; n < n1; n++)
        for (int64_t gi = 0; gi < g.G; gi++) {
          if (need_col) im2col(xg_of(n, gi), g, col, 0, g.Cg);
          backward_part(xg_of(n, gi), gyg_of(n, gi), wd + gi * g.Og * g.Kc, col, gcol,
                        gwt ? gwt + gi * g.Og * g.Kc : nullptr, gbt ? gbt + gi * g.Og : nullptr,
                        n == n0, gxg_of(n, gi), g, 0, g.Og, 0, g.Cg);
        }
      if (part_t && n1 == n0) std::fill(part_t, part_t + psize, T(0));  // a thread without samples
    } else {
      T* col = need_col ? cols.data<T>() : nullptr;
      T* gcol = need_gcol ? gcols.data<T>() : nullptr;
      const int64_t o0 = part(g.Og, t, T_), o1 = part(g.Og, t + 1, T_);
      const int64_t c0 = part(g.Cg, t, T_), c1 = part(g.Cg, t + 1, T_);
      for (int64_t n = 0; n < g.N; n++)
        for (int64_t gi = 0; gi < g.G; gi++) {
          if (need_col) {
            im2col(xg_of(n, gi), g, col, c0, c1);
#pragma omp barrier
          }
          backward_part(xg_of(n, gi), gyg_of(n, gi), wd + gi * g.Og * g.Kc, col, gcol,
                        gw.defined() ? gw.data<T>() + gi * g.Og * g.Kc : nullptr,
                        gb.defined() ? gb.data<T>() + gi * g.Og : nullptr, n == 0, gxg_of(n, gi),
                        g, o0, o1, c0, c1);
#pragma omp barrier
        }
    }
  }
  if (partials) {
    const T* pd = parts.data<T>();
    for (int k = 0; k < 2; k++) {
      const Tensor& out = k == 0 ? gw : gb;
      if (!out.defined()) continue;
      const int64_t off = k == 0 ? 0 : wsize, len = k == 0 ? wsize : g.O;
      T* o = out.data<T>();
      std::memcpy(o, pd + off, size_t(len) * sizeof(T));
      for (int t = 1; t < nt; t++)
        for (int64_t i = 0; i < len; i++) o[i] += pd[t * psize + off + i];
    }
  }
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
