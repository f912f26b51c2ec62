#pragma once
// AvgPool2d: x [N, C, H, W] (or [C, H, W]) -> [N, C, Ho, Wo], mean over each window;
// count_include_pad decides whether padded zeros count in the divisor (PyTorch default).
#include <optional>

#include "mox/backend/backend.h"
#include "mox/nn/module.h"
#include "mox/nn/options.h"

namespace mox::nn {

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt,
                     Size2 padding = 0, bool ceil_mode = false, bool count_include_pad = true);

  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "AvgPool2d"; }
  std::string extra_repr() const override;

  Pool2dParams params;
};

}  // namespace mox::nn
