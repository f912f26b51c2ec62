// CUDA vs CPU parity for cuda_memory.cu: copy between every pair of dtypes (contiguous,
// transposed, broadcast and strided destinations), fill, arange; statistics and
// reproducibility of the random fills (uniform, normal, bernoulli, randint), whose streams
// differ from the CPU's but are fixed by the generator's seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "mox/tensor/generator.h"

namespace mox::testing {
namespace {

Backend& cpu_be() { return backend_for(kCPU); }
Backend& gpu_be() { return backend_for(kCUDA); }
Tensor dev_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt, kCUDA)); }
Tensor cpu_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt)); }

const DType kAll[] = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I64, DType::I32, DType::I8, DType::U8};

std::vector<double> host_values(const Tensor& t) { return t.to(kCPU).contiguous().to_vector<double>(); }

// Values that every dtype pair converts without undefined behaviour: fractional (so that
// float -> int truncation shows), negative only where both types are signed, within i8/u8.
Tensor source(DType src, DType dst, const Shape& s, Generator& g) {
  const bool unsigned_side = src == DType::U8 || dst == DType::U8;
  Tensor v = rand(s, &g, TensorOptions(DType::F64)) * (unsigned_side ? 120.0 : 240.0) - (unsigned_side ? 0.0 : 120.0);
  if (!is_floating(src)) v = v.to(DType::I64);  // integers: truncated on the CPU
  return v.to(src);
}

TEST(CudaMemory, CopyEveryDtypePair) {
  MOX_REQUIRE_CUDA();
  Generator g(1);
  for (DType s : kAll)
    for (DType d : kAll) {
      SCOPED_TRACE(std::string(dtype_name(s)) + " -> " + dtype_name(d));
      const Shape shape{37, 41};
      Tensor src = source(s, d, shape, g);
      Tensor ref = cpu_empty(shape, d);
      cpu_be().copy(src, ref);
      Tensor sd = src.to(kCUDA);
      // contiguous
      Tensor out = dev_empty(shape, d);
      gpu_be().copy(sd, out);
      EXPECT_EQ(host_values(out), host_values(ref));
      // transposed source
      Tensor reft = cpu_empty({41, 37}, d), outt = dev_empty({41, 37}, d);
      cpu_be().copy(src.t(), reft);
      gpu_be().copy(sd.t(), outt);
      EXPECT_EQ(host_values(outt), host_values(reft));
      // strided destination (every other column of a wider buffer)
      Tensor wide = dev_empty({37, 82}, d);
      gpu_be().fill(wide, 0.0);
      gpu_be().copy(sd, wide.slice(1, 0, 82, 2));
      EXPECT_EQ(host_values(wide.slice(1, 0, 82, 2)), host_values(ref));
      // broadcast source (stride 0)
      Tensor refb = cpu_empty({5, 41}, d), outb = dev_empty({5, 41}, d);
      cpu_be().copy(src.slice(0, 0, 1).expand({5, 41}), refb);
      gpu_be().copy(sd.slice(0, 0, 1).expand({5, 41}), outb);
      EXPECT_EQ(host_values(outb), host_values(refb));
    }
}

TEST(CudaMemory, CopyWrapsAndRounds) {
  MOX_REQUIRE_CUDA();
  // Integer narrowing wraps; halves round to nearest even; float -> int truncates toward 0.
  Tensor big = from_vector<int64_t>({300, -129, 255, 256, 1000, -1}, {6});
  for (DType d : {DType::I8, DType::U8, DType::I32, DType::BF16, DType::F16}) {
    Tensor ref = cpu_empty({6}, d), out = dev_empty({6}, d);
    cpu_be().copy(big, ref);
    gpu_be().copy(big.to(kCUDA), out);
    EXPECT_EQ(host_values(out), host_values(ref)) << dtype_name(d);
  }
  Tensor f = from_vector<double>({-2.7, -0.5, 0.5, 2.999, 1.0000001, 3.14159265358979, 65519.0, 1e-8}, {8});
  for (DType d : {DType::F32, DType::BF16, DType::F16, DType::I64, DType::I32}) {
    Tensor ref = cpu_empty({8}, d), out = dev_empty({8}, d);
    cpu_be().copy(f, ref);
    gpu_be().copy(f.to(kCUDA), out);
    EXPECT_EQ(host_values(out), host_values(ref)) << dtype_name(d);
  }
}

