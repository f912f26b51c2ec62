// Optimiser behaviour: exact resume from a saved state dict, parameter groups, validation,
// and training through autograd.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "optim/fixtures.h"

namespace mox {
namespace {

using testing::GradSequence;
using OptimizerFactory = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("mox_optim_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  Tensor x = a.detach().contiguous(), y = b.detach().contiguous();
  return x.dtype() == y.dtype() && x.shape() == y.shape() &&
         std::memcmp(x.raw_data(), y.raw_data(), size_t(x.numel()) * x.element_size()) == 0;
}

struct Named {
  const char* name;
  OptimizerFactory make;
};

std::vector<optim::ParamGroup> two_groups(const std::vector<Tensor>& p) {
  return {optim::ParamGroup{{p[0], p[1]}, {}, {}},
          optim::ParamGroup{{p[2]}, 0.003, 0.0}};
}

const std::vector<Named>& factories() {
  static const std::vector<Named> f = {
      {"SGD", [](std::vector<Tensor> p) -> std::unique_ptr<optim::Optimizer> {
         return std::make_unique<optim::SGD>(
             two_groups(p), optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3));
       }},
      {"Adagrad", [](std::vector<Tensor> p) -> std::unique_ptr<optim::Optimizer> {
         return std::make_unique<optim::Adagrad>(
             two_groups(p), optim::AdagradOptions(0.1).lr_decay(0.01).initial_accumulator_value(0.1));
       }},
      {"RMSprop", [](std::vector<Tensor> p) -> std::unique_ptr<optim::Optimizer> {
         return std::make_unique<optim::RMSprop>(
             two_groups(p), optim::RMSpropOptions(0.01).momentum(0.5).centered(true));
       }},
      {"Adam", [](std::vector<Tensor> p) -> std::unique_ptr<optim::Optimizer> {
         return std::make_unique<optim::Adam>(two_groups(p),
                                              optim::AdamOptions(0.01).amsgrad(true).weight_decay(0.01));
       }},
      {"AdamW", [](std::vector<Tensor> p) -> std::unique_ptr<optim::Optimizer> {
         return std::make_unique<optim::AdamW>(two_groups(p), optim::AdamWOptions(0.01).betas(0.8, 0.95));
       }},
  };
  return f;
}

class Resume : public ::testing::TestWithParam<size_t> {};

// Training 100 steps straight through must give bit-identical parameters to training 40,
// saving parameters + optimiser state to disk, building everything afresh from the files,
// and training the remaining 60 (with a learning-rate change in between, which the state
// dict must carry).
TEST_P(Resume, SaveLoadResumesBitExactly) {
  const Named& f = factories()[GetParam()];
  GradSequence seq;
  auto train = [&](optim::Optimizer& opt, std::vector<Tensor>& params, int64_t from, int64_t to) {
    for (int64_t s = from; s < to; s++) {
      if (s == 30) opt.set_lr(opt.lr() * 0.5);
      seq.set_grads(params, s);
      opt.step();
    }
  };
  std::vector<Tensor> straight = seq.initial_params();
  auto opt_a = f.make(straight);
  train(*opt_a, straight, 0, seq.steps);

  std::vector<Tensor> first = seq.initial_params();
  auto opt_b = f.make(first);
  train(*opt_b, first, 0, 40);
  const std::string ckpt = temp_path(std::string(f.name) + ".safetensors");
  {
    io::NamedTensors tensors;
    io::Metadata meta;
    for (size_t i = 0; i < first.size(); i++) tensors.emplace_back("param." + std::to_string(i), first[i]);
    opt_b->state_dict().append_to(tensors, meta, "optim.");
    io::save_safetensors(ckpt, tensors, meta);
  }
  // A new process would see only the file: fresh parameters and optimiser from it.
  io::SafetensorsFile file = io::load_safetensors(ckpt);
  std::filesystem::remove(ckpt);
  std::vector<Tensor> resumed = seq.initial_params();
  for (size_t i = 0; i < resumed.size(); i++) {
    NoGradGuard ng;
    resumed[i].copy_(file.at("param." + std::to_string(i)));
  }
  auto opt_c = f.make(resumed);
  opt_c->load_state_dict(optim::StateDict::extract(file, "optim."));
  EXPECT_EQ(opt_c->lr(), opt_b->lr());
  EXPECT_EQ(opt_c->group_lr(1), opt_b->group_lr(1));
  EXPECT_EQ(opt_c->param_step(2), opt_b->param_step(2));
  train(*opt_c, resumed, 40, seq.steps);

  for (size_t i = 0; i < straight.size(); i++)
    EXPECT_TRUE(bitwise_equal(straight[i], resumed[i])) << f.name << " param " << i;
  // and the state itself matches after the run
  optim::StateDict sa = opt_a->state_dict(), sc = opt_c->state_dict();
  EXPECT_EQ(sa.scalars, sc.scalars);
  ASSERT_EQ(sa.tensors.size(), sc.tensors.size());
  for (const auto& [k, t] : sa.tensors) EXPECT_TRUE(bitwise_equal(t, sc.tensors.at(k))) << k;
}

INSTANTIATE_TEST_SUITE_P(AllOptimizers, Resume, ::testing::Range<size_t>(0, 5),
                         [](const auto& info) { return std::string(factories()[info.param].name); });

TEST(Optimizer, StateDictLayout) {
  GradSequence seq;
  std::vector<Tensor> p = seq.initial_params();
  optim::Adam opt(two_groups(p), optim::AdamOptions(0.01).amsgrad(true));
  optim::StateDict empty = opt.state_dict();
  EXPECT_TRUE(empty.tensors.empty());  // nothing has stepped yet
  EXPECT_EQ(empty.scalars.at("group.1.lr"), 0.003);
  EXPECT_EQ(empty.scalars.at("group.0.num_params"), 2.0);
  seq.set_grads(p, 0);
  p[1].zero_grad();  // parameter 1 gets no gradient: no state for it
  opt.step();
  optim::StateDict sd = opt.state_dict();
  EXPECT_EQ(sd.scalars.at("state.0.step"), 1.0);
  EXPECT_EQ(sd.scalars.count("state.1.step"), 0u);
  EXPECT_EQ(sd.tensors.size(), 6u);  // 2 params x (exp_avg, exp_avg_sq, max_exp_avg_sq)
  EXPECT_EQ(sd.tensors.at("state.2.exp_avg").shape(), p[2].shape());
}

TEST(Optimizer, LoadStateDictRejectsMismatches) {
  GradSequence seq;
  std::vector<Tensor> p = seq.initial_params();
  optim::Adam adam(two_groups(p), optim::AdamOptions(0.01));
  seq.set_grads(p, 0);
  adam.step();
  const optim::StateDict good = adam.state_dict();
  auto expect_error = [](optim::Optimizer& opt, const optim::StateDict& sd, const std::string& phrase) {
    try {
      opt.load_state_dict(sd);
      ADD_FAILURE() << "no error, expected: " << phrase;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
    }
  };
  {  // a different optimiser's state
    std::vector<Tensor> q = seq.initial_params();
    optim::SGD sgd(two_groups(q), optim::SGDOptions(0.1).momentum(0.9));
    expect_error(sgd, good, "no tensor 'state.0.momentum_buffer'");
  }
  {  // amsgrad needs a buffer plain Adam did not save
    std::vector<Tensor> q = seq.initial_params();
    optim::Adam ams(two_groups(q), optim::AdamOptions(0.01).amsgrad(true));
    expect_error(ams, good, "max_exp_avg_sq");
  }
  {  // shapes differ
    optim::StateDict bad = good;
    bad.tensors["state.0.exp_avg"] = zeros({3});
    expect_error(adam, bad, "expected f32[4, 5]");
  }
  {  // different grouping
    std::vector<Tensor> q = seq.initial_params();
    optim::Adam one_group(q, optim::AdamOptions(0.01));
    expect_error(one_group, good, "parameters but the state dict has");
  }
  {  // missing scalars
    optim::StateDict bad = good;
    bad.scalars.erase("group.1.lr");
    expect_error(adam, bad, "group.1.lr");
  }
  {  // a failed load changes nothing
    optim::StateDict bad = good;
    bad.scalars["group.0.lr"] = 99.0;
    bad.tensors["state.2.exp_avg"] = zeros({1});
    EXPECT_THROW(adam.load_state_dict(bad), Error);
    EXPECT_EQ(adam.lr(), 0.01);
  }
}

TEST(Optimizer, StateDictFileRoundTrip) {
  optim::StateDict sd;
  sd.tensors["state.0.exp_avg"] = from_vector<float>({1.5f, -2.0f});
  sd.scalars["group.0.lr"] = 0.1;
  sd.scalars["best"] = INFINITY;
  sd.scalars["tiny"] = 1e-300;
  sd.scalars["third"] = 1.0 / 3.0;
  const std::string p = temp_path("sd.safetensors");
  sd.save(p);
  optim::StateDict back = optim::StateDict::load(p);
  std::filesystem::remove(p);
  EXPECT_EQ(back.scalars, sd.scalars);  // exact, including inf and 1/3
  EXPECT_TRUE(bitwise_equal(back.tensors.at("state.0.exp_avg"), sd.tensors.at("state.0.exp_avg")));
  EXPECT_EQ(optim::format_scalar(0.1), "0.1");
  EXPECT_THROW(optim::parse_scalar("0.1x", "field"), Error);
}

TEST(Optimizer, ZeroGradAndSkippedParameters) {
  Tensor a = ones({3}, TensorOptions(DType::F32, kCPU, true));
  Tensor b = ones({2}, TensorOptions(DType::F32, kCPU, true));
  optim::SGD opt({a, b}, optim::SGDOptions(0.5));
  a.set_grad(full({3}, 2.0));
  opt.step();  // b has no grad: untouched
  EXPECT_EQ(a.to_vector<float>(), std::vector<float>(3, 0.0f));
  EXPECT_EQ(b.to_vector<float>(), std::vector<float>(2, 1.0f));
  EXPECT_EQ(opt.param_step(0), 1);
  EXPECT_EQ(opt.param_step(1), 0);
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

TEST(Optimizer, LearningRateAccessors) {
  Tensor a = ones({1}, TensorOptions(DType::F32, kCPU, true));
  Tensor b = ones({1}, TensorOptions(DType::F32, kCPU, true));
  optim::Adam opt({optim::ParamGroup{{a}, {}, {}}, optim::ParamGroup{{b}, 0.5, 0.25}},
                  optim::AdamOptions(0.01).weight_decay(0.1));
  EXPECT_EQ(opt.num_groups(), 2u);
  EXPECT_EQ(opt.lr(), 0.01);
  EXPECT_EQ(opt.group_lr(1), 0.5);
  EXPECT_EQ(opt.group_weight_decay(0), 0.1);
  EXPECT_EQ(opt.group_weight_decay(1), 0.25);
  opt.set_lr(0.2);
  EXPECT_EQ(opt.group_lr(0), 0.2);
  EXPECT_EQ(opt.group_lr(1), 0.2);
  Tensor c = ones({1}, TensorOptions(DType::F32, kCPU, true));
  opt.add_param_group({{c}, {}, {}});
  EXPECT_EQ(opt.params().size(), 3u);
  EXPECT_EQ(opt.group_lr(2), 0.01);  // the default, not the current lr
  EXPECT_THROW(opt.group_lr(3), Error);
  EXPECT_THROW(opt.set_lr(-1), Error);
  EXPECT_EQ(opt.name(), "Adam");
}

TEST(Optimizer, ConstructionValidatesInput) {
  Tensor a = ones({2}, TensorOptions(DType::F32, kCPU, true));
  auto expect_error = [](const std::function<void()>& fn, const std::string& phrase) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected: " << phrase;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
    }
  };
  expect_error([&] { optim::SGD(std::vector<Tensor>{}, optim::SGDOptions(0.1)); }, "empty parameter list");
  expect_error([&] { optim::SGD({a, a}, optim::SGDOptions(0.1)); }, "more than once");
  expect_error([&] { optim::SGD({mul(a, 2.0)}, optim::SGDOptions(0.1)); }, "not a leaf");
  expect_error([&] { optim::SGD({arange(3)}, optim::SGDOptions(0.1)); }, "only f32 and f64");
  expect_error([&] { optim::SGD({a}, optim::SGDOptions(-0.1)); }, "learning rate");
  expect_error([&] { optim::SGD({a}, optim::SGDOptions(0.1).nesterov(true)); }, "nesterov");
  expect_error([&] { optim::Adam({a}, optim::AdamOptions().betas(1.0, 0.9)); }, "betas");
  expect_error([&] { optim::Adam({ones({2}, DType::BF16)}); }, "only f32 and f64");
  expect_error([&] { optim::RMSprop({a}, optim::RMSpropOptions().alpha(-1)); }, "alpha");
  expect_error([&] { optim::Adagrad({a}, optim::AdagradOptions().lr_decay(-1)); }, "lr_decay");
  // a gradient of the wrong shape is reported, not written out of bounds
  optim::SGD sgd({a}, optim::SGDOptions(0.1));
  a.set_grad(ones({3}));
  expect_error([&] { sgd.step(); }, "does not match parameter");
}

