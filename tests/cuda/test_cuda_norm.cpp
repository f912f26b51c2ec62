// CUDA vs CPU parity for the row kernels of cuda_norm.cu: softmax / log-softmax and their
// backward, layer norm forward/backward, fused cross-entropy. Rows of 1 .. 50304 elements
// cover the warp-per-row and block-per-row paths, vector and scalar loads; bf16/f16
// inputs are compared with the CPU computed in f32 on the same rounded values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "mox/tensor/generator.h"

namespace mox::testing {
namespace {

Backend& cpu_be() { return backend_for(kCPU); }
Backend& gpu_be() { return backend_for(kCUDA); }

// The same values for both backends: `ref` (CPU; f32 for bf16/f16, else dt) and `dev`
// (CUDA, dt).
struct Pair {
  Tensor ref, dev;
};
DType ref_dtype(DType dt) { return dt == DType::F64 ? DType::F64 : DType::F32; }
Pair pair_of(const Tensor& host, DType dt) {
  Tensor t = host.to(dt);  // rounds for bf16/f16
  return {t.to(ref_dtype(dt)).contiguous(), t.to(kCUDA).contiguous()};
}
Pair randn_pair(const Shape& s, DType dt, uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  Tensor t = randn(s, &g, TensorOptions(DType::F64)) * scale;
  return pair_of(t, dt);
}
Tensor dev_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt, kCUDA)); }
Tensor cpu_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt)); }

const DType kDtypes[] = {DType::F32, DType::BF16, DType::F64, DType::F16};

struct RowShape {
  int64_t rows, n;
};
const RowShape kShapes[] = {{7, 1},   {13, 33},  {5, 768},   {9, 1000}, {3, 1025},
                            {4, 4099}, {2, 8192}, {3, 50304}, {1, 50257}};

TEST(CudaNorm, Softmax) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 1;
  for (DType dt : kDtypes)
    for (const RowShape& s : kShapes)
      for (bool log : {false, true}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " " + std::to_string(s.rows) + "x" +
                     std::to_string(s.n) + (log ? " log" : ""));
        Pair x = randn_pair({s.rows, s.n}, dt, seed++, 3.0);
        Tensor ref = cpu_empty({s.rows, s.n}, x.ref.dtype());
        cpu_be().softmax(x.ref, ref, log);
        Tensor out = dev_empty({s.rows, s.n}, dt);
        gpu_be().softmax(x.dev, out, log);
        EXPECT_PARITY(out, ref, dt);
      }
}

TEST(CudaNorm, SoftmaxMaskedRows) {
  MOX_REQUIRE_CUDA();
  // -inf entries (attention masks), including a row that is -inf except one entry.
  for (int64_t n : {int64_t(40), int64_t(3000)}) {
    Generator g(7);
    std::vector<float> v = randn({4, n}, &g).to_vector<float>();
    for (int64_t i = 0; i < n; i++) {
      if (i % 3 == 0) v[size_t(i)] = -std::numeric_limits<float>::infinity();
      if (i != 5) v[size_t(n + i)] = -std::numeric_limits<float>::infinity();
    }
    Tensor x = from_vector(v, {4, n});
    for (bool log : {false, true}) {
      Tensor ref = cpu_empty({4, n}, DType::F32);
      cpu_be().softmax(x, ref, log);
      Tensor out = dev_empty({4, n}, DType::F32);
      gpu_be().softmax(x.to(kCUDA), out, log);
      auto a = out.to(kCPU).to_vector<float>(), b = ref.to_vector<float>();
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); i++) {
        if (std::isinf(b[i])) {
          EXPECT_EQ(a[i], b[i]) << i;
        } else {
          EXPECT_NEAR(a[i], b[i], 1e-5 * (1 + std::fabs(b[i]))) << i;
        }
      }
    }
  }
}

TEST(CudaNorm, SoftmaxBackward) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 100;
  for (DType dt : kDtypes)
    for (const RowShape& s : kShapes)
      for (bool log : {false, true}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " " + std::to_string(s.rows) + "x" +
                     std::to_string(s.n) + (log ? " log" : ""));
        // y: a real (log-)softmax output, rounded to dt.
        Pair x = randn_pair({s.rows, s.n}, DType::F64, seed++);
        Tensor y64 = cpu_empty({s.rows, s.n}, DType::F64);
        cpu_be().softmax(x.ref, y64, log);
        Pair y = pair_of(y64, dt);
        Pair gy = randn_pair({s.rows, s.n}, dt, seed++);
        Tensor ref = cpu_empty({s.rows, s.n}, y.ref.dtype());
        cpu_be().softmax_backward(y.ref, gy.ref, ref, log);
        Tensor out = dev_empty({s.rows, s.n}, dt);
        gpu_be().softmax_backward(y.dev, gy.dev, out, log);
        EXPECT_PARITY(out, ref, dt);
      }
}

