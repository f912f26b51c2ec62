#pragma once
// Strided N-ary iteration for CPU kernels: operands share one shape (already broadcast),
// each with its own strides (0 on broadcast dims). Dims are coalesced so that the common
// all-contiguous case becomes one flat loop; work is split across OpenMP threads.
#include <omp.h>

#include <array>
#include <cstdint>
#include <vector>

#include "mox/tensor/tensor.h"

namespace mox::cpu {

// Minimum elements per thread before a loop goes parallel (threads cost ~1-5 us to wake).
constexpr int64_t kGrain = 32768;

inline int threads_for(int64_t work, int64_t grain = kGrain) {
  if (work < 2 * grain) return 1;
  int t = omp_get_max_threads();
  int64_t by_work = work / grain;
  return int(std::min<int64_t>(t, by_work));
}

template <size_t N>
struct StridedLayout {
  std::vector<int64_t> shape;                 // coalesced, outermost first
  std::array<std::vector<int64_t>, N> strides;  // in elements, per operand
};

// Merges adjacent dims whenever every operand is contiguous across them.
template <size_t N>
StridedLayout<N> coalesce(const Shape& shape, const std::array<const Shape*, N>& strides) {
  StridedLayout<N> L;
  for (size_t d = 0; d < shape.size(); d++) {
    if (shape[d] == 1) continue;
    bool merge = !L.shape.empty();
    if (merge)
      for (size_t k = 0; k < N; k++)
        if (L.strides[k].back() != (*strides[k])[d] * shape[d]) merge = false;
    if (merge) {
      L.shape.back() *= shape[d];
      for (size_t k = 0; k < N; k++) L.strides[k].back() = (*strides[k])[d];
    } else {
      L.shape.push_back(shape[d]);
      for (size_t k = 0; k < N; k++) L.strides[k].push_back((*strides[k])[d]);
    }
  }
  if (L.shape.empty()) {  // scalar
    L.shape.push_back(1);
    for (size_t k = 0; k < N; k++) L.strides[k].push_back(0);
  }
  return L;
}

// Calls fn(ptrs, inner_strides, n) over rows of the innermost dim; ptrs are byte pointers
// advanced per operand by elem_sizes. Rows are distributed across threads.
template <size_t N, typename Fn>
void for_each_row(const Shape& shape, const std::array<const Shape*, N>& strides,
                  std::array<char*, N> base, const std::array<int64_t, N>& elem_size, Fn&& fn) {
  StridedLayout<N> L = coalesce<N>(shape, strides);
  const int64_t nd = int64_t(L.shape.size());
  const int64_t inner = L.shape[nd - 1];
  int64_t rows = 1;
  for (int64_t d = 0; d < nd - 1; d++) rows *= L.shape[d];
  std::array<int64_t, N> inner_stride;
  for (size_t k = 0; k < N; k++) inner_stride[k] = L.strides[k][nd - 1];

  auto row_ptrs = [&](int64_t r, std::array<char*, N>& p) {
    for (size_t k = 0; k < N; k++) p[k] = base[k];
    for (int64_t d = nd - 2; d >= 0; d--) {
      int64_t i = r % L.shape[d];
      r /= L.shape[d];
      for (size_t k = 0; k < N; k++) p[k] += i * L.strides[k][d] * elem_size[k];
    }
  };
  int nt = threads_for(rows * inner);
  if (rows == 1 && nt > 1) {  // one long row: split it
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      int64_t chunk = (inner + T - 1) / T;
      chunk = (chunk + 15) / 16 * 16;
      int64_t lo = std::min(inner, t * chunk), hi = std::min(inner, lo + chunk);
      if (hi > lo) {
        std::array<char*, N> p;
        for (size_t k = 0; k < N; k++) p[k] = base[k] + lo * inner_stride[k] * elem_size[k];
        fn(p, inner_stride, hi - lo);
      }
    }
    return;
  }
  auto run_row = [&](int64_t r) {
    std::array<char*, N> p;
    row_ptrs(r, p);
    fn(p, inner_stride, inner);
  };
  if (nt == 1) {  // no parallel region at all: even a serialised one costs ~1 us in libgomp
    for (int64_t r = 0; r < rows; r++) run_row(r);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < rows; r++) run_row(r);
}

}  // namespace mox::cpu
