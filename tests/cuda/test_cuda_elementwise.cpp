// CUDA vs CPU parity for cuda_elementwise.cu: every unary op and its derivative, every
// binary op (floating and integer, comparisons), where; contiguous (vector path), offset
// (unaligned), transposed and broadcast operands, odd sizes. bf16/f16 results are compared
// with the CPU computed in f32 on the same rounded inputs.
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
DType ref_dtype(DType dt) { return dt == DType::F64 ? DType::F64 : DType::F32; }
Tensor dev_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt, kCUDA)); }
Tensor cpu_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt)); }

// Same values on both sides: ref on the CPU (f32 for halves), dev on the GPU in dt.
struct Pair {
  Tensor ref, dev;
};
Pair pair_of(const Tensor& host, DType dt) {
  Tensor t = host.to(dt);
  return {t.to(ref_dtype(dt)).contiguous(), t.to(kCUDA)};
}
// lo + (hi - lo) * U[0, 1) or N(0, scale), in f64 before rounding to dt.
Pair uniform_pair(const Shape& s, DType dt, uint64_t seed, double lo, double hi) {
  Generator g(seed);
  return pair_of(rand(s, &g, TensorOptions(DType::F64)) * (hi - lo) + lo, dt);
}
Pair randn_pair(const Shape& s, DType dt, uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  return pair_of(randn(s, &g, TensorOptions(DType::F64)) * scale, dt);
}

const DType kFloat[] = {DType::F32, DType::BF16, DType::F64, DType::F16};

struct UnaryCase {
  UnaryOp op;
  const char* name;
  double lo, hi;  // input range
  UnaryParams p;
};
const UnaryCase kUnary[] = {
    {UnaryOp::Neg, "neg", -3, 3, {}},          {UnaryOp::Exp, "exp", -4, 4, {}},
    {UnaryOp::Log, "log", 0.05, 5, {}},        {UnaryOp::Sqrt, "sqrt", 0.05, 5, {}},
    {UnaryOp::Rsqrt, "rsqrt", 0.05, 5, {}},    {UnaryOp::Abs, "abs", -3, 3, {}},
    {UnaryOp::Sign, "sign", -3, 3, {}},        {UnaryOp::Reciprocal, "reciprocal", 0.2, 5, {}},
    {UnaryOp::Square, "square", -3, 3, {}},    {UnaryOp::Sin, "sin", -4, 4, {}},
    {UnaryOp::Cos, "cos", -4, 4, {}},          {UnaryOp::Log1p, "log1p", -0.9, 4, {}},
    {UnaryOp::Expm1, "expm1", -3, 3, {}},      {UnaryOp::Floor, "floor", -5, 5, {}},
    {UnaryOp::Ceil, "ceil", -5, 5, {}},        {UnaryOp::Round, "round", -5, 5, {}},
    {UnaryOp::Relu, "relu", -3, 3, {}},        {UnaryOp::LeakyRelu, "leaky_relu", -3, 3, {0.1, 0}},
    {UnaryOp::Elu, "elu", -3, 3, {1.3, 0}},    {UnaryOp::Selu, "selu", -3, 3, {}},
    {UnaryOp::Gelu, "gelu", -4, 4, {}},        {UnaryOp::GeluTanh, "gelu_tanh", -4, 4, {}},
    {UnaryOp::Sigmoid, "sigmoid", -6, 6, {}},  {UnaryOp::Tanh, "tanh", -3, 3, {}},
    {UnaryOp::Softplus, "softplus", -5, 30, {1.0, 20.0}},
    {UnaryOp::Silu, "silu", -5, 5, {}},        {UnaryOp::AddScalar, "add_scalar", -3, 3, {0.75, 0}},
    {UnaryOp::MulScalar, "mul_scalar", -3, 3, {-1.5, 0}},
    {UnaryOp::RSubScalar, "rsub_scalar", -3, 3, {2.0, 0}},
    {UnaryOp::RDivScalar, "rdiv_scalar", 0.2, 5, {2.0, 0}},
    {UnaryOp::PowScalar, "pow_scalar", 0.1, 3, {2.5, 0}},
    {UnaryOp::PowScalar, "pow_scalar_2", -3, 3, {2.0, 0}},
    {UnaryOp::RPowScalar, "rpow_scalar", -3, 3, {1.7, 0}},
    {UnaryOp::Clamp, "clamp", -3, 3, {-0.5, 0.8}},
};

// Shapes: odd sizes, one under a vector, one large enough for a grid-stride loop.
const Shape kShapes[] = {{1}, {3}, {37, 53}, {4099}, {1 << 20}};

