#include "mox/nn/layers/linear.h"

#include <cmath>

#include "mox/nn/init.h"
#include "mox/nn/layers/layer_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  MOX_CHECK(in > 0 && out > 0, "Linear",
            "features must be positive, got in=" + std::to_string(in) +
                " out=" + std::to_string(out));
  weight = register_parameter("weight", empty({out, in}));
  if (with_bias) bias = register_parameter("bias", empty({out}));
  reset_parameters();
}

Linear::Linear(int64_t in, int64_t out, NoParameters) : in_features(in), out_features(out) {
  MOX_CHECK(in > 0 && out > 0, "Linear",
            "features must be positive, got in=" + std::to_string(in) +
                " out=" + std::to_string(out));
}

void Linear::reset_parameters(Generator* gen) {
  init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::FanIn, "leaky_relu", gen);
  if (bias.defined()) {
    double bound = 1.0 / std::sqrt(double(in_features));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) {
  output_shape(x.shape());  // clear error naming the layer
  // Weights held in bf16 (reduced-precision inference): f32 inputs are rounded to bf16 so
  // that the product runs as bf16 x bf16 with f32 accumulation (AMX / AVX512-BF16 through
  // oneDNN), as autocast does.
  if (weight.dtype() == DType::BF16 && x.dtype() == DType::F32) return linear(x.to(DType::BF16), weight, bias);
  return linear(x, weight, bias);
}

Shape Linear::output_shape(const Shape& in) const {
  check_rank(in, 1, 64, "Linear", "[..., in_features]");
  check_size(in, int64_t(in.size()) - 1, in_features, "Linear", "in_features (last dim)");
  Shape out = in;
  out.back() = out_features;
  return out;
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_features) +
         ", out_features=" + std::to_string(out_features) + ", bias=" + repr_bool(bias.defined());
}

}  // namespace mox::nn
