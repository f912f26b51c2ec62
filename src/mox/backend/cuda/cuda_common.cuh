#pragma once
// What every CUDA kernel file of the backend shares: error checks that throw mox::Error,
// the device's one compute stream, strided tensor descriptors passed to kernels by value,
// dtype dispatch and loads/stores that convert to the compute type (f32 for f32/bf16/f16,
// f64 for f64, the integer itself for integers).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "mox/tensor/error.h"
#include "mox/tensor/tensor.h"

namespace mox::cuda {

// Throws mox::Error("cuda", "<what>: <CUDA's message>") when e is not cudaSuccess.
void check(cudaError_t e, const char* what);
#define MOX_CUDA_CHECK(expr) ::mox::cuda::check((expr), #expr)
// After a kernel launch: reports a bad launch configuration at once (not at the next sync).
#define MOX_CUDA_LAUNCHED(name) ::mox::cuda::check(cudaGetLastError(), name)

// The stream every kernel and copy of the backend is launched on (created non-blocking at
// start-up); the caching allocator's reuse relies on there being only this one.
cudaStream_t stream();
const cudaDeviceProp& props();
// A scratch buffer on the device of at least nbytes, valid until the next call (kernels
// queued on the stream before that call have finished using it by stream order).
void* workspace(size_t nbytes);

// ---------------------------------------------------------------------------------------
// Strided descriptors. Sizes and strides are in elements, outermost first; `data` points at
// element 0 (the tensor's offset applied). Up to kMaxDims dims; desc() coalesces adjacent
// dims that are contiguous with each other, so most tensors become one dim.
constexpr int kMaxDims = 8;
struct TensorDesc {
  char* data = nullptr;
  int dim = 0;
  bool contiguous = true;
  int64_t numel = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  // Element offset of the i-th element in row-major order of the logical shape.
  __host__ __device__ __forceinline__ int64_t offset(int64_t i) const {
    if (contiguous) return i;
    int64_t off = 0;
#pragma unroll
    for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d >= dim) continue;
      int64_t s = sizes[d];
      off += (i % s) * strides[d];
      i /= s;
    }
    return off;
  }
  template <typename T> __host__ __device__ __forceinline__ T* ptr() const {
    return reinterpret_cast<T*>(data);
  }
};

// Describes t (any strides; rank <= kMaxDims after merging dims); throws mox::Error naming
// `where` otherwise. Dims of size 1 are dropped and mergeable dims merged.
TensorDesc desc(const Tensor& t, const char* where);
// Describes t with `shape` (t's shape, with t broadcast to it by stride-0 dims) so that
// several operands can be indexed by one linear index; dims merged only where every
// operand allows, hence the joint form.
void joint_desc(const Tensor* const* ts, int n, TensorDesc* out, const char* where);

// ---------------------------------------------------------------------------------------
// Compute types and conversions.
template <typename T> struct Compute { using type = T; };
template <> struct Compute<float> { using type = float; };
template <> struct Compute<__nv_bfloat16> { using type = float; };
template <> struct Compute<__half> { using type = float; };
template <typename T> using compute_t = typename Compute<T>::type;

template <typename T> __device__ __forceinline__ compute_t<T> load(const T* p) { return *p; }
template <> __device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
template <> __device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }

template <typename T, typename V> __device__ __forceinline__ void store(T* p, V v) { *p = T(v); }
template <typename V> __device__ __forceinline__ void store(__nv_bfloat16* p, V v) {
  *p = __float2bfloat16_rn(float(v));
}
template <typename V> __device__ __forceinline__ void store(__half* p, V v) {
  *p = __float2half_rn(float(v));
}

