#pragma once
// ONNX export (https://onnx.ai, opset 17, IR version 8) of mox's feed-forward models, built
// with the ONNX project's protobuf messages (Debian's libonnx-dev):
//   export_onnx_sequential  a `mox train` model (nn::Sequential of Linear, Conv2d, MaxPool2d,
//                           AvgPool2d, Flatten, Dropout, Identity, BatchNorm1d/2d, LayerNorm,
//                           Embedding, GlobalAveragePooling1D and the activations)
//   export_onnx_gpt         a GPT (nn::GPT): token ids -> next-token logits
//
// The graphs compute what the model's forward() computes in eval mode:
// - a Sequential's graph input is "input" (float [batch, ...input_shape], or int64 token ids
//   when the model starts with an Embedding) and its output "output" is the last layer's
//   output: probabilities when the model ends in a Softmax (what `mox predict` reports),
//   logits otherwise;
// - a GPT's input is "input_ids" (int64 [batch, sequence], 1 <= sequence <= block_size) and
//   its output "logits" (float [batch, sequence, vocab_size]); the causal mask is a constant
//   [block_size, block_size] bool initializer ("causal_mask") sliced to [sequence, sequence].
// The batch dimension is symbolic ("batch"), and so is a GPT's "sequence". Dropout is left out
// (eval mode). Weights are initializers named as the model's parameters ("0.weight",
// "transformer.h.0.attn.c_attn.weight", ...), in PyTorch's layout: a Linear's [out, in] weight
// feeds Gemm with transB = 1, or a Transpose before MatMul for inputs of rank > 2. Opset 17 has
// no Gelu op: GELU is spelt out with Erf (exact) or Tanh (GPT-2's approximation).
//
// Operators used: Gemm MatMul Transpose Add Mul Div Pow Erf Tanh Relu LeakyRelu Elu Selu
// Sigmoid Softplus Greater Where Softmax LogSoftmax Conv MaxPool AveragePool Flatten Reshape
// BatchNormalization LayerNormalization Gather ReduceMean Shape Slice Concat Split, and
// Identity for a model of only Dropout / Identity layers (tests/export/check_onnx.py runs
// exactly these).
//
// Quantised layers (compress/: QuantizedLinear, QAT*, BlockQuant*) and recurrent layers have
// no mapping: the export throws mox::Error naming the layer, and writes nothing.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mox/nn/layers/sequential.h"
#include "mox/nn/models/gpt.h"

namespace mox::io {

constexpr int64_t kOnnxOpset = 17;
constexpr int64_t kOnnxIrVersion = 8;  // the IR version of opset 17 (ONNX 1.12)

struct OnnxExportOptions {
  std::string graph_name;   // the graph's name (default: "mox_sequential" / "mox_gpt")
  std::string doc_string;   // the model's description
  // metadata_props of the model (e.g. {"mox.preprocess", <preprocess.json>}).
  std::vector<std::pair<std::string, std::string>> metadata;
};

// What was written, for the command's summary line.
struct OnnxExportInfo {
  int64_t nodes = 0, initializers = 0, parameters = 0;  // parameters: elements of the weights
  uint64_t bytes = 0;                                     // the file's size
  std::vector<std::string> op_types;                      // distinct, in order of first use
};

// model: a Sequential in eval mode (its dropout is left out either way); input_shape: one
// batch's shape with -1 for the batch (nn::model_input_shape), e.g. [-1, 1, 28, 28].
// Writes `path` atomically; throws mox::Error naming the layer it cannot export.
OnnxExportInfo export_onnx_sequential(const nn::Sequential& model, const Shape& input_shape,
                                      const std::string& path, const OnnxExportOptions& options = {});

// A GPT (tied or untied head, pruned per-layer widths, exact or tanh GELU, with or without
// biases) as token ids -> logits over the whole sequence (no KV cache).
OnnxExportInfo export_onnx_gpt(const nn::GPT& model, const std::string& path,
                               const OnnxExportOptions& options = {});

}  // namespace mox::io
