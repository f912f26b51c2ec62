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

  // Per-parameter reductions in the gradient's dtype (one pass each), combined in double
  // on the gradients' device and read back once (one synchronisation on a GPU).
  const bool inf_norm = std::isinf(norm_type);
  const Device dev = grads[0].device();
  std::vector<Tensor> parts, nans;
  for (const Tensor& g : grads) {
    if (g.numel() == 0) continue;
    Tensor r;
    if (inf_norm) {
      r = amax(abs(g));
      // amax ignores NaN in some kernels; a NaN anywhere must still surface, as in PyTorch.
      nans.push_back(sum(g).to(DType::F64).to(dev).reshape({1}));
    } else if (norm_type == 2.0) {
      r = norm(g).to(DType::F64);
      r = mul(r, r);
    } else if (norm_type == 1.0) {
      r = sum(abs(g));
    } else {
      r = sum(pow(abs(g), norm_type));
    }
    parts.push_back(r.to(DType::F64).to(dev).reshape({1}));
  }
  double total = 0.0;
  if (!parts.empty()) {
    Tensor all = cat(parts, 0);
    Tensor t = inf_norm ? amax(all) : sum(all);
    if (inf_norm) t = stack({t, sum(cat(nans, 0))});
    std::vector<double> v = t.to_vector<double>();
    total = inf_norm ? (std::isnan(v[1]) ? NAN : std::max(0.0, v[0])) : v[0];
  }
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
