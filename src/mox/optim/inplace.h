#pragma once
// In-place update helpers for the optimisers and gradient clipping. Callers run under
// NoGradGuard. Every writer bumps the version counter, as the in-place methods of Tensor
// do, so that autograd can tell that a saved tensor was overwritten.
#include <utility>

#include "mox/tensor/tensor.h"

namespace mox::optim::detail {

void scale_(const Tensor& y, double s);              // y *= s (y may be strided)
void clamp_(const Tensor& y, double lo, double hi);  // y = min(max(y, lo), hi)

// Runs a fused backend step fn(param, grad) on contiguous operands. The fused kernels want
// contiguous memory and parameters almost always are; a strided parameter is updated
// through a contiguous copy that is written back into it (its state buffers are made
// contiguous by the optimiser).
template <typename Fn>
void update_contiguous(const Tensor& param, const Tensor& grad, Fn&& fn) {
  Tensor pc = param.is_contiguous() ? param : param.contiguous();
  Tensor gc = grad.is_contiguous() ? grad : grad.contiguous();
  std::forward<Fn>(fn)(pc, gc);
  if (!pc.same(param)) Tensor(param).copy_(pc);
  Tensor(param).bump_version();
}

}  // namespace mox::optim::detail
