// int8 GEMM and convolution products for quantised inference (formats: backend/quant.h).
//
// Own kernel (always built; the only path without oneDNN or with MOX_DNNL=0): a 4x4 block
// (rows of A x rows of W) of int32 dot products over K padded to a multiple of 64, written
// as plain C++ (u8 * s8 products summed into int32). GCC 12 turns that loop into vpdpbusd
// on AVX-512 VNNI (64 MACs per instruction), into vpmovzx/vpmovsx + vpmaddwd on AVX2 and
// SSE2 pmaddwd on the baseline; the three versions are compiled with target attributes and
// picked at run time (__builtin_cpu_supports; set_int8_isa_cap forces a lower one for
// tests). Results of up to 32 rows at a time go to a per-thread int32 block (in cache) and
// the epilogue (zero-point correction, scales, bias, ReLU, requantisation) runs over it,
// vectorised along the output's contiguous dimension. Threads: OpenMP over row blocks, or
// over column chunks when there are few rows (batch 1), and only above ~1M MACs.
//
// Static quantisation (qlinear_dnnl_static / qconv2d_dnnl_static): the layer's scales and
// zero points are constants, so the primitives are built with CONSTANT attributes (per-channel
// output scales, source / destination zero points, bias pre-divided by the accumulator scale,
// ReLU post-op, u8 or f32 destination) and oneDNN's fast kernels run the whole epilogue:
// brg:avx512_core_amx_int8 matmuls, brgconv:avx512_core_amx_int8 convolutions and
// brgconv:avx512_core_vnni for a 1-channel first layer (ONEDNN_VERBOSE=1 on this machine).
// Convolutions read and write channels-last (NHWC) memory directly. The primitives, and the
// weights reordered into the layouts they chose, are cached with the packed weights
// (QGemmWeights::dnnl), keyed by shape, thread count and the parameter values.
//
// oneDNN path for the dynamic modes (MOX_HAVE_DNNL, products of at least 2^18 MACs): matmul
// u8 x s8 -> s32 with a runtime source zero point, primitives cached by shape (LRU), then
// the same epilogue.
// Runtime output scales would be the natural way to fuse the epilogue, but oneDNN 2.6 then
// drops from its brgemm kernels to gemm:jit (2-3x slower here), as does a source with
// padded rows, so A is passed with dense rows (qgemm_wants_dense) and the scales applied
// by us. Convolutions go to oneDNN's int8 convolution primitive (no im2col; measured 3-8x
// faster than im2col + matmul at batch 256), else im2col + the own kernel. Measured on this
// machine (Xeon with AMX, ONEDNN_VERBOSE=1): oneDNN picks "brg:avx512_core_amx_int8" (AMX
// int8 tiles) for the MLP's products, "jit:avx512_core_amx_int8" for the CNN's 32- and
// 64-channel convolutions and "brgconv:avx512_core_vnni" (AVX-512 VNNI) for its 1-channel
// first layer; int8_last_path() reports the choice.
#include "mox/backend/quant.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>

#include "mox/backend/backend.h"
#include "mox/backend/cpu/simd.h"
#include "mox/tensor/error.h"

#ifdef MOX_HAVE_DNNL
#include <array>
#include <bit>
#include <list>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include "mox/backend/cpu/dnnl_util.h"
#endif

