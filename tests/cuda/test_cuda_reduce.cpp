// CUDA vs CPU parity for cuda_reduce.cu: sum/mean/max/min/prod over rows (warp and block
// per row, split long rows), columns (bias-gradient shapes, split tall columns), middle
// dims, several non-adjacent axes (the permuted path), strided inputs, the full reduction;
// integer sums; NaN propagation; arg max/min with ties and NaNs.
// Floating sums are compared with the CPU computed in f64 on the same values (the GPU sums
// in a different order; f64 removes the CPU's own rounding from the comparison).
#include <gtest/gtest.h>

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

Shape keep_shape(const Shape& s, const std::vector<int64_t>& axes) {
  Shape o = s;
  for (int64_t a : axes) o[size_t(a)] = 1;
  return o;
}

// x (host, any dtype) reduced on the GPU in x's dtype and on the CPU in f64 (floating) or
// in x's dtype (integers).
void check_reduce(ReduceOp op, const Tensor& host, const std::vector<int64_t>& axes, bool transpose_first = false) {
  const DType dt = host.dtype();
  Tensor x = host, xd = host.to(kCUDA);
  if (transpose_first) {
    x = x.transpose(0, -1);
    xd = xd.transpose(0, -1);
  }
  const Shape os = keep_shape(x.shape(), axes);
  const DType rdt = is_floating(dt) ? DType::F64 : dt;
  Tensor ref = cpu_empty(os, rdt);
  cpu_be().reduce(op, x.to(rdt), axes, ref);
  Tensor out = dev_empty(os, dt);
  gpu_be().reduce(op, xd, axes, out);
  if (is_floating(dt)) {
    EXPECT_PARITY(out, ref, dt);
  } else {
    EXPECT_EQ(out.to(kCPU).to_vector<int64_t>(), ref.to_vector<int64_t>());
  }
}

struct Case {
  Shape shape;
  std::vector<int64_t> axes;
};
const Case kCases[] = {
    {{1}, {0}},                 // one element
    {{1000}, {0}},              // full, one row
    {{37, 1000}, {1}},          // rows, block per row
    {{1001, 37}, {1}},          // short rows, warp per row
    {{1000, 37}, {0}},          // columns (bias gradient)
    {{4099, 3}, {0}},           // narrow columns
    {{5, 300, 7}, {1}},         // middle dim
    {{6, 7, 8}, {0, 2}},        // non-adjacent axes: permuted path
    {{6, 7, 8}, {0, 1, 2}},     // everything
    {{2, 3, 1, 5}, {2}},        // reducing a size-1 dim
    {{3, 200003}, {1}},         // few long rows: split into chunks + second pass
    {{150001, 5}, {0}},         // tall columns: split along R + second pass
    {{1 << 21}, {0}},           // large full reduction (two passes)
};

TEST(CudaReduce, FloatAllOps) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 1;
  for (DType dt : {DType::F32, DType::BF16, DType::F64, DType::F16})
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod})
      for (const Case& c : kCases) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " op " + std::to_string(int(op)) + " " + shape_str(c.shape));
        int64_t R = 1;
        for (int64_t a : c.axes) R *= c.shape[size_t(a)];
        // Products of many rounded values drift out of range: short products only.
        if (op == ReduceOp::Prod && R > 1000) continue;
        Generator g(seed++);
        // Positive values (sums without cancellation); values near 1 for products; f16
        // scaled so that the largest sum (2^21 values) stays below f16's maximum.
        Tensor x = op == ReduceOp::Prod ? rand(c.shape, &g, TensorOptions(DType::F64)) * 0.002 + 0.999
                                        : rand(c.shape, &g, TensorOptions(DType::F64)) + 0.5;
        if (dt == DType::F16 && op != ReduceOp::Prod) x = x * (1.0 / 64);
        check_reduce(op, x.to(dt), c.axes);
      }
}

TEST(CudaReduce, SignedValuesAndStrided) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 99;
  for (DType dt : {DType::F32, DType::BF16, DType::F64})
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " op " + std::to_string(int(op)));
      Generator g(seed++);
      Tensor x = randn({33, 17, 65}, &g, TensorOptions(DType::F64)).to(dt);
      // Max/min are exact; sums of signed values are checked on a transposed view.
      check_reduce(op, x, {2}, true);   // transposed: permuted path
      check_reduce(op, x, {0}, true);
      check_reduce(op, x, {1});
      if (op != ReduceOp::Sum && op != ReduceOp::Mean) check_reduce(op, x, {0, 1, 2});
    }
}

