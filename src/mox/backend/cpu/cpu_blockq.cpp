// CPU kernels of weight-only block quantisation (formats and packed layout: backend/blockq.h).
//
// Three kernels, chosen at run time from the CPU's features (set_blockq_isa forces one):
//  - avx512_vnni: the packed layout, vpdpbusd of a 64-byte weight chunk (16 rows x 4 k, as u8)
//    with the 4 activation bytes broadcast (s8). Q8 stores q + 128 as u8 so that
//    dot = vpdpbusd - 128 * sum(qx of the block); Q4 uses the nibbles (q + 8) as they are and
//    subtracts 8 * sum(qx). The correction is the accumulator's initial value, so each block
//    costs 8 vpdpbusd per 16 rows and x row, then one convert and one FMA with d_w * d_x.
//    No horizontal sums: lanes are output rows. Register tile: MR <= 4 rows of x by NP = 2
//    panels, or one row by up to 8 panels (8 independent vpdpbusd chains).
//  - avx2: the same layout in 8-row halves with maddubs/madd (Q8 with llama.cpp's sign trick:
//    |w| as u8 times sign(w) * x, which cannot saturate for |q| <= 127; Q4 nibbles directly,
//    summed in i16 over a block: 8 * 2 * 15 * 127 < 32768).
//  - scalar: plain C++ over data/scale (no packed layout).
// Activations are quantised once per call into a thread-local scratch buffer (reused while
// sizes repeat). Threads: OpenMP over (64-row chunks of M) x (8-panel chunks of N) above
// kParallelMacs multiply-adds; smaller products run on the calling thread.
#include "mox/backend/blockq.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mox/tensor/dtype.h"
#include "mox/tensor/error.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define MOX_BLOCKQ_X86 1
// GCC 12 reports the undefined-value intrinsics (_mm512_undefined_*) it uses itself as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace mox::cpu {

namespace {

constexpr int64_t kPanel = 16;
// Below this many multiply-adds the product runs on the calling thread: on the 2-core test
// machine a second OpenMP thread added 1-1.5 us to the GPT's per-token products (0.3-0.9 us
// on one thread), and pays off from about 1M multiply-adds (~7 us on one thread).
constexpr int64_t kParallelMacs = int64_t(1) << 20;
constexpr int64_t kMChunk = 64;   // rows of x per work item (its activations stay in L1)
constexpr int64_t kPChunk = 8;    // panels (128 weight rows) per work item
constexpr int kNpOne = 8;         // panels per micro-kernel call when x has one row

bool cpu_has(BlockqIsa isa) {
#ifdef MOX_BLOCKQ_X86
  switch (isa) {
    case BlockqIsa::Scalar: return true;
    case BlockqIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case BlockqIsa::Avx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
#else
  return isa == BlockqIsa::Scalar;
#endif
}

BlockqIsa best_isa() {
  if (cpu_has(BlockqIsa::Avx512Vnni)) return BlockqIsa::Avx512Vnni;
  if (cpu_has(BlockqIsa::Avx2)) return BlockqIsa::Avx2;
  return BlockqIsa::Scalar;
}

std::atomic<int> g_isa{-1};

BlockqIsa current_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = int(best_isa());
    g_isa.store(v, std::memory_order_relaxed);
  }
  return BlockqIsa(v);
}

// 64-byte aligned scratch, grown when needed and reused (one per thread).
struct Scratch {
  std::unique_ptr<uint8_t, decltype(&std::free)> buf{nullptr, &std::free};
  size_t cap = 0;
  uint8_t* get(size_t bytes) {
    if (bytes > cap) {
      size_t n = (std::max(bytes, cap * 2) + 63) / 64 * 64;
      void* p = std::aligned_alloc(64, n);
      if (!p) throw Error("block_linear", "out of memory for " + std::to_string(n) + " scratch bytes");
      buf.reset(static_cast<uint8_t*>(p));
      cap = n;
    }
    return buf.get();
  }
};

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

// Quantised activations: qx int8 [M, K], dx f32 [M, nb], sx int32 [M, nb] (sum of the block's q).
struct Acts {
  int8_t* qx;
  float* dx;
  int32_t* sx;
};

