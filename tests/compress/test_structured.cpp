// Structured pruning (compress/structured.h). The reference for every pruned model is the
// ORIGINAL model with the pruned units' activations forced to zero: a copy whose pruned rows
// (weight and bias; BatchNorm's weight and bias for its channels; for GPT the c_proj columns
// of the pruned heads / MLP units) are zeroed, run by the ordinary layers. The kept units
// are computed here from the documented score (L1 norms, ties to the lower index), and the
// rewritten config text is rebuilt with nn::build_model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include <nlohmann/json.hpp>

#include "../error_of.h"
#include "io/test_util.h"
#include "mox/compress/structured.h"
#include "mox/mox.h"
#include "mox/nn/nn.h"
#include "mox/nn/models/build_model.h"
#include "mox/nn/models/gpt_io.h"

using namespace mox;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to(DType::F64).to_vector<double>(), y = b.to(DType::F64).to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); i++) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// Indices of the k rows (first-dim slices) of w with the largest L1 norms, ties to the lower
// index, ascending: written out independently of keep_largest.
std::vector<int64_t> top_rows(const Tensor& w, int64_t k) {
  const int64_t n = w.size(0), per = w.numel() / n;
  std::vector<double> v = w.to(DType::F64).contiguous().to_vector<double>();
  std::vector<std::pair<double, int64_t>> s;
  for (int64_t r = 0; r < n; r++) {
    double l1 = 0;
    for (int64_t i = 0; i < per; i++) l1 += std::fabs(v[size_t(r * per + i)]);
    s.push_back({-l1, r});  // sort ascending by (-l1, index)
  }
  std::sort(s.begin(), s.end());
  std::vector<int64_t> out;
  for (int64_t i = 0; i < k; i++) out.push_back(s[size_t(i)].second);
  std::sort(out.begin(), out.end());
  return out;
}

// t with the first-dim slices NOT in keep set to zero (dim 0), or columns (dim 1).
Tensor zero_except(const Tensor& t, const std::vector<int64_t>& keep, int64_t dim = 0) {
  std::vector<float> v = t.to(DType::F32).contiguous().to_vector<float>();
  const int64_t n = t.size(dim);
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < t.dim(); d++) inner *= t.size(d);
  for (size_t i = 0; i < v.size(); i++) {
    const int64_t idx = (int64_t(i) / inner) % n;
    if (std::find(keep.begin(), keep.end(), idx) == keep.end()) v[i] = 0.0f;
  }
  return from_vector(v, t.shape());
}

// A copy of `model` (built from the same config) holding the same state.
std::shared_ptr<nn::Sequential> copy_of(const nn::Sequential& model, const io::Config& c) {
  auto m = nn::build_model(c.model);
  m->load_state_dict(model.state_dict());
  m->train(model.is_training());
  return m;
}

const char* kMlp = R"(
[model]
name = "mlp"
input_shape = [12]   # features

[[model.layers]]
type = "Dense"
units = 10
activation = "relu"

[[model.layers]]
type = "Dropout"
p = 0.1

[[model.layers]]
type = "Linear"
out_features = 7
activation = "tanh"

[[model.layers]]
type = "Linear"
in_features = 7
out_features = 3

[train]
epochs = 1
)";

const char* kCnn = R"(
[model]
input_shape = [3, 9, 9]

[[model.layers]]
type = "Conv2d"
out_channels = 6
kernel_size = 3
padding = 1

[[model.layers]]
type = "BatchNorm2d"
num_features = 6

[[model.layers]]
type = "ReLU"

[[model.layers]]
type = "MaxPool2d"
kernel_size = 2

[[model.layers]]
type = "Conv2D"
filters = 5
kernel_size = 3
activation = "relu"

[[model.layers]]
type = "Flatten"

[[model.layers]]
type = "Dense"
units = 8
activation = "relu"

[[model.layers]]
type = "Linear"
out_features = 4
)";

compress::StructuredPruneOptions opts(double f, std::vector<std::string> skip = {}) {
  compress::StructuredPruneOptions o;
  o.fraction = f;
  o.skip = std::move(skip);
  return o;
}

