#pragma once
// Linear: y = x W^T + b over the last dim. x [..., in] -> y [..., out]; weight [out, in].
#include "mox/nn/module.h"

namespace mox::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  // PyTorch's default: kaiming_uniform_(a=sqrt(5)) weight, U(-1/sqrt(in), 1/sqrt(in)) bias.
  void reset_parameters(Generator* gen = nullptr);

  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;

  int64_t in_features, out_features;
  Tensor weight;  // [out, in]
  Tensor bias;    // [out], undefined when built without bias

 protected:
  // For subclasses that hold the weight in another form (compress/: quantised Linears):
  // registers nothing; `weight` stays undefined, so models that fuse a Linear's product
  // into an epilogue (GPT) call forward() instead.
  struct NoParameters {};
  Linear(int64_t in_features, int64_t out_features, NoParameters);
};

}  // namespace mox::nn
