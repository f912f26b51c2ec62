// mox serve --model DIR [--model NAME=DIR2 ...] [--port 8080] [--db usage.sqlite] ...
// Serves mox models over OpenAI's HTTP API (serve/server.h): completions and chat for GPT
// runs, /v1/classify for classifiers, with API keys from `mox keys`, quotas and one usage
// row per request in the database. SIGINT / SIGTERM shut it down gracefully: requests in
// flight finish and are metered before it exits.
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>

#include "command.h"
#include "mox/serve/server.h"
#include "mox/backend/backend.h"

namespace mox::cli {

Command add_serve_command(CLI::App& parent) {
  struct Args {
    serve::ServerOptions opt;
    int64_t threads = 0;
    bool no_batching = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("serve", "Serve models over OpenAI's HTTP API with API keys and metering");
  app->add_option("--model", a->opt.models, "Run folder to serve (GPT or classifier); NAME=DIR names it; repeatable")
      ->required();
  app->add_option("--host", a->opt.host, "Address to listen on (default 127.0.0.1)");
  app->add_option("--port", a->opt.port, "Port (default 8080; 0 = any free port)")->check(CLI::Range(0, 65535));
  app->add_option("--db", a->opt.db_path, "Usage database of API keys and metered requests (default usage.sqlite)");
  app->add_option("--prices", a->opt.prices_path, "Price list (TOML) for the dashboard's revenue");
  app->add_option("--admin-token", a->opt.admin_token, "Token that /metrics and /dashboard require (default: none)");
  app->add_option("--workers", a->opt.workers, "HTTP handler threads (default 64)")->check(CLI::PositiveNumber);
  app->add_option("--max-queue", a->opt.max_queue, "Model requests admitted at once before 429 (default 256)")
      ->check(CLI::PositiveNumber);
  app->add_option("--max-batch", a->opt.max_batch, "Sequences decoded together per GPT (default 32)")
      ->check(CLI::PositiveNumber);
  app->add_flag("--no-batching", a->no_batching, "Generate one sequence at a time (for comparisons)");
  app->add_option("--timeout", a->opt.request_timeout_s, "Seconds a request may take (default 300)")
      ->check(CLI::PositiveNumber);
  app->add_option("--max-body", a->opt.max_body_bytes, "Largest request body in bytes (default 8 MiB)")
      ->check(CLI::PositiveNumber);
  app->add_option("--threads", a->threads, "CPU threads for the models")->check(CLI::PositiveNumber);
  app->add_flag("-q,--quiet", a->opt.quiet, "No access log");
  app->footer(
      "Example:\n  mox keys create --customer acme --monthly-tokens 1000000\n"
      "  mox serve --model runs/gpt --model runs/cnn --port 8080\n"
      "  curl localhost:8080/v1/completions -H 'Authorization: Bearer mox-...' \\\n"
      "       -d '{\"model\": \"gpt\", \"prompt\": \"The \", \"max_tokens\": 20}'");
  return {app, [a] {
            if (a->threads > 0) set_num_threads(int(a->threads));
            a->opt.batching = !a->no_batching;
            // SIGINT/SIGTERM are taken by a thread of ours (sigwait), not by whichever thread
            // the kernel picks: block them before any thread starts.
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, SIGINT);
            sigaddset(&set, SIGTERM);
            pthread_sigmask(SIG_BLOCK, &set, nullptr);
            std::signal(SIGPIPE, SIG_IGN);
            serve::Server server(a->opt);
            server.start();
            std::fprintf(stderr, "mox serve: %zu model%s on http://%s:%d (database %s); Ctrl-C stops\n",
                         a->opt.models.size(), a->opt.models.size() == 1 ? "" : "s", a->opt.host.c_str(), server.port(),
                         a->opt.db_path.c_str());
            std::fflush(stderr);
            std::thread signals([&server, set] {
              int sig = 0;
              sigwait(&set, &sig);
              std::fprintf(stderr, "mox serve: %s: finishing the requests in flight\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
              server.stop();
            });
            server.wait();
            // The signal thread is waiting in sigwait unless it stopped us; wake it.
            pthread_kill(signals.native_handle(), SIGTERM);
            signals.join();
            std::fprintf(stderr, "mox serve: stopped; usage is in %s\n", a->opt.db_path.c_str());
            return 0;
          }};
}

}  // namespace mox::cli