// The result's model rebuilt from its config text has the same parameter shapes, and with
// the result's weights loaded gives the same output.
void expect_config_rebuilds(const compress::StructuredPruneResult& r, const Tensor& x) {
  io::Config c = io::parse_config(r.config_text, "pruned.toml");
  auto rebuilt = nn::build_model(c.model);
  auto a = rebuilt->named_parameters(), b = r.model->named_parameters();
  ASSERT_EQ(a.keys(), b.keys());
  for (const auto& [k, t] : b) EXPECT_EQ(a.at(k).shape(), t.shape()) << k;
  rebuilt->load_state_dict(r.model->state_dict());
  rebuilt->eval();
  EXPECT_EQ(max_abs_diff(rebuilt->forward(x), r.model->forward(x)), 0.0);
}

}  // namespace

TEST(StructuredPrune, MlpMatchesTheOriginalWithPrunedUnitsZeroed) {
  io::Config c = io::parse_config(kMlp, "mlp.toml");
  manual_seed(3);
  auto model = nn::build_model(c.model);  // 0 Linear, 1 ReLU, 2 Dropout, 3 Linear, 4 Tanh, 5 Linear
  model->eval();
  const Generator::State rng = default_generator().state();
  compress::StructuredPruneResult r = compress::prune_structured(*model, c, opts(0.5));
  // No random numbers drawn (the model is rebuilt with the generator's state restored).
  EXPECT_EQ(default_generator().state().s[0], rng.s[0]);
  EXPECT_EQ(default_generator().state().s[3], rng.s[3]);

  const std::vector<int64_t> k0 = top_rows(model->at<nn::Linear>(0)->weight, 5);
  const std::vector<int64_t> k3 = top_rows(model->at<nn::Linear>(3)->weight, 4);  // round(3.5) = 4
  ASSERT_EQ(r.layers.size(), 3u);
  EXPECT_EQ(r.layers[0], (std::pair<std::string, std::pair<int64_t, int64_t>>{"0", {10, 5}}));
  EXPECT_EQ(r.layers[1], (std::pair<std::string, std::pair<int64_t, int64_t>>{"3", {7, 4}}));
  EXPECT_EQ(r.layers[2], (std::pair<std::string, std::pair<int64_t, int64_t>>{"5", {3, 3}}));  // output layer
  EXPECT_EQ(r.params_before, 12 * 10 + 10 + 10 * 7 + 7 + 7 * 3 + 3);
  EXPECT_EQ(r.params_after, 12 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3);
  EXPECT_EQ(r.params_after, r.model->num_parameters());
  EXPECT_FALSE(r.model->is_training());

  // The kept rows/columns are the original's.
  auto l0 = r.model->at<nn::Linear>(0), l3 = r.model->at<nn::Linear>(3), l5 = r.model->at<nn::Linear>(5);
  EXPECT_EQ(l0->weight.shape(), (Shape{5, 12}));
  EXPECT_EQ(l3->weight.shape(), (Shape{4, 5}));
  EXPECT_EQ(l5->weight.shape(), (Shape{3, 4}));
  const std::vector<float> w0 = model->at<nn::Linear>(0)->weight.to_vector<float>(), p0 = l0->weight.to_vector<float>();
  for (size_t i = 0; i < k0.size(); i++)
    for (int64_t j = 0; j < 12; j++) EXPECT_EQ(p0[i * 12 + size_t(j)], w0[size_t(k0[i] * 12 + j)]);

  // Reference: the original with the pruned units zeroed.
  auto ref = copy_of(*model, c);
  nn::StateDict sd = model->state_dict();
  sd.at("0.weight") = zero_except(sd.at("0.weight"), k0);
  sd.at("0.bias") = zero_except(sd.at("0.bias"), k0);
  sd.at("3.weight") = zero_except(sd.at("3.weight"), k3);
  sd.at("3.bias") = zero_except(sd.at("3.bias"), k3);
  ref->load_state_dict(sd);
  ref->eval();
  Tensor x = randn({6, 12});
  EXPECT_LT(max_abs_diff(r.model->forward(x), ref->forward(x)), 1e-5);
  // (and pruning did change the function: the reference differs from the unpruned model)
  EXPECT_GT(max_abs_diff(model->forward(x), ref->forward(x)), 1e-4);

  // The config text: sizes rewritten under the keys the file used, the given in_features too.
  io::Config pc = io::parse_config(r.config_text, "p.toml");
  EXPECT_EQ(pc.model.layers[0]->get_int("units"), 5);
  EXPECT_EQ(pc.model.layers[2]->get_int("out_features"), 4);
  EXPECT_EQ(pc.model.layers[3]->get_int("in_features"), 4);
  EXPECT_EQ(pc.model.layers[3]->get_int("out_features"), 3);
  EXPECT_EQ(pc.train.get_int("epochs"), 1);
  EXPECT_EQ(pc.model.name, "mlp");
  expect_config_rebuilds(r, x);

  // The original is unchanged.
  EXPECT_EQ(model->at<nn::Linear>(0)->weight.shape(), (Shape{10, 12}));
}

