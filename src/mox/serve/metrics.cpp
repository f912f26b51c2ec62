#include "mox/serve/metrics.h"

#include <cstdio>
#include <sstream>

namespace mox::serve {

std::string prom_label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

namespace {
std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}
}  // namespace

Metrics::Metrics()
    // Latency buckets from 5 ms to 2 min: loopback classifications to long generations.
    : bounds_{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120} {}

void Metrics::observe(std::map<std::string, Histogram>& h, const std::string& labels, double v) {
  Histogram& x = h[labels];
  if (x.counts.empty()) x.counts.assign(bounds_.size() + 1, 0);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) i++;
  x.counts[i]++;
  x.sum += v;
  x.count++;
}

void Metrics::request(const std::string& model, const std::string& endpoint, int status, double seconds) {
  const std::string m = "model=\"" + prom_label(model) + "\",endpoint=\"" + prom_label(endpoint) + "\"";
  std::lock_guard<std::mutex> lock(mu_);
  requests_[m + ",status=\"" + std::to_string(status) + "\""]++;
  observe(duration_, m, seconds);
}

void Metrics::tokens(const std::string& model, int64_t prompt, int64_t completion) {
  const std::string m = "model=\"" + prom_label(model) + "\"";
  std::lock_guard<std::mutex> lock(mu_);
  tokens_[m + ",kind=\"prompt\""] += uint64_t(prompt);
  tokens_[m + ",kind=\"completion\""] += uint64_t(completion);
}

void Metrics::classifications(const std::string& model, int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  classified_["model=\"" + prom_label(model) + "\""] += uint64_t(n);
}

void Metrics::first_token(const std::string& model, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  observe(ttft_, "model=\"" + prom_label(model) + "\"", seconds);
}

void Metrics::gauge(const std::string& name, const std::string& help,
                    std::function<std::vector<std::pair<std::string, double>>()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_.push_back({name, help, std::move(read)});
}

int64_t Metrics::requests_total() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const auto& [k, v] : requests_) n += v;
  return int64_t(n);
}

std::string Metrics::text() const {
  std::ostringstream o;
  std::lock_guard<std::mutex> lock(mu_);
  auto counters = [&](const char* name, const char* help, const std::map<std::string, uint64_t>& m) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n";
    for (const auto& [labels, v] : m) o << name << "{" << labels << "} " << v << "\n";
  };
  auto histograms = [&](const char* name, const char* help, const std::map<std::string, Histogram>& m) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    for (const auto& [labels, h] : m) {
      uint64_t cum = 0;
      for (size_t i = 0; i < bounds_.size(); i++) {
        cum += h.counts[i];
        o << name << "_bucket{" << labels << ",le=\"" << num(bounds_[i]) << "\"} " << cum << "\n";
      }
      cum += h.counts.back();
      o << name << "_bucket{" << labels << ",le=\"+Inf\"} " << cum << "\n";
      o << name << "_sum{" << labels << "} " << num(h.sum) << "\n";
      o << name << "_count{" << labels << "} " << h.count << "\n";
    }
  };
  counters("mox_requests_total", "Requests answered, by model, endpoint and HTTP status.", requests_);
  counters("mox_tokens_total", "Prompt and completion tokens served.", tokens_);
  counters("mox_classifications_total", "Inputs classified.", classified_);
  histograms("mox_request_duration_seconds", "Time from receiving a request to its last byte.", duration_);
  histograms("mox_time_to_first_token_seconds", "Time to the first streamed token.", ttft_);
  for (const Gauge& g : gauges_) {
    o << "# HELP " << g.name << " " << g.help << "\n# TYPE " << g.name << " gauge\n";
    for (const auto& [labels, v] : g.read()) o << g.name << (labels.empty() ? "" : "{" + labels + "}") << " " << num(v) << "\n";
  }
  return o.str();
}

}  // namespace mox::serve
