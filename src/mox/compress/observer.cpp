#include "mox/compress/observer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "mox/tensor/error.h"

namespace mox::compress {

Calibration calibration_from_name(const std::string& name) {
  if (name == "minmax") return Calibration::MinMax;
  if (name == "percentile") return Calibration::Percentile;
  if (name == "entropy" || name == "kl") return Calibration::Entropy;
  throw Error("calibration", "expected minmax, percentile or entropy, got \"" + name + "\"");
}

const char* calibration_name(Calibration c) {
  switch (c) {
    case Calibration::MinMax: return "minmax";
    case Calibration::Percentile: return "percentile";
    case Calibration::Entropy: return "entropy";
  }
  return "?";
}

Observer::Observer(Calibration method, double percentile) : method_(method), percentile_(percentile) {
  MOX_CHECK(percentile > 50 && percentile <= 100, "calibration",
            "percentile must be in (50, 100], got " + std::to_string(percentile));
}

namespace {

std::vector<float> values_of(const Tensor& x) { return x.contiguous().to(DType::F32).to(kCPU).to_vector<float>(); }

}  // namespace

void Observer::observe(const Tensor& x, const std::string& where) {
  MOX_CHECK(is_floating(x.dtype()), where, std::string("calibration expects floating activations, got ") + dtype_name(x.dtype()));
  std::vector<float> v = values_of(x);
  if (v.empty()) return;
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (float f : v) {
    MOX_CHECK(std::isfinite(f), where, "non-finite activation during calibration");
    lo = std::min(lo, f);
    hi = std::max(hi, f);
  }
  if (count_ == 0) min_ = lo, max_ = hi;
  else min_ = std::min(min_, lo), max_ = std::max(max_, hi);
  count_ += int64_t(v.size());
}

void Observer::observe_histogram(const Tensor& x) {
  if (!needs_histogram()) return;
  MOX_CHECK(count_ > 0, "calibration", "observe_histogram before observe");
  if (hist_.empty()) hist_.assign(size_t(kBins), 0.0);
  std::vector<float> v = values_of(x);
  if (method_ == Calibration::Percentile) {
    const double width = double(max_) - double(min_);
    if (width <= 0) {
      hist_[0] += double(v.size());
      return;
    }
    for (float f : v) {
      auto b = int64_t((double(f) - min_) / width * kBins);
      hist_[size_t(std::clamp<int64_t>(b, 0, kBins - 1))] += 1;
    }
  } else {
    const double amax = std::max(std::fabs(double(min_)), std::fabs(double(max_)));
    if (amax <= 0) {
      hist_[0] += double(v.size());
      return;
    }
    for (float f : v) {
      auto b = int64_t(std::fabs(double(f)) / amax * kBins);
      hist_[size_t(std::clamp<int64_t>(b, 0, kBins - 1))] += 1;
    }
  }
}

int64_t entropy_threshold_bins(const std::vector<double>& hist, int64_t levels) {
  const int64_t n = int64_t(hist.size());
  MOX_CHECK(levels >= 2 && n >= levels, "calibration", "histogram smaller than the quantisation levels");
  std::vector<double> tail(size_t(n + 1), 0.0);  // tail[i] = sum hist[i:]
  for (int64_t i = n - 1; i >= 0; i--) tail[size_t(i)] = tail[size_t(i + 1)] + hist[size_t(i)];
  if (tail[0] <= 0) return n;
  int64_t best = n;
  double best_kl = std::numeric_limits<double>::infinity();
  std::vector<double> p, q;
  for (int64_t i = levels; i <= n; i++) {
    p.assign(hist.begin(), hist.begin() + i);
    p[size_t(i - 1)] += tail[size_t(i)];  // the clipped mass lands in the last kept bin
    // Q: hist[0, i) merged into `levels` bins, each spread evenly over its nonzero source bins.
    q.assign(size_t(i), 0.0);
    const double merged = double(i) / double(levels);
    for (int64_t j = 0; j < levels; j++) {
      const auto start = int64_t(std::floor(double(j) * merged));
      const int64_t stop = j == levels - 1 ? i : int64_t(std::floor(double(j + 1) * merged));
      double sum = 0;
      int64_t nonzero = 0;
      for (int64_t k = start; k < stop; k++) {
        sum += hist[size_t(k)];
        nonzero += p[size_t(k)] != 0;
      }
      if (nonzero == 0) continue;
      for (int64_t k = start; k < stop; k++)
        if (p[size_t(k)] != 0) q[size_t(k)] = sum / double(nonzero);
    }
    double ps = 0, qs = 0;
    for (int64_t k = 0; k < i; k++) ps += p[size_t(k)], qs += q[size_t(k)];
    if (ps <= 0 || qs <= 0) continue;
    double kl = 0;
    for (int64_t k = 0; k < i; k++) {
      if (p[size_t(k)] == 0) continue;
      const double pk = p[size_t(k)] / ps;
      // A source bin whose merged group held no unclipped mass: smoothed, as MXNet/TensorRT do.
      const double qk = q[size_t(k)] > 0 ? q[size_t(k)] / qs : 1e-4 / double(i);
      kl += pk * std::log(pk / qk);
    }
    if (kl < best_kl) best_kl = kl, best = i;
  }
  return best;
}

std::pair<float, float> Observer::range() const {
  MOX_CHECK(count_ > 0, "calibration", "no activations were observed (empty calibration data?)");
  if (method_ == Calibration::MinMax || hist_.empty()) return {min_, max_};
  if (method_ == Calibration::Percentile) {
    double total = 0;
    for (double h : hist_) total += h;
    const double width = (double(max_) - double(min_)) / double(kBins);
    if (total <= 0 || width <= 0) return {min_, max_};
    const double lo_mass = total * (100.0 - percentile_) / 100.0, hi_mass = total * percentile_ / 100.0;
    double cum = 0;
    int64_t lo_bin = 0, hi_bin = kBins - 1;
    for (int64_t b = 0; b < kBins; b++) {
      if (cum + hist_[size_t(b)] > lo_mass) {
        lo_bin = b;
        break;
      }
      cum += hist_[size_t(b)];
    }
    cum = 0;
    for (int64_t b = 0; b < kBins; b++) {
      cum += hist_[size_t(b)];
      if (cum >= hi_mass) {
        hi_bin = b;
        break;
      }
    }
    // Lower edge of the lower bin, upper edge of the upper one: the kept values stay in range.
    float lo = float(double(min_) + width * double(lo_bin));
    float hi = float(double(min_) + width * double(hi_bin + 1));
    return {std::max(lo, min_), std::min(hi, max_)};
  }
  const double amax = std::max(std::fabs(double(min_)), std::fabs(double(max_)));
  if (amax <= 0) return {min_, max_};
  const bool signed_data = min_ < 0;
  const int64_t bins = entropy_threshold_bins(hist_, signed_data ? 128 : 256);
  const auto t = float(amax * double(bins) / double(kBins));
  return {signed_data ? std::max(min_, -t) : std::max(min_, 0.0f), std::min(max_, t)};
}

}  // namespace mox::compress