TEST(StructuredPrune, CnnWithBatchNormAndFlatten) {
  io::Config c = io::parse_config(kCnn, "cnn.toml");
  manual_seed(5);
  auto model = nn::build_model(c.model);
  // 0 Conv2d, 1 BN, 2 ReLU, 3 MaxPool, 4 Conv2d, 5 ReLU, 6 Flatten, 7 Linear, 8 ReLU, 9 Linear
  ASSERT_EQ(model->size(), 10u);
  {
    // BatchNorm with non-trivial affine parameters and running statistics.
    NoGradGuard ng;
    auto bn = model->at<nn::BatchNorm2d>(1);
    bn->weight.copy_(rand({6}) + 0.5);
    bn->bias.copy_(randn({6}));
    bn->running_mean.copy_(randn({6}));
    bn->running_var.copy_(rand({6}) + 0.5);
  }
  model->eval();
  compress::StructuredPruneResult r = compress::prune_structured(*model, c, opts(0.5));
  const std::vector<int64_t> k0 = top_rows(model->at<nn::Conv2d>(0)->weight, 3);
  const std::vector<int64_t> k4 = top_rows(model->at<nn::Conv2d>(4)->weight, 3);  // round(2.5) = 3
  const std::vector<int64_t> k7 = top_rows(model->at<nn::Linear>(7)->weight, 4);
  ASSERT_EQ(r.layers.size(), 4u);
  EXPECT_EQ(r.layers[0].second, (std::pair<int64_t, int64_t>{6, 3}));
  EXPECT_EQ(r.layers[1].second, (std::pair<int64_t, int64_t>{5, 3}));
  EXPECT_EQ(r.layers[2].second, (std::pair<int64_t, int64_t>{8, 4}));
  EXPECT_EQ(r.layers[3], (std::pair<std::string, std::pair<int64_t, int64_t>>{"9", {4, 4}}));
  EXPECT_EQ(r.model->at<nn::Conv2d>(4)->weight.shape(), (Shape{3, 3, 3, 3}));
  EXPECT_EQ(r.model->at<nn::BatchNorm2d>(1)->running_var.shape(), (Shape{3}));
  EXPECT_EQ(r.model->at<nn::Linear>(7)->weight.shape(), (Shape{4, 3 * 2 * 2}));  // 3 channels x 2x2
  // Parameters by hand: conv 3*3*3*3+3, bn 2*3, conv 3*3*3*3+3, linear 12*4+4, linear 4*4+4.
  EXPECT_EQ(r.params_after, (81 + 3) + 6 + (81 + 3) + (48 + 4) + (16 + 4));
  EXPECT_EQ(r.params_before, (6 * 27 + 6) + 12 + (5 * 54 + 5) + (20 * 8 + 8) + (8 * 4 + 4));

  auto ref = copy_of(*model, c);
  nn::StateDict sd = model->state_dict();
  for (const char* k : {"0.weight", "0.bias", "1.weight", "1.bias"}) sd.at(k) = zero_except(sd.at(k), k0);
  for (const char* k : {"4.weight", "4.bias"}) sd.at(k) = zero_except(sd.at(k), k4);
  for (const char* k : {"7.weight", "7.bias"}) sd.at(k) = zero_except(sd.at(k), k7);
  ref->load_state_dict(sd);
  ref->eval();
  manual_seed(6);
  Tensor x = randn({4, 3, 9, 9});
  EXPECT_LT(max_abs_diff(r.model->forward(x), ref->forward(x)), 1e-5);
  EXPECT_GT(max_abs_diff(model->forward(x), ref->forward(x)), 1e-4);

  io::Config pc = io::parse_config(r.config_text, "p.toml");
  EXPECT_EQ(pc.model.layers[0]->get_int("out_channels"), 3);
  EXPECT_EQ(pc.model.layers[1]->get_int("num_features"), 3);
  EXPECT_EQ(pc.model.layers[4]->get_int("filters"), 3);
  EXPECT_EQ(pc.model.layers[6]->get_int("units"), 4);
  expect_config_rebuilds(r, x);
}

