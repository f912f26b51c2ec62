// mox generate from the shell: a tiny mox LM run folder written here (model.json,
// model.safetensors, a byte tokenizer), ids equal to the library's, seeds, streaming text,
// stop strings, the cache switch, --bench, and one-line errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mox/data/text/bpe.h"
#include "mox/data/text/char_tokenizer.h"
#include "mox/nn/models/gpt_io.h"
#include "mox/mox.h"
#include "mox/nn/models/generate.h"
#include "mox/nn/models/gpt.h"
#include "mox/nn/serialize.h"
#include "run_cli.h"

namespace fs = std::filesystem;
using mox::testing::CliResult;
using mox::testing::lines_of;
using mox::testing::run_cli;

namespace {

struct RunFolder {
  std::string dir;
  std::shared_ptr<mox::nn::GPT> model;
  mox::data::CharTokenizer tok = mox::data::CharTokenizer::bytes();
};

// A 2-layer byte-level GPT with block_size 32, weights scaled up so that greedy
// continuations vary, saved as a mox LM run folder.
const RunFolder& run_folder() {
  static RunFolder* f = [] {
    auto* r = new RunFolder;
    // one folder per test process (ctest runs the tests of this file in parallel processes)
    r->dir = (fs::path(::testing::TempDir()) / ("mox_generate_cli_run." + std::to_string(::getpid()))).string();
    static struct RemoveAtExit {
      std::string dir;
      ~RemoveAtExit() {
        std::error_code ec;
        fs::remove_all(dir, ec);
      }
    } remove_at_exit{r->dir};
    fs::remove_all(r->dir);
    fs::create_directories(r->dir);
    mox::nn::GPTConfig c;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_embd = 16;
    c.block_size = 32;
    c.vocab_size = 256;
    mox::manual_seed(3);
    r->model = std::make_shared<mox::nn::GPT>(c);
    {
      mox::NoGradGuard ng;
      for (auto& [name, p] : r->model->named_parameters())
        if (name.find(".ln_") == std::string::npos) p.mul_(25.0);
    }
    r->model->eval();
    std::ofstream(r->dir + "/model.json") << mox::nn::gpt_config_to_json(c).dump(2) << "\n";
    mox::nn::save_state_dict(*r->model, r->dir + "/model.safetensors");
    r->tok.save(r->dir + "/tokenizer");
    return r;
  }();
  return *f;
}

std::vector<int32_t> bytes_of(const std::string& s) { return run_folder().tok.encode(s); }

std::vector<std::vector<int32_t>> library(const std::vector<std::string>& prompts, const mox::nn::GenerateOptions& o) {
  std::vector<std::vector<int32_t>> ids;
  for (const auto& p : prompts) ids.push_back(bytes_of(p));
  const auto& tok = run_folder().tok;
  return mox::nn::generate(*run_folder().model, ids, o,
                           [&tok](const std::vector<int32_t>& v) { return tok.decode(v); });
}

std::string ids_line(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); i++) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

std::vector<std::string> base_args() { return {"generate", "--model", run_folder().dir}; }

CliResult gen(std::vector<std::string> extra) {
  std::vector<std::string> args = base_args();
  args.insert(args.end(), extra.begin(), extra.end());
  return run_cli(args);
}

void expect_one_line_error(const CliResult& r, const std::vector<std::string>& needles) {
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("mox: error: ", 0), 0u) << r.err;
  for (const auto& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << "'" << r.err << "' lacks '" << n << "'";
}

}  // namespace

