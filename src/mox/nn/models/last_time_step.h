#pragma once
// LastTimeStep: the output of a recurrent layer at its last time step, which is what
// Keras's SimpleRNN / LSTM / GRU return with return_sequences=False.
//   x [N, T, D*H] (batch_first RNN output) -> [N, D*H]
// For a bidirectional layer (D = 2) the reverse direction has finished its pass at t = 0,
// so its half comes from the first step: [x[:, T-1, :H], x[:, 0, H:]] (= h_n of the last
// layer, both directions), as Keras's Bidirectional(..., return_sequences=False) gives.
#include "mox/nn/module.h"

namespace mox::nn {

class LastTimeStep : public Module {
 public:
  explicit LastTimeStep(bool bidirectional = false) : bidirectional(bidirectional) {}

  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "LastTimeStep"; }
  std::string extra_repr() const override;

  bool bidirectional;
};

}  // namespace mox::nn