std::string trace(const char* what, DType dt, const Shape& s) {
  return std::string(what) + " " + dtype_name(dt) + " " + shape_str(s);
}

TEST(CudaElementwise, UnaryAllOps) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 100;
  for (const UnaryCase& c : kUnary)
    for (DType dt : kFloat)
      for (const Shape& s : kShapes) {
        SCOPED_TRACE(trace(c.name, dt, s));
        Pair x = uniform_pair(s, dt, seed++, c.lo, c.hi);
        Tensor ref = cpu_empty(s, x.ref.dtype());
        cpu_be().unary(c.op, x.ref, ref, c.p);
        Tensor out = dev_empty(s, dt);
        gpu_be().unary(c.op, x.dev, out, c.p);
        // Floor/ceil/round of halves are exact; halves' rounding otherwise bounds the error.
        EXPECT_PARITY(out, ref, dt);
      }
}

TEST(CudaElementwise, UnaryStridedAndBroadcast) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 7;
  for (DType dt : {DType::F32, DType::BF16, DType::F64}) {
    for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Gelu, UnaryOp::Clamp, UnaryOp::Tanh}) {
      UnaryParams p{-0.5, 0.5};
      SCOPED_TRACE(std::string(dtype_name(dt)) + " op " + std::to_string(int(op)));
      // Transposed input.
      Pair x = randn_pair({37, 53}, dt, seed++);
      Tensor ref = cpu_empty({53, 37}, x.ref.dtype());
      cpu_be().unary(op, x.ref.t(), ref, p);
      Tensor out = dev_empty({53, 37}, dt);
      gpu_be().unary(op, x.dev.t(), out, p);
      EXPECT_PARITY(out, ref, dt);
      // Broadcast row, and a 3-D expanded column.
      Pair r = randn_pair({1, 53}, dt, seed++);
      cpu_be().unary(op, r.ref.expand({37, 53}), ref = cpu_empty({37, 53}, x.ref.dtype()), p);
      gpu_be().unary(op, r.dev.expand({37, 53}), out = dev_empty({37, 53}, dt), p);
      EXPECT_PARITY(out, ref, dt);
      Pair col = randn_pair({5, 1, 9}, dt, seed++);
      cpu_be().unary(op, col.ref.expand({5, 6, 9}), ref = cpu_empty({5, 6, 9}, x.ref.dtype()), p);
      gpu_be().unary(op, col.dev.expand({5, 6, 9}), out = dev_empty({5, 6, 9}, dt), p);
      EXPECT_PARITY(out, ref, dt);
      // Offset by one element (not 16-byte aligned: the scalar path), strided output.
      Pair flat = randn_pair({1001}, dt, seed++);
      cpu_be().unary(op, flat.ref.slice(0, 1, 1001), ref = cpu_empty({1000}, x.ref.dtype()), p);
      gpu_be().unary(op, flat.dev.slice(0, 1, 1001), out = dev_empty({1000}, dt), p);
      EXPECT_PARITY(out, ref, dt);
      Tensor wide = dev_empty({2000}, dt);
      gpu_be().fill(wide, 0.0);
      gpu_be().unary(op, flat.dev.slice(0, 0, 1000), wide.slice(0, 0, 2000, 2), p);
      cpu_be().unary(op, flat.ref.slice(0, 0, 1000), ref = cpu_empty({1000}, x.ref.dtype()), p);
      EXPECT_PARITY(wide.slice(0, 0, 2000, 2), ref, dt);
    }
  }
}

TEST(CudaElementwise, UnaryIntegers) {
  MOX_REQUIRE_CUDA();
  Generator g(3);
  for (DType dt : {DType::I64, DType::I32}) {
    Tensor x = randint(-50, 50, {1003}, &g, TensorOptions(dt));
    Tensor xd = x.to(kCUDA);
    for (UnaryOp op : {UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Sign, UnaryOp::Square, UnaryOp::Relu,
                       UnaryOp::AddScalar, UnaryOp::MulScalar, UnaryOp::RSubScalar, UnaryOp::Clamp,
                       UnaryOp::Floor, UnaryOp::Ceil, UnaryOp::Round}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " op " + std::to_string(int(op)));
      UnaryParams p{-7.6, 9.2};  // truncated to -7 and 9, like the CPU
      Tensor ref = cpu_empty({1003}, dt), out = dev_empty({1003}, dt);
      cpu_be().unary(op, x, ref, p);
      gpu_be().unary(op, xd, out, p);
      EXPECT_EQ(out.to(kCPU).to_vector<int64_t>(), ref.to_vector<int64_t>());
    }
    Tensor out = dev_empty({1003}, dt);
    EXPECT_THROW(gpu_be().unary(UnaryOp::Exp, xd, out, {}), Error);
  }
}