TEST(Optimizer, NonContiguousParameter) {
  // A transposed leaf parameter: each optimiser updates it through its strides.
  Tensor base = arange(0, 6, 1, DType::F32).view({2, 3});
  for (const Named& f : factories()) {
    Tensor p = base.clone().t();  // [3, 2], strides (1, 3)
    Tensor q = p.contiguous().clone();
    ASSERT_FALSE(p.is_contiguous());
    p.requires_grad_(true);
    q.requires_grad_(true);
    Tensor x = ones({1}, TensorOptions(DType::F32, kCPU, true)),
           y = ones({1}, TensorOptions(DType::F32, kCPU, true));
    auto op = f.make({p, x, ones({1}, TensorOptions(DType::F32, kCPU, true))});
    auto oq = f.make({q, y, ones({1}, TensorOptions(DType::F32, kCPU, true))});
    Generator g(3);
    for (int s = 0; s < 5; s++) {
      Tensor grad = randn({3, 2}, &g);
      p.set_grad(grad);
      q.set_grad(grad.clone());
      op->step();
      oq->step();
    }
    EXPECT_TRUE(bitwise_equal(p.contiguous(), q)) << f.name;
    EXPECT_FALSE(p.is_contiguous()) << f.name;  // updated in place, not replaced
  }
}

