// mox generate --model DIR --prompt TEXT [--prompt TEXT ...] [--max-new-tokens N]
//              [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R]
//              [--stop S ...] [--ignore-eos] [--seed N] [--no-cache] [--print-ids] [--threads N]
//              [--no-stream] [--bench] [--tokenizer DIR]
// Continues text with a GPT: a mox LM run folder (model.json + model.safetensors +
// tokenizer/) or a Hugging Face GPT-2 folder (config.json + model.safetensors, tokenizer from
// --tokenizer DIR holding encoder.json + vocab.bpe). One prompt is streamed token by token;
// several are generated as one batch and printed one after another.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "mox/train/compute.h"
#include "mox/backend/backend.h"
#include "mox/data/text/bpe.h"
#include "mox/data/text/text_tokenizer.h"
#include "mox/train/compress.h"
#include "mox/nn/models/generate.h"
#include "mox/nn/models/gpt_io.h"
#include "mox/tensor/error.h"

namespace mox::cli {

namespace {

namespace fs = std::filesystem;

struct GenerateArgs {
  std::string model, tokenizer;
  std::vector<std::string> prompts, stops;
  // Numbers are parsed here, not by CLI11, so that a bad value is a one-line error naming the
  // option with exit code 1 like every other failure of a run.
  std::string max_new_tokens = "100", temperature = "1.0", top_k = "0", top_p = "1.0",
              repetition_penalty = "1.0", seed = "0", threads = "0";
  std::string device, precision;
  bool no_cache = false, print_ids = false, no_stream = false, bench = false, ignore_eos = false;
};

double parse_double(const std::string& text, const char* option) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(v))
    throw Error(option, "expected a number, got \"" + text + "\"");
  return v;
}

int64_t parse_int(const std::string& text, const char* option) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw Error(option, "expected an integer, got \"" + text + "\"");
  return int64_t(v);
}

// The tokenizer: --tokenizer DIR, else the run folder's tokenizer/, else DIR itself.
std::unique_ptr<data::TextTokenizer> find_tokenizer(const GenerateArgs& a) {
  if (!a.tokenizer.empty()) {
    if (!fs::is_directory(a.tokenizer)) throw Error("--tokenizer", a.tokenizer + ": no such folder");
    return data::load_text_tokenizer(a.tokenizer);
  }
  const fs::path sub = fs::path(a.model) / "tokenizer";
  if (fs::is_directory(sub)) return data::load_text_tokenizer(sub.string());
  const fs::path m(a.model);
  if (fs::exists(m / "encoder.json") || fs::exists(m / "tokenizer.json"))
    return data::load_text_tokenizer(a.model);
  throw Error("--tokenizer", a.model + " holds no tokenizer/ folder; give --tokenizer DIR (encoder.json + vocab.bpe, or tokenizer.json)");
}

struct Timed {
  std::vector<std::vector<int32_t>> ids;
  double seconds = 0;
  int64_t tokens() const {
    int64_t n = 0;
    for (const auto& r : ids) n += int64_t(r.size());
    return n;
  }
};

}  // namespace

