#pragma once
// The benchmark clock, shared with bench/torch_ops.py (which does the same in Python):
// warm up for >= 0.2 s (at least 3 calls), pick the number of calls per sample so that a
// sample lasts >= 5 ms, take 31 samples and return the median time per call. The median
// resists the outliers that other processes on the machine cause.
#include <algorithm>
#include <chrono>
#include <vector>

namespace mox::bench {

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

template <typename F>
double median_seconds(F&& f, double warmup_s = 0.2, double sample_s = 0.005, int samples = 31) {
  double t0 = now_seconds();
  int calls = 0;
  while (calls < 3 || now_seconds() - t0 < warmup_s) {
    f();
    calls++;
  }
  double per_call = (now_seconds() - t0) / calls;
  int reps = std::max(1, int(sample_s / per_call));
  std::vector<double> times;
  for (int s = 0; s < samples; s++) {
    double start = now_seconds();
    for (int r = 0; r < reps; r++) f();
    times.push_back((now_seconds() - start) / reps);
  }
  std::nth_element(times.begin(), times.begin() + samples / 2, times.end());
  return times[size_t(samples / 2)];
}

}  // namespace mox::bench
