#pragma once
// Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay,
// exactly PyTorch 1.13's rule, one fused backend pass per parameter (Backend::sgd_update):
//   g = grad + weight_decay * p
//   buf = g (first step) | momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf            (when momentum != 0)
//   p -= lr * g
#include "mox/optim/optimizer.h"

namespace mox::optim {

struct SGDOptions {
  SGDOptions(double lr = 0.01) : lr_(lr) {}  // NOLINT: SGDOptions(0.1) reads well
  MOX_ARG(double, lr);
  MOX_ARG(double, momentum) = 0;
  MOX_ARG(double, dampening) = 0;
  MOX_ARG(double, weight_decay) = 0;
  MOX_ARG(bool, nesterov) = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SGDOptions options = {});
  SGD(std::vector<ParamGroup> groups, SGDOptions options = {});
  const SGDOptions& options() const { return opt_; }

 protected:
  void update(const Tensor& param, const Tensor& grad, ParamState& st, const Group& g) override;
  std::vector<std::string> state_buffers() const override;

 private:
  SGDOptions opt_;
};

}  // namespace mox::optim
