// Row kernels over contiguous [rows, n]: softmax / log-softmax and their backward, layer
// norm forward and backward, and the fused softmax cross-entropy. Same formulas as
// cpu_norm.cpp; f32 statistics for f32/bf16/f16 data (f64 for f64).
//
// Work split: one warp per row when n <= 1024 (8 rows per 256-thread block), one block per
// row above (256 or 512 threads, e.g. a vocabulary row of 50304 logits). Rows are read with
// 16-byte vector loads when n is a multiple of the vector width and every row pointer is
// aligned (bf16 rows of 768: 8 elements per load). Softmax statistics use an online
// max/sum (one read for max and sum, a second read to write the output); the
// cross-entropy gradient is written in that second pass, so the probabilities are never
// stored. Layer-norm weight/bias gradients are column sums over rows: per-chunk partial
// sums in the workspace, then a second kernel adds the chunks in order (deterministic,
// no atomics).
//
// Statistics outputs (layer-norm mean/rstd, cross-entropy losses) and the layer-norm
// weight, bias and their gradients may be f32 while the rows are bf16/f16 (or have the
// rows' dtype); each such tensor's dtype is handled separately.
#include <cmath>
#include <string>

#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/arg_checks.h"
#include "mox/backend/cuda/cuda_common.cuh"

namespace mox {

namespace {

using cuda::compute_t;

__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }

template <typename C> __device__ __forceinline__ C neg_inf() { return C(-INFINITY); }

// ---- vector loads and stores of V consecutive elements (V == 1: scalar) ----
template <typename T, int V> struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
template <typename T> constexpr int kVec = 16 / int(sizeof(T));

template <int V, typename T>
__device__ __forceinline__ void ldv(const T* p, int64_t i, compute_t<T>* out) {
  if constexpr (V == 1) {
    out[0] = cuda::load(p + i);
  } else {
    const Pack<T, V> pk = *reinterpret_cast<const Pack<T, V>*>(p + i);
#pragma unroll
    for (int k = 0; k < V; ++k) out[k] = cuda::load(&pk.v[k]);
  }
}
template <int V, typename T, typename C>
__device__ __forceinline__ void stv(T* p, int64_t i, const C* in) {
  if constexpr (V == 1) {
    cuda::store(p + i, in[0]);
  } else {
    Pack<T, V> pk;
#pragma unroll
    for (int k = 0; k < V; ++k) cuda::store(&pk.v[k], in[k]);
    *reinterpret_cast<Pack<T, V>*>(p + i) = pk;
  }
}

// A pointer to a [n] or [rows] tensor that is either f32 or the data type T.
template <typename T> struct AnyPtr {
  void* p = nullptr;
  bool f32 = false;
  __device__ __forceinline__ compute_t<T> get(int64_t i) const {
    if (f32) return compute_t<T>(static_cast<const float*>(p)[i]);
    return cuda::load(static_cast<const T*>(p) + i);
  }
  template <typename V> __device__ __forceinline__ void put(int64_t i, V v) const {
    if (f32)
      static_cast<float*>(p)[i] = float(v);
    else
      cuda::store(static_cast<T*>(p) + i, v);
  }
  __device__ __forceinline__ bool defined() const { return p != nullptr; }
};

// ---- one row per warp (kWarp) or per block ----
struct RowCtx {
  int64_t row;
  int tid, G;
};
template <bool kWarp> __device__ __forceinline__ RowCtx row_ctx() {
  if constexpr (kWarp)
    return {int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32, int(threadIdx.x & 31), 32};
  else
    return {int64_t(blockIdx.x), int(threadIdx.x), int(blockDim.x)};
}
template <bool kWarp, typename C> __device__ __forceinline__ C gsum(C v, C* sh) {
  if constexpr (kWarp)
    return cuda::warp_sum(v);
  else
    return cuda::block_sum(v, sh);
}
template <bool kWarp, typename C> __device__ __forceinline__ C gmax(C v, C* sh) {
  if constexpr (kWarp)
    return cuda::warp_max(v);
  else
    return cuda::block_max(v, sh, neg_inf<C>());
}

// Online max/sum-of-exp of one thread's elements. -inf elements add nothing (and do not
// produce inf - inf); NaN elements make the sum NaN, as on the CPU.
template <typename C> __device__ __forceinline__ void online_add(C& m, C& s, C x) {
  if (x > m) {
    s = s * d_exp(m - x) + C(1);
    m = x;
  } else if (x != neg_inf<C>()) {
    s += d_exp(x - m);
  }
}
// Row max M and sum(exp(x - M)) over the group from each thread's (m, s).
template <bool kWarp, typename C> __device__ __forceinline__ void online_reduce(C m, C s, C* sh, C& M, C& S) {
  M = gmax<kWarp>(m, sh);
  s = m == neg_inf<C>() ? C(0) : s * d_exp(m - M);
  S = gsum<kWarp>(s, sh);
}

// ---------------------------------------------------------------------------------------
// softmax

template <typename T, int V, bool kWarp>
__global__ void softmax_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n,
                               bool log) {
  using C = compute_t<T>;
  __shared__ C sh[32];
  const RowCtx c = row_ctx<kWarp>();
  if (c.row >= rows) return;  // whole warps only (kWarp); never in block mode
  const T* xr = x + c.row * n;
  T* yr = y + c.row * n;
  const int64_t step = int64_t(c.G) * V;
  C m = neg_inf<C>(), s = 0;
  for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
    C a[V];
    ldv<V>(xr, i, a);
#pragma unroll
    for (int k = 0; k < V; ++k) online_add(m, s, a[k]);
  }
  C M, S;
  online_reduce<kWarp>(m, s, sh, M, S);
  if (M == neg_inf<C>()) M = 0;  // all -inf: avoid inf - inf (as the CPU)
  if (log) {
    const C lse = M + d_log(S);
    for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
      C a[V];
      ldv<V>(xr, i, a);
#pragma unroll
      for (int k = 0; k < V; ++k) a[k] = a[k] - lse;
      stv<V>(yr, i, a);
    }
  } else {
    const C inv = C(1) / S;
    for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
      C a[V];
      ldv<V>(xr, i, a);
#pragma unroll
      for (int k = 0; k < V; ++k) a[k] = d_exp(a[k] - M) * inv;
      stv<V>(yr, i, a);
    }
  }
}

