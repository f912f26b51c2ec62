// Training cost (serve/cost.h): FLOP formulas against hand-computed values, the MFU of
// synthetic run folders with known throughput, the hardware table and its user file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "error_of.h"
#include "mox/io/config.h"
#include "mox/nn/models/build_model.h"
#include "mox/serve/cost.h"

namespace fs = std::filesystem;
using namespace mox::serve;

namespace {

std::string temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("mox_cost_test." + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// A device with round numbers: 1e11 f32 FLOP/s, 360 W, 3.6 per hour.
HardwareTable test_table() {
  HardwareTable t = default_hardware();
  merge_hardware(t,
                 "[hardware.round]\nwatts = 360\nprice_per_hour = 3.6\n"
                 "[hardware.round.peak_flops]\nf32 = 1e11\nbf16 = 1e15\n",
                 "round.toml");
  return t;
}

// A mox pretrain summary: N = 1e6, 1e6 tokens at 1e4 tokens/s (100 s), 4 layers of width
// 128, context 128.
std::string gpt_run() {
  const std::string dir = temp_dir("gpt");
  write(dir + "/summary.json",
        R"({"task": "language-model", "parameters": 1000000, "tokens": 1000000, "tokens_per_second": 10000.0,
            "train_seconds": 100.0, "block_size": 128, "device": "cpu", "precision": "f32",
            "model": {"type": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "vocab_size": 256}})");
  return dir;
}

}  // namespace

TEST(CostTraining, TransformerFlopsPerToken) {
  EXPECT_DOUBLE_EQ(transformer_train_flops_per_token(1e6, 0, 0, 0), 6e6);
  // 6N + 6 L T d = 6e6 + 6 * 4 * 128 * 128
  EXPECT_DOUBLE_EQ(transformer_train_flops_per_token(1e6, 4, 128, 128), 6e6 + 393216.0);
  // a missing shape drops the attention term rather than multiplying by 0 elsewhere
  EXPECT_DOUBLE_EQ(transformer_train_flops_per_token(1e6, 4, 0, 128), 6e6);
}

TEST(CostTraining, EstimateTimeAtAssumedMfu) {
  // 6 N T with N = 1e9, T = 1e9: 6e18 FLOPs on a 1e15 FLOP/s device at 50% = 12000 s.
  HardwareTable t = test_table();
  TrainingCostOptions o;
  o.mfu = 0.5;
  TrainingCost c = training_cost(training_work_estimate(1e9, 1e9, 0, 0, 0), t.get("round"), o);
  EXPECT_EQ(c.precision, "bf16");  // estimates compare against bf16 when the device lists it
  EXPECT_DOUBLE_EQ(c.total_flops, 6e18);
  EXPECT_NEAR(c.seconds, 12000.0, 1e-6);
  EXPECT_NEAR(c.device_hours, 12000.0 / 3600, 1e-9);
  EXPECT_NEAR(c.rental_cost, 12000.0 / 3600 * 3.6, 1e-9);  // 12.0
  EXPECT_NEAR(c.kwh, 360 * 12000.0 / 3600 / 1000, 1e-9);   // 1.2 kWh
  EXPECT_FALSE(c.measured);

  // Eight devices: an eighth of the time, the same device-hours and money.
  o.devices = 8;
  o.kwh_price = 0.5;
  TrainingCost c8 = training_cost(training_work_estimate(1e9, 1e9, 0, 0, 0), t.get("round"), o);
  EXPECT_NEAR(c8.seconds, 1500.0, 1e-6);
  EXPECT_NEAR(c8.device_hours, c.device_hours, 1e-9);
  EXPECT_NEAR(c8.energy_cost, 0.6, 1e-9);
  EXPECT_NEAR(c8.total_cost, 12.0 + 0.6, 1e-9);
}

