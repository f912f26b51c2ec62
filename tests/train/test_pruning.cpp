// Gradual magnitude pruning during fit(): the schedule's sparsity is reached exactly, pruned
// weights stay zero while training continues, and a run resumed from a checkpoint ends with
// the same masks and weights as a straight one.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "mox/nn/nn.h"
#include "mox/ops/ops.h"
#include "mox/optim/optim.h"
#include "mox/train/pruning.h"

namespace fs = std::filesystem;

namespace mox::train {
namespace {

std::shared_ptr<nn::Sequential> mlp() {
  manual_seed(8);
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Linear>(10, 20));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Linear>(20, 5));
  return m;
}

std::shared_ptr<data::TensorDataset> data_set() {
  Generator g(3);
  Tensor x = randn({96, 10}, &g);
  Tensor y = argmax(matmul(x, randn({10, 5}, &g)), 1);
  return std::make_shared<data::TensorDataset>(x, y);
}

PruningOptions schedule() {
  PruningOptions o;
  o.final_sparsity = 0.8;
  o.begin_step = 0;
  o.end_step = 12;
  o.frequency = 4;
  return o;
}

FitOptions fit_options(int64_t epochs, std::vector<CallbackPtr> cbs) {
  FitOptions f;
  f.epochs = epochs;
  f.batch_size = 16;  // 6 steps per epoch
  f.verbose = 0;
  f.seed = 1;
  f.callbacks = std::move(cbs);
  return f;
}

TEST(Pruning, ReachesTheScheduledSparsityAndKeepsIt) {
  auto m = mlp();
  Trainer t(m, std::make_shared<optim::Adam>(m->parameters(), optim::AdamOptions(1e-2)), LossSpec{});
  auto cb = std::make_shared<PruningCallback>(schedule());
  t.fit(data_set(), fit_options(1, {cb}));  // 6 steps: pruned at step 4 only
  const double at4 = nn::polynomial_sparsity(4, 0, 12, 0.0, 0.8);
  EXPECT_EQ(cb->sparsity(), at4);
  EXPECT_NEAR(nn::prunable_sparsity(*m), double(std::llround(at4 * 200) + std::llround(at4 * 100)) / 300.0, 1e-12);
  t.fit(data_set(), fit_options(4, {cb}));  // to step 24: the final sparsity from step 12 on
  EXPECT_EQ(cb->sparsity(), 0.8);
  EXPECT_NEAR(nn::prunable_sparsity(*m), 0.8, 1e-12);
}

TEST(Pruning, ResumedRunEqualsStraightRun) {
  const std::string dir = (fs::temp_directory_path() / ("mox_pruning." + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  auto a = mlp();
  Trainer ta(a, std::make_shared<optim::Adam>(a->parameters(), optim::AdamOptions(1e-2)), LossSpec{});
  ta.fit(data_set(), fit_options(3, {std::make_shared<PruningCallback>(schedule())}));

  auto b = mlp();
  Trainer tb(b, std::make_shared<optim::Adam>(b->parameters(), optim::AdamOptions(1e-2)), LossSpec{});
  tb.fit(data_set(), fit_options(1, {std::make_shared<PruningCallback>(schedule()),
                                     std::make_shared<Checkpointer>(dir + "/ckpt", 0)}));
  auto c = mlp();
  Trainer tc(c, std::make_shared<optim::Adam>(c->parameters(), optim::AdamOptions(1e-2)), LossSpec{});
  tc.load_checkpoint(dir + "/ckpt");
  auto cb = std::make_shared<PruningCallback>(schedule());
  tc.fit(data_set(), fit_options(3, {cb}));
  EXPECT_EQ(cb->sparsity(), 0.8);
  auto pa = a->named_parameters(), pc = c->named_parameters();
  for (const auto& [name, w] : pa) EXPECT_EQ(pc[name].to_vector<float>(), w.to_vector<float>()) << name;
  fs::remove_all(dir);
}

TEST(Pruning, BadSchedulesAreErrors) {
  PruningOptions o = schedule();
  o.final_sparsity = 1.0;
  EXPECT_THROW(PruningCallback{o}, Error);
  o = schedule();
  o.end_step = o.begin_step;
  EXPECT_THROW(PruningCallback{o}, Error);
  o = schedule();
  o.frequency = 0;
  EXPECT_THROW(PruningCallback{o}, Error);
}

}  // namespace
}  // namespace mox::train
