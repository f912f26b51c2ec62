#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "mox/mox.h"

using namespace mox;
using mox::testing::gradcheck;
using mox::testing::rnd;
using mox::testing::rnd_noncontig;

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

TEST(Elementwise, BroadcastingForward) {
  Tensor a = from_vector<float>({1, 2, 3}, {3, 1});
  Tensor b = from_vector<float>({10, 20}, {1, 2});
  Tensor c = add(a, b);
  EXPECT_EQ(c.shape(), (Shape{3, 2}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{11, 21, 12, 22, 13, 23}));
  EXPECT_EQ((b - 1.0).to_vector<float>(), (std::vector<float>{9, 19}));
  EXPECT_EQ((2.0 - b).to_vector<float>(), (std::vector<float>{-8, -18}));
  EXPECT_EQ(div(b, a).shape(), (Shape{3, 2}));
  EXPECT_THROW(add(zeros({2, 3}), zeros({3, 2})), Error);
  // integer arithmetic and promotion
  Tensor i = arange(4);
  EXPECT_EQ(add(i, i).dtype(), DType::I64);
  EXPECT_EQ(add(i, ones({4})).dtype(), DType::F32);
  EXPECT_EQ(div(i, i.to(DType::I32)).dtype(), DType::F32);
}

TEST(Elementwise, ComparisonsWhereMaskedFill) {
  Tensor a = from_vector<float>({1, 5, 3});
  Tensor b = from_vector<float>({2, 5, 1});
  EXPECT_EQ(lt(a, b).dtype(), DType::U8);
  EXPECT_EQ(lt(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 0}));
  EXPECT_EQ(eq(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(ge(a, 3.0).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 1}));
  EXPECT_EQ(where(gt(a, b), a, b).to_vector<float>(), (std::vector<float>{2, 5, 3}));
  EXPECT_EQ(masked_fill(a, eq(a, 5.0), -1).to_vector<float>(), (std::vector<float>{1, -1, 3}));
  EXPECT_EQ(maximum(a, b).to_vector<float>(), (std::vector<float>{2, 5, 3}));
  EXPECT_EQ(clamp(a, 2, 4).to_vector<float>(), (std::vector<float>{2, 4, 3}));
}

// f32 kernels (vectorised approximations) agree with libm to ~1e-6 relative.
TEST(Elementwise, Float32MathMatchesLibm) {
  Generator g(7);
  Tensor x = rand({4099}, &g).mul_(20.0).add_(scalar_tensor(-10.0));
  auto xv = x.to_vector<float>();
  struct Case { const char* name; std::function<Tensor(const Tensor&)> op; std::function<double(double)> ref; };
  std::vector<Case> cases = {
      {"exp", [](const Tensor& t) { return exp(t); }, [](double v) { return std::exp(v); }},
      {"tanh", [](const Tensor& t) { return tanh(t); }, [](double v) { return std::tanh(v); }},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }, [](double v) { return 1 / (1 + std::exp(-v)); }},
      {"gelu", [](const Tensor& t) { return gelu(t); }, [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }},
      {"gelu_tanh", [](const Tensor& t) { return gelu(t, true); },
       [](double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); }},
      {"log", [](const Tensor& t) { return log(abs(t)); }, [](double v) { return std::log(std::abs(double(float(v)))); }},
      {"softplus", [](const Tensor& t) { return softplus(t); }, [](double v) { return v > 20 ? v : std::log1p(std::exp(v)); }},
      {"elu", [](const Tensor& t) { return elu(t); }, [](double v) { return v > 0 ? v : std::expm1(v); }},
  };
  for (auto& c : cases) {
    auto y = c.op(x).to_vector<float>();
    for (size_t i = 0; i < xv.size(); i++) {
      double r = c.ref(xv[i]);
      ASSERT_NEAR(y[i], r, 2e-6 * std::max(1.0, std::abs(r))) << c.name << " at x=" << xv[i];
    }
  }
}