namespace mox::cpu {

#ifdef MOX_HAVE_DNNL
struct StaticEntry;
using StaticKey = std::array<int64_t, 24>;
// oneDNN-private state of packed weights: the weights reordered into the layouts that
// primitives chose (one per layout), made on first use, and the static-mode primitives
// (constant scales / zero points / bias / ReLU baked in) keyed by shape and parameters.
struct DnnlWeights {
  std::mutex mu;
  std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> reordered;
  std::unordered_map<StaticKey, std::shared_ptr<const StaticEntry>, ArrayKeyHash> statics;
};
#endif

namespace {

std::atomic<bool> g_dnnl_enabled{[] {
#ifdef MOX_HAVE_DNNL
  const char* s = std::getenv("MOX_DNNL");
  return !(s && std::string(s) == "0");
#else
  return false;
#endif
}()};
std::atomic<int> g_isa_cap{-1};
std::atomic<int64_t> g_dnnl_min_work{int64_t(1) << 18};
std::atomic<int64_t> g_dnnl_calls{0};
// Static-mode convolutions have no epilogue pass or reorders around them: oneDNN beats the
// own im2col kernel at every size measured (the CNN's 64->64 5x5 layer at batch 1: 8 us vs
// 30 us), so they take oneDNN from this fraction of the threshold (0: always). Static
// matmuls keep the full threshold (batch-1 784->128: own kernel 1.5 us, oneDNN 3.9 us).
constexpr double kStaticConvFactor = 0.0;
std::mutex g_path_mu;
std::string g_last_path;

void set_last_path(const std::string& p) {
  std::lock_guard<std::mutex> lock(g_path_mu);
  if (g_last_path != p) g_last_path = p;
}

int cpu_isa() {
#if defined(__GNUC__) && defined(__x86_64__)
  static const int isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
  }();
  return isa;
#else
  return 0;
#endif
}

int effective_isa() {
  const int cap = g_isa_cap.load(std::memory_order_relaxed);
  const int isa = cpu_isa();
  return cap < 0 ? isa : std::min(cap, isa);
}

const char* isa_name(int isa) { return isa == 2 ? "avx512vnni" : isa == 1 ? "avx2" : "baseline"; }

// ---------------------------------------------------------------- epilogue
struct Epi {
  const float* a_scale;
  bool per_row;
  int32_t a_zp;
  const float* w_scale;
  const float* bias;
  bool relu, requant;
  float out_scale;
  int32_t out_zp;
  const int32_t* rowsum;
};

MOX_INLINE float round_half_even_small(float v) {
  // Round to nearest, ties to even, for |v| < 2^22 (callers clamp first); vectorises.
  const float shifter = 12582912.0f;  // 1.5 * 2^23
  return (v + shifter) - shifter;
}

// The epilogue over a block of int32 results acc [rows, n1 - n0] (row stride lda) for rows
// m0.. and columns n0..: vectorised along the output's contiguous dimension (n for
// row-major results, m for NCHW convolution outputs). Flags are hoisted out of the loops.
template <bool BIAS, bool RELU, bool REQ>
MOX_INLINE float epi_value(const Epi& e, int32_t acc, int32_t zcorr, float s, float b) {
  float y = float(acc - zcorr) * s;
  if (BIAS) y += b;
  if (RELU) y = y > 0.0f ? y : 0.0f;
  if (REQ) {
    float v = y / e.out_scale;
    v = v < -512.0f ? -512.0f : (v > 512.0f ? 512.0f : v);
    v = round_half_even_small(v) + float(e.out_zp);
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    y = v;
  }
  return y;
}

template <bool BIAS, bool RELU, bool REQ>
MOX_INLINE void epi_block_t(const Epi& e, const int32_t* __restrict acc, int64_t lda, int64_t m0,
                            int64_t rows, int64_t n0, int64_t n1, char* __restrict O, int64_t out_rs,
                            int64_t out_cs) {
  using OutT = std::conditional_t<REQ, uint8_t, float>;
  OutT* __restrict out = reinterpret_cast<OutT*>(O);
  const int32_t* __restrict rs = e.rowsum;
  const float* __restrict ws = e.w_scale;
  const float* __restrict bs = e.bias;
  if (out_cs == 1) {
    for (int64_t i = 0; i < rows; i++) {
      const float sa = e.per_row ? e.a_scale[m0 + i] : e.a_scale[0];
      const int32_t* __restrict a = acc + i * lda - n0;
      OutT* __restrict o = out + (m0 + i) * out_rs;
      for (int64_t n = n0; n < n1; n++)
        o[n] = OutT(epi_value<BIAS, RELU, REQ>(e, a[n], e.a_zp * rs[n], sa * ws[n], BIAS ? bs[n] : 0.0f));
    }
  } else if (out_rs == 1) {
    const float* __restrict sar = e.a_scale + (e.per_row ? m0 : 0);
    for (int64_t n = n0; n < n1; n++) {
      const int32_t zc = e.a_zp * rs[n];
      const float w = ws[n], b = BIAS ? bs[n] : 0.0f;
      OutT* __restrict o = out + n * out_cs + m0;
      const int32_t* __restrict a = acc + (n - n0);
      if (e.per_row) {
        for (int64_t i = 0; i < rows; i++)
          o[i] = OutT(epi_value<BIAS, RELU, REQ>(e, a[i * lda], zc, sar[i] * w, b));
      } else {
        const float s = sar[0] * w;
        for (int64_t i = 0; i < rows; i++) o[i] = OutT(epi_value<BIAS, RELU, REQ>(e, a[i * lda], zc, s, b));
      }
    }
  } else {
    for (int64_t i = 0; i < rows; i++) {
      const float sa = e.per_row ? e.a_scale[m0 + i] : e.a_scale[0];
      for (int64_t n = n0; n < n1; n++)
        out[(m0 + i) * out_rs + n * out_cs] =
            OutT(epi_value<BIAS, RELU, REQ>(e, acc[i * lda + n - n0], e.a_zp * rs[n], sa * ws[n], BIAS ? bs[n] : 0.0f));
    }
  }
}

MOX_INLINE void epi_block(const Epi& e, const int32_t* acc, int64_t lda, int64_t m0, int64_t rows,
                          int64_t n0, int64_t n1, char* O, int64_t out_rs, int64_t out_cs) {
  const int f = (e.bias ? 4 : 0) | (e.relu ? 2 : 0) | (e.requant ? 1 : 0);
  switch (f) {
#define MOX_EPI_CASE(F, B, R, Q) \
  case F: epi_block_t<B, R, Q>(e, acc, lda, m0, rows, n0, n1, O, out_rs, out_cs); break;
    MOX_EPI_CASE(0, false, false, false)
    MOX_EPI_CASE(1, false, false, true)
    MOX_EPI_CASE(2, false, true, false)
    MOX_EPI_CASE(3, false, true, true)
    MOX_EPI_CASE(4, true, false, false)
    MOX_EPI_CASE(5, true, false, true)
    MOX_EPI_CASE(6, true, true, false)
    MOX_EPI_CASE(7, true, true, true)
#undef MOX_EPI_CASE
  }
}

#ifdef MOX_HAVE_DNNL
// Epilogue of one image of the transposed convolution: acc [OC, P] -> out [OC, P] (NCHW),
// row o with correction zc[o] = a_zp * rowsum[o] and scale sa * w_scale[o].
template <bool BIAS, bool RELU, bool REQ>
MOX_INLINE void epi_oc_rows_t(const Epi& e, float sa, const int32_t* __restrict acc, int64_t o0,
                              int64_t o1, int64_t P, char* O) {
  using OutT = std::conditional_t<REQ, uint8_t, float>;
  OutT* __restrict out = reinterpret_cast<OutT*>(O);
  for (int64_t o = o0; o < o1; o++) {
    const int32_t zc = e.a_zp * e.rowsum[o];
    const float s = sa * e.w_scale[o], b = BIAS ? e.bias[o] : 0.0f;
    const int32_t* __restrict a = acc + o * P;
    OutT* __restrict y = out + o * P;
    for (int64_t p = 0; p < P; p++) y[p] = OutT(epi_value<BIAS, RELU, REQ>(e, a[p], zc, s, b));
  }
}
MOX_SIMD void epi_oc_rows(const Epi& e, float sa, const int32_t* acc, int64_t o0, int64_t o1, int64_t P,
                          char* O) {
  const int f = (e.bias ? 4 : 0) | (e.relu ? 2 : 0) | (e.requant ? 1 : 0);
  switch (f) {
#define MOX_EPI_CASE(F, B, R, Q) \
  case F: epi_oc_rows_t<B, R, Q>(e, sa, acc, o0, o1, P, O); break;
    MOX_EPI_CASE(0, false, false, false)
    MOX_EPI_CASE(1, false, false, true)
    MOX_EPI_CASE(2, false, true, false)
    MOX_EPI_CASE(3, false, true, true)
    MOX_EPI_CASE(4, true, false, false)
    MOX_EPI_CASE(5, true, false, true)
    MOX_EPI_CASE(6, true, true, false)
    MOX_EPI_CASE(7, true, true, true)
#undef MOX_EPI_CASE
  }
}

// Standalone epilogue pass (oneDNN's int32 results), compiled per instruction set.
MOX_SIMD void epi_pass(const Epi& e, const int32_t* acc, int64_t lda, int64_t m0, int64_t rows,
                       int64_t n0, int64_t n1, char* O, int64_t out_rs, int64_t out_cs) {
  epi_block(e, acc, lda, m0, rows, n0, n1, O, out_rs, out_cs);
}
#endif

// ---------------------------------------------------------------- own kernel
struct Job {
  int64_t batch, M, N, Kp;
  const uint8_t* a;
  int64_t lda, a_bs;
  const int8_t* w;
  Epi e;
  void* out;
  int64_t out_rs, out_cs, out_bs;
  size_t out_elem;
};

// 4 rows of A x 4 rows of W. Rows past the end are pointed at valid memory by the caller
// and their results discarded.
MOX_INLINE void dot4x4(const uint8_t* __restrict a0, const uint8_t* __restrict a1,
                       const uint8_t* __restrict a2, const uint8_t* __restrict a3,
                       const int8_t* __restrict w0, const int8_t* __restrict w1,
                       const int8_t* __restrict w2, const int8_t* __restrict w3, int64_t Kp,
                       int32_t* r) {
  int32_t c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  int32_t c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (int64_t k = 0; k < Kp; k++) {
    const int32_t x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
    const int32_t y0 = w0[k], y1 = w1[k], y2 = w2[k], y3 = w3[k];
    c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
    c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
    c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
    c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
  }
  r[0] = c00; r[1] = c01; r[2] = c02; r[3] = c03; r[4] = c10; r[5] = c11; r[6] = c12; r[7] = c13;
  r[8] = c20; r[9] = c21; r[10] = c22; r[11] = c23; r[12] = c30; r[13] = c31; r[14] = c32; r[15] = c33;
}

// 1 row of A x 4 rows of W (batch-1 products and row remainders).
MOX_INLINE void dot1x4(const uint8_t* __restrict a0, const int8_t* __restrict w0,
                       const int8_t* __restrict w1, const int8_t* __restrict w2,
                       const int8_t* __restrict w3, int64_t Kp, int32_t* r) {
  int32_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;
  for (int64_t k = 0; k < Kp; k++) {
    const int32_t x = a0[k];
    c0 += x * w0[k]; c1 += x * w1[k]; c2 += x * w2[k]; c3 += x * w3[k];
  }
  r[0] = c0; r[1] = c1; r[2] = c2; r[3] = c3;
}

// Rows n .. n + 3 of the packed weights, rows past the nn valid ones aliasing row n (their
// results are not stored).
inline void weight_rows4(const int8_t* w, int64_t Kp, int64_t n, int64_t nn, const int8_t* rows[4]) {
  for (int64_t q = 0; q < 4; q++) rows[q] = w + (n + (q < nn ? q : 0)) * Kp;
}

// Rows [m0, m1) of batch item b, columns [n0, n1): int32 results for up to kChunk rows at a
// time into a per-thread block (in L1/L2), then the epilogue over that block.
constexpr int64_t kChunk = 32;

MOX_INLINE void run_tile(const Job& j, int64_t b, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const uint8_t* A = j.a + b * j.a_bs;
  Epi e = j.e;  // per-row scales are [batch * M]
  if (e.per_row) e.a_scale += b * j.M;
  char* O = static_cast<char*>(j.out) + size_t(b * j.out_bs) * j.out_elem;
  const int64_t Kp = j.Kp, NB = n1 - n0;
  thread_local std::vector<int32_t> blockbuf;
  if (blockbuf.size() < size_t(kChunk * NB)) blockbuf.resize(size_t(kChunk * NB));
  int32_t* acc = blockbuf.data();
  for (int64_t c0 = m0; c0 < m1; c0 += kChunk) {
    const int64_t c1 = std::min(m1, c0 + kChunk);
    int64_t m = c0;
    for (; m + 4 <= c1; m += 4) {
      const uint8_t* a0 = A + m * j.lda;
      int32_t* r0 = acc + (m - c0) * NB;
      for (int64_t n = n0; n < n1; n += 4) {
        const int64_t nn = std::min<int64_t>(4, n1 - n);
        const int8_t* w[4];
        weight_rows4(j.w, Kp, n, nn, w);
        int32_t r[16];
        dot4x4(a0, a0 + j.lda, a0 + 2 * j.lda, a0 + 3 * j.lda, w[0], w[1], w[2], w[3], Kp, r);
        for (int64_t i = 0; i < 4; i++)
          for (int64_t q = 0; q < nn; q++) r0[i * NB + (n - n0) + q] = r[i * 4 + q];
      }
    }
    for (; m < c1; m++) {
      const uint8_t* a0 = A + m * j.lda;
      int32_t* r0 = acc + (m - c0) * NB;
      for (int64_t n = n0; n < n1; n += 4) {
        const int64_t nn = std::min<int64_t>(4, n1 - n);
        const int8_t* w[4];
        weight_rows4(j.w, Kp, n, nn, w);
        int32_t r[4];
        dot1x4(a0, w[0], w[1], w[2], w[3], Kp, r);
        for (int64_t q = 0; q < nn; q++) r0[(n - n0) + q] = r[q];
      }
    }
    epi_block(e, acc, NB, c0, c1 - c0, n0, n1, O, j.out_rs, j.out_cs);
  }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target("arch=x86-64-v4,avx512vnni"))) void tile_vnni(const Job& j, int64_t b, int64_t m0,
                                                                     int64_t m1, int64_t n0, int64_t n1) {
  run_tile(j, b, m0, m1, n0, n1);
}
__attribute__((target("arch=x86-64-v3"))) void tile_avx2(const Job& j, int64_t b, int64_t m0, int64_t m1,
                                                          int64_t n0, int64_t n1) {
  run_tile(j, b, m0, m1, n0, n1);
}
#define MOX_QGEMM_MULTI 1
#endif
void tile_base(const Job& j, int64_t b, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  run_tile(j, b, m0, m1, n0, n1);
}

