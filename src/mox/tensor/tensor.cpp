#include "mox/tensor/tensor.h"

#include <cmath>
#include <cstring>

#include "mox/autograd/node.h"
#include "mox/backend/backend.h"
#include "mox/ops/ops.h"
#include "mox/tensor/generator.h"

namespace mox {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = int64_t(s.size()) - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

int64_t Tensor::size(int64_t d) const { return impl_->shape[normalize_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return impl_->strides[normalize_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; i--) {
    int64_t n = impl_->shape[i];
    if (n == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= n;
  }
  return true;
}

std::string Tensor::desc() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype())) + shape_str(shape());
}

void* Tensor::raw_data() const {
  MOX_CHECK(defined(), "data", "tensor is undefined");
  if (!impl_->storage) return nullptr;
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * int64_t(element_size());
}

void Tensor::check_dtype(DType expected, const char* where) const {
  if (dtype() != expected)
    throw Error(where, std::string("expected dtype ") + dtype_name(expected) + ", got " + desc());
}

template <typename T> T Tensor::item() const {
  MOX_CHECK(numel() == 1, "item", "tensor with " + std::to_string(numel()) +
                                      " elements cannot be converted to a scalar: " + desc());
  return to_vector<T>()[0];
}

template <typename T> std::vector<T> Tensor::to_vector() const {
  Tensor c = to(kCPU).to(dtype_of<T>()).contiguous();
  std::vector<T> v(size_t(c.numel()));
  if (!v.empty()) std::memcpy(v.data(), c.raw_data(), v.size() * sizeof(T));
  return v;
}

#define MOX_INSTANTIATE(T)                              \
  template T Tensor::item<T>() const;                   \
  template std::vector<T> Tensor::to_vector<T>() const; \
  template Tensor from_vector<T>(const std::vector<T>&, const Shape&, TensorOptions);
MOX_INSTANTIATE(float)
MOX_INSTANTIATE(double)
MOX_INSTANTIATE(bf16)
MOX_INSTANTIATE(f16)
MOX_INSTANTIATE(int64_t)
MOX_INSTANTIATE(int32_t)
MOX_INSTANTIATE(int8_t)
MOX_INSTANTIATE(uint8_t)
#undef MOX_INSTANTIATE

Tensor& Tensor::requires_grad_(bool r) {
  if (r && !is_floating(dtype()))
    throw Error("requires_grad_", "only floating-point tensors can require grad, got " + desc());
  if (!r && !is_leaf())
    throw Error("requires_grad_", "cannot turn off requires_grad on a non-leaf tensor");
  impl_->requires_grad = r;
  return *this;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->offset = impl_->offset;
  impl->dtype = impl_->dtype;
  return Tensor(impl);
}

static void check_inplace(const Tensor& t, const char* op) {
  if (grad_enabled() && t.requires_grad())
    throw Error(op, "in-place write to a tensor that requires grad (" + t.desc() +
                        "); wrap it in NoGradGuard or use the out-of-place op");
}

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  backend_for(*this).fill(*this, value);
  bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  Tensor s = src;
  if (s.shape() != shape()) s = mox::expand(src.detach(), shape());
  if (s.device() != device()) s = s.to(device());
  backend_for(*this).copy(s, *this);
  bump_version();
  return *this;
}

Tensor& Tensor::uniform_(double lo, double hi, Generator* gen) {
  check_inplace(*this, "uniform_");
  backend_for(*this).uniform(*this, lo, hi, gen ? *gen : default_generator());
  bump_version();
  return *this;
}

Tensor& Tensor::normal_(double mean, double std, Generator* gen) {
  check_inplace(*this, "normal_");
  backend_for(*this).normal(*this, mean, std, gen ? *gen : default_generator());
  bump_version();
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  NoGradGuard ng;
  Tensor o = alpha == 1.0 ? other : mox::mul(other, alpha);
  Tensor s = o.shape() == shape() ? o : mox::expand(o, shape());
  backend_for(*this).binary(BinaryOp::Add, *this, s, *this);
  bump_version();
  return *this;
}

Tensor& Tensor::mul_(double s) {
  check_inplace(*this, "mul_");
  backend_for(*this).unary(UnaryOp::MulScalar, *this, *this, {s, 0});
  bump_version();
  return *this;
}

