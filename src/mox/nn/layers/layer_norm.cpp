#include "mox/nn/layers/layer_norm.h"

#include "mox/nn/init.h"
#include "mox/nn/layers/layer_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

LayerNorm::LayerNorm(Shape shape, double eps_, bool affine, bool with_bias)
    : normalized_shape(std::move(shape)), eps(eps_) {
  MOX_CHECK(!normalized_shape.empty(), "LayerNorm", "normalized_shape must not be empty");
  for (int64_t d : normalized_shape)
    MOX_CHECK(d > 0, "LayerNorm",
              "normalized_shape must be positive, got " + shape_str(normalized_shape));
  if (affine) {
    weight = register_parameter("weight", empty(normalized_shape));
    if (with_bias) bias = register_parameter("bias", empty(normalized_shape));
  }
  reset_parameters();
}

void LayerNorm::reset_parameters() {
  if (weight.defined()) init::ones_(weight);
  if (bias.defined()) init::zeros_(bias);
}

Tensor LayerNorm::forward(const Tensor& x) {
  output_shape(x.shape());
  return layer_norm(x, normalized_shape, weight, bias, eps);
}

Shape LayerNorm::output_shape(const Shape& in) const {
  size_t k = normalized_shape.size();
  bool ok = in.size() >= k;
  for (size_t i = 0; ok && i < k; i++) {
    int64_t d = in[in.size() - k + i];
    ok = d == normalized_shape[i] || d == -1;
  }
  MOX_CHECK(ok, "LayerNorm",
            "input shape " + shape_str(in) + " does not end with normalized_shape " +
                shape_str(normalized_shape));
  return in;
}

std::string LayerNorm::extra_repr() const {
  std::string dims;
  for (size_t i = 0; i < normalized_shape.size(); i++)
    dims += (i ? ", " : "") + std::to_string(normalized_shape[i]);
  if (normalized_shape.size() == 1) dims += ",";
  return "(" + dims + "), eps=" + repr_float(eps) +
         ", elementwise_affine=" + repr_bool(weight.defined()) +
         (weight.defined() && !bias.defined() ? ", bias=False" : "");
}

}  // namespace mox::nn
