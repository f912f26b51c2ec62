// Trainer: fit / evaluate / predict, callbacks, and exact resumption from checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../error_of.h"
#include "mox/data/split.h"
#include "mox/mox.h"
#include "mox/nn/nn.h"
#include "mox/optim/optim.h"
#include "mox/train/metrics.h"
#include "mox/train/trainer.h"

using namespace mox;
using train::FitOptions;
using train::Trainer;

namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("mox_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// Three Gaussian blobs in 4-D: a classification set the MLP separates well.
std::shared_ptr<data::TensorDataset> blobs(int64_t n, uint64_t seed) {
  Generator g(seed);
  Tensor x = randn({n, 4}, &g);
  std::vector<int64_t> y(static_cast<size_t>(n));
  float* p = x.data<float>();
  for (int64_t i = 0; i < n; i++) {
    y[size_t(i)] = i % 3;
    p[i * 4 + y[size_t(i)]] += 3.0f;
  }
  return std::make_shared<data::TensorDataset>(x, from_vector(y));
}

std::shared_ptr<nn::Sequential> mlp(uint64_t seed, bool softmax_head = false, int64_t out = 3) {
  manual_seed(seed);
  auto m = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(4, 16), std::make_shared<nn::ReLU>(), std::make_shared<nn::Dropout>(0.2),
      std::make_shared<nn::Linear>(16, out)});
  if (softmax_head) m->push_back(std::make_shared<nn::Softmax>(1));
  return m;
}

std::shared_ptr<optim::Adam> adam(const std::shared_ptr<nn::Module>& m, double lr = 1e-2) {
  return std::make_shared<optim::Adam>(m->parameters(), optim::AdamOptions(lr));
}

FitOptions quiet(int64_t epochs, int64_t batch = 16) {
  FitOptions o;
  o.epochs = epochs;
  o.batch_size = batch;
  o.verbose = 0;
  o.seed = 7;
  return o;
}

void expect_same_weights(nn::Module& a, nn::Module& b) {
  auto sa = a.state_dict(), sb = b.state_dict();
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [k, v] : sa) {
    auto x = v.to_vector<float>(), y = sb[k].to_vector<float>();
    ASSERT_EQ(x.size(), y.size()) << k;
    for (size_t i = 0; i < x.size(); i++) ASSERT_EQ(x[i], y[i]) << k << "[" << i << "]";
  }
}

void expect_same_history(const train::History& a, const train::History& b) {
  ASSERT_EQ(a.keys(), b.keys());
  ASSERT_EQ(a.epochs(), b.epochs());
  for (const auto& k : a.keys()) {
    auto x = a.values(k), y = b.values(k);
    for (size_t i = 0; i < x.size(); i++) EXPECT_EQ(x[i], y[i]) << k << " epoch " << i;
  }
}

}  // namespace

TEST(Trainer, FitLearnsAndRecordsKerasKeys) {
  auto train_set = blobs(600, 1), val_set = blobs(150, 2);
  auto model = mlp(3);
  Trainer t(model, adam(model), train::parse_loss("sparse_categorical_crossentropy"));
  FitOptions o = quiet(4);
  o.validation_data = val_set;
  train::History h = t.fit(train_set, o);
  EXPECT_EQ(h.epochs(), 4);
  EXPECT_EQ(h.keys(), (std::vector<std::string>{"loss", "accuracy", "val_loss", "val_accuracy", "lr"}));
  EXPECT_LT(h.last("loss"), h.values("loss")[0]);
  EXPECT_GT(h.last("val_accuracy"), 0.9);
  EXPECT_EQ(h.last("lr"), 1e-2);
  EXPECT_EQ(t.epoch(), 4);
  EXPECT_EQ(t.global_step(), 4 * ((600 + 15) / 16));
  EXPECT_EQ(t.seconds_per_epoch().size(), 4u);
  EXPECT_GT(t.samples_per_second(), 0);

  // evaluate agrees with the metric functions on predict's outputs.
  train::EvalResult r = t.evaluate(*val_set, 64);
  Tensor probs = t.predict(val_set->inputs(), 50);
  ASSERT_EQ(probs.shape(), (Shape{150, 3}));
  EXPECT_NEAR(r.value("accuracy"), train::accuracy(probs, val_set->targets()), 1e-12);
  EXPECT_NEAR(r.value("val_loss" == std::string() ? "loss" : "loss"), h.last("val_loss"), 1e-5);
  EXPECT_NEAR(r.value("macro_f1"), train::classification_report(probs, val_set->targets(), 3).macro.f1, 1e-12);
  EXPECT_GT(r.value("auc"), 0.95);
  // Rows of predict are probabilities.
  auto pv = probs.to_vector<float>();
  for (int i = 0; i < 150; i++) EXPECT_NEAR(pv[i * 3] + pv[i * 3 + 1] + pv[i * 3 + 2], 1.0, 1e-5);
}