TEST(CudaElementwise, UnaryBackwardAllOps) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 500;
  for (const UnaryCase& c : kUnary)
    for (DType dt : kFloat)
      for (const Shape& s : {Shape{5}, Shape{37, 53}, Shape{1 << 18}}) {
        SCOPED_TRACE(trace(c.name, dt, s));
        Pair x = uniform_pair(s, dt, seed++, c.lo, c.hi);
        Pair gy = randn_pair(s, dt, seed++);
        // y from the CPU on the rounded x, rounded to dt, so both sides see the same y.
        Tensor y_ref = cpu_empty(s, x.ref.dtype());
        cpu_be().unary(c.op, x.ref, y_ref, c.p);
        Pair y = pair_of(y_ref, dt);
        Tensor ref = cpu_empty(s, x.ref.dtype());
        cpu_be().unary_backward(c.op, x.ref, y.ref, gy.ref, ref, c.p);
        Tensor out = dev_empty(s, dt);
        gpu_be().unary_backward(c.op, x.dev, y.dev, gy.dev, out, c.p);
        EXPECT_PARITY(out, ref, dt);
      }
}

TEST(CudaElementwise, UnaryBackwardUndefinedOperands) {
  MOX_REQUIRE_CUDA();
  // Ops whose derivative reads only y (x undefined) or only x (y undefined).
  Pair x = uniform_pair({777}, DType::F32, 1, 0.1, 3);
  Pair gy = randn_pair({777}, DType::F32, 2);
  for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Sqrt}) {
    Tensor y_ref = cpu_empty({777}, DType::F32);
    cpu_be().unary(op, x.ref, y_ref, {});
    Tensor y_dev = y_ref.to(kCUDA);
    Tensor ref = cpu_empty({777}, DType::F32), out = dev_empty({777}, DType::F32);
    cpu_be().unary_backward(op, Tensor(), y_ref, gy.ref, ref, {});
    gpu_be().unary_backward(op, Tensor(), y_dev, gy.dev, out, {});
    EXPECT_PARITY(out, ref, DType::F32);
  }
  for (UnaryOp op : {UnaryOp::Relu, UnaryOp::Gelu, UnaryOp::Silu, UnaryOp::Log}) {
    Tensor ref = cpu_empty({777}, DType::F32), out = dev_empty({777}, DType::F32);
    cpu_be().unary_backward(op, x.ref, Tensor(), gy.ref, ref, {});
    gpu_be().unary_backward(op, x.dev, Tensor(), gy.dev, out, {});
    EXPECT_PARITY(out, ref, DType::F32);
  }
}

struct BinaryCase {
  BinaryOp op;
  const char* name;
  double alo, ahi, blo, bhi;
};
const BinaryCase kBinary[] = {
    {BinaryOp::Add, "add", -3, 3, -3, 3},         {BinaryOp::Sub, "sub", -3, 3, -3, 3},
    {BinaryOp::Mul, "mul", -3, 3, -3, 3},         {BinaryOp::Div, "div", -3, 3, 0.5, 3},
    {BinaryOp::Pow, "pow", 0.1, 3, -2, 2},        {BinaryOp::Maximum, "maximum", -3, 3, -3, 3},
    {BinaryOp::Minimum, "minimum", -3, 3, -3, 3}, {BinaryOp::Atan2, "atan2", -3, 3, -3, 3},
};

TEST(CudaElementwise, BinaryFloat) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 900;
  for (const BinaryCase& c : kBinary)
    for (DType dt : kFloat)
      for (const Shape& s : kShapes) {
        SCOPED_TRACE(trace(c.name, dt, s));
        Pair a = uniform_pair(s, dt, seed++, c.alo, c.ahi);
        Pair b = uniform_pair(s, dt, seed++, c.blo, c.bhi);
        Tensor ref = cpu_empty(s, a.ref.dtype()), out = dev_empty(s, dt);
        cpu_be().binary(c.op, a.ref, b.ref, ref);
        gpu_be().binary(c.op, a.dev, b.dev, out);
        EXPECT_PARITY(out, ref, dt);
      }
}