// ---------------------------------------------------------------- activation quantisation
void quant_rows_scalar(const float* x, int64_t K, int64_t m0, int64_t m1, const Acts& a) {
  const int64_t nb = K / 32;
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x + m * K + b * 32;
      int8_t* q = a.qx + m * K + b * 32;
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
      const float d = amax / 127.0f;
      int32_t s = 0;
      if (d == 0.0f) {
        std::memset(q, 0, 32);
      } else {
        const float id = 1.0f / d;
        for (int i = 0; i < 32; ++i) {
          float r = std::roundf(xb[i] * id);
          r = std::min(127.0f, std::max(-127.0f, r));
          q[i] = int8_t(r);
          s += q[i];
        }
      }
      a.dx[m * nb + b] = d;
      a.sx[m * nb + b] = s;
    }
  }
}

#ifdef MOX_BLOCKQ_X86
#define MOX_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define MOX_T256 __attribute__((target("avx2,fma")))

// roundf (ties away from zero) for |v| < 2^23: truncate v + copysign(0.5 - 2^-25, v).
// Adding 0.49999997 instead of 0.5 keeps values just below a half from rounding up.
MOX_T512 void quant_rows_512(const float* x, int64_t K, int64_t m0, int64_t m1, const Acts& a) {
  const int64_t nb = K / 32;
  const __m512 half = _mm512_set1_ps(0.49999997f);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x + m * K + b * 32;
      int8_t* q = a.qx + m * K + b * 32;
      __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
      float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      const float d = amax / 127.0f;
      int32_t s = 0;
      if (d == 0.0f) {
        std::memset(q, 0, 32);
      } else {
        const __m512 vid = _mm512_set1_ps(1.0f / d);
        __m512 q0 = _mm512_mul_ps(v0, vid), q1 = _mm512_mul_ps(v1, vid);
        q0 = _mm512_add_ps(q0, _mm512_or_ps(_mm512_and_ps(q0, sign), half));
        q1 = _mm512_add_ps(q1, _mm512_or_ps(_mm512_and_ps(q1, sign), half));
        __m512i r0 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvttps_epi32(q0), lo), hi);
        __m512i r1 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvttps_epi32(q1), lo), hi);
        s = _mm512_reduce_add_epi32(_mm512_add_epi32(r0, r1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(r0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(r1));
      }
      a.dx[m * nb + b] = d;
      a.sx[m * nb + b] = s;
    }
  }
}

MOX_T256 inline int32_t hsum_epi32_256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

MOX_T256 void quant_rows_256(const float* x, int64_t K, int64_t m0, int64_t m1, const Acts& a) {
  const int64_t nb = K / 32;
  const __m256 half = _mm256_set1_ps(0.49999997f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x + m * K + b * 32;
      int8_t* q = a.qx + m * K + b * 32;
      __m256 v[4];
      __m256 mx = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_loadu_ps(xb + 8 * i);
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
      const float amax = _mm_cvtss_f32(m4);
      const float d = amax / 127.0f;
      int32_t s = 0;
      if (d == 0.0f) {
        std::memset(q, 0, 32);
      } else {
        const __m256 vid = _mm256_set1_ps(1.0f / d);
        __m256i r[4];
        for (int i = 0; i < 4; ++i) {
          __m256 t = _mm256_mul_ps(v[i], vid);
          t = _mm256_add_ps(t, _mm256_or_ps(_mm256_and_ps(t, sign), half));
          r[i] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(t), lo), hi);
        }
        s = hsum_epi32_256(_mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3])));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_permutevar8x32_epi32(p, perm));
      }
      a.dx[m * nb + b] = d;
      a.sx[m * nb + b] = s;
    }
  }
}
#endif