TEST(GenerateCli, GreedyIdsEqualTheLibrary) {
  mox::nn::GenerateOptions o;
  o.max_new_tokens = 40;  // 5 + 40 > 32: the window is cut once
  o.sampling.temperature = 0;
  const auto want = library({"Hello"}, o);
  CliResult r = gen({"--prompt", "Hello", "--max-new-tokens", "40", "--temperature", "0", "--print-ids"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, ids_line(want[0]) + "\n");
  // The same ids without the cache.
  CliResult nc = gen({"--prompt", "Hello", "--max-new-tokens", "40", "--temperature", "0", "--print-ids", "--no-cache"});
  ASSERT_EQ(nc.code, 0) << nc.err;
  EXPECT_EQ(nc.out, r.out);
  // Streamed text: the prompt, then the completion's bytes, then a newline.
  CliResult text = gen({"--prompt", "Hello", "--max-new-tokens", "40", "--temperature", "0"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.out, "Hello" + run_folder().tok.decode(want[0]) + "\n");
}

TEST(GenerateCli, BatchOfPromptsEqualsTheLibrary) {
  mox::nn::GenerateOptions o;
  o.max_new_tokens = 12;
  o.sampling.temperature = 0;
  const auto want = library({"Hi", "Hello there"}, o);
  CliResult r = gen({"--prompt", "Hi", "--prompt", "Hello there", "--max-new-tokens", "12", "--temperature", "0",
                     "--print-ids"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, ids_line(want[0]) + "\n" + ids_line(want[1]) + "\n");
  CliResult text = gen({"--prompt", "Hi", "--prompt", "Hello there", "--max-new-tokens", "12", "--temperature", "0"});
  ASSERT_EQ(text.code, 0) << text.err;
  const auto& tok = run_folder().tok;
  EXPECT_EQ(text.out, "=== completion 1 ===\nHi" + tok.decode(want[0]) + "\n=== completion 2 ===\nHello there" +
                          tok.decode(want[1]) + "\n");
}

TEST(GenerateCli, SeedDeterminism) {
  std::vector<std::string> args = {"--prompt", "abc", "--max-new-tokens", "30", "--temperature", "1.2",
                                   "--top-k", "60", "--top-p", "0.95", "--repetition-penalty", "1.3",
                                   "--print-ids"};
  auto with_seed = [&](const std::string& seed) {
    std::vector<std::string> a = args;
    a.insert(a.end(), {"--seed", seed});
    CliResult r = gen(a);
    EXPECT_EQ(r.code, 0) << r.err;
    return r.out;
  };
  const std::string a = with_seed("7");
  EXPECT_EQ(with_seed("7"), a);
  EXPECT_NE(with_seed("8"), a);
  mox::nn::GenerateOptions o;
  o.max_new_tokens = 30;
  o.sampling.temperature = 1.2;
  o.sampling.top_k = 60;
  o.sampling.top_p = 0.95;
  o.sampling.repetition_penalty = 1.3;
  o.sampling.seed = 7;
  EXPECT_EQ(a, ids_line(library({"abc"}, o)[0]) + "\n");
}

TEST(GenerateCli, StopStringAndBench) {
  mox::nn::GenerateOptions o;
  o.max_new_tokens = 20;
  o.sampling.temperature = 0;
  const std::vector<int32_t> full = library({"The"}, o)[0];
  const std::string text = run_folder().tok.decode(full);
  const std::string stop = text.substr(6, 2);
  const size_t first = text.find(stop);  // byte tokens: the first `first` ids are kept
  CliResult r = gen({"--prompt", "The", "--max-new-tokens", "20", "--temperature", "0", "--stop", stop, "--print-ids"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, ids_line(std::vector<int32_t>(full.begin(), full.begin() + std::ptrdiff_t(first))) + "\n");
  CliResult b = gen({"--prompt", "The", "--max-new-tokens", "20", "--temperature", "0", "--bench", "--threads", "1"});
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_NE(b.err.find("bench: with cache: 20 tokens in"), std::string::npos) << b.err;
  EXPECT_NE(b.err.find("bench: without cache: 20 tokens in"), std::string::npos) << b.err;
  EXPECT_NE(b.err.find("tokens/s"), std::string::npos);
}

TEST(GenerateCli, LongPromptIsCutWithANote) {
  const std::string longp(40, 'x');
  CliResult r = gen({"--prompt", longp, "--max-new-tokens", "3", "--temperature", "0", "--print-ids"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("prompt has 40 tokens; the model sees only the last 32"), std::string::npos) << r.err;
  mox::nn::GenerateOptions o;
  o.max_new_tokens = 3;
  o.sampling.temperature = 0;
  EXPECT_EQ(r.out, ids_line(library({longp.substr(8)}, o)[0]) + "\n");
}

TEST(GenerateCli, HuggingFaceFolderMatchesPyTorch) {
  // tests/fixtures/gpt2: a tiny GPT-2 saved by transformers (vocab 50) whose greedy
  // continuation of the ids [11, 33, 17, 37] PyTorch computed (reference.safetensors). A byte
  // tokenizer maps those ids to the bytes of the prompt.
  const std::string fixture = std::string(MOX_SOURCE_DIR) + "/tests/fixtures/gpt2";
  const std::string tok = run_folder().dir + "/tokenizer";
  const std::string prompt = "\x0b!\x11%";
  for (bool no_cache : {false, true}) {
    std::vector<std::string> args = {"generate", "--model", fixture, "--tokenizer", tok, "--prompt", prompt,
                                      "--max-new-tokens", "8", "--temperature", "0", "--print-ids"};
    if (no_cache) args.push_back("--no-cache");
    CliResult r = run_cli(args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "12 21 11 37 37 37 37 33\n") << "no_cache " << no_cache;
  }
  // Bytes past the model's 50 ids: the tokenizer does not fit the model.
  expect_one_line_error(run_cli({"generate", "--model", fixture, "--tokenizer", tok, "--prompt", "abc"}),
                        {"--prompt", "token id 97 is outside the model's vocabulary (50 ids)"});
}

TEST(GenerateCli, BpeCompletionsEndAtEndOfText) {
  // A GPT whose every prediction is <|endoftext|> (the tied embedding row of that token is
  // the only large one, and ln_f outputs it): greedy completions end at once, unless
  // --ignore-eos.
  const std::string dir = (fs::path(::testing::TempDir()) / ("mox_generate_cli_eos." + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  mox::data::BpeTrainOptions bo;
  bo.vocab_size = 262;
  mox::data::BpeTokenizer tok = mox::data::train_bpe({"abababab cdcdcd abab"}, bo);
  const int32_t eot = tok.token_id("<|endoftext|>");
  ASSERT_GE(eot, 0);
  tok.save(dir + "/tokenizer");
  mox::nn::GPTConfig c;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 8;
  c.block_size = 16;
  c.vocab_size = tok.vocab_size();
  mox::manual_seed(4);
  mox::nn::GPT m(c);
  {
    mox::NoGradGuard ng;
    mox::Tensor row = m.wte->weight.select(0, eot);
    row.copy_(mox::full({8}, 3.0));
    m.ln_f->weight.copy_(mox::zeros({8}));
    m.ln_f->bias.copy_(mox::full({8}, 3.0));
  }
  mox::nn::save_gpt(m, dir);
  std::vector<std::string> args = {"generate", "--model", dir, "--prompt", "abab", "--temperature", "0",
                                    "--max-new-tokens", "3", "--print-ids"};
  CliResult r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "\n");
  args.push_back("--ignore-eos");
  r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string e = std::to_string(eot);
  EXPECT_EQ(r.out, e + " " + e + " " + e + "\n");
  fs::remove_all(dir);
}

TEST(GenerateCli, Errors) {
  expect_one_line_error(run_cli({"generate", "--model", "/nonexistent/run", "--prompt", "a"}),
                        {"--model", "/nonexistent/run", "no such folder"});
  expect_one_line_error(gen({"--prompt", "a", "--temperature", "-1"}), {"--temperature", "must be >= 0"});
  expect_one_line_error(gen({"--prompt", "a", "--top-p", "1.5"}), {"--top-p", "(0, 1]"});
  expect_one_line_error(gen({"--prompt", "a", "--top-p", "0"}), {"--top-p", "(0, 1]"});
  expect_one_line_error(gen({"--prompt", "a", "--top-k", "-2"}), {"--top-k", "must be >= 0"});
  expect_one_line_error(gen({"--prompt", "a", "--temperature", "abc"}), {"--temperature", "expected a number, got \"abc\""});
  expect_one_line_error(gen({"--prompt", "a", "--max-new-tokens", "0"}), {"--max-new-tokens", "must be >= 1"});
  expect_one_line_error(gen({"--prompt", "a", "--max-new-tokens", "5x"}), {"--max-new-tokens", "expected an integer"});
  expect_one_line_error(gen({"--prompt", "a", "--repetition-penalty", "0"}), {"--repetition-penalty", "must be > 0"});
  expect_one_line_error(gen({"--prompt", ""}), {"--prompt", "prompt is empty"});
  // A folder with a model but no tokenizer.
  const fs::path bare = fs::path(::testing::TempDir()) / "mox_generate_cli_bare";
  fs::remove_all(bare);
  fs::create_directories(bare);
  fs::copy_file(run_folder().dir + "/model.json", bare / "model.json");
  fs::copy_file(run_folder().dir + "/model.safetensors", bare / "model.safetensors");
  expect_one_line_error(run_cli({"generate", "--model", bare.string(), "--prompt", "a"}), {"--tokenizer", "no tokenizer/"});
  // ... which --tokenizer supplies.
  CliResult ok = run_cli({"generate", "--model", bare.string(), "--tokenizer", run_folder().dir + "/tokenizer",
                          "--prompt", "a", "--max-new-tokens", "2", "--print-ids"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  // A folder that is not a model.
  expect_one_line_error(run_cli({"generate", "--model", run_folder().dir + "/tokenizer", "--prompt", "a"}),
                        {"model.json"});
}