TEST(CudaElementwise, BinaryBroadcastAndStrided) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 1300;
  for (DType dt : {DType::F32, DType::BF16, DType::F64})
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Maximum}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " op " + std::to_string(int(op)));
      auto check = [&](const Tensor& ar, const Tensor& br, const Tensor& ad, const Tensor& bd) {
        Tensor ref = cpu_empty(ar.shape(), ar.dtype()), out = dev_empty(ad.shape(), dt);
        cpu_be().binary(op, ar, br, ref);
        gpu_be().binary(op, ad, bd, out);
        EXPECT_PARITY(out, ref, dt);
      };
      // Bias add: [N, C] with [1, C] expanded.
      Pair x = uniform_pair({129, 67}, dt, seed++, 0.5, 2);
      Pair bias = uniform_pair({1, 67}, dt, seed++, 0.5, 2);
      check(x.ref, bias.ref.expand({129, 67}), x.dev, bias.dev.expand({129, 67}));
      // A one-element scalar broadcast over everything, both sides.
      Pair sc = uniform_pair({1}, dt, seed++, 0.5, 2);
      check(x.ref, sc.ref.expand({129, 67}), x.dev, sc.dev.expand({129, 67}));
      check(sc.ref.expand({129, 67}), x.ref, sc.dev.expand({129, 67}), x.dev);
      // [7, 1, 5] x [9, 1] -> [7, 9, 5]
      Pair p = uniform_pair({7, 1, 5}, dt, seed++, 0.5, 2);
      Pair q = uniform_pair({9, 1}, dt, seed++, 0.5, 2);
      check(p.ref.expand({7, 9, 5}), q.ref.expand({7, 9, 5}), p.dev.expand({7, 9, 5}), q.dev.expand({7, 9, 5}));
      // Transposed with contiguous.
      Pair t = uniform_pair({67, 129}, dt, seed++, 0.5, 2);
      check(t.ref.t(), x.ref, t.dev.t(), x.dev);
      // Unaligned views (offset by one element).
      Pair u = uniform_pair({1001}, dt, seed++, 0.5, 2);
      check(u.ref.slice(0, 1, 1001), u.ref.slice(0, 0, 1000), u.dev.slice(0, 1, 1001), u.dev.slice(0, 0, 1000));
    }
}

TEST(CudaElementwise, BinaryIntegers) {
  MOX_REQUIRE_CUDA();
  Generator g(11);
  for (DType dt : {DType::I64, DType::I32, DType::I8, DType::U8}) {
    const bool u8 = dt == DType::U8;
    Tensor a = randint(u8 ? 0 : -100, 100, {37, 41}, &g, TensorOptions(dt));
    Tensor b = randint(1, 5, {37, 41}, &g, TensorOptions(dt));  // nonzero divisors; powers below 2^31
    Tensor ad = a.to(kCUDA), bd = b.to(kCUDA);
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow,
                        BinaryOp::Maximum, BinaryOp::Minimum}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " op " + std::to_string(int(op)));
      Tensor ref = cpu_empty({37, 41}, dt), out = dev_empty({37, 41}, dt);
      cpu_be().binary(op, a, b, ref);
      gpu_be().binary(op, ad, bd, out);
      EXPECT_EQ(out.to(kCPU).to_vector<int64_t>(), ref.to_vector<int64_t>());
      // Broadcast row of b, transposed a.
      Tensor a2 = randint(u8 ? 0 : -100, 100, {41, 37}, &g, TensorOptions(dt));
      Tensor b2 = randint(1, 5, {1, 41}, &g, TensorOptions(dt));
      cpu_be().binary(op, a2.t(), b2.expand({37, 41}), ref);
      gpu_be().binary(op, a2.to(kCUDA).t(), b2.to(kCUDA).expand({37, 41}), out);
      EXPECT_EQ(out.to(kCPU).to_vector<int64_t>(), ref.to_vector<int64_t>());
    }
    Tensor out = dev_empty({37, 41}, dt);
    EXPECT_THROW(gpu_be().binary(BinaryOp::Atan2, ad, bd, out), Error);
  }
}

