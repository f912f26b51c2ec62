// Indexing kernels: index_select / index_add along one dim of contiguous tensors, and
// gather / scatter_add (PyTorch semantics, any dim, any strides). Index values are checked
// before any thread starts, so a bad index throws mox::Error instead of reading out of
// bounds. Additions are race-free and deterministic: each thread owns a disjoint set of
// destination elements and visits the index in order.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "mox/backend/cpu/convert.h"
#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/arg_checks.h"

namespace mox {

namespace {

using namespace arg_checks;

template <typename T> inline void add_into(T& d, T s) {
  if constexpr (cpu::is_half_v<T>)
    d = T(float(d) + float(s));
  else
    d = T(d + s);
}

// Checks every value of a 1-D contiguous index against [0, size).
void check_bounds_1d(const int64_t* idx, int64_t n, int64_t size, int64_t dim, const char* op) {
  for (int64_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= size)
      throw Error(op, "index " + std::to_string(idx[i]) + " is out of bounds for dim " +
                          std::to_string(dim) + " with size " + std::to_string(size));
}

// Visits the "lines" of `shape` along `dim`: every combination of the other coordinates.
// fn(line_offsets) receives, per operand, the element offset of the line's first element.
template <size_t N, typename Fn>
void for_each_line(const Shape& shape, int64_t dim, const std::array<const Shape*, N>& strides,
                   bool parallel, Fn&& fn) {
  const int64_t nd = int64_t(shape.size());
  const int64_t len = nd == 0 ? 1 : shape[dim];
  const int64_t lines = len == 0 ? 0 : shape_numel(shape) / len;
  auto offsets = [&](int64_t l, std::array<int64_t, N>& off) {
    off.fill(0);
    for (int64_t d = nd - 1; d >= 0; d--) {
      if (d == dim) continue;
      int64_t i = l % shape[d];
      l /= shape[d];
      for (size_t k = 0; k < N; k++) off[k] += i * (*strides[k])[d];
    }
  };
  int nt = parallel ? cpu::threads_for(lines * len) : 1;
  if (nt <= 1) {  // outside any OpenMP region, so that fn may throw
    for (int64_t l = 0; l < lines; l++) {
      std::array<int64_t, N> off;
      offsets(l, off);
      fn(off);
    }
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t l = 0; l < lines; l++) {
    std::array<int64_t, N> off;
    offsets(l, off);
    fn(off);
  }
}

// Checks every value of a strided index against [0, size).
void check_bounds_strided(const Tensor& index, int64_t dim, int64_t size, const char* op) {
  if (index.numel() == 0) return;
  const int64_t* idx = index.data<int64_t>();
  const int64_t len = index.dim() == 0 ? 1 : index.size(dim);
  const int64_t st = index.dim() == 0 ? 0 : index.stride(dim);
  std::array<const Shape*, 1> strides{&index.strides()};
  for_each_line<1>(index.shape(), dim, strides, false, [&](const std::array<int64_t, 1>& off) {
    for (int64_t j = 0; j < len; j++) {
      int64_t v = idx[off[0] + j * st];
      if (v < 0 || v >= size)
        throw Error(op, "index " + std::to_string(v) + " is out of bounds for dim " +
                            std::to_string(dim) + " with size " + std::to_string(size));
    }
  });
}

// d [outer, S, inner] += s [outer, K, inner] at idx [K]
template <typename T>
void index_add_impl(T* d, const T* s, const int64_t* idx, int64_t outer, int64_t S, int64_t K,
                    int64_t inner) {
  const int nmax = cpu::threads_for(outer * K * inner);
  // Threads own whole outer slabs when there are enough, else column ranges of inner;
  // either way the index is visited in order, so repeated indices sum deterministically.
  if (outer >= nmax) {
#pragma omp parallel for num_threads(nmax) schedule(static) if (nmax > 1)
    for (int64_t a = 0; a < outer; a++)
      for (int64_t k = 0; k < K; k++) {
        T* dr = d + (a * S + idx[k]) * inner;
        const T* sr = s + (a * K + k) * inner;
        for (int64_t i = 0; i < inner; i++) add_into(dr[i], sr[i]);
      }
    return;
  }
  const int nt = int(std::min<int64_t>(nmax, std::max<int64_t>(inner / 16, 1)));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), TT = omp_get_num_threads();
    const int64_t c0 = inner * t / TT, c1 = inner * (t + 1) / TT;
    for (int64_t a = 0; a < outer; a++)
      for (int64_t k = 0; k < K; k++) {
        T* dr = d + (a * S + idx[k]) * inner;
        const T* sr = s + (a * K + k) * inner;
        for (int64_t i = c0; i < c1; i++) add_into(dr[i], sr[i]);
      }
  }
}

}  // namespace

