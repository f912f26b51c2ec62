// LR schedules against PyTorch 1.13's (tools/fixtures_optim.py): the learning rate of two
// parameter groups (base 0.1 and 0.02) at every epoch, plus resume from a state dict.
#include <gtest/gtest.h>

#include <functional>

#include "optim/fixtures.h"

namespace mox {
namespace {

using SchedulerStep = std::function<void(int64_t epoch)>;

struct TwoGroups {
  Tensor a = zeros({1}, TensorOptions(DType::F32, kCPU, true));
  Tensor b = zeros({1}, TensorOptions(DType::F32, kCPU, true));
  optim::SGD opt{{optim::ParamGroup{{a}, 0.1, {}}, optim::ParamGroup{{b}, 0.02, {}}},
                 optim::SGDOptions(0.1)};
};

// lr of both groups at epochs 0..n-1, stepping the scheduler after each epoch.
Tensor lr_table(optim::Optimizer& opt, int64_t epochs, const SchedulerStep& step) {
  std::vector<double> rows;
  for (int64_t e = 0; e < epochs; e++) {
    rows.push_back(opt.group_lr(0));
    rows.push_back(opt.group_lr(1));
    step(e);
  }
  return from_vector(rows, {epochs, 2});
}

const io::SafetensorsFile& reference() {
  static const io::SafetensorsFile f = io::load_safetensors(testing::optim_fixture("schedulers"));
  return f;
}

void expect_table(const std::string& name, const Tensor& actual, double rtol) {
  const Tensor& expected = reference().at(name);
  EXPECT_TRUE(testing::close(actual, expected, rtol, 1e-15)) << name;
}

TEST(Schedulers, StepLRMatchesPyTorch) {
  TwoGroups s;
  optim::StepLR sched(s.opt, 3, 0.5);
  expect_table("step_lr", lr_table(s.opt, 20, [&](int64_t) { sched.step(); }), 1e-12);
  EXPECT_EQ(sched.last_epoch(), 20);
}

TEST(Schedulers, ExponentialLRMatchesPyTorch) {
  TwoGroups s;
  optim::ExponentialLR sched(s.opt, 0.9);
  expect_table("exponential_lr", lr_table(s.opt, 20, [&](int64_t) { sched.step(); }), 1e-12);
}

TEST(Schedulers, CosineAnnealingMatchesPyTorch) {
  TwoGroups s;
  optim::CosineAnnealingLR sched(s.opt, 30, 0, 0.001);
  // PyTorch's recursive form accumulates rounding; the closed form agrees to ~1e-12.
  expect_table("cosine", lr_table(s.opt, 31, [&](int64_t) { sched.step(); }), 1e-9);
}

TEST(Schedulers, CosineWithWarmupMatchesLambdaLR) {
  TwoGroups s;
  optim::CosineAnnealingLR sched(s.opt, 50, 10, 0.001);
  Tensor t = lr_table(s.opt, 60, [&](int64_t) { sched.step(); });
  expect_table("cosine_warmup", t, 1e-12);
  std::vector<double> v = t.to_vector<double>();
  EXPECT_EQ(v[0], 0.0);                    // warm-up starts from zero
  EXPECT_NEAR(v[2 * 10], 0.1, 1e-15);      // the base lr at the end of warm-up
  EXPECT_NEAR(v[2 * 55], 0.001, 1e-15);    // min_lr after total_steps
  EXPECT_NEAR(v[2 * 55 + 1], 0.001, 1e-15);
}

TEST(Schedulers, ReduceLROnPlateauMatchesPyTorch) {
  std::vector<double> m = reference().at("plateau_metrics").to_vector<double>();
  {
    TwoGroups s;
    optim::ReduceLROnPlateau sched(s.opt, optim::ReduceLROnPlateauOptions()
                                              .mode("min")
                                              .factor(0.5)
                                              .patience(2)
                                              .threshold(0.05)
                                              .threshold_mode("rel")
                                              .cooldown(1)
                                              .min_lr(0.01));
    expect_table("plateau_min_rel",
                 lr_table(s.opt, int64_t(m.size()), [&](int64_t e) { sched.step(m[e]); }), 1e-12);
  }
  {
    TwoGroups s;
    optim::ReduceLROnPlateau sched(s.opt, optim::ReduceLROnPlateauOptions()
                                              .mode("max")
                                              .factor(0.3)
                                              .patience(1)
                                              .threshold(0.01)
                                              .threshold_mode("abs")
                                              .cooldown(2)
                                              .min_lr(0.001));
    expect_table("plateau_max_abs",
                 lr_table(s.opt, int64_t(m.size()), [&](int64_t e) { sched.step(-m[e]); }), 1e-12);
  }
}

TEST(Schedulers, FixturesReallyChangeTheRate) {
  for (const char* name : {"step_lr", "exponential_lr", "cosine", "cosine_warmup",
                           "plateau_min_rel", "plateau_max_abs"}) {
    std::vector<double> v = reference().at(name).to_vector<double>();
    EXPECT_NE(v.front(), v[v.size() - 2]) << name;
  }
}

// Scheduler + optimiser state saved after 12 epochs and restored into fresh objects must
// continue with exactly the rates of an uninterrupted run.
template <typename Make, typename Step>
void check_resume(Make make, Step step) {
  const int64_t epochs = 30, cut = 12;
  TwoGroups straight;
  auto sa = make(straight.opt);
  Tensor expected = lr_table(straight.opt, epochs, [&](int64_t e) { step(sa, e); });

  TwoGroups first;
  auto sb = make(first.opt);
  std::vector<double> rows;
  for (int64_t e = 0; e < cut; e++) {
    rows.push_back(first.opt.group_lr(0));
    rows.push_back(first.opt.group_lr(1));
    step(sb, e);
  }
  optim::StateDict opt_state = first.opt.state_dict(), sched_state = sb->state_dict();
  TwoGroups second;
  auto sc = make(second.opt);
  step(sc, 0);  // move it away from the saved state, which load must override
  second.opt.load_state_dict(opt_state);
  sc->load_state_dict(sched_state);
  for (int64_t e = cut; e < epochs; e++) {
    rows.push_back(second.opt.group_lr(0));
    rows.push_back(second.opt.group_lr(1));
    step(sc, e);
  }
  EXPECT_EQ(from_vector(rows, {epochs, 2}).to_vector<double>(), expected.to_vector<double>());
}

double plateau_metric(int64_t e) { return e < 6 ? 1.0 - 0.1 * double(e) : 0.5; }

TEST(Schedulers, ResumeFromStateDict) {
  using P = std::unique_ptr<optim::LRScheduler>;
  auto plain_step = [](P& s, int64_t) { s->step(); };
  check_resume([](optim::Optimizer& o) -> P { return std::make_unique<optim::StepLR>(o, 5, 0.5); },
               plain_step);
  check_resume([](optim::Optimizer& o) -> P { return std::make_unique<optim::ExponentialLR>(o, 0.8); },
               plain_step);
  check_resume(
      [](optim::Optimizer& o) -> P { return std::make_unique<optim::CosineAnnealingLR>(o, 25, 5, 1e-3); },
      plain_step);
  using R = std::unique_ptr<optim::ReduceLROnPlateau>;
  check_resume(
      [](optim::Optimizer& o) -> R {
        return std::make_unique<optim::ReduceLROnPlateau>(
            o, optim::ReduceLROnPlateauOptions().patience(2).cooldown(1).factor(0.5));
      },
      [](R& s, int64_t e) { s->step(plateau_metric(e)); });
}

TEST(Schedulers, ValidateArguments) {
  TwoGroups s;
  EXPECT_THROW(optim::StepLR(s.opt, 0), Error);
  EXPECT_THROW(optim::CosineAnnealingLR(s.opt, 10, 11), Error);
  EXPECT_THROW(optim::CosineAnnealingLR(s.opt, 0), Error);
  EXPECT_THROW(optim::ReduceLROnPlateau(s.opt, optim::ReduceLROnPlateauOptions().mode("lowest")),
               Error);
  EXPECT_THROW(optim::ReduceLROnPlateau(s.opt, optim::ReduceLROnPlateauOptions().factor(1.5)),
               Error);
  optim::StepLR sched(s.opt, 2);
  optim::StateDict sd = sched.state_dict();
  sd.scalars.erase("last_epoch");
  EXPECT_THROW(sched.load_state_dict(sd), Error);
}

}  // namespace
}  // namespace mox