TEST(StructuredPrune, KeepsTheLargestL1RowsWithTiesToTheLowerIndex) {
  const char* text = R"(
[model]
input_shape = [3]
[[model.layers]]
type = "Linear"
out_features = 4
activation = "relu"
[[model.layers]]
type = "Linear"
out_features = 2
)";
  io::Config c = io::parse_config(text, "t.toml");
  auto model = nn::build_model(c.model);
  {
    NoGradGuard ng;
    // Row L1 norms: 2, 5, 2, 4 (negative entries count by magnitude).
    model->at<nn::Linear>(0)->weight.copy_(
        from_vector(std::vector<float>{1, -1, 0, 0, 5, 0, 0, 0, -2, -4, 0, 0}, {4, 3}));
  }
  compress::StructuredPruneResult r = compress::prune_structured(*model, c, opts(0.5));
  EXPECT_EQ(r.model->at<nn::Linear>(0)->weight.to_vector<float>(), (std::vector<float>{0, 5, 0, -4, 0, 0}));
  // fraction 0.75 -> keep 1 (row 1); fraction 0.4 -> keep round(2.4) = 2; ties 2 vs 2 -> row 0 of rows 0, 2.
  r = compress::prune_structured(*model, c, opts(0.75));
  EXPECT_EQ(r.model->at<nn::Linear>(0)->weight.to_vector<float>(), (std::vector<float>{0, 5, 0}));
  {
    NoGradGuard ng;
    model->at<nn::Linear>(0)->weight.copy_(
        from_vector(std::vector<float>{1, -1, 0, 0, 5, 0, 0, 0, -2, 0, 0, 1}, {4, 3}));  // 2, 5, 2, 1
  }
  r = compress::prune_structured(*model, c, opts(0.5));
  EXPECT_EQ(r.model->at<nn::Linear>(0)->weight.to_vector<float>(), (std::vector<float>{1, -1, 0, 0, 5, 0}));
  EXPECT_EQ(compress::keep_largest({2, 5, 2, 1}, 2), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(compress::keep_largest({3, 3, 3}, 2), (std::vector<int64_t>{0, 1}));
  // One unit: nothing to remove (at least one is kept).
  const char* one = R"(
[model]
input_shape = [3]
[[model.layers]]
type = "Linear"
out_features = 1
[[model.layers]]
type = "Linear"
out_features = 2
)";
  io::Config c1 = io::parse_config(one, "one.toml");
  auto m1 = nn::build_model(c1.model);
  r = compress::prune_structured(*m1, c1, opts(0.9));
  EXPECT_EQ(r.layers[0].second, (std::pair<int64_t, int64_t>{1, 1}));
  EXPECT_EQ(r.params_after, r.params_before);
}

TEST(StructuredPrune, SkipListAndBadArguments) {
  io::Config c = io::parse_config(kMlp, "mlp.toml");
  manual_seed(9);
  auto model = nn::build_model(c.model);
  model->eval();
  compress::StructuredPruneResult r = compress::prune_structured(*model, c, opts(0.5, {"0"}));
  EXPECT_EQ(r.layers[0].second, (std::pair<int64_t, int64_t>{10, 10}));
  EXPECT_EQ(r.layers[1].second, (std::pair<int64_t, int64_t>{7, 4}));
  EXPECT_EQ(r.model->at<nn::Linear>(3)->weight.shape(), (Shape{4, 10}));
  const std::vector<int64_t> k3 = top_rows(model->at<nn::Linear>(3)->weight, 4);
  auto ref = copy_of(*model, c);
  nn::StateDict sd = model->state_dict();
  sd.at("3.weight") = zero_except(sd.at("3.weight"), k3);
  sd.at("3.bias") = zero_except(sd.at("3.bias"), k3);
  ref->load_state_dict(sd);
  ref->eval();
  Tensor x = randn({3, 12});
  EXPECT_LT(max_abs_diff(r.model->forward(x), ref->forward(x)), 1e-5);

  for (double f : {0.0, 1.0, -0.1, 1.5, std::nan("")})
    expect_error([&] { compress::prune_structured(*model, c, opts(f)); }, {"prune_structured", "fraction"});
  expect_error([&] { compress::prune_structured(*model, c, opts(0.5, {"7"})); }, {"skip", "\"7\""});
  // A config that does not describe the model.
  io::Config other = io::parse_config(kCnn, "cnn.toml");
  expect_error([&] { compress::prune_structured(*model, other, opts(0.5)); }, {"prune_structured"});
}

