#pragma once
// RMSprop, PyTorch 1.13's rule, one fused backend pass per parameter
// (Backend::rmsprop_update):
//   g = grad + weight_decay * p
//   square_avg = alpha * square_avg + (1 - alpha) * g * g
//   centered:  grad_avg = alpha * grad_avg + (1 - alpha) * g
//              avg = sqrt(square_avg - grad_avg^2) + eps,   else avg = sqrt(square_avg) + eps
//   momentum > 0:  buf = momentum * buf + g / avg;  p -= lr * buf
//   otherwise:     p -= lr * g / avg
#include "mox/optim/optimizer.h"

namespace mox::optim {

struct RMSpropOptions {
  RMSpropOptions(double lr = 0.01) : lr_(lr) {}  // NOLINT
  MOX_ARG(double, lr);
  MOX_ARG(double, alpha) = 0.99;
  MOX_ARG(double, eps) = 1e-8;
  MOX_ARG(double, weight_decay) = 0;
  MOX_ARG(double, momentum) = 0;
  MOX_ARG(bool, centered) = false;
};

class RMSprop : public Optimizer {
 public:
  RMSprop(std::vector<Tensor> params, RMSpropOptions options = {});
  RMSprop(std::vector<ParamGroup> groups, RMSpropOptions options = {});
  const RMSpropOptions& options() const { return opt_; }

 protected:
  void update(const Tensor& param, const Tensor& grad, ParamState& st, const Group& g) override;
  std::vector<std::string> state_buffers() const override;

 private:
  RMSpropOptions opt_;
};

}  // namespace mox::optim