// softmax: gx = y * (gy - sum(gy*y)); log-softmax: gx = gy - exp(y) * sum(gy)
template <typename T, int V, bool kWarp>
__global__ void softmax_backward_kernel(const T* __restrict__ y, const T* __restrict__ gy,
                                        T* __restrict__ gx, int64_t rows, int64_t n, bool log) {
  using C = compute_t<T>;
  __shared__ C sh[32];
  const RowCtx c = row_ctx<kWarp>();
  if (c.row >= rows) return;
  const T* yr = y + c.row * n;
  const T* gr = gy + c.row * n;
  T* outr = gx + c.row * n;
  const int64_t step = int64_t(c.G) * V;
  C s = 0;
  for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
    C g[V], a[V];
    ldv<V>(gr, i, g);
    if (log) {
#pragma unroll
      for (int k = 0; k < V; ++k) s += g[k];
    } else {
      ldv<V>(yr, i, a);
#pragma unroll
      for (int k = 0; k < V; ++k) s += g[k] * a[k];
    }
  }
  const C S = gsum<kWarp>(s, sh);
  for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
    C g[V], a[V];
    ldv<V>(gr, i, g);
    ldv<V>(yr, i, a);
#pragma unroll
    for (int k = 0; k < V; ++k) a[k] = log ? g[k] - d_exp(a[k]) * S : a[k] * (g[k] - S);
    stv<V>(outr, i, a);
  }
}

// ---------------------------------------------------------------------------------------
// layer norm