TEST(StructuredPrune, UnsafeFollowersLeaveTheLayerAlone) {
  // Linear -> LayerNorm -> Linear: LayerNorm mixes the units, so layer 0 is not pruned;
  // Linear -> Softmax at the end: the output layer.
  const char* text = R"(
[model]
input_shape = [6]
[[model.layers]]
type = "Linear"
out_features = 8
[[model.layers]]
type = "LayerNorm"
[[model.layers]]
type = "Linear"
out_features = 6
activation = "relu"
[[model.layers]]
type = "Linear"
out_features = 3
activation = "softmax"
)";
  io::Config c = io::parse_config(text, "t.toml");
  auto model = nn::build_model(c.model);
  compress::StructuredPruneResult r = compress::prune_structured(*model, c, opts(0.5));
  ASSERT_EQ(r.layers.size(), 3u);
  EXPECT_EQ(r.layers[0].second, (std::pair<int64_t, int64_t>{8, 8}));
  EXPECT_EQ(r.layers[1].second, (std::pair<int64_t, int64_t>{6, 3}));
  EXPECT_EQ(r.layers[2].second, (std::pair<int64_t, int64_t>{3, 3}));
}

TEST(StructuredPrune, LinearBeforeAnLstmPrunesItsInputColumns) {
  const char* text = R"(
[model]
input_shape = [5, 6]   # T, C
[[model.layers]]
type = "Dense"
units = 8
activation = "tanh"
[[model.layers]]
type = "LSTM"
units = 4
[[model.layers]]
type = "Dense"
units = 3
)";
  io::Config c = io::parse_config(text, "rnn.toml");
  manual_seed(11);
  auto model = nn::build_model(c.model);  // 0 Linear, 1 Tanh, 2 LSTM, 3 LastTimeStep, 4 Linear
  model->eval();
  compress::StructuredPruneResult r = compress::prune_structured(*model, c, opts(0.5));
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].second, (std::pair<int64_t, int64_t>{8, 4}));
  EXPECT_EQ(r.layers[1].second, (std::pair<int64_t, int64_t>{3, 3}));
  EXPECT_EQ(r.model->state_dict().at("2.weight_ih_l0").shape(), (Shape{16, 4}));
  const std::vector<int64_t> k0 = top_rows(model->at<nn::Linear>(0)->weight, 4);
  auto ref = copy_of(*model, c);
  nn::StateDict sd = model->state_dict();
  sd.at("0.weight") = zero_except(sd.at("0.weight"), k0);
  sd.at("0.bias") = zero_except(sd.at("0.bias"), k0);
  ref->load_state_dict(sd);
  ref->eval();
  Tensor x = randn({2, 5, 6});
  EXPECT_LT(max_abs_diff(r.model->forward(x), ref->forward(x)), 1e-5);
  expect_config_rebuilds(r, x);
}

TEST(StructuredPrune, EmbeddingLinearGlobalPoolingLinear) {
  // Units of a Linear on [N, T, C] pass through GlobalAveragePooling1D ([N, T, C] -> [N, C]).
  const char* text = R"(
[model]
input_shape = [5]
[[model.layers]]
type = "Embedding"
num_embeddings = 20
embedding_dim = 6
[[model.layers]]
type = "Dense"
units = 9
activation = "relu"
[[model.layers]]
type = "GlobalAveragePooling1D"
[[model.layers]]
type = "Dense"
units = 2
)";
  io::Config c = io::parse_config(text, "text.toml");
  manual_seed(12);
  auto model = nn::build_model(c.model);  // 0 Embedding, 1 Linear, 2 ReLU, 3 GAP1D, 4 Linear
  model->eval();
  compress::StructuredPruneResult r = compress::prune_structured(*model, c, opts(1.0 / 3.0));
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0], (std::pair<std::string, std::pair<int64_t, int64_t>>{"1", {9, 6}}));
  const std::vector<int64_t> k1 = top_rows(model->at<nn::Linear>(1)->weight, 6);
  auto ref = copy_of(*model, c);
  nn::StateDict sd = model->state_dict();
  sd.at("1.weight") = zero_except(sd.at("1.weight"), k1);
  sd.at("1.bias") = zero_except(sd.at("1.bias"), k1);
  ref->load_state_dict(sd);
  ref->eval();
  Tensor ids = randint(0, 20, {3, 5});
  EXPECT_LT(max_abs_diff(r.model->forward(ids), ref->forward(ids)), 1e-5);
  expect_config_rebuilds(r, ids);
}

