// Printing a tensor the way a person reads it: nested brackets, aligned columns, a
// common number format, and "..." in the middle of long dims (like torch's repr).
#include <cmath>
#include <cstdio>
#include <sstream>

#include "mox/tensor/tensor.h"

namespace mox {

namespace {

constexpr int64_t kEdge = 3;         // items shown at each end of an elided dim
constexpr int64_t kSummarize = 1000;  // elide when the tensor has more elements

struct Fmt {
  bool integral = false, sci = false;
  int width = 1;
  std::string operator()(double v) const {
    char buf[64];
    if (std::isnan(v)) snprintf(buf, sizeof buf, "nan");
    else if (std::isinf(v)) snprintf(buf, sizeof buf, v > 0 ? "inf" : "-inf");
    else if (integral) snprintf(buf, sizeof buf, "%lld", (long long)v);
    else if (sci) snprintf(buf, sizeof buf, "%.4e", v);
    else snprintf(buf, sizeof buf, "%.4f", v);
    std::string s = buf;
    if (int(s.size()) < width) s = std::string(width - s.size(), ' ') + s;
    return s;
  }
};

void emit(std::ostringstream& os, const std::vector<double>& v, const Shape& shape,
          const Shape& strides, int64_t off, size_t d, const Fmt& f, bool summarize, int indent) {
  if (d == shape.size()) {
    os << f(v[off]);
    return;
  }
  os << "[";
  int64_t n = shape[d];
  for (int64_t i = 0; i < n; i++) {
    if (summarize && n > 2 * kEdge && i == kEdge) {
      os << (d + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - kEdge;
    }
    emit(os, v, shape, strides, off + i * strides[d], d + 1, f, summarize, indent + 1);
    if (i + 1 < n) {
      if (d + 1 == shape.size()) os << ", ";
      else os << "," << std::string(shape.size() - d - 1, '\n') << std::string(indent + 1, ' ');
    }
  }
  os << "]";
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> v = to_vector<double>();
  Fmt f;
  f.integral = is_integral(dtype());
  double maxabs = 0, minabs = INFINITY;
  for (double x : v)
    if (std::isfinite(x)) {
      maxabs = std::max(maxabs, std::abs(x));
      if (x != 0) minabs = std::min(minabs, std::abs(x));
    }
  f.sci = !f.integral && (maxabs >= 1e5 || (minabs < 1e-4 && minabs != INFINITY));
  for (double x : v) f.width = std::max<int>(f.width, int(Fmt{f.integral, f.sci, 1}(x).size()));
  std::ostringstream os;
  os << "tensor(";
  emit(os, v, shape(), contiguous_strides(shape()), 0, 0, f, numel() > kSummarize, 7);
  os << ", dtype=" << dtype_name(dtype());
  if (!device().is_cpu()) os << ", device=" << device().str();
  if (requires_grad()) os << (grad_fn() ? ", grad_fn" : ", requires_grad=true");
  os << ")";
  return os.str();
}

}  // namespace mox
