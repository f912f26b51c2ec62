#pragma once
// Conv2d: x [N, C, H, W] (or unbatched [C, H, W]) -> [N, O, Ho, Wo];
// weight [O, C/groups, kh, kw], bias [O]. Same arguments and defaults as torch.nn.Conv2d.
#include "mox/nn/module.h"
#include "mox/nn/options.h"

namespace mox::nn {

struct Conv2dOptions {
  Conv2dOptions(int64_t in_channels, int64_t out_channels, Size2 kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  MOX_ARG(int64_t, in_channels);
  MOX_ARG(int64_t, out_channels);
  MOX_ARG(Size2, kernel_size);
  MOX_ARG(Size2, stride) = 1;
  MOX_ARG(Size2, padding) = 0;
  MOX_ARG(Size2, dilation) = 1;
  MOX_ARG(int64_t, groups) = 1;
  MOX_ARG(bool, bias) = true;
};

class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& options);
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride = 1,
         Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1, bool bias = true);
  // PyTorch's default: kaiming_uniform_(a=sqrt(5)) weight, U(-1/sqrt(fan_in), ..) bias.
  void reset_parameters(Generator* gen = nullptr);

  Tensor forward(const Tensor& x) override;
  // relu(forward(x)) as one op (Conv2dParams::relu): Sequential runs a Conv2d followed by a
  // ReLU this way.
  Tensor forward_relu(const Tensor& x);
  // max_pool2d(relu(forward(x)), 2x2, stride 2) as one op (conv2d_relu_maxpool2): Sequential
  // runs Conv2d, ReLU, MaxPool2d(2) this way.
  Tensor forward_relu_pool2(const Tensor& x);
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override;

  Conv2dOptions options;
  Tensor weight;  // [O, C/groups, kh, kw]
  Tensor bias;    // [O] or undefined
};

}  // namespace mox::nn