using TileFn = void (*)(const Job&, int64_t, int64_t, int64_t, int64_t, int64_t);

TileFn tile_fn(int isa) {
#ifdef MOX_QGEMM_MULTI
  if (isa == 2) return tile_vnni;
  if (isa == 1) return tile_avx2;
#endif
  return tile_base;
}

void own_qgemm(const Job& j) {
  const TileFn fn = tile_fn(effective_isa());
  const int nt = get_num_threads();
  const int64_t mblocks = (j.M + 3) / 4;
  const double work = double(j.batch) * double(j.M) * double(j.N) * double(j.Kp);
  if (nt <= 1 || work < double(1 << 20)) {
    for (int64_t b = 0; b < j.batch; b++) fn(j, b, 0, j.M, 0, j.N);
    return;
  }
  const int64_t row_items = j.batch * mblocks;
  if (row_items >= 4 * nt || j.N < 8 * nt) {
    // Several row blocks per item so that each thread streams W few times.
    const int64_t per = std::max<int64_t>(1, row_items / (8 * nt));
    const int64_t items = (row_items + per - 1) / per;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t it = 0; it < items; it++) {
      for (int64_t r = it * per; r < std::min(row_items, (it + 1) * per); r++) {
        const int64_t b = r / mblocks, mb = r % mblocks;
        fn(j, b, mb * 4, std::min(j.M, mb * 4 + 4), 0, j.N);
      }
    }
  } else {
    // Few rows (batch-1 inference): split the columns, in multiples of 4.
    const int64_t chunk = ((j.N + nt - 1) / nt + 3) / 4 * 4;
    const int64_t nchunks = (j.N + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static) collapse(2)
    for (int64_t b = 0; b < j.batch; b++)
      for (int64_t c = 0; c < nchunks; c++)
        fn(j, b, 0, j.M, c * chunk, std::min(j.N, (c + 1) * chunk));
  }
}

// ---------------------------------------------------------------- quantisation loops
// Min and max of a float array. finite-math-only lets GCC turn the selects into
// vminps/vmaxps reductions (NaN inputs then give an unspecified range).
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("finite-math-only", "no-signed-zeros")))
#endif
MOX_SIMD void minmax_loop(const float* __restrict x, int64_t n, float* mn_out, float* mx_out) {
  float mn = x[0], mx = x[0];
  for (int64_t i = 0; i < n; i++) {
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
  }
  *mn_out = mn;
  *mx_out = mx;
}

MOX_SIMD void quant_row(const float* __restrict x, int64_t n, float scale, float zp,
                        uint8_t* __restrict q) {
  for (int64_t i = 0; i < n; i++) {
    float v = x[i] / scale;
    v = v < -512.0f ? -512.0f : (v > 512.0f ? 512.0f : v);
    v = round_half_even_small(v) + zp;
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    q[i] = uint8_t(int32_t(v));
  }
}

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("finite-math-only", "no-signed-zeros")))
#endif
MOX_SIMD float absmax_row(const float* __restrict x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float a = x[i] < 0.0f ? -x[i] : x[i];
    m = a > m ? a : m;
  }
  return m;
}

MOX_SIMD void quant_row_sym(const float* __restrict x, int64_t n, float scale, uint8_t* __restrict q) {
  for (int64_t i = 0; i < n; i++) {
    float v = x[i] / scale;
    v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
    v = round_half_even_small(v) + 128.0f;
    q[i] = uint8_t(int32_t(v));
  }
}

bool parallel_worth(int64_t elems) { return elems >= (int64_t(1) << 16) && get_num_threads() > 1; }

}  // namespace

// ---------------------------------------------------------------- public helpers
void minmax_f32(const float* x, int64_t n, float& mn, float& mx) {
  if (n <= 0) {
    mn = mx = 0;
    return;
  }
  if (!parallel_worth(n)) {
    minmax_loop(x, n, &mn, &mx);
    return;
  }
  const int nt = get_num_threads();
  std::vector<float> lo(nt, x[0]), hi(nt, x[0]);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t b = n * t / T, e = n * (t + 1) / T;
    if (e > b) minmax_loop(x + b, e - b, &lo[t], &hi[t]);
  }
  mn = *std::min_element(lo.begin(), lo.end());
  mx = *std::max_element(hi.begin(), hi.end());
}

void quantize_rows_u8(const float* x, int64_t rows, int64_t n, int64_t ldx, float scale, int32_t zp,
                      uint8_t* q, int64_t ldq, uint8_t pad) {
  auto one = [&](int64_t r) {
    quant_row(x + r * ldx, n, scale, float(zp), q + r * ldq);
    if (ldq > n) std::memset(q + r * ldq + n, pad, size_t(ldq - n));
  };
  if (rows > 1 && parallel_worth(rows * n)) {
#pragma omp parallel for num_threads(get_num_threads()) schedule(static)
    for (int64_t r = 0; r < rows; r++) one(r);
  } else if (rows == 1 && parallel_worth(n)) {
    const int nt = get_num_threads();
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      const int64_t b = n * t / T, e = n * (t + 1) / T;
      if (e > b) quant_row(x + b, e - b, scale, float(zp), q + b);
    }
    if (ldq > n) std::memset(q + n, pad, size_t(ldq - n));
  } else {
    for (int64_t r = 0; r < rows; r++) one(r);
  }
}

