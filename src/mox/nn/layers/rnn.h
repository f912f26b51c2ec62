#pragma once
// RNN (Elman): h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu.
// Keras's SimpleRNN(units) is RNN(RNNOptions(in, units).batch_first(true)) followed by
// taking the last time step (or h_n).
#include "mox/nn/layers/rnn_base.h"

namespace mox::nn {

class RNN : public RNNBase {
 public:
  explicit RNN(const RNNOptions& options);
  RNN(int64_t input_size, int64_t hidden_size) : RNN(RNNOptions(input_size, hidden_size)) {}
  std::string type_name() const override { return "RNN"; }

 protected:
  void step(const LayerWeights& w, const Tensor& xt, Tensor& h, Tensor& c) const override;

 private:
  bool relu_;
};

}  // namespace mox::nn