// ---------------------------------------------------------------- the work to do
struct Job {
  bool q4;
  int64_t M, K, N, nb, P;
  Acts a;
  const uint8_t* wp;  // packed panels
  const float* ws;    // packed scales [P][nb][16]
  int64_t pstride;    // bytes per panel
  const float* bias;  // nullable
  float* y;
};

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#ifdef MOX_BLOCKQ_X86
// ---------------------------------------------------------------- AVX-512 VNNI micro-kernel
// y[m0 .. m0+MR) x rows [16 p0, 16 (p0 + NP)) of the weight; nlast valid rows in the last panel.
template <bool Q4, int MR, int NP>
MOX_T512 void uk512(const Job& J, int64_t m0, int64_t p0, int nlast) {
  const int64_t K = J.K, nb = J.nb;
  const uint8_t* wp = J.wp + p0 * J.pstride;
  const float* ws = J.ws + p0 * nb * kPanel;
  const int8_t* qx = J.a.qx + m0 * K;
  const float* dx = J.a.dx + m0 * nb;
  const int32_t* sx = J.a.sx + m0 * nb;
  const __m512i m0f = _mm512_set1_epi8(0x0f);
  __m512 facc[MR][NP];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) facc[m][p] = _mm512_setzero_ps();

  for (int64_t b = 0; b < nb; ++b) {
    __m512i acc[MR][NP];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m512i c = _mm512_set1_epi32((Q4 ? -8 : -128) * sx[m * nb + b]);
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) acc[m][p] = c;
    }
    const int8_t* xb = qx + b * 32;
    if constexpr (!Q4) {
      const uint8_t* wb = wp + b * 512;
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        __m512i w[NP];
#pragma GCC unroll 8
        for (int p = 0; p < NP; ++p) w[p] = _mm512_load_si512(wb + p * J.pstride + c * 64);
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) {
          const __m512i xv = _mm512_set1_epi32(load_i32(xb + m * K + 4 * c));
#pragma GCC unroll 8
          for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_dpbusd_epi32(acc[m][p], w[p], xv);
        }
      }
    } else {
      const uint8_t* wb = wp + b * 256;
#pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) {
        __m512i wl[NP], wh[NP];
#pragma GCC unroll 8
        for (int p = 0; p < NP; ++p) {
          const __m512i v = _mm512_load_si512(wb + p * J.pstride + c * 64);
          wl[p] = _mm512_and_si512(v, m0f);
          wh[p] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f);
        }
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) {
          const __m512i xl = _mm512_set1_epi32(load_i32(xb + m * K + 4 * c));
          const __m512i xh = _mm512_set1_epi32(load_i32(xb + m * K + 16 + 4 * c));
#pragma GCC unroll 8
          for (int p = 0; p < NP; ++p) {
            acc[m][p] = _mm512_dpbusd_epi32(acc[m][p], wl[p], xl);
            acc[m][p] = _mm512_dpbusd_epi32(acc[m][p], wh[p], xh);
          }
        }
      }
    }
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      const __m512 s = _mm512_load_ps(ws + (p * nb + b) * kPanel);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        const __m512 sc = _mm512_mul_ps(s, _mm512_set1_ps(dx[m * nb + b]));
        facc[m][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][p]), sc, facc[m][p]);
      }
    }
  }
  const int64_t n0 = p0 * kPanel;
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p) {
    const __mmask16 mask = p == NP - 1 ? __mmask16((1u << nlast) - 1) : __mmask16(0xffff);
    __m512 bv = J.bias ? _mm512_maskz_loadu_ps(mask, J.bias + n0 + p * kPanel) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m)
      _mm512_mask_storeu_ps(J.y + (m0 + m) * J.N + n0 + p * kPanel, mask, _mm512_add_ps(facc[m][p], bv));
  }
}

template <bool Q4, int MR>
MOX_T512 void uk512_np(const Job& J, int64_t m0, int64_t p0, int np, int nlast) {
  switch (np) {
    case 1: uk512<Q4, MR, 1>(J, m0, p0, nlast); break;
    case 2: uk512<Q4, MR, 2>(J, m0, p0, nlast); break;
    case 3: uk512<Q4, MR, 3>(J, m0, p0, nlast); break;
    case 4: uk512<Q4, MR, 4>(J, m0, p0, nlast); break;
    default:
      if constexpr (MR == 1) {  // one row of x: more panels keep more vpdpbusd chains in flight
        switch (np) {
          case 5: uk512<Q4, 1, 5>(J, m0, p0, nlast); break;
          case 6: uk512<Q4, 1, 6>(J, m0, p0, nlast); break;
          case 7: uk512<Q4, 1, 7>(J, m0, p0, nlast); break;
          default: uk512<Q4, 1, 8>(J, m0, p0, nlast); break;
        }
      }
      break;
  }
}