void quantize_rows_sym_u8(const float* x, int64_t rows, int64_t n, int64_t ldx, float* scale,
                          uint8_t* q, int64_t ldq) {
  auto one = [&](int64_t r) {
    const float am = absmax_row(x + r * ldx, n);
    const float s = am > 0.0f ? am / 127.0f : 1.0f;
    scale[r] = s;
    quant_row_sym(x + r * ldx, n, s, q + r * ldq);
    if (ldq > n) std::memset(q + r * ldq + n, 128, size_t(ldq - n));
  };
  if (rows > 1 && parallel_worth(rows * n)) {
#pragma omp parallel for num_threads(get_num_threads()) schedule(static)
    for (int64_t r = 0; r < rows; r++) one(r);
  } else {
    for (int64_t r = 0; r < rows; r++) one(r);
  }
}

void im2col_u8(const uint8_t* x_all, int64_t images, int64_t C, int64_t H, int64_t W, int64_t kh,
               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
               int64_t OH, int64_t OW, const uint8_t* pad_values, uint8_t* col_all, int64_t ldc) {
  const int64_t K = C * kh * kw;
  const int64_t rows = images * OH;
#pragma omp parallel for num_threads(get_num_threads()) schedule(static) if (parallel_worth(images * OH * OW * K))
  for (int64_t r = 0; r < rows; r++) {
    const int64_t img = r / OH, oh = r % OH;
    const uint8_t* x = x_all + img * C * H * W;
    const uint8_t pad_value = pad_values[img];
    for (int64_t ow = 0; ow < OW; ow++) {
      uint8_t* dst = col_all + ((img * OH + oh) * OW + ow) * ldc;
      int64_t k = 0;
      for (int64_t c = 0; c < C; c++) {
        const uint8_t* xc = x + c * H * W;
        for (int64_t i = 0; i < kh; i++) {
          const int64_t ih = oh * sh - ph + i * dh;
          if (ih < 0 || ih >= H) {
            std::memset(dst + k, pad_value, size_t(kw));
            k += kw;
            continue;
          }
          const uint8_t* xr = xc + ih * W;
          for (int64_t jj = 0; jj < kw; jj++, k++) {
            const int64_t iw = ow * sw - pw + jj * dw;
            dst[k] = (iw >= 0 && iw < W) ? xr[iw] : pad_value;
          }
        }
      }
      if (ldc > K) std::memset(dst + K, pad_value, size_t(ldc - K));
    }
  }
}

std::shared_ptr<QGemmWeights> qgemm_pack_weights(const int8_t* w, int64_t N, int64_t K, int64_t ldw) {
  auto p = std::make_shared<QGemmWeights>();
  p->N = N;
  p->K = K;
  p->Kp = std::max<int64_t>(64, (K + 63) / 64 * 64);
  p->w.assign(size_t(N * p->Kp), 0);
  p->rowsum.assign(size_t(N), 0);
  for (int64_t n = 0; n < N; n++) {
    int32_t s = 0;
    for (int64_t k = 0; k < K; k++) {
      p->w[size_t(n * p->Kp + k)] = w[n * ldw + k];
      s += w[n * ldw + k];
    }
    p->rowsum[size_t(n)] = s;
  }
#ifdef MOX_HAVE_DNNL
  p->dnnl = std::make_shared<DnnlWeights>();
#endif
  p->wdense.resize(size_t(N * K));
  for (int64_t n = 0; n < N; n++) std::memcpy(p->wdense.data() + n * K, w + n * ldw, size_t(K));
  p->wt.assign(size_t(K * N), 0);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) p->wt[size_t(k * N + n)] = w[n * ldw + k];
  return p;
}

// ---------------------------------------------------------------- oneDNN
#ifdef MOX_HAVE_DNNL
namespace {

using Key = std::array<int64_t, 16>;

struct Entry {
  bool usable = false;
  dnnl::matmul prim;
  size_t scratch_bytes = 0;
  std::string impl;
  dnnl::memory::desc a_md, w_md, o_md;
};

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

struct Cache {
  static constexpr size_t kCapacity = 128;
  std::mutex mu;
  std::list<std::pair<Key, std::shared_ptr<const Entry>>> lru;
  std::unordered_map<Key, decltype(lru)::iterator, ArrayKeyHash> map;
  std::shared_ptr<const Entry> find(const Key& k) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = map.find(k);
    if (it == map.end()) return nullptr;
    lru.splice(lru.begin(), lru, it->second);
    return it->second->second;
  }
  std::shared_ptr<const Entry> insert(const Key& k, std::shared_ptr<const Entry> e) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = map.find(k);
    if (it != map.end()) return it->second->second;
    lru.emplace_front(k, std::move(e));
    map[k] = lru.begin();
    if (lru.size() > kCapacity) {
      map.erase(lru.back().first);
      lru.pop_back();
    }
    return lru.front().second;
  }
};
Cache& cache() {
  static Cache c;
  return c;
}


// A [M, K] u8 (dense rows, lda) x B [K, N] s8 (the packed weights' [K, N] copy) -> int32
// [M, N] with oneDNN subtracting the runtime source zero point. No output scales: oneDNN
// 2.6 falls back from its brgemm (AMX / VNNI) kernels to gemm:jit with runtime scales,
// so scales, bias, ReLU and requantisation are our epilogue.
std::shared_ptr<const Entry> make_entry(int64_t batch, int64_t M, int64_t N, int64_t K, int64_t lda,
                                        int64_t a_bs) {
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  auto e = std::make_shared<Entry>();
  try {
    const bool b3 = batch > 1;
    auto D = [&](int64_t bdim, int64_t r, int64_t c) { return b3 ? dims{bdim, r, c} : dims{r, c}; };
    auto S = [&](int64_t bs, int64_t rs, int64_t cs) { return b3 ? dims{bs, rs, cs} : dims{rs, cs}; };
    // Dense strides for size-1 dims so that oneDNN recognises plain layouts.
    const int64_t ars = M == 1 ? K : lda;
    e->a_md = dnnl::memory::desc(D(batch, M, K), dt::u8, S(a_bs, ars, 1));
    e->w_md = dnnl::memory::desc(D(1, K, N), dt::s8, S(K * N, N, 1));
    e->o_md = dnnl::memory::desc(D(batch, M, N), dt::s32, S(M * N, N, 1));
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(e->a_md, e->w_md, e->o_md), attr, engine());
    e->impl = pd.impl_info_str();
    e->usable = e->impl.rfind("ref", 0) != 0;
    if (e->usable) {
      e->scratch_bytes = pd.scratchpad_desc().get_size();
      e->prim = dnnl::matmul(pd);
    }
  } catch (const dnnl::error& err) {
    e->usable = false;
    e->impl = std::string("unavailable: ") + err.what();
  }
  return e;
}