TEST(Trainer, SoftmaxHeadTrainsOnLogits) {
  // Dense(3, softmax) + cross-entropy trains exactly like Dense(3) + cross-entropy on logits.
  auto data = blobs(96, 4);
  auto a = mlp(5, false), b = mlp(5, true);
  Trainer ta(a, adam(a), train::parse_loss("cross_entropy")), tb(b, adam(b), train::parse_loss("cross_entropy"));
  manual_seed(123);  // dropout masks
  auto ha = ta.fit(data, quiet(2));
  manual_seed(123);
  auto hb = tb.fit(data, quiet(2));
  expect_same_history(ha, hb);
  Tensor pa = ta.predict(data->inputs()), pb = tb.predict(data->inputs());
  auto va = pa.to_vector<float>(), vb = pb.to_vector<float>();
  for (size_t i = 0; i < va.size(); i++) EXPECT_NEAR(va[i], vb[i], 1e-6);
}

TEST(Trainer, BinarySigmoidHeadWithIntegerLabels) {
  Generator g(9);
  Tensor x = randn({200, 2}, &g);
  std::vector<int64_t> y(200);
  auto xv = x.to_vector<float>();
  for (int i = 0; i < 200; i++) y[i] = xv[i * 2] + xv[i * 2 + 1] > 0;
  auto ds = std::make_shared<data::TensorDataset>(x, from_vector(y));
  manual_seed(1);
  auto m = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(2, 1), std::make_shared<nn::Sigmoid>()});
  Trainer t(m, adam(m, 0.05), train::parse_loss("binary_crossentropy"));
  auto h = t.fit(ds, quiet(10));
  EXPECT_GT(h.last("accuracy"), 0.95);
  auto r = t.evaluate(*ds);
  EXPECT_EQ(r.outputs.shape(), (Shape{200}));  // positive-class probabilities
  EXPECT_GT(r.value("auc"), 0.99);
}

TEST(Trainer, RegressionReportsMaeAndR2) {
  Generator g(11);
  Tensor x = randn({256, 3}, &g);
  auto xv = x.to_vector<float>();
  std::vector<float> y(256);
  for (int i = 0; i < 256; i++) y[i] = 2 * xv[i * 3] - xv[i * 3 + 1] + 0.5f * xv[i * 3 + 2] + 1;
  auto ds = std::make_shared<data::TensorDataset>(x, from_vector(y).reshape({256, 1}));
  manual_seed(2);
  auto m = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(3, 1)});
  Trainer t(m, adam(m, 0.05), train::parse_loss("mean_squared_error"));
  auto h = t.fit(ds, quiet(30, 32));
  EXPECT_EQ(h.keys(), (std::vector<std::string>{"loss", "mae", "lr"}));
  auto r = t.evaluate(*ds);
  EXPECT_GT(r.value("r2"), 0.99);
  EXPECT_NEAR(r.value("mse"), r.value("loss"), 1e-5);
}

// The run a resumed run must reproduce: dropout, shuffling and augmentation all draw
// random numbers, so any state that is not restored shows up as different weights.
struct ResumeCase {
  std::shared_ptr<data::TensorDataset> data = blobs(120, 21);
  FitOptions options(int64_t epochs) const {
    FitOptions o = quiet(epochs, 16);
    o.validation_split = 0.25;
    o.augment = [](data::Batch& b, Generator& g) {  // jitter the inputs
      b.input = b.input + randn(b.input.shape(), &g) * 0.1;
    };
    return o;
  }
};

