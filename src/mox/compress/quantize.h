#pragma once
// Quantised models: the int8 layers (post-training static or dynamic), the weight-only block
// formats for language-model generation (w8 / w4), quantisation-aware training (fake-quant
// layers), and the conversion of a float model into any of them.
//
// Modes (QuantConfig::mode):
//   ptq-int8      static int8: weights per output channel (symmetric i8), activations u8 per
//                 tensor with ranges calibrated on N batches (minmax | percentile | entropy).
//                 Linear and Conv2d layers; a following ReLU is fused into the layer's
//                 epilogue, and a layer whose output feeds another quantised layer (through
//                 ReLU / MaxPool2d / Flatten / Dropout only) requantises its output to that
//                 layer's u8 input parameters in the epilogue, so activations flow as u8.
//                 BatchNorm after a Conv2d / Linear is folded into it first.
//   dynamic-int8  Linear layers only (as torch.quantization.quantize_dynamic): weights i8 per
//                 channel, activations quantised per call, per tensor (u8) or per token (i8).
//   w8 / w4       weight-only blocks of 32 (ops/blockq.h) for the Linear layers (GPT: the four
//                 of every block; Sequential: every Linear); activations stay f32 outside.
//   qat           fake-quant layers (QATLinear / QATConv2d) for fine-tuning, converted to
//                 ptq-int8 afterwards (convert_qat).
// `skip` names layers left in float (their module names, e.g. "0" or "transformer.h.0.mlp.c_fc";
// "first" / "last" name the first / last quantisable layer).
//
// On disk a quantised model is its run folder's usual model file (safetensors) holding the int8
// tensors and scales under the module's names (QuantizedLinear: weight (I8), weight_scale,
// bias, input_scale, input_zero_point, output_scale, output_zero_point; BlockQuantLinear:
// qweight (I8 or U8), qscale (F16), bias), plus quantization.json: the config and, per replaced
// module, its type and flags. apply_quantization_layout() rebuilds the quantised modules on a
// freshly built float model so that the file loads into it.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mox/compress/observer.h"
#include "mox/nn/layers/linear.h"
#include "mox/nn/layers/sequential.h"
#include "mox/ops/blockq.h"
#include "mox/ops/quant.h"
#include "mox/backend/backend.h"

namespace mox::nn {
class GPT;
class Conv2d;
}

namespace mox::compress {

struct QuantConfig {
  std::string mode = "ptq-int8";          // ptq-int8 | dynamic-int8 | w8 | w4 | qat
  std::string activations = "tensor";     // dynamic-int8: tensor | token
  Calibration calibration = Calibration::MinMax;
  double percentile = 99.99;
  int64_t calibration_batches = 0;        // recorded (how many batches were seen)
  std::vector<std::string> skip;          // layers kept in float ("first", "last" allowed)
  void validate() const;                  // throws mox::Error("quantize", ...) naming the field
  nlohmann::json to_json() const;
  static QuantConfig from_json(const nlohmann::json& j, const std::string& where);
};

// ---------------------------------------------------------------- int8 layers

// The buffers and flags an int8 layer holds: weight (I8, the float weight's shape),
// weight_scale (F32 [out]), bias (F32 [out], optional), input_scale / input_zero_point (the
// static u8 input parameters), output_scale / output_zero_point (the requantisation's).
struct QuantizedParams {
  QInput in;
  QOutput out;
  Tensor qweight, weight_scale, qbias, input_scale, input_zero_point, output_scale, output_zero_point;
  nlohmann::json flags(const char* type) const;  // {"type", "act", "relu", "requantize", "bias"}
  std::string describe() const;                  // ", act=static, relu, out=u8"

 protected:
  void register_into(nn::Module& m, const Shape& weight_shape, bool bias);
  void set_weights(const Tensor& w, const Tensor& bias);  // quantises a float weight
  // The kernel's form of the weights (built on first use) with the current buffer values of
  // the parameters in `in` / `out`; throws when the model was moved off the CPU.
  const QWeight& prepare();

