// Fused scaled dot-product attention, FlashAttention-2 style, forward and backward.
//
// Forward: each work item is one (batch, head, tile of kBq queries). It walks the key/value
// tiles (kBk keys each) once, computing that tile's scores from q and k, applying the causal
// and padding masks, and folding them into a running max m, running sum l and running
// weighted sum of values per query row (the online softmax). The row's logsumexp m + log l
// is saved for the backward. Work items are independent, so they are spread over OpenMP
// threads and the result does not depend on the thread count.
//
// Backward: per (batch, head) (one thread each, so dK/dV need no synchronisation), for each
// key tile: recompute the scores of every query tile that can see it, P = exp(S - lse),
// dP = dO V^T, dS = P * (dP - D_i) with D_i = rowsum(dO_i * O_i), and accumulate
// dV += P^T dO, dK += scale dS^T Q, dQ += scale dS K.
//
// By design no buffer here is Tq x Tk: the largest per-thread buffers are kBq x kBk score
// tiles, D x kBk transposed key/value tiles and O(Tq) row statistics.
// Inner loops run over a full tile width kBk (a compile-time constant, key columns past the
// end are zero-padded and masked) or over D, and are compiled per instruction set (MOX_SIMD)
// for f32; f64 (gradient tests) uses the portable code with libm's exp.
#include <omp.h>

#include <algorithm>
#include <memory>
#include <cmath>
#include <limits>
#include <vector>

#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/math.h"
#include "mox/backend/cpu/simd.h"

