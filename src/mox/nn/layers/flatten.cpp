#include "mox/nn/layers/flatten.h"

#include <algorithm>

namespace mox::nn {

// Resolves negative dims against the input's rank.
static std::pair<int64_t, int64_t> flatten_range(int64_t start, int64_t end, const Shape& in) {
  int64_t r = std::max<int64_t>(int64_t(in.size()), 1);  // a 0-d tensor flattens to [1]
  int64_t s = start < 0 ? start + r : start, e = end < 0 ? end + r : end;
  MOX_CHECK(s >= 0 && s < r && e >= 0 && e < r && s <= e, "Flatten",
            "start_dim=" + std::to_string(start) + ", end_dim=" + std::to_string(end) +
                " do not fit input shape " + shape_str(in));
  return {s, e};
}

Tensor Flatten::forward(const Tensor& x) {
  auto [s, e] = flatten_range(start_dim, end_dim, x.shape());
  if (x.dim() == 0) return x.reshape({1});
  return x.flatten(s, e);
}

Shape Flatten::output_shape(const Shape& in) const {
  auto [s, e] = flatten_range(start_dim, end_dim, in);
  if (in.empty()) return {1};
  Shape out(in.begin(), in.begin() + s);
  int64_t merged = 1;
  for (int64_t d = s; d <= e; d++) {
    int64_t n = in[size_t(d)];
    merged = (n < 0 || merged < 0) ? -1 : merged * n;  // an unknown dim makes the merge unknown
  }
  out.push_back(merged);
  out.insert(out.end(), in.begin() + e + 1, in.end());
  return out;
}

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_dim) + ", end_dim=" + std::to_string(end_dim);
}

}  // namespace mox::nn
