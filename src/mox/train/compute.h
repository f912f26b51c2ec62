#pragma once
// Where and in what precision a training command computes, shared by `mox train`,
// `mox pretrain` and `mox finetune`:
//   [train] device = "cpu" | "cuda" (or "cuda:0"), precision = "f32" | "bf16" | "f16"
// and the CLI's --device / --precision, which override them. bf16/f16 train with
// autocast (matrix products and attention in the half type, f32 master weights, norms and
// losses in f32); f16 also scales the loss (optim::GradScaler).
#include <optional>
#include <string>

#include "mox/io/config.h"
#include "mox/ops/autocast.h"
#include "mox/tensor/device.h"
#include "mox/tensor/dtype.h"

namespace mox::train {

struct Compute {
  Device device = kCPU;
  DType precision = DType::F32;  // F32: plain f32 training
  bool mixed() const { return precision != DType::F32; }
};

// "f32" | "fp32" | "bf16" | "f16" | "fp16"; throws mox::Error(where, ...) otherwise.
DType parse_precision(const std::string& s, const std::string& where);
// Reads device and precision from a [train] table (errors name the file and key).
Compute parse_compute(const io::ConfigTable& train);
// Applies the CLI's overrides (empty strings leave the config's values), then checks that
// the device can be used here (a CUDA build and a visible GPU for cuda): one-line error.
void override_compute(Compute& c, const std::string& device, const std::string& precision);

// An autocast guard for the forward pass of a mixed-precision step; nothing for f32.
class StepAutocast {
 public:
  explicit StepAutocast(DType precision) {
    if (precision == DType::BF16 || precision == DType::F16) g_.emplace(precision);
  }

 private:
  std::optional<AutocastGuard> g_;
};

}  // namespace mox::train