TEST(StructuredPrune, KeepsTheModelsDtype) {
  io::Config c = io::parse_config(kMlp, "mlp.toml");
  manual_seed(13);
  auto model = nn::build_model(c.model);
  model->to(DType::F64);
  compress::StructuredPruneResult r = compress::prune_structured(*model, c, opts(0.5));
  for (const auto& [k, t] : r.model->named_parameters()) EXPECT_EQ(t.dtype(), DType::F64) << k;
  EXPECT_TRUE(r.model->is_training());  // as the original
}

// ------------------------------------------------------------------------------------ GPT

namespace {

nn::GPTConfig small_gpt() {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 16;  // head size 4
  c.block_size = 10;
  c.vocab_size = 13;
  return c;
}

// Random weights at a scale where heads differ clearly.
std::shared_ptr<nn::GPT> random_gpt(const nn::GPTConfig& c, uint64_t seed) {
  manual_seed(seed);
  auto m = std::make_shared<nn::GPT>(c);
  NoGradGuard ng;
  for (auto& [name, p] : m->named_parameters())
    if (name.find(".ln_") == std::string::npos) p.copy_(randn(p.shape()) * 0.3);
  m->eval();
  return m;
}

// Heads of layer l kept by the documented score, computed here.
std::vector<int64_t> top_heads(const nn::GPT& m, size_t l, int64_t keep) {
  const auto& a = *m.blocks[l]->attn;
  const int64_t H = a.n_head, D = 4, A = H * D, C = 16;
  std::vector<double> wa = a.c_attn->weight.to(DType::F64).to_vector<double>();
  std::vector<double> wp = a.c_proj->weight.to(DType::F64).to_vector<double>();
  std::vector<std::pair<double, int64_t>> s;
  for (int64_t h = 0; h < H; h++) {
    double l1 = 0;
    for (int64_t r = 0; r < 3 * A; r++)
      if ((r % A) / D == h)
        for (int64_t k = 0; k < C; k++) l1 += std::fabs(wa[size_t(r * C + k)]);
    for (int64_t o = 0; o < C; o++)
      for (int64_t j = h * D; j < h * D + D; j++) l1 += std::fabs(wp[size_t(o * A + j)]);
    s.push_back({-l1, h});
  }
  std::sort(s.begin(), s.end());
  std::vector<int64_t> out;
  for (int64_t i = 0; i < keep; i++) out.push_back(s[size_t(i)].second);
  std::sort(out.begin(), out.end());
  return out;
}

// Logits of forward_cached fed 4 tokens, then the rest one at a time: [B, T, V].
Tensor cached_logits(nn::GPT& m, const Tensor& ids) {
  nn::KVCache cache = m.make_cache(ids.size(0));
  std::vector<Tensor> parts{m.forward_cached(ids.narrow(1, 0, 4), cache, false)};
  for (int64_t t = 4; t < ids.size(1); t++) parts.push_back(m.forward_cached(ids.narrow(1, t, 1), cache, false));
  return cat(parts, 1);
}

}  // namespace

