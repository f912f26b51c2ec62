// output_shape (used by `mox summary`, computed without running the layer) agrees with
// the shape forward actually produces, also with an unknown (-1) leading dim; bad input
// shapes give errors naming the layer.
#include <gtest/gtest.h>

#include "error_of.h"
#include "nn_test_util.h"

using namespace mox;
using namespace mox::nn;

namespace {

void expect_agrees(Module& m, const Tensor& x) {
  SCOPED_TRACE(m.repr() + " on " + x.desc());
  Shape predicted = m.output_shape(x.shape());
  Tensor y = m(x);
  EXPECT_EQ(predicted, y.shape());
  // With the leading dim unknown, every other dim is still predicted.
  Shape unknown = x.shape();
  if (unknown.empty()) return;
  unknown[0] = -1;
  Shape p = m.output_shape(unknown);
  ASSERT_EQ(p.size(), y.shape().size());
  for (size_t i = 0; i < p.size(); i++)
    EXPECT_TRUE(p[i] == -1 || p[i] == y.shape()[i]) << "dim " << i << ": " << shape_str(p);
}

TEST(Shapes, Linear) {
  Linear l(4, 3);
  expect_agrees(l, randn({2, 4}));
  expect_agrees(l, randn({2, 5, 4}));
  expect_agrees(l, randn({4}));
  EXPECT_EQ(l.output_shape({-1, 4}), (Shape{-1, 3}));
  std::string msg = error_of([&] { l(randn({2, 5})); });
  EXPECT_NE(msg.find("Linear"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 5]"), std::string::npos) << msg;
}

TEST(Shapes, Conv2d) {
  Conv2d a(3, 8, 3, 2, 1);
  expect_agrees(a, randn({2, 3, 9, 10}));
  expect_agrees(a, randn({3, 9, 10}));
  Conv2d b(Conv2dOptions(4, 6, {3, 2}).dilation({2, 1}).groups(2).padding({0, 1}));
  expect_agrees(b, randn({1, 4, 8, 5}));
  EXPECT_EQ(b.output_shape({-1, 4, -1, 5}), (Shape{-1, 6, -1, 6}));
  EXPECT_THROW(a.output_shape({2, 4, 9, 10}), Error);  // wrong channel count
  EXPECT_THROW(Conv2d(3, 8, 5).output_shape({1, 3, 4, 4}), Error);  // kernel larger than input
  EXPECT_THROW(a.output_shape({3, 9}), Error);
  EXPECT_THROW(Conv2d(3, 8, 3, 1, 0, 1, 2), Error);  // groups must divide in_channels
  EXPECT_THROW(Conv2d(3, 8, 0), Error);
}

TEST(Shapes, Pooling) {
  MaxPool2d a(2);
  expect_agrees(a, randn({2, 3, 7, 9}));
  expect_agrees(a, randn({3, 7, 9}));
  MaxPool2d b(3, 2, 1, true);
  expect_agrees(b, randn({1, 2, 8, 8}));
  expect_agrees(b, randn({1, 2, 9, 6}));
  AvgPool2d c(3, 2, 1, true);
  expect_agrees(c, randn({1, 2, 7, 6}));
  AvgPool2d d({2, 3}, Size2(1, 2));
  expect_agrees(d, randn({2, 1, 5, 7}));
  EXPECT_THROW(MaxPool2d(2, 2, 2), Error);  // padding above half the kernel
  EXPECT_THROW(MaxPool2d(3).output_shape({1, 1, 2, 2}), Error);
}

TEST(Shapes, FlattenDropoutIdentityActivations) {
  Flatten f;
  expect_agrees(f, randn({2, 3, 4, 5}));
  Flatten f0(0);
  expect_agrees(f0, randn({2, 3}));
  Flatten f12(1, 2);
  expect_agrees(f12, randn({2, 3, 4, 5}));
  EXPECT_EQ(f.output_shape({-1, 3, 4}), (Shape{-1, 12}));
  EXPECT_EQ(f0.output_shape({-1, 3}), (Shape{-1}));
  EXPECT_THROW(Flatten(2).output_shape({2, 3}), Error);
  Dropout dr(0.3);
  expect_agrees(dr, randn({3, 4}));
  Identity id;
  expect_agrees(id, randn({3, 4}));
  std::vector<std::shared_ptr<Module>> acts = {
      std::make_shared<ReLU>(),    std::make_shared<LeakyReLU>(0.2), std::make_shared<ELU>(),
      std::make_shared<SELU>(),    std::make_shared<GELU>(),         std::make_shared<GELU>("tanh"),
      std::make_shared<Sigmoid>(), std::make_shared<Tanh>(),         std::make_shared<Softplus>(),
      std::make_shared<SiLU>(),    std::make_shared<Softmax>(1),
      std::make_shared<LogSoftmax>(-1)};
  for (auto& a : acts) expect_agrees(*a, randn({2, 3, 4}));
  EXPECT_THROW(Softmax(3).output_shape({2, 3}), Error);
}

TEST(Shapes, EmbeddingAndGlobalAveragePooling) {
  Embedding e(10, 4);
  expect_agrees(e, randint(0, 10, {2, 5}));
  expect_agrees(e, randint(0, 10, {7}));
  EXPECT_THROW(e(randn({2, 3})), Error);  // float indices
  GlobalAveragePooling1D g;
  expect_agrees(g, randn({2, 5, 6}));
  EXPECT_THROW(g.output_shape({2, 5}), Error);
  Sequential text({std::make_shared<Embedding>(100, 8),
                   std::make_shared<GlobalAveragePooling1D>(), std::make_shared<Linear>(8, 1),
                   std::make_shared<Sigmoid>()});
  expect_agrees(text, randint(0, 100, {3, 11}));
  EXPECT_EQ(text.output_shape({-1, 20}), (Shape{-1, 1}));
}

TEST(Shapes, Recurrent) {
  RNN a(RNNOptions(3, 5).batch_first(true));
  expect_agrees(a, randn({2, 7, 3}));
  expect_agrees(a, randn({7, 3}));  // unbatched
  LSTM b(LSTMOptions(3, 5).num_layers(2).bidirectional(true));
  expect_agrees(b, randn({7, 2, 3}));
  RNNState s = b.forward_with_state(randn({7, 2, 3}));
  EXPECT_EQ(s.h_n.shape(), (Shape{4, 2, 5}));
  EXPECT_EQ(s.c_n.shape(), (Shape{4, 2, 5}));
  GRU c(GRUOptions(3, 5).batch_first(true).bidirectional(true));
  expect_agrees(c, randn({2, 4, 3}));
  EXPECT_EQ(c.output_shape({-1, -1, 3}), (Shape{-1, -1, 10}));
  EXPECT_THROW(c.output_shape({2, 4, 5}), Error);
  // Initial states must be [layers * directions, N, H].
  std::string msg = error_of([&] { b.forward_with_state(randn({7, 2, 3}), randn({2, 2, 5})); });
  EXPECT_NE(msg.find("h0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 2, 5]"), std::string::npos) << msg;
  EXPECT_THROW(a.forward_with_state(randn({2, 7, 3}), Tensor(), randn({1, 2, 5})), Error);
  EXPECT_THROW(RNN(RNNOptions(3, 5).nonlinearity("sigmoid")), Error);
  EXPECT_THROW(LSTM(LSTMOptions(3, 5).nonlinearity("relu")), Error);
  EXPECT_THROW(a(randn({2, 0, 3})), Error);
}

TEST(Shapes, Norms) {
  LayerNorm ln(6);
  expect_agrees(ln, randn({2, 3, 6}));
  EXPECT_THROW(ln.output_shape({2, 5}), Error);
  BatchNorm1d b1(3);
  expect_agrees(b1, randn({4, 3}));
  expect_agrees(b1, randn({4, 3, 5}));
  EXPECT_THROW(b1.output_shape({4, 5}), Error);
  BatchNorm2d b2(3);
  expect_agrees(b2, randn({2, 3, 4, 4}));
  EXPECT_THROW(b2.output_shape({2, 3, 4}), Error);
}

TEST(Shapes, SequentialCnnAndErrorsNameTheLayer) {
  Sequential net({std::make_shared<Conv2d>(3, 32, 3), std::make_shared<ReLU>(),
                  std::make_shared<MaxPool2d>(2), std::make_shared<Conv2d>(32, 64, 3),
                  std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2),
                  std::make_shared<Conv2d>(64, 64, 3), std::make_shared<ReLU>(),
                  std::make_shared<Flatten>(), std::make_shared<Linear>(1024, 64),
                  std::make_shared<ReLU>(), std::make_shared<Linear>(64, 10)});
  expect_agrees(net, randn({2, 3, 32, 32}));
  EXPECT_EQ(net.output_shape({-1, 3, 32, 32}), (Shape{-1, 10}));
  std::string msg = error_of([&] { net.output_shape({-1, 3, 28, 28}); });
  EXPECT_NE(msg.find("layer (9) Linear"), std::string::npos) << msg;
}

}  // namespace
