// mox bench-serve --model DIR [--concurrency 1,8,32] [--duration 10] [--max-tokens 32]
//                 [--compare-unbatched] [--out bench_serve.json]
// mox bench-serve --url http://HOST:PORT --key KEY --model-name NAME ...
// Measures a server under closed-loop load (serve/loadgen.h): with --model, an in-process
// `mox serve` on loopback with a scratch database and key (batched, and with
// --compare-unbatched also one sequence at a time); with --url, a running server. For a GPT:
// short completions (--prompt, --max-tokens, temperature 0.8); for a classifier: one input
// of the model's shape per request. Prints requests/s, tokens/s and latency percentiles per
// concurrency, and checks that every answered request was metered (in-process: usage rows
// = requests answered). --out writes the JSON that `mox cost serve --bench` reads.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "command.h"
#include "mox/backend/backend.h"
#include "mox/io/file_util.h"
#include "mox/serve/loadgen.h"
#include "mox/serve/server.h"
#include "mox/serve/store.h"
#include "mox/tensor/error.h"
#include "mox/train/compress.h"
#include "mox/data/pipeline.h"

namespace mox::cli {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

std::vector<int> parse_concurrency(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int v = 0;
    try {
      size_t used = 0;
      v = std::stoi(item, &used);
      if (used != item.size()) v = 0;
    } catch (...) {
      v = 0;
    }
    if (v < 1 || v > 4096) throw Error("--concurrency", "\"" + item + "\" is not a number of clients in [1, 4096]");
    out.push_back(v);
  }
  if (out.empty()) throw Error("--concurrency", "give one or more numbers, e.g. 1,8,32");
  return out;
}

// The request body for a model folder: a short completion, or one zero-valued input.
ojson request_for(const std::string& dir, const std::string& name, const std::string& prompt, int64_t max_tokens,
                  std::string* path) {
  if (train::is_gpt_run(dir)) {
    *path = "/v1/completions";
    return {{"model", name}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0.8}};
  }
  const data::Preprocessor pre = data::Preprocessor::load(dir);
  *path = "/v1/classify";
  if (pre.kind == data::Preprocessor::Kind::Text) return {{"model", name}, {"input", "a short example text"}};
  int64_t per = 1;
  for (int64_t d : pre.input_shape) per *= d;
  return {{"model", name}, {"input", std::vector<double>(size_t(per), 0.25)}};
}

}  // namespace

