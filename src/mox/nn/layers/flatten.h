#pragma once
// Flatten: merges dims start_dim..end_dim into one; [N, C, H, W] -> [N, C*H*W] by default.
#include "mox/nn/module.h"

namespace mox::nn {

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : start_dim(start_dim), end_dim(end_dim) {}

  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override;

  int64_t start_dim, end_dim;
};

}  // namespace mox::nn
