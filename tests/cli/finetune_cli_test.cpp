// `mox finetune`: a BERT classifier of fortune categories, from a `mox pretrain` BERT run and
// from random weights, with the same split and budget. Checks the run folder, the summary
// and the error lines. (The transfer gain itself is measured
// at full size in bench/RESULTS.md; a CI-sized run is too short to show it reliably.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "run_cli.h"

namespace fs = std::filesystem;
using mox::testing::run_cli;
using mox::testing::slurp;

namespace {

const char* kFortunes = "/usr/share/games/fortunes";

struct FinetuneCli : ::testing::Test {
  std::string dir;
  void SetUp() override {
    if (!fs::exists(std::string(kFortunes) + "/computers")) GTEST_SKIP() << "fortunes not installed (scripts/setup)";
    dir = (fs::temp_directory_path() / ("mox_finetune_cli." + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir + "/bert.toml") << R"(
[model]
type = "bert"
num_hidden_layers = 1
num_attention_heads = 2
hidden_size = 32
max_position_embeddings = 48
[corpus]
source = "files"
files = [")" << kFortunes << R"(/computers"]
tokenizer = "byte"
[train]
steps = 20
batch_size = 8
eval_every = 20
eval_batches = 2
threads = 1
)";
    std::ofstream(dir + "/cls.toml") << R"(
[model]
pretrained = ")" << dir << R"(/bert"
num_hidden_layers = 1
num_attention_heads = 2
hidden_size = 32
max_position_embeddings = 48
[data]
categories = ["love", "sports"]
max_length = 48
[train]
epochs = 1
batch_size = 32
threads = 1
)";
  }
  void TearDown() override {
    if (!dir.empty()) fs::remove_all(dir);
  }
};

}  // namespace

TEST_F(FinetuneCli, FromAPretrainedEncoderAndFromScratch) {
  auto pre = run_cli({"pretrain", dir + "/bert.toml", "--out", dir + "/bert", "--quiet"});
  ASSERT_EQ(pre.code, 0) << pre.err;
  auto ft = run_cli({"finetune", dir + "/cls.toml", "--out", dir + "/ft", "--quiet"});
  ASSERT_EQ(ft.code, 0) << ft.err;
  auto scratch = run_cli({"finetune", dir + "/cls.toml", "--out", dir + "/scratch", "--set", "model.load_weights=false", "--quiet"});
  ASSERT_EQ(scratch.code, 0) << scratch.err;
  auto bytes = run_cli({"finetune", dir + "/cls.toml", "--out", dir + "/bytes", "--set", "model.pretrained=\"\"", "--quiet"});
  ASSERT_EQ(bytes.code, 0) << bytes.err;
  for (const char* f : {"model.json", "model.safetensors", "tokenizer/tokenizer.json", "history.csv", "summary.json", "report.html"})
    EXPECT_TRUE(fs::exists(dir + "/ft/" + f)) << f;
  auto s = nlohmann::json::parse(slurp(dir + "/ft/summary.json"));
  EXPECT_EQ(s["classes"], nlohmann::json({"love", "sports"}));
  EXPECT_NE(s["pretrained"].get<std::string>(), "");
  const double acc = s["test"]["accuracy"].get<double>(), base = s["baseline"]["accuracy"].get<double>();
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  EXPECT_GT(base, 0.5);  // two unequal classes: the majority holds more than half
  auto z = nlohmann::json::parse(slurp(dir + "/scratch/summary.json"));
  EXPECT_EQ(z["pretrained"].get<std::string>(), "");
  EXPECT_EQ(z["architecture_from"], s["pretrained"]);
  // load_weights = false: the same architecture and tokenizer, other weights.
  EXPECT_NE(slurp(dir + "/ft/model.safetensors"), slurp(dir + "/scratch/model.safetensors"));
  // Same data split and budget in both runs.
  EXPECT_EQ(s["test_examples"], z["test_examples"]);
  EXPECT_EQ(s["steps"], z["steps"]);
  auto mj = nlohmann::json::parse(slurp(dir + "/ft/model.json"));
  EXPECT_EQ(mj["type"], "bert-classifier");
  EXPECT_EQ(mj["num_labels"], 2);
}

TEST_F(FinetuneCli, BadInputGetsOneLine) {
  auto r = run_cli({"finetune", dir + "/cls.toml", "--out", dir + "/x", "--set", "model.pretrained=\"" + dir + "/none\""});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("model.json missing"), std::string::npos) << r.err;
  r = run_cli({"finetune", dir + "/cls.toml", "--out", dir + "/x", "--set", "model.pretrained=\"\"", "--set",
               "data.categories=[\"love\"]"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("data.categories"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = run_cli({"finetune", dir + "/cls.toml", "--out", dir + "/x", "--set", "model.pretrained=\"\"", "--set",
               "data.categories=[\"love\", \"nosuchfile\"]"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("nosuchfile"), std::string::npos) << r.err;
}
