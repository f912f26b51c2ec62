// Copies with dtype conversion, fills, and random fills (sequential, so a seed gives the
// same values whatever the thread count).
#include <cstring>

#include "mox/backend/cpu/convert.h"
#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/cpu/simd.h"
#include "mox/tensor/generator.h"

namespace mox {

using cpu::for_each_row;

namespace {

// Contiguous f32 <-> bf16, vectorised (bf16::from_float's rounding, branch-free): the
// conversions at the edges of reduced-precision inference.
MOX_SIMD void f32_to_bf16(const float* __restrict s, uint16_t* __restrict d, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, s + i, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    d[i] = uint16_t((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

MOX_SIMD void bf16_to_f32(const uint16_t* __restrict s, float* __restrict d, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const uint32_t u = uint32_t(s[i]) << 16;
    std::memcpy(d + i, &u, 4);
  }
}

// Splits [0, n) over threads above a grain and runs f on each part.
template <typename F>
void parallel_parts(int64_t n, F f) {
  int nt = cpu::threads_for(n, 1 << 18);
#pragma omp parallel for num_threads(nt) if (nt > 1)
  for (int t = 0; t < nt; t++) f(n * t / nt, n * (t + 1) / nt);
}

}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  MOX_CHECK(src.shape() == dst.shape(), "copy",
            "shape mismatch " + src.desc() + " -> " + dst.desc());
  if (src.numel() == 0) return;
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    if (src.raw_data() == dst.raw_data()) return;
    size_t n = size_t(src.numel()) * src.element_size();
    char* d = static_cast<char*>(dst.raw_data());
    const char* s = static_cast<const char*>(src.raw_data());
    int nt = cpu::threads_for(int64_t(n), 1 << 20);
#pragma omp parallel for num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
      size_t lo = n * t / nt, hi = n * (t + 1) / nt;
      std::memcpy(d + lo, s + lo, hi - lo);
    }
    return;
  }
  if (src.is_contiguous() && dst.is_contiguous()) {
    if (src.dtype() == DType::F32 && dst.dtype() == DType::BF16) {
      const float* s = src.data<float>();
      uint16_t* d = reinterpret_cast<uint16_t*>(dst.raw_data());
      parallel_parts(src.numel(), [&](int64_t lo, int64_t hi) { f32_to_bf16(s + lo, d + lo, hi - lo); });
      return;
    }
    if (src.dtype() == DType::BF16 && dst.dtype() == DType::F32) {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src.raw_data());
      float* d = dst.data<float>();
      parallel_parts(src.numel(), [&](int64_t lo, int64_t hi) { bf16_to_f32(s + lo, d + lo, hi - lo); });
      return;
    }
  }
  std::array<const Shape*, 2> st{&dst.strides(), &src.strides()};
  std::array<char*, 2> base{static_cast<char*>(dst.raw_data()), static_cast<char*>(src.raw_data())};
  std::array<int64_t, 2> es{int64_t(dst.element_size()), int64_t(src.element_size())};
  MOX_DISPATCH_ALL(dst.dtype(), D, MOX_DISPATCH_ALL(src.dtype(), S, {
    for_each_row<2>(dst.shape(), st, base, es, [](std::array<char*, 2> p, std::array<int64_t, 2> is, int64_t n) {
      D* d = reinterpret_cast<D*>(p[0]);
      const S* s = reinterpret_cast<const S*>(p[1]);
      if (is[0] == 1 && is[1] == 1) {
        for (int64_t i = 0; i < n; i++) d[i] = cpu::convert<D>(s[i]);
      } else {
        for (int64_t i = 0; i < n; i++) d[i * is[0]] = cpu::convert<D>(s[i * is[1]]);
      }
    });
  }));
}

void CpuBackend::copy_from_host(const void* src, const Tensor& dst) {
  MOX_CHECK(dst.is_contiguous(), "copy_from_host", "destination must be contiguous");
  std::memcpy(dst.raw_data(), src, size_t(dst.numel()) * dst.element_size());
}

void CpuBackend::copy_to_host(const Tensor& src, void* dst) {
  MOX_CHECK(src.is_contiguous(), "copy_to_host", "source must be contiguous");
  std::memcpy(dst, src.raw_data(), size_t(src.numel()) * src.element_size());
}

void CpuBackend::fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  std::array<const Shape*, 1> st{&dst.strides()};
  std::array<char*, 1> base{static_cast<char*>(dst.raw_data())};
  std::array<int64_t, 1> es{int64_t(dst.element_size())};
  MOX_DISPATCH_ALL(dst.dtype(), T, {
    const T v = cpu::convert<T>(value);
    for_each_row<1>(dst.shape(), st, base, es, [v](std::array<char*, 1> p, std::array<int64_t, 1> is, int64_t n) {
      T* d = reinterpret_cast<T*>(p[0]);
      if (is[0] == 1) {
        for (int64_t i = 0; i < n; i++) d[i] = v;
      } else {
        for (int64_t i = 0; i < n; i++) d[i * is[0]] = v;
      }
    });
  });
}

void CpuBackend::arange(const Tensor& dst, double start, double step) {
  MOX_CHECK(dst.is_contiguous() && dst.dim() == 1, "arange", "expects a contiguous 1-D tensor");
  MOX_DISPATCH_ALL(dst.dtype(), T, {
    T* d = static_cast<T*>(dst.raw_data());
    for (int64_t i = 0; i < dst.numel(); i++) d[i] = cpu::convert<T>(start + double(i) * step);
  });
}

// Fills dst element by element in logical (row-major) order from a generator function.
template <typename Fn>
static void fill_sequential(const Tensor& dst, Fn&& next) {
  Tensor c = dst.is_contiguous() ? dst : empty(dst.shape(), TensorOptions(dst.dtype()));
  MOX_DISPATCH_ALL(c.dtype(), T, {
    T* d = static_cast<T*>(c.raw_data());
    for (int64_t i = 0; i < c.numel(); i++) d[i] = cpu::convert<T>(next());
  });
  if (!c.same(dst)) backend_for(kCPU).copy(c, dst);
}

void CpuBackend::uniform(const Tensor& dst, double lo, double hi, Generator& g) {
  fill_sequential(dst, [&] { return lo + (hi - lo) * g.uniform(); });
}

void CpuBackend::normal(const Tensor& dst, double mean, double std, Generator& g) {
  fill_sequential(dst, [&] { return mean + std * g.normal(); });
}

// Generator::uniform() with the generator's xoshiro256** state held in locals, so that the
// per-element loop inlines (a dropout mask per training step otherwise pays a call per
// element). Same algorithm, same order: the stream is bit-identical to g.uniform().
struct InlineUniform {
  explicit InlineUniform(Generator& g) : gen(g), st(g.state()) {}
  ~InlineUniform() { gen.set_state(st); }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  double operator()() {
    uint64_t* s = st.s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return double(result >> 11) * 0x1.0p-53;
  }
  Generator& gen;
  Generator::State st;
};

void CpuBackend::bernoulli(const Tensor& dst, double p, Generator& g) {
  InlineUniform u(g);
  fill_sequential(dst, [&] { return u() < p ? 1.0 : 0.0; });
}

void CpuBackend::randint(const Tensor& dst, int64_t lo, int64_t hi, Generator& g) {
  uint64_t n = uint64_t(hi - lo);
  fill_sequential(dst, [&] { return double(lo + int64_t(g.below(n))); });
}

}  // namespace mox