TEST(CudaNorm, LayerNorm) {
  MOX_REQUIRE_CUDA();
  const RowShape shapes[] = {{6, 768}, {33, 768}, {5, 37}, {3, 2000}, {2, 4099}, {4, 1}, {2, 50304}};
  uint64_t seed = 200;
  for (DType dt : kDtypes)
    for (const RowShape& s : shapes)
      for (int affine = 0; affine < 4; affine++)
        for (bool f32_stats : {false, true}) {
          if (f32_stats && (dt == DType::F32 || dt == DType::F64)) continue;
          SCOPED_TRACE(std::string(dtype_name(dt)) + " " + std::to_string(s.rows) + "x" +
                       std::to_string(s.n) + " affine " + std::to_string(affine) +
                       (f32_stats ? " f32 stats" : ""));
          Pair x = randn_pair({s.rows, s.n}, dt, seed++, 2.0);
          // Offset the rows so that the two-pass variance matters.
          Pair w = randn_pair({s.n}, dt, seed++), b = randn_pair({s.n}, dt, seed++);
          Tensor wr = affine & 1 ? w.ref : Tensor(), br = affine & 2 ? b.ref : Tensor();
          Tensor wd = affine & 1 ? w.dev : Tensor(), bd = affine & 2 ? b.dev : Tensor();
          const DType rt = x.ref.dtype();
          Tensor ref = cpu_empty({s.rows, s.n}, rt), mr = cpu_empty({s.rows}, rt),
                 rr = cpu_empty({s.rows}, rt);
          cpu_be().layer_norm(x.ref, wr, br, 1e-5, ref, mr, rr);
          const DType st = f32_stats ? DType::F32 : dt;
          Tensor out = dev_empty({s.rows, s.n}, dt), md = dev_empty({s.rows}, st),
                 rd = dev_empty({s.rows}, st);
          gpu_be().layer_norm(x.dev, wd, bd, 1e-5, out, md, rd);
          EXPECT_PARITY(out, ref, dt);
          EXPECT_PARITY(md, mr, f32_stats ? DType::F32 : dt);
          EXPECT_PARITY(rd, rr, f32_stats ? DType::F32 : dt);
        }
}

TEST(CudaNorm, LayerNormLargeMean) {
  MOX_REQUIRE_CUDA();
  // Rows with a large common offset: the variance must come from deviations.
  Pair x = randn_pair({16, 768}, DType::F32, 300);
  Tensor xr = x.ref + 1000.0;
  Tensor ref = cpu_empty({16, 768}, DType::F32), mr = cpu_empty({16}, DType::F32),
         rr = cpu_empty({16}, DType::F32);
  cpu_be().layer_norm(xr, Tensor(), Tensor(), 1e-5, ref, mr, rr);
  Tensor out = dev_empty({16, 768}, DType::F32), md = dev_empty({16}, DType::F32),
         rd = dev_empty({16}, DType::F32);
  gpu_be().layer_norm(xr.to(kCUDA), Tensor(), Tensor(), 1e-5, out, md, rd);
  EXPECT_LT(rel_err(out, ref), 1e-4);
  EXPECT_LT(rel_err(rd, rr), 1e-4);
}

TEST(CudaNorm, LayerNormBackward) {
  MOX_REQUIRE_CUDA();
  const RowShape shapes[] = {{6, 768}, {300, 768}, {5, 37}, {3, 2000}, {1031, 33}, {2, 4099}};
  uint64_t seed = 400;
  for (DType dt : kDtypes)
    for (const RowShape& s : shapes)
      for (int need = 1; need < 8; need++)  // bits: gx, gw, gb
        for (bool has_w : {true, false}) {
          SCOPED_TRACE(std::string(dtype_name(dt)) + " " + std::to_string(s.rows) + "x" +
                       std::to_string(s.n) + " need " + std::to_string(need) +
                       (has_w ? " w" : " no w"));
          Pair x = randn_pair({s.rows, s.n}, dt, seed++);
          Pair w = randn_pair({s.n}, dt, seed++);
          Pair gy = randn_pair({s.rows, s.n}, dt, seed++);
          const DType rt = x.ref.dtype();
          // Statistics from the CPU forward (f32 for half data; also on the device).
          Tensor y = cpu_empty({s.rows, s.n}, rt), mr = cpu_empty({s.rows}, rt),
                 rr = cpu_empty({s.rows}, rt);
          Tensor wr = has_w ? w.ref : Tensor(), wd = has_w ? w.dev : Tensor();
          cpu_be().layer_norm(x.ref, wr, Tensor(), 1e-5, y, mr, rr);
          Tensor md = mr.to(kCUDA), rd = rr.to(kCUDA);  // f32 stats for bf16/f16 data
          Tensor gxr = need & 1 ? cpu_empty({s.rows, s.n}, rt) : Tensor();
          Tensor gwr = need & 2 ? cpu_empty({s.n}, rt) : Tensor();
          Tensor gbr = need & 4 ? cpu_empty({s.n}, rt) : Tensor();
          cpu_be().layer_norm_backward(gy.ref, x.ref, wr, mr, rr, gxr, gwr, gbr);
          Tensor gxd = need & 1 ? dev_empty({s.rows, s.n}, dt) : Tensor();
          Tensor gwd = need & 2 ? dev_empty({s.n}, dt) : Tensor();
          Tensor gbd = need & 4 ? dev_empty({s.n}, dt) : Tensor();
          gpu_be().layer_norm_backward(gy.dev, x.dev, wd, md, rd, gxd, gwd, gbd);
          if (need & 1) EXPECT_PARITY(gxd, gxr, dt);
          if (need & 2) EXPECT_PARITY(gwd, gwr, dt);
          if (need & 4) EXPECT_PARITY(gbd, gbr, dt);
        }
}