// acc [batch, M, N] int32 = (a - a_zp) x w. Returns false when oneDNN has no fast kernel
// here (the caller runs the own kernel).
bool dnnl_qgemm(int64_t batch, int64_t M, const uint8_t* a, int64_t lda, int64_t a_bs,
                const QGemmWeights& w, int32_t a_zp, int32_t* acc) {
  const int nt = get_num_threads();
  if (omp_get_max_threads() != nt) omp_set_num_threads(nt);
  const int64_t N = w.N, K = w.K;
  Key key{batch, M, N, K, lda, batch > 1 ? a_bs : 0, nt, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  std::shared_ptr<const Entry> e = cache().find(key);
  if (!e) e = cache().insert(key, make_entry(batch, M, N, K, lda, a_bs));
  if (!e->usable) return false;
  thread_local DnnlScratch scratch;
  thread_local std::unique_ptr<dnnl::stream> stream;
  try {
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    if (!stream) stream = std::make_unique<dnnl::stream>(engine());
    dnnl::memory am(e->a_md, engine(), const_cast<uint8_t*>(a));
    dnnl::memory wm(e->w_md, engine(), const_cast<int8_t*>(w.wt.data()));
    dnnl::memory om(e->o_md, engine(), acc);
    dnnl::memory sm(dnnl::memory::desc(dims{int64_t(e->scratch_bytes)}, dt::u8, dims{1}), engine(),
                    e->scratch_bytes ? scratch.get(e->scratch_bytes, "qgemm") : nullptr);
    int32_t zp = a_zp;
    dnnl::memory zpm(dnnl::memory::desc(dims{1}, dt::s32, dims{1}), engine(), &zp);
    e->prim.execute(*stream, {{DNNL_ARG_SRC, am},
                              {DNNL_ARG_WEIGHTS, wm},
                              {DNNL_ARG_DST, om},
                              {DNNL_ARG_SCRATCHPAD, sm},
                              {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zpm}});
    stream->wait();
  } catch (const dnnl::error& err) {
    throw Error("qgemm", std::string("oneDNN int8 matmul failed: ") + err.what());
  }
  g_dnnl_calls.fetch_add(1, std::memory_order_relaxed);
  set_last_path("dnnl:" + e->impl);
  return true;
}

// Direct int8 convolution through oneDNN's convolution primitive: u8 NHWC source (a
// reorder from NCHW first, none for one channel), s8 weights reordered once per chosen
// layout and kept with the packed weights, s32 NHWC result reordered to NCHW, runtime source
// zero point (oneDNN treats padding as real zero: it compensates the zero point there).

struct DConvEntry {
  bool usable = false;
  std::string impl;
  dnnl::convolution_forward prim;
  dnnl::reorder to_nhwc, to_nchw;
  bool need_reorder = false;
  dnnl::memory::desc src_nchw, src_nhwc, w_md, dst_md, dst_nchw;
  size_t scratch_bytes = 0;
};
struct DConvCache {
  std::mutex mu;
  std::unordered_map<Key, std::shared_ptr<const DConvEntry>, ArrayKeyHash> map;
};
DConvCache& dconv_cache() {
  static DConvCache c;
  return c;
}

std::shared_ptr<const DConvEntry> dconv_entry(const Key& key, int64_t N, int64_t C, int64_t H,
                                              int64_t W, int64_t OC, int64_t kh, int64_t kw,
                                              int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                              int64_t dh, int64_t dw, int64_t OH, int64_t OW) {
  {
    std::lock_guard<std::mutex> lock(dconv_cache().mu);
    auto it = dconv_cache().map.find(key);
    if (it != dconv_cache().map.end()) return it->second;
  }
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  using dims = dnnl::memory::dims;
  auto e = std::make_shared<DConvEntry>();
  try {
    e->src_nchw = dnnl::memory::desc(dims{N, C, H, W}, dt::u8, tag::nchw);
    e->src_nhwc = dnnl::memory::desc(dims{N, C, H, W}, dt::u8, tag::nhwc);
    e->need_reorder = C > 1;
    auto wany = dnnl::memory::desc(dims{OC, C, kh, kw}, dt::s8, tag::any);
    // (an NCHW destination makes oneDNN 2.6 fall back to its reference kernel: NHWC, then
    // a reorder)
    e->dst_md = dnnl::memory::desc(dims{N, OC, OH, OW}, dt::s32, tag::nhwc);
    e->dst_nchw = dnnl::memory::desc(dims{N, OC, OH, OW}, dt::s32, tag::nchw);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
    dnnl::convolution_forward::primitive_desc pd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                        dnnl::algorithm::convolution_direct, e->src_nhwc, wany,
                                        e->dst_md, dims{sh, sw}, dims{dh - 1, dw - 1}, dims{ph, pw},
                                        dims{ph, pw}),
        attr, engine());
    e->impl = pd.impl_info_str();
    e->usable = e->impl.rfind("ref", 0) != 0;
    if (e->usable) {
      e->w_md = pd.weights_desc();
      e->scratch_bytes = pd.scratchpad_desc().get_size();
      e->prim = dnnl::convolution_forward(pd);
      if (e->need_reorder)
        e->to_nhwc = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), e->src_nchw, engine(), e->src_nhwc));
      if (OC > 1)
        e->to_nchw = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), e->dst_md, engine(), e->dst_nchw));
    }
  } catch (const dnnl::error& err) {
    e->usable = false;
    e->impl = std::string("unavailable: ") + err.what();
  }
  std::lock_guard<std::mutex> lock(dconv_cache().mu);
  if (dconv_cache().map.size() > 256) dconv_cache().map.clear();
  return dconv_cache().map.emplace(key, e).first->second;
}

// The weights in the layout `md` (reordered from OIHW once, kept with the packed weights).
dnnl::memory dnnl_weights(const QGemmWeights& w, const dnnl::memory::desc& md, int64_t C, int64_t kh,
                          int64_t kw) {
  auto* holder = static_cast<DnnlWeights*>(w.dnnl.get());
  std::lock_guard<std::mutex> lock(holder->mu);
  for (auto& [d, m] : holder->reordered)
    if (d == md) return m;
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::memory src(dnnl::memory::desc(dnnl::memory::dims{w.N, C, kh, kw}, dt::s8, tag::oihw), engine(),
                   const_cast<int8_t*>(w.wdense.data()));
  dnnl::memory dst(md, engine());
  dnnl::stream st(engine());
  dnnl::reorder(src, dst).execute(st, src, dst);
  st.wait();
  holder->reordered.emplace_back(md, dst);
  return dst;
}

// ---------------------------------------------------------------- static mode
// Static quantisation: every parameter of the epilogue is a constant of the layer, so the
// primitive carries it as a constant attribute and oneDNN's fast kernels (brgemm AMX / VNNI
// matmul, jit AMX / brgconv convolution) fuse the whole epilogue (they fall back to
// gemm:jit only with RUNTIME output scales):
//   output scales (per channel n) os[n] = a_scale * w_scale[n] / out_scale  (u8 output)
//                                       = a_scale * w_scale[n]              (f32 output)
//   source zero point a_zp, destination zero point out_zp (u8), post-op ReLU,
//   bias (f32) given as bias[n] / (a_scale * w_scale[n]): oneDNN 2.x adds the bias to the
//   int32 accumulator BEFORE the output scale (dst = os * (acc + bias)), so
//   dst = (acc * a_scale * w_scale + bias) / out_scale as documented in backend/quant.h.
// oneDNN rounds the u8 result half to even (the CPU's default rounding mode) and saturates.
}  // namespace
struct StaticEntry {
  bool usable = false;
  std::string impl;
  dnnl::primitive prim;
  dnnl::memory::desc src_md, w_md, dst_md;
  dnnl::memory weights;               // reordered into w_md
  std::vector<float> bias;            // scaled (see above); empty without bias
  dnnl::memory::desc bias_md;
  size_t scratch_bytes = 0;
  // convolution only: NCHW u8 source reordered to NHWC first; f32 NHWC result to NCHW
  bool src_reorder = false, dst_reorder = false;
  dnnl::memory::desc src_nchw, dst_nchw;
  dnnl::reorder to_nhwc, to_nchw;
};
namespace {

int64_t fbits(float f) { return int64_t(std::bit_cast<uint32_t>(f)); }

// Hash of the per-channel scales and bias (values, not pointers: a QWeight assembled by hand
// or reloaded buffers must not reuse a stale primitive).
int64_t channel_hash(const float* ws, const float* bias, int64_t n) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i < n; i++) h = (h ^ std::bit_cast<uint32_t>(ws[i])) * 1099511628211ull;
  if (bias)
    for (int64_t i = 0; i < n; i++) h = (h ^ (std::bit_cast<uint32_t>(bias[i]) + 0x9e37u)) * 1099511628211ull;
  return int64_t(h);
}