template <bool Q4>
void tile512(const Job& J, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  for (int64_t m = m0; m < m1;) {
    const int mr = int(std::min<int64_t>(4, m1 - m));
    const int npmax = mr == 1 ? kNpOne : 2;
    for (int64_t p = p0; p < p1;) {
      const int np = int(std::min<int64_t>(npmax, p1 - p));
      const int nlast = int(std::min<int64_t>(kPanel, J.N - (p + np - 1) * kPanel));
      switch (mr) {
        case 1: uk512_np<Q4, 1>(J, m, p, np, nlast); break;
        case 2: uk512_np<Q4, 2>(J, m, p, np, nlast); break;
        case 3: uk512_np<Q4, 3>(J, m, p, np, nlast); break;
        default: uk512_np<Q4, 4>(J, m, p, np, nlast); break;
      }
      p += np;
    }
    m += mr;
  }
}

// ---------------------------------------------------------------- AVX2 micro-kernel
// MR rows of x by one panel (two 8-row halves).
template <bool Q4, int MR>
MOX_T256 void uk256(const Job& J, int64_t m0, int64_t p0, int nlast) {
  const int64_t K = J.K, nb = J.nb;
  const uint8_t* wp = J.wp + p0 * J.pstride;
  const float* ws = J.ws + p0 * nb * kPanel;
  const int8_t* qx = J.a.qx + m0 * K;
  const float* dx = J.a.dx + m0 * nb;
  const int32_t* sx = J.a.sx + m0 * nb;
  const __m256i m0f = _mm256_set1_epi8(0x0f);
  const __m256i x80 = _mm256_set1_epi8(char(0x80));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 facc[MR][2];
  for (int m = 0; m < MR; ++m) facc[m][0] = facc[m][1] = _mm256_setzero_ps();

  for (int64_t b = 0; b < nb; ++b) {
    __m256i acc[MR][2];
    const int8_t* xb = qx + b * 32;
    if constexpr (!Q4) {
      for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_si256();
      const uint8_t* wb = wp + b * 512;
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        __m256i w[2], aw[2];
        for (int h = 0; h < 2; ++h) {
          w[h] = _mm256_xor_si256(
              _mm256_load_si256(reinterpret_cast<const __m256i*>(wb + c * 64 + h * 32)), x80);
          aw[h] = _mm256_abs_epi8(w[h]);
        }
        for (int m = 0; m < MR; ++m) {
          const __m256i xv = _mm256_set1_epi32(load_i32(xb + m * K + 4 * c));
          for (int h = 0; h < 2; ++h) {
            const __m256i p16 = _mm256_maddubs_epi16(aw[h], _mm256_sign_epi8(xv, w[h]));
            acc[m][h] = _mm256_add_epi32(acc[m][h], _mm256_madd_epi16(p16, ones));
          }
        }
      }
    } else {
      __m256i a16[MR][2];
      for (int m = 0; m < MR; ++m) a16[m][0] = a16[m][1] = _mm256_setzero_si256();
      const uint8_t* wb = wp + b * 256;
#pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) {
        __m256i wl[2], wh[2];
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(wb + c * 64 + h * 32));
          wl[h] = _mm256_and_si256(v, m0f);
          wh[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
        }
        for (int m = 0; m < MR; ++m) {
          const __m256i xl = _mm256_set1_epi32(load_i32(xb + m * K + 4 * c));
          const __m256i xh = _mm256_set1_epi32(load_i32(xb + m * K + 16 + 4 * c));
          for (int h = 0; h < 2; ++h) {
            a16[m][h] = _mm256_add_epi16(a16[m][h], _mm256_maddubs_epi16(wl[h], xl));
            a16[m][h] = _mm256_add_epi16(a16[m][h], _mm256_maddubs_epi16(wh[h], xh));
          }
        }
      }
      for (int m = 0; m < MR; ++m) {
        const __m256i c = _mm256_set1_epi32(-8 * sx[m * nb + b]);
        for (int h = 0; h < 2; ++h) acc[m][h] = _mm256_add_epi32(c, _mm256_madd_epi16(a16[m][h], ones));
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __m256 s = _mm256_load_ps(ws + b * kPanel + h * 8);
      for (int m = 0; m < MR; ++m) {
        const __m256 sc = _mm256_mul_ps(s, _mm256_set1_ps(dx[m * nb + b]));
        facc[m][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[m][h]), sc, facc[m][h]);
      }
    }
  }
  const int64_t n0 = p0 * kPanel;
  for (int m = 0; m < MR; ++m) {
    alignas(32) float out[16];
    _mm256_store_ps(out, facc[m][0]);
    _mm256_store_ps(out + 8, facc[m][1]);
    float* yr = J.y + (m0 + m) * J.N + n0;
    for (int r = 0; r < nlast; ++r) yr[r] = out[r] + (J.bias ? J.bias[n0 + r] : 0.0f);
  }
}

