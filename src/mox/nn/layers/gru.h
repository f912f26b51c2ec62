#pragma once
// GRU with PyTorch's gate order (r, z, n) stacked in W_ih [3H, in], W_hh [3H, H]:
//   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z = sigmoid(W_iz x + b_iz + W_hz h + b_hz),
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h_t = (1 - z) * n + z * h_{t-1}.
#include "mox/nn/layers/rnn_base.h"

namespace mox::nn {

class GRU : public RNNBase {
 public:
  explicit GRU(const GRUOptions& options);
  GRU(int64_t input_size, int64_t hidden_size) : GRU(GRUOptions(input_size, hidden_size)) {}
  std::string type_name() const override { return "GRU"; }

 protected:
  // Only b_ih goes into the input projection: b_hn must stay inside r * (...).
  Tensor input_bias(const LayerWeights& w) const override { return w.b_ih; }
  void step(const LayerWeights& w, const Tensor& xt, Tensor& h, Tensor& c) const override;
};

}  // namespace mox::nn
