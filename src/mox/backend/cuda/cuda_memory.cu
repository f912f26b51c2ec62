// Copies (strided, converting between any two dtypes), fills, arange, and the random fills.
// Conversions follow the CPU's cpu::convert: bf16/f16 go through f32 (round to nearest
// even), floating -> integer truncates toward zero, integer -> integer wraps.
// Random fills are counter-based (Philox 4x32-10): each call draws ONE u64 from the
// mox::Generator as the Philox key and element group i uses counter i, so a seed gives the
// same tensor on every run and launch shape (the numbers differ from the CPU's stream).
#include <cstring>
#include <type_traits>

#include "mox/backend/cpu/convert.h"
#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/cuda/cuda_common.cuh"
#include "mox/tensor/generator.h"

namespace mox {

namespace {

using cuda::TensorDesc;

template <typename T>
constexpr bool kIsHalf = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

using cuda::convert_to;  // cuda_common.cuh

// ---- copy ----

// Same-dtype strided copy: moves bytes (U has the element's size).
template <typename U>
__global__ void copy_bits_kernel(TensorDesc s, TensorDesc d) {
  const U* sp = s.ptr<const U>();
  U* dp = d.ptr<U>();
  MOX_GRID_STRIDE(i, d.numel) dp[d.offset(i)] = sp[s.offset(i)];
}

template <typename S, typename D>
__global__ void copy_convert_kernel(TensorDesc s, TensorDesc d) {
  const S* sp = s.ptr<const S>();
  D* dp = d.ptr<D>();
  if (s.contiguous && d.contiguous) {
    MOX_GRID_STRIDE(i, d.numel) dp[i] = convert_to<D>(cuda::load(sp + i));
  } else {
    MOX_GRID_STRIDE(i, d.numel) dp[d.offset(i)] = convert_to<D>(cuda::load(sp + s.offset(i)));
  }
}

template <typename U>
void launch_copy_bits(const TensorDesc& s, const TensorDesc& d) {
  copy_bits_kernel<U><<<cuda::blocks_for(d.numel), cuda::kThreads, 0, cuda::stream()>>>(s, d);
  MOX_CUDA_LAUNCHED("copy");
}

// ---- fill ----

template <typename U>
__global__ void fill_kernel(TensorDesc d, U bits) {
  U* dp = d.ptr<U>();
  if (d.contiguous) {
    MOX_GRID_STRIDE(i, d.numel) dp[i] = bits;
  } else {
    MOX_GRID_STRIDE(i, d.numel) dp[d.offset(i)] = bits;
  }
}

template <typename U>
void launch_fill(const TensorDesc& d, uint64_t bits) {
  fill_kernel<U><<<cuda::blocks_for(d.numel), cuda::kThreads, 0, cuda::stream()>>>(d, U(bits));
  MOX_CUDA_LAUNCHED("fill");
}

// The bit pattern of cpu::convert<T>(value) for dst's dtype (computed on the host exactly
// as the CPU computes it).
uint64_t value_bits(DType dt, double value) {
  uint64_t bits = 0;
  MOX_DISPATCH_ALL(dt, T, {
    const T v = cpu::convert<T>(value);
    static_assert(sizeof(T) <= sizeof(bits));
    std::memcpy(&bits, &v, sizeof(T));
  });
  return bits;
}

// ---- arange ----

template <typename T>
__global__ void arange_kernel(T* d, int64_t n, double start, double step) {
  MOX_GRID_STRIDE(i, n) d[i] = convert_to<T>(start + double(i) * step);
}

// ---- Philox 4x32-10 ----

struct U4 {
  uint32_t x, y, z, w;
};

__device__ __forceinline__ U4 philox(uint64_t counter, uint64_t key) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    const uint32_t lo0 = 0xD2511F53u * c0, hi0 = __umulhi(0xD2511F53u, c0);
    const uint32_t lo1 = 0xCD9E8D57u * c2, hi1 = __umulhi(0xCD9E8D57u, c2);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return U4{c0, c1, c2, c3};
}

// [0, 1) from 24 bits (f32 resolution) and from 53 bits (two words).
__device__ __forceinline__ float u24(uint32_t x) { return float(x >> 8) * 0x1.0p-24f; }
__device__ __forceinline__ double u53(uint32_t a, uint32_t b) {
  const uint64_t v = (uint64_t(a) << 32) | b;
  return double(v >> 11) * 0x1.0p-53;
}

// Generators: kPer values per Philox block, produced as doubles (then converted like the
// CPU converts its double draws).
struct UniformF {  // f32 resolution, for f32/bf16/f16 outputs
  static constexpr int kPer = 4;
  double lo, span;
  __device__ void operator()(U4 r, double* v) const {
    v[0] = lo + span * double(u24(r.x));
    v[1] = lo + span * double(u24(r.y));
    v[2] = lo + span * double(u24(r.z));
    v[3] = lo + span * double(u24(r.w));
  }
};
struct UniformD {  // 53-bit draws, for f64 and integer outputs
  static constexpr int kPer = 2;
  double lo, span;
  __device__ void operator()(U4 r, double* v) const {
    v[0] = lo + span * u53(r.x, r.y);
    v[1] = lo + span * u53(r.z, r.w);
  }
};
struct NormalF {  // Box-Muller in f32
  static constexpr int kPer = 4;
  double mean, std;
  __device__ void operator()(U4 r, double* v) const {
    // u1 in (0, 1] so that the log is finite.
    const float u1a = float((r.x >> 8) + 1) * 0x1.0p-24f, u2a = u24(r.y);
    const float u1b = float((r.z >> 8) + 1) * 0x1.0p-24f, u2b = u24(r.w);
    const float ra = sqrtf(-2.0f * logf(u1a)), rb = sqrtf(-2.0f * logf(u1b));
    float sa, ca, sb, cb;
    sincospif(2.0f * u2a, &sa, &ca);
    sincospif(2.0f * u2b, &sb, &cb);
    v[0] = mean + std * double(ra * ca);
    v[1] = mean + std * double(ra * sa);
    v[2] = mean + std * double(rb * cb);
    v[3] = mean + std * double(rb * sb);
  }
};
struct NormalD {  // Box-Muller in f64
  static constexpr int kPer = 2;
  double mean, std;
  __device__ void operator()(U4 r, double* v) const {
    const double u1 = 1.0 - u53(r.x, r.y);  // (0, 1]
    const double u2 = u53(r.z, r.w);
    const double rad = sqrt(-2.0 * log(u1));
    double s, c;
    sincospi(2.0 * u2, &s, &c);
    v[0] = mean + std * rad * c;
    v[1] = mean + std * rad * s;
  }
};
struct BernoulliF {  // 1 with probability p (24-bit resolution: exact for p = 0 and 1)
  static constexpr int kPer = 4;
  double p;
  __device__ void operator()(U4 r, double* v) const {
    v[0] = double(u24(r.x)) < p ? 1.0 : 0.0;
    v[1] = double(u24(r.y)) < p ? 1.0 : 0.0;
    v[2] = double(u24(r.z)) < p ? 1.0 : 0.0;
    v[3] = double(u24(r.w)) < p ? 1.0 : 0.0;
  }
};
struct RandintG {  // lo + [0, n) by a 64x64 multiply-high (bias below 2^-32 for n < 2^32)
  static constexpr int kPer = 2;
  int64_t lo;
  uint64_t n;
  __device__ void operator()(U4 r, double* v) const {
    const uint64_t a = (uint64_t(r.x) << 32) | r.y, b = (uint64_t(r.z) << 32) | r.w;
    v[0] = double(lo + int64_t(__umul64hi(a, n)));
    v[1] = double(lo + int64_t(__umul64hi(b, n)));
  }
};

template <typename T, typename G>
__global__ void random_kernel(TensorDesc d, uint64_t key, G gen) {
  constexpr int P = G::kPer;
  const int64_t groups = (d.numel + P - 1) / P;
  T* dp = d.ptr<T>();
  MOX_GRID_STRIDE(gi, groups) {
    double v[P];
    gen(philox(uint64_t(gi), key), v);
#pragma unroll
    for (int k = 0; k < P; ++k) {
      const int64_t i = gi * P + k;
      if (i < d.numel) dp[d.offset(i)] = convert_to<T>(v[k]);
    }
  }
}

template <typename T, typename G>
void launch_random(const TensorDesc& d, uint64_t key, const G& gen, const char* name) {
  const int64_t groups = (d.numel + G::kPer - 1) / G::kPer;
  random_kernel<T, G><<<cuda::blocks_for(groups), cuda::kThreads, 0, cuda::stream()>>>(d, key, gen);
  MOX_CUDA_LAUNCHED(name);
}

bool draws_f32(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

}  // namespace

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  MOX_CHECK(src.shape() == dst.shape(), "copy", "shape mismatch " + src.desc() + " -> " + dst.desc());
  MOX_CHECK(src.device() == dst.device(), "copy",
            "tensors on different devices: " + src.device().str() + " -> " + dst.device().str());
  if (src.numel() == 0) return;
  const Tensor* ts[2] = {&src, &dst};
  TensorDesc d[2];
  cuda::joint_desc(ts, 2, d, "copy");
  if (src.dtype() == dst.dtype()) {
    if (d[0].contiguous && d[1].contiguous) {
      if (d[0].data == d[1].data) return;
      MOX_CUDA_CHECK(cudaMemcpyAsync(d[1].data, d[0].data, size_t(src.numel()) * src.element_size(),
                                     cudaMemcpyDeviceToDevice, cuda::stream()));
      return;
    }
    switch (src.element_size()) {
      case 1: launch_copy_bits<uint8_t>(d[0], d[1]); break;
      case 2: launch_copy_bits<uint16_t>(d[0], d[1]); break;
      case 4: launch_copy_bits<uint32_t>(d[0], d[1]); break;
      case 8: launch_copy_bits<uint64_t>(d[0], d[1]); break;
      default: throw Error("copy", "unexpected element size of " + src.desc());
    }
    return;
  }
  MOX_CUDA_DISPATCH_ALL(src.dtype(), S, MOX_CUDA_DISPATCH_ALL(dst.dtype(), D, {
    copy_convert_kernel<S, D><<<cuda::blocks_for(src.numel()), cuda::kThreads, 0, cuda::stream()>>>(d[0], d[1]);
    MOX_CUDA_LAUNCHED("copy");
  }));
}