template <typename T, int V, bool kWarp>
__global__ void layer_norm_kernel(const T* __restrict__ x, AnyPtr<T> w, AnyPtr<T> b,
                                  compute_t<T> eps, T* __restrict__ y, AnyPtr<T> mean,
                                  AnyPtr<T> rstd, int64_t rows, int64_t n) {
  using C = compute_t<T>;
  __shared__ C sh[32];
  const RowCtx c = row_ctx<kWarp>();
  if (c.row >= rows) return;
  const T* xr = x + c.row * n;
  T* yr = y + c.row * n;
  const int64_t step = int64_t(c.G) * V;
  C s = 0;
  for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
    C a[V];
    ldv<V>(xr, i, a);
#pragma unroll
    for (int k = 0; k < V; ++k) s += a[k];
  }
  const C mu = gsum<kWarp>(s, sh) / C(n);
  // Two passes (mean, then squared deviations), as the CPU.
  C ss = 0;
  for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
    C a[V];
    ldv<V>(xr, i, a);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const C d = a[k] - mu;
      ss += d * d;
    }
  }
  const C rs = C(1) / d_sqrt(gsum<kWarp>(ss, sh) / C(n) + eps);
  const bool hw = w.defined(), hb = b.defined();
  for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
    C a[V];
    ldv<V>(xr, i, a);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      C v = (a[k] - mu) * rs;
      if (hw) v = v * w.get(i + k);
      if (hb) v = v + b.get(i + k);
      a[k] = v;
    }
    stv<V>(yr, i, a);
  }
  if (c.tid == 0) {
    mean.put(c.row, mu);
    rstd.put(c.row, rs);
  }
}

// gx = rstd * (dxh - mean(dxh) - xhat * mean(dxh * xhat)), dxh = gy * w, xhat = (x-mean)*rstd
template <typename T, int V, bool kWarp>
__global__ void layer_norm_backward_kernel(const T* __restrict__ gy, const T* __restrict__ x,
                                           AnyPtr<T> w, AnyPtr<T> mean, AnyPtr<T> rstd,
                                           T* __restrict__ gx, int64_t rows, int64_t n) {
  using C = compute_t<T>;
  __shared__ C sh[32];
  const RowCtx c = row_ctx<kWarp>();
  if (c.row >= rows) return;
  const T* gr = gy + c.row * n;
  const T* xr = x + c.row * n;
  T* outr = gx + c.row * n;
  const C mu = mean.get(c.row), rs = rstd.get(c.row);
  const bool hw = w.defined();
  const int64_t step = int64_t(c.G) * V;
  C s1 = 0, s2 = 0;
  for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
    C g[V], a[V];
    ldv<V>(gr, i, g);
    ldv<V>(xr, i, a);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const C d = hw ? g[k] * w.get(i + k) : g[k];
      s1 += d;
      s2 += d * (a[k] - mu);
    }
  }
  s1 = gsum<kWarp>(s1, sh);
  s2 = gsum<kWarp>(s2, sh);
  const C c1 = s1 / C(n), c2 = s2 * rs / C(n);
  for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
    C g[V], a[V];
    ldv<V>(gr, i, g);
    ldv<V>(xr, i, a);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const C d = hw ? g[k] * w.get(i + k) : g[k];
      a[k] = rs * (d - c1 - (a[k] - mu) * rs * c2);
    }
    stv<V>(outr, i, a);
  }
}

