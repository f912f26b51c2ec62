#pragma once
// Identity: returns its input (stands in for a removed layer, e.g. a classifier head).
#include "mox/nn/module.h"

namespace mox::nn {

class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
  Shape output_shape(const Shape& input) const override { return input; }
  std::string type_name() const override { return "Identity"; }
};

}  // namespace mox::nn
