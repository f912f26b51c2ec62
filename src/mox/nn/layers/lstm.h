#pragma once
// LSTM with PyTorch's gate order (i, f, g, o) stacked in W_ih [4H, in], W_hh [4H, H]:
//   i, f, o = sigmoid(.), g = tanh(.), c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t).
#include "mox/nn/layers/rnn_base.h"

namespace mox::nn {

class LSTM : public RNNBase {
 public:
  explicit LSTM(const LSTMOptions& options);
  LSTM(int64_t input_size, int64_t hidden_size) : LSTM(LSTMOptions(input_size, hidden_size)) {}
  std::string type_name() const override { return "LSTM"; }

 protected:
  void step(const LayerWeights& w, const Tensor& xt, Tensor& h, Tensor& c) const override;
};

}  // namespace mox::nn