// Column partial sums for gw (sum gy * xhat) and gb (sum gy) over the rows of one chunk:
// block (32, 8) covers 32 columns; chunk blockIdx.y covers rows [y*rpc, (y+1)*rpc).
// pw/pb [chunks, n] (either may be null).
constexpr int kColX = 32, kColY = 8;
template <typename T>
__global__ void ln_col_partial_kernel(const T* __restrict__ gy, const T* __restrict__ x,
                                      AnyPtr<T> mean, AnyPtr<T> rstd, int64_t rows, int64_t n,
                                      int64_t rpc, compute_t<T>* pw, compute_t<T>* pb) {
  using C = compute_t<T>;
  __shared__ C sw[kColY][kColX + 1], sb[kColY][kColX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = int64_t(blockIdx.x) * kColX + tx;
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = chunk * rpc, r1 = min(rows, r0 + rpc);
  C aw = 0, ab = 0;
  if (col < n) {
    for (int64_t r = r0 + ty; r < r1; r += kColY) {
      const C g = cuda::load(gy + r * n + col);
      ab += g;
      if (pw) aw += g * (cuda::load(x + r * n + col) - mean.get(r)) * rstd.get(r);
    }
  }
  sw[ty][tx] = aw;
  sb[ty][tx] = ab;
  __syncthreads();
  if (ty == 0 && col < n) {
    C tw = 0, tb = 0;
#pragma unroll
    for (int k = 0; k < kColY; ++k) {
      tw += sw[k][tx];
      tb += sb[k][tx];
    }
    if (pw) pw[chunk * n + col] = tw;
    if (pb) pb[chunk * n + col] = tb;
  }
}

// out[col] = sum over chunks (in order) of part[chunk, col]
template <typename T>
__global__ void ln_col_final_kernel(const compute_t<T>* __restrict__ pw,
                                    const compute_t<T>* __restrict__ pb, int64_t chunks, int64_t n,
                                    AnyPtr<T> gw, AnyPtr<T> gb) {
  using C = compute_t<T>;
  MOX_GRID_STRIDE(col, n) {
    if (pw) {
      C s = 0;
      for (int64_t k = 0; k < chunks; ++k) s += pw[k * n + col];
      gw.put(col, s);
    }
    if (pb) {
      C s = 0;
      for (int64_t k = 0; k < chunks; ++k) s += pb[k * n + col];
      gb.put(col, s);
    }
  }
}

// ---------------------------------------------------------------------------------------
// cross-entropy over one row of logits z (n) with class t (t < 0: ignored):
// loss = (1-eps) * (lse - z[t]) + eps/n * (n*lse - sum_j z[j])
// grad = (softmax - (1-eps) onehot(t) - eps/n) * scale
// A target >= n (ops/ checks targets on the host first) gives a NaN loss and gradient row.
template <typename T, int V, bool kWarp>
__global__ void cross_entropy_kernel(const T* __restrict__ z, const int64_t* __restrict__ target,
                                     compute_t<T> eps, AnyPtr<T> losses, T* __restrict__ grad,
                                     compute_t<T> scale, int64_t rows, int64_t n) {
  using C = compute_t<T>;
  __shared__ C sh[32];
  const RowCtx c = row_ctx<kWarp>();
  if (c.row >= rows) return;
  const int64_t t = target[c.row];
  const T* zr = z + c.row * n;
  T* gr = grad ? grad + c.row * n : nullptr;
  const int64_t step = int64_t(c.G) * V;
  if (t < 0) {  // ignored: loss 0, gradient row 0 (uniform over the group: no sync skipped)
    if (c.tid == 0) losses.put(c.row, C(0));
    if (gr) {
      C a[V];
#pragma unroll
      for (int k = 0; k < V; ++k) a[k] = 0;
      for (int64_t i = int64_t(c.tid) * V; i < n; i += step) stv<V>(gr, i, a);
    }
    return;
  }
  C m = neg_inf<C>(), s = 0, sz = 0;
  for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
    C a[V];
    ldv<V>(zr, i, a);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      online_add(m, s, a[k]);
      sz += a[k];
    }
  }
  C M, S;
  online_reduce<kWarp>(m, s, sh, M, S);
  const C lse = M + d_log(S);
  const C zt = t < n ? cuda::load(zr + t) : C(NAN);
  // The smoothing term needs the row sum of z (eps is uniform: all threads reduce or none).
  const C SZ = eps != C(0) ? gsum<kWarp>(sz, sh) : C(0);
  if (c.tid == 0) {
    C loss = (C(1) - eps) * (lse - zt);
    if (eps != C(0)) loss += eps / C(n) * (C(n) * lse - SZ);
    losses.put(c.row, loss);
  }
  if (gr) {
    const C off = eps / C(n) * scale, hit = (C(1) - eps) * scale;
    const C bad = t < n ? C(0) : C(NAN);
    for (int64_t i = int64_t(c.tid) * V; i < n; i += step) {
      C a[V];
      ldv<V>(zr, i, a);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        C g = d_exp(a[k] - lse) * scale - off;
        if (i + k == t) g -= hit;
        a[k] = g + bad;
      }
      stv<V>(gr, i, a);
    }
  }
}

