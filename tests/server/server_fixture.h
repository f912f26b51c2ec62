#pragma once
// Run folders for the server tests, made with the CLI in seconds: a tiny char-level GPT
// (block 48) trained on "User: ... Assistant: ..." lines, and the example MLP trained a
// few steps on Fashion-MNIST, and the text classifier of examples/gap.toml (fortune topics).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "../cli/run_cli.h"

namespace mox::testing {

inline void make_server_runs(const std::string& dir) {
  std::filesystem::create_directories(dir + "/corpus");
  {
    std::ofstream f(dir + "/corpus/a.txt");
    for (int i = 0; i < 300; i++) f << "User: what is " << i % 13 << "?\nAssistant: it follows " << (i + 12) % 13 << ".\n";
  }
  std::ofstream(dir + "/tiny.toml") << "[model]\ntype = \"gpt\"\nn_layer = 2\nn_head = 2\nn_embd = 32\nblock_size = 48\n"
                                       "[corpus]\nsource = \"files\"\nfiles = [\"corpus\"]\ntokenizer = \"char\"\n"
                                       "[train]\nsteps = 30\nbatch_size = 8\neval_every = 30\nthreads = 1\n";
  auto p = run_cli({"pretrain", dir + "/tiny.toml", "--out", dir + "/gpt", "-q"});
  ASSERT_EQ(p.code, 0) << p.err;
  auto t = run_cli({"train", std::string(MOX_SOURCE_DIR) + "/examples/mlp.toml", "--out", dir + "/mlp", "--epochs", "1",
                    "--steps", "40", "-q"});
  ASSERT_EQ(t.code, 0) << t.err;
  // A text classifier (fortune topics) for /v1/classify on text.
  auto g = run_cli({"train", std::string(MOX_SOURCE_DIR) + "/examples/gap.toml", "--out", dir + "/gap", "--epochs", "2",
                    "--steps", "20", "-q"});
  ASSERT_EQ(g.code, 0) << g.err;
}

}  // namespace mox::testing
