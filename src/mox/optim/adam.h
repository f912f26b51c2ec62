#pragma once
// Adam and AdamW (PyTorch 1.13's rules), one fused backend pass per parameter
// (Backend::adam_update):
//   Adam:  g = grad + weight_decay * p          AdamW:  p *= 1 - lr * weight_decay; g = grad
//   m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g * g
//   vmax = max(vmax, v) if amsgrad;  v' = amsgrad ? vmax : v
//   p -= lr / (1 - b1^t) * m / (sqrt(v') / sqrt(1 - b2^t) + eps)
#include <utility>

#include "mox/backend/backend.h"
#include "mox/optim/optimizer.h"

namespace mox::optim {

struct AdamOptions {
  AdamOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: AdamOptions(3e-4) reads well
  MOX_ARG(double, lr);
  MOX_ARG(double, eps) = 1e-8;
  MOX_ARG(double, weight_decay) = 0;
  MOX_ARG(bool, amsgrad) = false;

 public:
  AdamOptions& betas(double beta1, double beta2) {
    betas_ = {beta1, beta2};
    return *this;
  }
  AdamOptions& betas(const std::pair<double, double>& b) { return betas(b.first, b.second); }
  const std::pair<double, double>& betas() const { return betas_; }

 private:
  std::pair<double, double> betas_{0.9, 0.999};
};

// AdamW's options differ only in the default weight decay (0.01, as in PyTorch). The
// setters return AdamOptions&, so AdamW takes AdamOptions: AdamWOptions(1e-3).betas(..).
struct AdamWOptions : AdamOptions {
  AdamWOptions(double lr = 1e-3) : AdamOptions(lr) { weight_decay(1e-2); }  // NOLINT
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options = {});
  Adam(std::vector<ParamGroup> groups, AdamOptions options = {});
  const AdamOptions& options() const { return opt_; }

 protected:
  Adam(std::string name, std::vector<ParamGroup> groups, AdamOptions options, bool decoupled);
  void update(const Tensor& param, const Tensor& grad, ParamState& st, const Group& g) override;
  void update_many(const std::vector<Slot>& slots) override;
  std::vector<std::string> state_buffers() const override;

 private:
  AdamParams params_for(const Group& g, int64_t step) const;
  AdamOptions opt_;
  bool decoupled_;  // AdamW: weight decay applied to the weights, not added to the gradient
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, AdamOptions options = AdamWOptions());
  AdamW(std::vector<ParamGroup> groups, AdamOptions options = AdamWOptions());
};

}  // namespace mox::optim
