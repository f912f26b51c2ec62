#pragma once
// A closed-loop load generator for the server (mox bench-serve): `concurrency` clients, each
// with its own keep-alive connection, send the same request back to back for `duration_s`;
// every response's latency is recorded and its usage (tokens, classifications) summed, so
// that throughput comes from what the server says it served.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mox::serve {

struct LoadOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string key;                 // API key (Authorization: Bearer)
  std::string path = "/v1/completions";
  std::string body;                // the request's JSON
  int concurrency = 1;
  double duration_s = 10;
  double timeout_s = 120;          // per request
};

struct LoadResult {
  int concurrency = 0;
  int64_t requests = 0;            // answered 200
  int64_t errors = 0;              // answered with another status (or an unreadable body)
  int64_t failed = 0;              // no answer (connection refused, reset, timed out)
  double duration_s = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0, classifications = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, mean_ms = 0;
  double requests_per_s() const { return duration_s > 0 ? double(requests) / duration_s : 0; }
  double tokens_per_s() const { return duration_s > 0 ? double(prompt_tokens + completion_tokens) / duration_s : 0; }
  double completion_tokens_per_s() const { return duration_s > 0 ? double(completion_tokens) / duration_s : 0; }
  // {"concurrency", "requests", "errors", "duration_s", "requests_per_s", "prompt_tokens",
  //  "failed", "completion_tokens", "classifications", "tokens_per_s", "completion_tokens_per_s",
  //  "latency_ms": {"p50", "p90", "p99", "mean"}} -- the format `mox cost serve` reads.
  nlohmann::ordered_json to_json() const;
};

LoadResult run_load(const LoadOptions& options);

}  // namespace mox::serve
