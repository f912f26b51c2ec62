#include "mox/optim/regularizers.h"

#include "mox/ops/ops.h"
#include "mox/tensor/error.h"

namespace mox::optim {

namespace {

template <typename Fn>
Tensor penalty(const std::vector<Tensor>& params, double lambda, const char* name, Fn&& term) {
  MOX_CHECK(lambda >= 0, name, "lambda must be >= 0, got " + std::to_string(lambda));
  Tensor total;
  for (const Tensor& p : params) {
    MOX_CHECK(p.defined() && is_floating(p.dtype()), name,
              "parameters must be floating-point tensors, got " + p.desc());
    Tensor t = sum(term(p));
    total = total.defined() ? add(total, t) : t;
  }
  if (!total.defined()) return scalar_tensor(0.0);
  return mul(total, lambda);
}

}  // namespace

Tensor l1_penalty(const std::vector<Tensor>& params, double lambda) {
  return penalty(params, lambda, "l1_penalty", [](const Tensor& p) { return abs(p); });
}

Tensor l2_penalty(const std::vector<Tensor>& params, double lambda) {
  return penalty(params, lambda, "l2_penalty", [](const Tensor& p) { return square(p); });
}

}  // namespace mox::optim