TEST(CudaMemory, CopyLargeAndDeviceToDevice) {
  MOX_REQUIRE_CUDA();
  Generator g(2);
  Tensor x = randn({1 << 20}, &g);
  Tensor xd = x.to(kCUDA);
  Tensor y = dev_empty({1 << 20}, DType::F32);
  gpu_be().copy(xd, y);  // one cudaMemcpyAsync
  EXPECT_EQ(y.to(kCPU).to_vector<float>(), x.to_vector<float>());
  Tensor hb = dev_empty({1 << 20}, DType::BF16);
  gpu_be().copy(xd, hb);
  Tensor rb = cpu_empty({1 << 20}, DType::BF16);
  cpu_be().copy(x, rb);
  EXPECT_EQ(host_values(hb), host_values(rb));
  // A 3-D permutation (no dims merge).
  Tensor z = randn({6, 7, 8}, &g);
  Tensor rp = cpu_empty({8, 6, 7}, DType::F64), op = dev_empty({8, 6, 7}, DType::F64);
  cpu_be().copy(z.permute({2, 0, 1}), rp);
  gpu_be().copy(z.to(kCUDA).permute({2, 0, 1}), op);
  EXPECT_EQ(host_values(op), host_values(rp));
}

TEST(CudaMemory, Fill) {
  MOX_REQUIRE_CUDA();
  for (DType d : kAll)
    for (double v : {0.0, 3.7, -1.0, 1.0}) {
      if (d == DType::U8 && v < 0) continue;
      SCOPED_TRACE(std::string(dtype_name(d)) + " " + std::to_string(v));
      Tensor ref = cpu_empty({1001}, d), out = dev_empty({1001}, d);
      cpu_be().fill(ref, v);
      gpu_be().fill(out, v);
      EXPECT_EQ(host_values(out), host_values(ref));
      // strided: every third element of a zeroed buffer
      Tensor wide = dev_empty({3003}, d);
      gpu_be().fill(wide, 0.0);
      gpu_be().fill(wide.slice(0, 0, 3003, 3), v);
      std::vector<double> w = host_values(wide);
      const double want = host_values(ref)[0];
      for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(w[i], i % 3 == 0 ? want : 0.0);
    }
}

TEST(CudaMemory, Arange) {
  MOX_REQUIRE_CUDA();
  for (DType d : kAll)
    for (double start : {0.0, 2.5})
      for (double step : {1.0, 0.25, 3.0}) {
        if (d == DType::I8 || d == DType::U8) {
          if (step != 0.25) continue;  // stays within range: 0 .. ~250 * 0.25
        }
        const int64_t n = (d == DType::I8 || d == DType::U8) ? 400 : 1001;
        Tensor ref = cpu_empty({n}, d), out = dev_empty({n}, d);
        cpu_be().arange(ref, start, step);
        gpu_be().arange(out, start, step);
        EXPECT_EQ(host_values(out), host_values(ref)) << dtype_name(d) << " " << start << " " << step;
      }
}

