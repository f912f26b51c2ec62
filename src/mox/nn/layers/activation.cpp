#include "mox/nn/layers/activation.h"

#include "mox/nn/layers/layer_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

Tensor ReLU::forward(const Tensor& x) { return relu(x); }

Tensor LeakyReLU::forward(const Tensor& x) { return leaky_relu(x, negative_slope); }
std::string LeakyReLU::extra_repr() const {
  return "negative_slope=" + repr_float(negative_slope);
}

Tensor ELU::forward(const Tensor& x) { return elu(x, alpha); }
std::string ELU::extra_repr() const { return "alpha=" + repr_float(alpha); }

Tensor SELU::forward(const Tensor& x) { return selu(x); }

GELU::GELU(const std::string& approx) : approximate(approx) {
  MOX_CHECK(approx == "none" || approx == "tanh", "GELU",
            "approximate must be 'none' or 'tanh', got '" + approx + "'");
}
Tensor GELU::forward(const Tensor& x) { return gelu(x, approximate == "tanh"); }
std::string GELU::extra_repr() const { return "approximate='" + approximate + "'"; }

Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }

Tensor Tanh::forward(const Tensor& x) { return tanh(x); }

Tensor Softplus::forward(const Tensor& x) { return softplus(x, beta, threshold); }
std::string Softplus::extra_repr() const {
  return "beta=" + repr_float(beta) + ", threshold=" + repr_float(threshold);
}

Tensor SiLU::forward(const Tensor& x) { return silu(x); }

// Softmax along a dim that must exist in the input.
static Shape softmax_shape(const char* layer, int64_t dim, const Shape& in) {
  int64_t r = int64_t(in.size());
  MOX_CHECK(dim >= -r && dim < r, layer,
            "dim " + std::to_string(dim) + " is out of range for input shape " + shape_str(in));
  return in;
}

Tensor Softmax::forward(const Tensor& x) {
  softmax_shape("Softmax", dim, x.shape());
  return softmax(x, dim);
}
Shape Softmax::output_shape(const Shape& in) const { return softmax_shape("Softmax", dim, in); }

Tensor LogSoftmax::forward(const Tensor& x) {
  softmax_shape("LogSoftmax", dim, x.shape());
  return log_softmax(x, dim);
}
Shape LogSoftmax::output_shape(const Shape& in) const {
  return softmax_shape("LogSoftmax", dim, in);
}

}  // namespace mox::nn