Command add_generate_command(CLI::App& parent) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* app = parent.add_subcommand("generate", "Continue text prompts with a GPT language model");
  app->add_option("--model", a->model, "mox LM run folder or Hugging Face GPT-2 folder")->type_name("DIR")->required();
  app->add_option("--tokenizer", a->tokenizer, "tokenizer folder (default: the model folder's tokenizer/)")->type_name("DIR");
  app->add_option("--prompt", a->prompts, "prompt text; repeat for a batch")->required();
  app->add_option("--max-new-tokens", a->max_new_tokens, "tokens to generate per prompt (default 100)")->type_name("N");
  app->add_option("--temperature", a->temperature, "sampling temperature, 0 = greedy (default 1)")->type_name("T");
  app->add_option("--top-k", a->top_k, "sample among the K most likely tokens (0 = all)")->type_name("K");
  app->add_option("--top-p", a->top_p, "nucleus sampling mass in (0, 1] (default 1)")->type_name("P");
  app->add_option("--repetition-penalty", a->repetition_penalty, "> 1 discourages repeats (default 1)")->type_name("R");
  app->add_option("--stop", a->stops, "stop a completion before this string; repeatable");
  app->add_option("--seed", a->seed, "seed for sampling (default 0)")->type_name("N");
  app->add_flag("--ignore-eos", a->ignore_eos,
                "keep going past <|endoftext|> (by default a BPE model's completion ends there)");
  app->add_flag("--no-cache", a->no_cache, "recompute the whole context for every token");
  app->add_flag("--print-ids", a->print_ids, "print the generated token ids, one line per prompt");
  app->add_option("--threads", a->threads, "CPU threads (default: MOX_NUM_THREADS or all cores)")->type_name("N");
  add_device_option(app, a->device);
  add_precision_option(app, a->precision, "f32 (default), or bf16/f16: matrix products and attention in the half type (autocast)");
  app->add_flag("--no-stream", a->no_stream, "print a single completion only when it is done");
  app->add_flag("--bench", a->bench, "also time generation with and without the cache (tokens/s on stderr)");
  app->footer("Example: mox generate --model runs/shakespeare --prompt 'ROMEO:' --max-new-tokens 200 --top-k 40");
  return {app, [a] {
            nn::GenerateOptions opt;
            opt.max_new_tokens = parse_int(a->max_new_tokens, "--max-new-tokens");
            MOX_CHECK(opt.max_new_tokens >= 1, "--max-new-tokens", "must be >= 1, got " + a->max_new_tokens);
            opt.sampling.temperature = parse_double(a->temperature, "--temperature");
            MOX_CHECK(opt.sampling.temperature >= 0, "--temperature", "must be >= 0, got " + a->temperature);
            opt.sampling.top_k = parse_int(a->top_k, "--top-k");
            MOX_CHECK(opt.sampling.top_k >= 0, "--top-k", "must be >= 0, got " + a->top_k);
            opt.sampling.top_p = parse_double(a->top_p, "--top-p");
            MOX_CHECK(opt.sampling.top_p > 0 && opt.sampling.top_p <= 1, "--top-p",
                      "must be in (0, 1], got " + a->top_p);
            opt.sampling.repetition_penalty = parse_double(a->repetition_penalty, "--repetition-penalty");
            MOX_CHECK(opt.sampling.repetition_penalty > 0, "--repetition-penalty",
                      "must be > 0, got " + a->repetition_penalty);
            const int64_t seed = parse_int(a->seed, "--seed");
            MOX_CHECK(seed >= 0, "--seed", "must be >= 0, got " + a->seed);
            opt.sampling.seed = uint64_t(seed);
            const int64_t threads = parse_int(a->threads, "--threads");
            MOX_CHECK(threads >= 0, "--threads", "must be >= 0 (0: the default), got " + a->threads);
            opt.stop = a->stops;
            opt.use_cache = !a->no_cache;
            if (threads > 0) set_num_threads(int(threads));

            if (!fs::is_directory(a->model)) throw Error("--model", a->model + ": no such folder");
            // A float GPT, or one quantised by mox quantize (w8 / w4 / dynamic-int8).
            std::shared_ptr<nn::GPT> model = train::load_gpt_run(a->model);
            train::Compute compute;
            train::override_compute(compute, a->device, a->precision);
            model->to(compute.device);
            std::unique_ptr<data::TextTokenizer> tok = find_tokenizer(*a);
            const int64_t block = model->config().block_size;
            // GPT-2 ends a document with <|endoftext|>: a completion stops there, as in
            // Hugging Face's generate (its eos_token_id), unless --ignore-eos.
            if (const auto* bpe = dynamic_cast<const data::BpeTokenizer*>(tok.get()))
              if (!a->ignore_eos && bpe->token_id("<|endoftext|>") >= 0) opt.stop.push_back("<|endoftext|>");

            std::vector<std::vector<int32_t>> prompts;
            for (size_t i = 0; i < a->prompts.size(); i++) {
              std::vector<int32_t> ids = tok->encode(a->prompts[i]);
              const std::string name = a->prompts.size() > 1 ? "prompt " + std::to_string(i + 1) : "prompt";
              MOX_CHECK(!ids.empty(), "--prompt", name + " is empty");
              for (int32_t id : ids)
                MOX_CHECK(id < model->config().vocab_size, "--prompt",
                          name + ": token id " + std::to_string(id) + " is outside the model's vocabulary (" +
                              std::to_string(model->config().vocab_size) +
                              " ids): is the tokenizer the model's?");
              if (int64_t(ids.size()) > block)
                std::cerr << "mox: note: " << name << " has " << ids.size()
                          << " tokens; the model sees only the last " << block << " (block_size)\n";
              prompts.push_back(std::move(ids));
            }
            auto decode = [&tok](const std::vector<int32_t>& ids) { return tok->decode(ids); };

            const bool stream = prompts.size() == 1 && !a->no_stream && !a->print_ids;
            std::function<void(size_t, int32_t)> on_token;
            if (stream) {
              std::cout << a->prompts[0] << std::flush;
              on_token = [&tok](size_t, int32_t id) {
                const std::string piece = tok->decode(std::vector<int32_t>{id});
                std::cout.write(piece.data(), std::streamsize(piece.size()));
                std::cout.flush();
              };
            }
            auto run = [&](bool use_cache, const std::function<void(size_t, int32_t)>& cb) {
              nn::GenerateOptions o = opt;
              o.use_cache = use_cache;
              Timed t;
              train::StepAutocast ac(compute.precision);
              const auto t0 = std::chrono::steady_clock::now();
              t.ids = nn::generate(*model, prompts, o, decode, cb);
              t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
              return t;
            };
            const Timed main_run = run(opt.use_cache, on_token);

            if (stream) {
              std::cout << "\n";
            } else if (a->print_ids) {
              for (const auto& row : main_run.ids) {
                std::string line;
                for (size_t j = 0; j < row.size(); j++) {
                  if (j) line += ' ';
                  line += std::to_string(row[j]);
                }
                std::cout << line << "\n";
              }
            } else {
              for (size_t i = 0; i < main_run.ids.size(); i++) {
                if (prompts.size() > 1) std::cout << "=== completion " << (i + 1) << " ===\n";
                std::cout << a->prompts[i] << tok->decode(main_run.ids[i]) << "\n";
              }
            }
            std::cout.flush();

            if (a->bench) {
              // Both paths timed after the run above, which warmed up the allocator, the
              // thread pool and the GEMM kernels.
              const Timed cached = run(true, {}), uncached = run(false, {});
              auto line = [](const char* name, const Timed& t) {
                std::cerr << "bench: " << name << ": " << t.tokens() << " tokens in " << t.seconds << " s ("
                          << (t.seconds > 0 ? double(t.tokens()) / t.seconds : 0.0) << " tokens/s)\n";
              };
              line("with cache", cached);
              line("without cache", uncached);
            }
            return 0;
          }};
}

}  // namespace mox::cli
