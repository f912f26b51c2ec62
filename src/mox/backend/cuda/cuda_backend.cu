// Device set-up, the stream, the caching allocator, host copies and tensor descriptors.
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

#include "mox/backend/caching_allocator.h"
#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/cuda/cuda_common.cuh"

namespace mox {
namespace cuda {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a sticky launch error so that the next call reports its own
    throw Error("cuda", std::string(what) + ": " + cudaGetErrorString(e));
  }
}

namespace {
struct DeviceState {
  cudaStream_t stream = nullptr;
  cudaDeviceProp props{};
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};
DeviceState& state() {
  static DeviceState s;
  return s;
}
}  // namespace

cudaStream_t stream() { return state().stream; }
const cudaDeviceProp& props() { return state().props; }

void* workspace(size_t nbytes) {
  DeviceState& s = state();
  if (nbytes > s.workspace_bytes) {
    // Work queued before this call may still read the old buffer: free it in stream order.
    if (s.workspace) MOX_CUDA_CHECK(cudaFreeAsync(s.workspace, s.stream));
    size_t n = std::max(nbytes, size_t(32) << 20);
    MOX_CUDA_CHECK(cudaMallocAsync(&s.workspace, n, s.stream));
    s.workspace_bytes = n;
  }
  return s.workspace;
}

namespace {

// Drops size-1 dims and merges dim d into d+1 where stride[d] == stride[d+1] * size[d+1]
// holds for every operand; the result has the common logical order.
void merge_dims(std::vector<int64_t>& sizes, std::vector<std::vector<int64_t>>& strides) {
  std::vector<int64_t> ns;
  std::vector<std::vector<int64_t>> nst(strides.size());
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 1) continue;
    bool mergeable = !ns.empty();
    for (size_t k = 0; k < strides.size() && mergeable; ++k)
      mergeable = nst[k].back() == strides[k][d] * sizes[d];
    if (mergeable) {
      ns.back() *= sizes[d];
      for (size_t k = 0; k < strides.size(); ++k) nst[k].back() = strides[k][d];
    } else {
      ns.push_back(sizes[d]);
      for (size_t k = 0; k < strides.size(); ++k) nst[k].push_back(strides[k][d]);
    }
  }
  sizes = ns;
  strides = nst;
}

TensorDesc make_desc(const Tensor& t, const std::vector<int64_t>& sizes,
                     const std::vector<int64_t>& strides, const char* where) {
  if (sizes.size() > size_t(kMaxDims))
    throw Error(where, "tensor " + t.desc() + " has more than " + std::to_string(kMaxDims) +
                           " non-mergeable dims");
  TensorDesc d;
  d.data = static_cast<char*>(t.raw_data());
  d.dim = int(sizes.size());
  d.numel = t.numel();
  int64_t expected = 1;
  d.contiguous = true;
  for (int i = d.dim - 1; i >= 0; --i) {
    d.sizes[i] = sizes[i];
    d.strides[i] = strides[i];
    if (strides[i] != expected) d.contiguous = false;
    expected *= sizes[i];
  }
  return d;
}

}  // namespace

TensorDesc desc(const Tensor& t, const char* where) {
  std::vector<int64_t> sizes(t.shape().begin(), t.shape().end());
  std::vector<std::vector<int64_t>> strides{std::vector<int64_t>(t.strides().begin(), t.strides().end())};
  merge_dims(sizes, strides);
  return make_desc(t, sizes, strides[0], where);
}

void joint_desc(const Tensor* const* ts, int n, TensorDesc* out, const char* where) {
  const Shape& shape = ts[0]->shape();
  std::vector<int64_t> sizes(shape.begin(), shape.end());
  std::vector<std::vector<int64_t>> strides;
  for (int k = 0; k < n; ++k) {
    if (ts[k]->shape() != shape)
      throw Error(where, "operands " + ts[0]->desc() + " and " + ts[k]->desc() + " differ in shape");
    strides.emplace_back(ts[k]->strides().begin(), ts[k]->strides().end());
  }
  merge_dims(sizes, strides);
  for (int k = 0; k < n; ++k) out[k] = make_desc(*ts[k], sizes, strides[k], where);
}

}  // namespace cuda

// ---------------------------------------------------------------------------------------

CudaBackend::CudaBackend() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error("device", std::string("cuda: no usable CUDA device (") + cudaGetErrorString(e) + ")");
  }
  if (n == 0) throw Error("device", "cuda: no CUDA device is visible");
  MOX_CUDA_CHECK(cudaSetDevice(0));
  auto& s = cuda::state();
  MOX_CUDA_CHECK(cudaGetDeviceProperties(&s.props, 0));
  MOX_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
}

Allocator& CudaBackend::allocator() {
  // Never destroyed: tensors held by statics may outlive every other static.
  static CachingAllocator* a = new CachingAllocator(
      "cuda allocator",
      [](size_t n) -> void* {
        void* p = nullptr;
        if (cudaMalloc(&p, n) != cudaSuccess) {
          cudaGetLastError();
          return nullptr;
        }
        return p;
      },
      [](void* p) { cudaFree(p); });
  return *a;
}

void CudaBackend::synchronize() { MOX_CUDA_CHECK(cudaStreamSynchronize(cuda::stream())); }

void CudaBackend::copy_from_host(const void* src, const Tensor& dst) {
  MOX_CHECK(dst.is_contiguous(), "copy_from_host", "destination must be contiguous, got " + dst.desc());
  size_t n = size_t(dst.numel()) * dst.element_size();
  if (n == 0) return;
  // Pageable host memory: cudaMemcpyAsync stages it and returns once src may be reused.
  MOX_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src, n, cudaMemcpyHostToDevice, cuda::stream()));
}

void CudaBackend::copy_to_host(const Tensor& src, void* dst) {
  MOX_CHECK(src.is_contiguous(), "copy_to_host", "source must be contiguous, got " + src.desc());
  size_t n = size_t(src.numel()) * src.element_size();
  if (n == 0) return;
  MOX_CUDA_CHECK(cudaMemcpyAsync(dst, src.raw_data(), n, cudaMemcpyDeviceToHost, cuda::stream()));
  MOX_CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
}

std::string cuda_device_summary() {
  const cudaDeviceProp& p = cuda::props();
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s, %d multiprocessors, %.0f GiB, compute capability %d.%d", p.name,
                p.multiProcessorCount, double(p.totalGlobalMem) / double(size_t(1) << 30), p.major, p.minor);
  return buf;
}

// Called by backend_for(cuda) once; returns nullptr (and why) when there is no device.
Backend* create_cuda_backend(std::string* why) {
  try {
    static CudaBackend* b = new CudaBackend();
    return b;
  } catch (const Error& e) {
    *why = e.detail();
    return nullptr;
  }
}

}  // namespace mox