void CudaBackend::fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  TensorDesc d = cuda::desc(dst, "fill");
  const uint64_t bits = value_bits(dst.dtype(), value);
  const size_t es = dst.element_size();
  if (d.contiguous) {
    bool same_bytes = true;  // every byte of the pattern equal: a memset
    for (size_t k = 1; k < es; ++k)
      same_bytes = same_bytes && ((bits >> (8 * k)) & 0xff) == (bits & 0xff);
    if (same_bytes) {
      MOX_CUDA_CHECK(cudaMemsetAsync(d.data, int(bits & 0xff), size_t(dst.numel()) * es, cuda::stream()));
      return;
    }
  }
  switch (es) {
    case 1: launch_fill<uint8_t>(d, bits); break;
    case 2: launch_fill<uint16_t>(d, bits); break;
    case 4: launch_fill<uint32_t>(d, bits); break;
    case 8: launch_fill<uint64_t>(d, bits); break;
    default: throw Error("fill", "unexpected element size of " + dst.desc());
  }
}

void CudaBackend::arange(const Tensor& dst, double start, double step) {
  MOX_CHECK(dst.is_contiguous() && dst.dim() == 1, "arange", "expects a contiguous 1-D tensor, got " + dst.desc());
  const int64_t n = dst.numel();
  if (n == 0) return;
  MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, {
    arange_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        static_cast<T*>(dst.raw_data()), n, start, step);
    MOX_CUDA_LAUNCHED("arange");
  });
}

