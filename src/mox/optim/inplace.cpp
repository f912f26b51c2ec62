#include "mox/optim/inplace.h"

#include "mox/backend/backend.h"

namespace mox::optim::detail {

void scale_(const Tensor& y, double s) {
  if (s == 1.0) return;
  backend_for(y).unary(UnaryOp::MulScalar, y, y, {s, 0});
  Tensor(y).bump_version();
}

void clamp_(const Tensor& y, double lo, double hi) {
  backend_for(y).unary(UnaryOp::Clamp, y, y, {lo, hi});
  Tensor(y).bump_version();
}

}  // namespace mox::optim::detail
