#pragma once
// MaxPool2d: x [N, C, H, W] (or [C, H, W]) -> [N, C, Ho, Wo], max over each window
// (padding counts as -inf). stride defaults to kernel_size, as in PyTorch.
#include <optional>

#include "mox/backend/backend.h"
#include "mox/nn/module.h"
#include "mox/nn/options.h"

namespace mox::nn {

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt,
                     Size2 padding = 0, bool ceil_mode = false);

  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override;

  Pool2dParams params;
};

}  // namespace mox::nn
