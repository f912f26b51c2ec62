#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "mox/mox.h"

using namespace mox;
using mox::testing::gradcheck;
using mox::testing::rnd;
using mox::testing::rnd_noncontig;

TEST(Reduce, ForwardValues) {
  Tensor x = arange(0, 24, 1).reshape({2, 3, 4});
  EXPECT_EQ(sum(x).item<float>(), 276);
  EXPECT_EQ(sum(x, {0}).to_vector<float>()[0], 12);
  EXPECT_EQ(sum(x, {1, 2}).to_vector<float>(), (std::vector<float>{66, 210}));
  EXPECT_EQ(sum(x, {0, 2}, true).shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(sum(x, {0, 2}).to_vector<float>(), (std::vector<float>{60, 92, 124}));
  EXPECT_EQ(mean(x, {-1}).to_vector<float>()[0], 1.5f);
  EXPECT_EQ(amax(x, {1}).to_vector<float>()[0], 8);
  EXPECT_EQ(amin(x).item<float>(), 0);
  auto [v, i] = max(x, 1);
  EXPECT_EQ(v.shape(), (Shape{2, 4}));
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{2, 2, 2, 2, 2, 2, 2, 2}));
  EXPECT_EQ(argmin(from_vector<float>({3, 1, 2}), 0).item<int64_t>(), 1);
  EXPECT_EQ(argmax(from_vector<float>({3, 1, 2, 1}, {2, 2}), 1).to_vector<int64_t>(), (std::vector<int64_t>{0, 0}));
  EXPECT_NEAR(var(from_vector<float>({1, 2, 3, 4})).item<float>(), 1.6666666f, 1e-6);
  EXPECT_NEAR(var(from_vector<float>({1, 2, 3, 4}), {}, 0).item<float>(), 1.25f, 1e-6);
  EXPECT_NEAR(std_dev(from_vector<float>({1, 2, 3, 4})).item<float>(), std::sqrt(1.6666666f), 1e-6);
  EXPECT_NEAR(logsumexp(from_vector<float>({1000, 1000}), {0}).item<float>(), 1000 + std::log(2.0), 1e-3);
  EXPECT_EQ(prod(from_vector<float>({2, 3, 4})).item<float>(), 24);
  EXPECT_EQ(sum(arange(5)).dtype(), DType::I64);
  EXPECT_THROW(sum(x, {3}), Error);
  EXPECT_THROW(amax(zeros({0})), Error);
}

TEST(Reduce, LayoutsAgreeWithNaive) {
  // Exercise the [R], [K,R], [R,K], [K,R,K] and permuted paths against a double loop.
  Generator g(5);
  Tensor x = randn({7, 33, 65}, &g, DType::F64);
  auto xv = x.to_vector<double>();
  auto at = [&](int a, int b, int c) { return xv[(a * 33 + b) * 65 + c]; };
  for (auto dims : std::vector<std::vector<int64_t>>{{0}, {1}, {2}, {0, 1}, {1, 2}, {0, 2}, {0, 1, 2}}) {
    Tensor s = sum(x, dims, true);
    auto sv = s.to_vector<double>();
    Shape ks = s.shape();
    for (int a = 0; a < ks[0]; a++)
      for (int b = 0; b < ks[1]; b++)
        for (int c = 0; c < ks[2]; c++) {
          double ref = 0;
          for (int i = 0; i < (ks[0] == 1 ? 7 : 1); i++)
            for (int j = 0; j < (ks[1] == 1 ? 33 : 1); j++)
              for (int k = 0; k < (ks[2] == 1 ? 65 : 1); k++)
                ref += at(ks[0] == 1 ? i : a, ks[1] == 1 ? j : b, ks[2] == 1 ? k : c);
          ASSERT_NEAR(sv[(a * ks[1] + b) * ks[2] + c], ref, 1e-9);
        }
  }
  // big f32 sums accumulate accurately enough
  Tensor big = ones({1 << 22});
  EXPECT_EQ(sum(big).item<float>(), float(1 << 22));
}

TEST(Reduce, Gradients) {
  uint64_t s = 900;
  auto check = [&](std::function<Tensor(const Tensor&)> f, Shape shape, const char* name) {
    EXPECT_TRUE(gradcheck([&](auto& v) { return f(v[0]); }, {rnd(shape, s++)})) << name;
    if (shape.size() >= 2) {
      EXPECT_TRUE(gradcheck([&](auto& v) { return f(v[0]); }, {rnd_noncontig(shape, s++)})) << name << " nc";
    }
  };
  check([](const Tensor& t) { return sum(t); }, {3, 4}, "sum all");
  check([](const Tensor& t) { return sum(t, {0}); }, {3, 4}, "sum 0");
  check([](const Tensor& t) { return sum(t, {1, 2}, true); }, {2, 3, 4}, "sum keep");
  check([](const Tensor& t) { return mean(t, {-1}); }, {3, 5}, "mean");
  check([](const Tensor& t) { return mean(t, {0, 2}); }, {2, 3, 4}, "mean 02");
  check([](const Tensor& t) { return prod(t, {1}); }, {3, 4}, "prod");
  check([](const Tensor& t) { return amax(t, {1}); }, {3, 4}, "amax");
  check([](const Tensor& t) { return amin(t); }, {3, 4}, "amin");
  check([](const Tensor& t) { return max(t, 0).values; }, {3, 4}, "max dim");
  check([](const Tensor& t) { return min(t, 1, true).values; }, {3, 4}, "min dim");
  check([](const Tensor& t) { return var(t, {1}); }, {3, 4}, "var");
  check([](const Tensor& t) { return std_dev(t, {0}, 0); }, {3, 4}, "std");
  check([](const Tensor& t) { return logsumexp(t, {1}); }, {3, 4}, "logsumexp");
  check([](const Tensor& t) { return norm(t); }, {3, 4}, "norm");
}

TEST(Reduce, ProdGradientWithZeros) {
  Tensor x = from_vector<double>({2, 0, 3}).requires_grad_();
  sum(prod(x)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 6, 0}));
}
