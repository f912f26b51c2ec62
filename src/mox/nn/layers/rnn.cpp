#include "mox/nn/layers/rnn.h"

#include "mox/ops/ops.h"

namespace mox::nn {

static const RNNOptions& check_nonlinearity(const RNNOptions& o) {
  MOX_CHECK(o.nonlinearity() == "tanh" || o.nonlinearity() == "relu", "RNN",
            "nonlinearity must be 'tanh' or 'relu', got '" + o.nonlinearity() + "'");
  return o;
}

RNN::RNN(const RNNOptions& o)
    : RNNBase(check_nonlinearity(o), 1, false, "RNN"), relu_(o.nonlinearity() == "relu") {}

// xt [N, H] already holds x_t W_ih^T + b_ih + b_hh.
void RNN::step(const LayerWeights& w, const Tensor& xt, Tensor& h, Tensor&) const {
  Tensor pre = add(xt, linear(h, w.w_hh));
  h = relu_ ? relu(pre) : tanh(pre);
}

}  // namespace mox::nn
