#pragma once
// Helpers shared by the op tests: element-wise comparisons and running with a thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "mox/mox.h"

namespace mox::testing {

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); i++) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

inline double max_abs(const Tensor& a) {
  double m = 0;
  for (double v : a.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// Runs fn with n threads, then restores the previous count.
template <typename Fn> auto with_threads(int n, Fn&& fn) {
  int prev = get_num_threads();
  set_num_threads(n);
  auto r = fn();
  set_num_threads(prev);
  return r;
}

}  // namespace mox::testing
