// Indexing kernels: index_select / index_add along one dim of contiguous tensors, and
// gather / scatter_add (PyTorch semantics, any dim, any strides), as the CPU's cpu_index.cpp.
// Index values are validated on the device before the main kernel runs: a small kernel
// records the first out-of-range position, the host reads it back (one stream sync) and
// throws mox::Error with the CPU's message, so a bad index never reads or writes out of
// bounds and the destination is left untouched. Additions use atomics (the order of
// repeated indices is not fixed, so f32 sums may differ from the CPU's in the last bits).
#include <algorithm>
#include <climits>
#include <string>
#include <type_traits>

#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/cuda/cuda_common.cuh"
#include "mox/backend/arg_checks.h"

namespace mox {

namespace {

// ---- atomics for every dtype ----
template <typename T> __device__ __forceinline__ void atomic_add(T* p, T v);
template <> __device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
template <> __device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
template <> __device__ __forceinline__ void atomic_add(__nv_bfloat16* p, __nv_bfloat16 v) {
  atomicAdd(p, v);  // sm_80+: rounds the sum to bf16 like the CPU's bf16(float(d) + float(s))
}
template <> __device__ __forceinline__ void atomic_add(__half* p, __half v) { atomicAdd(p, v); }
template <> __device__ __forceinline__ void atomic_add(int64_t* p, int64_t v) {
  atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));  // wraps
}
template <> __device__ __forceinline__ void atomic_add(int32_t* p, int32_t v) { atomicAdd(p, v); }
// 8-bit: a compare-and-swap loop on the aligned 32-bit word holding the byte.
template <typename B>
__device__ __forceinline__ void atomic_add_byte(B* p, B v) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  unsigned int* word = reinterpret_cast<unsigned int*>(addr & ~uintptr_t(3));
  const unsigned int shift = unsigned(addr & 3) * 8;
  unsigned int old = *word, assumed;
  do {
    assumed = old;
    const B cur = B((assumed >> shift) & 0xffu);
    const unsigned int sum = unsigned(uint8_t(B(cur + v)));
    const unsigned int next = (assumed & ~(0xffu << shift)) | (sum << shift);
    old = atomicCAS(word, assumed, next);
  } while (old != assumed);
}
template <> __device__ __forceinline__ void atomic_add(int8_t* p, int8_t v) { atomic_add_byte(p, v); }
template <> __device__ __forceinline__ void atomic_add(uint8_t* p, uint8_t v) { atomic_add_byte(p, v); }

// ---- index validation ----

// Flag buffer: the lowest linear position of an out-of-range index (ULLONG_MAX: none).
unsigned long long* bad_slot() {
  static unsigned long long* p = [] {
    void* q = nullptr;
    MOX_CUDA_CHECK(cudaMalloc(&q, sizeof(unsigned long long)));
    return static_cast<unsigned long long*>(q);
  }();
  return p;
}

// Up to kMaxIdxDims dims of the index tensor, for strided positions.
constexpr int kMaxIdxDims = 16;
struct IndexShape {
  int dim = 0;
  int64_t sizes[kMaxIdxDims] = {};
  int64_t strides[kMaxIdxDims] = {};
};

__device__ __forceinline__ int64_t index_offset(const IndexShape& s, int64_t i) {
  int64_t off = 0;
  for (int d = s.dim - 1; d >= 0; --d) {
    off += (i % s.sizes[d]) * s.strides[d];
    i /= s.sizes[d];
  }
  return off;
}

__global__ void check_index_kernel(const int64_t* idx, IndexShape s, int64_t n, bool contiguous,
                                   int64_t size, unsigned long long* bad) {
  MOX_GRID_STRIDE(i, n) {
    const int64_t v = idx[contiguous ? i : index_offset(s, i)];
    if (v < 0 || v >= size) atomicMin(bad, static_cast<unsigned long long>(i));
  }
}

