// Views (share storage, no copy) and the ops that move data between shapes:
// reshape/view, transpose/permute, slice/select, expand, squeeze/unsqueeze, contiguous,
// clone, dtype/device casts, cat/stack/split/chunk, pad2d.
#include <numeric>

#include "mox/autograd/node.h"
#include "mox/ops/ops.h"

namespace mox {

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t n = std::max<int64_t>(ndim, 1);
  if (dim < -n || dim >= n)
    throw Error(op, "dimension " + std::to_string(dim) + " out of range for a " +
                        std::to_string(ndim) + "-D tensor");
  return dim < 0 ? dim + n : dim;
}

namespace {

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Tensor& x) {
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == -1) {
      if (infer >= 0) throw Error(op, "only one dimension can be -1 in " + shape_str(shape));
      infer = int64_t(i);
    } else if (s[i] < 0) {
      throw Error(op, "invalid dimension in shape " + shape_str(shape));
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      throw Error(op, "shape " + shape_str(shape) + " is invalid for input " + x.desc());
    s[infer] = numel / known;
  } else if (known != numel) {
    throw Error(op, "shape " + shape_str(shape) + " is invalid for input " + x.desc());
  }
  return s;
}

// Strides for viewing x with a new shape without copying, if possible (PyTorch's rule).
bool view_strides(const Tensor& x, const Shape& new_shape, Shape& out) {
  if (x.is_contiguous()) {
    out = contiguous_strides(new_shape);
    return true;
  }
  const Shape& os = x.shape();
  const Shape& ost = x.strides();
  out.assign(new_shape.size(), 0);
  int64_t view_d = int64_t(new_shape.size()) - 1;
  int64_t chunk_base_stride = ost.empty() ? 1 : ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = int64_t(os.size()) - 1; tensor_d >= 0; tensor_d--) {
    tensor_numel *= os[tensor_d];
    if (tensor_d == 0 || (os[tensor_d - 1] != 1 && ost[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (tensor_d > 0) {
        chunk_base_stride = ost[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  Shape s = infer_shape(shape, numel(), "view", *this);
  Shape st;
  if (!view_strides(*this, s, st))
    throw Error("view", "cannot view " + desc() + " with strides " + shape_str(strides()) +
                            " as " + shape_str(s) + "; use reshape (copies)");
  Tensor out = make_view(*this, s, st, offset());
  Shape in_shape = this->shape();
  record(out, "view", {*this}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {g.reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = infer_shape(shape, numel(), "reshape", *this);
  Shape st;
  if (view_strides(*this, s, st)) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = normalize_dim(d0, dim(), "transpose");
  d1 = normalize_dim(d1, dim(), "transpose");
  if (dim() == 0) return *this;
  Shape s = shape(), st = strides();
  std::swap(s[d0], s[d1]);
  std::swap(st[d0], st[d1]);
  Tensor out = make_view(*this, s, st, offset());
  record(out, "transpose", {*this}, [d0, d1](const Tensor& g) -> std::vector<Tensor> {
    return {g.transpose(d0, d1)};
  });
  return out;
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  MOX_CHECK(int64_t(dims.size()) == dim(), "permute",
            "got " + std::to_string(dims.size()) + " dims for " + desc());
  Shape s(dims.size()), st(dims.size());
  std::vector<int64_t> inv(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); i++) {
    int64_t d = normalize_dim(dims[i], dim(), "permute");
    MOX_CHECK(inv[d] < 0, "permute", "repeated dim " + std::to_string(d));
    inv[d] = int64_t(i);
    s[i] = shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = make_view(*this, s, st, offset());
  record(out, "permute", {*this}, [inv](const Tensor& g) -> std::vector<Tensor> {
    return {g.permute(inv)};
  });
  return out;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = normalize_dim(d, dim(), "slice");
  MOX_CHECK(step > 0, "slice", "step must be positive");
  int64_t n = size(d);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = make_view(*this, s, st, offset() + start * strides()[d]);
  Shape in_shape = shape();
  DType dt = dtype();
  Device dev = device();
  record(out, "slice", {*this}, [=](const Tensor& g) -> std::vector<Tensor> {
    Tensor gi = zeros(in_shape, TensorOptions(dt, dev));
    gi.slice(d, start, end, step).copy_(g);
    return {gi};
  });
  return out;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = normalize_dim(d, dim(), "select");
  int64_t n = size(d);
  if (index < -n || index >= n)
    throw Error("select", "index " + std::to_string(index) + " out of range for dim " +
                              std::to_string(d) + " of " + desc());
  if (index < 0) index += n;
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& target) const {
  MOX_CHECK(int64_t(target.size()) >= dim(), "expand",
            "cannot expand " + desc() + " to fewer dims " + shape_str(target));
  const int64_t lead = int64_t(target.size()) - dim();
  Shape s(target.size()), st(target.size());
  for (int64_t i = 0; i < int64_t(target.size()); i++) {
    int64_t src = i - lead;
    int64_t want = target[i];
    if (src < 0) {
      MOX_CHECK(want >= 0, "expand", "-1 not allowed for new leading dims");
      s[i] = want;
      st[i] = 0;
    } else {
      int64_t have = shape()[src];
      if (want == -1) want = have;
      if (have == want) {
        s[i] = have;
        st[i] = strides()[src];
      } else if (have == 1) {
        s[i] = want;
        st[i] = 0;
      } else {
        throw Error("expand", "cannot expand " + desc() + " to " + shape_str(target));
      }
    }
  }
  if (s == shape()) return *this;
  Tensor out = make_view(*this, s, st, offset());
  Shape in_shape = shape();
  record(out, "expand", {*this}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(g, in_shape)};
  });
  return out;
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  d = normalize_dim(d, dim(), "squeeze");
  if (size(d) != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  return reshape(s);
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t n : shape())
    if (n != 1) s.push_back(n);
  return s == shape() ? *this : reshape(s);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = normalize_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return reshape(s);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = normalize_dim(start, dim(), "flatten");
  end = normalize_dim(end, dim(), "flatten");
  MOX_CHECK(start <= end, "flatten", "start_dim must be <= end_dim");
  Shape s;
  for (int64_t i = 0; i < start; i++) s.push_back(size(i));
  int64_t m = 1;
  for (int64_t i = start; i <= end; i++) m *= size(i);
  s.push_back(m);
  for (int64_t i = end + 1; i < dim(); i++) s.push_back(size(i));
  return reshape(s);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), TensorOptions(dtype(), device()));
  backend_for(*this).copy(*this, out);
  record(out, "clone", {*this}, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(shape(), TensorOptions(dt, device()));
  backend_for(*this).copy(*this, out);
  if (is_floating(dt) && is_floating(dtype())) {
    DType src = dtype();
    record(out, "to", {*this}, [src](const Tensor& g) -> std::vector<Tensor> { return {g.to(src)}; });
  }
  return out;
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), TensorOptions(dtype(), dev));
  if (dev.is_cpu()) {
    backend_for(src).copy_to_host(src, out.raw_data());
  } else if (src.device().is_cpu()) {
    backend_for(out).copy_from_host(src.raw_data(), out);
  } else {
    Tensor host = src.to(kCPU);
    backend_for(out).copy_from_host(host.raw_data(), out);
  }
  Device from = device();
  record(out, "to_device", {*this}, [from](const Tensor& g) -> std::vector<Tensor> { return {g.to(from)}; });
  return out;
}

// ---------- free-function forms ----------
Tensor reshape(const Tensor& x, const Shape& s) { return x.reshape(s); }
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) { return x.transpose(d0, d1); }
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) { return x.permute(dims); }
Tensor expand(const Tensor& x, const Shape& s) { return x.expand(s); }
Tensor broadcast_to(const Tensor& x, const Shape& s) { return x.expand(s); }
Tensor contiguous(const Tensor& x) { return x.contiguous(); }
Tensor clone(const Tensor& x) { return x.clone(); }
Tensor cast(const Tensor& x, DType dt) { return x.to(dt); }

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; i++) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw Error(op, "shapes " + shape_str(a) + " and " + shape_str(b) + " cannot be broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - int64_t(shape.size());
  MOX_CHECK(lead >= 0, "sum_to", "cannot sum " + g.desc() + " to " + shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < g.dim(); i++) {
    if (i < lead) dims.push_back(i);
    else if (shape[i - lead] == 1 && g.size(i) != 1) dims.push_back(i);
  }
  Tensor r = dims.empty() ? g : sum(g, dims, true);
  if (lead > 0 || r.shape() != shape) r = r.reshape(shape);
  return r;
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  MOX_CHECK(!xs.empty(), "cat", "needs at least one tensor");
  const Tensor& f = xs[0];
  dim = normalize_dim(dim, f.dim(), "cat");
  Shape s = f.shape();
  int64_t total = 0;
  DType dt = f.dtype();
  for (const Tensor& x : xs) dt = promote(dt, x.dtype());
  for (size_t i = 0; i < xs.size(); i++) {
    const Tensor& x = xs[i];
    MOX_CHECK(x.dim() == f.dim(), "cat", "tensor " + std::to_string(i) + " is " + x.desc() +
                                             ", expected " + std::to_string(f.dim()) + " dims");
    for (int64_t d = 0; d < f.dim(); d++)
      if (d != dim && x.size(d) != f.size(d))
        throw Error("cat", "tensor " + std::to_string(i) + " is " + x.desc() + ", incompatible with " +
                               f.desc() + " outside dim " + std::to_string(dim));
    total += x.size(dim);
  }
  s[dim] = total;
  Tensor out = empty(s, TensorOptions(dt, f.device()));
  int64_t off = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) {
    Tensor dst = out.detach().narrow(dim, off, x.size(dim));
    backend_for(out).copy(x.to(dt).detach(), dst);
    off += x.size(dim);
    sizes.push_back(x.size(dim));
  }
  record(out, "cat", xs, [sizes, dim](const Tensor& g) -> std::vector<Tensor> {
    std::vector<Tensor> gs;
    int64_t o = 0;
    for (int64_t n : sizes) {
      gs.push_back(g.narrow(dim, o, n));
      o += n;
    }
    return gs;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  MOX_CHECK(!xs.empty(), "stack", "needs at least one tensor");
  dim = normalize_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> us;
  for (size_t i = 0; i < xs.size(); i++) {
    MOX_CHECK(xs[i].shape() == xs[0].shape(), "stack",
              "tensor " + std::to_string(i) + " is " + xs[i].desc() + ", expected " + xs[0].desc());
    us.push_back(xs[i].unsqueeze(dim));
  }
  return cat(us, dim);
}

namespace {

// Backward of split/chunk/unbind: the pieces share this one node, so the engine gathers all
// their gradients and the input's gradient is assembled once (O(size), not O(pieces*size)).
// Pieces that received no gradient count as zeros.
class SplitBackward : public Node {
 public:
  SplitBackward(std::vector<Shape> piece_shapes, int64_t dim, bool squeezed, DType dtype, Device device)
      : shapes_(std::move(piece_shapes)), dim_(dim), squeezed_(squeezed), dtype_(dtype), device_(device) {}
  std::string name() const override { return squeezed_ ? "unbind" : "split"; }
  uint32_t num_outputs() const override { return uint32_t(shapes_.size()); }
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override {
    std::vector<Tensor> gs(shapes_.size());
    for (size_t i = 0; i < shapes_.size(); i++)
      gs[i] = i < grads.size() && grads[i].defined() ? grads[i] : zeros(shapes_[i], TensorOptions(dtype_, device_));
    return {squeezed_ ? stack(gs, dim_) : cat(gs, dim_)};
  }

 private:
  std::vector<Shape> shapes_;
  int64_t dim_;
  bool squeezed_;
  DType dtype_;
  Device device_;
};

std::vector<Tensor> split_pieces(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim, bool squeeze,
                                 const char* op) {
  dim = normalize_dim(dim, x.dim(), op);
  int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
  MOX_CHECK(total == x.size(dim), op, "sizes sum to " + std::to_string(total) + " but dim " +
                                          std::to_string(dim) + " of " + x.desc() + " is " +
                                          std::to_string(x.size(dim)));
  std::vector<Tensor> pieces;
  std::vector<Shape> shapes;
  {
    NoGradGuard ng;  // plain views; the shared node is attached below
    Tensor base = x.detach();
    int64_t off = 0;
    for (int64_t n : sizes) {
      Tensor p = squeeze ? base.select(dim, off) : base.narrow(dim, off, n);
      shapes.push_back(p.shape());
      pieces.push_back(p);
      off += n;
    }
  }
  if (any_requires_grad({&x}))
    record_multi(pieces, std::make_shared<SplitBackward>(shapes, dim, squeeze, x.dtype(), x.device()), {x});
  return pieces;
}

}  // namespace

std::vector<Tensor> split_sizes(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  return split_pieces(x, sizes, dim, false, "split");
}

std::vector<Tensor> unbind(const Tensor& x, int64_t dim) {
  dim = normalize_dim(dim, x.dim(), "unbind");
  return split_pieces(x, std::vector<int64_t>(size_t(x.size(dim)), 1), dim, true, "unbind");
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  MOX_CHECK(split_size > 0, "split", "split_size must be positive");
  dim = normalize_dim(dim, x.dim(), "split");
  std::vector<int64_t> sizes;
  for (int64_t o = 0; o < x.size(dim); o += split_size) sizes.push_back(std::min(split_size, x.size(dim) - o));
  return split_sizes(x, sizes, dim);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  MOX_CHECK(chunks > 0, "chunk", "chunks must be positive");
  dim = normalize_dim(dim, x.dim(), "chunk");
  int64_t n = x.size(dim);
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), dim);
}

Tensor pad2d(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right, double value) {
  MOX_CHECK(x.dim() >= 2, "pad2d", "needs at least 2 dims, got " + x.desc());
  MOX_CHECK(top >= 0 && bottom >= 0 && left >= 0 && right >= 0, "pad2d", "padding must be >= 0");
  Shape s = x.shape();
  int64_t H = s[s.size() - 2], W = s[s.size() - 1];
  s[s.size() - 2] = H + top + bottom;
  s[s.size() - 1] = W + left + right;
  Tensor out = full(s, value, TensorOptions(x.dtype(), x.device()));
  Tensor inner = out.detach().narrow(-2, top, H).narrow(-1, left, W);
  backend_for(out).copy(x.detach(), inner);
  record(out, "pad2d", {x}, [=](const Tensor& g) -> std::vector<Tensor> {
    return {g.narrow(-2, top, H).narrow(-1, left, W)};
  });
  return out;
}

}  // namespace mox
