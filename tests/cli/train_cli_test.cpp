// mox train / eval / predict / cv through the command line, on the data that ships here.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "run_cli.h"

using mox::testing::run_cli;
using mox::testing::slurp;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string src(const std::string& rel) { return std::string(MOX_SOURCE_DIR) + "/" + rel; }

std::string fresh_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("mox_train_cli_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p.string();
}

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

// Three Fashion-MNIST test images as a u8 IDX file [3, 28, 28].
std::string write_idx_images(const std::string& dir) {
  fs::create_directories(dir);
  std::string path = dir + "/three.idx";
  std::ofstream f(path, std::ios::binary);
  const unsigned char hdr[] = {0, 0, 0x08, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28};
  f.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
  for (int i = 0; i < 3 * 28 * 28; i++) f.put(char((i * 37) % 256 * (i % 28 > 6 && i % 28 < 21)));
  return path;
}

}  // namespace

// One short run shared by the tests below (data loading dominates: keep to one).
class TrainCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fresh_dir("mlp");
    auto r = run_cli({"train", src("examples/mlp.toml"), "--out", dir_, "--epochs", "2", "--steps", "40",
                      "--seed", "3"});
    ASSERT_EQ(r.code, 0) << r.err;
    log_ = r.out;
  }
  static std::string dir_, log_;
};
std::string TrainCli::dir_, TrainCli::log_;

