#pragma once
// The argument checks the backends share (indexing, normalisation), so that the CPU and the
// GPU reject the same calls with the same messages.
#include <algorithm>
#include <string>

#include "mox/tensor/error.h"
#include "mox/tensor/tensor.h"

namespace mox::arg_checks {

// Splits a tensor's shape around `dim`: [outer, size(dim), inner].
inline void split_dims(const Tensor& t, int64_t dim, int64_t& outer, int64_t& size, int64_t& inner) {
  outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; d++) outer *= t.size(d);
  size = t.dim() == 0 ? 1 : t.size(dim);
  for (int64_t d = dim + 1; d < t.dim(); d++) inner *= t.size(d);
}

inline void check_index_tensor(const Tensor& index, const char* op) {
  if (index.dtype() != DType::I64) throw Error(op, std::string("index must be i64, got ") + index.desc());
}

inline void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  if (a.dtype() != b.dtype()) throw Error(op, "dtype mismatch: " + a.desc() + " vs " + b.desc());
}

inline void check_contiguous(const Tensor& t, const char* op, const char* what) {
  if (!t.is_contiguous()) throw Error(op, std::string(what) + " must be contiguous, got strided " + t.desc());
}

// gather/scatter require index.size(d) <= other.size(d) for the dims other than `dim`.
inline void check_index_shape(const Tensor& index, const Tensor& other, int64_t dim, bool all_dims,
                              const char* op, const char* what) {
  if (index.dim() != other.dim())
    throw Error(op, "index " + index.desc() + " must have as many dims as " + what + " " + other.desc());
  for (int64_t d = 0; d < index.dim(); d++)
    if ((all_dims || d != dim) && index.size(d) > other.size(d))
      throw Error(op, "index " + shape_str(index.shape()) + " is larger than " + what + " " +
                          shape_str(other.shape()) + " in dim " + std::to_string(d));
}

// Rows x n of a contiguous tensor over its last dim (a 1-D tensor is one row; the element
// types a backend supports are its own check).
inline void row_shape(const Tensor& x, const char* op, int64_t& rows, int64_t& n) {
  if (!x.is_contiguous()) throw Error(op, "expects a contiguous [rows, n] tensor, got strided " + x.desc());
  n = x.dim() == 0 ? 1 : x.size(-1);
  rows = n == 0 ? 0 : x.numel() / n;
}

// An optional tensor that must be contiguous with ref's dtype and element count.
inline void check_like(const Tensor& t, const Tensor& ref, const char* op, const char* what) {
  if (!t.defined()) return;
  if (t.dtype() != ref.dtype() || !t.is_contiguous() || t.numel() != ref.numel())
    throw Error(op, std::string(what) + " must be a contiguous " + dtype_name(ref.dtype()) +
                        " tensor with " + std::to_string(ref.numel()) + " elements, got " + t.desc());
}

}  // namespace mox::arg_checks
