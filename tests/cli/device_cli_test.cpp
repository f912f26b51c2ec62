// --device and --precision on the commands that compute: every one offers them, a device that
// is not there (cuda in a CPU-only build, or on a machine without a GPU) and unknown names
// are one-line errors with exit code 1, and a bf16 run trains.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mox/backend/backend.h"
#include "run_cli.h"

namespace fs = std::filesystem;
using mox::testing::run_cli;

namespace {

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

TEST(DeviceCli, EveryComputingCommandTakesDevice) {
  for (const char* cmd : {"train", "cv", "eval", "predict", "pretrain", "finetune", "generate"}) {
    auto r = run_cli({cmd, "--help"});
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.out.find("--device"), std::string::npos) << cmd;
  }
  for (const char* cmd : {"train", "cv", "pretrain", "finetune", "generate"})
    EXPECT_NE(run_cli({cmd, "--help"}).out.find("--precision"), std::string::npos) << cmd;
}

TEST(DeviceCli, VersionNamesTheBuildAndTheDevices) {
  auto r = run_cli({"--version"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("mox ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("CUDA backend: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu: "), std::string::npos) << r.out;
  // a CUDA build names the GPU, or says why there is none
  const bool cuda_built = r.out.find("CUDA backend: built") != std::string::npos;
  EXPECT_EQ(cuda_built, r.out.find("\ncuda") != std::string::npos) << r.out;
}

TEST(DeviceCli, MissingOrUnknownDevicesAreOneLineErrors) {
  const std::string src = MOX_SOURCE_DIR;
  const std::string model = src + "/tests/fixtures/gpt2";
  auto bad = run_cli({"generate", "--model", model, "--prompt", "hi", "--device", "tpu", "--max-new-tokens", "1"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_TRUE(one_line(bad.err)) << bad.err;
  EXPECT_NE(bad.err.find("unknown device 'tpu'"), std::string::npos) << bad.err;
  auto prec = run_cli({"generate", "--model", model, "--prompt", "hi", "--precision", "f8"});
  EXPECT_NE(prec.code, 0);
  if (mox::device_available(mox::Device{mox::DeviceType::CUDA, 0})) GTEST_SKIP() << "a GPU is visible";
  auto gen = run_cli({"generate", "--model", model, "--prompt", "hi", "--device", "cuda", "--max-new-tokens", "1"});
  EXPECT_EQ(gen.code, 1);
  EXPECT_TRUE(one_line(gen.err)) << gen.err;
  EXPECT_EQ(gen.err.rfind("mox: ", 0), 0u) << gen.err;
  EXPECT_NE(gen.err.find("device: cuda"), std::string::npos) << gen.err;
  const std::string dir = (fs::temp_directory_path() / ("mox_device_cli." + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  auto tr = run_cli({"train", src + "/examples/mlp.toml", "--device", "cuda", "--steps", "1", "--out", dir + "/run", "--quiet"});
  EXPECT_EQ(tr.code, 1);
  EXPECT_NE(tr.err.find("device: cuda"), std::string::npos) << tr.err;
  fs::remove_all(dir);
}

TEST(DeviceCli, PretrainAndGenerateInBf16) {
  const std::string dir = (fs::temp_directory_path() / ("mox_device_cli_bf16." + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir + "/corpus");
  {
    std::ofstream f(dir + "/corpus/a.txt");
    for (int i = 0; i < 200; i++) f << "line " << i % 11 << " of the corpus.\n";
    std::ofstream(dir + "/tiny.toml") << "[model]\ntype = \"gpt\"\nn_layer = 1\nn_head = 2\nn_embd = 32\nblock_size = 16\n"
                                      << "[corpus]\nsource = \"files\"\nfiles = [\"corpus\"]\ntokenizer = \"char\"\n"
                                      << "[train]\nsteps = 4\nbatch_size = 4\neval_every = 2\neval_batches = 1\nthreads = 1\n";
  }
  auto r = run_cli({"pretrain", dir + "/tiny.toml", "--out", dir + "/run", "--precision", "bf16", "--device", "cpu"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("bf16 autocast"), std::string::npos) << r.out;
  auto sj = nlohmann::json::parse(mox::testing::slurp(dir + "/run/summary.json"));
  EXPECT_EQ(sj["precision"], "bf16");
  EXPECT_EQ(sj["device"], "cpu");
  auto g = run_cli({"generate", "--model", dir + "/run", "--prompt", "line", "--precision", "bf16", "--max-new-tokens", "4",
                    "--print-ids", "--seed", "1"});
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_FALSE(g.out.empty());
  fs::remove_all(dir);
}

}  // namespace
