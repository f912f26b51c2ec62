// Layer outputs against PyTorch 1.13 (f64), with weights and inputs from the same
// deterministic patterns. Reference numbers come from this script (run with
// /usr/bin/python3); the helpers pattern/fill/checks mirror nn_test_util.h:
//   pattern(shape, a, b, s): flat[i] = s * sin(a i + b);  fill(m): param j <- pattern(.., 0.7,
//   0.3 j + 0.1, 0.5);  checks(t) = (sum t, sum t_i cos(0.1 i)).
//   x = pattern((2,5,3), .37, 0, 1); h0 = pattern((4,2,4), .23, .5, .3);
//   c0 = pattern((4,2,4), .19, .2, .3)
//   nn.LSTM(3,4,num_layers=2,bidirectional=True,batch_first=True)(x, (h0, c0))
//   nn.GRU(3,4,num_layers=2,bidirectional=True,batch_first=True)(x, h0)
//   nn.RNN(3,4,num_layers=2,nonlinearity='relu')(x.transpose(0,1).contiguous())
//   nn.LSTM(3,4), nn.GRU(3,4) on x.transpose(0,1); nn.RNN(3,4)(x[0]) (unbatched)
#include <gtest/gtest.h>

#include "nn_test_util.h"

using namespace mox;
using namespace mox::nn;
using mox::nn::testing::fill;
using mox::nn::testing::pattern;

