#include "mox/nn/layers/conv2d.h"

#include <cmath>

#include "mox/nn/init.h"
#include "mox/nn/layers/layer_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

Conv2d::Conv2d(const Conv2dOptions& o) : options(o) {
  const Size2 &k = o.kernel_size(), &s = o.stride(), &p = o.padding(), &d = o.dilation();
  MOX_CHECK(o.in_channels() > 0 && o.out_channels() > 0, "Conv2d",
            "channels must be positive, got in=" + std::to_string(o.in_channels()) +
                " out=" + std::to_string(o.out_channels()));
  MOX_CHECK(k.h > 0 && k.w > 0 && s.h > 0 && s.w > 0 && d.h > 0 && d.w > 0 && p.h >= 0 && p.w >= 0,
            "Conv2d",
            "kernel_size, stride and dilation must be positive and padding non-negative, got "
            "kernel_size=" + k.str() + " stride=" + s.str() + " padding=" + p.str() +
                " dilation=" + d.str());
  MOX_CHECK(o.groups() > 0 && o.in_channels() % o.groups() == 0 &&
                o.out_channels() % o.groups() == 0,
            "Conv2d",
            "groups=" + std::to_string(o.groups()) + " must divide in_channels=" +
                std::to_string(o.in_channels()) + " and out_channels=" +
                std::to_string(o.out_channels()));
  weight = register_parameter(
      "weight", empty({o.out_channels(), o.in_channels() / o.groups(), k.h, k.w}));
  if (o.bias()) bias = register_parameter("bias", empty({o.out_channels()}));
  reset_parameters();
}

Conv2d::Conv2d(int64_t in, int64_t out, Size2 kernel, Size2 stride, Size2 padding,
               Size2 dilation, int64_t groups, bool with_bias)
    : Conv2d(Conv2dOptions(in, out, kernel)
                 .stride(stride)
                 .padding(padding)
                 .dilation(dilation)
                 .groups(groups)
                 .bias(with_bias)) {}

void Conv2d::reset_parameters(Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::FanIn, "leaky_relu", gen);
  if (bias.defined()) {
    auto [fan_in, fan_out] = init::calculate_fan_in_and_fan_out(weight);
    double bound = 1.0 / std::sqrt(double(fan_in));
    init::uniform_(bias, -bound, bound, gen);
  }
}

namespace {
Tensor conv_forward(const Conv2d& m, const Tensor& x, bool relu, bool pool2 = false) {
  m.output_shape(x.shape());
  const Conv2dOptions& o = m.options;
  Conv2dParams p;
  p.stride_h = o.stride().h;
  p.stride_w = o.stride().w;
  p.pad_h = o.padding().h;
  p.pad_w = o.padding().w;
  p.dil_h = o.dilation().h;
  p.dil_w = o.dilation().w;
  p.groups = o.groups();
  p.relu = relu;
  if (pool2) {
    if (x.dim() == 3) return conv2d_relu_maxpool2(x.unsqueeze(0), m.weight, m.bias, p).squeeze(0);
    return conv2d_relu_maxpool2(x, m.weight, m.bias, p);
  }
  if (x.dim() == 3) return conv2d(x.unsqueeze(0), m.weight, m.bias, p).squeeze(0);
  return conv2d(x, m.weight, m.bias, p);
}
}  // namespace

Tensor Conv2d::forward(const Tensor& x) { return conv_forward(*this, x, false); }

Tensor Conv2d::forward_relu(const Tensor& x) { return conv_forward(*this, x, true); }

Tensor Conv2d::forward_relu_pool2(const Tensor& x) { return conv_forward(*this, x, true, true); }

Shape Conv2d::output_shape(const Shape& in) const {
  check_rank(in, 3, 4, "Conv2d", "[N, C, H, W] or [C, H, W]");
  size_t c = in.size() - 3;
  check_size(in, int64_t(c), options.in_channels(), "Conv2d", "in_channels (dim C)");
  const Conv2dOptions& o = options;
  Shape out = in;
  out[c] = o.out_channels();
  out[c + 1] = window_out(in[c + 1], o.kernel_size().h, o.stride().h, o.padding().h,
                          o.dilation().h, false, "Conv2d", in);
  out[c + 2] = window_out(in[c + 2], o.kernel_size().w, o.stride().w, o.padding().w,
                          o.dilation().w, false, "Conv2d", in);
  return out;
}

std::string Conv2d::extra_repr() const {
  const Conv2dOptions& o = options;
  std::string s = std::to_string(o.in_channels()) + ", " + std::to_string(o.out_channels()) +
                  ", kernel_size=" + o.kernel_size().str() + ", stride=" + o.stride().str();
  if (!(o.padding() == Size2(0))) s += ", padding=" + o.padding().str();
  if (!(o.dilation() == Size2(1))) s += ", dilation=" + o.dilation().str();
  if (o.groups() != 1) s += ", groups=" + std::to_string(o.groups());
  if (!o.bias()) s += ", bias=False";
  return s;
}

}  // namespace mox::nn
