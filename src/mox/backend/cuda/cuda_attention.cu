// Fused scaled dot-product attention on the GPU: CudaBackend::attention and
// CudaBackend::attention_backward, with the semantics of backend.h and of the CPU reference
// (cpu/cpu_attention.cpp): q [B,H,Tq,D], k/v [B,H,Tk,D] strided views with unit stride in D,
// optional u8 key padding mask [B,Tk] (nonzero = hidden key), causal with the KV-cache
// convention (query i of Tq sees keys 0 .. Tk-Tq+i), out [B,H,Tq,D] (strided view),
// lse [B,H,Tq] contiguous (f32, or q's dtype), -inf for a row that sees no key (its output
// and its gradients are 0).
//
// Two implementations:
//
// (1) SIMT flash kernels (every dtype, any D <= 256; the parity path for f32/f64, computing
//     in f32 (f64 for f64)). Forward: a block of 4 warps owns 16 query rows (4 per warp) and
//     walks key tiles of 32 keys staged in shared memory. Scores: lane j computes the dot
//     products of key j of the tile with the warp's 4 query rows; the online softmax
//     (running max m, running sum l) uses warp reductions; then lane d accumulates
//     sum_j p_j V[j][d] (p_j broadcast by shuffles) for its dims d = lane + 32c.
//     Backward (FlashAttention-2, P recomputed per tile from lse): a row kernel computes
//     D_i = rowsum(dO_i * O_i); a dQ kernel shaped like the forward (lane j: S_ij and
//     dP_ij = dO_i . V_j, dS = P (dP - D_i); lane d: dQ_i[d] += dS_ij K_j[d]); a dK/dV kernel
//     with the roles swapped (a warp owns 4 keys, lane i is a query of a 32-query tile:
//     dV_j += P_ij dO_i, dK_j += dS_ij scale q_i). No atomics: deterministic.
//
// (2) Tensor-core kernels for bf16/f16 with D in {64, 128} (and 16-byte aligned operands,
//     which the q/k/v column blocks of a [B,T,3C] projection are whenever C % 8 == 0):
//     FlashAttention-2 with mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16} (inline PTX),
//     f32 accumulators, online softmax in f32. Forward: 4 warps x 16 query rows = 64 queries
//     per block, key tiles of 64 staged in shared memory (plain 16-byte loads), key tiles
//     past the causal limit of the block's last query skipped. Backward: one block per tile
//     of 64 keys (16 per warp), dK and dV held in registers while looping over query tiles
//     of 32 (starting at the first query that can see the tile under the causal mask); dQ
//     partial products are added with f32 atomicAdd into an f32 scratch buffer
//     (cuda::workspace), then scaled and converted into gq by a last kernel.
//     These kernels handle Tq != Tk (decode), padding masks and fully masked rows
//     themselves; the SIMT path takes every other case (other D, f32/f64, misaligned views).
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"), with
// g = lane >> 2 (groupID) and t = lane & 3 (threadID_in_group); each .b32 register holds two
// 16-bit elements, the lower column/k index in the lower half:
//   A (16x16, row-major) a0..a3: a0 = A[g][2t..2t+1], a1 = A[g+8][2t..2t+1],
//                                a2 = A[g][2t+8..2t+9], a3 = A[g+8][2t+8..2t+9]
//   B (16x8, "col", indexed B[k][n]) b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C/D (16x8, f32) c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
// So the C fragments of two adjacent 16x8 score blocks (columns 0-7 and 8-15 of a 16-wide
// chunk) are, packed in pairs, exactly the A fragment of that 16x16 chunk (P or dS as the
// left operand of the next product): a0 = (c0,c1) of block 0, a1 = (c2,c3) of block 0,
// a2 = (c0,c1) of block 1, a3 = (c2,c3) of block 1.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/cuda/cuda_common.cuh"