// src [outer, S, inner], index [K] -> out [outer, K, inner]
void CpuBackend::index_select(const Tensor& src, int64_t dim, const Tensor& index,
                              const Tensor& out) {
  const char* op = "index_select";
  check_index_tensor(index, op);
  check_contiguous(src, op, "source");
  check_contiguous(index, op, "index");
  check_contiguous(out, op, "output");
  check_same_dtype(src, out, op);
  int64_t outer, S, inner;
  split_dims(src, dim, outer, S, inner);
  const int64_t K = index.numel();
  if (out.numel() != outer * K * inner)
    throw Error(op, "output " + out.desc() + " does not hold " + std::to_string(K) +
                        " selected slices of " + src.desc());
  const int64_t* idx = index.data<int64_t>();
  check_bounds_1d(idx, K, S, dim, op);
  const size_t es = src.element_size(), row = size_t(inner) * es;
  const char* s = static_cast<const char*>(src.raw_data());
  char* o = static_cast<char*>(out.raw_data());
  int nt = cpu::threads_for(outer * K * inner);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t r = 0; r < outer * K; r++) {
    int64_t a = r / K, k = r % K;
    std::memcpy(o + size_t(r) * row, s + size_t(a * S + idx[k]) * row, row);
  }
}

// dst [outer, S, inner] += src [outer, K, inner] at index [K]
void CpuBackend::index_add(const Tensor& dst, int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "index_add";
  check_index_tensor(index, op);
  check_contiguous(dst, op, "destination");
  check_contiguous(src, op, "source");
  check_contiguous(index, op, "index");
  check_same_dtype(dst, src, op);
  int64_t outer, S, inner;
  split_dims(dst, dim, outer, S, inner);
  const int64_t K = index.numel();
  if (src.numel() != outer * K * inner)
    throw Error(op, "source " + src.desc() + " does not match " + std::to_string(K) +
                        " indexed slices of " + dst.desc());
  const int64_t* idx = index.data<int64_t>();
  check_bounds_1d(idx, K, S, dim, op);
  MOX_DISPATCH_ALL(dst.dtype(), T, index_add_impl<T>(dst.data<T>(), src.data<T>(), idx, outer, S, K, inner));
}

// out[..., j, ...] = src[..., index[..., j, ...], ...] along dim; out shaped like index
void CpuBackend::gather(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) {
  const char* op = "gather";
  check_index_tensor(index, op);
  check_same_dtype(src, out, op);
  check_index_shape(index, src, dim, false, op, "source");
  if (out.shape() != index.shape())
    throw Error(op, "output " + out.desc() + " must be shaped like index " + index.desc());
  const int64_t size = src.dim() == 0 ? 1 : src.size(dim);
  check_bounds_strided(index, dim, size, op);
  if (index.numel() == 0) return;
  const int64_t len = index.dim() == 0 ? 1 : index.size(dim);
  const int64_t ist = index.dim() == 0 ? 0 : index.stride(dim);
  const int64_t sst = src.dim() == 0 ? 0 : src.stride(dim);
  const int64_t ost = out.dim() == 0 ? 0 : out.stride(dim);
  const int64_t* idx = index.data<int64_t>();
  std::array<const Shape*, 3> strides{&index.strides(), &src.strides(), &out.strides()};
  MOX_DISPATCH_ALL(src.dtype(), T, {
    const T* s = src.data<T>();
    T* o = out.data<T>();
    for_each_line<3>(index.shape(), dim, strides, true, [&](const std::array<int64_t, 3>& off) {
      for (int64_t j = 0; j < len; j++) o[off[2] + j * ost] = s[off[1] + idx[off[0] + j * ist] * sst];
    });
  });
}

// dst[..., index[..., j, ...], ...] += src[..., j, ...] along dim, for positions of index
void CpuBackend::scatter_add(const Tensor& dst, int64_t dim, const Tensor& index,
                             const Tensor& src) {
  const char* op = "scatter_add";
  check_index_tensor(index, op);
  check_same_dtype(dst, src, op);
  check_index_shape(index, dst, dim, false, op, "destination");
  check_index_shape(index, src, dim, true, op, "source");
  const int64_t size = dst.dim() == 0 ? 1 : dst.size(dim);
  check_bounds_strided(index, dim, size, op);
  if (index.numel() == 0) return;
  const int64_t len = index.dim() == 0 ? 1 : index.size(dim);
  const int64_t ist = index.dim() == 0 ? 0 : index.stride(dim);
  const int64_t sst = src.dim() == 0 ? 0 : src.stride(dim);
  const int64_t dst_st = dst.dim() == 0 ? 0 : dst.stride(dim);
  const int64_t* idx = index.data<int64_t>();
  std::array<const Shape*, 3> strides{&index.strides(), &src.strides(), &dst.strides()};
  MOX_DISPATCH_ALL(dst.dtype(), T, {
    const T* s = src.data<T>();
    T* d = dst.data<T>();
    // Lines differ in a coordinate other than dim, so they never write the same element.
    for_each_line<3>(index.shape(), dim, strides, true, [&](const std::array<int64_t, 3>& off) {
      for (int64_t j = 0; j < len; j++)
        add_into(d[off[2] + idx[off[0] + j * ist] * dst_st], s[off[1] + j * sst]);
    });
  });
}

}  // namespace mox
