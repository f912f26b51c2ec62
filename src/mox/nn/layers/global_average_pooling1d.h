#pragma once
// GlobalAveragePooling1D (Keras): mean over the time axis, x [N, T, C] -> [N, C]
// (channels last, as after an Embedding).
#include "mox/nn/module.h"

namespace mox::nn {

class GlobalAveragePooling1D : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "GlobalAveragePooling1D"; }
};

}  // namespace mox::nn
