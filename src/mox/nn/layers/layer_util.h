#pragma once
// Helpers the layers share: Python-style printing of options for extra_repr(), and the
// output-size rules of convolution and pooling (PyTorch's formulas, so that output_shape
// agrees with what the ops compute).
#include <charconv>
#include <cstdint>
#include <string>

#include "mox/tensor/error.h"
#include "mox/tensor/tensor.h"

namespace mox::nn {

// 0.01 -> "0.01", 1 -> "1.0" (Python's repr of a float).
inline std::string repr_float(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eni") == std::string::npos) s += ".0";
  return s;
}
inline std::string repr_bool(bool b) { return b ? "True" : "False"; }

// Output length of a sliding window over n (with -1 meaning unknown), as in PyTorch's
// conv and pooling shape rules; throws when the window does not fit.
inline int64_t window_out(int64_t n, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode,
                          const std::string& where, const Shape& input) {
  if (n < 0) return -1;
  int64_t span = n + 2 * p - d * (k - 1) - 1;
  int64_t out;
  if (span < 0) {
    out = 0;
  } else {
    out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    // The last window must start inside the input or its left padding.
    if (ceil_mode && (out - 1) * s >= n + p) out--;
  }
  MOX_CHECK(out > 0, where,
            "input " + shape_str(input) + " is too small for kernel " + std::to_string(k) +
                " (stride " + std::to_string(s) + ", padding " + std::to_string(p) +
                ", dilation " + std::to_string(d) + ")");
  return out;
}

// Throws unless x has one of the allowed ranks.
inline void check_rank(const Shape& s, int64_t lo, int64_t hi, const std::string& where,
                       const char* expected) {
  int64_t r = int64_t(s.size());
  MOX_CHECK(r >= lo && r <= hi, where,
            std::string("expected input ") + expected + ", got shape " + shape_str(s));
}

// Throws unless s[dim] (not -1) equals want.
inline void check_size(const Shape& s, int64_t dim, int64_t want, const std::string& where,
                       const char* what) {
  int64_t got = s[size_t(dim)];
  MOX_CHECK(got == want || got == -1, where,
            std::string("expected ") + what + " = " + std::to_string(want) + ", got input shape " +
                shape_str(s));
}

}  // namespace mox::nn
