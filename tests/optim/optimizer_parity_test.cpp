// Each optimiser against PyTorch 1.13: 100 recorded gradients applied to recorded initial
// parameters must give PyTorch's final parameters (tools/fixtures_optim.py), in f32 to
// 1e-5 relative and in f64 to 1e-10 relative.
#include <gtest/gtest.h>

#include "optim/fixtures.h"

namespace mox {
namespace {

using testing::close;
using testing::GradSequence;
using testing::optim_fixture;

const char* kConfigs[] = {"sgd_plain",    "sgd_momentum", "sgd_nesterov",
                          "sgd_weight_decay", "adagrad",  "rmsprop",
                          "rmsprop_centered_momentum", "adam", "adam_amsgrad", "adamw"};

// Runs the recorded sequence through the optimiser the fixture describes.
std::vector<Tensor> run(const io::SafetensorsFile& cfg, DType dtype) {
  GradSequence seq(dtype);
  std::vector<Tensor> params = seq.initial_params();
  auto opt = testing::make_optimizer(cfg, params);
  const int64_t halve_at = int64_t(testing::meta_num(cfg, "halve_lr_at", -1));
  for (int64_t s = 0; s < seq.steps; s++) {
    if (s == halve_at)
      for (size_t g = 0; g < opt->num_groups(); g++) opt->set_group_lr(g, opt->group_lr(g) * 0.5);
    seq.set_grads(params, s);
    opt->step();
  }
  return params;
}

class OptimizerParity : public ::testing::TestWithParam<const char*> {};

TEST_P(OptimizerParity, F32MatchesPyTorch) {
  io::SafetensorsFile cfg = io::load_safetensors(optim_fixture(GetParam()));
  std::vector<Tensor> params = run(cfg, DType::F32);
  GradSequence seq;
  for (int i = 0; i < 3; i++) {
    SCOPED_TRACE("param " + std::to_string(i));
    Tensor expected = cfg.at("final." + std::to_string(i));
    EXPECT_EQ(params[i].dtype(), DType::F32);
    EXPECT_TRUE(close(params[i], expected, 1e-5, 1e-7));
    // and the run really moved the parameters (the test would catch a no-op step)
    EXPECT_FALSE(close(expected, seq.file.at("param." + std::to_string(i)), 1e-3, 0));
  }
}

TEST_P(OptimizerParity, F64MatchesPyTorch) {
  io::SafetensorsFile cfg = io::load_safetensors(optim_fixture(GetParam()));
  std::vector<Tensor> params = run(cfg, DType::F64);
  for (int i = 0; i < 3; i++) {
    SCOPED_TRACE("param " + std::to_string(i));
    EXPECT_TRUE(close(params[i], cfg.at("final64." + std::to_string(i)), 1e-10, 1e-12));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OptimizerParity, ::testing::ValuesIn(kConfigs),
                         [](const auto& info) { return std::string(info.param); });

TEST(OptimizerParity, SkippedParameterKeepsItsOwnStepCount) {
  // Parameter 2 has no gradient on 14 of the 100 steps; its bias correction must use its
  // own count (86), as PyTorch's per-parameter state does.
  io::SafetensorsFile cfg = io::load_safetensors(optim_fixture("adam"));
  GradSequence seq;
  std::vector<Tensor> params = seq.initial_params();
  auto opt = testing::make_optimizer(cfg, params);
  for (int64_t s = 0; s < seq.steps; s++) {
    seq.set_grads(params, s);
    opt->step();
  }
  EXPECT_EQ(opt->param_step(0), 100);
  EXPECT_EQ(opt->param_step(2), 86);
}

}  // namespace
}  // namespace mox