namespace mox {

namespace {

constexpr int64_t kBq = 32;  // queries per tile
constexpr int64_t kBk = 64;  // keys per tile

template <typename T> constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// Lanes for the row reductions (max, sum): a fixed count so that GCC vectorises them
// without -ffast-math and the summation order is fixed.
template <typename T> constexpr int kLanes = 64 / sizeof(T);

template <typename T> MOX_INLINE T tile_row_max(const T* s) {
  constexpr int L = kLanes<T>;
  T acc[L];
  for (int j = 0; j < L; j++) acc[j] = kNegInf<T>;
  for (int64_t i = 0; i < kBk; i += L)
    for (int j = 0; j < L; j++) acc[j] = s[i + j] > acc[j] ? s[i + j] : acc[j];
  T m = kNegInf<T>;
  for (int j = 0; j < L; j++) m = acc[j] > m ? acc[j] : m;
  return m;
}

// s[j] = exp(s[j] - m) over a tile row; returns the sum.
template <typename T> MOX_INLINE T tile_row_exp_sum(T* s, T m) {
  constexpr int L = kLanes<T>;
  T acc[L] = {};
  for (int64_t i = 0; i < kBk; i += L)
    for (int j = 0; j < L; j++) {
      T e = cpu::m_exp(s[i + j] - m);
      s[i + j] = e;
      acc[j] += e;
    }
  T sum = 0;
  for (int j = 0; j < L; j++) sum += acc[j];
  return sum;
}

// kt[d][j] = k[j][d] for j < nk, 0 beyond (a D x kBk tile); k's rows are ld apart.
// Written row by row of kt (contiguous stores, strided loads: the compiler gathers), and only
// the columns past nk zeroed: a decoding step calls this for every tile of every head.
template <typename T>
MOX_INLINE void load_transposed(const T* k, int64_t ld, int64_t nk, int64_t D, T* kt) {
  for (int64_t d = 0; d < D; d++) {
    T* row = kt + d * kBk;
    const T* col = k + d;
    for (int64_t j = 0; j < nk; j++) row[j] = col[j * ld];
    for (int64_t j = nk; j < kBk; j++) row[j] = 0;
  }
}

// S[i][:] = a_i . bt[:, :] for nq rows of a (rows lda apart) against a transposed tile
// bt [D][kBk].
template <typename T>
MOX_INLINE void tile_products(const T* a, int64_t lda, const T* bt, int64_t nq, int64_t D, T* S) {
  int64_t i = 0;
  // four rows at a time: each load of bt feeds four multiply-adds
  for (; i + 4 <= nq; i += 4) {
    T acc[4][kBk] = {};  // kept in registers across the loop over d
    for (int64_t d = 0; d < D; d++) {
      const T x0 = a[i * lda + d], x1 = a[(i + 1) * lda + d], x2 = a[(i + 2) * lda + d],
              x3 = a[(i + 3) * lda + d];
      const T* br = bt + d * kBk;
      for (int64_t j = 0; j < kBk; j++) {
        acc[0][j] += x0 * br[j];
        acc[1][j] += x1 * br[j];
        acc[2][j] += x2 * br[j];
        acc[3][j] += x3 * br[j];
      }
    }
    for (int r = 0; r < 4; r++)
      for (int64_t j = 0; j < kBk; j++) S[(i + r) * kBk + j] = acc[r][j];
  }
  for (; i < nq; i++) {
    T acc[kBk] = {};  // a row of the tile, kept in registers across the loop over d
    for (int64_t d = 0; d < D; d++) {
      const T x = a[i * lda + d];
      const T* br = bt + d * kBk;
      for (int64_t j = 0; j < kBk; j++) acc[j] += x * br[j];
    }
    T* s = S + i * kBk;
    for (int64_t j = 0; j < kBk; j++) s[j] = acc[j];
  }
}

// The one-query case of tile_products (a decoding step), read straight from K's rows: eight
// keys at a time, each score the same sequential sum over d that tile_products forms, so the
// numbers are identical, without transposing the tile first. Lanes past nk are 0 (masked next).
template <typename T>
MOX_INLINE void row_products(const T* a, const T* k, int64_t ld, int64_t nk, int64_t D, T* s) {
  int64_t j = 0;
  for (; j + 8 <= nk; j += 8) {
    T acc[8] = {};
    const T* r = k + j * ld;
    for (int64_t d = 0; d < D; d++) {
      const T x = a[d];
      for (int q = 0; q < 8; q++) acc[q] += x * r[q * ld + d];
    }
    for (int q = 0; q < 8; q++) s[j + q] = acc[q];
  }
  for (; j < nk; j++) {
    T acc = 0;
    for (int64_t d = 0; d < D; d++) acc += a[d] * k[j * ld + d];
    s[j] = acc;
  }
  for (; j < kBk; j++) s[j] = 0;
}

// Hides the invisible scores of a tile (queries q0.., keys k0.., nk valid keys): key
// columns past nk, keys after the causal limit, padding keys (pad points at key k0's flag).
template <typename T>
MOX_INLINE void mask_tile(T* S, int64_t nq, int64_t nk, int64_t q0, int64_t k0, int64_t off,
                          bool causal, const uint8_t* pad) {
  for (int64_t i = 0; i < nq; i++) {
    T* s = S + i * kBk;
    // keys j (tile-relative) <= lim are visible: j < nk and, if causal, k0 + j <= q0 + i + off
    int64_t lim = nk - 1;
    if (causal) lim = std::min(lim, q0 + i + off - k0);
    for (int64_t j = 0; j < kBk; j++) s[j] = j > lim ? kNegInf<T> : s[j];
    if (pad)
      for (int64_t j = 0; j < nk; j++) s[j] = pad[j] ? kNegInf<T> : s[j];
  }
}

// out[:D] += alpha * sum_r coef[r * cstride] * rows[r][:D] (rows ld apart). With D known at compile time
// (DC > 0) the output row is held in registers over the rows instead of being loaded and
// stored for each. (No early skip of zero coefficients: with it, GCC 12's x86-64-v4 clone
// gave wrong dK for D = 16; Attention.F32GradientsMatchF64 covers this.)
template <typename T, int DC>
MOX_INLINE void axpy_rows(T* out, const T* coef, int64_t cstride,
                          const T* rows, int64_t ld, int64_t n, int64_t D, T alpha) {
  if constexpr (DC > 0) {
    T acc[DC];
    for (int d = 0; d < DC; d++) acc[d] = out[d];
    for (int64_t r = 0; r < n; r++) {
      const T c = alpha * coef[r * cstride];
      const T* rr = rows + r * ld;
      for (int d = 0; d < DC; d++) acc[d] += c * rr[d];
    }
    for (int d = 0; d < DC; d++) out[d] = acc[d];
  } else {
    for (int64_t r = 0; r < n; r++) {
      const T c = alpha * coef[r * cstride];
      const T* rr = rows + r * ld;
      for (int64_t d = 0; d < D; d++) out[d] += c * rr[d];
    }
  }
}

// Four outputs over the same rows: out[q][:D] += alpha * sum_r coef[q][r * cstride] *
// rows[r][:D] for q < 4, so that each row loaded feeds four multiply-adds (P V, dS K, P^T dO
// and dS^T Q are small products: one output at a time they are bound by the loads).
template <typename T, int DC>
MOX_INLINE void axpy_rows4(T* const* out, const T* const* coef, int64_t cstride, const T* rows,
                           int64_t ld, int64_t n, int64_t D, T alpha) {
  if constexpr (DC > 0) {
    T acc[4][DC];
    for (int q = 0; q < 4; q++)
      for (int d = 0; d < DC; d++) acc[q][d] = out[q][d];
    for (int64_t r = 0; r < n; r++) {
      const T c0 = alpha * coef[0][r * cstride], c1 = alpha * coef[1][r * cstride],
              c2 = alpha * coef[2][r * cstride], c3 = alpha * coef[3][r * cstride];
      const T* rr = rows + r * ld;
      for (int d = 0; d < DC; d++) {
        acc[0][d] += c0 * rr[d];
        acc[1][d] += c1 * rr[d];
        acc[2][d] += c2 * rr[d];
        acc[3][d] += c3 * rr[d];
      }
    }
    for (int q = 0; q < 4; q++)
      for (int d = 0; d < DC; d++) out[q][d] = acc[q][d];
  } else {
    for (int q = 0; q < 4; q++) axpy_rows<T, 0>(out[q], coef[q], cstride, rows, ld, n, D, alpha);
  }
}

// A [B, H, T, D] operand whose rows (the D values of one position) are contiguous:
// row t of head (b, h) starts at p + b*sb + h*sh + t*st. Views such as the q, k and v
// columns of a [B, T, 3C] projection, or [B, T, H, D] buffers seen as [B, H, T, D], need no
// copy.
template <typename T> struct Rows {
  T* p = nullptr;
  int64_t sb = 0, sh = 0, st = 0;
  MOX_INLINE T* head(int64_t bh, int64_t H) const { return p + (bh / H) * sb + (bh % H) * sh; }
};

template <typename T> struct AttnArgs {
  Rows<T> q, k, v, o;
  const uint8_t* mask;  // [B, Tk] or null
  T* lse;               // [B, H, Tq] contiguous
  Rows<T> go, gq, gk, gv;  // backward only
  int64_t B, H, Tq, Tk, D;
  bool causal;
  T scale;
};

template <typename T> int64_t fwd_workspace(int64_t D) {
  return kBq * D /*qs*/ + D * kBk /*kt*/ + kBq * kBk /*S*/ + kBq * D /*acc*/ + 2 * kBq /*m, l*/;
}

// One (b, h, query tile) of the forward.
// DC: the head size D when known at compile time (common sizes, so that the loops over D
// unroll and their accumulators stay in registers), 0 for any other D.
template <typename T, int DC>
MOX_INLINE void fwd_item(const AttnArgs<T>& a, int64_t item, T* ws) {
  const int64_t D = DC ? DC : a.D, Tq = a.Tq, Tk = a.Tk;
  const int64_t nqt = (Tq + kBq - 1) / kBq;
  const int64_t bh = item / nqt, q0 = (item % nqt) * kBq, nq = std::min(kBq, Tq - q0);
  const int64_t b = bh / a.H;
  const int64_t qst = a.q.st, kst = a.k.st, vst = a.v.st, ost = a.o.st;
  const T* q = a.q.head(bh, a.H) + q0 * qst;
  const T* k = a.k.head(bh, a.H);
  const T* v = a.v.head(bh, a.H);
  const uint8_t* pad = a.mask ? a.mask + b * Tk : nullptr;
  T* o = a.o.head(bh, a.H) + q0 * ost;
  T* lse = a.lse + bh * Tq + q0;
  const int64_t off = Tk - Tq;

  T* qs = ws;
  T* kt = qs + kBq * D;
  T* S = kt + D * kBk;
  T* acc = S + kBq * kBk;
  T* m = acc + kBq * D;
  T* l = m + kBq;
  for (int64_t i = 0; i < nq; i++)
    for (int64_t d = 0; d < D; d++) {
      qs[i * D + d] = q[i * qst + d] * a.scale;
      acc[i * D + d] = 0;
    }
  for (int64_t i = 0; i < nq; i++) {
    m[i] = kNegInf<T>;
    l[i] = 0;
  }
  // keys past the last query's causal limit are invisible to the whole tile
  const int64_t kend = a.causal ? std::min(Tk, q0 + nq + off) : Tk;
  for (int64_t k0 = 0; k0 < kend; k0 += kBk) {
    const int64_t nk = std::min(kBk, kend - k0);
    if (nq == 1) {
      row_products(qs, k + k0 * kst, kst, nk, D, S);
    } else {
      load_transposed(k + k0 * kst, kst, nk, D, kt);
      tile_products(qs, D, kt, nq, D, S);
    }
    mask_tile(S, nq, nk, q0, k0, off, a.causal, pad ? pad + k0 : nullptr);
    int64_t ns[kBq];  // keys of this tile row i can see (its weights beyond are 0)
    for (int64_t i = 0; i < nq; i++) {
      T* s = S + i * kBk;
      const T mx = tile_row_max(s);
      const T mnew = mx > m[i] ? mx : m[i];
      if (mnew == kNegInf<T>) {  // nothing visible to this row yet: weights 0
        for (int64_t j = 0; j < kBk; j++) s[j] = 0;
        ns[i] = 0;
        continue;
      }
      const T c = cpu::m_exp(m[i] - mnew);  // 0 when m[i] is still -inf
      l[i] = l[i] * c + tile_row_exp_sum(s, mnew);
      m[i] = mnew;
      T* ar = acc + i * D;
      for (int64_t d = 0; d < D; d++) ar[d] *= c;
      // keys past the causal limit have weight 0: leave them out
      ns[i] = a.causal ? std::max<int64_t>(0, std::min(nk, q0 + i + off - k0 + 1)) : nk;
    }
    // acc_i += P_i V, four rows at a time over the keys the furthest-seeing of them sees
    int64_t i = 0;
    for (; i + 4 <= nq; i += 4) {
      const int64_t n = std::max(std::max(ns[i], ns[i + 1]), std::max(ns[i + 2], ns[i + 3]));
      T* outs[4] = {acc + i * D, acc + (i + 1) * D, acc + (i + 2) * D, acc + (i + 3) * D};
      const T* coefs[4] = {S + i * kBk, S + (i + 1) * kBk, S + (i + 2) * kBk, S + (i + 3) * kBk};
      if (n > 0) axpy_rows4<T, DC>(outs, coefs, 1, v + k0 * vst, vst, n, D, T(1));
    }
    for (; i < nq; i++)
      if (ns[i] > 0) axpy_rows<T, DC>(acc + i * D, S + i * kBk, 1, v + k0 * vst, vst, ns[i], D, T(1));
  }
  for (int64_t i = 0; i < nq; i++) {
    if (l[i] > 0) {
      const T inv = T(1) / l[i];
      for (int64_t d = 0; d < D; d++) o[i * ost + d] = acc[i * D + d] * inv;
      lse[i] = m[i] + std::log(l[i]);
    } else {  // the row sees no key: output 0
      for (int64_t d = 0; d < D; d++) o[i * ost + d] = 0;
      lse[i] = kNegInf<T>;
    }
  }
}

template <typename T> int64_t bwd_workspace(int64_t Tq, int64_t D) {
  return Tq /*Di*/ + kBq * D /*qs*/ + 2 * D * kBk /*kt, vt*/ + 2 * kBq * kBk /*P, dP*/ +
         2 * kBk * D /*dk, dv*/;
}

// One (b, h) of the backward.
template <typename T, int DC>
MOX_INLINE void bwd_head(const AttnArgs<T>& a, int64_t bh, T* ws) {
  const int64_t D = DC ? DC : a.D, Tq = a.Tq, Tk = a.Tk;
  const int64_t b = bh / a.H;
  const int64_t qst = a.q.st, kst = a.k.st, vst = a.v.st, ost = a.o.st, gost = a.go.st;
  const int64_t gqst = a.gq.st, gkst = a.gk.st, gvst = a.gv.st;
  const T* q = a.q.head(bh, a.H);
  const T* k = a.k.head(bh, a.H);
  const T* v = a.v.head(bh, a.H);
  const T* o = a.o.head(bh, a.H);
  const T* go = a.go.head(bh, a.H);
  const T* lse = a.lse + bh * Tq;
  const uint8_t* pad = a.mask ? a.mask + b * Tk : nullptr;
  T* gq = a.gq.head(bh, a.H);
  T* gk = a.gk.head(bh, a.H);
  T* gv = a.gv.head(bh, a.H);
  const int64_t off = Tk - Tq;
  const T scale = a.scale;

  T* Di = ws;
  T* qs = Di + Tq;
  T* kt = qs + kBq * D;
  T* vt = kt + D * kBk;
  T* P = vt + D * kBk;
  T* dP = P + kBq * kBk;
  T* dk = dP + kBq * kBk;
  T* dv = dk + kBk * D;
  for (int64_t i = 0; i < Tq; i++) {
    T s = 0;
    for (int64_t d = 0; d < D; d++) s += go[i * gost + d] * o[i * ost + d];
    Di[i] = s;
  }
  for (int64_t i = 0; i < Tq; i++)
    for (int64_t d = 0; d < D; d++) gq[i * gqst + d] = 0;
  for (int64_t k0 = 0; k0 < Tk; k0 += kBk) {
    const int64_t nk = std::min(kBk, Tk - k0);
    for (int64_t i = 0; i < kBk * D; i++) {
      dk[i] = 0;
      dv[i] = 0;
    }
    load_transposed(k + k0 * kst, kst, nk, D, kt);
    load_transposed(v + k0 * vst, vst, nk, D, vt);
    // the first query that sees key k0 under the causal mask: i + off >= k0
    const int64_t qstart = a.causal ? std::max<int64_t>(0, k0 - off) : 0;
    for (int64_t q0 = qstart; q0 < Tq; q0 += kBq) {
      const int64_t nq = std::min(kBq, Tq - q0);
      for (int64_t i = 0; i < nq; i++)
        for (int64_t d = 0; d < D; d++) qs[i * D + d] = q[(q0 + i) * qst + d] * scale;
      tile_products(qs, D, kt, nq, D, P);
      mask_tile(P, nq, nk, q0, k0, off, a.causal, pad ? pad + k0 : nullptr);
      tile_products(go + q0 * gost, gost, vt, nq, D, dP);
      for (int64_t i = 0; i < nq; i++) {
        T* p = P + i * kBk;
        T* dp = dP + i * kBk;
        const T L = lse[q0 + i];
        if (L == kNegInf<T>) {  // the row saw no key: no gradient
          for (int64_t j = 0; j < kBk; j++) p[j] = dp[j] = 0;
          continue;
        }
        const T di = Di[q0 + i];
        for (int64_t j = 0; j < kBk; j++) {
          const T pj = cpu::m_exp(p[j] - L);
          p[j] = pj;
          dp[j] = pj * (dp[j] - di);  // dS
        }
      }
      // dQ_i += scale dS_i K_j
      // (under the causal mask, the products with the scores known to be 0 are left out)
      // (four rows at a time over the keys the furthest-seeing of them sees: dS is 0 past a
      // row's own limit)
      auto seen = [&](int64_t i) { return a.causal ? std::min(nk, q0 + i + off - k0 + 1) : nk; };
      int64_t i = 0;
      for (; i + 4 <= nq; i += 4) {
        const int64_t n = seen(i + 3);
        T* outs[4] = {gq + (q0 + i) * gqst, gq + (q0 + i + 1) * gqst, gq + (q0 + i + 2) * gqst,
                      gq + (q0 + i + 3) * gqst};
        const T* coefs[4] = {dP + i * kBk, dP + (i + 1) * kBk, dP + (i + 2) * kBk, dP + (i + 3) * kBk};
        if (n > 0) axpy_rows4<T, DC>(outs, coefs, 1, k + k0 * kst, kst, n, D, scale);
      }
      for (; i < nq; i++) {
        const int64_t n = seen(i);
        if (n > 0)
          axpy_rows<T, DC>(gq + (q0 + i) * gqst, dP + i * kBk, 1, k + k0 * kst, kst, n, D, scale);
      }
      // dV_j += P^T dO_i; dK_j += scale dS^T Q_i (qs is already scaled)
      // (four keys at a time from the first row that sees the first of them: P and dS are 0
      // before a key's own first row)
      auto first_row = [&](int64_t j) { return a.causal ? std::clamp<int64_t>(k0 + j - off - q0, 0, nq) : int64_t(0); };
      int64_t j = 0;
      for (; j + 4 <= nk; j += 4) {
        const int64_t r0 = first_row(j);
        if (r0 >= nq) continue;
        T* dvs[4] = {dv + j * D, dv + (j + 1) * D, dv + (j + 2) * D, dv + (j + 3) * D};
        T* dks[4] = {dk + j * D, dk + (j + 1) * D, dk + (j + 2) * D, dk + (j + 3) * D};
        const T* ps[4] = {P + r0 * kBk + j, P + r0 * kBk + j + 1, P + r0 * kBk + j + 2, P + r0 * kBk + j + 3};
        const T* dss[4] = {dP + r0 * kBk + j, dP + r0 * kBk + j + 1, dP + r0 * kBk + j + 2,
                           dP + r0 * kBk + j + 3};
        axpy_rows4<T, DC>(dvs, ps, kBk, go + (q0 + r0) * gost, gost, nq - r0, D, T(1));
        axpy_rows4<T, DC>(dks, dss, kBk, qs + r0 * D, D, nq - r0, D, T(1));
      }
      for (; j < nk; j++) {
        const int64_t r0 = first_row(j);
        axpy_rows<T, DC>(dv + j * D, P + r0 * kBk + j, kBk, go + (q0 + r0) * gost, gost, nq - r0,
                         D, T(1));
        axpy_rows<T, DC>(dk + j * D, dP + r0 * kBk + j, kBk, qs + r0 * D, D, nq - r0, D, T(1));
      }
    }
    for (int64_t j = 0; j < nk; j++)
      for (int64_t d = 0; d < D; d++) {
        gk[(k0 + j) * gkst + d] = dk[j * D + d];
        gv[(k0 + j) * gvst + d] = dv[j * D + d];
      }
  }
}

// Runs fn.template operator()<DC>() with DC = D for the sizes compiled specially, else 0.
#define MOX_ATTN_DISPATCH_D(D, CALL) \
  switch (D) {                         \
    case 16: CALL(16); break;          \
    case 32: CALL(32); break;          \
    case 64: CALL(64); break;          \
    default: CALL(0); break;           \
  }

MOX_SIMD void fwd_items_f32(const AttnArgs<float>& a, int64_t i0, int64_t i1) {
  // Every part of the workspace is written before it is read: no zero fill (decoding calls
  // this once per layer and token).
  std::unique_ptr<float[]> ws(new float[size_t(fwd_workspace<float>(a.D))]);
#define MOX_ATTN_FWD(DC) \
  for (int64_t it = i0; it < i1; it++) fwd_item<float, DC>(a, it, ws.get())
  MOX_ATTN_DISPATCH_D(a.D, MOX_ATTN_FWD)
}
void fwd_items(const AttnArgs<float>& a, int64_t i0, int64_t i1) { fwd_items_f32(a, i0, i1); }
void fwd_items(const AttnArgs<double>& a, int64_t i0, int64_t i1) {
  std::vector<double> ws(fwd_workspace<double>(a.D));
  for (int64_t it = i0; it < i1; it++) fwd_item<double, 0>(a, it, ws.data());
}

MOX_SIMD void bwd_heads_f32(const AttnArgs<float>& a, int64_t i0, int64_t i1) {
  std::vector<float> ws(bwd_workspace<float>(a.Tq, a.D));
#define MOX_ATTN_BWD(DC) \
  for (int64_t it = i0; it < i1; it++) bwd_head<float, DC>(a, it, ws.data())
  MOX_ATTN_DISPATCH_D(a.D, MOX_ATTN_BWD)
}
void bwd_heads(const AttnArgs<float>& a, int64_t i0, int64_t i1) { bwd_heads_f32(a, i0, i1); }
void bwd_heads(const AttnArgs<double>& a, int64_t i0, int64_t i1) {
  std::vector<double> ws(bwd_workspace<double>(a.Tq, a.D));
  for (int64_t it = i0; it < i1; it++) bwd_head<double, 0>(a, it, ws.data());
}
#undef MOX_ATTN_FWD
#undef MOX_ATTN_BWD
#undef MOX_ATTN_DISPATCH_D

// Splits items [0, n) into one static block per thread; fn(i0, i1). work: about the
// multiply-adds of the whole call; small calls (decoding steps, gradient tests) stay on
// one thread, where starting a parallel region would cost more than it saves.
template <typename Fn> void parallel_items(int64_t n, int64_t work, Fn&& fn) {
  const int64_t max_t = work < (int64_t(1) << 18) ? 1 : omp_get_max_threads();
  const int nt = static_cast<int>(std::min<int64_t>(max_t, n));
  if (nt <= 1) {
    fn(int64_t(0), n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
    fn(n * t / T_, n * (t + 1) / T_);
  }
}

bool contiguous_or_empty(const Tensor& t) { return t.numel() == 0 || t.is_contiguous(); }

// The kernels need each position's D values contiguous (stride 1 in the last dim).
bool rows_contiguous(const Tensor& t) { return t.numel() == 0 || t.size(3) == 1 || t.stride(3) == 1; }

void check_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& mask, const std::vector<const Tensor*>& outs) {
  if (q.dtype() != DType::F32 && q.dtype() != DType::F64)
    throw Error(op, "CPU kernel supports f32 and f64, got q " + q.desc());
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    throw Error(op, "expects 4-D q, k, v, got " + q.desc() + ", " + k.desc() + ", " + v.desc());
  for (const Tensor* t : {&k, &v})
    if (t->dtype() != q.dtype() || !rows_contiguous(*t) || t->shape() != k.shape())
      throw Error(op, "k and v must be " + std::string(dtype_name(q.dtype())) +
                          " tensors of one shape with unit stride in D, got " + k.desc() + ", " +
                          v.desc());
  if (!rows_contiguous(q)) throw Error(op, "expects unit stride in q's last dim, got " + q.desc());
  if (k.size(0) != q.size(0) || k.size(1) != q.size(1) || k.size(3) != q.size(3))
    throw Error(op, "k " + k.desc() + " does not match q " + q.desc());
  if (mask.defined() && (mask.dtype() != DType::U8 || !contiguous_or_empty(mask) || mask.dim() != 2 ||
                         mask.size(0) != q.size(0) || mask.size(1) != k.size(2)))
    throw Error(op, "key_padding_mask must be a contiguous u8 [B, Tk] tensor, got " + mask.desc());
  for (const Tensor* t : outs)
    if (t->dtype() != q.dtype() || (t->dim() == 4 ? !rows_contiguous(*t) : !contiguous_or_empty(*t)))
      throw Error(op, "output " + t->desc() + " must be " + std::string(dtype_name(q.dtype())) +
                          (t->dim() == 4 ? " with unit stride in D" : " and contiguous"));
}

template <typename T> Rows<T> rows_of(const Tensor& t) {
  return {const_cast<T*>(t.data<T>()), t.stride(0), t.stride(1), t.stride(2)};
}

template <typename T>
AttnArgs<T> make_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                      bool causal, double scale) {
  AttnArgs<T> a{};
  a.q = rows_of<T>(q);
  a.k = rows_of<T>(k);
  a.v = rows_of<T>(v);
  a.mask = mask.defined() ? mask.data<uint8_t>() : nullptr;
  a.B = q.size(0);
  a.H = q.size(1);
  a.Tq = q.size(2);
  a.Tk = k.size(2);
  a.D = q.size(3);
  a.causal = causal;
  a.scale = static_cast<T>(scale);
  return a;
}

template <typename T>
void attention_t(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                 bool causal, double scale, const Tensor& out, const Tensor& lse) {
  AttnArgs<T> a = make_args<T>(q, k, v, mask, causal, scale);
  a.o = rows_of<T>(out);
  a.lse = lse.data<T>();
  const int64_t items = a.B * a.H * ((a.Tq + kBq - 1) / kBq);
  parallel_items(items, a.B * a.H * a.Tq * a.Tk * a.D,
                 [&](int64_t i0, int64_t i1) { fwd_items(a, i0, i1); });
}

template <typename T>
void attention_backward_t(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                          bool causal, double scale, const Tensor& out, const Tensor& lse,
                          const Tensor& gout, const Tensor& gq, const Tensor& gk,
                          const Tensor& gv) {
  AttnArgs<T> a = make_args<T>(q, k, v, mask, causal, scale);
  a.o = rows_of<T>(out);
  a.lse = const_cast<T*>(lse.data<T>());
  a.go = rows_of<T>(gout);
  a.gq = rows_of<T>(gq);
  a.gk = rows_of<T>(gk);
  a.gv = rows_of<T>(gv);
  parallel_items(a.B * a.H, a.B * a.H * a.Tq * a.Tk * a.D,
                 [&](int64_t i0, int64_t i1) { bwd_heads(a, i0, i1); });
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& key_padding_mask, bool causal, double scale,
                           const Tensor& out, const Tensor& lse) {
  const char* op = "attention";
  check_args(op, q, k, v, key_padding_mask, {&out, &lse});
  if (out.shape() != q.shape() || lse.numel() != q.size(0) * q.size(1) * q.size(2))
    throw Error(op, "out " + out.desc() + " / lse " + lse.desc() + " do not match q " + q.desc());
  if (out.numel() == 0) return;
  if (q.dtype() == DType::F32)
    attention_t<float>(q, k, v, key_padding_mask, causal, scale, out, lse);
  else
    attention_t<double>(q, k, v, key_padding_mask, causal, scale, out, lse);
}

void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_padding_mask, bool causal, double scale,
                                    const Tensor& out, const Tensor& lse, const Tensor& gout,
                                    const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  const char* op = "attention_backward";
  check_args(op, q, k, v, key_padding_mask, {&out, &lse, &gout, &gq, &gk, &gv});
  if (out.shape() != q.shape() || gout.shape() != q.shape() || gq.shape() != q.shape() ||
      gk.shape() != k.shape() || gv.shape() != v.shape() ||
      lse.numel() != q.size(0) * q.size(1) * q.size(2))
    throw Error(op, "gradient shapes do not match q " + q.desc() + " / k " + k.desc());
  if (gq.numel() == 0 && gk.numel() == 0) return;
  if (q.dtype() == DType::F32)
    attention_backward_t<float>(q, k, v, key_padding_mask, causal, scale, out, lse, gout, gq,
                                gk, gv);
  else
    attention_backward_t<double>(q, k, v, key_padding_mask, causal, scale, out, lse, gout, gq,
                                 gk, gv);
}

}  // namespace mox
