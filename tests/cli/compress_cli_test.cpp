// mox quantize / prune / distill / compress-report through the CLI, on short Fashion-MNIST runs
// and a tiny GPT: each writes a run folder that eval / predict / generate load, the int8 model
// stays near the float accuracy at about a quarter of the file, sparse and structured pruning
// shrink what they promise, and bad input gets one line and a non-zero exit.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "run_cli.h"

namespace fs = std::filesystem;
using mox::testing::run_cli;
using mox::testing::slurp;
using nlohmann::json;

namespace {

std::string src(const std::string& rel) { return std::string(MOX_SOURCE_DIR) + "/" + rel; }

double eval_accuracy(const std::string& run) {
  auto r = run_cli({"eval", "--model", run, "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  return json::parse(r.out)["metrics"]["accuracy"].get<double>();
}

int64_t file_size(const std::string& p) { return int64_t(fs::file_size(p)); }

class CompressCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = (fs::temp_directory_path() / ("mox_compress_cli." + std::to_string(::getpid()))).string();
    fs::remove_all(base_);
    fs::create_directories(base_);
    auto a = run_cli({"train", src("examples/mlp.toml"), "--out", base_ + "/mlp", "--epochs", "1", "--steps", "80",
                      "--seed", "2", "-q"});
    ASSERT_EQ(a.code, 0) << a.err;
    auto b = run_cli({"train", src("examples/cnn.toml"), "--out", base_ + "/cnn", "--epochs", "1", "--steps", "60",
                      "--seed", "2", "-q"});
    ASSERT_EQ(b.code, 0) << b.err;
    mlp_acc_ = eval_accuracy(base_ + "/mlp");
    cnn_acc_ = eval_accuracy(base_ + "/cnn");
  }
  static void TearDownTestSuite() { fs::remove_all(base_); }
  static std::string base_;
  static double mlp_acc_, cnn_acc_;
};
std::string CompressCli::base_;
double CompressCli::mlp_acc_ = 0, CompressCli::cnn_acc_ = 0;

TEST_F(CompressCli, StaticInt8KeepsAccuracyAtAQuarterOfTheSize) {
  const std::string q = base_ + "/mlp-int8";
  auto r = run_cli({"quantize", "--model", base_ + "/mlp", "--mode", "ptq-int8", "--calib", "8", "--out", q});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : {"config.toml", "preprocess.json", "model.safetensors", "quantization.json", "summary.json"})
    EXPECT_TRUE(fs::exists(q + "/" + f)) << f;
  json layout = json::parse(slurp(q + "/quantization.json"));
  EXPECT_EQ(layout["layers"]["1"]["type"], "QuantizedLinear");
  EXPECT_EQ(layout["config"]["calibration_batches"], 8);
  EXPECT_LE(file_size(q + "/model.safetensors"), 0.27 * double(file_size(base_ + "/mlp/model.safetensors")));
  EXPECT_NEAR(eval_accuracy(q), mlp_acc_, 0.01);
  json s = json::parse(slurp(q + "/summary.json"));
  EXPECT_NEAR(s["test"]["accuracy"].get<double>(), eval_accuracy(q), 1e-9);