TEST(CostTraining, MfuOfASyntheticGptRun) {
  const std::string dir = gpt_run();
  TrainingWork w = training_work_of_run(dir);
  EXPECT_EQ(w.kind, "gpt");
  EXPECT_EQ(w.layers, 4);
  EXPECT_EQ(w.width, 128);
  EXPECT_EQ(w.context, 128);
  const double per_token = 6e6 + 6.0 * 4 * 128 * 128;
  EXPECT_DOUBLE_EQ(w.flops_per_unit, per_token);
  EXPECT_NE(w.formula.find("6N + 6*L*T*d"), std::string::npos) << w.formula;

  TrainingCost c = training_cost(w, test_table().get("round"), {});
  EXPECT_TRUE(c.measured);
  EXPECT_EQ(c.precision, "f32");
  EXPECT_NEAR(c.achieved_flops, per_token * 1e4, 1);
  EXPECT_NEAR(c.mfu, per_token * 1e4 / 1e11, 1e-12);  // 0.6393216
  EXPECT_NEAR(c.total_flops, per_token * 1e6, 1);
  EXPECT_NEAR(c.seconds, 100.0, 1e-12);
  EXPECT_NEAR(c.rental_cost, 0.1, 1e-12);  // 100 s at 3.6 an hour
  EXPECT_NEAR(c.kwh, 0.01, 1e-12);         // 360 W for 100 s
}

TEST(CostTraining, GptRunWithoutShapeCountsSixN) {
  const std::string dir = temp_dir("gpt-noshape");
  write(dir + "/summary.json", R"({"parameters": 2000, "tokens_per_second": 50.0, "train_seconds": 2.0})");
  TrainingWork w = training_work_of_run(dir);
  EXPECT_DOUBLE_EQ(w.flops_per_unit, 12000.0);
  EXPECT_DOUBLE_EQ(w.units, 100.0);  // tokens_per_second x train_seconds when "tokens" is absent
  EXPECT_NE(w.formula.find("attention is not counted"), std::string::npos);
}

TEST(CostTraining, ForwardFlopsOfTheExampleCnn) {
  // examples/cnn.toml, by hand: conv 1->32 3x3 on 28x28 (26x26 out), pool, conv 32->64
  // (11x11), pool, conv 64->64 (3x3), dense 576->64, dense 64->10.
  mox::io::Config cfg = mox::io::load_config(std::string(MOX_SOURCE_DIR) + "/examples/cnn.toml");
  auto model = mox::nn::build_model(cfg.model);
  const double expected = 2.0 * 1 * 9 * 32 * 26 * 26 + 2.0 * 32 * 9 * 64 * 11 * 11 + 2.0 * 64 * 9 * 64 * 3 * 3 +
                          2.0 * 576 * 64 + 2.0 * 64 * 10;
  EXPECT_DOUBLE_EQ(forward_flops_per_example(*model, mox::nn::model_input_shape(cfg.model)), expected);
}

TEST(CostTraining, MfuOfASyntheticClassifierRun) {
  const std::string dir = temp_dir("mlp");
  write(dir + "/config.toml",
        "[model]\nname = \"mlp\"\ninput_shape = [1, 28, 28]\n"
        "[[model.layers]]\ntype = \"Flatten\"\n"
        "[[model.layers]]\ntype = \"Dense\"\nunits = 128\nactivation = \"relu\"\n"
        "[[model.layers]]\ntype = \"Dense\"\nunits = 10\n");
  write(dir + "/summary.json",
        R"({"parameters": 101770, "epochs": 2, "seconds_per_epoch": [10.0, 30.0], "samples_per_second": 2000.0,
            "device": "cpu", "precision": "f32"})");
  TrainingWork w = training_work_of_run(dir);
  EXPECT_EQ(w.kind, "classifier");
  const double forward = 2.0 * 784 * 128 + 2.0 * 128 * 10;
  EXPECT_DOUBLE_EQ(w.flops_per_unit, 3 * forward);
  EXPECT_DOUBLE_EQ(w.seconds, 40.0);
  EXPECT_DOUBLE_EQ(w.units, 80000.0);
  TrainingCost c = training_cost(w, test_table().get("round"), {});
  EXPECT_NEAR(c.mfu, 3 * forward * 2000 / 1e11, 1e-12);
}

