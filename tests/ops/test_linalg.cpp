#include <gtest/gtest.h>

#include "gradcheck.h"
#include "mox/mox.h"

using namespace mox;
using mox::testing::gradcheck;
using mox::testing::rnd;
using mox::testing::rnd_noncontig;

static std::vector<double> naive_mm(const Tensor& a, const Tensor& b) {
  auto av = a.contiguous().to_vector<double>(), bv = b.contiguous().to_vector<double>();
  int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  std::vector<double> c(M * N, 0);
  for (int64_t i = 0; i < M; i++)
    for (int64_t k = 0; k < K; k++)
      for (int64_t j = 0; j < N; j++) c[i * N + j] += av[i * K + k] * bv[k * N + j];
  return c;
}

TEST(Linalg, MatmulForwardAllLayouts) {
  Generator g(1);
  Tensor a = randn({37, 23}, &g, DType::F64), b = randn({23, 19}, &g, DType::F64);
  auto ref = naive_mm(a, b);
  auto check = [&](const Tensor& x, const Tensor& y) {
    auto c = matmul(x, y).to_vector<double>();
    for (size_t i = 0; i < ref.size(); i++) ASSERT_NEAR(c[i], ref[i], 1e-10);
  };
  check(a, b);
  check(a.t().contiguous().t(), b);              // column-major a
  check(a, b.t().contiguous().t());              // column-major b
  check(a.t().contiguous().t(), b.t().contiguous().t());
  Tensor big = randn({37, 46}, &g, DType::F64);  // neither layout: a strided slice
  Tensor sliced = big.slice(1, 0, 46, 2);
  auto ref2 = naive_mm(sliced, b);
  auto c2 = matmul(sliced, b).to_vector<double>();
  for (size_t i = 0; i < ref2.size(); i++) ASSERT_NEAR(c2[i], ref2[i], 1e-10);
}

TEST(Linalg, MatmulShapes) {
  EXPECT_EQ(matmul(zeros({3}), zeros({3})).shape(), (Shape{}));
  EXPECT_EQ(matmul(zeros({2, 3}), zeros({3})).shape(), (Shape{2}));
  EXPECT_EQ(matmul(zeros({3}), zeros({3, 4})).shape(), (Shape{4}));
  EXPECT_EQ(matmul(zeros({5, 2, 3}), zeros({3, 4})).shape(), (Shape{5, 2, 4}));
  EXPECT_EQ(matmul(zeros({5, 1, 2, 3}), zeros({6, 3, 4})).shape(), (Shape{5, 6, 2, 4}));
  EXPECT_EQ(bmm(zeros({5, 2, 3}), zeros({5, 3, 4})).shape(), (Shape{5, 2, 4}));
  EXPECT_THROW(matmul(zeros({2, 3}), zeros({2, 3})), Error);
  EXPECT_THROW(bmm(zeros({5, 2, 3}), zeros({4, 3, 4})), Error);
  EXPECT_THROW(matmul(zeros({2, 2}, DType::I64), zeros({2, 2}, DType::I64)), Error);
  // batched values against per-batch products
  Generator g(2);
  Tensor a = randn({4, 3, 5}, &g), b = randn({4, 5, 2}, &g);
  Tensor c = bmm(a, b);
  for (int64_t i = 0; i < 4; i++) EXPECT_TRUE(allclose(c[i], matmul(a[i], b[i]), 1e-5, 1e-6));
}

TEST(Linalg, Gradients) {
  uint64_t s = 300;
  auto mm = [](auto& v) { return matmul(v[0], v[1]); };
  EXPECT_TRUE(gradcheck(mm, {rnd({3, 4}, s++), rnd({4, 2}, s++)}));
  EXPECT_TRUE(gradcheck(mm, {rnd_noncontig({3, 4}, s++), rnd_noncontig({4, 2}, s++)}));
  EXPECT_TRUE(gradcheck(mm, {rnd({4}, s++), rnd({4, 2}, s++)}));
  EXPECT_TRUE(gradcheck(mm, {rnd({3, 4}, s++), rnd({4}, s++)}));
  EXPECT_TRUE(gradcheck(mm, {rnd({4}, s++), rnd({4}, s++)}));
  EXPECT_TRUE(gradcheck(mm, {rnd({2, 3, 4}, s++), rnd({4, 5}, s++)}));
  EXPECT_TRUE(gradcheck(mm, {rnd({2, 1, 3, 4}, s++), rnd({3, 4, 2}, s++)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return linear(v[0], v[1], v[2]); },
                        {rnd({5, 4}, s++), rnd({3, 4}, s++), rnd({3}, s++)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return linear(v[0], v[1]); }, {rnd({2, 5, 4}, s++), rnd({3, 4}, s++)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return linear(v[0], v[1], v[2]); },
                        {rnd_noncontig({5, 4}, s++), rnd_noncontig({3, 4}, s++), rnd({3}, s++)}));
}