IndexShape index_shape(const Tensor& index, const char* op) {
  if (index.dim() > kMaxIdxDims)
    throw Error(op, "index " + index.desc() + " has more than " + std::to_string(kMaxIdxDims) + " dims");
  IndexShape s;
  s.dim = int(index.dim());
  for (int d = 0; d < s.dim; ++d) {
    s.sizes[d] = index.size(d);
    s.strides[d] = index.stride(d);
  }
  return s;
}

// Checks every value of `index` against [0, size); throws the CPU's message for the first
// bad one in row-major order. One stream synchronisation.
void check_bounds(const Tensor& index, int64_t dim, int64_t size, const char* op) {
  const int64_t n = index.numel();
  if (n == 0) return;
  unsigned long long* bad = bad_slot();
  MOX_CUDA_CHECK(cudaMemsetAsync(bad, 0xff, sizeof(*bad), cuda::stream()));
  const IndexShape s = index_shape(index, op);
  const int64_t* idx = static_cast<const int64_t*>(index.raw_data());
  check_index_kernel<<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
      idx, s, n, index.is_contiguous(), size, bad);
  MOX_CUDA_LAUNCHED(op);
  unsigned long long pos = 0;
  MOX_CUDA_CHECK(cudaMemcpyAsync(&pos, bad, sizeof(pos), cudaMemcpyDeviceToHost, cuda::stream()));
  MOX_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
  if (pos == ULLONG_MAX) return;
  // Read the offending value (error path only).
  int64_t off = 0, rem = int64_t(pos);
  for (int d = s.dim - 1; d >= 0; --d) {
    off += (rem % s.sizes[d]) * s.strides[d];
    rem /= s.sizes[d];
  }
  int64_t v = 0;
  MOX_CUDA_CHECK(cudaMemcpy(&v, idx + off, sizeof(v), cudaMemcpyDeviceToHost));
  throw Error(op, "index " + std::to_string(v) + " is out of bounds for dim " + std::to_string(dim) +
                      " with size " + std::to_string(size));
}

// ---- shared checks: backend/arg_checks.h, and check_dim ----
using namespace arg_checks;

void check_dim(const Tensor& t, int64_t dim, const char* op) {
  if (dim < 0 || dim >= std::max<int64_t>(t.dim(), 1))
    throw Error(op, "dim " + std::to_string(dim) + " out of range for " + t.desc());
}

// ---- index_select: out [outer, K, inner] = src [outer, S, inner] at idx [K] ----
// U is a unit of `unit` bytes; rows are `row` units long.
template <typename U>
__global__ void index_select_kernel(const U* __restrict__ src, U* __restrict__ out,
                                    const int64_t* __restrict__ idx, int64_t outer, int64_t S,
                                    int64_t K, int64_t row) {
  MOX_GRID_STRIDE(i, outer * K * row) {
    const int64_t j = i % row, r = i / row;
    const int64_t a = r / K, k = r % K;
    out[i] = src[(a * S + idx[k]) * row + j];
  }
}

template <typename U>
void launch_select(const void* src, void* out, const int64_t* idx, int64_t outer, int64_t S, int64_t K,
                   int64_t row) {
  index_select_kernel<U><<<cuda::blocks_for(outer * K * row), cuda::kThreads, 0, cuda::stream()>>>(
      static_cast<const U*>(src), static_cast<U*>(out), idx, outer, S, K, row);
  MOX_CUDA_LAUNCHED("index_select");
}

// ---- index_add: dst [outer, S, inner] += src [outer, K, inner] at idx [K] ----
template <typename T>
__global__ void index_add_kernel(T* dst, const T* __restrict__ src, const int64_t* __restrict__ idx,
                                 int64_t outer, int64_t S, int64_t K, int64_t inner) {
  MOX_GRID_STRIDE(i, outer * K * inner) {
    const int64_t j = i % inner, r = i / inner;
    const int64_t a = r / K, k = r % K;
    atomic_add(dst + (a * S + idx[k]) * inner + j, src[i]);
  }
}