dnnl::primitive_attr static_attr(const QStaticEpilogue& ep, int64_t N, std::vector<float>& bias_out,
                                 std::vector<float>& scales) {
  scales.resize(size_t(N));
  if (ep.bias) bias_out.resize(size_t(N));
  for (int64_t n = 0; n < N; n++) {
    const float s = ep.a_scale * ep.w_scale[n];
    scales[size_t(n)] = ep.requantize ? s / ep.out_scale : s;
    if (ep.bias) bias_out[size_t(n)] = ep.bias[n] / s;
  }
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_output_scales(1 << 1, scales);
  if (ep.a_zp != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {ep.a_zp});
  if (ep.requantize && ep.out_zp != 0) attr.set_zero_points(DNNL_ARG_DST, 0, {ep.out_zp});
  if (ep.relu) {
    dnnl::post_ops po;
    po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    attr.set_post_ops(po);
  }
  return attr;
}

// The weights in `md` for a primitive, reordered once from a plain source (kept with the
// packed weights, shared by every primitive choosing the same layout).
dnnl::memory weights_as(const QGemmWeights& w, const dnnl::memory::desc& md, const dnnl::memory::desc& plain,
                        const int8_t* data) {
  auto* holder = static_cast<DnnlWeights*>(w.dnnl.get());
  std::lock_guard<std::mutex> lock(holder->mu);
  for (auto& [d, m] : holder->reordered)
    if (d == md) return m;
  dnnl::memory src(plain, engine(), const_cast<int8_t*>(data));
  dnnl::memory dst(md, engine());
  dnnl::stream st(engine());
  dnnl::reorder(src, dst).execute(st, src, dst);
  st.wait();
  holder->reordered.emplace_back(md, dst);
  return dst;
}

std::shared_ptr<const StaticEntry> static_find(const QGemmWeights& w, const StaticKey& key) {
  auto* holder = static_cast<DnnlWeights*>(w.dnnl.get());
  std::lock_guard<std::mutex> lock(holder->mu);
  auto it = holder->statics.find(key);
  return it == holder->statics.end() ? nullptr : it->second;
}
std::shared_ptr<const StaticEntry> static_insert(const QGemmWeights& w, const StaticKey& key,
                                                 std::shared_ptr<const StaticEntry> e) {
  auto* holder = static_cast<DnnlWeights*>(w.dnnl.get());
  std::lock_guard<std::mutex> lock(holder->mu);
  if (holder->statics.size() >= 64) holder->statics.clear();  // many batch sizes: start over
  return holder->statics.emplace(key, std::move(e)).first->second;
}

std::shared_ptr<const StaticEntry> make_static_matmul(const QGemmWeights& w, int64_t M,
                                                      const QStaticEpilogue& ep) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  using dims = dnnl::memory::dims;
  auto e = std::make_shared<StaticEntry>();
  try {
    const int64_t N = w.N, K = w.K;
    std::vector<float> scales;
    dnnl::primitive_attr attr = static_attr(ep, N, e->bias, scales);
    e->src_md = dnnl::memory::desc(dims{M, K}, dt::u8, tag::ab);
    e->dst_md = dnnl::memory::desc(dims{M, N}, ep.requantize ? dt::u8 : dt::f32, tag::ab);
    auto wany = dnnl::memory::desc(dims{K, N}, dt::s8, tag::any);
    if (ep.bias) e->bias_md = dnnl::memory::desc(dims{1, N}, dt::f32, tag::ab);
    dnnl::matmul::primitive_desc pd(
        ep.bias ? dnnl::matmul::desc(e->src_md, wany, e->bias_md, e->dst_md)
                : dnnl::matmul::desc(e->src_md, wany, e->dst_md),
        attr, engine());
    e->impl = pd.impl_info_str();
    e->usable = e->impl.rfind("ref", 0) != 0 && e->impl.rfind("gemm", 0) != 0;
    if (e->usable) {
      e->w_md = pd.weights_desc();
      e->weights = weights_as(w, e->w_md, dnnl::memory::desc(dims{K, N}, dt::s8, tag::ab), w.wt.data());
      e->scratch_bytes = pd.scratchpad_desc().get_size();
      e->prim = dnnl::matmul(pd);
    }
  } catch (const dnnl::error& err) {
    e->usable = false;
    e->impl = std::string("unavailable: ") + err.what();
  }
  return e;
}

std::shared_ptr<const StaticEntry> make_static_conv(const QGemmWeights& w, bool x_nhwc, bool out_nhwc,
                                                    int64_t N, int64_t C, int64_t H, int64_t W,
                                                    int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                                    int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                                                    int64_t OH, int64_t OW, const QStaticEpilogue& ep) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  using dims = dnnl::memory::dims;
  auto e = std::make_shared<StaticEntry>();
  try {
    const int64_t OC = w.N;
    const dt odt = ep.requantize ? dt::u8 : dt::f32;
    std::vector<float> scales;
    dnnl::primitive_attr attr = static_attr(ep, OC, e->bias, scales);
    e->src_md = dnnl::memory::desc(dims{N, C, H, W}, dt::u8, tag::nhwc);
    e->src_nchw = dnnl::memory::desc(dims{N, C, H, W}, dt::u8, tag::nchw);
    e->src_reorder = !x_nhwc && C > 1;  // one channel: NCHW and NHWC are the same bytes
    // (an NCHW destination makes oneDNN 2.6 fall back to its reference kernel)
    e->dst_md = dnnl::memory::desc(dims{N, OC, OH, OW}, odt, tag::nhwc);
    e->dst_nchw = dnnl::memory::desc(dims{N, OC, OH, OW}, odt, tag::nchw);
    e->dst_reorder = !out_nhwc && OC > 1;
    auto wany = dnnl::memory::desc(dims{OC, C, kh, kw}, dt::s8, tag::any);
    if (ep.bias) e->bias_md = dnnl::memory::desc(dims{OC}, dt::f32, tag::a);
    const auto cd =
        ep.bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                  dnnl::algorithm::convolution_direct, e->src_md, wany,
                                                  e->bias_md, e->dst_md, dims{sh, sw}, dims{dh - 1, dw - 1},
                                                  dims{ph, pw}, dims{ph, pw})
                : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                  dnnl::algorithm::convolution_direct, e->src_md, wany,
                                                  e->dst_md, dims{sh, sw}, dims{dh - 1, dw - 1}, dims{ph, pw},
                                                  dims{ph, pw});
    dnnl::convolution_forward::primitive_desc pd(cd, attr, engine());
    e->impl = pd.impl_info_str();
    e->usable = e->impl.rfind("ref", 0) != 0 && e->impl.rfind("gemm", 0) != 0;
    if (e->usable) {
      e->w_md = pd.weights_desc();
      e->weights = weights_as(w, e->w_md, dnnl::memory::desc(dims{OC, C, kh, kw}, dt::s8, tag::oihw),
                              w.wdense.data());
      e->scratch_bytes = pd.scratchpad_desc().get_size();
      e->prim = dnnl::convolution_forward(pd);
      if (e->src_reorder)
        e->to_nhwc = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), e->src_nchw, engine(), e->src_md));
      if (e->dst_reorder)
        e->to_nchw = dnnl::reorder(dnnl::reorder::primitive_desc(engine(), e->dst_md, engine(), e->dst_nchw));
    }
  } catch (const dnnl::error& err) {
    e->usable = false;
    e->impl = std::string("unavailable: ") + err.what();
  }
  return e;
}

