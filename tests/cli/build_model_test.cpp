// The config parser (io/config) and the model builder (nn/models/build_model): every layer
// type, PyTorch's parameter names and counts, inferred sizes, and running what is built.
#include <gtest/gtest.h>

#include <cmath>

#include "mox/io/config.h"
#include "mox/nn/models/build_model.h"
#include "mox/nn/models/last_time_step.h"
#include "mox/nn/models/summary.h"
#include "mox/nn/nn.h"
#include "mox/ops/ops.h"

namespace mox {
namespace {

io::Config parse(const std::string& text) { return io::parse_config(text, "test.toml"); }

std::string error_of(const std::string& text) {
  try {
    io::Config c = parse(text);
    nn::build_model(c.model);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Same layers as the PyTorch model
//   nn.Sequential(Conv2d(3,8,3,padding=1), BatchNorm2d(8), AvgPool2d(2),
//                 Conv2d(8,16,(3,5),stride=2,bias=False), Flatten(), LayerNorm(672),
//                 Linear(672,20))
// whose state_dict keys and shapes are listed below (torch 1.13); 16,964 parameters.
const char* kConvNet = R"(
[model]
input_shape = [3, 32, 32]
[[model.layers]]
type = "Conv2D"
filters = 8
kernel_size = 3
padding = "same"
[[model.layers]]
type = "BatchNormalization"
[[model.layers]]
type = "AveragePooling2D"
pool_size = 2
[[model.layers]]
type = "conv2d"
out_channels = 16
kernel_size = [3, 5]
stride = 2
bias = false
[[model.layers]]
type = "Flatten"
[[model.layers]]
type = "LayerNormalization"
epsilon = 1e-6
[[model.layers]]
type = "Linear"
out_features = 20
)";

TEST(BuildModel, ConvNetMatchesPyTorchStateDict) {
  io::Config c = parse(kConvNet);
  auto model = nn::build_model(c.model);
  std::vector<std::pair<std::string, Shape>> want = {
      {"0.weight", {8, 3, 3, 3}}, {"0.bias", {8}},
      {"1.weight", {8}}, {"1.bias", {8}}, {"1.running_mean", {8}}, {"1.running_var", {8}},
      {"1.num_batches_tracked", {}},
      {"3.weight", {16, 8, 3, 5}},
      {"5.weight", {672}}, {"5.bias", {672}},
      {"6.weight", {20, 672}}, {"6.bias", {20}}};
  nn::StateDict sd = model->state_dict();
  ASSERT_EQ(sd.size(), want.size());
  for (size_t i = 0; i < want.size(); i++) {
    EXPECT_EQ(sd.items()[i].first, want[i].first);
    EXPECT_EQ(sd.items()[i].second.shape(), want[i].second) << want[i].first;
  }
  EXPECT_EQ(model->num_parameters(), 16964);
  EXPECT_EQ(model->output_shape(nn::model_input_shape(c.model)), (Shape{-1, 20}));
  auto ln = model->at<nn::LayerNorm>(5);
  EXPECT_DOUBLE_EQ(ln->eps, 1e-6);
  EXPECT_EQ(model->at<nn::Conv2d>(0)->options.padding(), nn::Size2(1));

  Generator g(1);
  Tensor y = model->forward(randn({2, 3, 32, 32}, &g));
  EXPECT_EQ(y.shape(), (Shape{2, 20}));
}

// nn.Embedding(50,12,padding_idx=0), nn.LSTM(12,10,num_layers=2,bidirectional=True),
// nn.GRU(20,6), nn.LayerNorm(6), nn.Linear(6,3): 5,617 parameters in torch 1.13.
const char* kSeqNet = R"(
[model]
input_shape = [7]
[[model.layers]]
type = "Embedding"
input_dim = 50
output_dim = 12
padding_idx = 0
[[model.layers]]
type = "LSTM"
hidden_size = 10
num_layers = 2
bidirectional = true
return_sequences = true
[[model.layers]]
type = "GRU"
units = 6
[[model.layers]]
type = "LayerNorm"
[[model.layers]]
type = "Dense"
units = 3
activation = "log_softmax"
)";

TEST(BuildModel, RecurrentNetMatchesPyTorchCounts) {
  io::Config c = parse(kSeqNet);
  auto model = nn::build_model(c.model);
  EXPECT_EQ(model->num_parameters(), 5617);
  std::vector<std::string> types;
  for (size_t i = 0; i < model->size(); i++) types.push_back((*model)[i]->type_name());
  EXPECT_EQ(types, (std::vector<std::string>{"Embedding", "LSTM", "GRU", "LastTimeStep",
                                             "LayerNorm", "Linear", "LogSoftmax"}));
  EXPECT_TRUE(model->state_dict().contains("1.weight_hh_l1_reverse"));
  auto lstm = model->at<nn::LSTM>(1);
  EXPECT_TRUE(lstm->options.batch_first());
  Generator g(2);
  Tensor ids = randint(0, 50, {3, 7}, &g);
  Tensor y = model->forward(ids);
  EXPECT_EQ(y.shape(), (Shape{3, 3}));
  // log_softmax rows exponentiate to probabilities
  std::vector<float> p = sum(exp(y), {1}).to_vector<float>();
  for (float v : p) EXPECT_NEAR(v, 1.0f, 1e-5);
}

TEST(LastTimeStep, BidirectionalEqualsFinalStates) {
  Generator g(3);
  nn::LSTM lstm(nn::LSTMOptions(4, 5).batch_first(true).bidirectional(true));
  Tensor x = randn({2, 6, 4}, &g);
  nn::RNNState st = lstm.forward_with_state(x);
  Tensor last = nn::LastTimeStep(true).forward(st.output);
  // h_n [2 directions, N, H] -> [N, 2H] as [forward, reverse]
  Tensor want = cat({st.h_n[0], st.h_n[1]}, 1);
  EXPECT_TRUE(allclose(last, want, 1e-6, 1e-6));
  Tensor uni = nn::LastTimeStep(false).forward(st.output);
  EXPECT_TRUE(allclose(uni, st.output.select(1, 5), 0, 0));
  EXPECT_THROW(nn::LastTimeStep().output_shape({2, 3}), Error);
}

TEST(BuildModel, KerasAndTorchNamesBuildTheSameLayers) {
  std::string keras = error_of(R"(
[model]
input_shape = [1, 8, 8]
[[model.layers]]
type = "Conv2D"
filters = 4
kernel_size = 3
strides = [1, 1]
use_bias = false
activation = "relu"
[[model.layers]]
type = "MaxPooling2D"
pool_size = [2, 2]
[[model.layers]]
type = "Activation"
activation = "tanh"
[[model.layers]]
type = "SELU"
)");
  EXPECT_EQ(keras, "");
  io::Config c = parse(R"(
[model]
input_shape = [1, 8, 8]
[[model.layers]]
type = "Conv2D"
filters = 4
kernel_size = 3
use_bias = false
activation = "relu"
[[model.layers]]
type = "MaxPooling2D"
pool_size = 2
strides = 1
[[model.layers]]
type = "LeakyReLU"
negative_slope = 0.2
)");
  auto m = nn::build_model(c.model);
  ASSERT_EQ(m->size(), 4u);
  EXPECT_FALSE(m->at<nn::Conv2d>(0)->bias.defined());
  m->at<nn::ReLU>(1);
  EXPECT_EQ(m->at<nn::MaxPool2d>(2)->params.stride_h, 1);
  EXPECT_DOUBLE_EQ(m->at<nn::LeakyReLU>(3)->negative_slope, 0.2);
  EXPECT_EQ(m->output_shape({-1, 1, 8, 8}), (Shape{-1, 4, 5, 5}));
}

TEST(BuildModel, ErrorsNameTheField) {
  const std::string head = "[model]\ninput_shape = [1, 8, 8]\n[[model.layers]]\n";
  EXPECT_EQ(error_of(head + "type = \"Conv2d\"\nout_channels = 2\nkernel_size = 2\npadding = \"same\"\n"),
            "test.toml: model.layers[0].padding: \"same\" needs an odd kernel size (with "
            "dilation), got (2, 2) (line 7)");
  EXPECT_EQ(error_of(head + "type = \"Conv2d\"\nout_channels = 2\nkernel_size = 3\ngroups = 2\n"),
            "test.toml: model.layers[0].groups: must divide in_channels (1) and out_channels (2), "
            "got 2");
  EXPECT_EQ(error_of(head + "type = \"Conv2d\"\nout_channels = 0\nkernel_size = 3\n"),
            "test.toml: model.layers[0].out_channels: must be a positive integer, got 0");
  EXPECT_EQ(error_of(head + "type = \"MaxPool2d\"\nkernel_size = [2, 2, 2]\n"),
            "test.toml: model.layers[0].kernel_size: expected an array of 2 integers, got 3 "
            "values (line 5)");
  EXPECT_EQ(error_of(head + "type = \"Flatten\"\n[[model.layers]]\ntype = \"LSTM\"\nunits = 3\n"),
            "test.toml: model.layers[1]: LSTM expects input (None, T, C), but the previous layer "
            "outputs (None, 64)");
  EXPECT_EQ(error_of("[model]\ninput_shape = [5, 3]\n[[model.layers]]\n"
                     "type = \"LSTM\"\nunits = 3\nactivation = \"relu\"\n"),
            "test.toml: model.layers[0].activation: unknown field for LSTM (known: bias, "
            "bidirectional, dropout, hidden_size, input_size, num_layers, return_sequences, "
            "type, units, use_bias) (line 6)");
  EXPECT_EQ(error_of(head + "type = \"Flatten\"\n[[model.layers]]\ntype = \"LayerNorm\"\n"
                            "normalized_shape = [3]\n"),
            "test.toml: model.layers[1].normalized_shape: must be trailing dims of the input "
            "(None, 64), got [3]");
  EXPECT_EQ(error_of(head + "type = 3\n"),
            "test.toml: model.layers[0].type: expected a string, got 3 (line 4)");
  EXPECT_EQ(error_of("[model]\ninput_shape = 784\n[[model.layers]]\ntype = \"Flatten\"\n"),
            "test.toml: model.input_shape: expected an array of integers, got 784 (line 2)");
  EXPECT_EQ(error_of("[model]\ninput_shape = [784]\nlayers = 3\n"),
            "test.toml: model.layers: expected an array of tables ([[model.layers]]), got 3 "
            "(line 3)");
}

TEST(Config, KeepsTheOtherSectionsForTheirReaders) {
  io::Config c = parse(R"(
[model]
name = "tiny"
input_shape = [4]
[[model.layers]]
type = "Linear"
out_features = 2

[data]
path = "data/fashion"
[train]
epochs = 3
lr = 1e-3
batch_size = 64
mixed = true
epochz = 4
[optimizer]
type = "AdamW"
betas = [9, 99]
[optimizer.extra]
k = "v"
)");
  EXPECT_EQ(c.model.name, "tiny");
  EXPECT_EQ(c.model.input_shape, (std::vector<int64_t>{4}));
  EXPECT_TRUE(c.has_data && c.has_train && c.has_optimizer);
  EXPECT_FALSE(c.has_scheduler);
  EXPECT_EQ(c.data.get_string("path"), "data/fashion");
  EXPECT_EQ(c.train.get_int("epochs"), 3);
  EXPECT_DOUBLE_EQ(c.train.get_float("lr"), 1e-3);
  EXPECT_DOUBLE_EQ(c.train.get_float("batch_size"), 64.0);  // integers read as numbers
  EXPECT_TRUE(c.train.get_bool("mixed"));
  EXPECT_EQ(c.train.get_int("missing", 7), 7);
  EXPECT_EQ(c.optimizer.get_int_list("betas", 2), (std::vector<int64_t>{9, 99}));
  EXPECT_EQ(c.optimizer.get_table("extra").get_string("k"), "v");
  EXPECT_EQ(c.optimizer.get_table("extra").path(), "optimizer.extra");
  EXPECT_NE(c.train.toml().find("epochs = 3"), std::string::npos) << c.train.toml();
  EXPECT_EQ(c.scheduler.get_float("gamma", 0.5), 0.5);

  // Readers check their own tables: typos surface as unknown fields.
  try {
    c.train.check_no_unknown_keys("[train]");
    FAIL() << "epochz was never read";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("test.toml: train.epochz: unknown field for [train]", 0),
              0u)
        << e.what();
  }
  try {
    c.train.get_string("epochs");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "test.toml: train.epochs: expected a string, got 3 (line 12)");
  }
  try {
    c.train.get_int("lr");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "test.toml: train.lr: expected an integer, got 0.001 (line 13)");
  }
}

