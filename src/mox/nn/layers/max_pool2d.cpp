#include "mox/nn/layers/max_pool2d.h"

#include "mox/nn/layers/pool_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

MaxPool2d::MaxPool2d(Size2 kernel, std::optional<Size2> stride, Size2 padding, bool ceil_mode)
    : params(make_pool_params("MaxPool2d", kernel, stride, padding, ceil_mode)) {}

Tensor MaxPool2d::forward(const Tensor& x) {
  output_shape(x.shape());
  if (x.dim() == 3) return max_pool2d(x.unsqueeze(0), params).squeeze(0);
  return max_pool2d(x, params);
}

Shape MaxPool2d::output_shape(const Shape& in) const {
  return pool_output_shape("MaxPool2d", params, in);
}

std::string MaxPool2d::extra_repr() const {
  return "kernel_size=" + pool_arg_str(params.kh, params.kw) +
         ", stride=" + pool_arg_str(params.stride_h, params.stride_w) +
         ", padding=" + pool_arg_str(params.pad_h, params.pad_w) +
         ", dilation=1, ceil_mode=" + repr_bool(params.ceil_mode);
}

}  // namespace mox::nn
