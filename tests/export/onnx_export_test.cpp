// io/onnx_export: Sequential models (an MLP, a CNN, a model of the other layers and
// activations) and GPTs (untied with exact GELU, tied with GPT-2's GELU and pruned heads)
// pass onnx.checker and strict shape inference, and the graphs compute what mox computes for
// two batch sizes (and two sequence lengths), on check_onnx.py's numpy interpreter; layers
// with no ONNX mapping (recurrent, quantised) are refused naming the layer.
#include <gtest/gtest.h>

#include <filesystem>

#include "export/onnx_check.h"
#include "mox/compress/quantize.h"
#include "mox/io/config.h"
#include "mox/io/onnx_export.h"
#include "mox/mox.h"
#include "mox/nn/models/build_model.h"

namespace mox {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::check_onnx;
using testing::OnnxCase;

// Replaces every parameter (and BatchNorm's running statistics) with random values, so that
// a weight or bias the graph leaves out or misplaces changes the outputs.
void randomize(nn::Module& m, uint64_t seed) {
  NoGradGuard no_grad;
  Generator gen(seed);
  for (auto& [name, t] : m.state_dict()) {
    if (!is_floating(t.dtype())) continue;
    const bool variance = name.find("running_var") != std::string::npos;
    Tensor r = variance ? rand(t.shape(), &gen) + 0.5 : randn(t.shape(), &gen) * 0.5;
    t.copy_(r);
  }
}

std::shared_ptr<nn::Sequential> build(const std::string& toml, Shape* input_shape) {
  io::Config c = io::parse_config(toml, "test.toml");
  *input_shape = nn::model_input_shape(c.model);
  auto m = nn::build_model(c.model);
  randomize(*m, 7);
  m->eval();
  return m;
}

// A case: input x, and what the model outputs for it.
OnnxCase run_case(nn::Module& m, const Tensor& x, const std::string& in = "input", const std::string& out = "output") {
  NoGradGuard no_grad;
  return {{{in, x}}, {{out, m.forward(x)}}};
}

// Exports, checks and compares; returns the checker's report.
json export_and_check(const nn::Sequential& m, const Shape& input_shape, const std::vector<OnnxCase>& cases,
                      const std::string& name) {
  const std::string dir = testing::onnx_test_dir(name);
  const std::string path = dir + "/model.onnx";
  io::OnnxExportInfo info = io::export_onnx_sequential(m, input_shape, path);
  EXPECT_EQ(info.bytes, fs::file_size(path));
  int64_t params = 0;
  for (auto& [n, t] : m.named_parameters()) params += t.numel();
  EXPECT_EQ(info.parameters, params);  // every weight once (BatchNorm statistics are buffers)
  testing::CheckResult r = check_onnx(path, cases, dir);
  EXPECT_EQ(r.code, 0) << r.text;
  fs::remove_all(dir);
  return r.report;
}

const char* kMlp = R"(
[model]
name = "mlp"
input_shape = [1, 6, 6]
[[model.layers]]
type = "Flatten"
[[model.layers]]
type = "Dense"
units = 16
activation = "relu"
[[model.layers]]
type = "Dropout"
p = 0.2
[[model.layers]]
type = "LayerNorm"
[[model.layers]]
type = "Linear"
out_features = 12
activation = "gelu"
[[model.layers]]
type = "Linear"
out_features = 10
activation = "softmax"
)";

TEST(OnnxExport, MlpMatchesMoxForTwoBatchSizes) {
  MOX_REQUIRE_ONNX_CHECKER();
  Shape in;
  auto m = build(kMlp, &in);
  Generator gen(1);
  json r = export_and_check(*m, in, {run_case(*m, randn({1, 1, 6, 6}, &gen)), run_case(*m, randn({5, 1, 6, 6}, &gen))},
                            "mlp");
  EXPECT_EQ(r["ir_version"], io::kOnnxIrVersion);
  EXPECT_EQ(r["opset"]["ai.onnx"], io::kOnnxOpset);
  EXPECT_EQ(r["producer"], json::array({"mox", MOX_VERSION}));
  EXPECT_EQ(r["ops"], json::array({"Add", "Div", "Erf", "Flatten", "Gemm", "LayerNormalization", "Mul", "Relu",
                                   "Softmax"}));
  EXPECT_EQ(r["inputs"]["input"], json::array({"batch", 1, 6, 6}));
  EXPECT_EQ(r["outputs"]["output"], json::array({"batch", 10}));
  ASSERT_EQ(r["cases"].size(), 2u);
}