TEST_F(TrainCli, WritesTheRunFolder) {
  for (const char* f : {"config.toml", "model.safetensors", "preprocess.json", "history.csv", "summary.json",
                        "report.html", "checkpoint/trainer.json", "checkpoint/model.safetensors"})
    EXPECT_TRUE(fs::exists(dir_ + "/" + f)) << f;
  // Not a terminal: one line per epoch.
  EXPECT_NE(log_.find("Epoch 1/2"), std::string::npos) << log_;
  EXPECT_NE(log_.find("Epoch 2/2"), std::string::npos) << log_;
  EXPECT_EQ(log_.find('\r'), std::string::npos);

  std::string hist = slurp(dir_ + "/history.csv");
  EXPECT_EQ(hist.substr(0, hist.find('\n')), "epoch,loss,accuracy,val_loss,val_accuracy,lr");
  EXPECT_EQ(count_lines(hist), 3);

  json s = json::parse(slurp(dir_ + "/summary.json"));
  EXPECT_EQ(s["epochs"], 2);
  EXPECT_EQ(s["steps"], 80);
  EXPECT_EQ(s["parameters"], 101770);
  EXPECT_EQ(s["seed"], 3);
  EXPECT_EQ(s["seconds_per_epoch"].size(), 2u);
  EXPECT_GT(s["samples_per_second"].get<double>(), 0);
  EXPECT_GT(s["test"]["accuracy"].get<double>(), 0.5);  // 80 steps of Adam already learn a lot
  EXPECT_TRUE(s["test"].contains("loss"));
  EXPECT_TRUE(s["test"].contains("macro_f1"));
  EXPECT_TRUE(s["train"].contains("accuracy"));
  EXPECT_EQ(s["classes"][0], "T-shirt/top");
  // The effective config records the overrides.
  std::string cfg = slurp(dir_ + "/config.toml");
  EXPECT_NE(cfg.find("steps_per_epoch = 40"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("seed = 3"), std::string::npos) << cfg;
  std::string html = slurp(dir_ + "/report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
}

TEST_F(TrainCli, EvalReproducesTheSummary) {
  auto r = run_cli({"eval", "--model", dir_, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json e = json::parse(r.out);
  json s = json::parse(slurp(dir_ + "/summary.json"));
  EXPECT_EQ(e["split"], "test");
  EXPECT_EQ(e["examples"], 10000);
  EXPECT_DOUBLE_EQ(e["metrics"]["accuracy"].get<double>(), s["test"]["accuracy"].get<double>());
  // bfloat16 weights and matmuls: the same predictions up to rounding.
  auto bf = run_cli({"eval", "--model", dir_, "--json", "--precision", "bf16"});
  ASSERT_EQ(bf.code, 0) << bf.err;
  json eb = json::parse(bf.out);
  EXPECT_EQ(eb["precision"], "bf16");
  EXPECT_NEAR(eb["metrics"]["accuracy"].get<double>(), e["metrics"]["accuracy"].get<double>(), 0.005);
  EXPECT_NE(eb["metrics"]["loss"].get<double>(), e["metrics"]["loss"].get<double>());  // it did run in bf16
  auto plain = run_cli({"eval", "--model", dir_});
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_NE(plain.out.find("accuracy"), std::string::npos);
  auto bad = run_cli({"eval", "--model", dir_, "--split", "val"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("no val split"), std::string::npos) << bad.err;
}

TEST_F(TrainCli, PredictPrintsCsvAndJson) {
  std::string idx = write_idx_images(dir_ + "_inputs");
  auto r = run_cli({"predict", "--model", dir_, idx});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(count_lines(r.out), 4) << r.out;  // header + 3 images
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')).substr(0, 30), "input,class,index,probability,");
  auto j = run_cli({"predict", "--model", dir_, idx, "--format", "json"});
  ASSERT_EQ(j.code, 0) << j.err;
  json a = json::parse(j.out);
  ASSERT_EQ(a.size(), 3u);
  double total = 0;
  for (auto& [k, v] : a[0]["probabilities"].items()) total += v.get<double>();
  EXPECT_NEAR(total, 1.0, 1e-4);
  EXPECT_EQ(a[0]["probabilities"].size(), 10u);
  // Inputs of the wrong shape are named.
  std::ofstream(dir_ + "_inputs/rows.csv") << "a,b\n1,2\n";
  auto bad = run_cli({"predict", "--model", dir_, dir_ + "_inputs/rows.csv"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("rows.csv"), std::string::npos) << bad.err;
}

TEST_F(TrainCli, RefusesToOverwriteARun) {
  auto r = run_cli({"train", src("examples/mlp.toml"), "--out", dir_, "--epochs", "1", "--steps", "1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("already holds a run"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
}

TEST_F(TrainCli, InitStartsFromGivenWeights) {
  // One SGD step with a negligible learning rate from the run's weights: the same model.
  std::string d = fresh_dir("init");
  auto r = run_cli({"train", src("examples/mlp.toml"), "--out", d, "--init", dir_ + "/model.safetensors", "--epochs",
                    "1", "--steps", "1", "--set", "optimizer={type = \"sgd\", lr = 1e-12}", "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  json a = json::parse(slurp(dir_ + "/summary.json")), b = json::parse(slurp(d + "/summary.json"));
  EXPECT_NEAR(a["test"]["accuracy"].get<double>(), b["test"]["accuracy"].get<double>(), 1e-3);
  EXPECT_NEAR(a["test"]["loss"].get<double>(), b["test"]["loss"].get<double>(), 1e-4);
  // Weights of another model are refused with the key and both shapes.
  auto bad = run_cli({"train", src("examples/cnn.toml"), "--out", d + "_cnn", "--init", dir_ + "/model.safetensors",
                      "--epochs", "1", "--steps", "1"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("model.safetensors"), std::string::npos) << bad.err;
}

TEST(TrainCliResume, ContinuesExactly) {
  // Two epochs straight vs one epoch, then --resume to two: the same bytes.
  std::string a = fresh_dir("straight"), b = fresh_dir("resumed");
  std::vector<std::string> common = {"--steps", "25", "--seed", "5", "-q"};
  auto args = [&](std::vector<std::string> v) {
    v.insert(v.end(), common.begin(), common.end());
    return v;
  };
  auto ra = run_cli(args({"train", src("examples/mlp.toml"), "--out", a, "--epochs", "2"}));
  ASSERT_EQ(ra.code, 0) << ra.err;
  auto rb = run_cli(args({"train", src("examples/mlp.toml"), "--out", b, "--epochs", "1"}));
  ASSERT_EQ(rb.code, 0) << rb.err;
  auto rc = run_cli({"train", "--resume", b, "--epochs", "2", "-q"});
  ASSERT_EQ(rc.code, 0) << rc.err;
  EXPECT_EQ(slurp(a + "/model.safetensors"), slurp(b + "/model.safetensors"));
  EXPECT_EQ(slurp(a + "/history.csv"), slurp(b + "/history.csv"));
  auto bad = run_cli({"train", "--resume", a + "_nothing"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("not a run folder"), std::string::npos) << bad.err;
}

TEST(TrainCliErrors, NameTheKey) {
  std::string d = fresh_dir("errors");
  auto typo = run_cli({"train", src("examples/mlp.toml"), "--out", d, "--set", "train.epoch=3"});
  EXPECT_EQ(typo.code, 1);
  EXPECT_EQ(count_lines(typo.err), 1) << typo.err;
  EXPECT_NE(typo.err.find("train.epoch"), std::string::npos) << typo.err;
  auto width = run_cli({"train", src("examples/mlp.toml"), "--out", d, "--set", "model.layers[3].units=7"});
  EXPECT_EQ(width.code, 1);
  EXPECT_NE(width.err.find("7 outputs but the data has 10 classes"), std::string::npos) << width.err;
  auto opt = run_cli({"train", src("examples/mlp.toml"), "--out", d, "--set", "optimizer.type=adamax"});
  EXPECT_EQ(opt.code, 1);
  EXPECT_NE(opt.err.find("optimizer.type"), std::string::npos) << opt.err;
  EXPECT_NE(opt.err.find("adamw"), std::string::npos) << opt.err;
  auto missing = run_cli({"train", d + "/nope.toml"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("nope.toml"), std::string::npos) << missing.err;
  auto both = run_cli({"train"});
  EXPECT_EQ(both.code, 1);
  EXPECT_NE(both.err.find("--resume"), std::string::npos) << both.err;
}

TEST(TrainCliText, BinaryFortunesAndPredictFromLines) {
  std::string d = fresh_dir("rnn");
  auto r = run_cli({"train", src("examples/rnn.toml"), "--out", d, "--epochs", "1", "--steps", "10", "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(d + "/vocab.txt"));
  json s = json::parse(slurp(d + "/summary.json"));
  EXPECT_EQ(s["classes"], json({"computers", "politics"}));
  EXPECT_TRUE(s["test"].contains("auc"));
  EXPECT_EQ(s["baseline"]["majority_class"], "computers");  // 1050 computers vs 703 politics fortunes
  EXPECT_NEAR(s["baseline"]["accuracy"].get<double>(), 1050.0 / 1753, 0.01);
  std::ofstream(d + "/lines.txt") << "The kernel panicked and the compiler crashed.\n\nVote for the senator.\n";
  auto p = run_cli({"predict", "--model", d, d + "/lines.txt", "--format", "json"});
  ASSERT_EQ(p.code, 0) << p.err;
  json a = json::parse(p.out);
  ASSERT_EQ(a.size(), 2u);  // blank lines are skipped
  EXPECT_EQ(a[0]["probabilities"].size(), 2u);
}

TEST(TrainCliCv, RegressionFolds) {
  std::string d = fresh_dir("cv");
  auto r = run_cli({"cv", src("examples/regression.toml"), "--folds", "3", "--epochs", "2", "-q", "--out", d});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("mean"), std::string::npos) << r.out;
  json j = json::parse(slurp(d + "/cv.json"));
  EXPECT_EQ(j["per_fold"].size(), 3u);
  EXPECT_TRUE(j["mean"].contains("r2"));
  EXPECT_TRUE(j["std"].contains("mse"));
}

// Seed case 1 in full: 5 epochs of the Keras MLP. Measured here: 0.8702 / 0.8721 / 0.8693 for
// seeds 0-2 against PyTorch's 0.8700 / 0.8704 / 0.8680 on the same model and init
// (bench/SEED_CASES.md). CI machines differ in CPU (OpenBLAS picks other kernels, so the
// rounding and the exact figure move by a few 0.1%): the bound sits below that seed-to-seed
// range, far above anything a broken trainer reaches.
TEST(SeedCases, MlpTrainsToPyTorchAccuracy) {
  std::string d = fresh_dir("seed_mlp");
  auto r = run_cli({"train", src("examples/mlp.toml"), "--out", d, "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  json s = json::parse(slurp(d + "/summary.json"));
  EXPECT_EQ(s["epochs"], 5);
  EXPECT_GE(s["test"]["accuracy"].get<double>(), 0.865) << s.dump(1);
}