TEST(CudaReduce, Integers) {
  MOX_REQUIRE_CUDA();
  Generator g(5);
  for (DType dt : {DType::I64, DType::I32, DType::I8, DType::U8})
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Mean})
      for (const Case& c : {Case{{37, 1000}, {1}}, Case{{1000, 37}, {0}}, Case{{6, 7, 8}, {0, 2}},
                            Case{{3, 200003}, {1}}, Case{{150001, 5}, {0}}}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " op " + std::to_string(int(op)) + " " + shape_str(c.shape));
        const bool small = dt == DType::I8 || dt == DType::U8;
        // i8/u8 sums wrap on both sides alike (the CPU accumulates in the type, the GPU in i64).
        Tensor x = randint(dt == DType::U8 ? 0 : -100, 100, c.shape, &g, TensorOptions(DType::I64)).to(dt);
        if (small && (op == ReduceOp::Sum || op == ReduceOp::Mean)) continue;  // overflow: UB on the CPU
        check_reduce(op, x, c.axes);
      }
  // Integer products (small values).
  Tensor x = randint(-2, 3, {7, 20}, &g, TensorOptions(DType::I64));
  check_reduce(ReduceOp::Prod, x, {1});
}

TEST(CudaReduce, EmptyReduction) {
  MOX_REQUIRE_CUDA();
  Tensor x = dev_empty({3, 0, 4}, DType::F32);
  Tensor out = dev_empty({3, 1, 4}, DType::F32);
  gpu_be().reduce(ReduceOp::Sum, x, {1}, out);
  for (double v : out.to(kCPU).to_vector<double>()) EXPECT_EQ(v, 0.0);
  gpu_be().reduce(ReduceOp::Prod, x, {1}, out);
  for (double v : out.to(kCPU).to_vector<double>()) EXPECT_EQ(v, 1.0);
}

TEST(CudaReduce, NaNPropagates) {
  MOX_REQUIRE_CUDA();
  Generator g(3);
  for (const Case& c : {Case{{37, 1000}, {1}}, Case{{1000, 37}, {0}}, Case{{1 << 20}, {0}}, Case{{3, 200003}, {1}}}) {
    Tensor x = randn(c.shape, &g);
    std::vector<float> v = x.to_vector<float>();
    v[v.size() / 3] = std::nanf("");
    x = from_vector(v, c.shape);
    for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min, ReduceOp::Sum}) {
      const Shape os = keep_shape(c.shape, c.axes);
      Tensor ref = cpu_empty(os, DType::F32), out = dev_empty(os, DType::F32);
      cpu_be().reduce(op, x, c.axes, ref);
      gpu_be().reduce(op, x.to(kCUDA), c.axes, out);
      auto r = ref.to_vector<double>(), o = out.to(kCPU).to_vector<double>();
      for (size_t i = 0; i < r.size(); ++i) {
        if (std::isnan(r[i])) EXPECT_TRUE(std::isnan(o[i])) << shape_str(c.shape) << " op " << int(op) << " at " << i;
        else EXPECT_NEAR(o[i], r[i], 1e-3 * (1 + std::abs(r[i])));
      }
    }
  }
}

void check_arg(ReduceOp op, const Tensor& x, int64_t dim) {
  Shape os = x.shape();
  os[size_t(dim)] = 1;
  const DType dt = x.dtype();
  Tensor rv = cpu_empty(os, dt), ri = cpu_empty(os, DType::I64);
  cpu_be().reduce_arg(op, x, dim, rv, ri);
  Tensor ov = dev_empty(os, dt), oi = dev_empty(os, DType::I64);
  gpu_be().reduce_arg(op, x.to(kCUDA), dim, ov, oi);
  EXPECT_EQ(oi.to(kCPU).to_vector<int64_t>(), ri.to_vector<int64_t>()) << shape_str(x.shape()) << " dim " << dim;
  auto r = rv.to_vector<double>(), o = ov.to(kCPU).to_vector<double>();
  ASSERT_EQ(r.size(), o.size());
  for (size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) EXPECT_TRUE(std::isnan(o[i]));
    else EXPECT_EQ(o[i], r[i]);
  }
}

