// The paths that put work on a GPU, exercised on the loopback device (loopback_backend.h):
// pre-training (GPT and BERT), the Trainer (fit, evaluate, predict), fine-tuning-style
// padded classifiers and generation with the KV cache all keep every tensor a kernel sees
// on the model's device, and give the CPU's results exactly (the loopback runs the CPU's
// kernels). Mixed precision (bf16, f16 with loss scaling) is checked on the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "device/loopback_backend.h"
#include "mox/mox.h"
#include "mox/nn/nn.h"
#include "mox/optim/optim.h"
#include "mox/nn/models/generate.h"
#include "mox/nn/models/gpt.h"
#include "mox/train/pretrain.h"
#include "mox/train/trainer.h"

namespace fs = std::filesystem;

namespace mox {
namespace {

using testing::LoopbackBackend;
const Device kDev = LoopbackBackend::kDevice;

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// history.csv without the timing column (tokens_per_second), which differs between runs.
std::string history_without_timing(const std::string& run) {
  std::stringstream in(slurp(run + "/history.csv")), out;
  std::string line;
  while (std::getline(in, line)) out << line.substr(0, line.rfind(',')) << "\n";
  return out.str();
}

struct DevicePlumbing : ::testing::Test {
  std::string dir;
  void SetUp() override {
    LoopbackBackend::install();
    dir = (fs::temp_directory_path() / ("mox_device." + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    fs::create_directories(dir + "/corpus");
    std::ofstream f(dir + "/corpus/a.txt");
    for (int i = 0; i < 300; i++) f << "the number " << i % 13 << " follows " << (i + 12) % 13 << ".\n";
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string config(const std::string& model, const std::string& extra_train = "") {
    std::string path = dir + "/cfg" + std::to_string(n_++) + ".toml";
    std::ofstream(path) << "[model]\n" << model << R"(
[corpus]
source = "files"
files = [")" << dir << R"(/corpus"]
tokenizer = "char"
val_fraction = 0.1
[train]
steps = 6
batch_size = 4
eval_every = 3
eval_batches = 2
seed = 5
threads = 1
)" << extra_train << R"(
[optimizer]
lr = 3e-3
)";
    return path;
  }
  train::PretrainResult pretrain(const std::string& cfg, const std::string& out, const std::string& device,
                                 const std::string& precision = "") {
    train::PretrainOptions o;
    o.out = out;
    o.device = device;
    o.precision = precision;
    return train::run_pretrain(cfg, o);
  }
  int n_ = 0;
};

const char* kGpt = "type = \"gpt\"\nn_layer = 2\nn_head = 2\nn_embd = 32\nblock_size = 16\ndropout = 0.1\n";
const char* kBert =
    "type = \"bert\"\nnum_hidden_layers = 1\nnum_attention_heads = 2\nhidden_size = 32\n"
    "max_position_embeddings = 16\ndropout = 0.1\n";

TEST_F(DevicePlumbing, LoopbackRefusesHostTensors) {
  Backend& be = backend_for(kDev);
  EXPECT_THROW(be.fill(zeros({3}), 1.0), Error);
  EXPECT_THROW(add(ones({2}).to(kDev), ones({2})), Error);
  Tensor t = ones({2}).to(kDev);
  EXPECT_EQ(t.device(), kDev);
  EXPECT_EQ(add(t, t).to(kCPU).to_vector<float>(), std::vector<float>({2.f, 2.f}));
}

TEST_F(DevicePlumbing, GptPretrainingOnTheDeviceEqualsTheCpu) {
  const std::string cfg = config(kGpt);
  train::PretrainResult cpu = pretrain(cfg, dir + "/cpu", "");
  const int64_t k0 = LoopbackBackend::install().kernels(), m0 = LoopbackBackend::install().multi_calls();
  train::PretrainResult dev = pretrain(cfg, dir + "/dev", "cuda");
  EXPECT_GT(LoopbackBackend::install().kernels() - k0, 1000) << "the work did not run on the device";
  EXPECT_GE(LoopbackBackend::install().multi_calls() - m0, 6) << "AdamW should update each group in one call";
  EXPECT_EQ(dev.val_loss, cpu.val_loss);
  EXPECT_EQ(history_without_timing(dir + "/dev"), history_without_timing(dir + "/cpu"));
  EXPECT_EQ(slurp(dir + "/dev/model.safetensors"), slurp(dir + "/cpu/model.safetensors"));
  // Resuming a device run: the checkpoint (written from device tensors) loads back onto it.
  train::PretrainOptions o;
  o.out = dir + "/dev";
  o.resume = true;
  o.device = "cuda";
  o.overrides = {"train.steps=9"};
  EXPECT_EQ(train::run_pretrain(cfg, o).steps, 9);
}

TEST_F(DevicePlumbing, BertPretrainingOnTheDeviceEqualsTheCpu) {
  const std::string cfg = config(kBert);
  train::PretrainResult cpu = pretrain(cfg, dir + "/cpu", "");
  train::PretrainResult dev = pretrain(cfg, dir + "/dev", "cuda");
  EXPECT_EQ(dev.val_loss, cpu.val_loss);
  EXPECT_EQ(history_without_timing(dir + "/dev"), history_without_timing(dir + "/cpu"));
}

TEST_F(DevicePlumbing, MixedPrecisionPretrainingTracksF32) {
  const std::string cfg = config(kGpt, "precision = \"bf16\"\n");
  train::PretrainResult f32 = pretrain(cfg, dir + "/f32", "", "f32");
  train::PretrainResult bf16 = pretrain(cfg, dir + "/bf16", "");
  train::PretrainResult f16 = pretrain(cfg, dir + "/f16", "", "f16");
  EXPECT_NE(bf16.val_loss, f32.val_loss) << "precision = bf16 had no effect";
  EXPECT_NEAR(bf16.val_loss, f32.val_loss, 0.05 * f32.val_loss);
  EXPECT_NEAR(f16.val_loss, f32.val_loss, 0.05 * f32.val_loss);
  // the device run in bf16 equals the CPU's bf16 run
  train::PretrainResult dev = pretrain(cfg, dir + "/dev", "cuda");
  EXPECT_EQ(dev.val_loss, bf16.val_loss);
}

TEST_F(DevicePlumbing, BadDeviceAndPrecisionAreOneLineErrors) {
  const std::string cfg = config(kGpt, "precision = \"f8\"\n");
  try {
    pretrain(cfg, dir + "/x", "");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("precision"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pretrain(config(kGpt), dir + "/y", "tpu"), Error);
}

TEST_F(DevicePlumbing, TrainerFitEvaluatePredictOnTheDeviceEqualTheCpu) {
  Generator g(7);
  Tensor x = randn({64, 6}, &g);
  Tensor y = argmax(matmul(x, randn({6, 3}, &g)), 1);
  auto data = std::make_shared<data::TensorDataset>(x, y);
  auto run = [&](bool on_device, DType precision) {
    manual_seed(11);
    auto model = std::make_shared<nn::Sequential>();
    model->push_back(std::make_shared<nn::Linear>(6, 16));
    model->push_back(std::make_shared<nn::ReLU>());
    model->push_back(std::make_shared<nn::Dropout>(0.2));
    model->push_back(std::make_shared<nn::Linear>(16, 3));
    if (on_device) model->to(kDev);
    auto opt = std::make_shared<optim::AdamW>(model->parameters(), optim::AdamWOptions(1e-2));
    train::Trainer t(model, opt, train::LossSpec{});
    train::FitOptions fo;
    fo.epochs = 3;
    fo.batch_size = 16;
    fo.validation_data = data;
    fo.verbose = 0;
    fo.clip_grad_norm = 1.0;
    fo.precision = precision;
    train::History h = t.fit(data, fo);
    train::EvalResult r = t.evaluate(*data, 32);
    Tensor p = t.predict(x, 20);
    EXPECT_EQ(p.device(), kCPU);
    EXPECT_EQ(r.outputs.device(), kCPU);
    return std::make_tuple(r.value("loss"), p.to_vector<float>(), model->parameters()[0].to(kCPU).to_vector<float>());
  };
  auto [lc, pc, wc] = run(false, DType::F32);
  auto [ld, pd, wd] = run(true, DType::F32);
  EXPECT_EQ(ld, lc);
  EXPECT_EQ(pd, pc);
  EXPECT_EQ(wd, wc);
  auto [lb, pb, wb] = run(true, DType::BF16);
  EXPECT_NEAR(lb, lc, 0.05 * lc + 0.01);
}

TEST_F(DevicePlumbing, GenerationWithTheCacheOnTheDeviceEqualsTheCpu) {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 32;
  c.block_size = 12;
  c.vocab_size = 40;
  manual_seed(3);
  auto model = std::make_shared<nn::GPT>(c);
  nn::GenerateOptions o;
  o.max_new_tokens = 20;  // past block_size: the context is re-read into a fresh cache
  o.sampling.seed = 9;
  o.sampling.top_k = 5;
  const std::vector<std::vector<int32_t>> prompts{{1, 2, 3}, {4, 5, 6, 7, 8}};
  auto cpu = nn::generate(*model, prompts, o, {});
  model->to(kDev);
  auto dev = nn::generate(*model, prompts, o, {});
  EXPECT_EQ(dev, cpu);
  o.use_cache = false;
  EXPECT_EQ(nn::generate(*model, prompts, o, {}), cpu);
}

}  // namespace
}  // namespace mox
