#pragma once
// Keras's default initialisers on mox layers (PyTorch layouts), so that a model described
// as in a Keras tutorial starts where Keras starts:
//   Dense / Conv:        kernel glorot_uniform (xavier_uniform_ with the receptive field in
//                        the fans, as Keras), bias zeros
//   Embedding:           uniform(-0.05, 0.05)
//   SimpleRNN/LSTM/GRU:  input kernel glorot_uniform, recurrent kernel orthogonal, biases
//                        zeros, LSTM forget-gate bias 1 (unit_forget_bias)
//   norms:               weight 1, bias 0
// Layers of other types keep their PyTorch initialisation.
#include "mox/nn/module.h"
#include "mox/tensor/generator.h"

namespace mox::nn {

void keras_initialize(Module& model, Generator* gen = nullptr);

}  // namespace mox::nn
