#include "mox/optim/inplace.h"

#include "mox/backend/backend.h"

namespace mox::optim::detail {

// Every writer bumps the version counter, as the in-place methods of Tensor do, so that
// autograd can tell that a saved tensor was overwritten.

void scale_(const Tensor& y, double s) {
  if (s == 1.0) return;
  backend_for(y).unary(UnaryOp::MulScalar, y, y, {s, 0});
  Tensor(y).bump_version();
}

void axpy_(const Tensor& y, const Tensor& x, double alpha) {
  Backend& be = backend_for(y);
  if (alpha == 1.0) {
    be.binary(BinaryOp::Add, y, x, y);
  } else if (alpha == -1.0) {
    be.binary(BinaryOp::Sub, y, x, y);
  } else {
    Tensor t = empty_like(y);
    be.unary(UnaryOp::MulScalar, x, t, {alpha, 0});
    be.binary(BinaryOp::Add, y, t, y);
  }
  Tensor(y).bump_version();
}

Tensor axpy(const Tensor& y, const Tensor& x, double alpha) {
  Backend& be = backend_for(y);
  Tensor t = empty_like(y);
  be.unary(UnaryOp::MulScalar, x, t, {alpha, 0});
  be.binary(BinaryOp::Add, y, t, t);
  return t;
}

void addcmul_(const Tensor& y, const Tensor& a, const Tensor& b, double value) {
  Backend& be = backend_for(y);
  Tensor t = empty_like(y);
  be.binary(BinaryOp::Mul, a, b, t);
  if (value != 1.0) be.unary(UnaryOp::MulScalar, t, t, {value, 0});
  be.binary(BinaryOp::Add, y, t, y);
  Tensor(y).bump_version();
}

void addcdiv_(const Tensor& y, const Tensor& a, const Tensor& b, double value) {
  Backend& be = backend_for(y);
  Tensor t = empty_like(y);
  be.binary(BinaryOp::Div, a, b, t);
  if (value != 1.0) be.unary(UnaryOp::MulScalar, t, t, {value, 0});
  be.binary(BinaryOp::Add, y, t, y);
  Tensor(y).bump_version();
}

Tensor sqrt(const Tensor& x) {
  Tensor t = empty_like(x);
  backend_for(x).unary(UnaryOp::Sqrt, x, t, {});
  return t;
}

void sqrt_(const Tensor& y) {
  backend_for(y).unary(UnaryOp::Sqrt, y, y, {});
  Tensor(y).bump_version();
}

void add_scalar_(const Tensor& y, double s) {
  backend_for(y).unary(UnaryOp::AddScalar, y, y, {s, 0});
  Tensor(y).bump_version();
}

void clamp_(const Tensor& y, double lo, double hi) {
  backend_for(y).unary(UnaryOp::Clamp, y, y, {lo, hi});
  Tensor(y).bump_version();
}

}  // namespace mox::optim::detail