// Conv (padding, stride, groups, dilation) + ReLU + MaxPool (the fused path in mox),
// BatchNorm with running statistics, average pooling without padded zeros, a partial
// Flatten (Reshape) and a Linear on rank-3 input (MatMul), LogSoftmax.
const char* kCnn = R"(
[model]
name = "cnn"
input_shape = [3, 11, 11]
[[model.layers]]
type = "Conv2d"
out_channels = 6
kernel_size = 3
padding = 1
activation = "relu"
[[model.layers]]
type = "MaxPool2d"
kernel_size = 2
[[model.layers]]
type = "BatchNorm2d"
[[model.layers]]
type = "Conv2d"
out_channels = 8
kernel_size = [3, 2]
stride = [1, 2]
dilation = [1, 2]
groups = 2
[[model.layers]]
type = "AvgPool2d"
kernel_size = 2
stride = 1
padding = 1
count_include_pad = false
[[model.layers]]
type = "Flatten"
start_dim = 2
[[model.layers]]
type = "Linear"
out_features = 5
activation = "tanh"
[[model.layers]]
type = "Flatten"
[[model.layers]]
type = "Linear"
out_features = 4
[[model.layers]]
type = "LogSoftmax"
)";

TEST(OnnxExport, CnnMatchesMoxForTwoBatchSizes) {
  MOX_REQUIRE_ONNX_CHECKER();
  Shape in;
  auto m = build(kCnn, &in);
  Generator gen(2);
  json r = export_and_check(*m, in, {run_case(*m, randn({2, 3, 11, 11}, &gen)), run_case(*m, randn({3, 3, 11, 11}, &gen))},
                            "cnn");
  for (const char* op : {"Conv", "Relu", "MaxPool", "BatchNormalization", "AveragePool", "Reshape", "MatMul",
                         "Transpose", "Tanh", "Flatten", "Gemm", "LogSoftmax"})
    EXPECT_NE(std::find(r["ops"].begin(), r["ops"].end(), op), r["ops"].end()) << op;
  EXPECT_EQ(r["outputs"]["output"], json::array({"batch", 4}));
}

// Token ids through Embedding + GlobalAveragePooling1D, then the other activations and
// BatchNorm1d.
const char* kZoo = R"(
[model]
name = "zoo"
input_shape = [7]
[[model.layers]]
type = "Embedding"
num_embeddings = 30
embedding_dim = 8
[[model.layers]]
type = "GlobalAveragePooling1D"
[[model.layers]]
type = "Dense"
units = 12
activation = "elu"
[[model.layers]]
type = "BatchNorm1d"
[[model.layers]]
type = "LeakyReLU"
negative_slope = 0.2
[[model.layers]]
type = "Dense"
units = 12
activation = "selu"
[[model.layers]]
type = "Dense"
units = 12
activation = "silu"
[[model.layers]]
type = "Softplus"
beta = 2.0
threshold = 1.0
[[model.layers]]
type = "Dense"
units = 12
activation = "gelu_tanh"
[[model.layers]]
type = "Identity"
[[model.layers]]
type = "Dense"
units = 3
activation = "sigmoid"
)";

TEST(OnnxExport, TokenModelAndOtherActivationsMatchMox) {
  MOX_REQUIRE_ONNX_CHECKER();
  Shape in;
  auto m = build(kZoo, &in);
  Generator gen(3);
  json r = export_and_check(*m, in,
                            {run_case(*m, randint(0, 30, {4, 7}, &gen)), run_case(*m, randint(0, 30, {1, 7}, &gen))},
                            "zoo");
  EXPECT_EQ(r["inputs"]["input"], json::array({"batch", 7}));
  for (const char* op : {"Gather", "ReduceMean", "Elu", "BatchNormalization", "LeakyRelu", "Selu", "Sigmoid",
                         "Softplus", "Greater", "Where", "Pow", "Tanh"})
    EXPECT_NE(std::find(r["ops"].begin(), r["ops"].end(), op), r["ops"].end()) << op;
}

