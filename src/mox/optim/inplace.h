#pragma once
// In-place update primitives for the optimisers, written directly against the backend's
// elementwise kernels so that each costs one or two passes over memory and at most one
// temporary (the ops in ops.h always allocate their result). All operands have the same
// shape, dtype and device; y may be strided. Callers run under NoGradGuard.
#include "mox/tensor/tensor.h"

namespace mox::optim::detail {

void scale_(const Tensor& y, double s);                         // y *= s
void axpy_(const Tensor& y, const Tensor& x, double alpha);     // y += alpha * x
Tensor axpy(const Tensor& y, const Tensor& x, double alpha);    // y + alpha * x (new tensor)
// y += value * a * b
void addcmul_(const Tensor& y, const Tensor& a, const Tensor& b, double value);
// y += value * a / b
void addcdiv_(const Tensor& y, const Tensor& a, const Tensor& b, double value);
Tensor sqrt(const Tensor& x);                                   // new tensor
void sqrt_(const Tensor& y);
void add_scalar_(const Tensor& y, double s);                    // y += s
void clamp_(const Tensor& y, double lo, double hi);

}  // namespace mox::optim::detail