TEST(Elementwise, UnaryGradients) {
  std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> ops = {
      {"neg", [](const Tensor& t) { return neg(t); }},
      {"exp", [](const Tensor& t) { return exp(t); }},
      {"log", [](const Tensor& t) { return log(add(abs(t), 0.5)); }},
      {"sqrt", [](const Tensor& t) { return sqrt(add(abs(t), 0.5)); }},
      {"rsqrt", [](const Tensor& t) { return rsqrt(add(abs(t), 0.5)); }},
      {"abs", [](const Tensor& t) { return abs(t); }},
      {"square", [](const Tensor& t) { return square(t); }},
      {"reciprocal", [](const Tensor& t) { return reciprocal(add(abs(t), 0.5)); }},
      {"sin", [](const Tensor& t) { return sin(t); }},
      {"cos", [](const Tensor& t) { return cos(t); }},
      {"log1p", [](const Tensor& t) { return log1p(abs(t)); }},
      {"expm1", [](const Tensor& t) { return expm1(t); }},
      {"relu", [](const Tensor& t) { return relu(t); }},
      {"leaky_relu", [](const Tensor& t) { return leaky_relu(t, 0.1); }},
      {"elu", [](const Tensor& t) { return elu(t, 1.3); }},
      {"selu", [](const Tensor& t) { return selu(t); }},
      {"gelu", [](const Tensor& t) { return gelu(t); }},
      {"gelu_tanh", [](const Tensor& t) { return gelu(t, true); }},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }},
      {"tanh", [](const Tensor& t) { return tanh(t); }},
      {"softplus", [](const Tensor& t) { return softplus(t, 2.0, 1.5); }},
      {"silu", [](const Tensor& t) { return silu(t); }},
      {"add_scalar", [](const Tensor& t) { return add(t, 3.0); }},
      {"mul_scalar", [](const Tensor& t) { return mul(t, -2.0); }},
      {"rsub", [](const Tensor& t) { return rsub(t, 1.0); }},
      {"rdiv", [](const Tensor& t) { return rdiv(add(abs(t), 0.5), 2.0); }},
      {"pow_scalar", [](const Tensor& t) { return pow(add(abs(t), 0.5), 2.7); }},
      {"clamp", [](const Tensor& t) { return clamp(t, -0.5, 0.3); }},
  };
  uint64_t seed = 100;
  for (auto& [name, op] : ops) {
    // Keep inputs away from kinks (relu/abs/clamp at 0, -0.5, 0.3) so differences are smooth.
    Tensor x = rnd({3, 4}, seed++);
    {
      NoGradGuard ng;
      auto v = x.to_vector<double>();
      for (double& e : v)
        for (double k : {0.0, -0.5, 0.3})
          if (std::abs(e - k) < 1e-3) e += 2e-3;
      x.detach().copy_(from_vector<double>(v, x.shape()));
    }
    EXPECT_TRUE(gradcheck([&](auto& v) { return op(v[0]); }, {x})) << name;
    Tensor xn = rnd_noncontig({4, 3}, seed++);
    EXPECT_TRUE(gradcheck([&](auto& v) { return op(v[0]); }, {xn})) << name << " (non-contiguous)";
  }
}

TEST(Elementwise, BinaryGradientsWithBroadcasting) {
  std::vector<std::pair<const char*, std::function<Tensor(const Tensor&, const Tensor&)>>> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, add(abs(b), 0.5)); }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(add(abs(a), 0.5), b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
      {"where", [](const Tensor& a, const Tensor& b) { return where(gt(a, 0.0), a, b); }},
  };
  std::vector<std::pair<Shape, Shape>> shapes = {{{2, 3}, {2, 3}}, {{2, 3}, {3}}, {{4, 1, 3}, {2, 1}}, {{}, {2, 2}}};
  uint64_t seed = 500;
  for (auto& [name, op] : ops) {
    for (auto& [sa, sb] : shapes) {
      EXPECT_TRUE(gradcheck([&](auto& v) { return op(v[0], v[1]); }, {rnd(sa, seed++), rnd(sb, seed++)}))
          << name << " " << shape_str(sa) << " " << shape_str(sb);
    }
    EXPECT_TRUE(gradcheck([&](auto& v) { return op(v[0], v[1]); }, {rnd_noncontig({3, 4}, seed++), rnd({4}, seed++)}))
        << name << " non-contiguous";
  }
}

TEST(Elementwise, LargeTensorsUseThreadsAndVectorPaths) {
  // Long enough to split across threads; a strided operand takes the generic path.
  Generator g(3);
  Tensor a = randn({512, 300}, &g), b = randn({300}, &g);
  Tensor c = add(a, b);
  auto av = a.to_vector<float>(), bv = b.to_vector<float>(), cv = c.to_vector<float>();
  for (size_t i = 0; i < cv.size(); i++) ASSERT_EQ(cv[i], av[i] + bv[i % 300]);
  Tensor at = a.t();
  Tensor d = mul(at, 2.0);
  auto dv = d.to_vector<float>();
  for (int64_t i = 0; i < 300; i++)
    for (int64_t j = 0; j < 512; j++) ASSERT_EQ(dv[i * 512 + j], av[j * 300 + i] * 2);
}
