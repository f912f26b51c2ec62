#pragma once
// Helpers for the nn tests: deterministic fills that the PyTorch reference scripts
// reproduce exactly (values from sin of the flat index), and checksums to compare with
// numbers computed by PyTorch 1.13.
#include <cmath>
#include <vector>

#include "mox/mox.h"
#include "mox/nn/nn.h"

namespace mox::nn::testing {

// t.flat[i] = scale * sin(a * i + b), f64.
inline Tensor pattern(const Shape& shape, double a, double b, double scale = 0.5) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); i++) v[i] = scale * std::sin(a * double(i) + b);
  return from_vector(v, shape);
}

// Parameter j (in named_parameters order) gets pattern(shape, 0.7, 0.3 j + 0.1).
inline void fill(Module& m) {
  NoGradGuard ng;
  int j = 0;
  for (auto& [name, p] : m.named_parameters()) p.copy_(pattern(p.shape(), 0.7, 0.3 * j++ + 0.1));
}

// {sum(t), sum(t * cos(0.1 i))} over the flat values.
inline std::pair<double, double> checks(const Tensor& t) {
  std::vector<double> v = t.to_vector<double>();
  double s = 0, w = 0;
  for (size_t i = 0; i < v.size(); i++) {
    s += v[i];
    w += v[i] * std::cos(0.1 * double(i));
  }
  return {s, w};
}

}  // namespace mox::nn::testing

#define EXPECT_CHECKS(t, s, w, tol)                        \
  do {                                                     \
    auto c_ = ::mox::nn::testing::checks(t);               \
    EXPECT_NEAR(c_.first, (s), (tol)) << "sum of " #t;      \
    EXPECT_NEAR(c_.second, (w), (tol)) << "weighted " #t;   \
  } while (0)