TEST(Trainer, ResumeAtAnEpochBoundaryIsExact) {
  ResumeCase c;
  std::string dir = temp_dir("epoch") + "/ckpt";
  auto ref = mlp(31);
  Trainer tref(ref, adam(ref), train::parse_loss("cross_entropy"));
  auto es_ref = std::make_shared<train::EarlyStopping>(train::EarlyStoppingOptions{"val_loss", 10});
  FitOptions o = c.options(3);
  o.callbacks = {es_ref};
  auto href = tref.fit(c.data, o);

  auto first = mlp(31);
  Trainer t1(first, adam(first), train::parse_loss("cross_entropy"));
  FitOptions o1 = c.options(1);
  o1.callbacks = {std::make_shared<train::EarlyStopping>(train::EarlyStoppingOptions{"val_loss", 10}),
                  std::make_shared<train::Checkpointer>(dir, 0, std::map<std::string, std::string>{{"config.toml", "x = 1\n"}})};
  t1.fit(c.data, o1);
  ASSERT_TRUE(Trainer::has_checkpoint(dir));
  EXPECT_TRUE(fs::exists(dir + "/config.toml"));
  manual_seed(999);  // the resumed process starts with other random state

  auto second = mlp(77);  // different initial weights: the checkpoint overwrites them
  Trainer t2(second, adam(second), train::parse_loss("cross_entropy"));
  t2.load_checkpoint(dir);
  EXPECT_EQ(t2.epoch(), 1);
  FitOptions o2 = c.options(3);
  o2.callbacks = {std::make_shared<train::EarlyStopping>(train::EarlyStoppingOptions{"val_loss", 10})};
  auto h2 = t2.fit(c.data, o2);
  expect_same_history(href, h2);
  expect_same_weights(*ref, *second);
  EXPECT_EQ(t2.global_step(), tref.global_step());
}

TEST(Trainer, ResumeMidEpochIsExact) {
  ResumeCase c;
  std::string dir = temp_dir("mid") + "/ckpt";
  auto ref = mlp(41);
  Trainer tref(ref, adam(ref), train::parse_loss("cross_entropy"));
  auto href = tref.fit(c.data, c.options(2));

  // Checkpoint every 4 steps, crash at step 5 (the last save was after step 4, mid epoch 0).
  struct Crash : train::Callback {
    std::string name() const override { return "crash"; }
    void on_batch_end(Trainer& t, int64_t, const train::MetricValues&) override {
      if (t.global_step() == 5) throw std::runtime_error("simulated crash");
    }
  };
  auto first = mlp(41);
  Trainer t1(first, adam(first), train::parse_loss("cross_entropy"));
  FitOptions o1 = c.options(2);
  o1.callbacks = {std::make_shared<train::Checkpointer>(dir, 4), std::make_shared<Crash>()};
  EXPECT_THROW(t1.fit(c.data, o1), std::runtime_error);

  auto second = mlp(5);
  Trainer t2(second, adam(second), train::parse_loss("cross_entropy"));
  t2.load_checkpoint(dir);
  EXPECT_EQ(t2.epoch(), 0);
  EXPECT_EQ(t2.batch_in_epoch(), 4);
  auto h2 = t2.fit(c.data, c.options(2));
  expect_same_history(href, h2);
  expect_same_weights(*ref, *second);
}

TEST(Trainer, CheckpointSurvivesAnInterruptedSwap) {
  auto data = blobs(60, 3);
  std::string root = temp_dir("swap"), dir = root + "/ckpt";
  auto m = mlp(1);
  Trainer t(m, adam(m), train::parse_loss("cross_entropy"));
  t.fit(data, quiet(1));
  t.save_checkpoint(dir);
  // A save interrupted between its two renames leaves only ckpt.old.
  fs::rename(dir, dir + ".old");
  ASSERT_TRUE(Trainer::has_checkpoint(dir));
  auto m2 = mlp(2);
  Trainer t2(m2, adam(m2), train::parse_loss("cross_entropy"));
  t2.load_checkpoint(dir);
  expect_same_weights(*m, *m2);
  // A torn trainer.json is reported with its path.
  fs::create_directories(dir);
  std::ofstream(dir + "/trainer.json") << "{\"format\": ";
  expect_error([&] { t2.load_checkpoint(dir); }, {"ckpt/trainer.json", "not valid JSON"});
  expect_error([&] { t2.load_checkpoint(root + "/none"); }, {"none", "no checkpoint"});
  Trainer t3(m2, adam(m2), train::parse_loss("mse"));
  fs::remove_all(dir);
  expect_error([&] { t3.load_checkpoint(dir); }, {"loss cross_entropy, not mse"});
}

