#pragma once
// Activation modules: thin wrappers over the ops of the same name, with PyTorch's
// arguments and defaults. Each keeps the input's shape (Softmax normalises along dim).
#include <string>

#include "mox/nn/module.h"

namespace mox::nn {

// Base of the shape-preserving activations.
class Activation : public Module {
 public:
  Shape output_shape(const Shape& input) const override { return input; }
};

class ReLU : public Activation {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ReLU"; }
};

class LeakyReLU : public Activation {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : negative_slope(negative_slope) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LeakyReLU"; }
  std::string extra_repr() const override;
  double negative_slope;
};

class ELU : public Activation {
 public:
  explicit ELU(double alpha = 1.0) : alpha(alpha) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ELU"; }
  std::string extra_repr() const override;
  double alpha;
};

class SELU : public Activation {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SELU"; }
};

class GELU : public Activation {
 public:
  // approximate: "none" (exact erf form) or "tanh"
  explicit GELU(const std::string& approximate = "none");
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GELU"; }
  std::string extra_repr() const override;
  std::string approximate;
};

class Sigmoid : public Activation {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sigmoid"; }
};

class Tanh : public Activation {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Tanh"; }
};

class Softplus : public Activation {
 public:
  explicit Softplus(double beta = 1.0, double threshold = 20.0)
      : beta(beta), threshold(threshold) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Softplus"; }
  std::string extra_repr() const override;
  double beta, threshold;
};

class SiLU : public Activation {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SiLU"; }
};

class Softmax : public Activation {
 public:
  explicit Softmax(int64_t dim = -1) : dim(dim) {}
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "Softmax"; }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim); }
  int64_t dim;
};

class LogSoftmax : public Activation {
 public:
  explicit LogSoftmax(int64_t dim = -1) : dim(dim) {}
  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "LogSoftmax"; }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim); }
  int64_t dim;
};

}  // namespace mox::nn