 private:
  std::shared_ptr<QWeight> qw_;
};

class QuantizedLinear : public nn::Linear, public QuantizedParams {
 public:
  // From a float Linear (weights quantised per output channel).
  QuantizedLinear(const nn::Linear& src, QInput in, QOutput out);
  // An empty one of these sizes, for loading.
  QuantizedLinear(int64_t in_features, int64_t out_features, bool bias, QInput in, QOutput out);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantizedLinear"; }
  std::string extra_repr() const override { return nn::Linear::extra_repr() + describe(); }
  nlohmann::json flags() const { return QuantizedParams::flags("QuantizedLinear"); }
};

class QuantizedConv2d : public nn::Module, public QuantizedParams {
 public:
  QuantizedConv2d(const nn::Conv2d& src, QInput in, QOutput out);
  QuantizedConv2d(int64_t in_channels, int64_t out_channels, std::array<int64_t, 2> kernel,
                  std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                  std::array<int64_t, 2> dilation, bool bias, QInput in, QOutput out);
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "QuantizedConv2d"; }
  std::string extra_repr() const override;
  nlohmann::json flags() const { return QuantizedParams::flags("QuantizedConv2d"); }

  int64_t in_channels, out_channels;
  std::array<int64_t, 2> kernel, stride, padding, dilation;
};

// Weight-only block quantisation (w8: Q8, w4: Q4) of a Linear.
// The int8 / block layers prepare their kernels' forms of the weights on the first forward
// pass: load weights into a fresh module (apply_quantization_layout), not into one that ran.
class BlockQuantLinear : public nn::Linear {
 public:
  BlockQuantLinear(const nn::Linear& src, BlockFormat format);
  BlockQuantLinear(int64_t in_features, int64_t out_features, bool bias, BlockFormat format);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "BlockQuantLinear"; }
  std::string extra_repr() const override;

  BlockFormat format;
  Tensor qweight, qscale, qbias;

 private:
  std::shared_ptr<BlockQuantWeight> bw_;  // with the kernel's packed layout, built on first use
};

// ---------------------------------------------------------------- fake-quant layers (QAT)

// y = linear(fq(x), fq_per_channel(W), b): the input fake-quantised to u8 with a moving-average
// min/max range (averaging constant 0.01, as PyTorch's FakeQuantize; frozen in eval mode), the
// weight per output channel to [-127, 127] with scale max|W_c| / 127 of the current weights;
// gradients by the straight-through estimator (ops fake_quantize). Parameters are the float
// Linear's own (shared handles).
class QATLinear : public nn::Linear {
 public:
  QATLinear(const nn::Linear& src, float lo, float hi);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QATLinear"; }
  float lo, hi;  // the input range
};
// The same for a Conv2d (groups 1): parameters "weight" and "bias" as Conv2d's.
class QATConv2d : public nn::Module {
 public:
  QATConv2d(const nn::Conv2d& src, float lo, float hi);
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "QATConv2d"; }
  Tensor weight, bias;
  Conv2dParams params;
  float lo, hi;
};

// ---------------------------------------------------------------- conversion

struct QuantizeReport {
  std::vector<std::string> quantized, kept_float;  // module names
};

// Every batch of `calibration` is run through the model (eval mode, no gradients), the inputs
// of the quantisable layers observed, and the model converted in place (ptq-int8). For a
// Sequential model.
QuantizeReport quantize_static(nn::Sequential& model, const std::vector<Tensor>& calibration,
                               const QuantConfig& config);
// dynamic-int8 (Sequential or GPT), w8 / w4 (Sequential or GPT): in place.
QuantizeReport quantize_dynamic(nn::Module& model, const QuantConfig& config);
QuantizeReport quantize_blocks(nn::Module& model, const QuantConfig& config);
// qat: calibrates like quantize_static, then swaps the layers for fake-quant ones (in place).
QuantizeReport prepare_qat(nn::Sequential& model, const std::vector<Tensor>& calibration,
                           const QuantConfig& config);
// After fine-tuning: the fake-quant layers become the int8 ones of ptq-int8, with the learned
// weights and the moving-average ranges.
QuantizeReport convert_qat(nn::Sequential& model, const QuantConfig& config);

// quantization.json: {"format": "mox-quantization", "version": 1, "config": {...},
// "layers": {"<module name>": {"type": ..., flags...}}}.
nlohmann::json quantization_json(nn::Module& model, const QuantConfig& config);
// Replaces the modules named in `layout` (quantization.json) by empty quantised modules of the
// float model's sizes, so that the quantised weight file loads into `model`. `where` names the
// file in errors.
void apply_quantization_layout(nn::Module& model, const nlohmann::json& layout, const std::string& where);

// Bytes of a model's parameters and buffers as stored (int8 data, f16 scales, ...).
int64_t model_bytes(const nn::Module& model);

}  // namespace mox::compress
