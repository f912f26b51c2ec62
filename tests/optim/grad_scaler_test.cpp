// Dynamic loss scaling: unscaled gradients equal plain ones, non-finite steps are skipped
// with a backoff, the scale grows after an interval, and f16 gradients that flush to zero
// without scaling survive with it.
#include <gtest/gtest.h>

#include <cmath>

#include "mox/ops/autocast.h"
#include "mox/ops/ops.h"
#include "mox/optim/optim.h"

namespace mox::optim {
namespace {

TEST(GradScaler, UnscaledGradientsEqualUnscaledBackward) {
  Generator g(1);
  Tensor w = randn({4, 3}, &g).requires_grad_();
  Tensor x = randn({5, 3}, &g);
  sum(square(linear(x, w, Tensor()))).backward();
  std::vector<float> plain = w.grad().to_vector<float>();
  w.zero_grad();
  SGD opt({w}, SGDOptions(0.1));
  GradScaler scaler;  // 65536: a power of two, so scaling and unscaling are exact
  Tensor loss = sum(square(linear(x, w, Tensor())));
  EXPECT_DOUBLE_EQ(scaler.scale(loss).item<double>(), loss.item<double>() * 65536.0);
  scaler.scale(loss).backward();
  EXPECT_TRUE(scaler.unscale_(opt));
  EXPECT_EQ(w.grad().to_vector<float>(), plain);
  EXPECT_TRUE(scaler.unscale_(opt));  // idempotent within a step
  EXPECT_EQ(w.grad().to_vector<float>(), plain);
  EXPECT_TRUE(scaler.step(opt));
  scaler.update();
  EXPECT_EQ(scaler.get_scale(), 65536.0);
}

TEST(GradScaler, NonFiniteGradientSkipsTheStepAndBacksOff) {
  Tensor w = ones({3}).requires_grad_();
  SGD opt({w}, SGDOptions(0.5));
  GradScaler scaler;
  for (double bad : {INFINITY, NAN}) {
    w.set_grad(from_vector<float>({1.f, float(bad), 2.f}, {3}));
    double before = scaler.get_scale();
    EXPECT_FALSE(scaler.step(opt));
    scaler.update();
    EXPECT_EQ(scaler.get_scale(), before * 0.5);
    EXPECT_EQ(w.detach().to_vector<float>(), std::vector<float>({1.f, 1.f, 1.f})) << "skipped step changed the weights";
  }
  EXPECT_EQ(scaler.skipped_steps(), 2);
  EXPECT_THROW(({ scaler.step(opt); scaler.step(opt); }), Error);
}

TEST(GradScaler, ScaleGrowsAfterTheInterval) {
  Tensor w = ones({2}).requires_grad_();
  SGD opt({w}, SGDOptions(0.0));
  GradScalerOptions o;
  o.init_scale = 8;
  o.growth_interval = 3;
  GradScaler scaler(o);
  for (int i = 0; i < 7; ++i) {
    w.set_grad(ones({2}));
    EXPECT_TRUE(scaler.step(opt));
    scaler.update();
  }
  EXPECT_EQ(scaler.get_scale(), 32.0);  // grew after steps 3 and 6
  StateDict sd = scaler.state_dict();
  GradScaler other(o);  // same options; state restored
  other.load_state_dict(sd);
  EXPECT_EQ(other.get_scale(), 32.0);  // from the saved state, not init_scale (8)
  // one more good step completes the next interval only with the restored tracker (1 of 3)
  for (int i = 0; i < 2; ++i) {
    w.set_grad(ones({2}));
    other.step(opt);
    other.update();
  }
  EXPECT_EQ(other.get_scale(), 64.0);
}

TEST(GradScaler, KeepsF16GradientsThatWouldFlushToZero) {
  Generator g(2);
  Tensor x = randn({8, 4}, &g), w0 = randn({2, 4}, &g);
  auto grad_of = [&](bool scaled) {
    Tensor w = w0.clone().requires_grad_();
    SGD opt({w}, SGDOptions(0.0));
    GradScaler scaler(GradScalerOptions{.enabled = scaled});
    Tensor loss;
    {
      AutocastGuard ac(DType::F16);
      Tensor y = linear(x, w, Tensor());  // f16 output: its gradient is f16 too
      EXPECT_EQ(y.dtype(), DType::F16);
      loss = mul(sum(y.to(DType::F32)), 1e-9);
    }
    scaler.scale(loss).backward();
    scaler.unscale_(opt);
    return w.grad();
  };
  // d loss / dw = 1e-9 * column sums of x: below f16's smallest subnormal (6e-8).
  Tensor ref = mul(sum(x, {0}, true).expand({2, 4}), 1e-9);
  Tensor unscaled = grad_of(false), scaled = grad_of(true);
  EXPECT_EQ(sum(abs(unscaled)).item<double>(), 0.0) << "without scaling the f16 gradient underflows";
  double err = norm(sub(scaled, ref)).item<double>() / norm(ref).item<double>();
  EXPECT_LT(err, 1e-2);
}

}  // namespace
}  // namespace mox::optim