// ---- gather / scatter_add over index's shape, each operand with its own strides ----
struct Lines {
  int dim = 0;   // rank (0 for a scalar: one element)
  int axis = 0;  // the indexed dim
  int64_t sizes[kMaxIdxDims] = {};
  int64_t istr[kMaxIdxDims] = {};  // index
  int64_t sstr[kMaxIdxDims] = {};  // src
  int64_t ostr[kMaxIdxDims] = {};  // out (gather) or dst (scatter_add)
};

// Offsets for the i-th element of index (row-major): index and the "direct" operand (out
// for gather, src for scatter) use every coordinate; the indexed operand skips `axis`.
__device__ __forceinline__ void line_offsets(const Lines& l, int64_t i, const int64_t* d_str,
                                             const int64_t* x_str, int64_t& ioff, int64_t& doff,
                                             int64_t& xoff) {
  ioff = doff = xoff = 0;
  for (int d = l.dim - 1; d >= 0; --d) {
    const int64_t c = i % l.sizes[d];
    i /= l.sizes[d];
    ioff += c * l.istr[d];
    doff += c * d_str[d];
    if (d != l.axis) xoff += c * x_str[d];
  }
}

template <typename T>
__global__ void gather_kernel(const T* __restrict__ src, T* __restrict__ out,
                              const int64_t* __restrict__ idx, Lines l, int64_t n, int64_t sst) {
  MOX_GRID_STRIDE(i, n) {
    int64_t io, oo, so;
    line_offsets(l, i, l.ostr, l.sstr, io, oo, so);
    out[oo] = src[so + idx[io] * sst];
  }
}

template <typename T>
__global__ void scatter_add_kernel(T* dst, const T* __restrict__ src, const int64_t* __restrict__ idx,
                                   Lines l, int64_t n, int64_t dst_st) {
  MOX_GRID_STRIDE(i, n) {
    int64_t io, so, dofs;
    line_offsets(l, i, l.sstr, l.ostr, io, so, dofs);
    atomic_add(dst + dofs + idx[io] * dst_st, src[so]);
  }
}

Lines make_lines(const Tensor& index, const Tensor& src, const Tensor& other, int64_t dim, const char* op) {
  if (index.dim() > kMaxIdxDims)
    throw Error(op, "index " + index.desc() + " has more than " + std::to_string(kMaxIdxDims) + " dims");
  Lines l;
  l.dim = int(index.dim());
  l.axis = int(dim);
  for (int d = 0; d < l.dim; ++d) {
    l.sizes[d] = index.size(d);
    l.istr[d] = index.stride(d);
    l.sstr[d] = src.stride(d);
    l.ostr[d] = other.stride(d);
  }
  return l;
}

}  // namespace

void CudaBackend::index_select(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) {
  const char* op = "index_select";
  check_index_tensor(index, op);
  check_contiguous(src, op, "source");
  check_contiguous(index, op, "index");
  check_contiguous(out, op, "output");
  check_same_dtype(src, out, op);
  check_dim(src, dim, op);
  int64_t outer, S, inner;
  split_dims(src, dim, outer, S, inner);
  const int64_t K = index.numel();
  if (out.numel() != outer * K * inner)
    throw Error(op, "output " + out.desc() + " does not hold " + std::to_string(K) +
                        " selected slices of " + src.desc());
  check_bounds(index, dim, S, op);
  if (out.numel() == 0) return;
  const int64_t* idx = static_cast<const int64_t*>(index.raw_data());
  // Move rows in the widest unit that divides the row and the base addresses.
  const size_t row_bytes = size_t(inner) * src.element_size();
  const uintptr_t addr = reinterpret_cast<uintptr_t>(src.raw_data()) | reinterpret_cast<uintptr_t>(out.raw_data());
  size_t unit = 16;
  while (unit > 1 && (row_bytes % unit != 0 || addr % unit != 0)) unit /= 2;
  const int64_t row = int64_t(row_bytes / unit);
  switch (unit) {
    case 16: launch_select<uint4>(src.raw_data(), out.raw_data(), idx, outer, S, K, row); break;
    case 8: launch_select<uint2>(src.raw_data(), out.raw_data(), idx, outer, S, K, row); break;
    case 4: launch_select<uint32_t>(src.raw_data(), out.raw_data(), idx, outer, S, K, row); break;
    case 2: launch_select<uint16_t>(src.raw_data(), out.raw_data(), idx, outer, S, K, row); break;
    default: launch_select<uint8_t>(src.raw_data(), out.raw_data(), idx, outer, S, K, row); break;
  }
}

