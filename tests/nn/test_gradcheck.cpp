// Gradients of each layer with respect to its input and every parameter, against central
// finite differences in f64 (module.to(DType::F64)).
#include <gtest/gtest.h>

#include "gradcheck.h"
#include "nn_test_util.h"

using namespace mox;
using namespace mox::nn;
using mox::nn::testing::fill;
using mox::testing::gradcheck;
using mox::testing::rnd;
using mox::testing::rnd_noncontig;

namespace {

// Checks d/dx and d/dparams of m(x). The parameters are perturbed in place through the
// module's own handles, so fn only has to call the module.
::testing::AssertionResult check_module(Module& m, const Tensor& x) {
  std::vector<Tensor> inputs{x};
  for (const Tensor& p : m.parameters()) inputs.push_back(p);
  return gradcheck([&](const std::vector<Tensor>& in) { return m(in[0]); }, inputs);
}

TEST(Gradcheck, Linear) {
  Linear l(5, 3);
  l.to(DType::F64);
  EXPECT_TRUE(check_module(l, rnd({4, 5}, 1)));
  EXPECT_TRUE(check_module(l, rnd({2, 3, 5}, 2)));
  EXPECT_TRUE(check_module(l, rnd_noncontig({4, 5}, 3)));
  Linear nb(5, 2, false);
  nb.to(DType::F64);
  EXPECT_TRUE(check_module(nb, rnd({3, 5}, 4)));
}

TEST(Gradcheck, Conv2d) {
  Conv2d a(2, 3, 3, 2, 1);
  a.to(DType::F64);
  EXPECT_TRUE(check_module(a, rnd({2, 2, 6, 5}, 5)));
  Conv2d b(Conv2dOptions(4, 2, {2, 3}).dilation({2, 1}).groups(2).bias(false));
  b.to(DType::F64);
  EXPECT_TRUE(check_module(b, rnd({1, 4, 5, 5}, 6)));
}

TEST(Gradcheck, Rnn) {
  RNN a(RNNOptions(3, 4).batch_first(true));
  a.to(DType::F64);
  EXPECT_TRUE(check_module(a, rnd({2, 4, 3}, 7)));
  RNN b(RNNOptions(3, 3).num_layers(2).nonlinearity("relu").bidirectional(true));
  b.to(DType::F64);
  EXPECT_TRUE(check_module(b, rnd({3, 2, 3}, 8)));
}

TEST(Gradcheck, LstmOutputsAndFinalStates) {
  LSTM m(LSTMOptions(3, 4).batch_first(true));
  m.to(DType::F64);
  EXPECT_TRUE(check_module(m, rnd({2, 4, 3}, 9)));
  // Through h_n and c_n, and into the initial states.
  Tensor x = rnd({3, 2, 3}, 10), h0 = rnd({1, 2, 4}, 11), c0 = rnd({1, 2, 4}, 12);
  LSTM t(3, 4);
  t.to(DType::F64);
  std::vector<Tensor> inputs{x, h0, c0};
  for (const Tensor& p : t.parameters()) inputs.push_back(p);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        RNNState s = t.forward_with_state(in[0], in[1], in[2]);
        return cat({s.output.reshape({-1}), s.h_n.reshape({-1}), mul(s.c_n, 2.0).reshape({-1})});
      },
      inputs));
}

TEST(Gradcheck, LstmTwoLayersBidirectional) {
  LSTM m(LSTMOptions(2, 3).num_layers(2).bidirectional(true));
  m.to(DType::F64);
  EXPECT_TRUE(check_module(m, rnd({3, 2, 2}, 13)));
}

TEST(Gradcheck, Gru) {
  GRU a(GRUOptions(3, 4).batch_first(true));
  a.to(DType::F64);
  EXPECT_TRUE(check_module(a, rnd({2, 4, 3}, 14)));
  GRU b(GRUOptions(2, 3).num_layers(2).bidirectional(true));
  b.to(DType::F64);
  Tensor x = rnd({3, 2, 2}, 15), h0 = rnd({4, 2, 3}, 16);
  std::vector<Tensor> inputs{x, h0};
  for (const Tensor& p : b.parameters()) inputs.push_back(p);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        RNNState s = b.forward_with_state(in[0], in[1]);
        return cat({s.output.reshape({-1}), s.h_n.reshape({-1})});
      },
      inputs));
}

TEST(Gradcheck, LayerNorm) {
  LayerNorm a(5);
  a.to(DType::F64);
  fill(a);  // non-trivial weight and bias
  EXPECT_TRUE(check_module(a, rnd({3, 5}, 17)));
  LayerNorm b(Shape{2, 3});
  b.to(DType::F64);
  fill(b);
  EXPECT_TRUE(check_module(b, rnd_noncontig({4, 2, 3}, 18)));
}

TEST(Gradcheck, BatchNormTrainingAndEval) {
  BatchNorm1d a(3);
  a.to(DType::F64);
  fill(a);
  EXPECT_TRUE(check_module(a, rnd({5, 3}, 19)));
  BatchNorm2d b(2);
  b.to(DType::F64);
  fill(b);
  EXPECT_TRUE(check_module(b, rnd({2, 2, 3, 3}, 20)));
  b.eval();  // running statistics are constants here
  EXPECT_TRUE(check_module(b, rnd({2, 2, 3, 3}, 21)));
}

TEST(Gradcheck, EmbeddingWeight) {
  Tensor idx = from_vector<int64_t>({0, 1, 5, 1, 2, 0}, {2, 3});
  Embedding plain(6, 3);
  plain.to(DType::F64);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return plain(idx); }, {plain.weight}));
  // The padding row gets no gradient even though it is looked up (PyTorch's rule, so not a
  // true derivative: finite differences would disagree on that row).
  Embedding e(6, 3, 1);
  e.to(DType::F64);
  e(idx).sum().backward();
  std::vector<double> g = e.weight.grad().select(0, 1).to_vector<double>();
  for (double v : g) EXPECT_EQ(v, 0.0);
  std::vector<double> g0 = e.weight.grad().select(0, 0).to_vector<double>();
  for (double v : g0) EXPECT_EQ(v, 2.0);  // index 0 appears twice
}

TEST(Gradcheck, SequentialMlp) {
  Sequential m({std::make_shared<Linear>(4, 5), std::make_shared<Tanh>(),
                std::make_shared<Linear>(5, 3), std::make_shared<LogSoftmax>(1)});
  m.to(DType::F64);
  EXPECT_TRUE(check_module(m, rnd({3, 4}, 22)));
}

}  // namespace

namespace {

TEST(Gradcheck, SplitAndUnbindViewsShareOneBackward) {
  Tensor x = rnd({3, 7}, 23);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> p = split_sizes(in[0], {2, 4, 1}, 1);
        return cat({mul(p[0], 2.0).reshape({-1}), exp(p[1]).reshape({-1})});  // p[2] unused
      },
      {x}));
  Tensor y = rnd_noncontig({4, 3}, 24);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> rows = unbind(in[0], 0);
        EXPECT_EQ(rows.size(), 4u);
        EXPECT_EQ(rows[0].shape(), (Shape{3}));
        return add(mul(rows[0], rows[3]), sin(rows[1]));
      },
      {y}));
  EXPECT_THROW(split_sizes(x, {2, 2}, 1), Error);
}

}  // namespace