namespace {

constexpr double kTol = 1e-9;

Tensor input_batch_first() { return pattern({2, 5, 3}, 0.37, 0.0, 1.0); }
Tensor input_time_major() { return input_batch_first().transpose(0, 1).contiguous(); }

TEST(Parity, LstmBidirectionalTwoLayersWithState) {
  LSTM m(LSTMOptions(3, 4).num_layers(2).bidirectional(true).batch_first(true));
  m.to(DType::F64);
  fill(m);
  RNNState s = m.forward_with_state(input_batch_first(), pattern({4, 2, 4}, 0.23, 0.5, 0.3),
                                    pattern({4, 2, 4}, 0.19, 0.2, 0.3));
  EXPECT_EQ(s.output.shape(), (Shape{2, 5, 8}));
  EXPECT_EQ(s.h_n.shape(), (Shape{4, 2, 4}));
  EXPECT_EQ(s.c_n.shape(), (Shape{4, 2, 4}));
  EXPECT_CHECKS(s.output, -19.8026654683539, -2.64920078749808, kTol);
  EXPECT_CHECKS(s.h_n, -2.67411009043786, 4.29969965558302, kTol);
  EXPECT_CHECKS(s.c_n, -2.26233234165377, 9.91729145291269, kTol);
}

TEST(Parity, GruBidirectionalTwoLayersWithState) {
  GRU m(GRUOptions(3, 4).num_layers(2).bidirectional(true).batch_first(true));
  m.to(DType::F64);
  fill(m);
  RNNState s = m.forward_with_state(input_batch_first(), pattern({4, 2, 4}, 0.23, 0.5, 0.3));
  EXPECT_EQ(s.output.shape(), (Shape{2, 5, 8}));
  EXPECT_FALSE(s.c_n.defined());
  EXPECT_CHECKS(s.output, -25.4250646773105, -3.54936854440519, kTol);
  EXPECT_CHECKS(s.h_n, -0.853959885911195, 8.12007049105701, kTol);
}

TEST(Parity, RnnReluTwoLayersTimeMajor) {
  RNN m(RNNOptions(3, 4).num_layers(2).nonlinearity("relu"));
  m.to(DType::F64);
  fill(m);
  RNNState s = m.forward_with_state(input_time_major());
  EXPECT_EQ(s.output.shape(), (Shape{5, 2, 4}));
  EXPECT_EQ(s.h_n.shape(), (Shape{2, 2, 4}));
  EXPECT_CHECKS(s.output, 61.3092854286767, -23.4185683484804, kTol);
  EXPECT_CHECKS(s.h_n, 23.4622363365394, 13.7391256766177, kTol);
}

TEST(Parity, LstmOneLayerZeroState) {
  LSTM m(3, 4);
  m.to(DType::F64);
  fill(m);
  RNNState s = m.forward_with_state(input_time_major());
  EXPECT_CHECKS(s.output, 2.65804802248136, -1.09237803507123, kTol);
  EXPECT_CHECKS(s.h_n, 1.06874218151741, 0.977939738968545, kTol);
  EXPECT_CHECKS(s.c_n, 3.32952799372178, 3.02605998572657, kTol);
  // forward() is the output sequence of forward_with_state().
  EXPECT_TRUE(allclose(m.forward(input_time_major()), s.output, 0, 0));
}

TEST(Parity, GruOneLayerZeroState) {
  GRU m(3, 4);
  m.to(DType::F64);
  fill(m);
  RNNState s = m.forward_with_state(input_time_major());
  EXPECT_CHECKS(s.output, 12.3856149636922, -2.94746437070903, kTol);
  EXPECT_CHECKS(s.h_n, 3.08741328645737, 2.78194171072992, kTol);
}

TEST(Parity, RnnTanhUnbatched) {
  RNN m(3, 4);
  m.to(DType::F64);
  fill(m);
  RNNState s = m.forward_with_state(input_batch_first().select(0, 0));
  EXPECT_EQ(s.output.shape(), (Shape{5, 4}));
  EXPECT_EQ(s.h_n.shape(), (Shape{1, 4}));
  EXPECT_CHECKS(s.output, 9.97717365323324, 6.30464017790938, kTol);
  EXPECT_CHECKS(s.h_n, 1.18161343952948, 1.18410864785849, kTol);
}

// nn.Sequential(nn.Conv2d(2,3,3,stride=2,padding=1), nn.ReLU(), nn.MaxPool2d(2),
//   nn.Conv2d(3,4,(2,3),padding=(1,0),bias=False),
//   nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), nn.Flatten(),
//   nn.Linear(72, 5), nn.GELU(approximate='tanh')) on pattern((2,2,17,16), .41, .2, 1)
TEST(Parity, ConvNetStack) {
  Sequential net({std::make_shared<Conv2d>(2, 3, 3, 2, 1), std::make_shared<ReLU>(),
                  std::make_shared<MaxPool2d>(2),
                  std::make_shared<Conv2d>(Conv2dOptions(3, 4, {2, 3}).padding({1, 0}).bias(false)),
                  std::make_shared<AvgPool2d>(2, 1, 1, false, false), std::make_shared<Flatten>(),
                  std::make_shared<Linear>(72, 5), std::make_shared<GELU>("tanh")});
  net.to(DType::F64);
  fill(net);
  Tensor y = net(pattern({2, 2, 17, 16}, 0.41, 0.2, 1.0));
  EXPECT_EQ(y.shape(), (Shape{2, 5}));
  EXPECT_CHECKS(y, 13.1322624565018, 11.6383059005152, kTol);
}

// bn = nn.BatchNorm2d(3); xb1 = pattern((4,3,2,2), .53, .1, 2);
// xb2 = pattern((4,3,2,2), .29, .7, 1.5) + .3; y1 = bn(xb1); bn(xb2); bn.eval(); bn(xb1)
TEST(Parity, BatchNorm2dTrainingThenEval) {
  BatchNorm2d bn(3);
  bn.to(DType::F64);
  fill(bn);
  Tensor x1 = pattern({4, 3, 2, 2}, 0.53, 0.1, 2.0);
  Tensor x2 = pattern({4, 3, 2, 2}, 0.29, 0.7, 1.5) + 0.3;
  Tensor y1 = bn(x1);
  bn(x2);
  EXPECT_CHECKS(y1, 18.0357866659863, -3.78003109419774, kTol);
  EXPECT_CHECKS(bn.running_mean, 0.128249410594366, 0.129636150915009, kTol);
  EXPECT_CHECKS(bn.running_var, 2.986813918012, 2.96262145735034, kTol);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 2);
  bn.eval();
  EXPECT_CHECKS(bn(x1), 7.92758644206988, -0.665190961901807, kTol);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 2);  // eval does not count
}

// bn1 = nn.BatchNorm1d(3, momentum=None); x1 = pattern((5,3,2), .53, .1, 2);
// bn1(x1); bn1(x1 * .5 + 1): a cumulative average of the two batches' statistics.
TEST(Parity, BatchNorm1dCumulativeAverage) {
  BatchNorm1d bn(3, 1e-5, std::nullopt);
  bn.to(DType::F64);
  fill(bn);
  Tensor x1 = pattern({5, 3, 2}, 0.53, 0.1, 2.0);
  bn(x1);
  bn(x1 * 0.5 + 1.0);
  EXPECT_CHECKS(bn.running_mean, 2.06872354094284, 2.05167455782518, kTol);
  EXPECT_CHECKS(bn.running_var, 3.9631011158918, 3.9331984536676, kTol);
}

// ln = nn.LayerNorm([3, 2]) on pattern((5,3,2), .53, .1, 2)
TEST(Parity, LayerNormTwoDims) {
  LayerNorm ln(Shape{3, 2});
  ln.to(DType::F64);
  fill(ln);
  EXPECT_CHECKS(ln(pattern({5, 3, 2}, 0.53, 0.1, 2.0)), 6.44611760899171, 0.960486772375693,
                kTol);
}

}  // namespace
