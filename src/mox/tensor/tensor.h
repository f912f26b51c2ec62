#pragma once
// Tensor: a handle (shared pointer) to shape + strides + offset over shared storage.
// Copying a Tensor copies the handle, not the data (like torch.Tensor in Python).
// Views (reshape of contiguous data, transpose, permute, slice, expand) share storage.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "mox/tensor/device.h"
#include "mox/tensor/dtype.h"
#include "mox/tensor/error.h"
#include "mox/tensor/storage.h"

namespace mox {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3]"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

class Node;
class Generator;

struct TensorOptions {
  DType dtype = DType::F32;
  Device device = kCPU;
  bool requires_grad = false;
  TensorOptions() = default;
  TensorOptions(DType d) : dtype(d) {}  // NOLINT: allows zeros({2}, DType::F64)
  TensorOptions(DType d, Device dev, bool rg = false) : dtype(d), device(dev), requires_grad(rg) {}
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape, strides;  // strides in elements
  int64_t offset = 0;    // in elements
  DType dtype = DType::F32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;  // set on results of differentiable ops
  uint32_t output_nr = 0;
  std::weak_ptr<Node> grad_accumulator;  // leaves: shared by every use in a graph
  uint64_t version = 0;                  // bumped by in-place writes
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  explicit operator bool() const = delete;  // use defined(); avoids t1 == t2 mistakes
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // --- metadata ---
  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int64_t dim() const { return int64_t(impl_->shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(impl_->shape); }
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage ? impl_->storage->device() : kCPU; }
  size_t element_size() const { return dtype_size(impl_->dtype); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl_->storage; }
  std::string str() const;  // human-readable, elides the middle of large tensors
  std::string desc() const;  // "f32[2, 3]"

  // --- raw data (CPU) ---
  void* raw_data() const;  // address of element 0 (storage + offset)
  template <typename T> T* data() const {
    check_dtype(dtype_of<T>(), "data<T>");
    return static_cast<T*>(raw_data());
  }
  template <typename T> T item() const;  // one-element tensor to a C++ value
  template <typename T> std::vector<T> to_vector() const;  // contiguous copy, converted

  // --- views (share storage) ---
  Tensor view(const Shape& shape) const;     // requires compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;  // view when possible, else copy
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const {
    return slice(dim, start, start + length);
  }
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor operator[](int64_t i) const { return select(0, i); }
  Tensor expand(const Shape& shape) const;  // -1 keeps a dim
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;  // self when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy (differentiable)
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // --- autograd ---
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& requires_grad_(bool r = true);
  Tensor grad() const { return Tensor(impl_->grad); }
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  void zero_grad() { impl_->grad.reset(); }
  const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  Tensor detach() const;  // shares storage, no history
  // Backward from this tensor: a scalar, or any shape with an explicit gradient.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  // --- in-place (not recorded by autograd; errors on tensors that need grad) ---
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // broadcasts src, converts dtype
  Tensor& uniform_(double lo, double hi, Generator* gen = nullptr);
  Tensor& normal_(double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(double s);
  void bump_version() { impl_->version++; }

  // --- arithmetic (see ops/ for the full op set) ---
  Tensor operator-() const;
  Tensor sum() const;
  Tensor mean() const;
  Tensor matmul(const Tensor& o) const;

  void check_dtype(DType expected, const char* where) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

// --- factories ---
Tensor empty(const Shape& shape, TensorOptions opt = {});
Tensor zeros(const Shape& shape, TensorOptions opt = {});
Tensor ones(const Shape& shape, TensorOptions opt = {});
Tensor full(const Shape& shape, double value, TensorOptions opt = {});
Tensor scalar_tensor(double value, TensorOptions opt = {});
Tensor arange(int64_t end, TensorOptions opt = DType::I64);
Tensor arange(double start, double end, double step, TensorOptions opt = {});
Tensor linspace(double start, double end, int64_t steps, TensorOptions opt = {});
Tensor eye(int64_t n, TensorOptions opt = {});
Tensor rand(const Shape& shape, Generator* gen = nullptr, TensorOptions opt = {});
Tensor randn(const Shape& shape, Generator* gen = nullptr, TensorOptions opt = {});
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator* gen = nullptr,
               TensorOptions opt = DType::I64);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// Copies host values into a new tensor of the given shape (dtype of T unless opt says).
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions opt);
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  return from_vector(values, shape, TensorOptions(dtype_of<T>()));
}
template <typename T> Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{int64_t(values.size())});
}
// Wraps external memory without copying; `keep` owns it.
Tensor from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> keep);

}  // namespace mox
