#pragma once
// Dropout: in training, zeroes each element with probability p and scales the rest by
// 1/(1-p) (inverted dropout); in eval mode it is the identity.
#include "mox/nn/module.h"
#include "mox/tensor/generator.h"

namespace mox::nn {

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* generator = nullptr);

  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override { return input; }
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override;

  double p;
  Generator* generator;  // masks come from this generator (the default one when null)
};

}  // namespace mox::nn