// Runs a static entry: src (already NHWC / row-major as the entry wants, or NCHW when it
// reorders), dst as the entry's output (NHWC, NCHW after its reorder, or [M, N]).
void run_static(const StaticEntry& e, const void* src, void* dst, int64_t src_elems, int64_t dst_elems,
                bool is_conv) {
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  thread_local DnnlScratch scratch;
  thread_local std::unique_ptr<dnnl::stream> stream;
  thread_local std::vector<uint8_t> src_tmp;
  thread_local std::vector<float> dst_tmp;
  if (!stream) stream = std::make_unique<dnnl::stream>(engine());
  dnnl::memory sm(e.src_md, engine(), const_cast<void*>(src));
  if (e.src_reorder) {
    if (src_tmp.size() < size_t(src_elems)) src_tmp.resize(size_t(src_elems));
    dnnl::memory nm(e.src_nchw, engine(), const_cast<void*>(src));
    sm = dnnl::memory(e.src_md, engine(), src_tmp.data());
    e.to_nhwc.execute(*stream, nm, sm);
  }
  void* dptr = dst;
  if (e.dst_reorder) {
    // f32 or u8 elements; a float buffer is large enough for either
    if (dst_tmp.size() < size_t(dst_elems)) dst_tmp.resize(size_t(dst_elems));
    dptr = dst_tmp.data();
  }
  dnnl::memory dm(e.dst_md, engine(), dptr);
  dnnl::memory scr(dnnl::memory::desc(dims{int64_t(e.scratch_bytes)}, dt::u8, dims{1}), engine(),
                   e.scratch_bytes ? scratch.get(e.scratch_bytes, "qgemm") : nullptr);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, sm},
                                             {DNNL_ARG_WEIGHTS, e.weights},
                                             {DNNL_ARG_DST, dm},
                                             {DNNL_ARG_SCRATCHPAD, scr}};
  if (!e.bias.empty())
    args.emplace(DNNL_ARG_BIAS, dnnl::memory(e.bias_md, engine(), const_cast<float*>(e.bias.data())));
  e.prim.execute(*stream, args);
  if (e.dst_reorder) {
    dnnl::memory om(e.dst_nchw, engine(), dst);
    e.to_nchw.execute(*stream, dm, om);
  }
  stream->wait();
  (void)is_conv;
}

// The cached static primitive for `key` (made by `make` on first use), run on src -> dst;
// false when oneDNN has no fast kernel for it (the caller computes it itself).
template <typename Make>
bool run_cached_static(const QGemmWeights& w, const StaticKey& key, Make&& make, const void* src, void* dst,
                       int64_t src_elems, int64_t dst_elems, bool conv, const char* op, const char* path) {
  auto e = static_find(w, key);
  if (!e) e = static_insert(w, key, make());
  if (!e->usable) return false;
  try {
    run_static(*e, src, dst, src_elems, dst_elems, conv);
  } catch (const dnnl::error& err) {
    throw Error(op, std::string("oneDNN int8 ") + (conv ? "convolution" : "matmul") + " failed: " + err.what());
  }
  g_dnnl_calls.fetch_add(1, std::memory_order_relaxed);
  set_last_path(path + e->impl);
  return true;
}

}  // namespace
#endif

void qgemm_u8s8(int64_t batch, int64_t M, const uint8_t* a, int64_t lda, int64_t a_bs,
                const QGemmWeights& w, const QGemmEpilogue& ep, void* out, int64_t out_rs,
                int64_t out_cs, int64_t out_bs) {
  if (batch <= 0 || M <= 0 || w.N <= 0) return;
  const Epi e{ep.a_scale, ep.a_scale_per_row, ep.a_zp, ep.w_scale, ep.bias, ep.relu,
              ep.requantize, ep.out_scale, ep.out_zp, w.rowsum.data()};
#ifdef MOX_HAVE_DNNL
  // Tiny products (batch-1 layers) stay with the own kernel: oneDNN's per-call overhead
  // (argument map, parallel region) is larger than the product there (measured).
  if (qgemm_wants_dense(w, batch * M)) {
    // int32 results (zero point already subtracted by oneDNN), then our epilogue: oneDNN
    // 2.6 takes its AMX/VNNI brgemm kernels only without runtime output scales.
    thread_local std::vector<int32_t> acc;
    const int64_t N = w.N;
    if (acc.size() < size_t(batch * M * N)) acc.resize(size_t(batch * M * N));
    int32_t* accp = acc.data();  // (threads below see their own thread_local)
    // oneDNN's brgemm needs dense rows: a contiguous batch is one [batch * M, K] product.
    const bool flat = batch > 1 && a_bs == M * lda;
    if (dnnl_qgemm(flat ? 1 : batch, flat ? batch * M : M, a, lda, a_bs, w, ep.a_zp, accp)) {
      Epi e2 = e;
      e2.a_zp = 0;
      const size_t oe = ep.requantize ? 1 : 4;
      const int nt = get_num_threads();
      const int64_t rows_per = 32, chunks = (M + rows_per - 1) / rows_per;
#pragma omp parallel for num_threads(nt) schedule(static) collapse(2) if (nt > 1 && batch * M * N >= (1 << 15))
      for (int64_t b = 0; b < batch; b++)
        for (int64_t c = 0; c < chunks; c++) {
          Epi eb = e2;
          if (eb.per_row) eb.a_scale = ep.a_scale + b * M;
          const int64_t r0 = c * rows_per, r1 = std::min(M, r0 + rows_per);
          epi_pass(eb, accp + (b * M + r0) * N, N, r0, r1 - r0, 0, N,
                   static_cast<char*>(out) + size_t(b * out_bs) * oe, out_rs, out_cs);
        }
      return;
    }
  }
#endif
  if (lda < w.Kp) {
    // Rows not padded to Kp (laid out for oneDNN, which declined): pad them here.
    thread_local std::vector<uint8_t> padded;
    padded.assign(size_t(batch * M * w.Kp), uint8_t(ep.a_zp));
    for (int64_t b = 0; b < batch; b++)
      for (int64_t m = 0; m < M; m++)
        std::memcpy(padded.data() + (b * M + m) * w.Kp, a + b * a_bs + m * lda, size_t(w.K));
    a = padded.data();
    lda = w.Kp;
    a_bs = M * w.Kp;
  }
  const Job j{batch, M, w.N, w.Kp, a, lda, a_bs, w.w.data(), e, out, out_rs, out_cs, out_bs,
              size_t(ep.requantize ? 1 : 4)};
  own_qgemm(j);
  set_last_path(std::string("mox:") + isa_name(effective_isa()));
}

