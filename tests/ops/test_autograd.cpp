#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "mox/mox.h"

using namespace mox;

TEST(Autograd, ScalarBackwardAndAccumulation) {
  Tensor x = from_vector<double>({1, 2, 3}).requires_grad_();
  Tensor y = sum(mul(x, x));
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
  sum(mul(x, 3.0)).backward();  // accumulates
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 7, 9}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, BackwardWithGivenGradient) {
  Tensor x = from_vector<double>({1, 2}).requires_grad_();
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.backward(), Error);  // non-scalar needs a gradient
  y.backward(from_vector<double>({1, 10}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 20}));
  EXPECT_THROW(mul(x, 2.0).backward(from_vector<double>({1, 2, 3})), Error);
}

TEST(Autograd, NoGradDetachAndLeaves) {
  Tensor x = ones({2}, DType::F64).requires_grad_();
  {
    NoGradGuard ng;
    Tensor y = mul(x, 2.0);
    EXPECT_FALSE(y.requires_grad());
  }
  Tensor d = mul(x, 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE(mul(x, 2.0).is_leaf());
  EXPECT_THROW(x.fill_(3), Error);  // in-place on a leaf that requires grad
  EXPECT_THROW(ones({2}, DType::I64).requires_grad_(), Error);
}

TEST(Autograd, GraphIsFreedAfterBackward) {
  Tensor x = ones({2}, DType::F64).requires_grad_();
  Tensor y = sum(exp(x));
  y.backward();
  EXPECT_THROW(y.backward(), Error);  // saved tensors were released
  Tensor z = sum(exp(x));
  z.backward(Tensor(), /*retain_graph=*/true);
  z.backward();
  EXPECT_NEAR(x.grad().to_vector<double>()[0], std::exp(1.0) * 3, 1e-12);
}

TEST(Autograd, DiamondGraphSumsPaths) {
  Tensor x = from_vector<double>({2}).requires_grad_();
  Tensor a = mul(x, 3.0), b = exp(x);
  Tensor y = sum(mul(a, b));  // d/dx 3x e^x = 3e^x + 3x e^x
  y.backward();
  EXPECT_NEAR(x.grad().item<double>(), 3 * std::exp(2.0) * 3, 1e-9);
}

TEST(Autograd, GradFunctionDoesNotTouchDotGrad) {
  Tensor x = from_vector<double>({1, 2}).requires_grad_();
  Tensor w = from_vector<double>({3, 4}).requires_grad_();
  Tensor y = sum(mul(x, w));
  auto g = mox::grad({y}, {x, w});
  EXPECT_EQ(g[0].to_vector<double>(), (std::vector<double>{3, 4}));
  EXPECT_EQ(g[1].to_vector<double>(), (std::vector<double>{1, 2}));
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, SharedGradientsAreNotAliased) {
  // a + b hands the same gradient to both leaves; in-place edits of one must not leak.
  Tensor a = zeros({3}, DType::F64).requires_grad_(), b = zeros({3}, DType::F64).requires_grad_();
  sum(add(a, b)).backward();
  {
    NoGradGuard ng;
    a.grad().mul_(5.0);
  }
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{1, 1, 1}));
}

TEST(Autograd, ViewsAndCopiesGradcheck) {
  using mox::testing::gradcheck;
  using mox::testing::rnd;
  using mox::testing::rnd_noncontig;
  EXPECT_TRUE(gradcheck([](auto& v) { return v[0].transpose(0, 1).reshape({-1}); }, {rnd({3, 4}, 1)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return v[0].permute({2, 0, 1}).contiguous(); }, {rnd({2, 3, 4}, 2)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return v[0].slice(1, 1, 4, 2); }, {rnd_noncontig({3, 5}, 3)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return v[0].select(0, 1); }, {rnd({3, 2}, 4)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return v[0].expand({4, 3, 2}); }, {rnd({3, 1}, 5)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return v[0].unsqueeze(1).squeeze(1).flatten(); }, {rnd({2, 3}, 6)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return cat({v[0], v[1], v[0]}, 1); }, {rnd({2, 3}, 7), rnd_noncontig({2, 2}, 8)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return stack({v[0], v[1]}, 2); }, {rnd({2, 3}, 9), rnd({2, 3}, 10)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return mul(split(v[0], 2, 1)[1], chunk(v[0], 2, 1)[0]); }, {rnd({3, 4}, 11)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return pad2d(v[0], 1, 2, 0, 1, 0.5); }, {rnd({2, 3, 3}, 12)}));
  EXPECT_TRUE(gradcheck([](auto& v) { return v[0].clone().to(DType::F32).to(DType::F64); }, {rnd({3}, 13)}, 1e-3, 1e-4, 1e-3));
}