struct Stats {
  double mean, std, min, max;
};
Stats stats(const Tensor& t) {
  std::vector<double> v = host_values(t);
  double s = 0, s2 = 0, lo = v[0], hi = v[0];
  for (double x : v) {
    s += x;
    s2 += x * x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  const double n = double(v.size()), m = s / n;
  return {m, std::sqrt(std::max(0.0, s2 / n - m * m)), lo, hi};
}

const int64_t kN = 1 << 20;  // about 1e6 samples

TEST(CudaMemory, UniformStats) {
  MOX_REQUIRE_CUDA();
  for (DType d : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    SCOPED_TRACE(dtype_name(d));
    Generator g(7);
    Tensor t = dev_empty({kN}, d);
    gpu_be().uniform(t, -2.0, 3.0, g);
    Stats s = stats(t);
    EXPECT_GE(s.min, -2.0);
    EXPECT_LE(s.max, 3.0);
    EXPECT_NEAR(s.mean, 0.5, 0.01);
    EXPECT_NEAR(s.std, 5.0 / std::sqrt(12.0), 0.01);
    EXPECT_LT(s.min, -1.99);
    EXPECT_GT(s.max, 2.99);
  }
  // Integer dtype: truncated draws from [0, 10).
  Generator g(8);
  Tensor t = dev_empty({kN}, DType::I64);
  gpu_be().uniform(t, 0.0, 10.0, g);
  Stats s = stats(t);
  EXPECT_EQ(s.min, 0.0);
  EXPECT_EQ(s.max, 9.0);
  EXPECT_NEAR(s.mean, 4.5, 0.02);
}

TEST(CudaMemory, NormalStats) {
  MOX_REQUIRE_CUDA();
  for (DType d : {DType::F32, DType::F64, DType::BF16}) {
    SCOPED_TRACE(dtype_name(d));
    Generator g(9);
    Tensor t = dev_empty({kN + 3}, d);  // odd count: a partial last Philox block
    gpu_be().normal(t, 1.5, 2.0, g);
    Stats s = stats(t);
    EXPECT_NEAR(s.mean, 1.5, 0.01);
    EXPECT_NEAR(s.std, 2.0, 0.01);
    // About 68.27% within one sigma, 95.45% within two.
    std::vector<double> v = host_values(t);
    int64_t in1 = 0, in2 = 0;
    for (double x : v) {
      in1 += std::abs(x - 1.5) < 2.0;
      in2 += std::abs(x - 1.5) < 4.0;
    }
    EXPECT_NEAR(double(in1) / double(v.size()), 0.6827, 0.005);
    EXPECT_NEAR(double(in2) / double(v.size()), 0.9545, 0.005);
    for (double x : v) ASSERT_TRUE(std::isfinite(x));
  }
}

TEST(CudaMemory, BernoulliRate) {
  MOX_REQUIRE_CUDA();
  for (DType d : {DType::F32, DType::U8, DType::BF16})
    for (double p : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      SCOPED_TRACE(std::string(dtype_name(d)) + " p " + std::to_string(p));
      Generator g(11);
      Tensor t = dev_empty({kN}, d);
      gpu_be().bernoulli(t, p, g);
      std::vector<double> v = host_values(t);
      int64_t ones = 0;
      for (double x : v) {
        ASSERT_TRUE(x == 0.0 || x == 1.0);
        ones += x == 1.0;
      }
      EXPECT_NEAR(double(ones) / double(v.size()), p, 0.003);
      if (p == 0.0) {
        EXPECT_EQ(ones, 0);
      }
      if (p == 1.0) {
        EXPECT_EQ(ones, int64_t(v.size()));
      }
    }
}

TEST(CudaMemory, RandintRange) {
  MOX_REQUIRE_CUDA();
  for (DType d : {DType::I64, DType::I32, DType::F32, DType::I8}) {
    SCOPED_TRACE(dtype_name(d));
    Generator g(13);
    Tensor t = dev_empty({kN}, d);
    gpu_be().randint(t, -5, 7, g);
    std::vector<double> v = host_values(t);
    std::vector<int64_t> counts(12, 0);
    for (double x : v) {
      ASSERT_EQ(x, std::floor(x));
      ASSERT_GE(x, -5.0);
      ASSERT_LT(x, 7.0);
      counts[size_t(int64_t(x) + 5)]++;
    }
    for (int64_t c : counts) EXPECT_NEAR(double(c) / double(v.size()), 1.0 / 12, 0.003);
  }
  Generator g(1);
  Tensor t = dev_empty({10}, DType::I64);
  EXPECT_THROW(gpu_be().randint(t, 3, 3, g), Error);
  // Large ranges reach both ends of [0, 2^40).
  Tensor big = dev_empty({kN}, DType::I64);
  gpu_be().randint(big, 0, int64_t(1) << 40, g);
  Stats s = stats(big);
  EXPECT_NEAR(s.mean / double(int64_t(1) << 40), 0.5, 0.01);
}

TEST(CudaMemory, RandomReproducible) {
  MOX_REQUIRE_CUDA();
  auto draw = [](uint64_t seed, int which, DType d) {
    Generator g(seed);
    Tensor t = dev_empty({100003}, d);
    switch (which) {
      case 0: gpu_be().uniform(t, 0, 1, g); break;
      case 1: gpu_be().normal(t, 0, 1, g); break;
      case 2: gpu_be().bernoulli(t, 0.5, g); break;
      default: gpu_be().randint(t, 0, 1000, g); break;
    }
    return host_values(t);
  };
  for (int which = 0; which < 4; ++which)
    for (DType d : {DType::F32, DType::F64}) {
      EXPECT_EQ(draw(42, which, d), draw(42, which, d)) << which;
      EXPECT_NE(draw(42, which, d), draw(43, which, d)) << which;
    }
  // Successive calls on one generator advance it (one u64 per call).
  Generator g(5);
  Tensor a = dev_empty({1000}, DType::F32), b = dev_empty({1000}, DType::F32);
  gpu_be().uniform(a, 0, 1, g);
  gpu_be().uniform(b, 0, 1, g);
  EXPECT_NE(host_values(a), host_values(b));
  Generator h(5);
  h.next_u64();
  Tensor c = dev_empty({1000}, DType::F32);
  gpu_be().uniform(c, 0, 1, h);
  EXPECT_EQ(host_values(b), host_values(c));
}

TEST(CudaMemory, RandomStridedDestination) {
  MOX_REQUIRE_CUDA();
  Generator g(17);
  Tensor wide = dev_empty({1000, 6}, DType::F32);
  gpu_be().fill(wide, -7.0);
  Tensor view = wide.slice(1, 1, 6, 2);  // columns 1, 3, 5
  gpu_be().uniform(view, 0.0, 1.0, g);
  std::vector<double> w = host_values(wide);
  for (size_t i = 0; i < w.size(); ++i) {
    if ((i % 6) % 2 == 1) {
      EXPECT_GE(w[i], 0.0);
      EXPECT_LE(w[i], 1.0);
    } else {
      EXPECT_EQ(w[i], -7.0);
    }
  }
  // Same values as a contiguous fill from the same seed (logical order).
  Generator g2(17);
  Tensor flat = dev_empty({1000, 3}, DType::F32);
  gpu_be().uniform(flat, 0.0, 1.0, g2);
  EXPECT_EQ(host_values(view), host_values(flat));
}

}  // namespace
}  // namespace mox::testing