TEST(Config, SyntaxErrorsGiveLineAndColumn) {
  try {
    parse("[model]\ninput_shape = [1,\n\nx = = 2\n");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("test.toml:4:", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("invalid TOML"), std::string::npos);
  }
  EXPECT_THROW(io::load_config("/nonexistent/x.toml"), Error);
}

TEST(Summary, CountsTrainableAndFrozenParameters) {
  io::Config c = parse(kConvNet);
  auto model = nn::build_model(c.model);
  model->at<nn::Conv2d>(0)->weight.requires_grad_(false);  // freeze 216 weights
  nn::ModelSummary s = nn::summarize(*model, nn::model_input_shape(c.model), "convnet");
  EXPECT_EQ(s.total_params, 16964);
  EXPECT_EQ(s.trainable_params, 16964 - 216);
  EXPECT_EQ(s.non_trainable_params(), 216);
  EXPECT_EQ(s.buffer_elements, 17);  // running_mean, running_var, num_batches_tracked
  ASSERT_EQ(s.rows.size(), 7u);
  EXPECT_EQ(s.rows[3].params, 16 * 8 * 3 * 5);
  EXPECT_EQ(s.rows[4].output_shape, (Shape{-1, 672}));
  std::string text = s.str();
  EXPECT_NE(text.find("Non-trainable params: 216 "), std::string::npos) << text;
  EXPECT_NE(text.find("Trainable params: 16,748 "), std::string::npos) << text;
  EXPECT_EQ(nn::group_thousands(1234567), "1,234,567");
  EXPECT_EQ(nn::group_thousands(12), "12");
  EXPECT_EQ(nn::format_shape({-1, 3}), "(None, 3)");
  EXPECT_EQ(nn::format_shape({5}), "(5,)");
}

}  // namespace
}  // namespace mox
