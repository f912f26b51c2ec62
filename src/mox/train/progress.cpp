#include "mox/train/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "mox/tensor/error.h"

namespace mox::train {
namespace {

constexpr int kBarWidth = 30;

std::string printf_string(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// "name value" pairs joined by `sep`. A key ending in "/s" is a rate: "tok/s 16.6k".
std::string metrics_text(const MetricValues& metrics, const char* sep) {
  std::string s;
  for (const auto& [k, v] : metrics) {
    if (!s.empty()) s += sep;
    const bool rate = k.size() > 2 && k.compare(k.size() - 2, 2, "/s") == 0;
    if (rate) {  // three significant digits with a k/M suffix
      const double a = std::fabs(v);
      s += k + " " + (a < 999.5 ? printf_string("%.3g", v)
                      : a < 99.95e3 ? printf_string("%.1fk", v / 1e3)
                      : a < 999.5e3 ? printf_string("%.0fk", v / 1e3)
                                    : printf_string("%.2fM", v / 1e6));
    } else {
      s += k + " " + ProgressBar::format_metric(v);
    }
  }
  return s;
}

}  // namespace

ProgressBar::ProgressBar(int64_t total_steps, int64_t epoch, int64_t epochs, std::ostream& out,
                         bool interactive, Clock now, double min_interval)
    : total_(total_steps), epoch_(epoch), epochs_(epochs), out_(out),
      interactive_(interactive), now_(std::move(now)), min_interval_(min_interval) {
  MOX_CHECK(now_ != nullptr, "ProgressBar", "clock must not be empty");
  MOX_CHECK(epoch >= 1 && epoch <= epochs, "ProgressBar",
            "epoch " + std::to_string(epoch) + " outside 1.." + std::to_string(epochs));
  start_ = now_();
}

bool ProgressBar::stdout_is_terminal() { return isatty(fileno(stdout)) == 1; }

double ProgressBar::steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string ProgressBar::format_rate(double r) {
  if (!(r > 0) || !std::isfinite(r)) return "- it/s";
  if (r < 1) return format_duration(1.0 / r) + "/it";  // slow steps: seconds per step
  if (r < 10) return printf_string("%.2f it/s", r);
  if (r < 100) return printf_string("%.1f it/s", r);
  if (r < 999.5) return printf_string("%.0f it/s", r);
  if (r < 9.95e3) return printf_string("%.1fk it/s", r / 1e3);
  if (r < 999.5e3) return printf_string("%.0fk it/s", r / 1e3);
  if (r < 9.95e6) return printf_string("%.1fM it/s", r / 1e6);
  return printf_string("%.0fM it/s", r / 1e6);
}

std::string ProgressBar::format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-:--";
  auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[48];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

std::string ProgressBar::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "- s";
  if (seconds < 9.995) return printf_string("%.2f s", seconds);
  if (seconds < 59.95) return printf_string("%.1f s", seconds);
  return format_eta(seconds);
}

std::string ProgressBar::format_metric(double v) {
  double a = std::fabs(v);
  if (v == 0 || !std::isfinite(v) || (a >= 1e-3 && a < 1e5)) return printf_string("%.4f", v);
  return printf_string("%.3e", v);
}

std::string ProgressBar::prefix() const {
  if (!label_.empty()) return label_;
  return "Epoch " + std::to_string(epoch_) + "/" + std::to_string(epochs_);
}

// [=========>....................] filled in proportion to step/total.
std::string ProgressBar::bar(int64_t step) const {
  int64_t filled = total_ > 0 ? std::min<int64_t>(kBarWidth, step * kBarWidth / total_) : 0;
  std::string b = "[";
  b.append(static_cast<size_t>(filled), '=');
  if (filled < kBarWidth) {
    b += '>';
    b.append(static_cast<size_t>(kBarWidth - filled - 1), '.');
  }
  return b + "]";
}

void ProgressBar::draw(const std::string& line) {
  out_ << '\r' << line;
  if (line.size() < last_len_) out_ << std::string(last_len_ - line.size(), ' ');
  out_.flush();
  last_len_ = line.size();
  redraws_++;
}

void ProgressBar::update(int64_t step, const MetricValues& metrics) {
  MOX_CHECK(!finished_, "ProgressBar", "update() after finish()");
  MOX_CHECK(step >= 0 && (total_ <= 0 || step <= total_), "ProgressBar",
            "step " + std::to_string(step) + " outside 0.." + std::to_string(total_));
  steps_done_ = step;
  if (!interactive_) return;
  double now = now_();
  if (redraws_ > 0 && now - last_draw_ < min_interval_) return;
  last_draw_ = now;

  double elapsed = now - start_;
  double rate = elapsed > 0 ? static_cast<double>(step) / elapsed : 0;
  std::string line = prefix() + "  ";
  if (total_ > 0) {
    line += bar(step) + "  " + std::to_string(step) + "/" + std::to_string(total_) + "  " +
            format_rate(rate) + "  ETA " +
            format_eta(rate > 0 ? static_cast<double>(total_ - step) / rate : NAN);
  } else {
    line += std::to_string(step) + " steps  " + format_rate(rate);
  }
  std::string m = metrics_text(metrics, " ");
  if (!m.empty()) line += "  " + m;
  draw(line);
}

void ProgressBar::finish(const MetricValues& metrics) {
  MOX_CHECK(!finished_, "ProgressBar", "finish() called twice");
  finished_ = true;
  double elapsed = now_() - start_;
  int64_t steps = steps_done_ > 0 ? steps_done_ : std::max<int64_t>(total_, 0);
  double rate = elapsed > 0 ? static_cast<double>(steps) / elapsed : 0;
  if (interactive_) {
    std::string line = prefix() + "  ";
    if (total_ > 0)
      line += bar(steps) + "  " + std::to_string(steps) + "/" + std::to_string(total_);
    else
      line += std::to_string(steps) + " steps";
    line += "  " + format_rate(rate) + "  " + format_duration(elapsed);
    std::string m = metrics_text(metrics, " ");
    if (!m.empty()) line += "  " + m;
    draw(line);
    out_ << '\n';
  } else {
    std::string line = prefix() + "  " + std::to_string(steps) + " steps  " +
                       format_duration(elapsed) + "  " + format_rate(rate);
    std::string m = metrics_text(metrics, "  ");
    if (!m.empty()) line += "  " + m;
    out_ << line << '\n';
  }
  out_.flush();
}

}  // namespace mox::train
