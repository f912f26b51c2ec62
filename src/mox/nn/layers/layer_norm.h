#pragma once
// LayerNorm: normalises over the trailing normalized_shape dims of x [..., *normalized_shape]
// then applies weight (ones) and bias (zeros), each shaped normalized_shape. bias = false
// keeps the weight only (PyTorch 2.1's LayerNorm(bias=False), nanoGPT's bias=False).
#include "mox/nn/module.h"

namespace mox::nn {

class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true,
                     bool bias = true);
  explicit LayerNorm(int64_t normalized_size, double eps = 1e-5, bool elementwise_affine = true,
                     bool bias = true)
      : LayerNorm(Shape{normalized_size}, eps, elementwise_affine, bias) {}
  void reset_parameters();

  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override;

  Shape normalized_shape;
  double eps;
  Tensor weight, bias;  // normalized_shape each, undefined without elementwise_affine (bias: or bias = false)
};

}  // namespace mox::nn
