#pragma once
// A Keras-style summary of a model (what `mox summary` and training print first):
//
//   Model: "mlp"
//   Input shape: (None, 1, 28, 28)
//   ________________________________________________________________
//    Layer (type)                Output Shape              Param #
//   ================================================================
//    0 (Flatten)                 (None, 784)               0
//   ...
//   ================================================================
//   Total params: 101,770 (0.39 MB)
//   Trainable params: 101,770 (0.39 MB)
//   Non-trainable params: 0 (0.00 MB)
//
// One row per child module (the model itself when it has none), named as in state_dict.
// Output shapes come from Module::output_shape (nothing runs), counts from
// named_parameters; "trainable" means requires_grad. Sizes use each tensor's dtype.
#include <cstdint>
#include <string>
#include <vector>

#include "mox/nn/module.h"

namespace mox::nn {

struct SummaryRow {
  std::string name, type;
  Shape output_shape;
  int64_t params = 0;
};

struct ModelSummary {
  std::string name;
  Shape input_shape;
  std::vector<SummaryRow> rows;
  int64_t total_params = 0, trainable_params = 0;
  int64_t total_bytes = 0, trainable_bytes = 0;
  int64_t buffer_elements = 0, buffer_bytes = 0;  // persistent buffers (BatchNorm statistics)

  int64_t non_trainable_params() const { return total_params - trainable_params; }
  std::string str() const;  // the table above
};

// input_shape includes the batch dim (-1 when unknown).
ModelSummary summarize(const Module& model, const Shape& input_shape, const std::string& name);

// 1234567 -> "1,234,567"
std::string group_thousands(int64_t n);

}  // namespace mox::nn
