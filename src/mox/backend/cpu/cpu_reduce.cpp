// Reductions. The input is viewed as blocks of kept (K) and reduced (R) dims; the common
// layouts [R], [K,R] (rows), [R,K] (columns, e.g. bias gradients) and [K,R,K] run
// directly on the data; any other layout is first made contiguous as [K..., R...].
#include <limits>
#include <numeric>

#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/cpu/simd.h"
#include "mox/ops/ops.h"

namespace mox {

using namespace cpu;

namespace {

template <typename T> struct Acc { using type = T; };
template <> struct Acc<float> { using type = float; };
template <> struct Acc<int32_t> { using type = int64_t; };
template <> struct Acc<int8_t> { using type = int64_t; };
template <> struct Acc<uint8_t> { using type = int64_t; };

template <typename T> MOX_INLINE T init_value(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: case ReduceOp::Mean: return T(0);
    case ReduceOp::Prod: return T(1);
    case ReduceOp::Max:
      return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                  : std::numeric_limits<T>::lowest();
    case ReduceOp::Min:
      return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity()
                                                  : std::numeric_limits<T>::max();
  }
  return T(0);
}

template <typename T> MOX_INLINE T combine(ReduceOp op, T a, T b) {
  switch (op) {
    case ReduceOp::Sum: case ReduceOp::Mean: return a + b;
    case ReduceOp::Prod: return a * b;
    case ReduceOp::Max: return (a != a || a > b) ? a : b;  // NaN propagates
    case ReduceOp::Min: return (a != a || a < b) ? a : b;
  }
  return a;
}

// Reduce a contiguous run of n values (vectorised with 16 partial results).
template <typename T>
MOX_INLINE T reduce_run(ReduceOp op, const T* x, int64_t n) {
  constexpr int L = 16;
  T acc[L];
  for (int l = 0; l < L; l++) acc[l] = init_value<T>(op);
  int64_t i = 0;
  switch (op) {
    case ReduceOp::Sum: case ReduceOp::Mean:
      for (; i + L <= n; i += L)
        for (int l = 0; l < L; l++) acc[l] += x[i + l];
      break;
    case ReduceOp::Prod:
      for (; i + L <= n; i += L)
        for (int l = 0; l < L; l++) acc[l] *= x[i + l];
      break;
    case ReduceOp::Max:
      for (; i + L <= n; i += L)
        for (int l = 0; l < L; l++) acc[l] = (x[i + l] > acc[l] || x[i + l] != x[i + l]) ? x[i + l] : acc[l];
      break;
    case ReduceOp::Min:
      for (; i + L <= n; i += L)
        for (int l = 0; l < L; l++) acc[l] = (x[i + l] < acc[l] || x[i + l] != x[i + l]) ? x[i + l] : acc[l];
      break;
  }
  T r = init_value<T>(op);
  for (int l = 0; l < L; l++) r = combine(op, r, acc[l]);
  for (; i < n; i++) r = combine(op, r, x[i]);
  return r;
}

// out[j] op= x[j] for a row of n values.
template <typename T>
MOX_INLINE void combine_row(ReduceOp op, T* __restrict out,
                                                       const T* __restrict x, int64_t n) {
  switch (op) {
    case ReduceOp::Sum: case ReduceOp::Mean:
      for (int64_t j = 0; j < n; j++) out[j] += x[j];
      break;
    case ReduceOp::Prod:
      for (int64_t j = 0; j < n; j++) out[j] *= x[j];
      break;
    case ReduceOp::Max:
      for (int64_t j = 0; j < n; j++) out[j] = (x[j] > out[j] || x[j] != x[j]) ? x[j] : out[j];
      break;
    case ReduceOp::Min:
      for (int64_t j = 0; j < n; j++) out[j] = (x[j] < out[j] || x[j] != x[j]) ? x[j] : out[j];
      break;
  }
}

MOX_SIMD float reduce_run_f32(ReduceOp op, const float* x, int64_t n) { return reduce_run<float>(op, x, n); }
MOX_SIMD void combine_row_f32(ReduceOp op, float* out, const float* x, int64_t n) {
  combine_row<float>(op, out, x, n);
}
template <typename T> T run(ReduceOp op, const T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>) return reduce_run_f32(op, x, n);
  else return reduce_run<T>(op, x, n);
}
template <typename T> void rows(ReduceOp op, T* out, const T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>) combine_row_f32(op, out, x, n);
  else combine_row<T>(op, out, x, n);
}

// x viewed as [A, R, B] contiguous; out [A, B].
template <typename T>
void reduce_arb(ReduceOp op, const T* x, T* out, int64_t A, int64_t R, int64_t B) {
  const int64_t total = A * R * B;
  if (B == 1) {
    if (A == 1) {  // everything into one value: split R across threads, combine in order
      int nt = threads_for(R);
      std::vector<T> part(nt, init_value<T>(op));
#pragma omp parallel num_threads(nt) if (nt > 1)
      {
        int t = omp_get_thread_num();
        int64_t lo = R * t / nt, hi = R * (t + 1) / nt;
        part[t] = run<T>(op, x + lo, hi - lo);
      }
      T r = init_value<T>(op);
      for (T p : part) r = combine(op, r, p);
      out[0] = r;
      return;
    }
    int nt = threads_for(total);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t a = 0; a < A; a++) out[a] = run<T>(op, x + a * R, R);
    return;
  }
  // Column reductions: accumulate whole rows of B values.
  int nt = threads_for(total);
  if (A >= nt || B < 64 * nt) {
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t a = 0; a < A; a++) {
      T* o = out + a * B;
      for (int64_t j = 0; j < B; j++) o[j] = init_value<T>(op);
      for (int64_t r = 0; r < R; r++) rows<T>(op, o, x + (a * R + r) * B, B);
    }
  } else {  // few A, wide B: split the columns
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num();
      int64_t lo = B * t / nt, hi = B * (t + 1) / nt;
      for (int64_t a = 0; a < A; a++) {
        T* o = out + a * B;
        for (int64_t j = lo; j < hi; j++) o[j] = init_value<T>(op);
        for (int64_t r = 0; r < R; r++) rows<T>(op, o + lo, x + (a * R + r) * B + lo, hi - lo);
      }
    }
  }
}