TEST(CudaElementwise, Comparisons) {
  MOX_REQUIRE_CUDA();
  Generator g(5);
  for (DType dt : {DType::F32, DType::BF16, DType::F64, DType::F16, DType::I64, DType::I32, DType::U8}) {
    // Small integers so that equal values are common.
    Tensor a = randint(0, 4, {3, 1001}, &g, TensorOptions(DType::I64)).to(dt);
    Tensor b = randint(0, 4, {3, 1001}, &g, TensorOptions(DType::I64)).to(dt);
    Tensor ar = is_floating(dt) ? a.to(ref_dtype(dt)) : a, br = is_floating(dt) ? b.to(ref_dtype(dt)) : b;
    Tensor ad = a.to(kCUDA), bd = b.to(kCUDA);
    for (BinaryOp op : {BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt, BinaryOp::Le, BinaryOp::Gt, BinaryOp::Ge}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " op " + std::to_string(int(op)));
      Tensor ref = cpu_empty({3, 1001}, DType::U8), out = dev_empty({3, 1001}, DType::U8);
      cpu_be().binary(op, ar, br, ref);
      gpu_be().binary(op, ad, bd, out);
      EXPECT_EQ(out.to(kCPU).to_vector<int64_t>(), ref.to_vector<int64_t>());
      // Broadcast b's first row, strided output.
      Tensor wide = dev_empty({3, 2002}, DType::U8);
      cpu_be().binary(op, ar, br.slice(0, 0, 1).expand({3, 1001}), ref);
      gpu_be().binary(op, ad, bd.slice(0, 0, 1).expand({3, 1001}), wide.slice(1, 0, 2002, 2));
      EXPECT_EQ(wide.slice(1, 0, 2002, 2).to(kCPU).contiguous().to_vector<int64_t>(), ref.to_vector<int64_t>());
    }
  }
}

TEST(CudaElementwise, NaNHandling) {
  MOX_REQUIRE_CUDA();
  const float nan = std::nanf("");
  Tensor a = from_vector<float>({nan, 1, 2, nan, -1}, {5});
  Tensor b = from_vector<float>({1, nan, 0, nan, 3}, {5});
  for (BinaryOp op : {BinaryOp::Maximum, BinaryOp::Minimum, BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt}) {
    const bool cmp = is_comparison(op);
    Tensor ref = cpu_empty({5}, cmp ? DType::U8 : DType::F32), out = dev_empty({5}, cmp ? DType::U8 : DType::F32);
    cpu_be().binary(op, a, b, ref);
    gpu_be().binary(op, a.to(kCUDA), b.to(kCUDA), out);
    auto r = ref.to_vector<double>(), o = out.to(kCPU).to_vector<double>();
    for (size_t i = 0; i < r.size(); ++i) {
      if (std::isnan(r[i])) EXPECT_TRUE(std::isnan(o[i])) << "op " << int(op) << " at " << i;
      else EXPECT_EQ(o[i], r[i]) << "op " << int(op) << " at " << i;
    }
  }
}

TEST(CudaElementwise, Where) {
  MOX_REQUIRE_CUDA();
  Generator g(9);
  for (DType dt : {DType::F32, DType::BF16, DType::F64, DType::I64, DType::I32, DType::U8}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor cond = randint(0, 2, {17, 1, 33}, &g, TensorOptions(DType::U8));
    Tensor a = randint(-50, 50, {17, 9, 33}, &g, TensorOptions(DType::I64)).to(dt);
    Tensor b = randint(-50, 50, {9, 1}, &g, TensorOptions(DType::I64)).to(dt);
    const Shape s{17, 9, 33};
    Tensor ref = cpu_empty(s, dt), out = dev_empty(s, dt);
    cpu_be().where(cond.expand(s), a, b.expand(s), ref);
    gpu_be().where(cond.to(kCUDA).expand(s), a.to(kCUDA), b.to(kCUDA).expand(s), out);
    EXPECT_EQ(out.to(kCPU).to_vector<double>(), ref.to_vector<double>());
    // Contiguous everything, odd length.
    Tensor c2 = randint(0, 2, {4099}, &g, TensorOptions(DType::U8));
    Tensor a2 = randint(-50, 50, {4099}, &g, TensorOptions(DType::I64)).to(dt);
    Tensor b2 = randint(-50, 50, {4099}, &g, TensorOptions(DType::I64)).to(dt);
    Tensor r2 = cpu_empty({4099}, dt), o2 = dev_empty({4099}, dt);
    cpu_be().where(c2, a2, b2, r2);
    gpu_be().where(c2.to(kCUDA), a2.to(kCUDA), b2.to(kCUDA), o2);
    EXPECT_EQ(o2.to(kCPU).to_vector<double>(), r2.to_vector<double>());
  }
}

TEST(CudaElementwise, ThroughOps) {
  MOX_REQUIRE_CUDA();
  Generator g(21);
  Tensor a = randn({65, 31}, &g), b = randn({31}, &g);
  Tensor ref = gelu(a * b + 1.0);
  Tensor out = gelu(a.to(kCUDA) * b.to(kCUDA) + 1.0);
  EXPECT_PARITY(out, ref, DType::F32);
}

}  // namespace
}  // namespace mox::testing
