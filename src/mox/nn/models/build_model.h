#pragma once
// Builds the model a config's [model] table describes: a Sequential whose children are
// the [[model.layers]] in order, named "0", "1", ... as PyTorch's nn.Sequential names
// them (so state_dict keys are "1.weight", ...). A layer's `activation = "relu"` adds the
// activation module as the next child; a recurrent layer with return_sequences = false
// (the default) adds a LastTimeStep. Input sizes (in_features, in_channels, input_size,
// num_features, normalized_shape) are inferred from the previous layer's output shape.
//
// Layer types are PyTorch class names or their Keras aliases, matched case-insensitively:
//   Linear/Dense, Conv2d/Conv2D, MaxPool2d/MaxPooling2D, AvgPool2d/AveragePooling2D,
//   Flatten, Dropout, Embedding, RNN/SimpleRNN, LSTM, GRU, LayerNorm/LayerNormalization,
//   BatchNorm1d, BatchNorm2d, BatchNormalization (1d or 2d by input rank),
//   GlobalAveragePooling1D, Identity, Activation (Keras: activation = "..."), and the
//   activation modules ReLU, LeakyReLU, ELU, SELU, GELU, Sigmoid, Tanh, Softplus, SiLU,
//   Softmax, LogSoftmax.
// Every error is one mox::Error naming the file, the layer (model.layers[i]) and the field.
#include <memory>
#include <string>
#include <vector>

#include "mox/io/config.h"
#include "mox/nn/layers/sequential.h"

namespace mox::nn {

// Parameters are initialised from the default generator (mox::manual_seed fixes them).
std::shared_ptr<Sequential> build_model(const io::ModelConfig& config);

// The shape a batch of inputs has: [-1, input_shape...] (-1: any batch size).
Shape model_input_shape(const io::ModelConfig& config);

// Shape in Keras's notation, "(None, 28, 28)": -1 (unknown) prints as None.
std::string format_shape(const Shape& s);

// The layer types build_model accepts, as they are documented (for error messages).
const std::vector<std::string>& known_layer_types();

}  // namespace mox::nn
