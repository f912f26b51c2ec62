#pragma once
// The machinery RNN, LSTM and GRU share: PyTorch's options, parameter names
// (weight_ih_l{k}[_reverse], weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, gates stacked in
// PyTorch's order) and the time loop. x is [N, T, C] when batch_first, else [T, N, C]
// ([T, C] unbatched). The input projection x W_ih^T + b of all time steps is one matmul
// before the loop; only h W_hh^T runs per step.
#include <string>
#include <vector>

#include "mox/nn/module.h"
#include "mox/nn/options.h"

namespace mox::nn {

struct RNNOptions {
  RNNOptions(int64_t input_size, int64_t hidden_size)
      : input_size_(input_size), hidden_size_(hidden_size) {}
  MOX_ARG(int64_t, input_size);
  MOX_ARG(int64_t, hidden_size);
  MOX_ARG(int64_t, num_layers) = 1;
  MOX_ARG(std::string, nonlinearity) = "tanh";  // RNN only: "tanh" or "relu"
  MOX_ARG(bool, bias) = true;
  MOX_ARG(bool, batch_first) = false;
  MOX_ARG(double, dropout) = 0.0;  // between stacked layers, in training mode
  MOX_ARG(bool, bidirectional) = false;
};
using LSTMOptions = RNNOptions;
using GRUOptions = RNNOptions;

// Result of forward_with_state: output [N, T, D*H] (batch_first) or [T, N, D*H];
// h_n and c_n [num_layers*D, N, H] (c_n for LSTM only). D = 2 when bidirectional.
struct RNNState {
  Tensor output, h_n, c_n;
};

class RNNBase : public Module {
 public:
  // Initial states h0 (and c0 for LSTM) are [num_layers*D, N, H]; zeros when undefined.
  RNNState forward_with_state(const Tensor& x, const Tensor& h0 = Tensor(),
                              const Tensor& c0 = Tensor());
  Tensor forward(const Tensor& x) override { return forward_with_state(x).output; }
  Shape output_shape(const Shape& input) const override;
  std::string extra_repr() const override;
  // PyTorch's default: every weight and bias ~ U(-1/sqrt(hidden), 1/sqrt(hidden)).
  void reset_parameters(Generator* gen = nullptr);

  struct LayerWeights {
    Tensor w_ih;  // [G*H, in]  (in = input_size for layer 0, else D*H)
    Tensor w_hh;  // [G*H, H]
    Tensor b_ih, b_hh;  // [G*H] each, undefined without bias
  };
  RNNOptions options;
  std::vector<LayerWeights> weights;  // index layer * D + direction

 protected:
  // gates: G (1 for RNN, 4 for LSTM, 3 for GRU); has_cell: LSTM's c state.
  RNNBase(const RNNOptions& options, int64_t gates, bool has_cell, const char* name);
  // Bias added in the input projection: b_ih + b_hh by default (both are outside any
  // gate product); GRU keeps b_hn inside r * (...) and overrides this.
  virtual Tensor input_bias(const LayerWeights& w) const;
  // One time step. xt [N, G*H] is the projected input, h [N, H] (and c [N, H] for LSTM)
  // are replaced by the new states.
  virtual void step(const LayerWeights& w, const Tensor& xt, Tensor& h, Tensor& c) const = 0;

 private:
  Tensor run_direction(const Tensor& x, const LayerWeights& w, int64_t tdim, bool reverse,
                       Tensor& h, Tensor& c) const;
  bool has_cell_;
};

}  // namespace mox::nn