TEST(CudaNorm, LayerNormBackwardDeterministic) {
  MOX_REQUIRE_CUDA();
  Pair x = randn_pair({4096, 768}, DType::F32, 500), gy = randn_pair({4096, 768}, DType::F32, 501);
  Tensor y = dev_empty({4096, 768}, DType::F32), m = dev_empty({4096}, DType::F32),
         r = dev_empty({4096}, DType::F32);
  gpu_be().layer_norm(x.dev, Tensor(), Tensor(), 1e-5, y, m, r);
  std::vector<float> first;
  for (int k = 0; k < 3; k++) {
    Tensor gw = dev_empty({768}, DType::F32), gb = dev_empty({768}, DType::F32);
    gpu_be().layer_norm_backward(gy.dev, x.dev, Tensor(), m, r, Tensor(), gw, gb);
    std::vector<float> v = gw.to(kCPU).to_vector<float>();
    if (k == 0)
      first = v;
    else
      EXPECT_EQ(v, first);
  }
}

// Targets in [0, n) with every `ignore_every`-th row ignored (-1).
Tensor targets(int64_t rows, int64_t n, int ignore_every, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> t = randint(0, n, {rows}, &g).to_vector<int64_t>();
  if (ignore_every > 0)
    for (size_t i = 0; i < t.size(); i += size_t(ignore_every)) t[i] = -1;
  return from_vector(t, {rows});
}

TEST(CudaNorm, CrossEntropy) {
  MOX_REQUIRE_CUDA();
  const RowShape shapes[] = {{17, 10}, {8, 1000}, {5, 1500}, {8, 50304}, {3, 50257}, {64, 768}};
  uint64_t seed = 600;
  for (DType dt : kDtypes)
    for (const RowShape& s : shapes)
      for (double smoothing : {0.0, 0.1})
        for (int mode = 0; mode < 3; mode++) {  // 0: loss only, 1: grad, 2: grad + f32 losses
          if (mode == 2 && (dt == DType::F32 || dt == DType::F64)) continue;
          SCOPED_TRACE(std::string(dtype_name(dt)) + " " + std::to_string(s.rows) + "x" +
                       std::to_string(s.n) + " smoothing " + std::to_string(smoothing) +
                       " mode " + std::to_string(mode));
          Pair z = randn_pair({s.rows, s.n}, dt, seed++, 2.0);
          Tensor t = targets(s.rows, s.n, 3, seed++);
          const DType rt = z.ref.dtype();
          const double scale = 0.37;
          Tensor lr = cpu_empty({s.rows}, rt);
          Tensor gr = mode ? cpu_empty({s.rows, s.n}, rt) : Tensor();
          cpu_be().cross_entropy(z.ref, t, smoothing, lr, gr, scale);
          Tensor ld = dev_empty({s.rows}, mode == 2 ? DType::F32 : dt);
          Tensor gd = mode ? dev_empty({s.rows, s.n}, dt) : Tensor();
          gpu_be().cross_entropy(z.dev, t.to(kCUDA), smoothing, ld, gd, scale);
          EXPECT_PARITY(ld, lr, mode == 2 ? DType::F32 : dt);
          if (mode) EXPECT_PARITY(gd, gr, dt);
          // Ignored rows: loss and gradient exactly 0.
          auto lv = ld.to(kCPU).to(DType::F64).to_vector<double>();
          auto tv = t.to_vector<int64_t>();
          for (size_t r = 0; r < tv.size(); r++) {
            if (tv[r] < 0) {
              EXPECT_EQ(lv[r], 0.0) << "row " << r;
            }
          }
          if (mode) {
            auto gv = gd.to(kCPU).to(DType::F64).to_vector<double>();
            for (size_t r = 0; r < tv.size(); r++) {
              if (tv[r] >= 0) continue;
              for (int64_t j = 0; j < s.n; j += 97) {
                EXPECT_EQ(gv[r * size_t(s.n) + size_t(j)], 0.0);
              }
            }
          }
        }
}

}  // namespace
}  // namespace mox::testing
