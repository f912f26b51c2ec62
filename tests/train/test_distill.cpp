// Distillation in Trainer::fit: the loss of a step is ops::distillation_loss of the student's
// and the teacher's logits (the teacher's trailing Softmax skipped, no gradient into it), a
// student identical to its teacher with alpha = 1 does not move, and misuse is an error.
#include <gtest/gtest.h>

#include "mox/autograd/node.h"
#include "mox/nn/nn.h"
#include "mox/ops/ops.h"
#include "mox/optim/optim.h"
#include "mox/train/trainer.h"

namespace mox::train {
namespace {

std::shared_ptr<nn::Sequential> net(uint64_t seed, int64_t hidden, bool softmax) {
  manual_seed(seed);
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Linear>(6, hidden));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Linear>(hidden, 4));
  if (softmax) m->push_back(std::make_shared<nn::Softmax>(1));
  return m;
}

std::shared_ptr<data::TensorDataset> data_set(Tensor* x_out = nullptr, Tensor* y_out = nullptr) {
  Generator g(4);
  Tensor x = randn({32, 6}, &g);
  Tensor y = argmax(matmul(x, randn({6, 4}, &g)), 1);
  if (x_out) *x_out = x;
  if (y_out) *y_out = y;
  return std::make_shared<data::TensorDataset>(x, y);
}

FitOptions options(std::shared_ptr<nn::Module> teacher, double alpha) {
  FitOptions f;
  f.epochs = 1;
  f.batch_size = 32;
  f.shuffle = false;
  f.verbose = 0;
  f.teacher = std::move(teacher);
  f.distill_temperature = 3.0;
  f.distill_alpha = alpha;
  return f;
}

TEST(Distill, StepLossIsTheDistillationLoss) {
  Tensor x, y;
  auto ds = data_set(&x, &y);
  auto teacher = net(1, 32, true), student = net(2, 8, false);
  Tensor expected;
  {
    NoGradGuard ng;
    Tensor tl = teacher->forward_prefix(x, 3);  // the teacher's logits: its Softmax skipped
    EXPECT_EQ(teacher_logits(*teacher, x, kCPU).to_vector<float>(), tl.to_vector<float>());
    expected = distillation_loss(student->forward(x), tl, y, 3.0, 0.6);
  }
  Trainer t(student, std::make_shared<optim::SGD>(student->parameters(), optim::SGDOptions(0.1)), LossSpec{});
  History h = t.fit(ds, options(teacher, 0.6));
  EXPECT_NEAR(h.values("loss").at(0), expected.item<double>(), 1e-6);
  for (Tensor p : teacher->parameters()) EXPECT_FALSE(p.grad().defined()) << "the teacher got a gradient";
}

TEST(Distill, StudentEqualToItsTeacherDoesNotMove) {
  auto teacher = net(1, 16, false), student = net(1, 16, false);
  // SGD: its step is the gradient itself (Adam would blow float rounding up to lr-sized steps)
  Trainer t(student, std::make_shared<optim::SGD>(student->parameters(), optim::SGDOptions(0.5)), LossSpec{});
  History h = t.fit(data_set(), options(teacher, 1.0));
  EXPECT_NEAR(h.values("loss").at(0), 0.0, 1e-6);
  auto ps = student->named_parameters(), pt = teacher->named_parameters();
  for (const auto& [name, w] : pt) {
    std::vector<float> a = w.to_vector<float>(), b = ps[name].to_vector<float>();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-6) << name;
  }
}

TEST(Distill, CachedTeacherLogitsTrainTheSameStudent) {
  // Shuffled batches of 8: the cached logits are looked up by each example's index.
  auto teacher = net(1, 32, true);
  std::vector<std::vector<float>> finals;
  std::vector<double> losses;
  for (bool cache : {false, true}) {
    auto student = net(2, 8, false);
    Trainer t(student, std::make_shared<optim::SGD>(student->parameters(), optim::SGDOptions(0.1)), LossSpec{});
    FitOptions o = options(teacher, 0.7);
    o.batch_size = 8;
    o.shuffle = true;
    o.epochs = 2;
    o.cache_teacher_logits = cache;
    History h = t.fit(data_set(), o);
    losses.push_back(h.values("loss").at(1));
    finals.push_back(student->parameters()[0].to_vector<float>());
  }
  EXPECT_NEAR(losses[0], losses[1], 1e-5);
  for (size_t i = 0; i < finals[0].size(); i++) EXPECT_NEAR(finals[0][i], finals[1][i], 1e-5) << i;
  // Augmented batches need the teacher on each of them.
  auto student = net(2, 8, false);
  Trainer t(student, std::make_shared<optim::SGD>(student->parameters(), optim::SGDOptions(0.1)), LossSpec{});
  FitOptions o = options(teacher, 0.7);
  o.cache_teacher_logits = true;
  o.augment = [](data::Batch&, Generator&) {};
  EXPECT_THROW(t.fit(data_set(), o), Error);
}

TEST(Distill, NeedsACrossEntropyLoss) {
  auto teacher = net(1, 16, false), student = net(2, 8, false);
  Trainer t(student, std::make_shared<optim::SGD>(student->parameters(), optim::SGDOptions(0.1)), parse_loss("mse"));
  Generator g(1);
  auto ds = std::make_shared<data::TensorDataset>(randn({8, 6}, &g), randn({8, 4}, &g));
  EXPECT_THROW(t.fit(ds, options(teacher, 0.5)), Error);
}

}  // namespace
}  // namespace mox::train