TEST(CostTraining, BadRunFolders) {
  expect_error([] { training_work_of_run("/nonexistent/mox-run"); }, {"/nonexistent/mox-run", "no such directory"});
  const std::string empty = temp_dir("empty");
  expect_error([&] { training_work_of_run(empty); }, {"summary.json", "missing"});
  const std::string bad = temp_dir("bad");
  write(bad + "/summary.json", R"({"tokens_per_second": 5.0, "train_seconds": 2.0})");
  expect_error([&] { training_work_of_run(bad); }, {"summary.json", "parameters: missing"});
  write(bad + "/summary.json", R"({"parameters": 10})");
  expect_error([&] { training_work_of_run(bad); }, {"summary.json", "tokens_per_second"});
  write(bad + "/summary.json", "{not json");
  expect_error([&] { training_work_of_run(bad); }, {"summary.json", "not valid JSON"});
}

TEST(CostTraining, HardwareTable) {
  HardwareTable t = default_hardware();
  for (const char* n : {"cpu-2core", "cpu-16core", "a100-80gb", "h100-sxm", "h200"}) EXPECT_NO_THROW(t.get(n)) << n;
  EXPECT_DOUBLE_EQ(t.get("h100-sxm").peak("bf16"), 989e12);
  EXPECT_DOUBLE_EQ(t.get("h100-sxm").peak("tf32"), 494e12);
  EXPECT_DOUBLE_EQ(t.get("h100-sxm").peak("f32"), 67e12);
  EXPECT_DOUBLE_EQ(t.get("h200").peak("bf16"), t.get("h100-sxm").peak("bf16"));
  EXPECT_DOUBLE_EQ(t.get("a100-80gb").peak("bf16"), 312e12);
  EXPECT_DOUBLE_EQ(t.get("a100-80gb").watts, 400);
  // 2 cores x 2 FMA units x 16 lanes x 2 FLOPs x 2.6 GHz
  EXPECT_DOUBLE_EQ(t.get("cpu-2core").peak("f32"), 2 * 2 * 16 * 2 * 2.6e9);
  expect_error([&] { t.get("tpu-v9"); }, {"unknown hardware 'tpu-v9'", "cpu-2core", "h100-sxm", "--hardware"});
  expect_error([&] { t.get("cpu-2core").peak("f16"); }, {"cpu-2core", "f16", "bf16, f32"});

  // The example file: a new entry and a partial override.
  HardwareTable u = load_hardware(std::string(MOX_SOURCE_DIR) + "/examples/hardware.toml");
  EXPECT_DOUBLE_EQ(u.get("rtx-4090").peak("bf16"), 165.2e12);
  EXPECT_DOUBLE_EQ(u.get("h100-sxm").price_per_hour, 2.10);
  EXPECT_DOUBLE_EQ(u.get("h100-sxm").peak("bf16"), 989e12);  // untouched keys stay
}

TEST(CostTraining, BadHardwareFiles) {
  HardwareTable t = default_hardware();
  expect_error([&] { merge_hardware(t, "[hardware.x]\nwatts = 100\n[hardware.x.peak_flops]\nf32 = 1e12\n", "hw.toml"); },
               {"hw.toml", "hardware.x.price_per_hour", "missing"});
  expect_error([&] { merge_hardware(t, "[hardware.x]\nwatts = -5\nprice_per_hour = 1\n", "hw.toml"); },
               {"hw.toml", "hardware.x.watts", ">= 0"});
  expect_error([&] { merge_hardware(t, "[hardware.x]\nwatts = 5\nprice_per_hour = 1\n", "hw.toml"); },
               {"hw.toml", "peak_flops", "missing"});
  expect_error([&] { merge_hardware(t, "[hardware.h200.peak_flops]\nfp8 = 1e15\n", "hw.toml"); },
               {"hw.toml", "fp8"});
  expect_error([&] { merge_hardware(t, "[hardware.h200]\nprice = 1\n", "hw.toml"); }, {"hw.toml", "price"});
  expect_error([&] { merge_hardware(t, "[gpus.h200]\nwatts = 1\n", "hw.toml"); }, {"hw.toml", "gpus"});
}

TEST(CostTraining, BadEstimates) {
  expect_error([] { training_work_estimate(-1, 1e9, 0, 0, 0); }, {"--params"});
  expect_error([] { training_work_estimate(1e6, 0, 0, 0, 0); }, {"--tokens"});
  TrainingCostOptions o;
  o.mfu = 1.5;
  expect_error([&] { training_cost(training_work_estimate(1e6, 1e6, 0, 0, 0), default_hardware().get("h200"), o); },
               {"--mfu"});
}
