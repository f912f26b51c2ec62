#pragma once
// Adagrad, PyTorch 1.13's rule (state_sum starts at initial_accumulator_value), one fused
// backend pass per parameter (Backend::adagrad_update):
//   g = grad + weight_decay * p
//   clr = lr / (1 + (step - 1) * lr_decay)
//   state_sum += g * g
//   p -= clr * g / (sqrt(state_sum) + eps)
#include "mox/optim/optimizer.h"

namespace mox::optim {

struct AdagradOptions {
  AdagradOptions(double lr = 0.01) : lr_(lr) {}  // NOLINT
  MOX_ARG(double, lr);
  MOX_ARG(double, lr_decay) = 0;
  MOX_ARG(double, weight_decay) = 0;
  MOX_ARG(double, initial_accumulator_value) = 0;
  MOX_ARG(double, eps) = 1e-10;
};

class Adagrad : public Optimizer {
 public:
  Adagrad(std::vector<Tensor> params, AdagradOptions options = {});
  Adagrad(std::vector<ParamGroup> groups, AdagradOptions options = {});
  const AdagradOptions& options() const { return opt_; }

 protected:
  void update(const Tensor& param, const Tensor& grad, ParamState& st, const Group& g) override;
  std::vector<std::string> state_buffers() const override { return {"sum"}; }

 private:
  AdagradOptions opt_;
};

}  // namespace mox::optim