TEST(Linalg, LinearMatchesMatmul) {
  Generator g(9);
  Tensor x = randn({8, 6}, &g), w = randn({4, 6}, &g), b = randn({4}, &g);
  EXPECT_TRUE(allclose(linear(x, w, b), add(matmul(x, w.t()), b), 1e-5, 1e-5));
  EXPECT_THROW(linear(x, randn({4, 5}, &g)), Error);
  EXPECT_THROW(linear(x, w, randn({5}, &g)), Error);
}

namespace mox {
namespace {

// linear_gelu is gelu_tanh(linear(...)) through one GEMM with an epilogue: the same values and
// gradients as the two ops, and central finite differences in f64.
TEST(LinearGelu, EqualsLinearThenGeluTanhAndItsGradients) {
  Generator g(3);
  for (bool with_bias : {true, false}) {
    Tensor x = randn({2, 3, 5}, &g).requires_grad_(), w = randn({6, 5}, &g).requires_grad_();
    Tensor b = with_bias ? randn({6}, &g).requires_grad_() : Tensor();
    Tensor y = linear_gelu(x, w, b);
    Tensor r = gelu(linear(x, w, b), true);
    EXPECT_EQ(y.shape(), r.shape());
    EXPECT_EQ(y.to_vector<float>(), r.to_vector<float>());
    Tensor gy = randn(y.shape(), &g);
    auto grads = grad({sum(mul(y, gy))}, b.defined() ? std::vector<Tensor>{x, w, b} : std::vector<Tensor>{x, w});
    auto refs = grad({sum(mul(r, gy))}, b.defined() ? std::vector<Tensor>{x, w, b} : std::vector<Tensor>{x, w});
    for (size_t i = 0; i < grads.size(); ++i) EXPECT_EQ(grads[i].to_vector<float>(), refs[i].to_vector<float>());
  }
  Tensor x = randn({4, 3}, &g, DType::F64).requires_grad_(), w = randn({5, 3}, &g, DType::F64).requires_grad_();
  Tensor b = randn({5}, &g, DType::F64).requires_grad_();
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return linear_gelu(in[0], in[1], in[2]); },
                                 {x, w, b}));
}

}  // namespace
}  // namespace mox

namespace mox {
namespace {

// linear_residual is residual + linear(x, w, b) through one GEMM epilogue: the same values
// (the same order of additions) and gradients, checked against finite differences in f64.
TEST(LinearResidual, EqualsAddOfLinearAndItsGradients) {
  Generator g(5);
  for (bool with_bias : {true, false}) {
    Tensor x = randn({2, 3, 5}, &g).requires_grad_(), w = randn({6, 5}, &g).requires_grad_();
    Tensor b = with_bias ? randn({6}, &g).requires_grad_() : Tensor();
    Tensor r = randn({2, 3, 6}, &g).requires_grad_();
    Tensor y = linear_residual(x, w, b, r), ref = add(r, linear(x, w, b));
    EXPECT_EQ(y.to_vector<float>(), ref.to_vector<float>());
    Tensor gy = randn(y.shape(), &g);
    std::vector<Tensor> in = b.defined() ? std::vector<Tensor>{x, w, b, r} : std::vector<Tensor>{x, w, r};
    auto gs = grad({sum(mul(y, gy))}, in), rs = grad({sum(mul(ref, gy))}, in);
    for (size_t i = 0; i < gs.size(); ++i) EXPECT_EQ(gs[i].to_vector<float>(), rs[i].to_vector<float>()) << i;
  }
  Tensor x = randn({4, 3}, &g, DType::F64).requires_grad_(), w = randn({5, 3}, &g, DType::F64).requires_grad_();
  Tensor b = randn({5}, &g, DType::F64).requires_grad_(), r = randn({4, 5}, &g, DType::F64).requires_grad_();
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return linear_residual(in[0], in[1], in[2], in[3]); },
                        {x, w, b, r}));
  // shapes that do not fit are the two ops (and their errors)
  EXPECT_THROW(linear_residual(randn({4, 3}), randn({5, 3}), Tensor(), randn({4, 6})), Error);
}

}  // namespace
}  // namespace mox