// ---------------------------------------------------------------------------------------
// host side

bool is_float_dtype(DType t) {
  return t == DType::F32 || t == DType::F64 || t == DType::BF16 || t == DType::F16;
}

// Rows x n of a contiguous floating tensor (a 1-D tensor is one row).
void rows_cols(const Tensor& x, const char* op, int64_t& rows, int64_t& n) {
  if (!is_float_dtype(x.dtype()))
    throw Error(op, std::string("CUDA kernel supports f32, f64, bf16 and f16, got ") + x.desc());
  arg_checks::row_shape(x, op, rows, n);
}

using arg_checks::check_like;

// An optional [count] tensor of dtype `like` or f32 (statistics, weights).
template <typename T>
AnyPtr<T> any_ptr(const Tensor& t, DType like, int64_t count, const char* op, const char* what) {
  AnyPtr<T> a;
  if (!t.defined()) return a;
  if ((t.dtype() != like && t.dtype() != DType::F32) || !t.is_contiguous() || t.numel() != count)
    throw Error(op, std::string(what) + " must be contiguous [" + std::to_string(count) + "] " +
                        dtype_name(like) + " or f32, got " + t.desc());
  a.p = t.raw_data();
  a.f32 = t.dtype() == DType::F32 && like != DType::F32;
  return a;
}

bool aligned16(const Tensor& t) {
  return !t.defined() || (reinterpret_cast<uintptr_t>(t.raw_data()) % 16) == 0;
}

template <bool B> using BoolC = std::integral_constant<bool, B>;
template <int V> using IntC = std::integral_constant<int, V>;

// Calls f(IntC<V>, BoolC<kWarp>, grid, block) with the launch shape for rows of n elements:
// vector width kVec<T> when n allows and `vec_ok` (every row pointer 16-byte aligned).
template <typename T, typename F>
void row_launch(int64_t rows, int64_t n, bool vec_ok, const char* op, F&& f) {
  constexpr int VV = kVec<T>;
  const bool vec = vec_ok && n % VV == 0;
  if (n <= 1024) {
    const int per_block = cuda::kThreads / 32;
    const int64_t blocks = (rows + per_block - 1) / per_block;
    if (blocks > 0x7fffffffLL) throw Error(op, "too many rows: " + std::to_string(rows));
    const dim3 grid(static_cast<unsigned>(blocks)), block(cuda::kThreads);
    if (vec)
      f(IntC<VV>(), BoolC<true>(), grid, block);
    else
      f(IntC<1>(), BoolC<true>(), grid, block);
  } else {
    if (rows > 0x7fffffffLL) throw Error(op, "too many rows: " + std::to_string(rows));
    const dim3 grid(static_cast<unsigned>(rows)), block(n >= 8192 ? 512 : 256);
    if (vec)
      f(IntC<VV>(), BoolC<false>(), grid, block);
    else
      f(IntC<1>(), BoolC<false>(), grid, block);
  }
}

}  // namespace

