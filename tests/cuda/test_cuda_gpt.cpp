// A GPT trained for 50 steps on the GPU and on the CPU from the same weights on the same
// batches: the per-step losses agree within 1e-2 (f32), and a bf16-autocast GPU run tracks
// the f32 CPU run. Also the whole-model forward/backward against the CPU once.
#include <gtest/gtest.h>

#include <cmath>

#include "cuda/cuda_test_util.h"
#include "mox/autograd/node.h"
#include "mox/nn/models/gpt.h"
#include "mox/ops/autocast.h"
#include "mox/optim/optim.h"

namespace mox {
namespace {

using testing::kCUDA;

nn::GPTConfig small() {
  nn::GPTConfig c;
  c.n_layer = 4;
  c.n_head = 4;
  c.n_embd = 128;
  c.block_size = 64;
  c.vocab_size = 256;
  c.dropout = 0;
  return c;
}

std::vector<double> train_losses(Device dev, DType precision, int steps) {
  manual_seed(21);
  auto model = std::make_shared<nn::GPT>(small());
  model->to(dev);
  optim::AdamW opt(optim::weight_decay_groups(model->parameters(), 0.1), optim::AdamWOptions(1e-3).betas(0.9, 0.95));
  Generator g(5);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    Tensor d = randint(0, 256, {8, 65}, &g);
    // a learnable signal: every token repeats the one 3 places back
    Tensor x = d.narrow(1, 0, 64).contiguous(), y = d.narrow(1, 1, 64).contiguous();
    x = cat({x.narrow(1, 0, 3), x.narrow(1, 0, 61)}, 1);
    y = cat({x.narrow(1, 1, 63), y.narrow(1, 63, 1)}, 1);
    Tensor loss;
    {
      std::optional<AutocastGuard> ac;
      if (precision != DType::F32) ac.emplace(precision);
      Tensor logits = model->forward(x.to(dev));
      loss = cross_entropy(logits.reshape({8 * 64, 256}), y.reshape({8 * 64}).to(dev));
    }
    loss.backward();
    optim::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
    opt.zero_grad();
    losses.push_back(loss.item<double>());
  }
  return losses;
}

TEST(CudaGpt, ForwardAndBackwardMatchTheCpu) {
  MOX_REQUIRE_CUDA();
  manual_seed(3);
  auto cpu = std::make_shared<nn::GPT>(small());
  manual_seed(3);
  auto gpu = std::make_shared<nn::GPT>(small());
  gpu->to(kCUDA);
  Tensor x = randint(0, 256, {2, 64}), y = randint(0, 256, {2, 64});
  Tensor lc = cross_entropy(cpu->forward(x).reshape({128, 256}), y.reshape({128}));
  Tensor lg = cross_entropy(gpu->forward(x.to(kCUDA)).reshape({128, 256}), y.reshape({128}).to(kCUDA));
  EXPECT_NEAR(lg.item<double>(), lc.item<double>(), 1e-5);
  lc.backward();
  lg.backward();
  auto pc = cpu->named_parameters(), pg = gpu->named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (const auto& [name, p] : pc) {
    const Tensor& q = pg[name];
    EXPECT_EQ(q.device(), kCUDA);
    EXPECT_LT(testing::rel_err(q.grad(), p.grad()), 1e-4) << name;
  }
}

TEST(CudaGpt, FiftyTrainingStepsMatchTheCpuWithin1e2) {
  MOX_REQUIRE_CUDA();
  std::vector<double> cpu = train_losses(kCPU, DType::F32, 50);
  std::vector<double> gpu = train_losses(kCUDA, DType::F32, 50);
  for (int s = 0; s < 50; ++s) EXPECT_NEAR(gpu[size_t(s)], cpu[size_t(s)], 1e-2) << "step " << s;
  EXPECT_LT(cpu.back(), cpu.front() - 1.0) << "the model did not learn: the check would be vacuous";
}

TEST(CudaGpt, Bf16AutocastTracksF32) {
  MOX_REQUIRE_CUDA();
  std::vector<double> cpu = train_losses(kCPU, DType::F32, 50);
  std::vector<double> gpu = train_losses(kCUDA, DType::BF16, 50);
  for (int s = 0; s < 50; ++s) {
    EXPECT_FALSE(std::isnan(gpu[size_t(s)]));
    EXPECT_NEAR(gpu[size_t(s)], cpu[size_t(s)], 5e-2 * cpu[size_t(s)]) << "step " << s;
  }
}

}  // namespace
}  // namespace mox
