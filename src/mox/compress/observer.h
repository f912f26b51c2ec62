#pragma once
// Calibration of activation ranges for static int8 quantisation: an Observer sees the
// activations entering a layer over N calibration batches and returns the range [lo, hi] that
// the u8 quantisation parameters are chosen from (ops/quant.h choose_qparams_u8).
//
//   minmax      lo = min, hi = max of everything seen.
//   percentile  the `percentile` (e.g. 99.99) upper and 100 - percentile lower percentiles,
//               from a 4096-bin histogram over [min, max]; outliers are clipped.
//   entropy     TensorRT's KL-divergence calibration: a 4096-bin histogram of |x| over
//               [0, max|x|]; for each candidate threshold i (from `levels` bins up), the
//               distribution P = hist[0, i) with the clipped mass added to bin i - 1, and Q =
//               P merged into `levels` quantisation bins and expanded back evenly over P's
//               nonzero bins; the threshold with the least KL(P || Q) wins. levels = 256 for
//               non-negative data (u8 over [0, t]) and 128 per side for signed data
//               ([-t, t]); the range is [max(min, -t), min(max, t)] (or [0, t]).
//
// Histogram methods take two passes over the data: observe() collects min/max, then
// observe_histogram() (second pass, same batches) fills the histogram over the final range.
#include <cstdint>
#include <string>
#include <vector>

#include "mox/tensor/tensor.h"

namespace mox::compress {

enum class Calibration { MinMax, Percentile, Entropy };
Calibration calibration_from_name(const std::string& name);  // "minmax" | "percentile" | "entropy"
const char* calibration_name(Calibration c);

class Observer {
 public:
  static constexpr int64_t kBins = 4096;
  explicit Observer(Calibration method = Calibration::MinMax, double percentile = 99.99);

  bool needs_histogram() const { return method_ != Calibration::MinMax; }
  // Pass 1: min and max (any floating dtype; non-finite values are an error naming the layer).
  void observe(const Tensor& x, const std::string& where = "calibration");
  // Pass 2 (histogram methods): counts over [min, max] (percentile) or |x| over [0, amax]
  // (entropy), with the range fixed by pass 1.
  void observe_histogram(const Tensor& x);
  // The calibrated range (throws when nothing was observed).
  std::pair<float, float> range() const;
  float min() const { return min_; }
  float max() const { return max_; }
  int64_t count() const { return count_; }
  const std::vector<double>& histogram() const { return hist_; }

 private:
  Calibration method_;
  double percentile_;
  float min_ = 0, max_ = 0;
  int64_t count_ = 0;
  std::vector<double> hist_;
};

// TensorRT's entropy threshold over a histogram of |x| (bins of equal width from 0): the bin
// count i (levels <= i <= hist.size()) minimising KL(P || Q) as described above. Exposed for
// tests.
int64_t entropy_threshold_bins(const std::vector<double>& hist, int64_t levels);

}  // namespace mox::compress