void CudaBackend::uniform(const Tensor& dst, double lo, double hi, Generator& g) {
  if (dst.numel() == 0) return;
  TensorDesc d = cuda::desc(dst, "uniform");
  const uint64_t key = g.next_u64();
  if (draws_f32(dst.dtype())) {
    UniformF gen{lo, hi - lo};
    MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, launch_random<T>(d, key, gen, "uniform"));
  } else {
    UniformD gen{lo, hi - lo};
    MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, launch_random<T>(d, key, gen, "uniform"));
  }
}

void CudaBackend::normal(const Tensor& dst, double mean, double std, Generator& g) {
  if (dst.numel() == 0) return;
  TensorDesc d = cuda::desc(dst, "normal");
  const uint64_t key = g.next_u64();
  if (draws_f32(dst.dtype())) {
    NormalF gen{mean, std};
    MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, launch_random<T>(d, key, gen, "normal"));
  } else {
    NormalD gen{mean, std};
    MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, launch_random<T>(d, key, gen, "normal"));
  }
}

void CudaBackend::bernoulli(const Tensor& dst, double p, Generator& g) {
  if (dst.numel() == 0) return;
  TensorDesc d = cuda::desc(dst, "bernoulli");
  const uint64_t key = g.next_u64();
  BernoulliF gen{p};
  MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, launch_random<T>(d, key, gen, "bernoulli"));
}

void CudaBackend::randint(const Tensor& dst, int64_t lo, int64_t hi, Generator& g) {
  MOX_CHECK(hi > lo, "randint", "empty range [" + std::to_string(lo) + ", " + std::to_string(hi) + ")");
  if (dst.numel() == 0) return;
  TensorDesc d = cuda::desc(dst, "randint");
  const uint64_t key = g.next_u64();
  RandintG gen{lo, uint64_t(hi - lo)};
  MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, launch_random<T>(d, key, gen, "randint"));
}

}  // namespace mox
