#include "mox/nn/layers/split_views.h"

#include <numeric>

#include "mox/autograd/node.h"
#include "mox/ops/ops.h"

namespace mox::nn {

namespace {

// Backward of split_views/unbind_views: one gradient per piece -> the input's gradient.
class SplitViewsBackward : public Node {
 public:
  SplitViewsBackward(std::vector<Shape> piece_shapes, int64_t dim, bool squeezed, DType dtype,
                     Device device)
      : shapes_(std::move(piece_shapes)), dim_(dim), squeezed_(squeezed), dtype_(dtype),
        device_(device) {}
  std::string name() const override { return squeezed_ ? "unbind_views" : "split_views"; }
  uint32_t num_outputs() const override { return uint32_t(shapes_.size()); }
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override {
    std::vector<Tensor> gs(shapes_.size());
    for (size_t i = 0; i < shapes_.size(); i++)
      gs[i] = i < grads.size() && grads[i].defined()
                  ? grads[i]
                  : zeros(shapes_[i], TensorOptions(dtype_, device_));
    return {squeezed_ ? stack(gs, dim_) : cat(gs, dim_)};
  }

 private:
  std::vector<Shape> shapes_;
  int64_t dim_;
  bool squeezed_;
  DType dtype_;
  Device device_;
};

std::vector<Tensor> split_impl(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim,
                               bool squeeze) {
  dim = normalize_dim(dim, x.dim(), "split_views");
  int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
  MOX_CHECK(total == x.size(dim), "split_views",
            "sizes sum to " + std::to_string(total) + " but dim " + std::to_string(dim) + " of " +
                x.desc() + " is " + std::to_string(x.size(dim)));
  std::vector<Tensor> pieces;
  std::vector<Shape> shapes;
  {
    // Plain views with no history of their own; the shared node is attached below.
    NoGradGuard ng;
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
    record_multi(pieces,
                 std::make_shared<SplitViewsBackward>(shapes, dim, squeeze, x.dtype(), x.device()),
                 {x});
  return pieces;
}

}  // namespace

std::vector<Tensor> split_views(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  return split_impl(x, sizes, dim, false);
}

std::vector<Tensor> unbind_views(const Tensor& x, int64_t dim) {
  dim = normalize_dim(dim, x.dim(), "unbind_views");
  return split_impl(x, std::vector<int64_t>(size_t(x.size(dim)), 1), dim, true);
}

}  // namespace mox::nn
