// Train/eval behaviour: dropout masks and scaling, batch norm statistics, recurrent
// dropout between layers.
#include <gtest/gtest.h>

#include "nn_test_util.h"

using namespace mox;
using namespace mox::nn;

namespace {

TEST(Modes, DropoutScalesInTrainingAndIsIdentityInEval) {
  Generator g(3);
  Dropout d(0.25, &g);
  Tensor x = ones({100000});
  Tensor y = d(x);
  std::vector<float> v = y.to_vector<float>();
  int64_t zeros_n = 0;
  for (float f : v) {
    if (f == 0.0f)
      zeros_n++;
    else
      EXPECT_FLOAT_EQ(f, 1.0f / 0.75f);
  }
  EXPECT_NEAR(double(zeros_n) / double(v.size()), 0.25, 0.01);
  d.eval();
  EXPECT_TRUE(allclose(d(x), x, 0, 0));
  EXPECT_THROW(Dropout(1.5), Error);
}

TEST(Modes, DropoutIsSeededByItsGenerator) {
  Generator g1(9), g2(9);
  Dropout a(0.5, &g1), b(0.5, &g2);
  Tensor x = ones({64});
  EXPECT_TRUE(allclose(a(x), b(x), 0, 0));
}

TEST(Modes, BatchNormUsesBatchStatsInTrainingAndRunningStatsInEval) {
  BatchNorm1d bn(2);
  // Channel 0: 1, 2, 3 (mean 2, unbiased variance 1); channel 1: 10, 20, 30 (20, 100).
  Tensor x = from_vector<float>({1, 10, 2, 20, 3, 30}, {3, 2});
  Tensor y = bn(x);
  // Training output is normalised per channel: mean 0, biased variance ~1.
  std::vector<float> v = y.to_vector<float>();
  EXPECT_NEAR(v[0] + v[2] + v[4], 0.0, 1e-5);
  EXPECT_NEAR(v[0] * v[0] + v[2] * v[2] + v[4] * v[4], 3.0, 1e-3);
  // running = 0.9 * init + 0.1 * batch (unbiased variance: 1 and 100)
  std::vector<float> rm = bn.running_mean.to_vector<float>();
  std::vector<float> rv = bn.running_var.to_vector<float>();
  EXPECT_NEAR(rm[0], 0.2, 1e-6);
  EXPECT_NEAR(rm[1], 2.0, 1e-5);
  EXPECT_NEAR(rv[0], 0.9 + 0.1 * 1.0, 1e-6);
  EXPECT_NEAR(rv[1], 0.9 + 0.1 * 100.0, 1e-4);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 1);
  bn.eval();
  Tensor e = bn(x);
  std::vector<float> ev = e.to_vector<float>();
  EXPECT_NEAR(ev[0], (1.0 - 0.2) / std::sqrt(1.0 + 1e-5), 1e-5);
  EXPECT_NEAR(ev[1], (10.0 - 2.0) / std::sqrt(10.9 + 1e-5), 1e-5);
  // Eval mode leaves the statistics alone and accepts a batch of one.
  EXPECT_NO_THROW(bn(from_vector<float>({1, 2}, {1, 2})));
  EXPECT_NEAR(bn.running_mean.to_vector<float>()[0], 0.2, 1e-6);
  bn.train();
  EXPECT_THROW(bn(from_vector<float>({1, 2}, {1, 2})), Error);  // one value per channel
}

TEST(Modes, BatchNormWithoutRunningStatsAlwaysUsesTheBatch) {
  BatchNorm1d bn(2, 1e-5, 0.1, true, false);
  EXPECT_FALSE(bn.running_mean.defined());
  Tensor x = from_vector<float>({1, 10, 2, 20, 3, 30}, {3, 2});
  Tensor train_out = bn(x);
  bn.eval();
  EXPECT_TRUE(allclose(bn(x), train_out, 1e-6, 1e-6));
}

TEST(Modes, RecurrentDropoutOnlyBetweenLayersInTraining) {
  manual_seed(2);
  LSTM m(LSTMOptions(3, 8).num_layers(2).dropout(0.5));
  Tensor x = randn({4, 2, 3});
  m.eval();
  Tensor e1 = m(x), e2 = m(x);
  EXPECT_TRUE(allclose(e1, e2, 0, 0));
  m.train();
  Tensor t1 = m(x), t2 = m(x);
  EXPECT_FALSE(allclose(t1, t2));
  // A single layer has nowhere to apply dropout.
  LSTM one(LSTMOptions(3, 8).dropout(0.5));
  EXPECT_TRUE(allclose(one(x), one(x), 0, 0));
}

}  // namespace
