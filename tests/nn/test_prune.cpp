// Magnitude pruning: exact sparsity per layer and globally, the smallest weights go first
// (ties by index), skipped layers stay dense, masks keep zeros through fine-tuning steps, and
// the polynomial schedule follows its formula.
#include <gtest/gtest.h>

#include <cmath>

#include "mox/autograd/node.h"
#include "mox/nn/nn.h"
#include "mox/ops/ops.h"
#include "mox/nn/prune.h"
#include "mox/optim/optim.h"

namespace mox::nn {
namespace {

std::shared_ptr<Sequential> mlp() {
  manual_seed(4);
  auto m = std::make_shared<Sequential>();
  m->push_back(std::make_shared<Linear>(10, 20));
  m->push_back(std::make_shared<ReLU>());
  m->push_back(std::make_shared<Linear>(20, 5));
  return m;
}

PruneOptions opts(double sparsity, bool global = false, std::vector<std::string> skip = {}) {
  PruneOptions o;
  o.sparsity = sparsity;
  o.global = global;
  o.skip = std::move(skip);
  return o;
}

int64_t zeros(const Tensor& t) {
  int64_t z = 0;
  for (float v : t.to_vector<float>()) z += v == 0.0f;
  return z;
}

TEST(Prune, PerLayerSparsityIsExactAndTakesTheSmallestWeights) {
  auto m = mlp();
  Tensor w0 = m->named_parameters()["0.weight"].detach().clone();
  auto masks = magnitude_prune_masks(*m, opts(0.8));
  ASSERT_EQ(masks.size(), 2u);
  apply_masks(*m, masks);
  auto p = m->named_parameters();
  EXPECT_EQ(zeros(p["0.weight"]), 160);  // 80% of 200
  EXPECT_EQ(zeros(p["2.weight"]), 80);   // 80% of 100
  EXPECT_EQ(zeros(p["0.bias"]), 0) << "biases are not pruned";
  // every kept weight is at least as large as every pruned one, and kept values are unchanged
  std::vector<float> before = w0.to_vector<float>(), after = p["0.weight"].to_vector<float>();
  float max_pruned = 0, min_kept = 1e9f;
  for (size_t i = 0; i < before.size(); ++i) {
    if (after[i] == 0) max_pruned = std::max(max_pruned, std::fabs(before[i]));
    else {
      min_kept = std::min(min_kept, std::fabs(before[i]));
      EXPECT_EQ(after[i], before[i]);
    }
  }
  EXPECT_LE(max_pruned, min_kept);
  EXPECT_NEAR(prunable_sparsity(*m), 0.8, 1e-12);
}

TEST(Prune, GlobalThresholdAndSkippedLayers) {
  auto m = mlp();
  {
    NoGradGuard ng;  // layer 2's weights become tiny: a global threshold prunes them first
    m->named_parameters()["2.weight"].copy_(mul(m->named_parameters()["2.weight"].detach(), 1e-3));
  }
  apply_masks(*m, magnitude_prune_masks(*m, opts(0.3, true)));
  auto p = m->named_parameters();
  EXPECT_EQ(zeros(p["2.weight"]), 90);       // 30% of 300 = 90, all from the tiny layer
  EXPECT_EQ(zeros(p["0.weight"]), 0);
  auto m2 = mlp();
  apply_masks(*m2, magnitude_prune_masks(*m2, opts(0.5, false, {"2"})));
  EXPECT_EQ(zeros(m2->named_parameters()["2.weight"]), 0);
  EXPECT_EQ(zeros(m2->named_parameters()["0.weight"]), 100);
  // ties: equal magnitudes are pruned in index order
  auto lin = std::make_shared<Linear>(4, 1, false);
  {
    NoGradGuard ng;
    lin->weight.copy_(from_vector<float>({0.5f, -0.5f, 0.5f, 2.0f}, {1, 4}));
  }
  apply_masks(*lin, magnitude_prune_masks(*lin, opts(0.5)));
  EXPECT_EQ(lin->weight.to_vector<float>(), std::vector<float>({0.f, 0.f, 0.5f, 2.0f}));
}

TEST(Prune, MasksKeepZerosThroughFineTuning) {
  auto m = mlp();
  auto masks = magnitude_prune_masks(*m, opts(0.6));
  apply_masks(*m, masks);
  optim::Adam opt(m->parameters(), optim::AdamOptions(1e-2));
  Generator g(2);
  for (int s = 0; s < 5; ++s) {
    Tensor loss = cross_entropy(m->forward(randn({8, 10}, &g)), randint(0, 5, {8}, &g));
    opt.zero_grad();
    loss.backward();
    opt.step();
    EXPECT_LT(prunable_sparsity(*m), 0.6) << "the optimiser moves pruned weights";
    apply_masks(*m, masks);
    EXPECT_NEAR(prunable_sparsity(*m), 0.6, 1e-12);
  }
}

TEST(Prune, PolynomialScheduleAndErrors) {
  EXPECT_EQ(polynomial_sparsity(0, 10, 110, 0.0, 0.8), 0.0);
  EXPECT_EQ(polynomial_sparsity(200, 10, 110, 0.0, 0.8), 0.8);
  EXPECT_NEAR(polynomial_sparsity(60, 10, 110, 0.0, 0.8), 0.8 - 0.8 * 0.125, 1e-12);  // (1/2)^3
  EXPECT_NEAR(polynomial_sparsity(35, 10, 110, 0.1, 0.9), 0.9 - 0.8 * std::pow(0.75, 3), 1e-12);
  EXPECT_THROW(polynomial_sparsity(5, 10, 10, 0.0, 0.5), Error);
  auto m = mlp();
  EXPECT_THROW(magnitude_prune_masks(*m, opts(1.0)), Error);
  std::map<std::string, Tensor> bad{{"0.weight", ones({3, 3}, DType::U8)}};
  EXPECT_THROW(apply_masks(*m, bad), Error);
  std::map<std::string, Tensor> missing{{"9.weight", ones({3, 3}, DType::U8)}};
  EXPECT_THROW(apply_masks(*m, missing), Error);
}

}  // namespace
}  // namespace mox::nn