// A GPT with random weights everywhere (LayerNorms and biases included).
std::shared_ptr<nn::GPT> tiny_gpt(nn::GPTConfig c, uint64_t seed) {
  auto g = std::make_shared<nn::GPT>(c);
  randomize(*g, seed);
  g->eval();
  return g;
}

json export_and_check_gpt(nn::GPT& g, const std::vector<Shape>& id_shapes, const std::string& name) {
  Generator gen(4);
  std::vector<OnnxCase> cases;
  for (const Shape& s : id_shapes)
    cases.push_back(run_case(g, randint(0, g.config().vocab_size, s, &gen), "input_ids", "logits"));
  const std::string dir = testing::onnx_test_dir(name);
  io::OnnxExportOptions o;
  o.metadata = {{"mox.note", "test"}};
  io::OnnxExportInfo info = io::export_onnx_gpt(g, dir + "/gpt.onnx", o);
  EXPECT_EQ(info.parameters, g.config().num_parameters());  // tied weights stored once
  testing::CheckResult r = check_onnx(dir + "/gpt.onnx", cases, dir);
  EXPECT_EQ(r.code, 0) << r.text;
  fs::remove_all(dir);
  if (r.code != 0) return json::object();
  EXPECT_EQ(r.report["inputs"]["input_ids"], json::array({"batch", "sequence"}));
  EXPECT_EQ(r.report["outputs"]["logits"], json::array({"batch", "sequence", g.config().vocab_size}));
  EXPECT_EQ(r.report["metadata"]["mox.note"], "test");
  EXPECT_EQ(std::find(r.report["ops"].begin(), r.report["ops"].end(), "Gelu"), r.report["ops"].end());
  return r.report;
}

TEST(OnnxExport, GptUntiedExactGeluMatchesMoxForTwoBatchesAndLengths) {
  MOX_REQUIRE_ONNX_CHECKER();
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.block_size = 8;
  c.vocab_size = 23;
  c.tie_embeddings = false;
  c.activation = "gelu";
  auto g = tiny_gpt(c, 11);
  json r = export_and_check_gpt(*g, {{2, 8}, {3, 5}, {1, 1}}, "gpt_untied");
  EXPECT_NE(std::find(r["ops"].begin(), r["ops"].end(), "Erf"), r["ops"].end());
}

TEST(OnnxExport, GptTiedTanhGeluPrunedHeadsNoBiasMatchesMox) {
  MOX_REQUIRE_ONNX_CHECKER();
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 16;
  c.block_size = 6;
  c.vocab_size = 19;
  c.bias = false;
  c.layer_heads = {1, 3};
  c.layer_mlp = {20, 8};
  auto g = tiny_gpt(c, 12);
  json r = export_and_check_gpt(*g, {{2, 6}, {1, 4}}, "gpt_tied");
  EXPECT_NE(std::find(r["ops"].begin(), r["ops"].end(), "Tanh"), r["ops"].end());
}

std::string export_error(const nn::Sequential& m, const Shape& in, const std::string& path) {
  try {
    io::export_onnx_sequential(m, in, path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(OnnxExport, RefusesLayersWithoutAMappingAndWritesNothing) {
  const std::string dir = testing::onnx_test_dir("refuse");
  Shape in;
  auto rnn = build(R"(
[model]
input_shape = [5, 3]
[[model.layers]]
type = "LSTM"
hidden_size = 4
[[model.layers]]
type = "Linear"
out_features = 2
)",
                   &in);
  std::string e = export_error(*rnn, in, dir + "/rnn.onnx");
  EXPECT_NE(e.find("layer 0 (LSTM)"), std::string::npos) << e;
  EXPECT_NE(e.find("does not support LSTM"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir + "/rnn.onnx"));

  auto mlp = build(kMlp, &in);
  compress::QuantConfig qc;
  qc.mode = "dynamic-int8";
  compress::quantize_dynamic(*mlp, qc);
  e = export_error(*mlp, in, dir + "/q.onnx");
  EXPECT_NE(e.find("ONNX export of quantised models is not supported; export the float run"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir + "/q.onnx"));

  e = export_error(*mlp, {1, 6, 6}, dir + "/q.onnx");
  EXPECT_NE(e.find("must start with -1"), std::string::npos) << e;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mox