Command add_bench_serve_command(CLI::App& parent) {
  struct Args {
    std::string model, url, key, model_name, concurrency = "1,8,32", prompt = "User: what is the meaning of ", out,
                                                hardware = "cpu-2core";
    double duration = 10;
    int64_t max_tokens = 32, threads = 0, max_batch = 32;
    bool compare_unbatched = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("bench-serve", "Load-test the inference server: requests/s, tokens/s, latency");
  app->add_option("--model", a->model, "Run folder to serve in-process (GPT or classifier)");
  app->add_option("--url", a->url, "A running server instead (http://HOST:PORT)");
  app->add_option("--key", a->key, "API key for --url");
  app->add_option("--model-name", a->model_name, "The model's name on the server (default: the folder's name)");
  app->add_option("--concurrency", a->concurrency, "Clients, comma-separated (default 1,8,32)");
  app->add_option("--duration", a->duration, "Seconds per concurrency level (default 10)")->check(CLI::PositiveNumber);
  app->add_option("--max-tokens", a->max_tokens, "Completion tokens per request (default 32)")->check(CLI::PositiveNumber);
  app->add_option("--prompt", a->prompt, "Completion prompt");
  app->add_option("--max-batch", a->max_batch, "In-process: rows per generation batch (default 32)")->check(CLI::PositiveNumber);
  app->add_flag("--compare-unbatched", a->compare_unbatched, "In-process: also run with batching off");
  app->add_option("--hardware", a->hardware, "Hardware name written into the JSON (for mox cost; default cpu-2core)");
  app->add_option("--out", a->out, "Write the results as JSON (what mox cost serve --bench reads)");
  app->add_option("--threads", a->threads, "CPU threads for the model")->check(CLI::PositiveNumber);
  app->footer("Example: mox bench-serve --model runs/gpt --concurrency 1,8,32 --duration 10 --compare-unbatched --out bench_serve.json");
  return {app, [a] {
            if (a->model.empty() == a->url.empty()) throw Error("bench-serve", "give either --model DIR or --url URL");
            if (a->threads > 0) set_num_threads(int(a->threads));
            const std::vector<int> levels = parse_concurrency(a->concurrency);
            ojson results = ojson::array();
            std::string path, model_name = a->model_name;
            ojson body;
            std::printf("%-9s %11s %9s %10s %12s %10s %10s %7s %10s\n", "batching", "concurrency", "requests", "req/s",
                        "tokens/s", "p50 ms", "p99 ms", "errors", "unmetered");
            auto print = [](const char* mode, const serve::LoadResult& r, int64_t unmetered) {
              std::printf("%-9s %11d %9lld %10.1f %12.1f %10.1f %10.1f %7lld %10s\n", mode, r.concurrency,
                          (long long)r.requests, r.requests_per_s(), r.completion_tokens > 0 ? r.completion_tokens_per_s() : 0.0,
                          r.p50_ms, r.p99_ms, (long long)(r.errors + r.failed),
                          unmetered < 0 ? "-" : std::to_string(unmetered).c_str());
              std::fflush(stdout);
            };
            if (!a->url.empty()) {
              const std::string prefix = "http://";
              if (a->url.rfind(prefix, 0) != 0) throw Error("--url", a->url + ": expected http://HOST:PORT");
              const std::string hp = a->url.substr(prefix.size());
              const size_t colon = hp.rfind(':');
              if (colon == std::string::npos) throw Error("--url", a->url + ": no port");
              if (model_name.empty()) throw Error("--model-name", "needed with --url");
              if (a->key.empty()) throw Error("--key", "needed with --url");
              serve::LoadOptions lo;
              lo.host = hp.substr(0, colon);
              lo.port = std::stoi(hp.substr(colon + 1));
              lo.key = a->key;
              path = "/v1/completions";
              body = {{"model", model_name}, {"prompt", a->prompt}, {"max_tokens", a->max_tokens}, {"temperature", 0.8}};
              lo.path = path;
              lo.body = body.dump();
              for (int c : levels) {
                lo.concurrency = c;
                lo.duration_s = a->duration;
                serve::LoadResult r = serve::run_load(lo);
                print("server", r, -1);
                results.push_back(r.to_json());
              }
            } else {
              if (model_name.empty()) model_name = fs::path(a->model).lexically_normal().filename().string();
              body = request_for(a->model, model_name, a->prompt, a->max_tokens, &path);
              const std::string scratch = (fs::temp_directory_path() / ("mox_bench_serve." + std::to_string(::getpid()))).string();
              fs::create_directories(scratch);
              std::vector<bool> modes = {true};
              if (a->compare_unbatched) modes.push_back(false);
              for (bool batching : modes) {
                serve::ServerOptions so;
                so.models = {model_name + "=" + a->model};
                so.port = 0;
                so.db_path = scratch + (batching ? "/batched.sqlite" : "/unbatched.sqlite");
                fs::remove(so.db_path);
                so.quiet = true;
                so.batching = batching;
                so.max_batch = a->max_batch;
                so.max_queue = 100000;
                serve::Server server(so);
                server.start();
                const std::string key = server.store().create_key("bench", {}).secret;
                serve::LoadOptions lo;
                lo.port = server.port();
                lo.key = key;
                lo.path = path;
                lo.body = body.dump();
                int64_t rows_before = 0;
                for (int c : levels) {
                  lo.concurrency = c;
                  lo.duration_s = a->duration;
                  serve::LoadResult r = serve::run_load(lo);
                  const int64_t rows = server.store().row_count();
                  const int64_t unmetered = (r.requests + r.errors) - (rows - rows_before);
                  rows_before = rows;
                  print(batching ? "on" : "off", r, unmetered);
                  ojson j = r.to_json();
                  j["batching"] = batching;
                  j["unmetered"] = unmetered;
                  results.push_back(j);
                }
                server.stop();
                server.wait();
              }
              fs::remove_all(scratch);
            }
            if (!a->out.empty()) {
              ojson out;
              out["model"] = model_name;
              out["endpoint"] = path;
              out["hardware"] = a->hardware;
              out["replica_threads"] = get_num_threads();
              out["request"] = body;
              out["results"] = results;
              io::write_file_atomic(a->out, out.dump(2) + "\n");
              std::fprintf(stderr, "bench-serve: wrote %s\n", a->out.c_str());
            }
            return 0;
          }};
}

}  // namespace mox::cli