TEST(StructuredPruneGpt, HeadsMatchTheOriginalWithPrunedHeadsZeroed) {
  const nn::GPTConfig c = small_gpt();
  auto model = random_gpt(c, 21);
  auto ref = random_gpt(c, 99);
  ref->load_state_dict(model->state_dict());
  nn::StateDict sd = model->state_dict();
  std::vector<std::vector<int64_t>> kept;
  for (size_t l = 0; l < 2; l++) {
    kept.push_back(top_heads(*model, l, 2));
    std::vector<int64_t> cols;
    for (int64_t h : kept.back())
      for (int64_t d = 0; d < 4; d++) cols.push_back(h * 4 + d);
    const std::string k = "transformer.h." + std::to_string(l) + ".attn.c_proj.weight";
    sd.at(k) = zero_except(sd.at(k), cols, 1);  // pruned heads contribute nothing
  }
  ref->load_state_dict(sd);
  manual_seed(4);
  Tensor ids = randint(0, 13, {2, 7});
  const Tensor want = ref->forward(ids);
  EXPECT_GT(max_abs_diff(model->forward(ids), want), 1e-4);

  nn::GPTConfig pc = compress::prune_heads(*model, 0.5);
  EXPECT_EQ(pc.layer_heads, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(model->config().layer_heads, pc.layer_heads);
  EXPECT_EQ(model->blocks[0]->attn->c_attn->weight.shape(), (Shape{3 * 8, 16}));
  EXPECT_EQ(model->blocks[1]->attn->c_proj->weight.shape(), (Shape{16, 8}));
  EXPECT_LT(max_abs_diff(model->forward(ids), want), 1e-5);
  EXPECT_LT(max_abs_diff(cached_logits(*model, ids), want), 1e-5);
  nn::KVCache cache = model->make_cache(3);
  EXPECT_EQ(cache.k[1].shape(), (Shape{3, 2, 10, 4}));

  // Parameter count by hand: each layer's attention loses 2 heads of 4: c_attn 3*8 rows of 16
  // (+ bias), c_proj 8 columns of 16.
  const int64_t lost_per_layer = 3 * 8 * 16 + 3 * 8 + 16 * 8;
  EXPECT_EQ(pc.num_parameters(), c.num_parameters() - 2 * lost_per_layer);
  EXPECT_EQ(model->num_parameters(), pc.num_parameters());

  // model.json round trip (save_gpt / load_gpt), and no Hugging Face layout.
  mox::testing::TempDir tmp;
  nn::save_gpt(*model, tmp.path());
  nlohmann::json j = nlohmann::json::parse(mox::testing::read_bytes(tmp.file("model.json")));
  EXPECT_EQ(j.at("layer_heads"), nlohmann::json({2, 2}));
  EXPECT_FALSE(j.contains("layer_mlp"));
  auto loaded = nn::load_gpt(tmp.path());
  EXPECT_EQ(max_abs_diff(loaded->forward(ids), model->forward(ids)), 0.0);
  expect_error([&] { nn::save_gpt_hf(*model, tmp.file("hf")); }, {"layer_heads"});

  // Pruning again, down to one head per layer (round(0.25 * 2) = 1 kept; at least one).
  pc = compress::prune_heads(*model, 0.75);
  EXPECT_EQ(pc.layer_heads, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(model->forward(ids).shape(), (Shape{2, 7, 13}));
  EXPECT_LT(max_abs_diff(cached_logits(*model, ids), model->forward(ids)), 1e-5);
}

TEST(StructuredPruneGpt, MlpUnitsMatchTheOriginalWithPrunedUnitsZeroed) {
  nn::GPTConfig c = small_gpt();
  c.activation = "gelu";
  auto model = random_gpt(c, 31);
  auto ref = random_gpt(c, 98);
  nn::StateDict sd = model->state_dict();
  for (size_t l = 0; l < 2; l++) {
    const std::string p = "transformer.h." + std::to_string(l) + ".mlp.";
    // unit score: |c_fc row| + |c_proj column|, computed here
    std::vector<double> fc = sd.at(p + "c_fc.weight").to(DType::F64).to_vector<double>();
    std::vector<double> pr = sd.at(p + "c_proj.weight").to(DType::F64).to_vector<double>();
    std::vector<std::pair<double, int64_t>> s;
    for (int64_t u = 0; u < 64; u++) {
      double l1 = 0;
      for (int64_t k = 0; k < 16; k++) l1 += std::fabs(fc[size_t(u * 16 + k)]) + std::fabs(pr[size_t(k * 64 + u)]);
      s.push_back({-l1, u});
    }
    std::sort(s.begin(), s.end());
    std::vector<int64_t> keep;
    for (int64_t i = 0; i < 16; i++) keep.push_back(s[size_t(i)].second);  // keep 25%
    sd.at(p + "c_proj.weight") = zero_except(sd.at(p + "c_proj.weight"), keep, 1);
  }
  ref->load_state_dict(sd);
  manual_seed(5);
  Tensor ids = randint(0, 13, {3, 6});
  const Tensor want = ref->forward(ids);
  nn::GPTConfig pc = compress::prune_gpt_mlp(*model, 0.75);
  EXPECT_EQ(pc.layer_mlp, (std::vector<int64_t>{16, 16}));
  EXPECT_TRUE(pc.layer_heads.empty());
  EXPECT_EQ(model->blocks[0]->mlp->c_fc->weight.shape(), (Shape{16, 16}));
  EXPECT_LT(max_abs_diff(model->forward(ids), want), 1e-5);
  EXPECT_LT(max_abs_diff(cached_logits(*model, ids), want), 1e-5);
  EXPECT_EQ(pc.num_parameters(), c.num_parameters() - 2 * (48 * 16 + 48 + 16 * 48));
  EXPECT_EQ(model->num_parameters(), pc.num_parameters());

  // Heads and MLP together survive save_gpt / load_gpt.
  compress::prune_heads(*model, 0.5);
  mox::testing::TempDir tmp;
  nn::save_gpt(*model, tmp.path());
  auto loaded = nn::load_gpt(tmp.path());
  EXPECT_EQ(loaded->config().layer_mlp, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(loaded->config().layer_heads, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(max_abs_diff(loaded->forward(ids), model->forward(ids)), 0.0);
}

TEST(StructuredPruneGpt, TrainingWithDropoutRunsOnPrunedWidths) {
  // The unfused attention path (dropout in training mode) splits q, k, v at the layer's width.
  nn::GPTConfig c = small_gpt();
  c.dropout = 0.1;
  auto model = random_gpt(c, 51);
  compress::prune_heads(*model, 0.5);
  compress::prune_gpt_mlp(*model, 0.5);
  model->train();
  manual_seed(6);
  Tensor ids = randint(0, 13, {2, 6});
  Tensor loss = cross_entropy(model->forward(ids).reshape({12, 13}), randint(0, 13, {12}));
  loss.backward();
  for (const auto& [name, p] : model->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_EQ(p.grad().shape(), p.shape()) << name;
  }
  EXPECT_EQ(model->blocks[0]->attn->c_attn->weight.shape(), (Shape{24, 16}));
  EXPECT_EQ(model->blocks[0]->mlp->c_fc->weight.shape(), (Shape{32, 16}));
}

TEST(StructuredPruneGpt, ConfigChecksAndErrors) {
  auto model = random_gpt(small_gpt(), 41);
  for (double f : {0.0, 1.0, 2.0})
    expect_error([&] { compress::prune_heads(*model, f); }, {"prune_heads", "fraction"});
  expect_error([&] { compress::prune_gpt_mlp(*model, -1.0); }, {"prune_gpt_mlp", "fraction"});
  nn::GPTConfig c = small_gpt();
  c.layer_heads = {2};
  expect_error([&] { c.validate(); }, {"layer_heads", "n_layer"});
  c.layer_heads = {2, 0};
  expect_error([&] { c.validate(); }, {"layer_heads[1]"});
  c.layer_heads = {};
  c.layer_mlp = {5, 6, 7};
  expect_error([&] { c.validate(); }, {"layer_mlp"});
  nlohmann::json j = nn::gpt_config_to_json(small_gpt());
  EXPECT_FALSE(j.contains("layer_heads"));  // unpruned models keep GPT-2's keys only
  j["layer_heads"] = "x";
  expect_error([&] { nn::gpt_config_from_json(j, "model.json"); }, {"model.json", "layer_heads"});
  j["layer_heads"] = {3, 1};
  EXPECT_EQ(nn::gpt_config_from_json(j, "model.json").layer_heads, (std::vector<int64_t>{3, 1}));
  // A model built from per-layer widths has those shapes.
  nn::GPTConfig w = small_gpt();
  w.layer_heads = {3, 1};
  w.layer_mlp = {10, 20};
  nn::GPT g(w);
  EXPECT_EQ(g.blocks[0]->attn->c_attn->weight.shape(), (Shape{36, 16}));
  EXPECT_EQ(g.blocks[1]->attn->c_proj->weight.shape(), (Shape{16, 4}));
  EXPECT_EQ(g.blocks[1]->mlp->c_proj->weight.shape(), (Shape{16, 20}));
  EXPECT_EQ(g.num_parameters(), w.num_parameters());
  // set_config refuses widths the blocks do not have.
  nn::GPTConfig bad = model->config();
  bad.layer_heads = {1, 1};
  expect_error([&] { model->set_config(bad); }, {"set_config", "layer 0"});
  bad = model->config();
  bad.n_embd = 32;
  expect_error([&] { model->set_config(bad); }, {"set_config"});
}
