// nn::init: gains and fans as in torch.nn.init, bounds and moments of the random
// initialisers, orthogonality, determinism, and each layer's default initialisation.
#include <gtest/gtest.h>

#include <cmath>

#include "nn_test_util.h"

using namespace mox;
using namespace mox::nn;

namespace {

struct Moments {
  double mean, var, min, max;
};
Moments moments(const Tensor& t) {
  std::vector<double> v = t.to_vector<double>();
  Moments m{0, 0, 1e300, -1e300};
  for (double x : v) {
    m.mean += x;
    m.min = std::min(m.min, x);
    m.max = std::max(m.max, x);
  }
  m.mean /= double(v.size());
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= double(v.size());
  return m;
}

TEST(Init, CalculateGainMatchesPyTorch) {
  EXPECT_DOUBLE_EQ(init::calculate_gain("linear"), 1.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("conv2d"), 1.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("sigmoid"), 1.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("tanh"), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("relu"), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu"), std::sqrt(2.0 / (1 + 0.01 * 0.01)));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(1.0 / 3.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("selu"), 0.75);
  EXPECT_THROW(init::calculate_gain("swish"), Error);
}

TEST(Init, FanInAndFanOut) {
  auto [fi, fo] = init::calculate_fan_in_and_fan_out(empty({8, 3, 3, 3}));
  EXPECT_EQ(fi, 27);
  EXPECT_EQ(fo, 72);
  auto [li, lo] = init::calculate_fan_in_and_fan_out(empty({10, 4}));
  EXPECT_EQ(li, 4);
  EXPECT_EQ(lo, 10);
  EXPECT_THROW(init::calculate_fan_in_and_fan_out(empty({5})), Error);
}

TEST(Init, XavierUniformBoundAndVariance) {
  Tensor w = empty({200, 300});
  Generator g(3);
  init::xavier_uniform_(w, 1.0, &g);
  double a = std::sqrt(6.0 / 500.0);
  Moments m = moments(w);
  EXPECT_GE(m.min, -a);
  EXPECT_LE(m.max, a);
  EXPECT_GT(m.max, 0.99 * a);
  EXPECT_NEAR(m.var, a * a / 3.0, 0.03 * a * a / 3.0);
  EXPECT_NEAR(m.mean, 0.0, 0.01 * a);
}

TEST(Init, XavierNormalAndKaimingStd) {
  Generator g(4);
  Tensor w = empty({256, 128});
  init::xavier_normal_(w, 2.0, &g);
  double std_x = 2.0 * std::sqrt(2.0 / 384.0);
  EXPECT_NEAR(std::sqrt(moments(w).var), std_x, 0.02 * std_x);
  init::kaiming_normal_(w, 0.0, init::FanMode::FanOut, "relu", &g);
  double std_k = std::sqrt(2.0) / std::sqrt(256.0);
  EXPECT_NEAR(std::sqrt(moments(w).var), std_k, 0.02 * std_k);
  init::kaiming_uniform_(w, 0.0, init::FanMode::FanIn, "relu", &g);
  double bound = std::sqrt(3.0) * std::sqrt(2.0) / std::sqrt(128.0);
  Moments m = moments(w);
  EXPECT_LE(m.max, bound);
  EXPECT_GE(m.min, -bound);
  EXPECT_GT(m.max, 0.99 * bound);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double d = 0;
  for (size_t i = 0; i < x.size(); i++) d = std::max(d, std::abs(x[i] - y[i]));
  return d;
}

TEST(Init, OrthogonalRowsOrColumnsAreOrthonormal) {
  Generator g(5);
  Tensor tall = empty({8, 5});
  init::orthogonal_(tall, 1.0, &g);
  EXPECT_LT(max_abs_diff(matmul(tall.t(), tall), eye(5)), 1e-5);
  Tensor wide = empty({5, 8}, DType::F64);
  init::orthogonal_(wide, 1.0, &g);
  EXPECT_LT(max_abs_diff(matmul(wide, wide.t()), eye(5, DType::F64)), 1e-12);
  Tensor square = empty({6, 6}, DType::F64);
  init::orthogonal_(square, 2.0, &g);
  EXPECT_LT(max_abs_diff(matmul(square.t(), square), mul(eye(6, DType::F64), 4.0)), 1e-12);
  // Conv-shaped: viewed as [4, 18], rows orthonormal.
  Tensor conv = empty({4, 2, 3, 3}, DType::F64);
  init::orthogonal_(conv, 1.0, &g);
  Tensor flat = conv.reshape({4, 18});
  EXPECT_LT(max_abs_diff(matmul(flat, flat.t()), eye(4, DType::F64)), 1e-12);
  EXPECT_THROW(init::orthogonal_(empty({3}), 1.0, &g), Error);
}

TEST(Init, OrthogonalIsNotJustIdentityAndIsSeeded) {
  Tensor a = empty({6, 6}, DType::F64), b = empty({6, 6}, DType::F64);
  Generator g1(7), g2(7), g3(8);
  init::orthogonal_(a, 1.0, &g1);
  init::orthogonal_(b, 1.0, &g2);
  EXPECT_TRUE(allclose(a, b, 0, 0));
  init::orthogonal_(b, 1.0, &g3);
  EXPECT_FALSE(allclose(a, b));
  EXPECT_GT(max_abs_diff(a, eye(6, DType::F64)), 0.1);
}

TEST(Init, WorksOnParametersThatRequireGrad) {
  Linear l(6, 6);
  EXPECT_NO_THROW(init::orthogonal_(l.weight));
  EXPECT_NO_THROW(init::xavier_uniform_(l.weight));
  EXPECT_NO_THROW(init::zeros_(l.bias));
  EXPECT_TRUE(l.weight.requires_grad());
  EXPECT_EQ(moments(l.bias).max, 0.0);
  init::constant_(l.bias, 0.25);
  EXPECT_EQ(moments(l.bias).min, 0.25);
  init::eye_(l.weight);
  EXPECT_TRUE(allclose(l.weight, eye(6)));
}

TEST(Init, TruncNormalStaysInside) {
  Tensor t = empty({20000});
  Generator g(9);
  init::trunc_normal_(t, 0.0, 0.02, -0.04, 0.04, &g);
  Moments m = moments(t);
  EXPECT_GE(m.min, -0.04);
  EXPECT_LE(m.max, 0.04);
  // Truncation at +-2 std leaves std * 0.8796.
  EXPECT_NEAR(std::sqrt(m.var), 0.02 * 0.8796, 0.02 * 0.03);
  EXPECT_THROW(init::trunc_normal_(t, 0.0, 1.0, 1.0, -1.0), Error);
}

TEST(Init, LayerDefaultsMatchPyTorch) {
  manual_seed(11);
  Linear l(50, 400);
  double b = 1.0 / std::sqrt(50.0);
  Moments mw = moments(l.weight), mb = moments(l.bias);
  EXPECT_LE(mw.max, b);
  EXPECT_GE(mw.min, -b);
  EXPECT_GT(mw.max, 0.98 * b);
  EXPECT_NEAR(mw.var, b * b / 3, 0.05 * b * b / 3);
  EXPECT_LE(mb.max, b);
  EXPECT_GE(mb.min, -b);

  Conv2d c(4, 64, 3, 1, 0, 1, 2);  // fan_in = 4/2 * 9 = 18
  double cb = 1.0 / std::sqrt(18.0);
  EXPECT_LE(moments(c.weight).max, cb);
  EXPECT_GT(moments(c.weight).max, 0.98 * cb);
  EXPECT_LE(moments(c.bias).max, cb);

  LSTM r(LSTMOptions(10, 25).num_layers(2));
  for (const Tensor& p : r.parameters()) {
    Moments m = moments(p);
    EXPECT_LE(m.max, 0.2);
    EXPECT_GE(m.min, -0.2);
  }

  Embedding e(1000, 16, 3);
  Moments me = moments(e.weight);
  EXPECT_NEAR(me.mean, 0.0, 0.03);
  EXPECT_NEAR(me.var, 1.0, 0.05);
  EXPECT_EQ(moments(e.weight.select(0, 3)).max, 0.0);
  EXPECT_EQ(moments(e.weight.select(0, 3)).min, 0.0);

  LayerNorm ln(7);
  EXPECT_EQ(moments(ln.weight).min, 1.0);
  EXPECT_EQ(moments(ln.bias).max, 0.0);
  BatchNorm2d bn(3);
  EXPECT_EQ(moments(bn.weight).min, 1.0);
  EXPECT_EQ(moments(bn.running_var).min, 1.0);
  EXPECT_EQ(moments(bn.running_mean).max, 0.0);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 0);
}

TEST(Init, ResetParametersWithAGeneratorIsDeterministic) {
  Linear a(5, 3), b(5, 3);
  Generator g1(42), g2(42);
  a.reset_parameters(&g1);
  b.reset_parameters(&g2);
  EXPECT_TRUE(allclose(a.weight, b.weight, 0, 0));
  EXPECT_TRUE(allclose(a.bias, b.bias, 0, 0));
  manual_seed(5);
  GRU x(3, 4);
  manual_seed(5);
  GRU y(3, 4);
  EXPECT_TRUE(allclose(x.weights[0].w_hh, y.weights[0].w_hh, 0, 0));
}

}  // namespace