// Drives a callback with a given sequence of monitored values.
TEST(Trainer, EarlyStoppingFollowsKeras) {
  auto m = mlp(1);
  Trainer t(m, adam(m), train::parse_loss("cross_entropy"));
  train::EarlyStopping es({"val_loss", /*patience=*/2, /*min_delta=*/0.01, "auto", /*restore=*/true});
  es.on_train_begin(t);
  const double vals[] = {1.0, 0.8, 0.795, 0.9, 0.7};
  int64_t stopped = -1;
  for (int64_t e = 0; e < 5 && !t.stop_requested(); e++) {
    // Mark the weights with the epoch so we can tell which ones were restored.
    {
      NoGradGuard ng;
      m->parameters()[0].fill_(double(e));
    }
    es.on_epoch_end(t, e, {{"loss", 0.0}, {"val_loss", vals[e]}});
    if (t.stop_requested()) stopped = e;
  }
  // 0.795 is not better than 0.8 by min_delta; 0.9 neither: patience 2 runs out at epoch 3.
  EXPECT_EQ(stopped, 3);
  EXPECT_EQ(es.stopped_epoch(), 3);
  EXPECT_EQ(es.best_epoch(), 1);
  EXPECT_EQ(m->parameters()[0].to_vector<float>()[0], 1.0f);  // epoch 1's weights restored
  expect_error([&] { es.on_epoch_end(t, 5, {{"loss", 0.0}}); },
               {"EarlyStopping", "monitor \"val_loss\"", "add a validation split"});
}

TEST(Trainer, ModelCheckpointKeepsTheBest) {
  auto data = blobs(90, 5);
  std::string dir = temp_dir("best");
  auto m = mlp(8);
  Trainer t(m, adam(m), train::parse_loss("cross_entropy"));
  auto best = std::make_shared<train::ModelCheckpoint>(
      train::ModelCheckpointOptions{dir + "/best.safetensors", "val_accuracy", "auto", true});
  FitOptions o = quiet(5);
  o.validation_split = 0.3;
  o.callbacks = {best};
  auto h = t.fit(data, o);
  ASSERT_TRUE(fs::exists(dir + "/best.safetensors"));
  EXPECT_EQ(best->best_epoch(), h.best("val_accuracy", train::History::Mode::Max).epoch);
  auto f = io::load_safetensors(dir + "/best.safetensors");
  EXPECT_EQ(f.metadata.at("epoch"), std::to_string(best->best_epoch()));
}

TEST(Trainer, LearningRateScheduleAndCsvLogger) {
  auto data = blobs(64, 6);
  std::string dir = temp_dir("lr");
  auto m = mlp(9);
  auto opt = adam(m, 0.1);
  Trainer t(m, opt, train::parse_loss("cross_entropy"));
  FitOptions o = quiet(4, 32);
  o.callbacks = {std::make_shared<train::LearningRateScheduler>(std::make_shared<optim::StepLR>(*opt, 2, 0.5), false),
                 std::make_shared<train::CSVLogger>(dir + "/history.csv")};
  auto h = t.fit(data, o);
  EXPECT_EQ(h.values("lr"), (std::vector<double>{0.1, 0.1, 0.05, 0.05}));
  auto back = train::History::read_csv(dir + "/history.csv");
  expect_same_history(h, back);
}

TEST(Trainer, ProgressPrintsOneLinePerEpochWhenNotATerminal) {
  auto data = blobs(64, 7);
  auto m = mlp(10);
  Trainer t(m, adam(m), train::parse_loss("cross_entropy"));
  std::ostringstream out;
  FitOptions o = quiet(3, 16);
  o.verbose = 1;
  o.out = &out;
  t.fit(data, o);
  std::string s = out.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 3) << s;
  EXPECT_EQ(s.find('\r'), std::string::npos);
  EXPECT_NE(s.find("Epoch 3/3"), std::string::npos) << s;
  EXPECT_NE(s.find("accuracy"), std::string::npos) << s;
}

TEST(Trainer, StepsPerEpochAndErrors) {
  auto data = blobs(100, 8);
  auto m = mlp(11);
  Trainer t(m, adam(m), train::parse_loss("cross_entropy"));
  FitOptions o = quiet(2, 10);
  o.steps_per_epoch = 3;
  t.fit(data, o);
  EXPECT_EQ(t.global_step(), 6);
  expect_error([] { train::parse_loss("hinge"); }, {"unknown loss \"hinge\"", "binary_crossentropy"});
  FitOptions bad = quiet(1);
  bad.validation_split = 1.5;
  expect_error([&] { t.fit(data, bad); }, {"validation_split"});
  // Targets that cannot match the outputs name both shapes.
  auto m2 = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(4, 2)});
  Trainer t2(m2, adam(m2), train::parse_loss("mse"));
  auto ds = std::make_shared<data::TensorDataset>(randn({8, 4}), randn({8, 3}));
  expect_error([&] { t2.fit(ds, quiet(1, 4)); }, {"mse", "[4, 2]", "[4, 3]"});
}
