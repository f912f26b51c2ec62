#include "mox/nn/layers/avg_pool2d.h"

#include "mox/nn/layers/pool_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

AvgPool2d::AvgPool2d(Size2 kernel, std::optional<Size2> stride, Size2 padding, bool ceil_mode,
                     bool count_include_pad)
    : params(make_pool_params("AvgPool2d", kernel, stride, padding, ceil_mode)) {
  params.count_include_pad = count_include_pad;
}

Tensor AvgPool2d::forward(const Tensor& x) {
  output_shape(x.shape());
  if (x.dim() == 3) return avg_pool2d(x.unsqueeze(0), params).squeeze(0);
  return avg_pool2d(x, params);
}

Shape AvgPool2d::output_shape(const Shape& in) const {
  return pool_output_shape("AvgPool2d", params, in);
}

std::string AvgPool2d::extra_repr() const {
  return "kernel_size=" + pool_arg_str(params.kh, params.kw) +
         ", stride=" + pool_arg_str(params.stride_h, params.stride_w) +
         ", padding=" + pool_arg_str(params.pad_h, params.pad_w);
}

}  // namespace mox::nn
