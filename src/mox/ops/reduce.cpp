// Reductions over any set of dims, with keepdim; max/min with indices; var/std/logsumexp.
#include <algorithm>

#include <cmath>

#include "mox/autograd/node.h"
#include "mox/ops/half.h"
#include "mox/ops/ops.h"

namespace mox {

namespace {

std::vector<int64_t> norm_dims(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<int64_t> d;
  if (dims.empty()) {
    for (int64_t i = 0; i < x.dim(); i++) d.push_back(i);
    return d;
  }
  for (int64_t v : dims) {
    int64_t n = normalize_dim(v, x.dim(), op);
    if (std::find(d.begin(), d.end(), n) != d.end())
      throw Error(op, "dim " + std::to_string(v) + " appears twice");
    d.push_back(n);
  }
  std::sort(d.begin(), d.end());
  return d;
}

Shape keep_shape(const Tensor& x, const std::vector<int64_t>& dims) {
  Shape s = x.shape();
  for (int64_t d : dims) s[d] = 1;
  return s;
}

Shape drop_shape(const Tensor& x, const std::vector<int64_t>& dims) {
  Shape s;
  for (int64_t i = 0; i < x.dim(); i++)
    if (std::find(dims.begin(), dims.end(), i) == dims.end()) s.push_back(x.size(i));
  return s;
}

Tensor reduce_forward(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, const char* name) {
  MOX_CHECK(x.defined(), name, "input is undefined");
  if (detail::via_f32(x)) {
    NoGradGuard ng;
    return reduce_forward(op, x.to(DType::F32), dims, name).to(x.dtype());
  }
  DType dt = x.dtype();
  Tensor src = x.detach();
  if ((op == ReduceOp::Sum || op == ReduceOp::Prod) && (dt == DType::U8 || dt == DType::I8 || dt == DType::I32)) {
    dt = DType::I64;  // like PyTorch: integer sums accumulate in i64
    src = src.to(dt);
  }
  if (op == ReduceOp::Mean && is_integral(dt)) {
    dt = DType::F32;
    src = src.to(dt);
  }
  if ((op == ReduceOp::Max || op == ReduceOp::Min) && x.numel() == 0)
    throw Error(name, "cannot take max/min of an empty tensor " + x.desc());
  Tensor out = empty(keep_shape(x, dims), TensorOptions(dt, x.device()));
  backend_for(x).reduce(op, src, dims, out);
  return out;
}

Tensor finish(const Tensor& out_keep, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return keepdim ? out_keep : out_keep.reshape(drop_shape(x, dims));
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  auto dims = norm_dims(x, dims_in, "sum");
  Tensor out = reduce_forward(ReduceOp::Sum, x, dims, "sum");
  if (any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    record(out, "sum", {x}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
      return {g.expand(in_shape)};
    });
  }
  return finish(out, x, dims, keepdim);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  auto dims = norm_dims(x, dims_in, "mean");
  Tensor out = reduce_forward(ReduceOp::Mean, x, dims, "mean");
  if (any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    double n = double(x.numel()) / double(std::max<int64_t>(out.numel(), 1));
    record(out, "mean", {x}, [in_shape, n](const Tensor& g) -> std::vector<Tensor> {
      return {mul(g, 1.0 / n).expand(in_shape)};
    });
  }
  return finish(out, x, dims, keepdim);
}

Tensor prod(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  auto dims = norm_dims(x, dims_in, "prod");
  Tensor out = reduce_forward(ReduceOp::Prod, x, dims, "prod");
  if (any_requires_grad({&x})) {
    Tensor xd = x.detach(), od = out.detach();
    std::vector<int64_t> ds = dims;
    record(out, "prod", {x}, [xd, od, ds](const Tensor& g) -> std::vector<Tensor> {
      // d prod / dx_i = prod_{j != i} x_j, computed without dividing by zero.
      Tensor z = eq(xd, 0.0).to(xd.dtype());
      Tensor nz_count = sum(z, ds, true);
      Tensor safe = where(eq(xd, 0.0), ones_like(xd), xd);
      Tensor prod_nz = prod(safe, ds, true);
      Tensor no_zero = div(od.expand(xd.shape()), safe);
      Tensor one_zero = where(eq(xd, 0.0), prod_nz.expand(xd.shape()), zeros_like(xd));
      Tensor r = where(eq(nz_count, 0.0).expand(xd.shape()), no_zero,
                       where(eq(nz_count, 1.0).expand(xd.shape()), one_zero, zeros_like(xd)));
      return {mul(g.expand(xd.shape()), r)};
    });
  }
  return finish(out, x, dims, keepdim);
}

static Tensor amaxmin(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim, const char* name) {
  auto dims = norm_dims(x, dims_in, name);
  Tensor out = reduce_forward(op, x, dims, name);
  if (any_requires_grad({&x})) {
    Tensor xd = x.detach(), od = out.detach();
    std::vector<int64_t> ds = dims;
    record(out, name, {x}, [xd, od, ds](const Tensor& g) -> std::vector<Tensor> {
      Tensor mask = eq(xd, od).to(g.dtype());
      Tensor count = sum(mask, ds, true);
      return {mul(div(g, count).expand(xd.shape()), mask)};
    });
  }
  return finish(out, x, dims, keepdim);
}
Tensor amax(const Tensor& x, const std::vector<int64_t>& d, bool k) { return amaxmin(ReduceOp::Max, x, d, k, "amax"); }
Tensor amin(const Tensor& x, const std::vector<int64_t>& d, bool k) { return amaxmin(ReduceOp::Min, x, d, k, "amin"); }

static ValuesIndices maxmin_dim(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim, const char* name) {
  MOX_CHECK(x.defined(), name, "input is undefined");
  if (x.dim() == 0) return {x, zeros({}, DType::I64)};
  dim = normalize_dim(dim, x.dim(), name);
  Tensor src = x.detach();
  if (detail::via_f32(x)) src = src.to(DType::F32);
  Shape ks = x.shape();
  ks[dim] = 1;
  Tensor vals = empty(ks, TensorOptions(src.dtype(), x.device()));
  Tensor idx = empty(ks, TensorOptions(DType::I64, x.device()));
  backend_for(x).reduce_arg(op, src, dim, vals, idx);
  if (src.dtype() != x.dtype()) vals = vals.to(x.dtype());
  if (any_requires_grad({&x})) {
    Tensor id = idx;
    Shape in_shape = x.shape();
    record(vals, name, {x}, [id, in_shape, dim](const Tensor& g) -> std::vector<Tensor> {
      return {scatter_add(zeros(in_shape, TensorOptions(g.dtype(), g.device())), dim, id, g)};
    });
  }
  if (!keepdim) {
    vals = vals.squeeze(dim);
    idx = idx.squeeze(dim);
  }
  return {vals, idx};
}
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) { return maxmin_dim(ReduceOp::Max, x, dim, keepdim, "max"); }
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) { return maxmin_dim(ReduceOp::Min, x, dim, keepdim, "min"); }
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return max(x, dim, keepdim).indices;
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return min(x, dim, keepdim).indices;
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims_in, int64_t correction, bool keepdim) {
  auto dims = norm_dims(x, dims_in, "var");
  int64_t n = 1;
  for (int64_t d : dims) n *= x.size(d);
  Tensor xf = is_floating(x.dtype()) ? x : x.to(DType::F32);
  Tensor m = mean(xf, dims, true);
  Tensor d = sub(xf, m);
  Tensor ss = sum(mul(d, d), dims, keepdim);
  double denom = double(std::max<int64_t>(n - correction, 0));
  return mul(ss, denom > 0 ? 1.0 / denom : NAN);
}

Tensor std_dev(const Tensor& x, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  return sqrt(var(x, dims, correction, keepdim));
}

Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  auto dims = norm_dims(x, dims_in, "logsumexp");
  Tensor m;
  {
    NoGradGuard ng;
    m = amax(x, dims, true);
    m = where(eq(abs(m), INFINITY), zeros_like(m), m);  // keep inf inputs from making NaN
  }
  Tensor r = add(log(sum(exp(sub(x, m)), dims, true)), m);
  return keepdim ? r : r.reshape(drop_shape(x, dims));
}

Tensor norm(const Tensor& x) { return sqrt(sum(mul(x, x))); }

}  // namespace mox