TEST(CudaReduce, ArgMaxMinTies) {
  MOX_REQUIRE_CUDA();
  Generator g(17);
  // Few distinct values: many ties, the first index must win.
  for (DType dt : {DType::F32, DType::F64, DType::I64, DType::I32})
    for (const Shape& s : {Shape{37, 100}, Shape{5, 3000}, Shape{100, 37}, Shape{7, 9, 11}, Shape{2, 5000, 3},
                           Shape{1, 1}, Shape{3000, 2}})
      for (int64_t dim = 0; dim < int64_t(s.size()); ++dim) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " " + shape_str(s) + " dim " + std::to_string(dim));
        Tensor x = randint(0, 5, s, &g, TensorOptions(DType::I64)).to(dt);
        check_arg(ReduceOp::Max, x, dim);
        check_arg(ReduceOp::Min, x, dim);
      }
}

TEST(CudaReduce, ArgMaxMinNaN) {
  MOX_REQUIRE_CUDA();
  Generator g(23);
  for (const Shape& s : {Shape{4, 1000}, Shape{1000, 4}, Shape{3, 5000, 2}}) {
    Tensor x = randn(s, &g);
    std::vector<float> v = x.to_vector<float>();
    for (size_t i = 7; i < v.size(); i += 97) v[i] = std::nanf("");
    x = from_vector(v, s);
    for (int64_t dim = 0; dim < int64_t(s.size()); ++dim) {
      SCOPED_TRACE(shape_str(s) + " dim " + std::to_string(dim));
      check_arg(ReduceOp::Max, x, dim);
      check_arg(ReduceOp::Min, x, dim);
    }
  }
}

TEST(CudaReduce, ArgMaxBf16AndStrided) {
  MOX_REQUIRE_CUDA();
  Generator g(29);
  Tensor x = randn({33, 65}, &g).to(DType::BF16);
  // The CPU has no bf16 arg kernel: compare with f32 on the same values.
  for (int64_t dim : {0, 1}) {
    Shape os = x.shape();
    os[size_t(dim)] = 1;
    Tensor rv = cpu_empty(os, DType::F32), ri = cpu_empty(os, DType::I64);
    cpu_be().reduce_arg(ReduceOp::Max, x.to(DType::F32), dim, rv, ri);
    Tensor ov = dev_empty(os, DType::BF16), oi = dev_empty(os, DType::I64);
    gpu_be().reduce_arg(ReduceOp::Max, x.to(kCUDA), dim, ov, oi);
    EXPECT_EQ(oi.to(kCPU).to_vector<int64_t>(), ri.to_vector<int64_t>());
    EXPECT_EQ(ov.to(kCPU).to_vector<double>(), rv.to_vector<double>());
  }
  // Transposed input.
  Tensor y = randn({40, 70}, &g);
  Tensor rv = cpu_empty({70, 1}, DType::F32), ri = cpu_empty({70, 1}, DType::I64);
  cpu_be().reduce_arg(ReduceOp::Min, y.t(), 1, rv, ri);
  Tensor ov = dev_empty({70, 1}, DType::F32), oi = dev_empty({70, 1}, DType::I64);
  gpu_be().reduce_arg(ReduceOp::Min, y.to(kCUDA).t(), 1, ov, oi);
  EXPECT_EQ(oi.to(kCPU).to_vector<int64_t>(), ri.to_vector<int64_t>());
}

TEST(CudaReduce, ThroughOps) {
  MOX_REQUIRE_CUDA();
  Generator g(31);
  Tensor x = randn({64, 129}, &g);
  EXPECT_PARITY(sum(x.to(kCUDA), {0}), sum(x.to(DType::F64), {0}), DType::F32);
  EXPECT_PARITY(mean(x.to(kCUDA), {1}), mean(x.to(DType::F64), {1}), DType::F32);
  EXPECT_EQ(argmax(x.to(kCUDA), 1).to(kCPU).to_vector<int64_t>(), argmax(x, 1).to_vector<int64_t>());
}

}  // namespace
}  // namespace mox::testing
