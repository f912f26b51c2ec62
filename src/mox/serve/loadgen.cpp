#include "mox/serve/loadgen.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <numeric>
#include <thread>

#include "mox/serve/store.h"
#include "mox/tensor/error.h"

namespace mox::serve {

using Clock = std::chrono::steady_clock;

nlohmann::ordered_json LoadResult::to_json() const {
  nlohmann::ordered_json j;
  j["concurrency"] = concurrency;
  j["requests"] = requests;
  j["errors"] = errors;
  j["failed"] = failed;
  j["duration_s"] = duration_s;
  j["requests_per_s"] = requests_per_s();
  j["prompt_tokens"] = prompt_tokens;
  j["completion_tokens"] = completion_tokens;
  j["classifications"] = classifications;
  j["tokens_per_s"] = tokens_per_s();
  j["completion_tokens_per_s"] = completion_tokens_per_s();
  j["latency_ms"] = {{"p50", p50_ms}, {"p90", p90_ms}, {"p99", p99_ms}, {"mean", mean_ms}};
  return j;
}

LoadResult run_load(const LoadOptions& o) {
  MOX_CHECK(o.concurrency >= 1, "--concurrency", "must be >= 1, got " + std::to_string(o.concurrency));
  MOX_CHECK(o.duration_s > 0, "--duration", "must be > 0");
  std::mutex mu;
  std::vector<double> latencies;
  LoadResult r;
  r.concurrency = o.concurrency;
  std::atomic<int64_t> errors{0}, failed{0};
  // Every client opens its connection (GET /healthz) before the clock starts: the listen
  // backlog of Debian's cpp-httplib is 5, and a burst of simultaneous connects would measure
  // SYN retransmits instead of the server.
  std::latch connected(o.concurrency);
  std::atomic<bool> go{false};
  Clock::time_point t0, end;
  std::mutex start_mu;
  std::condition_variable start_cv;
  std::vector<std::thread> threads;
  for (int c = 0; c < o.concurrency; c++)
    threads.emplace_back([&] {
      httplib::Client client(o.host, o.port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_read_timeout(std::chrono::milliseconds(int64_t(o.timeout_s * 1000)));
      client.set_write_timeout(std::chrono::milliseconds(int64_t(o.timeout_s * 1000)));
      const httplib::Headers headers = {{"Authorization", "Bearer " + o.key}};
      for (int attempt = 0; attempt < 20 && !client.Get("/healthz"); attempt++)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      connected.count_down();
      {
        std::unique_lock<std::mutex> lock(start_mu);
        start_cv.wait(lock, [&] { return go.load(); });
      }
      std::vector<double> mine;
      int64_t prompt = 0, completion = 0, classified = 0, ok = 0;
      while (Clock::now() < end) {
        const auto s = Clock::now();
        auto res = client.Post(o.path.c_str(), headers, o.body, "application/json");
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
        if (!res) {
          failed++;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          continue;
        }
        if (res->status != 200) {
          errors++;
          continue;
        }
        const auto j = nlohmann::json::parse(res->body, nullptr, false);
        if (j.is_discarded() || !j.contains("usage")) {
          errors++;
          continue;
        }
        const auto& u = j["usage"];
        prompt += u.value("prompt_tokens", int64_t(0));
        completion += u.value("completion_tokens", int64_t(0));
        classified += u.value("classifications", int64_t(0));
        ok++;
        mine.push_back(ms);
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      r.prompt_tokens += prompt;
      r.completion_tokens += completion;
      r.classifications += classified;
      r.requests += ok;
    });
  connected.wait();
  {
    std::lock_guard<std::mutex> lock(start_mu);
    t0 = Clock::now();
    end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration_s));
    go = true;
  }
  start_cv.notify_all();
  for (auto& t : threads) t.join();
  r.duration_s = std::chrono::duration<double>(Clock::now() - t0).count();
  r.errors = errors.load();
  r.failed = failed.load();
  std::sort(latencies.begin(), latencies.end());
  r.p50_ms = nearest_rank(latencies, 50);
  r.p90_ms = nearest_rank(latencies, 90);
  r.p99_ms = nearest_rank(latencies, 99);
  r.mean_ms = latencies.empty() ? 0 : std::accumulate(latencies.begin(), latencies.end(), 0.0) / double(latencies.size());
  return r;
}

}  // namespace mox::serve