template <bool Q4>
void tile256(const Job& J, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  for (int64_t m = m0; m < m1;) {
    const int mr = int(std::min<int64_t>(2, m1 - m));
    for (int64_t p = p0; p < p1; ++p) {
      const int nlast = int(std::min<int64_t>(kPanel, J.N - p * kPanel));
      if (mr == 1)
        uk256<Q4, 1>(J, m, p, nlast);
      else
        uk256<Q4, 2>(J, m, p, nlast);
    }
    m += mr;
  }
}
#endif

// ---------------------------------------------------------------- scalar kernel
void scalar_rows(bool q4, const Acts& a, int64_t K, const void* data, const uint16_t* scale,
                 int64_t N, const float* bias, float* y, int64_t m, int64_t n0, int64_t n1) {
  const int64_t nb = K / 32;
  const int8_t* qx = a.qx + m * K;
  for (int64_t n = n0; n < n1; ++n) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* xb = qx + b * 32;
      int32_t isum = 0;
      if (!q4) {
        const int8_t* w = static_cast<const int8_t*>(data) + n * K + b * 32;
        for (int i = 0; i < 32; ++i) isum += int32_t(w[i]) * xb[i];
      } else {
        const uint8_t* w = static_cast<const uint8_t*>(data) + n * (K / 2) + b * 16;
        for (int j = 0; j < 16; ++j) {
          isum += (int32_t(w[j] & 15) - 8) * xb[j];
          isum += (int32_t(w[j] >> 4) - 8) * xb[j + 16];
        }
      }
      const float dw = f16::to_float(scale[n * nb + b]);
      acc += float(isum) * (dw * a.dx[m * nb + b]);
    }
    y[m * N + n] = acc + (bias ? bias[n] : 0.0f);
  }
}

}  // namespace

const char* blockq_isa_name(BlockqIsa isa) {
  switch (isa) {
    case BlockqIsa::Scalar: return "scalar";
    case BlockqIsa::Avx2: return "avx2";
    case BlockqIsa::Avx512Vnni: return "avx512_vnni";
  }
  return "?";
}

bool blockq_isa_supported(BlockqIsa isa) { return cpu_has(isa); }
BlockqIsa blockq_best_isa() { return best_isa(); }
BlockqIsa blockq_isa() { return current_isa(); }

void set_blockq_isa(BlockqIsa isa) {
  if (!cpu_has(isa))
    throw Error("set_blockq_isa", std::string("this CPU cannot run the ") + blockq_isa_name(isa) +
                                      " block-quantised kernel");
  g_isa.store(int(isa), std::memory_order_relaxed);
}

void reset_blockq_isa() { g_isa.store(int(best_isa()), std::memory_order_relaxed); }

size_t blockq_packed_bytes(bool q4, int64_t N, int64_t K) {
  const int64_t P = (N + kPanel - 1) / kPanel, nb = K / 32;
  const size_t wbytes = size_t(P) * size_t(nb) * (q4 ? 256 : 512);
  return align64(wbytes) + size_t(P) * size_t(nb) * kPanel * sizeof(float);
}

void blockq_pack(bool q4, const void* data, const uint16_t* scale, int64_t N, int64_t K,
                 void* packed) {
  const int64_t P = (N + kPanel - 1) / kPanel, nb = K / 32;
  const int64_t pstride = nb * (q4 ? 256 : 512);
  uint8_t* wp = static_cast<uint8_t*>(packed);
  float* ws = reinterpret_cast<float*>(wp + align64(size_t(P * pstride)));
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* dst = wp + p * pstride + b * (q4 ? 256 : 512);
      const int nchunks = q4 ? 4 : 8;
      for (int c = 0; c < nchunks; ++c) {
        for (int r = 0; r < kPanel; ++r) {
          const int64_t n = p * kPanel + r;
          for (int t = 0; t < 4; ++t) {
            uint8_t v;
            if (n >= N) {
              v = q4 ? 0x88 : 0x80;  // value 0 (and its scale is 0)
            } else if (q4) {
              v = static_cast<const uint8_t*>(data)[n * (K / 2) + b * 16 + 4 * c + t];
            } else {
              v = uint8_t(static_cast<const int8_t*>(data)[n * K + b * 32 + 4 * c + t] + 128);
            }
            dst[c * 64 + r * 4 + t] = v;
          }
        }
      }
      for (int r = 0; r < kPanel; ++r) {
        const int64_t n = p * kPanel + r;
        ws[(p * nb + b) * kPanel + r] = n < N ? f16::to_float(scale[n * nb + b]) : 0.0f;
      }
    }
  }
}

