// Parameter names, shapes, counts, buffers and printed form of each layer, against
// PyTorch 1.13 (numbers from named_parameters(), state_dict() and repr() there).
#include <gtest/gtest.h>

#include "nn_test_util.h"

using namespace mox;
using namespace mox::nn;

namespace {

using NamedShapes = std::vector<std::pair<std::string, Shape>>;

NamedShapes named_shapes(const OrderedDict<Tensor>& d) {
  NamedShapes out;
  for (const auto& [name, t] : d) out.emplace_back(name, t.shape());
  return out;
}

void expect_params(Module& m, const NamedShapes& want, int64_t count) {
  EXPECT_EQ(named_shapes(m.named_parameters()), want) << m.repr();
  EXPECT_EQ(m.num_parameters(), count) << m.repr();
  for (const Tensor& p : m.parameters()) {
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
    EXPECT_EQ(p.dtype(), DType::F32);
  }
}

TEST(Names, Linear) {
  Linear a(4, 3);
  expect_params(a, {{"weight", {3, 4}}, {"bias", {3}}}, 15);
  EXPECT_EQ(a.repr(), "Linear(in_features=4, out_features=3, bias=True)");
  Linear b(4, 3, false);
  expect_params(b, {{"weight", {3, 4}}}, 12);
  EXPECT_FALSE(b.bias.defined());
  EXPECT_EQ(b.repr(), "Linear(in_features=4, out_features=3, bias=False)");
}

TEST(Names, Conv2d) {
  Conv2d a(3, 8, 3);
  expect_params(a, {{"weight", {8, 3, 3, 3}}, {"bias", {8}}}, 224);
  EXPECT_EQ(a.repr(), "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1))");
  Conv2d b(Conv2dOptions(4, 6, {3, 5}).stride(2).padding(1).groups(2).bias(false));
  expect_params(b, {{"weight", {6, 2, 3, 5}}}, 180);
  EXPECT_EQ(b.repr(),
            "Conv2d(4, 6, kernel_size=(3, 5), stride=(2, 2), padding=(1, 1), groups=2, "
            "bias=False)");
}

TEST(Names, Embedding) {
  Embedding e(10, 4, 0);
  expect_params(e, {{"weight", {10, 4}}}, 40);
  EXPECT_EQ(e.repr(), "Embedding(10, 4, padding_idx=0)");
}

TEST(Names, Rnn) {
  RNN a(5, 7);
  expect_params(a,
                {{"weight_ih_l0", {7, 5}}, {"weight_hh_l0", {7, 7}}, {"bias_ih_l0", {7}},
                 {"bias_hh_l0", {7}}},
                98);
  EXPECT_EQ(a.repr(), "RNN(5, 7)");
  RNN b(RNNOptions(5, 7).num_layers(2).bidirectional(true));
  expect_params(b,
                {{"weight_ih_l0", {7, 5}},
                 {"weight_hh_l0", {7, 7}},
                 {"bias_ih_l0", {7}},
                 {"bias_hh_l0", {7}},
                 {"weight_ih_l0_reverse", {7, 5}},
                 {"weight_hh_l0_reverse", {7, 7}},
                 {"bias_ih_l0_reverse", {7}},
                 {"bias_hh_l0_reverse", {7}},
                 {"weight_ih_l1", {7, 14}},
                 {"weight_hh_l1", {7, 7}},
                 {"bias_ih_l1", {7}},
                 {"bias_hh_l1", {7}},
                 {"weight_ih_l1_reverse", {7, 14}},
                 {"weight_hh_l1_reverse", {7, 7}},
                 {"bias_ih_l1_reverse", {7}},
                 {"bias_hh_l1_reverse", {7}}},
                518);
  EXPECT_EQ(b.repr(), "RNN(5, 7, num_layers=2, bidirectional=True)");
}

TEST(Names, Lstm) {
  LSTM a(5, 7);
  expect_params(a,
                {{"weight_ih_l0", {28, 5}}, {"weight_hh_l0", {28, 7}}, {"bias_ih_l0", {28}},
                 {"bias_hh_l0", {28}}},
                392);
  LSTM b(LSTMOptions(5, 7).num_layers(2));
  expect_params(b,
                {{"weight_ih_l0", {28, 5}},
                 {"weight_hh_l0", {28, 7}},
                 {"bias_ih_l0", {28}},
                 {"bias_hh_l0", {28}},
                 {"weight_ih_l1", {28, 7}},
                 {"weight_hh_l1", {28, 7}},
                 {"bias_ih_l1", {28}},
                 {"bias_hh_l1", {28}}},
                840);
  EXPECT_EQ(b.repr(), "LSTM(5, 7, num_layers=2)");
  LSTM c(LSTMOptions(5, 7).bias(false).bidirectional(true));
  expect_params(c,
                {{"weight_ih_l0", {28, 5}},
                 {"weight_hh_l0", {28, 7}},
                 {"weight_ih_l0_reverse", {28, 5}},
                 {"weight_hh_l0_reverse", {28, 7}}},
                672);
  EXPECT_EQ(c.repr(), "LSTM(5, 7, bias=False, bidirectional=True)");
}

TEST(Names, Gru) {
  GRU a(5, 7);
  expect_params(a,
                {{"weight_ih_l0", {21, 5}}, {"weight_hh_l0", {21, 7}}, {"bias_ih_l0", {21}},
                 {"bias_hh_l0", {21}}},
                294);
  GRU b(GRUOptions(5, 7).num_layers(2).bidirectional(true));
  EXPECT_EQ(b.num_parameters(), 1554);
  EXPECT_EQ(b.named_parameters().keys().size(), 16u);
  EXPECT_EQ(b.named_parameters().keys()[8], "weight_ih_l1");
  EXPECT_EQ(b.named_parameters().at("weight_ih_l1_reverse").shape(), (Shape{21, 14}));
  EXPECT_EQ(b.repr(), "GRU(5, 7, num_layers=2, bidirectional=True)");
}

TEST(Names, LayerNorm) {
  LayerNorm a(6);
  expect_params(a, {{"weight", {6}}, {"bias", {6}}}, 12);
  EXPECT_EQ(a.repr(), "LayerNorm((6,), eps=1e-05, elementwise_affine=True)");
  LayerNorm b(Shape{3, 4});
  expect_params(b, {{"weight", {3, 4}}, {"bias", {3, 4}}}, 24);
  EXPECT_EQ(b.repr(), "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True)");
}

TEST(Names, BatchNorm) {
  BatchNorm1d a(5);
  expect_params(a, {{"weight", {5}}, {"bias", {5}}}, 10);
  EXPECT_EQ(a.repr(),
            "BatchNorm1d(5, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  BatchNorm2d b(5, 1e-5, 0.1, false);
  expect_params(b, {}, 0);
  EXPECT_EQ(b.repr(),
            "BatchNorm2d(5, eps=1e-05, momentum=0.1, affine=False, track_running_stats=True)");
  StateDict sd = b.state_dict();
  ASSERT_EQ(sd.keys(), (std::vector<std::string>{"running_mean", "running_var",
                                                 "num_batches_tracked"}));
  EXPECT_EQ(sd.at("running_mean").shape(), (Shape{5}));
  EXPECT_EQ(sd.at("running_var").dtype(), DType::F32);
  EXPECT_EQ(sd.at("num_batches_tracked").shape(), (Shape{}));
  EXPECT_EQ(sd.at("num_batches_tracked").dtype(), DType::I64);
  BatchNorm2d c(5, 1e-5, 0.1, true, false);
  EXPECT_EQ(c.state_dict().keys(), (std::vector<std::string>{"weight", "bias"}));
}

TEST(Names, SequentialMlp) {
  Sequential m({std::make_shared<Flatten>(), std::make_shared<Linear>(784, 128),
                std::make_shared<ReLU>(), std::make_shared<Dropout>(0.2),
                std::make_shared<Linear>(128, 10)});
  expect_params(m, {{"1.weight", {128, 784}}, {"1.bias", {128}}, {"4.weight", {10, 128}},
                    {"4.bias", {10}}},
                101770);
  EXPECT_EQ(m.repr(),
            "Sequential(\n"
            "  (0): Flatten(start_dim=1, end_dim=-1)\n"
            "  (1): Linear(in_features=784, out_features=128, bias=True)\n"
            "  (2): ReLU()\n"
            "  (3): Dropout(p=0.2, inplace=False)\n"
            "  (4): Linear(in_features=128, out_features=10, bias=True)\n"
            ")");
}

TEST(Names, SequentialCnn) {
  Sequential m;
  m.push_back(std::make_shared<Conv2d>(3, 32, 3));
  m.push_back(std::make_shared<ReLU>());
  m.push_back(std::make_shared<MaxPool2d>(2));
  m.push_back(std::make_shared<Conv2d>(32, 64, 3));
  m.push_back(std::make_shared<ReLU>());
  m.push_back(std::make_shared<MaxPool2d>(2));
  m.push_back(std::make_shared<Conv2d>(64, 64, 3));
  m.push_back(std::make_shared<ReLU>());
  m.push_back(std::make_shared<Flatten>());
  m.push_back(std::make_shared<Linear>(64 * 4 * 4, 64));
  m.push_back(std::make_shared<ReLU>());
  m.push_back(std::make_shared<Linear>(64, 10));
  EXPECT_EQ(m.num_parameters(), 122570);
  EXPECT_EQ(m.named_parameters().keys(),
            (std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias", "6.weight",
                                      "6.bias", "9.weight", "9.bias", "11.weight", "11.bias"}));
  EXPECT_EQ(m[2]->repr(),
            "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  EXPECT_EQ(m.at<Linear>(9)->in_features, 1024);
  EXPECT_THROW(m.at<Conv2d>(1), Error);
  EXPECT_THROW(m[12], Error);
}

TEST(Names, ActivationsPrintLikePyTorch) {
  EXPECT_EQ(ReLU().repr(), "ReLU()");
  EXPECT_EQ(LeakyReLU().repr(), "LeakyReLU(negative_slope=0.01)");
  EXPECT_EQ(ELU().repr(), "ELU(alpha=1.0)");
  EXPECT_EQ(GELU().repr(), "GELU(approximate='none')");
  EXPECT_EQ(Softmax(1).repr(), "Softmax(dim=1)");
  EXPECT_EQ(LogSoftmax(-1).repr(), "LogSoftmax(dim=-1)");
  EXPECT_EQ(Identity().repr(), "Identity()");
  EXPECT_EQ(GlobalAveragePooling1D().repr(), "GlobalAveragePooling1D()");
  EXPECT_THROW(GELU("fast"), Error);
}

}  // namespace
