#pragma once
// Small option types shared by the layers.
#include <cstdint>
#include <string>

#include "mox/util/arg.h"

namespace mox::nn {

// A (height, width) pair that a single number also converts to, like PyTorch's
// kernel_size=3 meaning (3, 3): Conv2d(3, 16, 3) or Conv2d(3, 16, {3, 5}).
struct Size2 {
  int64_t h = 0, w = 0;
  Size2(int64_t v) : h(v), w(v) {}  // NOLINT: implicit on purpose
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  bool operator==(const Size2&) const = default;
  // "(3, 5)", as PyTorch prints a conv kernel_size.
  std::string str() const {
    std::string s = "(";  // appended piecewise: GCC 12 warns (-Wrestrict) on the + chain
    s += std::to_string(h);
    s += ", ";
    s += std::to_string(w);
    s += ")";
    return s;
  }
};

}  // namespace mox::nn
