#include "mox/nn/layers/lstm.h"

#include "mox/ops/ops.h"

namespace mox::nn {

static const LSTMOptions& check_lstm_options(const LSTMOptions& o) {
  MOX_CHECK(o.nonlinearity() == "tanh", "LSTM",
            "nonlinearity is an RNN option; LSTM gates are fixed (got '" + o.nonlinearity() + "')");
  return o;
}

LSTM::LSTM(const LSTMOptions& o) : RNNBase(check_lstm_options(o), 4, true, "LSTM") {}

// xt [N, 4H] holds x_t W_ih^T + b_ih + b_hh; h, c [N, H].
void LSTM::step(const LayerWeights& w, const Tensor& xt, Tensor& h, Tensor& c) const {
  int64_t H = options.hidden_size();
  Tensor gates = add(xt, linear(h, w.w_hh));  // [N, 4H]
  std::vector<Tensor> ifgo = split_sizes(gates, {H, H, H, H}, 1);
  Tensor i = sigmoid(ifgo[0]), f = sigmoid(ifgo[1]), g = tanh(ifgo[2]), o = sigmoid(ifgo[3]);
  c = add(mul(f, c), mul(i, g));
  h = mul(o, tanh(c));
}

}  // namespace mox::nn
