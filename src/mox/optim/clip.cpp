#include "mox/optim/clip.h"

#include <cmath>

#include "mox/autograd/node.h"
#include "mox/ops/ops.h"
#include "mox/optim/inplace.h"
#include "mox/tensor/error.h"

namespace mox::optim {

namespace {
// Scales a gradient in place, unless it is a strided view (possibly an expanded one whose
// elements alias each other), which is replaced by a scaled contiguous copy.
void scale_grad(Tensor owner, const Tensor& g, double coef) {
  if (g.is_contiguous()) {
    detail::scale_(g, coef);
  } else {
    owner.set_grad(mul(g, coef));
  }
}
}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  const char* where = "clip_grad_norm_";
  MOX_CHECK(norm_type > 0, where, "norm_type must be > 0 or inf, got " + std::to_string(norm_type));
  MOX_CHECK(max_norm >= 0, where, "max_norm must be >= 0");
  NoGradGuard no_grad;
  std::vector<Tensor> owners, grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) {
      owners.push_back(p);
      grads.push_back(p.grad());
    }
  if (grads.empty()) return 0.0;

  // Per-parameter reductions in the gradient's dtype (one pass each), combined in double.
  double total = 0.0;
  const bool inf_norm = std::isinf(norm_type);
  for (const Tensor& g : grads) {
    if (g.numel() == 0) continue;
    if (inf_norm) {
      total = std::max(total, amax(abs(g)).item<double>());
    } else if (norm_type == 2.0) {
      double n = norm(g).item<double>();
      total += n * n;
    } else if (norm_type == 1.0) {
      total += sum(abs(g)).item<double>();
    } else {
      total += sum(pow(abs(g), norm_type)).item<double>();
    }
  }
  // amax ignores NaN in some kernels; a NaN anywhere must still surface, as in PyTorch.
  if (inf_norm)
    for (const Tensor& g : grads)
      if (g.numel() > 0 && std::isnan(sum(g).item<double>())) total = NAN;
  if (!inf_norm) total = norm_type == 1.0 ? total : std::pow(total, 1.0 / norm_type);

  if (error_if_nonfinite && !std::isfinite(total))
    throw Error(where, "the total norm of order " + std::to_string(norm_type) +
                           " of the gradients is non-finite, so it cannot be clipped");
  double coef = max_norm / (total + 1e-6);
  // NaN compares false, so a NaN total poisons the gradients as in PyTorch rather than
  // being silently ignored.
  if (!(coef >= 1.0))
    for (size_t i = 0; i < grads.size(); i++) scale_grad(owners[i], grads[i], coef);
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  MOX_CHECK(clip_value >= 0, "clip_grad_value_", "clip_value must be >= 0");
  NoGradGuard no_grad;
  for (Tensor p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.is_contiguous()) {
      detail::clamp_(g, -clip_value, clip_value);
    } else {
      p.set_grad(clamp(g, -clip_value, clip_value));
    }
  }
}

}  // namespace mox::optim