void CudaBackend::softmax(const Tensor& x, const Tensor& out, bool log) {
  int64_t rows, n;
  rows_cols(x, "softmax", rows, n);
  check_like(out, x, "softmax", "output");
  if (rows == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), T, "softmax", {
    const T* xp = static_cast<const T*>(x.raw_data());
    T* yp = static_cast<T*>(out.raw_data());
    row_launch<T>(rows, n, aligned16(x) && aligned16(out), "softmax",
                  [&](auto v, auto w, dim3 grid, dim3 block) {
                    softmax_kernel<T, decltype(v)::value, decltype(w)::value>
                        <<<grid, block, 0, cuda::stream()>>>(xp, yp, rows, n, log);
                  });
    MOX_CUDA_LAUNCHED("softmax");
  });
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  int64_t rows, n;
  rows_cols(y, "softmax_backward", rows, n);
  check_like(gy, y, "softmax_backward", "gradient");
  check_like(gx, y, "softmax_backward", "input gradient");
  if (rows == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(y.dtype(), T, "softmax_backward", {
    const T* yp = static_cast<const T*>(y.raw_data());
    const T* gp = static_cast<const T*>(gy.raw_data());
    T* op = static_cast<T*>(gx.raw_data());
    row_launch<T>(rows, n, aligned16(y) && aligned16(gy) && aligned16(gx), "softmax_backward",
                  [&](auto v, auto w, dim3 grid, dim3 block) {
                    softmax_backward_kernel<T, decltype(v)::value, decltype(w)::value>
                        <<<grid, block, 0, cuda::stream()>>>(yp, gp, op, rows, n, log);
                  });
    MOX_CUDA_LAUNCHED("softmax_backward");
  });
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                             const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  const char* op = "layer_norm";
  int64_t rows, n;
  rows_cols(x, op, rows, n);
  check_like(out, x, op, "output");
  if (!mean.defined() || !rstd.defined()) throw Error(op, "mean and rstd must be defined");
  if (rows == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), T, op, {
    using C = compute_t<T>;
    AnyPtr<T> wp = any_ptr<T>(w, x.dtype(), n, op, "weight");
    AnyPtr<T> bp = any_ptr<T>(b, x.dtype(), n, op, "bias");
    AnyPtr<T> mp = any_ptr<T>(mean, x.dtype(), rows, op, "mean");
    AnyPtr<T> rp = any_ptr<T>(rstd, x.dtype(), rows, op, "rstd");
    const T* xp = static_cast<const T*>(x.raw_data());
    T* yp = static_cast<T*>(out.raw_data());
    row_launch<T>(rows, n, aligned16(x) && aligned16(out), op,
                  [&](auto v, auto wr, dim3 grid, dim3 block) {
                    layer_norm_kernel<T, decltype(v)::value, decltype(wr)::value>
                        <<<grid, block, 0, cuda::stream()>>>(xp, wp, bp, C(eps), yp, mp, rp, rows, n);
                  });
    MOX_CUDA_LAUNCHED("layer_norm");
  });
}