namespace mox {

namespace {

using cuda::compute_t;
using cuda::load;
using cuda::store;

// ---------------------------------------------------------------------------------------
// Operands.

// A [B, H, T, D] operand with unit stride in D: row t of head (b, h) starts at
// p + b*sb + h*sh + t*st elements.
struct Rows4 {
  char* p = nullptr;
  int64_t sb = 0, sh = 0, st = 0;
};

template <typename T> __device__ __forceinline__ T* rowp(const Rows4& r, int b, int h, int t) {
  return reinterpret_cast<T*>(r.p) + int64_t(b) * r.sb + int64_t(h) * r.sh + int64_t(t) * r.st;
}

struct Params {
  Rows4 q, k, v, o, go, gq, gk, gv;
  const uint8_t* mask = nullptr;  // [B, Tk] contiguous or null
  void* lse = nullptr;            // [B*H*Tq] contiguous, f32 (lse_f32) or q's dtype
  bool lse_f32 = false;
  void* di = nullptr;       // backward: D_i = rowsum(dO * O), [B*H*Tq] of the compute type
  float* dq_acc = nullptr;  // tensor-core backward: f32 [B*H*Tq*D] dQ / scale accumulator
  int B = 0, H = 0, Tq = 0, Tk = 0, D = 0;
  int off = 0;  // Tk - Tq: query i sees keys <= i + off under the causal mask
  bool causal = false;
  double scale = 1;
};

template <typename A> __device__ __forceinline__ A neg_inf() { return A(-INFINITY); }
__device__ __forceinline__ float fexp(float x) { return expf(x); }
__device__ __forceinline__ double fexp(double x) { return exp(x); }
__device__ __forceinline__ float flog(float x) { return logf(x); }
__device__ __forceinline__ double flog(double x) { return log(x); }

// lse[r] (row r = bh * Tq + i) in the compute type A, whatever lse's dtype.
template <typename T, typename A>
__device__ __forceinline__ A load_lse(const Params& p, int64_t r) {
  return p.lse_f32 ? A(static_cast<const float*>(p.lse)[r])
                   : A(load(static_cast<const T*>(p.lse) + r));
}
template <typename T, typename A>
__device__ __forceinline__ void store_lse(const Params& p, int64_t r, A v) {
  if (p.lse_f32)
    static_cast<float*>(p.lse)[r] = float(v);
  else
    store(static_cast<T*>(p.lse) + r, v);
}

// Whether key j (0 <= j < Tk) of batch b may be seen by anyone (not padding).
__device__ __forceinline__ bool key_ok(const Params& p, int b, int j) {
  return j < p.Tk && !(p.mask && p.mask[int64_t(b) * p.Tk + j]);
}
// The causal condition for query i and key j.
__device__ __forceinline__ bool causal_ok(const Params& p, int i, int j) {
  return !p.causal || j <= i + p.off;
}

// =======================================================================================
// (1) SIMT kernels.

constexpr int kSimtWarps = 4;
constexpr int kSimtThreads = 32 * kSimtWarps;
constexpr int kSimtR = 4;                       // rows (queries or keys) per warp
constexpr int kSimtRows = kSimtWarps * kSimtR;  // 16 rows per block
constexpr int kSimtTile = 32;                   // keys (or queries) per streamed tile: one per lane

// Shared memory of the SIMT kernels, in elements of A (sizes are multiples of 2 elements so
// that every array stays 8-byte aligned). ld = D + 1 pads the streamed tiles so that lane j
// reading row j hits bank (j + d) % 32.
inline size_t simt_fwd_smem(int D, size_t a) {
  return a * (2 * size_t(kSimtTile) * (D + 1) + size_t(kSimtRows) * D) + sizeof(int) * kSimtTile;
}
inline size_t simt_dq_smem(int D, size_t a) {
  return a * (2 * size_t(kSimtTile) * (D + 1) + 2 * size_t(kSimtRows) * D) +
         sizeof(int) * kSimtTile;
}
inline size_t simt_dkv_smem(int D, size_t a) {
  return a * (2 * size_t(kSimtRows) * D + 2 * size_t(kSimtTile) * (D + 1) + 2 * kSimtTile);
}

// Forward. Block: (bh, tile of 16 queries); warp w owns queries q0 + 4w .. q0 + 4w + 3.
// NC: dims per lane (D <= 32 * NC); lane owns d = lane + 32 c, c < NC.
template <typename T, typename A, int NC> __global__ void __launch_bounds__(kSimtThreads)
    simt_fwd_kernel(Params p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int D = p.D, ld = D + 1, Tq = p.Tq, Tk = p.Tk;
  A* Ks = reinterpret_cast<A*>(smem_raw);                  // [32][ld]
  A* Vs = Ks + kSimtTile * ld;                             // [32][ld]
  A* Qs = Vs + kSimtTile * ld;                             // [16][D], pre-scaled
  int* kvis = reinterpret_cast<int*>(Qs + kSimtRows * D);  // [32]: key usable

  const int nqt = (Tq + kSimtRows - 1) / kSimtRows;
  const int bh = int(blockIdx.x / nqt), q0 = int(blockIdx.x % nqt) * kSimtRows;
  const int b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const A scale = A(p.scale);

  for (int idx = threadIdx.x; idx < kSimtRows * D; idx += kSimtThreads) {
    const int r = idx / D, d = idx % D, i = q0 + r;
    Qs[idx] = i < Tq ? A(load(rowp<const T>(p.q, b, h, i) + d)) * scale : A(0);
  }
  A m[kSimtR], l[kSimtR], acc[kSimtR][NC];
#pragma unroll
  for (int r = 0; r < kSimtR; r++) {
    m[r] = neg_inf<A>();
    l[r] = 0;
#pragma unroll
    for (int c = 0; c < NC; c++) acc[r][c] = 0;
  }
  const int row0 = warp * kSimtR;  // the warp's first row within the block
  // keys past the causal limit of the block's last query are invisible to the whole block
  const int kend = p.causal ? min(Tk, q0 + kSimtRows + p.off) : Tk;
  for (int k0 = 0; k0 < kend; k0 += kSimtTile) {
    __syncthreads();  // Qs written (first tile); the previous tile fully consumed
    for (int idx = threadIdx.x; idx < kSimtTile * D; idx += kSimtThreads) {
      const int j = idx / D, d = idx % D;
      const bool in = k0 + j < Tk;
      Ks[j * ld + d] = in ? A(load(rowp<const T>(p.k, b, h, k0 + j) + d)) : A(0);
      Vs[j * ld + d] = in ? A(load(rowp<const T>(p.v, b, h, k0 + j) + d)) : A(0);
    }
    if (threadIdx.x < kSimtTile) kvis[threadIdx.x] = key_ok(p, b, k0 + threadIdx.x);
    __syncthreads();

    // scores of key j = k0 + lane against the warp's rows
    A s[kSimtR];
#pragma unroll
    for (int r = 0; r < kSimtR; r++) s[r] = 0;
    const A* kr = Ks + lane * ld;
    for (int d = 0; d < D; d++) {
      const A kd = kr[d];
#pragma unroll
      for (int r = 0; r < kSimtR; r++) s[r] += Qs[(row0 + r) * D + d] * kd;
    }
    const int j = k0 + lane;
    A pr[kSimtR];
#pragma unroll
    for (int r = 0; r < kSimtR; r++) {
      const int i = q0 + row0 + r;
      const bool vis = kvis[lane] && i < Tq && causal_ok(p, i, j);
      const A sv = vis ? s[r] : neg_inf<A>();
      const A mnew = max(m[r], cuda::warp_max(sv));  // uniform over the warp
      if (mnew == neg_inf<A>()) {                    // nothing visible to this row yet: weights 0
        pr[r] = 0;
        continue;
      }
      const A c = fexp(m[r] - mnew);  // 0 while m[r] is -inf
      const A pj = fexp(sv - mnew);   // 0 for hidden keys
      l[r] = l[r] * c + cuda::warp_sum(pj);
      m[r] = mnew;
#pragma unroll
      for (int cc = 0; cc < NC; cc++) acc[r][cc] *= c;
      pr[r] = pj;
    }
    // acc_r[d] += sum_jj p_r[jj] V[jj][d]
    const int nk = min(kSimtTile, kend - k0);
    for (int jj = 0; jj < nk; jj++) {
      A pj[kSimtR];
#pragma unroll
      for (int r = 0; r < kSimtR; r++) pj[r] = __shfl_sync(0xffffffffu, pr[r], jj);
#pragma unroll
      for (int cc = 0; cc < NC; cc++) {
        const int d = lane + 32 * cc;
        if (d < D) {
          const A vv = Vs[jj * ld + d];
#pragma unroll
          for (int r = 0; r < kSimtR; r++) acc[r][cc] += pj[r] * vv;
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kSimtR; r++) {
    const int i = q0 + row0 + r;
    if (i >= Tq) continue;
    T* o = rowp<T>(p.o, b, h, i);
    const bool any = l[r] > A(0);
    const A inv = any ? A(1) / l[r] : A(0);
#pragma unroll
    for (int cc = 0; cc < NC; cc++) {
      const int d = lane + 32 * cc;
      if (d < D) store(o + d, any ? acc[r][cc] * inv : A(0));
    }
    if (lane == 0) store_lse<T, A>(p, int64_t(bh) * Tq + i, any ? m[r] + flog(l[r]) : neg_inf<A>());
  }
}

// D_i = sum_d dO[i][d] * O[i][d], one warp per row (bh, i), into p.di (type A).
template <typename T, typename A> __global__ void __launch_bounds__(256) attn_di_kernel(Params p) {
  const int64_t rows = int64_t(p.B) * p.H * p.Tq;
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += warps) {
    const int bh = int(r / p.Tq), i = int(r % p.Tq), b = bh / p.H, h = bh % p.H;
    const T* go = rowp<const T>(p.go, b, h, i);
    const T* o = rowp<const T>(p.o, b, h, i);
    A s = 0;
    for (int d = lane; d < p.D; d += 32) s += A(load(go + d)) * A(load(o + d));
    s = cuda::warp_sum(s);
    if (lane == 0) static_cast<A*>(p.di)[r] = s;
  }
}

// dQ. Block: (bh, tile of 16 queries), laid out like the forward. Per key tile: lane j
// computes S_ij = scale q_i . k_j and dP_ij = dO_i . v_j for the warp's rows i,
// P = exp(S - lse_i), dS = P (dP - D_i); then lane d accumulates dQ_i[d] += dS_ij k_j[d].
// gq = scale * dQ, every row written (0 for rows that see no key).
template <typename T, typename A, int NC> __global__ void __launch_bounds__(kSimtThreads)
    simt_dq_kernel(Params p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int D = p.D, ld = D + 1, Tq = p.Tq, Tk = p.Tk;
  A* Ks = reinterpret_cast<A*>(smem_raw);  // [32][ld]
  A* Vs = Ks + kSimtTile * ld;             // [32][ld]
  A* Qs = Vs + kSimtTile * ld;             // [16][D], pre-scaled
  A* Gs = Qs + kSimtRows * D;              // [16][D], dO
  int* kvis = reinterpret_cast<int*>(Gs + kSimtRows * D);

  const int nqt = (Tq + kSimtRows - 1) / kSimtRows;
  const int bh = int(blockIdx.x / nqt), q0 = int(blockIdx.x % nqt) * kSimtRows;
  const int b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const A scale = A(p.scale);
  const A* di = static_cast<const A*>(p.di);

  for (int idx = threadIdx.x; idx < kSimtRows * D; idx += kSimtThreads) {
    const int r = idx / D, d = idx % D, i = q0 + r;
    Qs[idx] = i < Tq ? A(load(rowp<const T>(p.q, b, h, i) + d)) * scale : A(0);
    Gs[idx] = i < Tq ? A(load(rowp<const T>(p.go, b, h, i) + d)) : A(0);
  }
  const int row0 = warp * kSimtR;
  A L[kSimtR], Di[kSimtR], dq[kSimtR][NC];
#pragma unroll
  for (int r = 0; r < kSimtR; r++) {
    const int i = q0 + row0 + r;
    L[r] = i < Tq ? load_lse<T, A>(p, int64_t(bh) * Tq + i) : neg_inf<A>();
    Di[r] = i < Tq ? di[int64_t(bh) * Tq + i] : A(0);
#pragma unroll
    for (int c = 0; c < NC; c++) dq[r][c] = 0;
  }
  const int kend = p.causal ? min(Tk, q0 + kSimtRows + p.off) : Tk;
  for (int k0 = 0; k0 < kend; k0 += kSimtTile) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < kSimtTile * D; idx += kSimtThreads) {
      const int j = idx / D, d = idx % D;
      const bool in = k0 + j < Tk;
      Ks[j * ld + d] = in ? A(load(rowp<const T>(p.k, b, h, k0 + j) + d)) : A(0);
      Vs[j * ld + d] = in ? A(load(rowp<const T>(p.v, b, h, k0 + j) + d)) : A(0);
    }
    if (threadIdx.x < kSimtTile) kvis[threadIdx.x] = key_ok(p, b, k0 + threadIdx.x);
    __syncthreads();

    A s[kSimtR], dp[kSimtR];
#pragma unroll
    for (int r = 0; r < kSimtR; r++) s[r] = dp[r] = 0;
    const A* kr = Ks + lane * ld;
    const A* vr = Vs + lane * ld;
    for (int d = 0; d < D; d++) {
      const A kd = kr[d], vd = vr[d];
#pragma unroll
      for (int r = 0; r < kSimtR; r++) {
        s[r] += Qs[(row0 + r) * D + d] * kd;
        dp[r] += Gs[(row0 + r) * D + d] * vd;
      }
    }
    const int j = k0 + lane;
    A ds[kSimtR];
#pragma unroll
    for (int r = 0; r < kSimtR; r++) {
      const int i = q0 + row0 + r;
      const bool vis = kvis[lane] && i < Tq && causal_ok(p, i, j) && L[r] != neg_inf<A>();
      const A pv = vis ? fexp(s[r] - L[r]) : A(0);
      ds[r] = pv * (dp[r] - Di[r]);
    }
    const int nk = min(kSimtTile, kend - k0);
    for (int jj = 0; jj < nk; jj++) {
      A dj[kSimtR];
#pragma unroll
      for (int r = 0; r < kSimtR; r++) dj[r] = __shfl_sync(0xffffffffu, ds[r], jj);
#pragma unroll
      for (int cc = 0; cc < NC; cc++) {
        const int d = lane + 32 * cc;
        if (d < D) {
          const A kv = Ks[jj * ld + d];
#pragma unroll
          for (int r = 0; r < kSimtR; r++) dq[r][cc] += dj[r] * kv;
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kSimtR; r++) {
    const int i = q0 + row0 + r;
    if (i >= Tq) continue;
    T* g = rowp<T>(p.gq, b, h, i);
#pragma unroll
    for (int cc = 0; cc < NC; cc++) {
      const int d = lane + 32 * cc;
      if (d < D) store(g + d, dq[r][cc] * scale);
    }
  }
}

// dK and dV. Block: (bh, tile of 16 keys); warp w owns keys k0 + 4w .. k0 + 4w + 3. Query
// tiles of 32 are streamed through shared memory from the first query that can see key k0;
// lane i computes S_ij and dP_ij for query i0 + lane and the warp's keys, then lane d
// accumulates dV_j[d] += P_ij dO_i[d] and dK_j[d] += dS_ij (scale q_i)[d]. Every key j < Tk
// is written (0 when no query sees it).
template <typename T, typename A, int NC> __global__ void __launch_bounds__(kSimtThreads)
    simt_dkv_kernel(Params p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int D = p.D, ld = D + 1, Tq = p.Tq, Tk = p.Tk;
  A* Kw = reinterpret_cast<A*>(smem_raw);  // [16][D], the block's keys
  A* Vw = Kw + kSimtRows * D;              // [16][D]
  A* Qs = Vw + kSimtRows * D;              // [32][ld], pre-scaled queries
  A* Gs = Qs + kSimtTile * ld;             // [32][ld], dO
  A* Ls = Gs + kSimtTile * ld;             // [32] lse
  A* Ds = Ls + kSimtTile;                  // [32] D_i

  const int nkt = (Tk + kSimtRows - 1) / kSimtRows;
  const int bh = int(blockIdx.x / nkt), k0 = int(blockIdx.x % nkt) * kSimtRows;
  const int b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const A scale = A(p.scale);
  const A* di = static_cast<const A*>(p.di);

  for (int idx = threadIdx.x; idx < kSimtRows * D; idx += kSimtThreads) {
    const int r = idx / D, d = idx % D, j = k0 + r;
    Kw[idx] = j < Tk ? A(load(rowp<const T>(p.k, b, h, j) + d)) : A(0);
    Vw[idx] = j < Tk ? A(load(rowp<const T>(p.v, b, h, j) + d)) : A(0);
  }
  const int row0 = warp * kSimtR;
  bool kok[kSimtR];
  A dk[kSimtR][NC], dv[kSimtR][NC];
#pragma unroll
  for (int r = 0; r < kSimtR; r++) {
    kok[r] = key_ok(p, b, k0 + row0 + r);
#pragma unroll
    for (int c = 0; c < NC; c++) dk[r][c] = dv[r][c] = 0;
  }
  // the first query that sees key k0 under the causal mask: i + off >= k0
  const int qstart = p.causal ? max(0, k0 - p.off) : 0;
  for (int i0 = qstart; i0 < Tq; i0 += kSimtTile) {
    __syncthreads();  // Kw/Vw written (first tile); the previous query tile consumed
    for (int idx = threadIdx.x; idx < kSimtTile * D; idx += kSimtThreads) {
      const int r = idx / D, d = idx % D, i = i0 + r;
      const bool in = i < Tq;
      Qs[r * ld + d] = in ? A(load(rowp<const T>(p.q, b, h, i) + d)) * scale : A(0);
      Gs[r * ld + d] = in ? A(load(rowp<const T>(p.go, b, h, i) + d)) : A(0);
    }
    if (threadIdx.x < kSimtTile) {
      const int i = i0 + threadIdx.x;
      Ls[threadIdx.x] = i < Tq ? load_lse<T, A>(p, int64_t(bh) * Tq + i) : neg_inf<A>();
      Ds[threadIdx.x] = i < Tq ? di[int64_t(bh) * Tq + i] : A(0);
    }
    __syncthreads();

    // lane: query i = i0 + lane against the warp's keys
    A s[kSimtR], dp[kSimtR];
#pragma unroll
    for (int r = 0; r < kSimtR; r++) s[r] = dp[r] = 0;
    const A* qr = Qs + lane * ld;
    const A* gr = Gs + lane * ld;
    for (int d = 0; d < D; d++) {
      const A qd = qr[d], gd = gr[d];
#pragma unroll
      for (int r = 0; r < kSimtR; r++) {
        s[r] += qd * Kw[(row0 + r) * D + d];
        dp[r] += gd * Vw[(row0 + r) * D + d];
      }
    }
    const int i = i0 + lane;
    const A L = Ls[lane], Di = Ds[lane];
    A pv[kSimtR], ds[kSimtR];
#pragma unroll
    for (int r = 0; r < kSimtR; r++) {
      const int j = k0 + row0 + r;
      const bool vis = kok[r] && i < Tq && causal_ok(p, i, j) && L != neg_inf<A>();
      pv[r] = vis ? fexp(s[r] - L) : A(0);
      ds[r] = pv[r] * (dp[r] - Di);
    }
    const int nq = min(kSimtTile, Tq - i0);
    for (int ii = 0; ii < nq; ii++) {
      A pj[kSimtR], dj[kSimtR];
#pragma unroll
      for (int r = 0; r < kSimtR; r++) {
        pj[r] = __shfl_sync(0xffffffffu, pv[r], ii);
        dj[r] = __shfl_sync(0xffffffffu, ds[r], ii);
      }
#pragma unroll
      for (int cc = 0; cc < NC; cc++) {
        const int d = lane + 32 * cc;
        if (d < D) {
          const A gv = Gs[ii * ld + d], qv = Qs[ii * ld + d];
#pragma unroll
          for (int r = 0; r < kSimtR; r++) {
            dv[r][cc] += pj[r] * gv;
            dk[r][cc] += dj[r] * qv;
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kSimtR; r++) {
    const int j = k0 + row0 + r;
    if (j >= Tk) continue;
    T* gk = rowp<T>(p.gk, b, h, j);
    T* gv = rowp<T>(p.gv, b, h, j);
#pragma unroll
    for (int cc = 0; cc < NC; cc++) {
      const int d = lane + 32 * cc;
      if (d < D) {
        store(gk + d, dk[r][cc]);
        store(gv + d, dv[r][cc]);
      }
    }
  }
}

// =======================================================================================
// (2) Tensor-core kernels (bf16 / f16, D = 64 or 128).

template <typename T> struct Half;
template <> struct Half<__nv_bfloat16> {
  // c += a * b, a 16x16 (row), b 16x8 (col), f32 accumulators
  static __device__ __forceinline__ void mma(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  // two floats rounded into one register: lo in bits 0-15, hi in bits 16-31
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ uint16_t bits(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
  }
};
template <> struct Half<__half> {
  static __device__ __forceinline__ void mma(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ uint16_t bits(float x) {
    return __half_as_ushort(__float2half_rn(x));
  }
};

// Shared-memory tiles hold raw 16-bit elements, rows kTcPad elements longer than D: the row
// pitch (D + 8) * 2 bytes is a multiple of 16 (16-byte stores stay aligned) and shifts each
// row by 4 banks, so the fragment loads below (8 rows g x 4 column pairs t) are
// conflict-free.
constexpr int kTcPad = 8;
constexpr int kTcWarps = 4;
constexpr int kTcThreads = 32 * kTcWarps;
constexpr int kTcFwdQ = 64;  // queries per forward block (16 per warp)
constexpr int kTcFwdK = 64;  // keys per forward tile
constexpr int kTcBwdK = 64;  // keys per backward block (16 per warp)
constexpr int kTcBwdQ = 32;  // queries per backward tile
constexpr int kTcDsLd = kTcBwdK + kTcPad;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Two consecutive 16-bit elements (the first at an even index) as one register.
__device__ __forceinline__ uint32_t ld2(const uint16_t* s) {
  return *reinterpret_cast<const uint32_t*>(s);
}
// Two 16-bit elements from different rows: lo in bits 0-15.
__device__ __forceinline__ uint32_t ld2x(const uint16_t* lo, const uint16_t* hi) {
  return uint32_t(*lo) | (uint32_t(*hi) << 16);
}

// Copies rows r0 .. r0 + n - 1 (rows >= limit are zero) of an operand into a [n][D + 8]
// tile with 16-byte loads (operand rows are 16-byte aligned: checked on the host).
template <int D> __device__ __forceinline__ void tc_load_tile(uint16_t* dst, const Rows4& src,
                                                              int b, int h, int r0, int n,
                                                              int limit) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int ld = D + kTcPad;
  for (int c = threadIdx.x; c < n * kChunks; c += kTcThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (r0 + r < limit)
      val = *reinterpret_cast<const uint4*>(rowp<const uint16_t>(src, b, h, r0 + r) + col);
    *reinterpret_cast<uint4*>(dst + r * ld + col) = val;
  }
}

// Forward. Block: (bh, tile of 64 queries); warp w owns queries q0 + 16w .. q0 + 16w + 15
// (its fragment rows g and g + 8 are queries qa = q0 + 16w + g and qb = qa + 8).
template <typename T, int D> __global__ void __launch_bounds__(kTcThreads) tc_fwd_kernel(Params p) {
  constexpr int ld = D + kTcPad;
  constexpr int KC = D / 16;       // 16-wide chunks of D (k of Q K^T)
  constexpr int ND = D / 8;        // 8-wide blocks of D (n of P V)
  constexpr int NS = kTcFwdK / 8;  // 8-wide key blocks of a score tile
  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem_raw);   // [64][ld]
  uint16_t* Ks = Qs + kTcFwdQ * ld;                       // [64][ld]
  uint16_t* Vs = Ks + kTcFwdK * ld;                       // [64][ld]
  int* kvis = reinterpret_cast<int*>(Vs + kTcFwdK * ld);  // [64]

  const int Tq = p.Tq, Tk = p.Tk;
  const int nqt = (Tq + kTcFwdQ - 1) / kTcFwdQ;
  const int bh = int(blockIdx.x / nqt), q0 = int(blockIdx.x % nqt) * kTcFwdQ;
  const int b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wr = warp * 16;  // the warp's first row in the tile
  const int qa = q0 + wr + g, qb = qa + 8;
  const float sl2 = float(p.scale) * kLog2e;  // scores in the log2 domain

  tc_load_tile<D>(Qs, p.q, b, h, q0, kTcFwdQ, Tq);
  __syncthreads();
  // A fragments of the warp's 16 query rows, all of D, kept in registers
  uint32_t qf[KC][4];
#pragma unroll
  for (int kc = 0; kc < KC; kc++) {
    qf[kc][0] = ld2(Qs + (wr + g) * ld + kc * 16 + 2 * t);
    qf[kc][1] = ld2(Qs + (wr + g + 8) * ld + kc * 16 + 2 * t);
    qf[kc][2] = ld2(Qs + (wr + g) * ld + kc * 16 + 8 + 2 * t);
    qf[kc][3] = ld2(Qs + (wr + g + 8) * ld + kc * 16 + 8 + 2 * t);
  }
  float o[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
  // running max (log2 domain) of rows qa (index 0) and qb (index 1), equal over the 4 lanes
  // of a group; running sums are this lane's partial sums (reduced over the group at the end)
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  const int kend = p.causal ? min(Tk, q0 + kTcFwdQ + p.off) : Tk;
  for (int k0 = 0; k0 < kend; k0 += kTcFwdK) {
    __syncthreads();  // the previous K/V tile fully consumed
    tc_load_tile<D>(Ks, p.k, b, h, k0, kTcFwdK, Tk);
    tc_load_tile<D>(Vs, p.v, b, h, k0, kTcFwdK, Tk);
    if (threadIdx.x < kTcFwdK) kvis[threadIdx.x] = key_ok(p, b, k0 + threadIdx.x);
    __syncthreads();

    // S = Q K^T: B[k = d][n = key] = K[key][d], so b0 = K[nb*8 + g][kc*16 + 2t .. +1]
    float s[NS][4];
#pragma unroll
    for (int nb = 0; nb < NS; nb++) {
      s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
      const uint16_t* kr = Ks + (nb * 8 + g) * ld + 2 * t;
#pragma unroll
      for (int kc = 0; kc < KC; kc++) {
        const uint32_t bf[2] = {ld2(kr + kc * 16), ld2(kr + kc * 16 + 8)};
        Half<T>::mma(s[nb], qf[kc], bf);
      }
    }
    // scale and mask: element e of block nb is (row e < 2 ? qa : qb, key nb*8 + 2t + (e&1))
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nb = 0; nb < NS; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int jl = nb * 8 + 2 * t + (e & 1);
        const int i = e < 2 ? qa : qb;
        const bool vis = kvis[jl] && causal_ok(p, i, k0 + jl);
        s[nb][e] = vis ? s[nb][e] * sl2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[nb][e]);
      }
    float alpha[2], muse[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
      // the row's 64 scores are spread over the 4 lanes of the group (lanes 4g .. 4g+3)
      mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
      mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
      const float mnew = fmaxf(m[rr], mx[rr]);
      // with nothing visible yet (mnew = -inf) subtract 0 instead: exp2(-inf - 0) = 0, no NaN
      muse[rr] = mnew == -INFINITY ? 0.f : mnew;
      alpha[rr] = exp2f(m[rr] - muse[rr]);  // 0 while m is -inf
      m[rr] = mnew;
      l[rr] *= alpha[rr];
    }
#pragma unroll
    for (int nb = 0; nb < NS; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const float pv = exp2f(s[nb][e] - muse[e >> 1]);
        s[nb][e] = pv;
        l[e >> 1] += pv;
      }
#pragma unroll
    for (int nd = 0; nd < ND; nd++) {
      o[nd][0] *= alpha[0];
      o[nd][1] *= alpha[0];
      o[nd][2] *= alpha[1];
      o[nd][3] *= alpha[1];
    }
    // O += P V over 16-key chunks: the A fragment of P is the C fragments of score blocks
    // 2kc and 2kc + 1 packed to 16 bits; B[k = key][n = d] = V[key][d], so
    // b0 = (V[kc*16 + 2t][nd*8 + g], V[kc*16 + 2t + 1][nd*8 + g]), b1 the same 8 keys on.
#pragma unroll
    for (int kc = 0; kc < kTcFwdK / 16; kc++) {
      const uint32_t pa[4] = {Half<T>::pack(s[2 * kc][0], s[2 * kc][1]),
                              Half<T>::pack(s[2 * kc][2], s[2 * kc][3]),
                              Half<T>::pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                              Half<T>::pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
      const uint16_t* v0 = Vs + (kc * 16 + 2 * t) * ld + g;
#pragma unroll
      for (int nd = 0; nd < ND; nd++) {
        const uint16_t* vp = v0 + nd * 8;
        const uint32_t bf[2] = {ld2x(vp, vp + ld), ld2x(vp + 8 * ld, vp + 9 * ld)};
        Half<T>::mma(o[nd], pa, bf);
      }
    }
  }
  // finish: reduce the row sums over the group; rows that saw no key give 0 and lse -inf
#pragma unroll
  for (int rr = 0; rr < 2; rr++) {
    float lsum = l[rr];
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
    const int i = rr ? qb : qa;
    if (i >= Tq) continue;
    const bool any = lsum > 0.f;
    const float inv = any ? 1.f / lsum : 0.f;
    T* orow = rowp<T>(p.o, b, h, i);
#pragma unroll
    for (int nd = 0; nd < ND; nd++)
      *reinterpret_cast<uint32_t*>(orow + nd * 8 + 2 * t) =
          Half<T>::pack(o[nd][2 * rr] * inv, o[nd][2 * rr + 1] * inv);
    if (t == 0)
      store_lse<T, float>(p, int64_t(bh) * Tq + i, any ? (m[rr] + log2f(lsum)) * kLn2 : -INFINITY);
  }
}

// Backward. Block: (bh, tile of 64 keys); warp w owns keys k0 + 16w .. k0 + 16w + 15 (its
// fragment rows g and g + 8 are keys ja = k0 + 16w + g and jb = ja + 8). For each tile of
// 32 queries: S^T = K Q^T and dP^T = V dO^T (keys x queries), P^T = exp(S^T - lse),
// dS^T = P^T (dP^T - D); dV += P^T dO and dK += dS^T Q (A fragments from the C fragments);
// dS^T is stored transposed (dS, queries x keys) in shared memory and the block computes
// dS K for its 64 keys (warp w: queries 16 (w & 1) .., columns (w >> 1) D/2 ..), added into
// dq_acc with atomics.
template <typename T, int D> __global__ void __launch_bounds__(kTcThreads) tc_bwd_kernel(Params p) {
  constexpr int ld = D + kTcPad;
  constexpr int KC = D / 16;
  constexpr int ND = D / 8;
  constexpr int NQ = kTcBwdQ / 8;  // 8-wide query blocks of a score tile
  constexpr int NDQ = D / 16;      // 8-wide column blocks of a warp's half of dQ
  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint16_t* Ks = reinterpret_cast<uint16_t*>(smem_raw);  // [64][ld]
  uint16_t* Vs = Ks + kTcBwdK * ld;                      // [64][ld]
  uint16_t* Qs = Vs + kTcBwdK * ld;                      // [32][ld]
  uint16_t* Gs = Qs + kTcBwdQ * ld;                      // [32][ld]  dO
  uint16_t* Ss = Gs + kTcBwdQ * ld;                      // [32][kTcDsLd]  dS (queries x keys)
  float* Ls = reinterpret_cast<float*>(Ss + kTcBwdQ * kTcDsLd);  // [32] lse * log2(e)
  float* Ds = Ls + kTcBwdQ;                                      // [32] D_i

  const int Tq = p.Tq, Tk = p.Tk;
  const int nkt = (Tk + kTcBwdK - 1) / kTcBwdK;
  const int bh = int(blockIdx.x / nkt), k0 = int(blockIdx.x % nkt) * kTcBwdK;
  const int b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wr = warp * 16;
  const int ja = k0 + wr + g, jb = ja + 8;
  const bool oka = key_ok(p, b, ja), okb = key_ok(p, b, jb);
  const float scale = float(p.scale), sl2 = scale * kLog2e;
  const float* di = static_cast<const float*>(p.di);

  tc_load_tile<D>(Ks, p.k, b, h, k0, kTcBwdK, Tk);
  tc_load_tile<D>(Vs, p.v, b, h, k0, kTcBwdK, Tk);

  float dk[ND][4], dv[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; nd++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk[nd][e] = dv[nd][e] = 0.f;

  // dQ part of this warp: queries qr .. qr + 15 of the tile, columns dc .. dc + D/2 - 1
  const int qr = (warp & 1) * 16, dc = (warp >> 1) * (D / 2);
  const int qstart = p.causal ? max(0, k0 - p.off) : 0;
  for (int i0 = qstart; i0 < Tq; i0 += kTcBwdQ) {
    __syncthreads();  // K/V loaded (first tile); Q, dO, dS of the previous tile consumed
    tc_load_tile<D>(Qs, p.q, b, h, i0, kTcBwdQ, Tq);
    tc_load_tile<D>(Gs, p.go, b, h, i0, kTcBwdQ, Tq);
    if (threadIdx.x < kTcBwdQ) {
      const int i = i0 + threadIdx.x;
      Ls[threadIdx.x] = i < Tq ? load_lse<T, float>(p, int64_t(bh) * Tq + i) * kLog2e : -INFINITY;
      Ds[threadIdx.x] = i < Tq ? di[int64_t(bh) * Tq + i] : 0.f;
    }
    __syncthreads();

    // S^T = K Q^T and dP^T = V dO^T: A = the warp's 16 key rows of K (V), B[k = d][n = query]
    // = Q[query][d] (dO), so b0 = Q[nb*8 + g][kc*16 + 2t .. +1]
    float st[NQ][4], dpt[NQ][4];
#pragma unroll
    for (int nb = 0; nb < NQ; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) st[nb][e] = dpt[nb][e] = 0.f;
#pragma unroll
    for (int kc = 0; kc < KC; kc++) {
      const int c = kc * 16 + 2 * t;
      const uint32_t ka[4] = {ld2(Ks + (wr + g) * ld + c), ld2(Ks + (wr + g + 8) * ld + c),
                              ld2(Ks + (wr + g) * ld + c + 8), ld2(Ks + (wr + g + 8) * ld + c + 8)};
      const uint32_t va[4] = {ld2(Vs + (wr + g) * ld + c), ld2(Vs + (wr + g + 8) * ld + c),
                              ld2(Vs + (wr + g) * ld + c + 8), ld2(Vs + (wr + g + 8) * ld + c + 8)};
#pragma unroll
      for (int nb = 0; nb < NQ; nb++) {
        const uint32_t qb2[2] = {ld2(Qs + (nb * 8 + g) * ld + c),
                                 ld2(Qs + (nb * 8 + g) * ld + c + 8)};
        const uint32_t gb2[2] = {ld2(Gs + (nb * 8 + g) * ld + c),
                                 ld2(Gs + (nb * 8 + g) * ld + c + 8)};
        Half<T>::mma(st[nb], ka, qb2);
        Half<T>::mma(dpt[nb], va, gb2);
      }
    }
    // element e of block nb: key (e < 2 ? ja : jb), query i0 + nb*8 + 2t + (e&1)
#pragma unroll
    for (int nb = 0; nb < NQ; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int il = nb * 8 + 2 * t + (e & 1), i = i0 + il;
        const int j = e < 2 ? ja : jb;
        const float L = Ls[il];
        const bool vis = (e < 2 ? oka : okb) && i < Tq && causal_ok(p, i, j) && L != -INFINITY;
        const float pv = vis ? exp2f(st[nb][e] * sl2 - L) : 0.f;
        st[nb][e] = pv;                           // P^T
        dpt[nb][e] = pv * (dpt[nb][e] - Ds[il]);  // dS^T
      }
      // dV += P^T dO and dK += dS^T Q over 16-query chunks: A from blocks 2kc, 2kc + 1;
      // B[k = query][n = d] = dO[query][d]: b0 = (dO[kc*16 + 2t][nd*8 + g], dO[.. + 1][..])
#pragma unroll
    for (int kc = 0; kc < kTcBwdQ / 16; kc++) {
      const uint32_t pa[4] = {Half<T>::pack(st[2 * kc][0], st[2 * kc][1]),
                              Half<T>::pack(st[2 * kc][2], st[2 * kc][3]),
                              Half<T>::pack(st[2 * kc + 1][0], st[2 * kc + 1][1]),
                              Half<T>::pack(st[2 * kc + 1][2], st[2 * kc + 1][3])};
      const uint32_t da[4] = {Half<T>::pack(dpt[2 * kc][0], dpt[2 * kc][1]),
                              Half<T>::pack(dpt[2 * kc][2], dpt[2 * kc][3]),
                              Half<T>::pack(dpt[2 * kc + 1][0], dpt[2 * kc + 1][1]),
                              Half<T>::pack(dpt[2 * kc + 1][2], dpt[2 * kc + 1][3])};
      const int r = (kc * 16 + 2 * t) * ld + g;
#pragma unroll
      for (int nd = 0; nd < ND; nd++) {
        const uint16_t* gp = Gs + r + nd * 8;
        const uint16_t* qp = Qs + r + nd * 8;
        const uint32_t gb2[2] = {ld2x(gp, gp + ld), ld2x(gp + 8 * ld, gp + 9 * ld)};
        const uint32_t qb2[2] = {ld2x(qp, qp + ld), ld2x(qp + 8 * ld, qp + 9 * ld)};
        Half<T>::mma(dv[nd], pa, gb2);
        Half<T>::mma(dk[nd], da, qb2);
      }
    }
    // dS (queries x keys) to shared memory: Ss[query il][key wr + g (+8)]
#pragma unroll
    for (int nb = 0; nb < NQ; nb++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int il = nb * 8 + 2 * t + (e & 1);
        Ss[il * kTcDsLd + wr + g + (e >> 1) * 8] = Half<T>::bits(dpt[nb][e]);
      }
    __syncthreads();

    // dQ partial = dS K: A = dS rows qr .. qr + 15 (16-key chunks), B[k = key][n = d] =
    // K[key][d]: b0 = (K[kc*16 + 2t][d + g], K[kc*16 + 2t + 1][d + g])
    float dq[NDQ][4];
#pragma unroll
    for (int nd = 0; nd < NDQ; nd++) dq[nd][0] = dq[nd][1] = dq[nd][2] = dq[nd][3] = 0.f;
#pragma unroll
    for (int kc = 0; kc < kTcBwdK / 16; kc++) {
      const int c = kc * 16 + 2 * t;
      const uint32_t sa[4] = {
          ld2(Ss + (qr + g) * kTcDsLd + c), ld2(Ss + (qr + g + 8) * kTcDsLd + c),
          ld2(Ss + (qr + g) * kTcDsLd + c + 8), ld2(Ss + (qr + g + 8) * kTcDsLd + c + 8)};
      const uint16_t* k0p = Ks + (kc * 16 + 2 * t) * ld + dc + g;
#pragma unroll
      for (int nd = 0; nd < NDQ; nd++) {
        const uint16_t* kp = k0p + nd * 8;
        const uint32_t kb2[2] = {ld2x(kp, kp + ld), ld2x(kp + 8 * ld, kp + 9 * ld)};
        Half<T>::mma(dq[nd], sa, kb2);
      }
    }
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int i = i0 + qr + g + (e >> 1) * 8;
      if (i >= Tq) continue;
      float* row = p.dq_acc + (int64_t(bh) * Tq + i) * D + dc + 2 * t + (e & 1);
#pragma unroll
      for (int nd = 0; nd < NDQ; nd++) atomicAdd(row + nd * 8, dq[nd][e]);
    }
  }
  // gk = scale dS^T Q (Q was unscaled), gv = P^T dO; rows ja (c0, c1) and jb (c2, c3)
#pragma unroll
  for (int rr = 0; rr < 2; rr++) {
    const int j = rr ? jb : ja;
    if (j >= Tk) continue;
    T* gk = rowp<T>(p.gk, b, h, j);
    T* gv = rowp<T>(p.gv, b, h, j);
#pragma unroll
    for (int nd = 0; nd < ND; nd++) {
      const int col = nd * 8 + 2 * t;
      *reinterpret_cast<uint32_t*>(gk + col) =
          Half<T>::pack(dk[nd][2 * rr] * scale, dk[nd][2 * rr + 1] * scale);
      *reinterpret_cast<uint32_t*>(gv + col) = Half<T>::pack(dv[nd][2 * rr], dv[nd][2 * rr + 1]);
    }
  }
}

// gq[b, h, i, :] = scale * dq_acc[(bh, i), :]
template <typename T> __global__ void tc_dq_finish_kernel(Params p) {
  const int64_t n = int64_t(p.B) * p.H * p.Tq * p.D;
  const float scale = float(p.scale);
  MOX_GRID_STRIDE(idx, n) {
    const int d = int(idx % p.D);
    const int64_t r = idx / p.D;
    const int bh = int(r / p.Tq), i = int(r % p.Tq);
    store(rowp<T>(p.gq, bh / p.H, bh % p.H, i) + d, p.dq_acc[idx] * scale);
  }
}

// =======================================================================================
// Host side.

bool rows_contiguous(const Tensor& t) {
  return t.numel() == 0 || t.size(3) == 1 || t.stride(3) == 1;
}

Rows4 rows_of(const Tensor& t) {
  return {static_cast<char*>(t.raw_data()), t.stride(0), t.stride(1), t.stride(2)};
}

// The row pointers of t are 16-byte aligned (base address and the strides of B, H, T).
bool aligned16(const Tensor& t) {
  const int64_t es = int64_t(t.element_size());
  if (reinterpret_cast<uintptr_t>(t.raw_data()) % 16 != 0) return false;
  for (int d = 0; d < 3; d++)  // the stride of a size-1 dim is never used
    if (t.size(d) > 1 && (t.stride(d) * es) % 16 != 0) return false;
  return true;
}

void check_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& mask, const Tensor& lse, const std::vector<const Tensor*>& outs4) {
  const DType dt = q.dtype();
  if (dt != DType::F32 && dt != DType::F64 && dt != DType::BF16 && dt != DType::F16)
    throw Error(op, "CUDA kernel supports f32, f64, bf16 and f16, got q " + q.desc());
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    throw Error(op, "expects 4-D q, k, v, got " + q.desc() + ", " + k.desc() + ", " + v.desc());
  for (const Tensor* t : {&k, &v})
    if (t->dtype() != dt || !rows_contiguous(*t) || t->shape() != k.shape())
      throw Error(op, "k and v must be " + std::string(dtype_name(dt)) +
                          " tensors of one shape with unit stride in D, got " + k.desc() + ", " +
                          v.desc());
  if (!rows_contiguous(q)) throw Error(op, "expects unit stride in q's last dim, got " + q.desc());
  if (k.size(0) != q.size(0) || k.size(1) != q.size(1) || k.size(3) != q.size(3))
    throw Error(op, "k " + k.desc() + " does not match q " + q.desc());
  const Device dev = q.device();
  for (const Tensor* t : {&k, &v, &lse})
    if (t->device() != dev) throw Error(op, "all operands must be on " + q.desc() + "'s device");
  if (mask.defined() &&
      (mask.dtype() != DType::U8 || !(mask.numel() == 0 || mask.is_contiguous()) ||
       mask.dim() != 2 || mask.size(0) != q.size(0) || mask.size(1) != k.size(2) ||
       mask.device() != dev))
    throw Error(op, "key_padding_mask must be a contiguous u8 [B, Tk] tensor on q's device, got " +
                        mask.desc());
  if ((lse.dtype() != DType::F32 && lse.dtype() != dt) ||
      !(lse.numel() == 0 || lse.is_contiguous()) ||
      lse.numel() != q.size(0) * q.size(1) * q.size(2))
    throw Error(op, "lse must be a contiguous f32 or " + std::string(dtype_name(dt)) +
                        " tensor of " + std::to_string(q.size(0) * q.size(1) * q.size(2)) +
                        " elements, got " + lse.desc());
  for (const Tensor* t : outs4)
    if (t->dtype() != dt || t->dim() != 4 || !rows_contiguous(*t) || t->device() != dev)
      throw Error(op, "output " + t->desc() + " must be a 4-D " + std::string(dtype_name(dt)) +
                          " tensor on q's device with unit stride in D");
  if (q.size(3) > 256)
    throw Error(op,
                "head size D = " + std::to_string(q.size(3)) + " is over the CUDA kernel's 256");
  for (int64_t s : {q.size(0) * q.size(1), q.size(2), k.size(2)})
    if (s > (int64_t(1) << 30))
      throw Error(op, "sizes too large for the CUDA kernel: q " + q.desc() + ", k " + k.desc());
}

Params make_params(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                   bool causal, double scale, const Tensor& lse) {
  Params p;
  p.q = rows_of(q);
  p.k = rows_of(k);
  p.v = rows_of(v);
  p.mask =
      mask.defined() && mask.numel() > 0 ? static_cast<const uint8_t*>(mask.raw_data()) : nullptr;
  p.lse = lse.raw_data();
  p.lse_f32 = lse.dtype() == DType::F32;
  p.B = int(q.size(0));
  p.H = int(q.size(1));
  p.Tq = int(q.size(2));
  p.Tk = int(k.size(2));
  p.D = int(q.size(3));
  p.off = p.Tk - p.Tq;
  p.causal = causal;
  p.scale = scale;
  return p;
}

// Sets the kernel's dynamic shared-memory limit when over the default 48 KiB.
template <typename K> void set_smem(K kernel, size_t bytes, const char* op) {
  if (bytes > size_t(cuda::props().sharedMemPerBlockOptin))
    throw Error(op, "needs " + std::to_string(bytes) + " bytes of shared memory, the device has " +
                        std::to_string(cuda::props().sharedMemPerBlockOptin));
  if (bytes > 48 * 1024)
    MOX_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

// Whether the tensor-core kernels take this call.
bool use_tc(const Tensor& q, const std::vector<const Tensor*>& rows) {
  if (q.dtype() != DType::BF16 && q.dtype() != DType::F16) return false;
  if (q.size(3) != 64 && q.size(3) != 128) return false;
  for (const Tensor* t : rows)
    if (t->numel() > 0 && !aligned16(*t)) return false;
  return true;
}

// Runs CALL(NC) with NC = D / 32 rounded up to 1, 2, 4 or 8.
#define MOX_ATTN_NC(D, CALL) \
  if ((D) <= 32) {           \
    CALL(1);                 \
  } else if ((D) <= 64) {    \
    CALL(2);                 \
  } else if ((D) <= 128) {   \
    CALL(4);                 \
  } else {                   \
    CALL(8);                 \
  }

template <typename T> void simt_forward(const Params& p) {
  using A = compute_t<T>;
  const int64_t blocks = int64_t(p.B) * p.H * ((p.Tq + kSimtRows - 1) / kSimtRows);
  const size_t smem = simt_fwd_smem(p.D, sizeof(A));
#define MOX_ATTN_FWD(NC)                                               \
  {                                                                    \
    auto kern = simt_fwd_kernel<T, A, NC>;                             \
    set_smem(kern, smem, "attention");                                 \
    kern<<<unsigned(blocks), kSimtThreads, smem, cuda::stream()>>>(p); \
    MOX_CUDA_LAUNCHED("attention (simt forward)");                     \
  }
  MOX_ATTN_NC(p.D, MOX_ATTN_FWD)
#undef MOX_ATTN_FWD
}

template <typename T> void simt_backward(const Params& p) {
  using A = compute_t<T>;
  const int64_t qblocks = int64_t(p.B) * p.H * ((p.Tq + kSimtRows - 1) / kSimtRows);
  const int64_t kblocks = int64_t(p.B) * p.H * ((p.Tk + kSimtRows - 1) / kSimtRows);
  const size_t smem_dq = simt_dq_smem(p.D, sizeof(A)), smem_dkv = simt_dkv_smem(p.D, sizeof(A));
#define MOX_ATTN_BWD(NC)                                                      \
  {                                                                           \
    if (qblocks > 0) {                                                        \
      auto kern = simt_dq_kernel<T, A, NC>;                                   \
      set_smem(kern, smem_dq, "attention_backward");                          \
      kern<<<unsigned(qblocks), kSimtThreads, smem_dq, cuda::stream()>>>(p);  \
      MOX_CUDA_LAUNCHED("attention_backward (simt dq)");                      \
    }                                                                         \
    if (kblocks > 0) {                                                        \
      auto kern = simt_dkv_kernel<T, A, NC>;                                  \
      set_smem(kern, smem_dkv, "attention_backward");                         \
      kern<<<unsigned(kblocks), kSimtThreads, smem_dkv, cuda::stream()>>>(p); \
      MOX_CUDA_LAUNCHED("attention_backward (simt dk dv)");                   \
    }                                                                         \
  }
  MOX_ATTN_NC(p.D, MOX_ATTN_BWD)
#undef MOX_ATTN_BWD
}

template <int D> constexpr size_t tc_fwd_smem() {
  return size_t(kTcFwdQ + 2 * kTcFwdK) * (D + kTcPad) * 2 + sizeof(int) * kTcFwdK;
}
template <int D> constexpr size_t tc_bwd_smem() {
  return size_t(2 * kTcBwdK + 2 * kTcBwdQ) * (D + kTcPad) * 2 + size_t(kTcBwdQ) * kTcDsLd * 2 +
         2 * sizeof(float) * kTcBwdQ;
}

template <typename T, int D> void tc_forward(const Params& p) {
  const int64_t blocks = int64_t(p.B) * p.H * ((p.Tq + kTcFwdQ - 1) / kTcFwdQ);
  constexpr size_t smem = tc_fwd_smem<D>();
  auto kern = tc_fwd_kernel<T, D>;
  set_smem(kern, smem, "attention");
  kern<<<unsigned(blocks), kTcThreads, smem, cuda::stream()>>>(p);
  MOX_CUDA_LAUNCHED("attention (tensor-core forward)");
}

template <typename T, int D> void tc_backward(const Params& p) {
  const int64_t kblocks = int64_t(p.B) * p.H * ((p.Tk + kTcBwdK - 1) / kTcBwdK);
  const int64_t n = int64_t(p.B) * p.H * p.Tq * D;
  MOX_CUDA_CHECK(cudaMemsetAsync(p.dq_acc, 0, size_t(n) * sizeof(float), cuda::stream()));
  if (kblocks > 0) {
    constexpr size_t smem = tc_bwd_smem<D>();
    auto kern = tc_bwd_kernel<T, D>;
    set_smem(kern, smem, "attention_backward");
    kern<<<unsigned(kblocks), kTcThreads, smem, cuda::stream()>>>(p);
    MOX_CUDA_LAUNCHED("attention_backward (tensor-core dk dv dq)");
  }
  tc_dq_finish_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(p);
  MOX_CUDA_LAUNCHED("attention_backward (dq)");
}

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

template <typename T> void half_forward_tc(const Params& p) {
  if (p.D == 64)
    tc_forward<T, 64>(p);
  else
    tc_forward<T, 128>(p);
}
template <typename T> void half_backward_tc(const Params& p) {
  if (p.D == 64)
    tc_backward<T, 64>(p);
  else
    tc_backward<T, 128>(p);
}

}  // namespace

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& key_padding_mask, bool causal, double scale,
                            const Tensor& out, const Tensor& lse) {
  const char* op = "attention";
  check_args(op, q, k, v, key_padding_mask, lse, {&out});
  if (out.shape() != q.shape())
    throw Error(op, "out " + out.desc() + " does not match q " + q.desc());
  if (out.numel() == 0) return;
  const Params base = make_params(q, k, v, key_padding_mask, causal, scale, lse);
  Params p = base;
  p.o = rows_of(out);
  const bool tc = use_tc(q, {&q, &k, &v, &out});
  switch (q.dtype()) {
    case DType::F32:
      simt_forward<float>(p);
      break;
    case DType::F64:
      simt_forward<double>(p);
      break;
    case DType::BF16:
      if (tc)
        half_forward_tc<__nv_bfloat16>(p);
      else
        simt_forward<__nv_bfloat16>(p);
      break;
    case DType::F16:
      if (tc)
        half_forward_tc<__half>(p);
      else
        simt_forward<__half>(p);
      break;
    default:
      throw Error(op, std::string("unsupported dtype ") + dtype_name(q.dtype()));
  }
}

void CudaBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& key_padding_mask, bool causal, double scale,
                                     const Tensor& out, const Tensor& lse, const Tensor& gout,
                                     const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  const char* op = "attention_backward";
  check_args(op, q, k, v, key_padding_mask, lse, {&out, &gout, &gq, &gk, &gv});
  if (out.shape() != q.shape() || gout.shape() != q.shape() || gq.shape() != q.shape() ||
      gk.shape() != k.shape() || gv.shape() != v.shape())
    throw Error(op, "gradient shapes do not match q " + q.desc() + " / k " + k.desc());
  if (gq.numel() == 0 && gk.numel() == 0) return;
  Params p = make_params(q, k, v, key_padding_mask, causal, scale, lse);
  p.o = rows_of(out);
  p.go = rows_of(gout);
  p.gq = rows_of(gq);
  p.gk = rows_of(gk);
  p.gv = rows_of(gv);
  const DType dt = q.dtype();
  const bool tc = use_tc(q, {&q, &k, &v, &gout, &gk, &gv});
  const int64_t rows = int64_t(p.B) * p.H * p.Tq;
  const size_t a_size = dt == DType::F64 ? sizeof(double) : sizeof(float);
  const size_t di_bytes = align256(size_t(rows) * a_size);
  const size_t dq_bytes = tc ? size_t(rows) * p.D * sizeof(float) : 0;
  char* ws = static_cast<char*>(cuda::workspace(std::max<size_t>(di_bytes + dq_bytes, 256)));
  p.di = ws;
  p.dq_acc = tc ? reinterpret_cast<float*>(ws + di_bytes) : nullptr;
  if (rows > 0) {
    const int warps_per_block = 256 / 32;
    const unsigned blocks = cuda::blocks_for((rows + warps_per_block - 1) / warps_per_block, 1);
    MOX_CUDA_DISPATCH_FLOAT(dt, T, op, {
      attn_di_kernel<T, compute_t<T>><<<blocks, 256, 0, cuda::stream()>>>(p);
      MOX_CUDA_LAUNCHED("attention_backward (D_i)");
    });
  }
  switch (dt) {
    case DType::F32:
      simt_backward<float>(p);
      break;
    case DType::F64:
      simt_backward<double>(p);
      break;
    case DType::BF16:
      if (tc)
        half_backward_tc<__nv_bfloat16>(p);
      else
        simt_backward<__nv_bfloat16>(p);
      break;
    case DType::F16:
      if (tc)
        half_backward_tc<__half>(p);
      else
        simt_backward<__half>(p);
      break;
    default:
      throw Error(op, std::string("unsupported dtype ") + dtype_name(dt));
  }
}

}  // namespace mox
