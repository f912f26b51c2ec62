// Reductions (sum, mean, max, min, prod over any set of axes) and max/min with indices.
// Like the CPU, the input is viewed as [A, R, B] (kept, reduced, kept) when it is
// contiguous with the reduced dims consecutive; any other layout is first made contiguous
// as [kept..., reduced...]. Then:
//   B == 1 (rows, and the full reduction A == 1): a warp (short rows) or a block per row;
//     few long rows are split into chunks whose partial results go to a workspace and are
//     reduced by a second pass (deterministic, no atomics).
//   B > 1 (columns, e.g. bias gradients [N, C] -> [1, C]): 32 columns x 8 row-lanes per
//     block, coalesced along B; a short grid is split along R with a second pass.
// Accumulation: f32 for f32/bf16/f16, f64 for f64, i64 for the integer types. Max/min
// propagate NaN; arg max/min return the first index of the extreme value (the first NaN
// when there is one), like the CPU.
#include <algorithm>
#include <limits>
#include <type_traits>

#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/cuda/cuda_common.cuh"

namespace mox {

namespace {

using cuda::compute_t;
using cuda::TensorDesc;

using cuda::convert_to;  // cuda_common.cuh

template <typename T> struct AccOf { using type = int64_t; };  // integers
template <> struct AccOf<float> { using type = float; };
template <> struct AccOf<__nv_bfloat16> { using type = float; };
template <> struct AccOf<__half> { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using acc_t = typename AccOf<T>::type;

// Sum also serves Mean (divided at the end).
template <ReduceOp OP, typename A>
__device__ __forceinline__ A identity() {
  if constexpr (OP == ReduceOp::Sum || OP == ReduceOp::Mean) return A(0);
  else if constexpr (OP == ReduceOp::Prod) return A(1);
  else if constexpr (OP == ReduceOp::Max)
    return std::numeric_limits<A>::has_infinity ? -std::numeric_limits<A>::infinity()
                                                : std::numeric_limits<A>::lowest();
  else
    return std::numeric_limits<A>::has_infinity ? std::numeric_limits<A>::infinity()
                                                : std::numeric_limits<A>::max();
}

template <ReduceOp OP, typename A>
__device__ __forceinline__ A combine(A a, A b) {
  if constexpr (OP == ReduceOp::Sum || OP == ReduceOp::Mean) return a + b;
  else if constexpr (OP == ReduceOp::Prod) return a * b;
  else if constexpr (OP == ReduceOp::Max) return (a != a || a > b) ? a : b;  // NaN propagates
  else return (a != a || a < b) ? a : b;
}

template <ReduceOp OP, typename A>
__device__ __forceinline__ A warp_combine(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine<OP>(v, A(__shfl_xor_sync(0xffffffffu, v, o)));
  return v;
}

// The final value: the mean divides by `count` in f64 like the CPU (T(double(s) / R)).
template <typename Tout, typename A>
__device__ __forceinline__ Tout finish(A acc, bool mean, double count) {
  if (mean) return convert_to<Tout>(double(acc) / count);
  return convert_to<Tout>(acc);
}

// Rows: row q = a * S + s covers x[a * R + s * chunk, a * R + min(R, (s + 1) * chunk)) and
// writes out[q]; TPR threads per row (32: a warp, or the whole block).
template <ReduceOp OP, typename Tin, typename A, typename Tout, int TPR>
__global__ void __launch_bounds__(cuda::kThreads)
reduce_rows_kernel(const Tin* __restrict__ x, Tout* __restrict__ out, int64_t rows, int64_t R,
                   int64_t S, int64_t chunk, bool final_pass, bool mean, double count) {
  constexpr int RPB = cuda::kThreads / TPR;  // rows per block
  __shared__ A shared[32];
  const int sub = threadIdx.x / TPR, lane = threadIdx.x % TPR;
  // The loop bound is uniform per row group, so every thread of a TPR group iterates alike.
  for (int64_t q0 = int64_t(blockIdx.x) * RPB; q0 < rows; q0 += int64_t(gridDim.x) * RPB) {
    const int64_t q = q0 + sub;
    A acc = identity<OP, A>();
    if (q < rows) {
      const int64_t a = q / S, s = q % S;
      const int64_t lo = s * chunk, len = min(chunk, R - lo);
      const Tin* p = x + a * R + lo;
      for (int64_t j = lane; j < len; j += TPR) acc = combine<OP>(acc, A(cuda::load(p + j)));
    }
    acc = warp_combine<OP>(acc);
    if constexpr (TPR > 32) {
      const int w = threadIdx.x >> 5;
      constexpr int NW = TPR / 32;
      __syncthreads();  // the previous row's readers are done with `shared`
      if ((threadIdx.x & 31) == 0) shared[w] = acc;
      __syncthreads();
      if (threadIdx.x == 0) {
        acc = shared[0];
        for (int k = 1; k < NW; ++k) acc = combine<OP>(acc, shared[k]);
      }
    }
    if (lane == 0 && q < rows) {
      if (final_pass) out[q] = finish<Tout>(acc, mean, count);
      else out[q] = Tout(acc);
    }
  }
}

// Columns of [A, R, B]: block (32, 8); blockIdx.y = split s covers rows [s*chunk, ...);
// writes out[(a * S + s) * B + b].
template <ReduceOp OP, typename Tin, typename A, typename Tout>
__global__ void __launch_bounds__(256)
reduce_cols_kernel(const Tin* __restrict__ x, Tout* __restrict__ out, int64_t Aout, int64_t R,
                   int64_t B, int64_t chunk, bool final_pass, bool mean, double count) {
  __shared__ A shared[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t S = gridDim.y, s = blockIdx.y;
  const int64_t r0 = s * chunk, r1 = min(R, r0 + chunk);
  const int64_t btiles = (B + 31) / 32;
  for (int64_t t = blockIdx.x; t < Aout * btiles; t += gridDim.x) {
    const int64_t a = t / btiles, b = (t % btiles) * 32 + tx;
    A acc = identity<OP, A>();
    if (b < B) {
      const Tin* p = x + a * R * B + b;
      for (int64_t r = r0 + ty; r < r1; r += 8) acc = combine<OP>(acc, A(cuda::load(p + r * B)));
    }
    shared[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && b < B) {
      for (int k = 1; k < 8; ++k) acc = combine<OP>(acc, shared[k][tx]);
      Tout* o = out + (a * S + s) * B + b;
      if (final_pass) *o = finish<Tout>(acc, mean, count);
      else *o = Tout(acc);
    }
    __syncthreads();
  }
}

int sm_count() { return cuda::props().multiProcessorCount; }

unsigned capped_blocks(int64_t want) {
  const int64_t cap = int64_t(sm_count()) * 32;
  return unsigned(want < 1 ? 1 : (want > cap ? cap : want));
}

template <ReduceOp OP, typename Tin, typename A, typename Tout>
void launch_rows(const Tin* x, Tout* out, int64_t rows, int64_t R, int64_t S, int64_t chunk,
                 bool final_pass, bool mean, double count) {
  if (chunk <= 256) {
    constexpr int RPB = cuda::kThreads / 32;
    reduce_rows_kernel<OP, Tin, A, Tout, 32><<<capped_blocks((rows + RPB - 1) / RPB), cuda::kThreads, 0,
                                               cuda::stream()>>>(x, out, rows, R, S, chunk, final_pass, mean, count);
  } else {
    reduce_rows_kernel<OP, Tin, A, Tout, cuda::kThreads><<<capped_blocks(rows), cuda::kThreads, 0,
                                                           cuda::stream()>>>(x, out, rows, R, S, chunk, final_pass, mean, count);
  }
  MOX_CUDA_LAUNCHED("reduce");
}

template <ReduceOp OP, typename Tin, typename A, typename Tout>
void launch_cols(const Tin* x, Tout* out, int64_t Aout, int64_t R, int64_t B, int64_t S, int64_t chunk,
                 bool final_pass, bool mean, double count) {
  const int64_t tiles = Aout * ((B + 31) / 32);
  dim3 grid(capped_blocks(tiles), unsigned(S));
  reduce_cols_kernel<OP, Tin, A, Tout><<<grid, dim3(32, 8), 0, cuda::stream()>>>(x, out, Aout, R, B, chunk,
                                                                               final_pass, mean, count);
  MOX_CUDA_LAUNCHED("reduce");
}

// x viewed as [A, R, B] contiguous, out [A, B].
template <ReduceOp OP, typename T>
void reduce_arb(const T* x, T* out, int64_t A, int64_t R, int64_t B, bool mean) {
  using Acc = acc_t<T>;
  const double count = double(R);
  const int64_t target = int64_t(sm_count()) * 4;  // blocks that keep the device busy
  if (B == 1) {
    int64_t S = 1;
    if (A < target && R > 8192) S = std::min<int64_t>((target + A - 1) / A, (R + 4095) / 4096);
    if (S <= 1) {
      launch_rows<OP, T, Acc, T>(x, out, A, R, 1, R, true, mean, count);
      return;
    }
    const int64_t chunk = (R + S - 1) / S;
    S = (R + chunk - 1) / chunk;
    Acc* part = static_cast<Acc*>(cuda::workspace(size_t(A * S) * sizeof(Acc)));
    launch_rows<OP, T, Acc, Acc>(x, part, A * S, R, S, chunk, false, false, count);
    launch_rows<OP, Acc, Acc, T>(part, out, A, S, 1, S, true, mean, count);
    return;
  }
  const int64_t tiles = A * ((B + 31) / 32);
  int64_t S = 1;
  if (tiles < target && R >= 64) S = std::min<int64_t>((target + tiles - 1) / tiles, (R + 31) / 32);
  if (S <= 1) {
    launch_cols<OP, T, Acc, T>(x, out, A, R, B, 1, R, true, mean, count);
    return;
  }
  const int64_t chunk = (R + S - 1) / S;
  S = (R + chunk - 1) / chunk;
  Acc* part = static_cast<Acc*>(cuda::workspace(size_t(A * S * B) * sizeof(Acc)));
  launch_cols<OP, T, Acc, Acc>(x, part, A, R, B, S, chunk, false, false, count);
  launch_cols<OP, Acc, Acc, T>(part, out, A, S, B, 1, S, true, mean, count);
}

template <typename T>
void reduce_dispatch(ReduceOp op, const T* x, T* out, int64_t A, int64_t R, int64_t B) {
  switch (op) {
    case ReduceOp::Sum: reduce_arb<ReduceOp::Sum, T>(x, out, A, R, B, false); break;
    case ReduceOp::Mean: reduce_arb<ReduceOp::Sum, T>(x, out, A, R, B, true); break;
    case ReduceOp::Prod: reduce_arb<ReduceOp::Prod, T>(x, out, A, R, B, false); break;
    case ReduceOp::Max: reduce_arb<ReduceOp::Max, T>(x, out, A, R, B, false); break;
    case ReduceOp::Min: reduce_arb<ReduceOp::Min, T>(x, out, A, R, B, false); break;
  }
}

// ---- arg max/min ----

// Whether (v1, i1) wins over (v2, i2): an unset candidate (index < 0) always loses; a NaN
// beats any number; equal values (or two NaNs) go to the lower index.
template <bool MAX, typename C>
__device__ __forceinline__ bool arg_better(C v1, int64_t i1, C v2, int64_t i2) {
  if (i2 < 0) return true;
  if (i1 < 0) return false;
  const bool n1 = v1 != v1, n2 = v2 != v2;
  if (n1 || n2) return n1 && n2 ? i1 < i2 : n1;
  if (v1 == v2) return i1 < i2;
  return MAX ? v1 > v2 : v1 < v2;
}

// Rows of n contiguous values (row q at x + q * n); TPR threads per row.
template <typename T, bool MAX, int TPR>
__global__ void __launch_bounds__(cuda::kThreads)
arg_rows_kernel(const T* __restrict__ x, int64_t rows, int64_t n, TensorDesc od, TensorDesc id) {
  using C = compute_t<T>;
  constexpr int RPB = cuda::kThreads / TPR;
  __shared__ C sv[32];
  __shared__ int64_t si[32];
  const int sub = threadIdx.x / TPR, lane = threadIdx.x % TPR;
  for (int64_t q0 = int64_t(blockIdx.x) * RPB; q0 < rows; q0 += int64_t(gridDim.x) * RPB) {
    const int64_t q = q0 + sub;
    C bv = C(0);
    int64_t bi = -1;
    if (q < rows) {
      const T* p = x + q * n;
      for (int64_t j = lane; j < n; j += TPR) {
        const C v = cuda::load(p + j);
        if (arg_better<MAX>(v, j, bv, bi)) bv = v, bi = j;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const C ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (arg_better<MAX>(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if constexpr (TPR > 32) {
      constexpr int NW = TPR / 32;
      const int w = threadIdx.x >> 5;
      __syncthreads();
      if ((threadIdx.x & 31) == 0) sv[w] = bv, si[w] = bi;
      __syncthreads();
      if (threadIdx.x == 0) {
        for (int k = 0; k < NW; ++k)
          if (arg_better<MAX>(sv[k], si[k], bv, bi)) bv = sv[k], bi = si[k];
      }
    }
    if (lane == 0 && q < rows) {
      od.ptr<T>()[od.offset(q)] = x[q * n + bi];
      id.ptr<int64_t>()[id.offset(q)] = bi;
    }
  }
}

// x [outer, n, inner] contiguous, one thread per (o, k), the CPU's sequential scan.
template <typename T, bool MAX>
__global__ void arg_cols_kernel(const T* __restrict__ x, int64_t outer, int64_t n, int64_t inner,
                                TensorDesc od, TensorDesc id) {
  using C = compute_t<T>;
  MOX_GRID_STRIDE(q, outer * inner) {
    const int64_t o = q / inner, k = q % inner;
    const T* p = x + o * n * inner + k;
    C best = cuda::load(p);
    int64_t bi = 0;
    if (best == best) {
      for (int64_t j = 1; j < n; ++j) {
        const C v = cuda::load(p + j * inner);
        if (v != v) {
          best = v;
          bi = j;
          break;
        }
        if (MAX ? v > best : v < best) best = v, bi = j;
      }
    }
    od.ptr<T>()[od.offset(q)] = p[bi * inner];
    id.ptr<int64_t>()[id.offset(q)] = bi;
  }
}

template <typename T, bool MAX>
void arg_launch(const T* x, int64_t outer, int64_t n, int64_t inner, bool rows_layout,
                const TensorDesc& od, const TensorDesc& id) {
  if (rows_layout) {
    const int64_t rows = outer * inner;
    if (n <= 256) {
      constexpr int RPB = cuda::kThreads / 32;
      arg_rows_kernel<T, MAX, 32><<<capped_blocks((rows + RPB - 1) / RPB), cuda::kThreads, 0, cuda::stream()>>>(
          x, rows, n, od, id);
    } else {
      arg_rows_kernel<T, MAX, cuda::kThreads><<<capped_blocks(rows), cuda::kThreads, 0, cuda::stream()>>>(
          x, rows, n, od, id);
    }
  } else {
    arg_cols_kernel<T, MAX><<<cuda::blocks_for(outer * inner), cuda::kThreads, 0, cuda::stream()>>>(
        x, outer, n, inner, od, id);
  }
  MOX_CUDA_LAUNCHED("reduce_arg");
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes,
                         const Tensor& out) {
  MOX_CHECK(out.is_contiguous() && out.dtype() == x.dtype(), "reduce",
            "bad output " + out.desc() + " for input " + x.desc());
  const int64_t nd = x.dim();
  std::vector<bool> red(size_t(nd), false);
  for (int64_t a : axes) {
    MOX_CHECK(a >= 0 && a < nd, "reduce", "axis " + std::to_string(a) + " out of range for " + x.desc());
    red[size_t(a)] = true;
  }
  Shape expect = x.shape();
  for (int64_t d = 0; d < nd; d++)
    if (red[size_t(d)]) expect[size_t(d)] = 1;
  MOX_CHECK(out.shape() == expect, "reduce", "output " + out.desc() + " should be shaped " + shape_str(expect));
  int64_t R = 1;
  for (int64_t d = 0; d < nd; d++)
    if (red[size_t(d)]) R *= x.size(d);
  if (out.numel() == 0) return;
  if (R == 0) {  // empty reduction: the identity (sum 0, prod 1); max/min rejected by ops
    fill(out, op == ReduceOp::Prod ? 1.0 : 0.0);
    return;
  }
  if (R == 1) {  // only size-1 dims reduced: out is x (a mean divides by 1, exactly)
    copy(x, out);
    return;
  }

  Tensor src = x;
  int64_t A = 1, B = 1;
  bool direct = x.is_contiguous();
  if (direct) {
    // Blocks of consecutive same-kind dims (size-1 dims ignored); accept K? R? K?.
    std::vector<std::pair<bool, int64_t>> blocks;
    for (int64_t d = 0; d < nd; d++) {
      if (x.size(d) == 1) continue;
      if (!blocks.empty() && blocks.back().first == red[size_t(d)])
        blocks.back().second *= x.size(d);
      else
        blocks.push_back({red[size_t(d)], x.size(d)});
    }
    size_t i = 0;
    if (i < blocks.size() && !blocks[i].first) A = blocks[i++].second;
    if (i < blocks.size() && blocks[i].first) i++;
    if (i < blocks.size() && !blocks[i].first) B = blocks[i++].second;
    direct = i == blocks.size();
  }
  if (!direct) {
    std::vector<int64_t> perm;
    for (int64_t d = 0; d < nd; d++)
      if (!red[size_t(d)]) perm.push_back(d);
    for (int64_t d = 0; d < nd; d++)
      if (red[size_t(d)]) perm.push_back(d);
    src = x.detach().permute(perm).contiguous();
    A = out.numel();
    B = 1;
  }
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T,
                        reduce_dispatch<T>(op, static_cast<const T*>(src.raw_data()),
                                           static_cast<T*>(out.raw_data()), A, R, B));
}

void CudaBackend::reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& out,
                             const Tensor& indices) {
  MOX_CHECK(op == ReduceOp::Max || op == ReduceOp::Min, "reduce_arg", "only max/min have indices");
  MOX_CHECK(indices.dtype() == DType::I64, "reduce_arg", "indices must be i64, got " + indices.desc());
  MOX_CHECK(out.dtype() == x.dtype(), "reduce_arg", "output " + out.desc() + " must have x's dtype " + x.desc());
  MOX_CHECK(dim >= 0 && dim < std::max<int64_t>(x.dim(), 1), "reduce_arg",
            "dim " + std::to_string(dim) + " out of range for " + x.desc());
  const int64_t n = x.dim() == 0 ? 1 : x.size(dim);
  MOX_CHECK(n > 0, "max/min", "cannot reduce over an empty dimension of " + x.desc());
  Shape oshape = x.shape();
  if (x.dim() > 0) oshape[size_t(dim)] = 1;
  MOX_CHECK(out.shape() == oshape && indices.shape() == oshape, "reduce_arg",
            "outputs " + out.desc() + ", " + indices.desc() + " should be shaped " + shape_str(oshape));
  if (out.numel() == 0) return;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; d++) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); d++) inner *= x.size(d);
  Tensor src = x.detach().contiguous();
  bool rows_layout = inner == 1;
  if (!rows_layout && outer * inner < 4096 && n > 1024) {
    // Few long columns: transpose to rows so that a warp or block scans each one.
    src = src.reshape({outer, n, inner}).permute({0, 2, 1}).contiguous();
    rows_layout = true;
  }
  const TensorDesc od = cuda::desc(out, "reduce_arg"), id = cuda::desc(indices, "reduce_arg");
  const bool is_max = op == ReduceOp::Max;
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T, {
    const T* xp = static_cast<const T*>(src.raw_data());
    if (is_max) arg_launch<T, true>(xp, outer, n, inner, rows_layout, od, id);
    else arg_launch<T, false>(xp, outer, n, inner, rows_layout, od, id);
  });
}

}  // namespace mox