bool qconv2d_dnnl_direct(const uint8_t* x, int64_t N, int64_t C, int64_t H, int64_t W,
                         const QGemmWeights& w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                         int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t OH, int64_t OW,
                         const QGemmEpilogue& ep, void* out) {
#ifdef MOX_HAVE_DNNL
  const int64_t P = OH * OW, OC = w.N;
  // Convolutions pay for source/result reorders on top of the call: oneDNN from 4x the
  // matmul threshold (measured: the CNN's 64->64 5x5 layer at batch 1, 0.3M MACs, is 2.5x
  // faster on the own kernel; its 32->64 13x13 layer, 2.5M MACs, 1.4x faster on oneDNN).
  if (!g_dnnl_enabled.load(std::memory_order_relaxed) || !w.dnnl ||
      double(N * P) * double(w.N) * double(w.Kp) < 4.0 * double(g_dnnl_min_work.load()))
    return false;
  const int nt = get_num_threads();
  if (omp_get_max_threads() != nt) omp_set_num_threads(nt);
  const Key key{N, C, H, W, OC, kh, kw, sh, sw, ph, pw, dh, dw, nt, 11, 0};
  auto e = dconv_entry(key, N, C, H, W, OC, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW);
  if (!e->usable) return false;
  thread_local std::vector<int32_t> accv, acc_nhwc;
  thread_local std::vector<uint8_t> nhwc;
  thread_local DnnlScratch scratch;
  thread_local std::unique_ptr<dnnl::stream> stream;
  if (accv.size() < size_t(N * OC * P)) accv.resize(size_t(N * OC * P));
  int32_t* acc = accv.data();
  try {
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    if (!stream) stream = std::make_unique<dnnl::stream>(engine());
    dnnl::memory wm = dnnl_weights(w, e->w_md, C, kh, kw);
    dnnl::memory xm(e->src_nchw, engine(), const_cast<uint8_t*>(x));
    dnnl::memory sm_src = xm;
    if (e->need_reorder) {
      if (nhwc.size() < size_t(N * C * H * W)) nhwc.resize(size_t(N * C * H * W));
      sm_src = dnnl::memory(e->src_nhwc, engine(), nhwc.data());
      e->to_nhwc.execute(*stream, xm, sm_src);
    } else {
      sm_src = dnnl::memory(e->src_nhwc, engine(), const_cast<uint8_t*>(x));  // C == 1: same bytes
    }
    if (OC > 1 && acc_nhwc.size() < size_t(N * OC * P)) acc_nhwc.resize(size_t(N * OC * P));
    dnnl::memory om(e->dst_md, engine(), OC > 1 ? acc_nhwc.data() : acc);
    dnnl::memory scr(dnnl::memory::desc(dims{int64_t(e->scratch_bytes)}, dt::u8, dims{1}), engine(),
                     e->scratch_bytes ? scratch.get(e->scratch_bytes, "qgemm") : nullptr);
    int32_t zp = ep.a_zp;
    dnnl::memory zpm(dnnl::memory::desc(dims{1}, dt::s32, dims{1}), engine(), &zp);
    e->prim.execute(*stream, {{DNNL_ARG_SRC, sm_src},
                              {DNNL_ARG_WEIGHTS, wm},
                              {DNNL_ARG_DST, om},
                              {DNNL_ARG_SCRATCHPAD, scr},
                              {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zpm}});
    if (OC > 1) {
      dnnl::memory nm(e->dst_nchw, engine(), acc);
      e->to_nchw.execute(*stream, om, nm);
    }
    stream->wait();
  } catch (const dnnl::error& err) {
    throw Error("qconv2d", std::string("oneDNN int8 convolution failed: ") + err.what());
  }
  g_dnnl_calls.fetch_add(1, std::memory_order_relaxed);
  set_last_path("dnnl:conv:" + e->impl);
  const Epi ee{ep.a_scale, ep.a_scale_per_row, 0, ep.w_scale, ep.bias, ep.relu,
               ep.requantize, ep.out_scale, ep.out_zp, w.rowsum.data()};
  const size_t oe = ep.requantize ? 1 : 4;
  const int64_t ob = std::max<int64_t>(1, std::min<int64_t>(OC, (1 << 14) / std::max<int64_t>(P, 1)));
  const int64_t oblocks = (OC + ob - 1) / ob;
#pragma omp parallel for num_threads(nt) schedule(static) collapse(2) if (nt > 1 && N * OC * P >= (1 << 15))
  for (int64_t b = 0; b < N; b++)
    for (int64_t c = 0; c < oblocks; c++) {
      const float sa = ep.a_scale_per_row ? ep.a_scale[b] : ep.a_scale[0];
      epi_oc_rows(ee, sa, acc + b * OC * P, c * ob, std::min(OC, (c + 1) * ob), P,
                  static_cast<char*>(out) + size_t(b * OC * P) * oe);
    }
  return true;
#else
  return false;
#endif
}

bool qlinear_dnnl_static(int64_t M, const uint8_t* a, const QGemmWeights& w, const QStaticEpilogue& ep,
                         void* out) {
#ifdef MOX_HAVE_DNNL
  if (M <= 0 || !g_dnnl_enabled.load(std::memory_order_relaxed) || !w.dnnl ||
      double(M) * double(w.N) * double(w.Kp) < double(g_dnnl_min_work.load(std::memory_order_relaxed)))
    return false;
  const int nt = get_num_threads();
  if (omp_get_max_threads() != nt) omp_set_num_threads(nt);
  const StaticKey key{1, M, w.N, w.K, fbits(ep.a_scale), ep.a_zp, fbits(ep.out_scale), ep.out_zp,
                      ep.relu, ep.requantize, ep.bias != nullptr, nt,
                      channel_hash(ep.w_scale, ep.bias, w.N)};
  return run_cached_static(w, key, [&] { return make_static_matmul(w, M, ep); }, a, out, M * w.K, M * w.N, false,
                           "qlinear", "dnnl:static:");
#else
  return false;
#endif
}

bool qconv2d_dnnl_static(const uint8_t* x, bool x_nhwc, int64_t N, int64_t C, int64_t H, int64_t W,
                         const QGemmWeights& w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                         int64_t pw, int64_t dh, int64_t dw, int64_t OH, int64_t OW,
                         const QStaticEpilogue& ep, bool out_nhwc, void* out) {
#ifdef MOX_HAVE_DNNL
  const int64_t OC = w.N;
  if (N <= 0 || !g_dnnl_enabled.load(std::memory_order_relaxed) || !w.dnnl ||
      double(N * OH * OW) * double(OC) * double(w.K) < double(g_dnnl_min_work.load(std::memory_order_relaxed)) * kStaticConvFactor)
    return false;
  const int nt = get_num_threads();
  if (omp_get_max_threads() != nt) omp_set_num_threads(nt);
  const StaticKey key{2, N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, x_nhwc, out_nhwc,
                      fbits(ep.a_scale), ep.a_zp, fbits(ep.out_scale), ep.out_zp,
                      (ep.relu ? 1 : 0) | (ep.requantize ? 2 : 0) | (ep.bias ? 4 : 0), nt,
                      channel_hash(ep.w_scale, ep.bias, OC), OC};
  return run_cached_static(
      w, key,
      [&] { return make_static_conv(w, x_nhwc, out_nhwc, N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW, ep); },
      x, out, N * C * H * W, N * OC * OH * OW, true, "qconv2d", "dnnl:static:conv:");
#else
  return false;
#endif
}

bool qgemm_wants_dense(const QGemmWeights& w, int64_t rows) {
#ifdef MOX_HAVE_DNNL
  // Tiny products (batch-1 layers) stay with the own kernel: oneDNN's per-call overhead
  // (argument map, parallel region) is larger than the product there (measured).
  const double work = double(rows) * double(w.N) * double(w.Kp);
  return g_dnnl_enabled.load(std::memory_order_relaxed) &&
         work >= double(g_dnnl_min_work.load(std::memory_order_relaxed));
#else
  return false;
#endif
}

void note_int8_path(const std::string& path) { set_last_path(path); }

bool int8_dnnl_available() {
#ifdef MOX_HAVE_DNNL
  return true;
#else
  return false;
#endif
}
void set_int8_dnnl_enabled(bool on) { g_dnnl_enabled = on && int8_dnnl_available(); }
bool int8_dnnl_enabled() { return g_dnnl_enabled; }
std::string int8_kernel_isa() { return isa_name(effective_isa()); }
void set_int8_isa_cap(int cap) { g_isa_cap = cap; }
void set_int8_dnnl_min_work(int64_t macs) { g_dnnl_min_work = macs < 0 ? int64_t(1) << 18 : macs; }
std::string int8_last_path() {
  std::lock_guard<std::mutex> lock(g_path_mu);
  return g_last_path;
}
int64_t int8_dnnl_calls() { return g_dnnl_calls.load(); }

}  // namespace mox::cpu
