// Calibration observers: min/max over batches, percentiles read off the histogram within a
// bin of the exact order statistic, and the entropy (KL) threshold clipping a lone outlier
// while keeping the bulk of a heavy-tailed distribution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "mox/compress/observer.h"
#include "mox/tensor/generator.h"

namespace mox::compress {
namespace {

TEST(Observer, MinMaxOverBatches) {
  Observer o(Calibration::MinMax);
  o.observe(from_vector<float>({0.5f, -2.0f, 1.0f}, {3}));
  o.observe(from_vector<float>({3.0f, 0.0f}, {2}));
  auto [lo, hi] = o.range();
  EXPECT_EQ(lo, -2.0f);
  EXPECT_EQ(hi, 3.0f);
  EXPECT_EQ(o.count(), 5);
  Observer empty;
  EXPECT_THROW(empty.range(), Error);
  EXPECT_THROW(o.observe(from_vector<float>({NAN}, {1}), "layer 3"), Error);
}

TEST(Observer, PercentileWithinABinOfTheOrderStatistic) {
  std::vector<float> v;
  for (int i = 0; i < 100000; i++) v.push_back(float(i) / 100000.0f);
  v.push_back(50.0f);  // an outlier far above the rest
  Tensor t = from_vector<float>(v, {int64_t(v.size())});
  Observer o(Calibration::Percentile, 99.0);
  o.observe(t);
  o.observe_histogram(t);
  auto [lo, hi] = o.range();
  const double bin = 50.0 / Observer::kBins;
  std::vector<float> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  const double p99 = sorted[size_t(0.99 * double(sorted.size()))], p01 = sorted[size_t(0.01 * double(sorted.size()))];
  EXPECT_NEAR(hi, p99, 2 * bin);
  EXPECT_NEAR(lo, p01, 2 * bin);
  EXPECT_LT(hi, 2.0f);  // the outlier is clipped
}

TEST(Observer, EntropyClipsAnOutlierButKeepsTheBulk) {
  // Laplace-distributed activations after a ReLU (non-negative) and one huge outlier.
  std::vector<float> v;
  Generator g(7);
  for (int i = 0; i < 200000; i++) {
    const double u = std::max(1e-12, double(g.next_u64() >> 11) / 9007199254740992.0);
    v.push_back(float(-std::log(u)));  // Exp(1)
  }
  v.push_back(1000.0f);
  Tensor t = from_vector<float>(v, {int64_t(v.size())});
  Observer o(Calibration::Entropy);
  o.observe(t);
  o.observe_histogram(t);
  auto [lo, hi] = o.range();
  EXPECT_GE(lo, 0.0f);
  EXPECT_LT(lo, 1e-3f);
  EXPECT_LT(hi, 100.0f);  // far below the outlier
  EXPECT_GT(hi, 4.0f);    // above the 98th percentile of Exp(1) (3.9)
}

TEST(Observer, EntropyThresholdOnAHandHistogram) {
  // All mass in the first `levels` bins: quantising them loses nothing, so the first
  // candidate (exactly `levels` bins) is kept.
  std::vector<double> h(512, 0.0);
  for (int i = 0; i < 128; i++) h[size_t(i)] = 1.0 + (i % 3);
  EXPECT_EQ(entropy_threshold_bins(h, 128), 128);
  // Mass spread over 300 bins with a decaying tail beyond: the threshold lies inside.
  std::vector<double> d(2048, 0.0);
  for (int i = 0; i < 2048; i++) d[size_t(i)] = 1e6 * std::exp(-double(i) / 60.0);
  const int64_t t = entropy_threshold_bins(d, 128);
  EXPECT_GT(t, 128);
  EXPECT_LT(t, 2048);
  EXPECT_THROW(entropy_threshold_bins(std::vector<double>(10, 1.0), 128), Error);
}

}  // namespace
}  // namespace mox::compress