// Each optimiser minimises a least-squares problem through autograd: loss.backward() fills
// the .grads, step() reduces the loss.
TEST(Optimizer, TrainsThroughAutograd) {
  Generator g(11);
  Tensor x = randn({64, 4}, &g);
  Tensor w_true = from_vector<float>({1.0f, -2.0f, 0.5f, 3.0f}, {4, 1});
  Tensor y = matmul(x, w_true);
  for (const Named& f : factories()) {
    Tensor w = zeros({4, 1}, TensorOptions(DType::F32, kCPU, true));
    Tensor b = zeros({1}, TensorOptions(DType::F32, kCPU, true));
    Tensor unused = zeros({1}, TensorOptions(DType::F32, kCPU, true));
    auto opt = f.make({w, b, unused});
    auto loss_fn = [&] { return mse_loss(add(matmul(x, w), b), y); };
    double first = loss_fn().item<double>();
    for (int s = 0; s < 200; s++) {
      opt->zero_grad();
      Tensor loss = loss_fn();
      loss.backward();
      opt->step();
    }
    double last = loss_fn().item<double>();
    EXPECT_LT(last, first * 0.2) << f.name << ": " << first << " -> " << last;
  }
}

TEST(Optimizer, WeightDecayGroupsSpareBiasesAndNorms) {
  // AdamW's usual split: decay on matrices and embeddings, none on 1-D parameters; one
  // step with zero gradients shrinks only the decayed group, by lr * weight_decay.
  Tensor w = ones({3, 2}), b = ones({2}), e = ones({4, 3}), g = ones({3});
  std::vector<optim::ParamGroup> groups = optim::weight_decay_groups({w, b, e, g}, 0.1);
  ASSERT_EQ(groups.size(), 2u);
  ASSERT_EQ(groups[0].params.size(), 2u);
  EXPECT_TRUE(groups[0].params[0].same(w) && groups[0].params[1].same(e));
  ASSERT_EQ(groups[1].params.size(), 2u);
  EXPECT_TRUE(groups[1].params[0].same(b) && groups[1].params[1].same(g));
  EXPECT_EQ(*groups[0].weight_decay, 0.1);
  EXPECT_EQ(*groups[1].weight_decay, 0.0);
  optim::AdamW opt(groups, optim::AdamWOptions(0.5));
  for (Tensor* t : {&w, &b, &e, &g}) t->set_grad(zeros(t->shape()));
  opt.step();
  EXPECT_FLOAT_EQ(w.to_vector<float>()[0], 1.0f - 0.5f * 0.1f);
  EXPECT_FLOAT_EQ(b.to_vector<float>()[0], 1.0f);
}

}  // namespace
}  // namespace mox