  // predict reads the quantised folder like any other.
  fs::create_directories(base_ + "/inputs");
  const std::string idx = base_ + "/inputs/two.idx";
  {
    std::ofstream f(idx, std::ios::binary);
    const unsigned char hdr[] = {0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28};
    f.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
    for (int i = 0; i < 2 * 28 * 28; i++) f.put(char((i * 53) % 256));
  }
  auto p = run_cli({"predict", "--model", q, idx});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(std::count(p.out.begin(), p.out.end(), '\n'), 3) << p.out;
  // bf16 makes no sense for an int8 model: one line.
  auto bad = run_cli({"eval", "--model", q, "--precision", "bf16"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("quantised"), std::string::npos) << bad.err;
}

TEST_F(CompressCli, CnnStaticDynamicAndQat) {
  for (const std::string mode : {"ptq-int8", "dynamic-int8", "qat"}) {
    SCOPED_TRACE(mode);
    const std::string q = base_ + "/cnn-" + mode;
    std::vector<std::string> args = {"quantize", "--model", base_ + "/cnn", "--mode", mode, "--calib", "4", "--out", q, "-q"};
    if (mode == "qat") args.insert(args.end(), {"--steps", "10"});
    auto r = run_cli(args);
    ASSERT_EQ(r.code, 0) << r.err;
    // QAT fine-tunes (this short run's model still improves); the others only quantise.
    if (mode == "qat") {
      EXPECT_GT(eval_accuracy(q), cnn_acc_ - 0.02);
    } else {
      EXPECT_NEAR(eval_accuracy(q), cnn_acc_, 0.02);
    }
  }
  json layout = json::parse(slurp(base_ + "/cnn-ptq-int8/quantization.json"));
  EXPECT_EQ(layout["layers"]["0"]["type"], "QuantizedConv2d");
  EXPECT_TRUE(layout["layers"]["0"]["requantize"].get<bool>());
  json qat = json::parse(slurp(base_ + "/cnn-qat/summary.json"));
  EXPECT_EQ(qat["compression"]["config"]["mode"], "qat");
}

TEST_F(CompressCli, PruneUnstructuredAndStructured) {
  const std::string sp = base_ + "/mlp-sparse";
  auto r = run_cli({"prune", "--model", base_ + "/mlp", "--sparsity", "0.8", "--finetune-epochs", "1", "--steps", "30",
                    "--out", sp, "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  json s = json::parse(slurp(sp + "/summary.json"));
  EXPECT_NEAR(s["compression"]["weight_sparsity"].get<double>(), 0.8, 0.01);
  EXPECT_LT(file_size(sp + "/model.safetensors"), 0.4 * double(file_size(base_ + "/mlp/model.safetensors")));
  EXPECT_GT(eval_accuracy(sp), mlp_acc_ - 0.05);

  const std::string st = base_ + "/cnn-structured";
  auto t = run_cli({"prune", "--model", base_ + "/cnn", "--sparsity", "0.5", "--structured", "--finetune-epochs", "1",
                    "--steps", "20", "--out", st, "-q"});
  ASSERT_EQ(t.code, 0) << t.err;
  json ts = json::parse(slurp(st + "/summary.json"));
  EXPECT_LT(ts["compression"]["parameters_after"].get<int64_t>(), ts["compression"]["parameters_before"].get<int64_t>() / 2);
  EXPECT_NE(slurp(st + "/config.toml").find("out_channels = 16"), std::string::npos) << slurp(st + "/config.toml");
  EXPECT_GT(eval_accuracy(st), 0.3);  // a working classifier after 20 steps of fine-tuning

  auto bad = run_cli({"prune", "--model", base_ + "/mlp", "--sparsity", "1.5", "--out", base_ + "/nope"});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("sparsity"), std::string::npos) << bad.err;
}

TEST_F(CompressCli, DistillAndReport) {
  const std::string st = base_ + "/mlp-student";
  auto r = run_cli({"distill", "--teacher", base_ + "/mlp", "--student", src("examples/mlp.toml"), "--set",
                    "model.layers[1].units=32", "--epochs", "1", "--steps", "30", "--out", st, "--cache-teacher", "-q"});
  ASSERT_EQ(r.code, 0) << r.err;
  json s = json::parse(slurp(st + "/summary.json"));
  EXPECT_EQ(s["distillation"]["teacher"], base_ + "/mlp");
  EXPECT_GT(s["test"]["accuracy"].get<double>(), 0.3);

  auto q = run_cli({"quantize", "--model", base_ + "/mlp", "--mode", "ptq-int8", "--calib", "4", "--out",
                    base_ + "/mlp-rep-int8", "-q"});
  ASSERT_EQ(q.code, 0) << q.err;
  const std::string out = base_ + "/report";
  auto rep = run_cli({"compress-report", base_ + "/mlp", base_ + "/mlp-rep-int8", st, "--out", out, "--reps", "20"});
  ASSERT_EQ(rep.code, 0) << rep.err;
  for (const char* f : {"compress_report.md", "compress_report.json", "compress_report.svg"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  json rows = json::parse(slurp(out + "/compress_report.json"))["rows"];
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["variant"], "f32 mlp");
  EXPECT_EQ(rows[1]["variant"], "ptq-int8");
  EXPECT_EQ(rows[2]["variant"], "distilled");
  EXPECT_NEAR(rows[1]["size_ratio"].get<double>(), 0.25, 0.03);
  EXPECT_NEAR(rows[0]["value"].get<double>(), mlp_acc_, 1e-9);
  EXPECT_GT(rows[1]["latency_b1_ms"].get<double>(), 0.0);
  EXPECT_NE(slurp(out + "/compress_report.svg").find("<svg"), std::string::npos);
  EXPECT_NE(rep.out.find("| ptq-int8 |"), std::string::npos) << rep.out;
}

TEST(CompressCliGpt, WeightOnlyQuantisedGptGeneratesAndEvaluates) {
  const std::string dir = (fs::temp_directory_path() / ("mox_compress_gpt." + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir + "/corpus");
  {
    std::ofstream f(dir + "/corpus/a.txt");
    for (int i = 0; i < 300; i++) f << "the number " << i % 13 << " follows " << (i + 12) % 13 << ".\n";
    std::ofstream(dir + "/tiny.toml") << "[model]\ntype = \"gpt\"\nn_layer = 2\nn_head = 2\nn_embd = 64\nblock_size = 32\n"
                                         "[corpus]\nsource = \"files\"\nfiles = [\"corpus\"]\ntokenizer = \"char\"\n"
                                         "[train]\nsteps = 6\nbatch_size = 8\neval_every = 6\nthreads = 1\n";
  }
  auto p = run_cli({"pretrain", dir + "/tiny.toml", "--out", dir + "/gpt"});
  ASSERT_EQ(p.code, 0) << p.err;
  for (const std::string mode : {"w8", "w4"}) {
    auto q = run_cli({"quantize", "--model", dir + "/gpt", "--mode", mode, "-q"});
    ASSERT_EQ(q.code, 0) << q.err;
    const std::string qd = dir + "/gpt-" + mode;
    auto g = run_cli({"generate", "--model", qd, "--prompt", "the ", "--max-new-tokens", "20", "--seed", "1"});
    ASSERT_EQ(g.code, 0) << g.err;
    EXPECT_GE(g.out.size(), 20u);
    auto e = run_cli({"eval", "--model", qd, "--json"});
    ASSERT_EQ(e.code, 0) << e.err;
    json m = json::parse(e.out)["metrics"];
    json s = json::parse(slurp(qd + "/summary.json"));
    EXPECT_NEAR(m["val_perplexity"].get<double>(), s["val_perplexity"].get<double>(), 1e-6);
    EXPECT_LT(s["weights_bytes"].get<int64_t>(), s["source_weights_bytes"].get<int64_t>());
  }
  // Structured: half the heads and MLP units, then a few steps of pre-training; sparse: one shot.
  auto ps = run_cli({"prune", "--model", dir + "/gpt", "--structured", "--sparsity", "0.5", "--finetune-steps", "3",
                     "--out", dir + "/gpt-heads", "-q"});
  ASSERT_EQ(ps.code, 0) << ps.err;
  json hs = json::parse(slurp(dir + "/gpt-heads/summary.json"));
  EXPECT_EQ(hs["compression"]["layer_heads"], json::array({1, 1}));
  EXPECT_LT(hs["compression"]["parameters_after"].get<int64_t>(), hs["compression"]["parameters_before"].get<int64_t>());
  auto hg = run_cli({"generate", "--model", dir + "/gpt-heads", "--prompt", "the ", "--max-new-tokens", "5"});
  EXPECT_EQ(hg.code, 0) << hg.err;
  auto pu = run_cli({"prune", "--model", dir + "/gpt", "--sparsity", "0.6", "--finetune-epochs", "0", "--out",
                     dir + "/gpt-sparse", "-q"});
  ASSERT_EQ(pu.code, 0) << pu.err;
  json us = json::parse(slurp(dir + "/gpt-sparse/summary.json"));
  EXPECT_NEAR(us["compression"]["weight_sparsity"].get<double>(), 0.6, 0.01);
  EXPECT_LT(us["model_bytes"].get<int64_t>(), us["source_model_bytes"].get<int64_t>());
  auto ue = run_cli({"eval", "--model", dir + "/gpt-sparse", "--json"});
  ASSERT_EQ(ue.code, 0) << ue.err;
  EXPECT_NEAR(json::parse(ue.out)["metrics"]["val_loss"].get<double>(), us["val_loss"].get<double>(), 1e-9);

  // A smaller GPT distilled from this one on the same corpus (GPT students take a pretrain config).
  {
    std::ofstream(dir + "/student.toml") << "[model]\ntype = \"gpt\"\nn_layer = 1\nn_head = 2\nn_embd = 32\nblock_size = 32\n"
                                            "[corpus]\nsource = \"files\"\nfiles = [\"corpus\"]\ntokenizer = \"char\"\n"
                                            "[train]\nsteps = 4\nbatch_size = 8\neval_every = 4\nthreads = 1\n";
  }
  auto d = run_cli({"distill", "--teacher", dir + "/gpt", "--student", dir + "/student.toml", "--out", dir + "/student", "-q"});
  ASSERT_EQ(d.code, 0) << d.err;
  json ds = json::parse(slurp(dir + "/student/summary.json"));
  EXPECT_EQ(ds["distillation"]["teacher"], dir + "/gpt");
  EXPECT_TRUE(std::isfinite(ds["val_loss"].get<double>()));
  // A teacher with another tokenizer is refused by name.
  std::ofstream(dir + "/byte.toml") << "[model]\ntype = \"gpt\"\nn_layer = 1\nn_head = 2\nn_embd = 32\nblock_size = 32\n"
                                       "[corpus]\nsource = \"files\"\nfiles = [\"corpus\"]\ntokenizer = \"byte\"\n"
                                       "[train]\nsteps = 2\nbatch_size = 4\neval_every = 2\nthreads = 1\n";
  auto mismatch = run_cli({"distill", "--teacher", dir + "/gpt", "--student", dir + "/byte.toml", "--out", dir + "/byte", "-q"});
  EXPECT_EQ(mismatch.code, 1);
  EXPECT_NE(mismatch.err.find("vocabulary"), std::string::npos) << mismatch.err;

  auto bad = run_cli({"quantize", "--model", dir + "/gpt", "--mode", "ptq-int8"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("w8, w4 or dynamic-int8"), std::string::npos) << bad.err;
  auto missing = run_cli({"quantize", "--model", dir + "/nothing", "--mode", "w8"});
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.err.find("nothing"), std::string::npos) << missing.err;
  fs::remove_all(dir);
}

}  // namespace