// Index of the max (min) of each row of n values; the first NaN wins, like PyTorch.
template <typename T>
void arg_rows(const T* s, T* v, int64_t* ix, int64_t rows_n, int64_t n, bool is_max) {
  int nt = threads_for(rows_n * n);
#pragma omp parallel for num_threads(nt) if (nt > 1)
  for (int64_t r = 0; r < rows_n; r++) {
    const T* row = s + r * n;
    T best = row[0];
    int64_t bi = 0;
    if (best == best) {
      for (int64_t j = 1; j < n; j++) {
        T val = row[j];
        if (val != val) { best = val; bi = j; break; }
        if (is_max ? val > best : val < best) { best = val; bi = j; }
      }
    }
    v[r] = best;
    ix[r] = bi;
  }
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes,
                        const Tensor& out) {
  MOX_CHECK(out.is_contiguous() && out.dtype() == x.dtype(), "reduce", "bad output " + out.desc());
  const int64_t nd = x.dim();
  std::vector<bool> red(nd, false);
  for (int64_t a : axes) red[a] = true;
  int64_t R = 1;
  for (int64_t d = 0; d < nd; d++)
    if (red[d]) R *= x.size(d);
  if (out.numel() == 0) return;

  Tensor src = x;
  // Blocks of consecutive same-kind dims (size-1 dims ignored).
  std::vector<std::pair<bool, int64_t>> blocks;
  if (x.is_contiguous()) {
    for (int64_t d = 0; d < nd; d++) {
      if (x.size(d) == 1) continue;
      if (!blocks.empty() && blocks.back().first == red[d])
        blocks.back().second *= x.size(d);
      else
        blocks.push_back({red[d], x.size(d)});
    }
  }
  int64_t A = 1, B = 1;
  bool direct = x.is_contiguous();
  if (direct) {
    // Accept K? R? K? patterns.
    size_t i = 0;
    if (i < blocks.size() && !blocks[i].first) A = blocks[i++].second;
    if (i < blocks.size() && blocks[i].first) i++;
    if (i < blocks.size() && !blocks[i].first) B = blocks[i++].second;
    direct = i == blocks.size();
  }
  if (!direct) {
    std::vector<int64_t> perm;
    for (int64_t d = 0; d < nd; d++)
      if (!red[d]) perm.push_back(d);
    for (int64_t d = 0; d < nd; d++)
      if (red[d]) perm.push_back(d);
    src = x.detach().permute(perm).contiguous();
    A = out.numel();
    B = 1;
  }
  if (R == 0) {  // empty reduction: identity value (sum 0, prod 1); max/min rejected by ops
    fill(out, op == ReduceOp::Prod ? 1.0 : 0.0);
    return;
  }
  MOX_DISPATCH_COMPUTE(x.dtype(), T, "reduce", {
    reduce_arb<T>(op, static_cast<const T*>(src.raw_data()), static_cast<T*>(out.raw_data()), A, R, B);
    if (op == ReduceOp::Mean) {
      T* o = static_cast<T*>(out.raw_data());
      for (int64_t i = 0; i < out.numel(); i++) o[i] = T(double(o[i]) / double(R));
    }
  });
}

void CpuBackend::reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& out,
                            const Tensor& indices) {
  MOX_CHECK(op == ReduceOp::Max || op == ReduceOp::Min, "reduce_arg", "only max/min have indices");
  MOX_CHECK(indices.dtype() == DType::I64, "reduce_arg", "indices must be i64");
  const int64_t n = x.size(dim);
  MOX_CHECK(n > 0, "max/min", "cannot reduce over an empty dimension of " + x.desc());
  Tensor src = x.detach().transpose(dim, -1).contiguous();
  const int64_t rows_n = src.numel() / n;
  // out/indices are laid out like x with dim of size 1; as rows they follow the transposed
  // order, so compute into row buffers and copy into place through the same transpose.
  Tensor vals = empty({rows_n}, TensorOptions(x.dtype()));
  Tensor idx = empty({rows_n}, TensorOptions(DType::I64));
  MOX_DISPATCH_COMPUTE(x.dtype(), T, "reduce_arg", {
    arg_rows<T>(static_cast<const T*>(src.raw_data()), static_cast<T*>(vals.raw_data()),
                static_cast<int64_t*>(idx.raw_data()), rows_n, n, op == ReduceOp::Max);
  });
  Shape tshape = src.shape();
  tshape.back() = 1;
  copy(vals.view(tshape).transpose(dim, -1), out);
  copy(idx.view(tshape).transpose(dim, -1), indices);
}

}  // namespace mox
