#pragma once
// Parameter initialisers with PyTorch's names, formulas and defaults (torch.nn.init).
// Each writes into t in place under NoGradGuard (so it works on parameters that require
// grad), draws from gen (the default generator when null) and returns t.
#include <optional>
#include <string>
#include <utility>

#include "mox/tensor/generator.h"
#include "mox/tensor/tensor.h"

namespace mox::nn::init {

enum class FanMode { FanIn, FanOut };

// Recommended gain for a nonlinearity: "linear", "conv1d", "conv2d", "conv3d",
// "conv_transpose1d/2d/3d", "sigmoid" -> 1; "tanh" -> 5/3; "relu" -> sqrt(2);
// "leaky_relu" -> sqrt(2 / (1 + slope^2)) (slope = param, default 0.01); "selu" -> 3/4.
double calculate_gain(const std::string& nonlinearity, std::optional<double> param = std::nullopt);
// fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (dim >= 2).
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

Tensor uniform_(Tensor t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
// Normal(mean, std) redrawn until inside [a, b] (GPT/BERT-style initialisation).
Tensor trunc_normal_(Tensor t, double mean = 0.0, double std = 1.0, double a = -2.0,
                     double b = 2.0, Generator* gen = nullptr);
Tensor constant_(Tensor t, double value);
Tensor zeros_(Tensor t);
Tensor ones_(Tensor t);
Tensor eye_(Tensor t);  // 2-D identity (rectangular allowed)

// U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))
Tensor xavier_uniform_(Tensor t, double gain = 1.0, Generator* gen = nullptr);
// N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))
Tensor xavier_normal_(Tensor t, double gain = 1.0, Generator* gen = nullptr);
// U(-b, b), b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a)
Tensor kaiming_uniform_(Tensor t, double a = 0.0, FanMode mode = FanMode::FanIn,
                        const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// N(0, std^2), std = gain / sqrt(fan)
Tensor kaiming_normal_(Tensor t, double a = 0.0, FanMode mode = FanMode::FanIn,
                       const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// A (semi-)orthogonal matrix (t viewed as [size(0), numel/size(0)]) from the QR
// decomposition of a standard normal matrix, with Q's columns sign-corrected so that R has
// a positive diagonal (PyTorch's recipe), times gain.
Tensor orthogonal_(Tensor t, double gain = 1.0, Generator* gen = nullptr);

}  // namespace mox::nn::init