void CudaBackend::layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                      const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                                      const Tensor& gw, const Tensor& gb) {
  const char* op = "layer_norm_backward";
  int64_t rows, n;
  rows_cols(x, op, rows, n);
  check_like(gy, x, op, "gradient");
  check_like(gx, x, op, "input gradient");
  if (!mean.defined() || !rstd.defined()) throw Error(op, "mean and rstd must be defined");
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), T, op, {
    using C = compute_t<T>;
    AnyPtr<T> wp = any_ptr<T>(w, x.dtype(), n, op, "weight");
    AnyPtr<T> mp = any_ptr<T>(mean, x.dtype(), rows, op, "mean");
    AnyPtr<T> rp = any_ptr<T>(rstd, x.dtype(), rows, op, "rstd");
    AnyPtr<T> gwp = any_ptr<T>(gw, x.dtype(), n, op, "weight gradient");
    AnyPtr<T> gbp = any_ptr<T>(gb, x.dtype(), n, op, "bias gradient");
    const T* gp = static_cast<const T*>(gy.raw_data());
    const T* xp = static_cast<const T*>(x.raw_data());
    if (gx.defined() && rows > 0) {
      T* op_ = static_cast<T*>(gx.raw_data());
      row_launch<T>(rows, n, aligned16(x) && aligned16(gy) && aligned16(gx), op,
                    [&](auto v, auto wr, dim3 grid, dim3 block) {
                      layer_norm_backward_kernel<T, decltype(v)::value, decltype(wr)::value>
                          <<<grid, block, 0, cuda::stream()>>>(gp, xp, wp, mp, rp, op_, rows, n);
                    });
      MOX_CUDA_LAUNCHED("layer_norm_backward");
    }
    if ((gw.defined() || gb.defined()) && n > 0) {
      // Chunks of rows: enough blocks to fill the device, partials bounded to ~4M values.
      const int64_t col_blocks = (n + kColX - 1) / kColX;
      int64_t chunks = (rows + 63) / 64;
      const int64_t want = (int64_t(cuda::props().multiProcessorCount) * 8 + col_blocks - 1) / col_blocks;
      chunks = std::min(chunks, std::max<int64_t>(want, 1));
      chunks = std::min<int64_t>(chunks, std::max<int64_t>(1, (int64_t(1) << 22) / n));
      chunks = std::min<int64_t>(std::max<int64_t>(chunks, 1), 65535);
      const int64_t rpc = rows == 0 ? 1 : (rows + chunks - 1) / chunks;
      chunks = rows == 0 ? 1 : (rows + rpc - 1) / rpc;
      const int np = int(gw.defined()) + int(gb.defined());
      C* ws = static_cast<C*>(cuda::workspace(size_t(np) * size_t(chunks) * size_t(n) * sizeof(C)));
      C* pw = gw.defined() ? ws : nullptr;
      C* pb = gb.defined() ? ws + (gw.defined() ? chunks * n : 0) : nullptr;
      if (col_blocks > 0x7fffffffLL) throw Error(op, "row too long: " + std::to_string(n));
      const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks)), block(kColX, kColY);
      ln_col_partial_kernel<T><<<grid, block, 0, cuda::stream()>>>(gp, xp, mp, rp, rows, n, rpc,
                                                                    pw, pb);
      MOX_CUDA_LAUNCHED("layer_norm_backward (column sums)");
      ln_col_final_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
          pw, pb, chunks, n, gwp, gbp);
      MOX_CUDA_LAUNCHED("layer_norm_backward (column totals)");
    }
  });
}

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& target, double smoothing,
                                const Tensor& losses, const Tensor& grad, double grad_scale) {
  const char* op = "cross_entropy";
  int64_t rows, n;
  rows_cols(logits, op, rows, n);
  if (target.dtype() != DType::I64 || !target.is_contiguous() || target.numel() != rows)
    throw Error(op, "target must be contiguous i64[" + std::to_string(rows) + "], got " +
                        target.desc());
  check_like(grad, logits, op, "gradient");
  if (!losses.defined()) throw Error(op, "losses must be defined");
  if (rows == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(logits.dtype(), T, op, {
    using C = compute_t<T>;
    AnyPtr<T> lp = any_ptr<T>(losses, logits.dtype(), rows, op, "losses");
    const T* zp = static_cast<const T*>(logits.raw_data());
    const int64_t* tp = static_cast<const int64_t*>(target.raw_data());
    T* gp = grad.defined() ? static_cast<T*>(grad.raw_data()) : nullptr;
    row_launch<T>(rows, n, aligned16(logits) && aligned16(grad), op,
                  [&](auto v, auto w, dim3 grid, dim3 block) {
                    cross_entropy_kernel<T, decltype(v)::value, decltype(w)::value>
                        <<<grid, block, 0, cuda::stream()>>>(zp, tp, C(smoothing), lp, gp,
                                                             C(grad_scale), rows, n);
                  });
    MOX_CUDA_LAUNCHED("cross_entropy");
  });
}

}  // namespace mox
