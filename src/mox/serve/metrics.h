#pragma once
// The server's counters in Prometheus' text exposition format (GET /metrics):
//   mox_requests_total{model,endpoint,status}         counter
//   mox_tokens_total{model,kind="prompt"|"completion"} counter
//   mox_classifications_total{model}                  counter
//   mox_request_duration_seconds{model,endpoint}      histogram
//   mox_time_to_first_token_seconds{model}            histogram (streamed generations)
//   mox_queue_depth{model}, mox_batch_rows{model}     gauges (read when scraped)
//   mox_inflight_requests                             gauge
// Thread-safe.
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace mox::serve {

class Metrics {
 public:
  Metrics();
  void request(const std::string& model, const std::string& endpoint, int status, double seconds);
  void tokens(const std::string& model, int64_t prompt, int64_t completion);
  void classifications(const std::string& model, int64_t n);
  void first_token(const std::string& model, double seconds);
  // Gauges computed at scrape time: name -> (labels -> value).
  void gauge(const std::string& name, const std::string& help,
             std::function<std::vector<std::pair<std::string, double>>()> read);
  std::string text() const;  // the exposition

  // Totals for the dashboard and tests.
  int64_t requests_total() const;

 private:
  struct Histogram {
    std::vector<uint64_t> counts;  // one per bucket bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  void observe(std::map<std::string, Histogram>& h, const std::string& labels, double v);
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> requests_;              // labels -> count
  std::map<std::string, uint64_t> tokens_, classified_;
  std::map<std::string, Histogram> duration_, ttft_;
  struct Gauge {
    std::string name, help;
    std::function<std::vector<std::pair<std::string, double>>()> read;
  };
  std::vector<Gauge> gauges_;
};

// `value` escaped for a Prometheus label ("\\", "\"", "\n").
std::string prom_label(const std::string& value);

}  // namespace mox::serve
