#pragma once
// The inference server behind `mox serve`: OpenAI's HTTP API over mox models, with API keys,
// quotas and one metered usage row per request (serve/store.h).
//
//   GET  /healthz                 liveness, models loaded (no key)
//   GET  /metrics                 Prometheus text (admin token when one is set)
//   GET  /v1/models[/ID]          the models (key)
//   POST /v1/completions          text completion (key): prompt, max_tokens, temperature,
//                                 top_p, n, stop, seed, stream (server-sent events)
//   POST /v1/chat/completions     the same over chat messages (openai.h's chat template)
//   POST /v1/classify             classifiers: texts, table rows, images (arrays or base64 PNG)
//   GET  /dashboard, /dashboard/data   usage over time, quotas, revenue (admin token)
//
// Concurrency: HTTP requests are handled by a pool of `workers` threads; generation requests
// hand their sequences to their model's GenerationScheduler (continuous batching) and wait;
// classifications run one batch at a time per model. At most `max_queue` model requests are
// admitted at once: beyond that a request gets 429 with Retry-After. Every request has a
// time limit (504 when exceeded) and a body size limit (413).
// Shutdown (stop(), or SIGINT/SIGTERM in the CLI) stops accepting connections, lets the
// requests in flight finish and write their usage rows, then closes the database.
// start() sets SIGPIPE to be ignored when the program left it at its default (a client that
// leaves must not end the process).
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace httplib {
class Server;
}

namespace mox::serve {

class Store;
class Metrics;
class KeyLimiter;
class ServedModel;
struct PriceList;

struct ServerOptions {
  std::vector<std::string> models;   // "DIR" or "NAME=DIR"
  std::string host = "127.0.0.1";
  int port = 8080;                    // 0: any free port (port() says which)
  std::string db_path = "usage.sqlite";
  std::string prices_path;            // optional: revenue on the dashboard
  std::string admin_token;            // when set, /metrics and /dashboard need it
  int workers = 64;                   // HTTP handler threads
  int64_t max_queue = 256;            // model requests admitted at once
  int64_t max_batch = 32;             // rows per generation batch
  bool batching = true;               // false: one generation at a time (benchmarks)
  double request_timeout_s = 300;     // per request
  size_t max_body_bytes = 8 << 20;    // request bodies
  bool quiet = false;                 // no access log on stderr
};

class Server {
 public:
  // Loads the models and opens the database; throws mox::Error naming what failed.
  explicit Server(ServerOptions options);
  ~Server();
  // Binds (throws mox::Error when the address is taken) and serves on a background thread.
  void start();
  int port() const { return port_; }
  // Graceful: no new connections, requests in flight finish and are metered.
  void stop();
  // Blocks until stop() has completed.
  void wait();
  bool running() const { return running_; }

  Store& store();
  Metrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::atomic<bool> running_{false};
};

}  // namespace mox::serve
