// mox export --format onnx through the CLI: a `mox train`-style run folder (config.toml +
// model.safetensors + preprocess.json) to a .onnx file and to a folder, a GPT folder (both
// layouts), each checked by check_onnx.py against the model mox loads from the same folder;
// quantised runs, layers without a mapping and --layout are refused with one line.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "cli/run_cli.h"
#include "export/onnx_check.h"
#include "mox/io/config.h"
#include "mox/mox.h"
#include "mox/nn/models/build_model.h"
#include "mox/nn/models/gpt_io.h"
#include "mox/nn/serialize.h"

namespace mox {
namespace {

namespace fs = std::filesystem;
using testing::CliResult;
using testing::OnnxCase;
using testing::run_cli;

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

const char* kRunConfig = R"([model]
name = "small_cnn"
input_shape = [1, 8, 8]
[[model.layers]]
type = "Conv2d"
out_channels = 4
kernel_size = 3
activation = "relu"
[[model.layers]]
type = "MaxPool2d"
kernel_size = 2
[[model.layers]]
type = "Flatten"
[[model.layers]]
type = "Dense"
units = 5
activation = "softmax"
)";

// A run folder as `mox train` leaves it (the parts export reads), with random weights.
std::shared_ptr<nn::Sequential> make_run(const std::string& dir, const std::string& config) {
  fs::create_directories(dir);
  std::ofstream(dir + "/config.toml") << config;
  std::ofstream(dir + "/preprocess.json") << R"({"task": "classification", "scale": 0.00392156862745098})";
  io::Config c = io::parse_config(config, dir + "/config.toml");
  auto m = nn::build_model(c.model);
  nn::save_state_dict(*m, dir + "/model.safetensors");
  m->eval();
  return m;
}

OnnxCase run_case(nn::Module& m, const Tensor& x, const std::string& in, const std::string& out) {
  NoGradGuard no_grad;
  return {{{in, x}}, {{out, m.forward(x)}}};
}

TEST(OnnxExportCli, RunFolderToFileAndToFolder) {
  MOX_REQUIRE_ONNX_CHECKER();
  const std::string dir = testing::onnx_test_dir("cli_run");
  auto model = make_run(dir + "/run", kRunConfig);
  Generator gen(5);
  const std::vector<OnnxCase> cases = {run_case(*model, rand({3, 1, 8, 8}, &gen), "input", "output"),
                                       run_case(*model, rand({1, 1, 8, 8}, &gen), "input", "output")};

  CliResult r = run_cli({"export", "--model", dir + "/run", "--format", "onnx", "--out", dir + "/cnn.onnx"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("exported small_cnn (" + std::to_string(4 * 9 + 4 + 36 * 5 + 5) + " parameters) to " + dir +
                       "/cnn.onnx: ONNX opset 17, 6 nodes (Conv Relu MaxPool Flatten Gemm Softmax)"),
            std::string::npos)
      << r.out;
  testing::CheckResult c = testing::check_onnx(dir + "/cnn.onnx", cases, dir);
  ASSERT_EQ(c.code, 0) << c.text;
  EXPECT_EQ(c.report["outputs"]["output"], nlohmann::json::array({"batch", 5}));
  EXPECT_EQ(nlohmann::json::parse(c.report["metadata"]["mox.preprocess"].get<std::string>())["task"], "classification");

  // A folder: model.onnx with preprocess.json beside it.
  r = run_cli({"export", "--model", dir + "/run", "--format", "onnx", "--out", dir + "/out"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/out/preprocess.json"));
  EXPECT_EQ(testing::slurp(dir + "/out/model.onnx"), testing::slurp(dir + "/cnn.onnx"));  // deterministic
  fs::remove_all(dir);
}

TEST(OnnxExportCli, GptFolderToFolderAndFile) {
  MOX_REQUIRE_ONNX_CHECKER();
  const std::string dir = testing::onnx_test_dir("cli_gpt");
  // The Hugging Face fixture (GPT-2's layout: tied head, GELU-tanh, block_size 16, vocab 50).
  const std::string fixture = std::string(MOX_SOURCE_DIR) + "/tests/fixtures/gpt2";
  auto g = nn::load_gpt(fixture);
  g->eval();
  Generator gen(6);
  const std::vector<OnnxCase> cases = {run_case(*g, randint(0, 50, {2, 16}, &gen), "input_ids", "logits"),
                                       run_case(*g, randint(0, 50, {1, 3}, &gen), "input_ids", "logits")};
  CliResult r = run_cli({"export", "--model", fixture, "--format", "onnx", "--out", dir + "/gpt"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("exported gpt ("), std::string::npos) << r.out;
  testing::CheckResult c = testing::check_onnx(dir + "/gpt/model.onnx", cases, dir);
  ASSERT_EQ(c.code, 0) << c.text;
  EXPECT_EQ(c.report["outputs"]["logits"], nlohmann::json::array({"batch", "sequence", 50}));
  EXPECT_EQ(nlohmann::json::parse(c.report["metadata"]["mox.model"].get<std::string>())["block_size"], 16);

  // The same model in mox's layout, exported to a file: the same graph.
  nn::save_gpt(*g, dir + "/moxgpt");
  r = run_cli({"export", "--model", dir + "/moxgpt", "--format", "onnx", "--out", dir + "/g2.onnx"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(testing::slurp(dir + "/g2.onnx"), testing::slurp(dir + "/gpt/model.onnx"));
  fs::remove_all(dir);
}

TEST(OnnxExportCli, RefusalsAreOneLine) {
  const std::string dir = testing::onnx_test_dir("cli_err");
  make_run(dir + "/run", kRunConfig);

  // A quantised run (mox quantize writes quantization.json).
  fs::copy(dir + "/run", dir + "/q");
  std::ofstream(dir + "/q/quantization.json") << "{}";
  CliResult r = run_cli({"export", "--model", dir + "/q", "--format", "onnx", "--out", dir + "/q.onnx"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("ONNX export of quantised models is not supported; export the float run"), std::string::npos)
      << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/q.onnx"));

  // A layer ONNX export has no mapping for.
  make_run(dir + "/rnn", R"([model]
input_shape = [5, 3]
[[model.layers]]
type = "GRU"
hidden_size = 4
[[model.layers]]
type = "Linear"
out_features = 2
)");
  r = run_cli({"export", "--model", dir + "/rnn", "--format", "onnx", "--out", dir + "/rnn.onnx"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("layer 0 (GRU): ONNX export does not support GRU layers"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/rnn.onnx"));

  r = run_cli({"export", "--model", dir + "/run", "--format", "onnx", "--out", dir + "/x.onnx", "--layout", "hf"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--layout hf: layouts belong to --format safetensors"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;

  fs::create_directories(dir + "/empty");
  r = run_cli({"export", "--model", dir + "/empty", "--format", "onnx", "--out", dir + "/e.onnx"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("not a model folder"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mox