Tensor Tensor::operator-() const { return neg(*this); }
Tensor Tensor::sum() const { return mox::sum(*this); }
Tensor Tensor::mean() const { return mox::mean(*this); }
Tensor Tensor::matmul(const Tensor& o) const { return mox::matmul(*this, o); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
Tensor operator+(double a, const Tensor& b) { return add(b, a); }
Tensor operator-(double a, const Tensor& b) { return rsub(b, a); }
Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
Tensor operator/(double a, const Tensor& b) { return rdiv(b, a); }

// ---------- factories ----------
Tensor empty(const Shape& shape, TensorOptions opt) {
  for (int64_t d : shape)
    MOX_CHECK(d >= 0, "empty", "negative dimension in shape " + shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  size_t nbytes = size_t(shape_numel(shape)) * dtype_size(opt.dtype);
  impl->storage = std::make_shared<Storage>(nbytes, opt.device, &backend_for(opt.device).allocator());
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opt.dtype;
  Tensor t(impl);
  if (opt.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions opt) {
  bool rg = opt.requires_grad;
  opt.requires_grad = false;
  Tensor t = empty(shape, opt);
  t.fill_(value);
  if (rg) t.requires_grad_(true);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions opt) { return full(shape, 0.0, opt); }
Tensor ones(const Shape& shape, TensorOptions opt) { return full(shape, 1.0, opt); }
Tensor scalar_tensor(double value, TensorOptions opt) { return full({}, value, opt); }

Tensor arange(int64_t end, TensorOptions opt) { return arange(0, double(end), 1, opt); }
Tensor arange(double start, double end, double step, TensorOptions opt) {
  MOX_CHECK(step != 0, "arange", "step must be non-zero");
  int64_t n = std::max<int64_t>(0, int64_t(std::ceil((end - start) / step)));
  Tensor t = empty({n}, TensorOptions(opt.dtype, opt.device));
  if (n) backend_for(t).arange(t, start, step);
  return t;
}
Tensor linspace(double start, double end, int64_t steps, TensorOptions opt) {
  MOX_CHECK(steps >= 0, "linspace", "steps must be >= 0");
  Tensor t = empty({steps}, TensorOptions(opt.dtype, opt.device));
  if (steps) backend_for(t).arange(t, start, steps > 1 ? (end - start) / double(steps - 1) : 0.0);
  return t;
}
Tensor eye(int64_t n, TensorOptions opt) {
  Tensor t = zeros({n, n}, TensorOptions(opt.dtype, opt.device));
  Tensor diag = t.detach();
  diag.impl()->shape = {n};
  diag.impl()->strides = {n + 1};
  diag.fill_(1.0);
  if (opt.requires_grad) t.requires_grad_(true);
  return t;
}
Tensor rand(const Shape& shape, Generator* gen, TensorOptions opt) {
  Tensor t = empty(shape, TensorOptions(opt.dtype, opt.device));
  t.uniform_(0.0, 1.0, gen);
  if (opt.requires_grad) t.requires_grad_(true);
  return t;
}
Tensor randn(const Shape& shape, Generator* gen, TensorOptions opt) {
  Tensor t = empty(shape, TensorOptions(opt.dtype, opt.device));
  t.normal_(0.0, 1.0, gen);
  if (opt.requires_grad) t.requires_grad_(true);
  return t;
}
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator* gen, TensorOptions opt) {
  MOX_CHECK(high > low, "randint", "high must be > low");
  Tensor t = empty(shape, TensorOptions(opt.dtype, opt.device));
  backend_for(t).randint(t, low, high, gen ? *gen : default_generator());
  return t;
}
Tensor empty_like(const Tensor& t) { return empty(t.shape(), TensorOptions(t.dtype(), t.device())); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), TensorOptions(t.dtype(), t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), TensorOptions(t.dtype(), t.device())); }

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opt) {
  MOX_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector",
            std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  Tensor host = empty(shape, TensorOptions(dtype_of<T>()));
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  Tensor t = host.to(opt.dtype).to(opt.device);
  if (t.same(host) == false && opt.dtype == dtype_of<T>() && opt.device == kCPU) t = host;
  if (opt.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> keep) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(data, size_t(shape_numel(shape)) * dtype_size(dtype),
                                            kCPU, std::move(keep));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

}  // namespace mox