void CudaBackend::index_add(const Tensor& dst, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "index_add";
  check_index_tensor(index, op);
  check_contiguous(dst, op, "destination");
  check_contiguous(src, op, "source");
  check_contiguous(index, op, "index");
  check_same_dtype(dst, src, op);
  check_dim(dst, dim, op);
  int64_t outer, S, inner;
  split_dims(dst, dim, outer, S, inner);
  const int64_t K = index.numel();
  if (src.numel() != outer * K * inner)
    throw Error(op, "source " + src.desc() + " does not match " + std::to_string(K) +
                        " indexed slices of " + dst.desc());
  check_bounds(index, dim, S, op);
  if (src.numel() == 0) return;
  const int64_t* idx = static_cast<const int64_t*>(index.raw_data());
  MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, {
    index_add_kernel<T><<<cuda::blocks_for(src.numel()), cuda::kThreads, 0, cuda::stream()>>>(
        static_cast<T*>(dst.raw_data()), static_cast<const T*>(src.raw_data()), idx, outer, S, K, inner);
    MOX_CUDA_LAUNCHED(op);
  });
}

void CudaBackend::gather(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) {
  const char* op = "gather";
  check_index_tensor(index, op);
  check_same_dtype(src, out, op);
  check_dim(src, dim, op);
  check_index_shape(index, src, dim, false, op, "source");
  if (out.shape() != index.shape())
    throw Error(op, "output " + out.desc() + " must be shaped like index " + index.desc());
  const int64_t size = src.dim() == 0 ? 1 : src.size(dim);
  check_bounds(index, dim, size, op);
  const int64_t n = index.numel();
  if (n == 0) return;
  const Lines l = make_lines(index, src, out, dim, op);
  const int64_t sst = src.dim() == 0 ? 0 : src.stride(dim);
  const int64_t* idx = static_cast<const int64_t*>(index.raw_data());
  MOX_CUDA_DISPATCH_ALL(src.dtype(), T, {
    gather_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        static_cast<const T*>(src.raw_data()), static_cast<T*>(out.raw_data()), idx, l, n, sst);
    MOX_CUDA_LAUNCHED(op);
  });
}

void CudaBackend::scatter_add(const Tensor& dst, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "scatter_add";
  check_index_tensor(index, op);
  check_same_dtype(dst, src, op);
  check_dim(dst, dim, op);
  check_index_shape(index, dst, dim, false, op, "destination");
  check_index_shape(index, src, dim, true, op, "source");
  const int64_t size = dst.dim() == 0 ? 1 : dst.size(dim);
  check_bounds(index, dim, size, op);
  const int64_t n = index.numel();
  if (n == 0) return;
  const Lines l = make_lines(index, src, dst, dim, op);
  const int64_t dst_st = dst.dim() == 0 ? 0 : dst.stride(dim);
  const int64_t* idx = static_cast<const int64_t*>(index.raw_data());
  MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, {
    scatter_add_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        static_cast<T*>(dst.raw_data()), static_cast<const T*>(src.raw_data()), idx, l, n, dst_st);
    MOX_CUDA_LAUNCHED(op);
  });
}

}  // namespace mox