void blockq_linear(bool q4, const float* x, int64_t M, int64_t K, const void* data,
                   const uint16_t* scale, const void* packed, int64_t N, const float* bias,
                   float* y) {
  if (M <= 0 || N <= 0) return;
  const int64_t nb = K / 32;
  const BlockqIsa isa = current_isa();

  thread_local Scratch scratch;
  const size_t qbytes = align64(size_t(M * K)), dbytes = align64(size_t(M * nb) * 4);
  uint8_t* buf = scratch.get(qbytes + 2 * dbytes);
  Acts a{reinterpret_cast<int8_t*>(buf), reinterpret_cast<float*>(buf + qbytes),
         reinterpret_cast<int32_t*>(buf + qbytes + dbytes)};

  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool par = nt > 1 && M * N * K >= kParallelMacs;

  auto quant = [&](int64_t m0, int64_t m1) {
#ifdef MOX_BLOCKQ_X86
    if (isa == BlockqIsa::Avx512Vnni) return quant_rows_512(x, K, m0, m1, a);
    if (isa == BlockqIsa::Avx2) return quant_rows_256(x, K, m0, m1, a);
#endif
    quant_rows_scalar(x, K, m0, m1, a);
  };

  if (isa == BlockqIsa::Scalar) {
    if (!par) {
      quant(0, M);
      for (int64_t m = 0; m < M; ++m) scalar_rows(q4, a, K, data, scale, N, bias, y, m, 0, N);
      return;
    }
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
      for (int64_t m = 0; m < M; ++m) quant(m, m + 1);
#pragma omp for collapse(2) schedule(static)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n0 = 0; n0 < N; n0 += 64)
          scalar_rows(q4, a, K, data, scale, N, bias, y, m, n0, std::min(N, n0 + 64));
    }
    return;
  }

#ifdef MOX_BLOCKQ_X86
  std::vector<uint8_t> tmp;  // slow path: no packed layout given
  if (!packed) {
    tmp.resize(blockq_packed_bytes(q4, N, K) + 64);
    void* p = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(tmp.data()) + 63) / 64 * 64);
    blockq_pack(q4, data, scale, N, K, p);
    packed = p;
  }
  Job J;
  J.q4 = q4;
  J.M = M, J.K = K, J.N = N, J.nb = nb, J.P = (N + kPanel - 1) / kPanel;
  J.a = a;
  J.pstride = nb * (q4 ? 256 : 512);
  J.wp = static_cast<const uint8_t*>(packed);
  J.ws = reinterpret_cast<const float*>(J.wp + align64(size_t(J.P * J.pstride)));
  J.bias = bias;
  J.y = y;
  auto tile = [&](int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
    if (isa == BlockqIsa::Avx512Vnni) {
      if (q4) tile512<true>(J, m0, m1, p0, p1); else tile512<false>(J, m0, m1, p0, p1);
    } else {
      if (q4) tile256<true>(J, m0, m1, p0, p1); else tile256<false>(J, m0, m1, p0, p1);
    }
  };
  if (!par) {
    quant(0, M);
    tile(0, M, 0, J.P);
    return;
  }
  const int64_t nmc = (M + kMChunk - 1) / kMChunk, npc = (J.P + kPChunk - 1) / kPChunk;
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; m += 16) quant(m, std::min(M, m + 16));
#pragma omp for collapse(2) schedule(static)
    for (int64_t i = 0; i < nmc; ++i)
      for (int64_t j = 0; j < npc; ++j)
        tile(i * kMChunk, std::min(M, (i + 1) * kMChunk), j * kPChunk, std::min(J.P, (j + 1) * kPChunk));
  }
#endif
}

}  // namespace mox::cpu
