// mox export: the GPT-2 fixture (tests/fixtures/gpt2, Hugging Face layout) to both layouts and
// back, its tokenizer carried along, a `mox train`-style run folder exported with its
// architecture, and one-line errors for formats and layouts that do not exist.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mox/io/config.h"
#include "mox/io/safetensors.h"
#include "mox/mox.h"
#include "mox/nn/models/build_model.h"
#include "mox/nn/models/gpt_io.h"
#include "mox/nn/serialize.h"
#include "run_cli.h"

using mox::testing::CliResult;
using mox::testing::run_cli;
using mox::testing::slurp;
namespace fs = std::filesystem;

namespace {

const std::string kFixture = std::string(MOX_SOURCE_DIR) + "/tests/fixtures/gpt2";

std::string fresh_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("mox_export_cli_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p.string();
}

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

void expect_same_parameters(const mox::nn::Module& a, const mox::nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.keys(), pb.keys());
  for (const auto& [name, t] : pa) EXPECT_EQ(t.to_vector<float>(), pb.find(name)->to_vector<float>()) << name;
}

CliResult export_model(const std::string& model, const std::string& out, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"export", "--model", model, "--format", "safetensors", "--out", out};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_cli(args);
}

}  // namespace

TEST(ExportCli, GptToBothLayoutsAndBack) {
  const std::string dir = fresh_dir("gpt");
  auto original = mox::nn::load_gpt(kFixture);

  // HF -> HF (the default layout for GPT models).
  CliResult r = export_model(kFixture, dir + "/hf");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Hugging Face layout"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir + "/hf/config.json"));
  EXPECT_FALSE(fs::exists(dir + "/hf/model.json"));
  EXPECT_EQ(mox::io::load_safetensors(dir + "/hf/model.safetensors").at("transformer.h.1.mlp.c_proj.weight").shape(),
            (mox::Shape{128, 32}));  // Conv1D [in, out]
  expect_same_parameters(*original, *mox::nn::load_gpt(dir + "/hf"));

  // HF -> mox.
  r = export_model(kFixture, dir + "/mox", {"--layout", "mox"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("mox layout"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir + "/mox/model.json"));
  EXPECT_EQ(mox::io::load_safetensors(dir + "/mox/model.safetensors").at("transformer.h.1.mlp.c_proj.weight").shape(),
            (mox::Shape{32, 128}));  // nn.Linear [out, in]
  expect_same_parameters(*original, *mox::nn::load_gpt(dir + "/mox"));

  // mox -> HF again: the same bytes as the first HF export.
  r = export_model(dir + "/mox", dir + "/hf2", {"--layout", "hf"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(dir + "/hf2/model.safetensors"), slurp(dir + "/hf/model.safetensors"));
  EXPECT_EQ(slurp(dir + "/hf2/config.json"), slurp(dir + "/hf/config.json"));
  fs::remove_all(dir);
}

TEST(ExportCli, CarriesTheTokenizer) {
  const std::string dir = fresh_dir("tok");
  fs::create_directories(dir + "/src");
  fs::copy_file(kFixture + "/config.json", dir + "/src/config.json");
  fs::copy_file(kFixture + "/model.safetensors", dir + "/src/model.safetensors");
  std::string corpus;
  for (int i = 0; i < 40; i++) corpus += "the cat sat on the mat, the dog sat on the log.\n";
  std::ofstream(dir + "/corpus.txt") << corpus;
  CliResult r = run_cli({"tokenizer", "train", dir + "/corpus.txt", "--vocab-size", "270", "--out", dir + "/src/tokenizer"});
  ASSERT_EQ(r.code, 0) << r.err;

  r = export_model(dir + "/src", dir + "/hf");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("bpe tokenizer"), std::string::npos) << r.out;
  // GPT2Tokenizer's file names at the top, mox's folder as well.
  EXPECT_EQ(slurp(dir + "/hf/vocab.json"), slurp(dir + "/src/tokenizer/encoder.json"));
  EXPECT_EQ(slurp(dir + "/hf/merges.txt"), slurp(dir + "/src/tokenizer/vocab.bpe"));
  EXPECT_TRUE(fs::exists(dir + "/hf/tokenizer/encoder.json"));

  // An HF folder's vocab.json + merges.txt become tokenizer/ in the mox layout; the ids agree.
  r = export_model(dir + "/hf", dir + "/mox", {"--layout", "mox"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string text = "the cat sat on the log.\n";
  CliResult a = run_cli({"tokenizer", "encode", "--tokenizer", dir + "/src/tokenizer"}, &text);
  CliResult b = run_cli({"tokenizer", "encode", "--tokenizer", dir + "/mox/tokenizer"}, &text);
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  fs::remove_all(dir);
}

// A run folder as `mox train` leaves it (config.toml + model.safetensors): the weights as they
// are and model.json describing the layers.
TEST(ExportCli, RunFolderWithArchitecture) {
  const std::string dir = fresh_dir("run");
  fs::create_directories(dir + "/run");
  fs::copy_file(std::string(MOX_SOURCE_DIR) + "/examples/regression.toml", dir + "/run/config.toml");
  mox::manual_seed(4);
  mox::io::Config config = mox::io::load_config(dir + "/run/config.toml");
  auto model = mox::nn::build_model(config.model);
  mox::nn::save_state_dict(*model, dir + "/run/model.safetensors");

  CliResult r = export_model(dir + "/run", dir + "/out");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(dir + "/out/model.safetensors"), slurp(dir + "/run/model.safetensors"));
  EXPECT_EQ(slurp(dir + "/out/config.toml"), slurp(dir + "/run/config.toml"));
  nlohmann::json j = nlohmann::json::parse(slurp(dir + "/out/model.json"));
  EXPECT_EQ(j["type"], "sequential");
  EXPECT_EQ(j["name"], "regression");
  EXPECT_EQ(j["input_shape"], nlohmann::json({-1, 3}));
  EXPECT_EQ(j["total_params"], 3 * 32 + 32 + 32 * 32 + 32 + 32 + 1);
  EXPECT_EQ(j["parameters"]["4.weight"]["shape"], nlohmann::json({1, 32}));
  ASSERT_EQ(j["layers"].size(), 5u);  // Linear, ReLU, Linear, ReLU, Linear
  EXPECT_EQ(j["layers"][1]["type"], "ReLU");
  EXPECT_EQ(j["layers"][4]["output_shape"], nlohmann::json({-1, 1}));

  r = export_model(dir + "/run", dir + "/out2", {"--layout", "hf"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--layout hf"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  fs::remove_all(dir);
}

TEST(ExportCli, ErrorsAreOneLine) {
  const std::string dir = fresh_dir("err");
  CliResult r = run_cli({"export", "--model", kFixture, "--format", "tflite", "--out", dir});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--format tflite: unknown format"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;

  r = run_cli({"export", "--model", kFixture, "--format", "onnx", "--out", dir, "--layout", "mox"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--layout mox: layouts belong to --format safetensors"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;

  r = run_cli({"export", "--model", kFixture, "--format", "safetensors", "--out", dir, "--layout", "keras"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--layout keras: unknown layout"), std::string::npos) << r.err;

  fs::create_directories(dir + "/empty");
  r = export_model(dir + "/empty", dir + "/out");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("not a model folder"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/out"));

  r = run_cli({"export", "--model", kFixture});  // --out missing: a usage error
  EXPECT_EQ(r.code, 2);
  fs::remove_all(dir);
}