// A compute value (float, double or an integer) to the storage type D the way the CPU's
// convert<D>(S) does it: halves round to nearest even through f32; floating -> 8-bit
// integers goes through i64 and wraps, like x86's truncating conversion followed by a
// narrowing (PTX would saturate).
template <typename D, typename V> __device__ __forceinline__ D convert_to(V v) {
  if constexpr (std::is_same_v<D, V>) {
    return v;
  } else if constexpr (std::is_same_v<D, __nv_bfloat16>) {
    return __float2bfloat16_rn(float(v));
  } else if constexpr (std::is_same_v<D, __half>) {
    return __float2half_rn(float(v));
  } else if constexpr (std::is_floating_point_v<V> && std::is_integral_v<D> && sizeof(D) < 4) {
    return D(int64_t(v));
  } else {
    return static_cast<D>(v);
  }
}

// The C++ type a mox DType is stored as on the device.
template <DType D> struct DeviceType;
template <> struct DeviceType<DType::F32> { using type = float; };
template <> struct DeviceType<DType::F64> { using type = double; };
template <> struct DeviceType<DType::BF16> { using type = __nv_bfloat16; };
template <> struct DeviceType<DType::F16> { using type = __half; };
template <> struct DeviceType<DType::I64> { using type = int64_t; };
template <> struct DeviceType<DType::I32> { using type = int32_t; };
template <> struct DeviceType<DType::I8> { using type = int8_t; };
template <> struct DeviceType<DType::U8> { using type = uint8_t; };

// MOX_CUDA_DISPATCH_FLOAT(dtype, T, where, body): T bound to float, double, __nv_bfloat16
// or __half; other dtypes throw mox::Error naming `where`.
#define MOX_CUDA_DISPATCH_FLOAT(DT, T, where, ...)                                          \
  switch (DT) {                                                                             \
    case ::mox::DType::F32: { using T = float; __VA_ARGS__; break; }                        \
    case ::mox::DType::F64: { using T = double; __VA_ARGS__; break; }                       \
    case ::mox::DType::BF16: { using T = __nv_bfloat16; __VA_ARGS__; break; }               \
    case ::mox::DType::F16: { using T = __half; __VA_ARGS__; break; }                       \
    default:                                                                                \
      throw ::mox::Error((where), std::string("unsupported dtype ") + ::mox::dtype_name(DT)); \
  }
// Every dtype (floating and integer).
#define MOX_CUDA_DISPATCH_ALL(DT, T, ...)                                   \
  switch (DT) {                                                             \
    case ::mox::DType::F32: { using T = float; __VA_ARGS__; break; }        \
    case ::mox::DType::F64: { using T = double; __VA_ARGS__; break; }       \
    case ::mox::DType::BF16: { using T = __nv_bfloat16; __VA_ARGS__; break; } \
    case ::mox::DType::F16: { using T = __half; __VA_ARGS__; break; }       \
    case ::mox::DType::I64: { using T = int64_t; __VA_ARGS__; break; }      \
    case ::mox::DType::I32: { using T = int32_t; __VA_ARGS__; break; }      \
    case ::mox::DType::I8: { using T = int8_t; __VA_ARGS__; break; }        \
    case ::mox::DType::U8: { using T = uint8_t; __VA_ARGS__; break; }       \
  }

// ---------------------------------------------------------------------------------------
// Launch shapes.
constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  const int64_t cap = int64_t(props().multiProcessorCount) * 32;  // grid-stride beyond this
  return unsigned(b < 1 ? 1 : (b > cap ? cap : b));
}
#define MOX_GRID_STRIDE(i, n)                                                              \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);                 \
       i += int64_t(blockDim.x) * gridDim.x)

// Warp and block reductions (blockDim.x a multiple of 32, at most 1024).
template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T> __device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block; every thread gets the result. `shared` holds >= 32 Ts.
template <typename T> __device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) shared[wid] = v;
  __syncthreads();
  T r = lane < nw ? shared[lane] : T(0);
  return warp_sum(r);
}
template <typename T> __device__ __forceinline__ T block_max(T v, T* shared, T lowest) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[wid] = v;
  __syncthreads();
  T r = lane < nw ? shared[lane] : lowest;
  return warp_max(r);
}

}  // namespace mox::cuda
