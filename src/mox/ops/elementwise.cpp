// Elementwise ops with NumPy broadcasting and type promotion; bf16/f16 compute in f32.
#include <cmath>

#include "mox/autograd/node.h"
#include "mox/ops/half.h"
#include "mox/ops/ops.h"

namespace mox {

namespace {

using detail::is_half;
using detail::via_f32;

// Runs a unary kernel; bf16/f16 inputs are computed in f32 and converted back.
Tensor unary_forward(UnaryOp op, const Tensor& x, UnaryParams p, const char* name) {
  MOX_CHECK(x.defined(), name, "input is undefined");
  if (via_f32(x)) {
    NoGradGuard ng;  // gradient recorded by the caller on the half tensors
    return unary_forward(op, x.to(DType::F32), p, name).to(x.dtype());
  }
  Tensor out = empty(x.shape(), TensorOptions(x.dtype(), x.device()));
  backend_for(x).unary(op, x, out, p);
  return out;
}

Tensor unary_grad(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& g, UnaryParams p) {
  if (via_f32(g))
    return unary_grad(op, x.defined() ? x.to(DType::F32) : x, y.defined() ? y.to(DType::F32) : y,
                      g.to(DType::F32), p)
        .to(g.dtype());
  Tensor gc = g;
  Tensor gx = empty(g.shape(), TensorOptions(g.dtype(), g.device()));
  backend_for(g).unary_backward(op, x, y, gc, gx, p);
  return gx;
}

// Which saved values each op's derivative needs.
bool grad_needs_x(UnaryOp op) {
  switch (op) {
    case UnaryOp::Exp: case UnaryOp::Sqrt: case UnaryOp::Rsqrt: case UnaryOp::Reciprocal:
    case UnaryOp::Sigmoid: case UnaryOp::Tanh: case UnaryOp::Neg: case UnaryOp::AddScalar:
    case UnaryOp::MulScalar: case UnaryOp::RSubScalar: case UnaryOp::RPowScalar:
    case UnaryOp::Expm1:
      return false;
    default:
      return true;
  }
}
bool grad_needs_y(UnaryOp op) {
  switch (op) {
    case UnaryOp::Exp: case UnaryOp::Sqrt: case UnaryOp::Rsqrt: case UnaryOp::Reciprocal:
    case UnaryOp::Sigmoid: case UnaryOp::Tanh: case UnaryOp::Elu: case UnaryOp::Selu:
    case UnaryOp::RDivScalar: case UnaryOp::RPowScalar: case UnaryOp::Expm1:
      return true;
    default:
      return false;
  }
}

Tensor unary_op(UnaryOp op, const Tensor& x, const char* name, UnaryParams p = {}) {
  Tensor out = unary_forward(op, x, p, name);
  if (any_requires_grad({&x})) {
    Tensor xs = grad_needs_x(op) ? x.detach() : Tensor();
    Tensor ys = grad_needs_y(op) ? out.detach() : Tensor();
    record(out, name, {x}, [op, xs, ys, p](const Tensor& g) -> std::vector<Tensor> {
      return {unary_grad(op, xs, ys, g, p)};
    });
  }
  return out;
}

// Broadcast + promote, then run the kernel. Integer true division promotes to f32.
Tensor binary_forward(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  MOX_CHECK(a.defined() && b.defined(), name, "input is undefined");
  MOX_CHECK(a.device() == b.device(), name,
            "tensors on different devices: " + a.device().str() + " and " + b.device().str());
  DType dt = promote(a.dtype(), b.dtype());
  if ((op == BinaryOp::Div || op == BinaryOp::Atan2) && is_integral(dt)) dt = DType::F32;
  DType compute = is_half(dt) && !backend_for(a).native_half() ? DType::F32 : dt;
  Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor ea = a.detach().to(compute).expand(s), eb = b.detach().to(compute).expand(s);
  bool cmp = is_comparison(op);
  Tensor out = empty(s, TensorOptions(cmp ? DType::U8 : compute, a.device()));
  backend_for(a).binary(op, ea, eb, out);
  if (!cmp && compute != dt) out = out.to(dt);
  return out;
}

}  // namespace

// ---------- binary arithmetic ----------
Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Add, a, b, "add");
  if (any_requires_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    record(out, "add", {a, b}, [sa, sb](const Tensor& g) -> std::vector<Tensor> {
      return {sum_to(g, sa), sum_to(g, sb)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Sub, a, b, "sub");
  if (any_requires_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    bool need_b = b.requires_grad();
    record(out, "sub", {a, b}, [sa, sb, need_b](const Tensor& g) -> std::vector<Tensor> {
      return {sum_to(g, sa), need_b ? sum_to(neg(g), sb) : Tensor()};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Mul, a, b, "mul");
  if (any_requires_grad({&a, &b})) {
    Tensor ad = a.detach(), bd = b.detach();
    bool na = a.requires_grad(), nb = b.requires_grad();
    record(out, "mul", {a, b}, [ad, bd, na, nb](const Tensor& g) -> std::vector<Tensor> {
      return {na ? sum_to(mul(g, bd), ad.shape()) : Tensor(),
              nb ? sum_to(mul(g, ad), bd.shape()) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Div, a, b, "div");
  if (any_requires_grad({&a, &b})) {
    Tensor ad = a.detach(), bd = b.detach(), od = out.detach();
    bool na = a.requires_grad(), nb = b.requires_grad();
    record(out, "div", {a, b}, [ad, bd, od, na, nb](const Tensor& g) -> std::vector<Tensor> {
      Tensor gb;
      if (nb) gb = sum_to(neg(div(mul(g, od), bd)), bd.shape());  // -g * a / b^2
      return {na ? sum_to(div(g, bd), ad.shape()) : Tensor(), gb};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Pow, a, b, "pow");
  if (any_requires_grad({&a, &b})) {
    Tensor ad = a.detach(), bd = b.detach(), od = out.detach();
    bool na = a.requires_grad(), nb = b.requires_grad();
    record(out, "pow", {a, b}, [ad, bd, od, na, nb](const Tensor& g) -> std::vector<Tensor> {
      Tensor ga, gb;
      if (na) ga = sum_to(mul(g, mul(bd, pow(ad, sub(bd, ones_like(bd))))), ad.shape());
      if (nb) {
        // d/db a^b = a^b log a; defined as 0 where a == 0 (PyTorch's convention)
        Tensor la = where(eq(ad, 0.0), zeros_like(ad), log(ad));
        gb = sum_to(mul(g, mul(od, la)), bd.shape());
      }
      return {ga, gb};
    });
  }
  return out;
}

static Tensor minmax(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  Tensor out = binary_forward(op, a, b, name);
  if (any_requires_grad({&a, &b})) {
    Tensor ad = a.detach(), bd = b.detach();
    bool is_max = op == BinaryOp::Maximum;
    record(out, name, {a, b}, [ad, bd, is_max](const Tensor& g) -> std::vector<Tensor> {
      // Ties split the gradient evenly, as PyTorch does.
      Tensor wins = (is_max ? gt(ad, bd) : lt(ad, bd)).to(g.dtype());
      Tensor ties = eq(ad, bd).to(g.dtype());
      Tensor wa = add(wins, mul(ties, 0.5));
      Tensor wb = rsub(wa, 1.0);
      return {sum_to(mul(g, wa), ad.shape()), sum_to(mul(g, wb), bd.shape())};
    });
  }
  return out;
}
Tensor maximum(const Tensor& a, const Tensor& b) { return minmax(BinaryOp::Maximum, a, b, "maximum"); }
Tensor minimum(const Tensor& a, const Tensor& b) { return minmax(BinaryOp::Minimum, a, b, "minimum"); }

// ---------- with a scalar ----------
Tensor add(const Tensor& a, double s) { return unary_op(UnaryOp::AddScalar, a, "add", {s, 0}); }
Tensor mul(const Tensor& a, double s) { return unary_op(UnaryOp::MulScalar, a, "mul", {s, 0}); }
Tensor rsub(const Tensor& a, double s) { return unary_op(UnaryOp::RSubScalar, a, "rsub", {s, 0}); }
Tensor rdiv(const Tensor& a, double s) {
  if (is_integral(a.dtype())) return rdiv(a.to(DType::F32), s);
  return unary_op(UnaryOp::RDivScalar, a, "rdiv", {s, 0});
}
Tensor pow(const Tensor& a, double p) {
  if (is_integral(a.dtype())) return pow(a.to(DType::F32), p);
  return unary_op(UnaryOp::PowScalar, a, "pow", {p, 0});
}

// ---------- unary math ----------
static Tensor float_unary(UnaryOp op, const Tensor& x, const char* name, UnaryParams p = {}) {
  if (is_integral(x.dtype())) return unary_op(op, x.to(DType::F32), name, p);
  return unary_op(op, x, name, p);
}
Tensor neg(const Tensor& a) { return unary_op(UnaryOp::Neg, a, "neg"); }
Tensor exp(const Tensor& a) { return float_unary(UnaryOp::Exp, a, "exp"); }
Tensor log(const Tensor& a) { return float_unary(UnaryOp::Log, a, "log"); }
Tensor log1p(const Tensor& a) { return float_unary(UnaryOp::Log1p, a, "log1p"); }
Tensor expm1(const Tensor& a) { return float_unary(UnaryOp::Expm1, a, "expm1"); }
Tensor sqrt(const Tensor& a) { return float_unary(UnaryOp::Sqrt, a, "sqrt"); }
Tensor rsqrt(const Tensor& a) { return float_unary(UnaryOp::Rsqrt, a, "rsqrt"); }
Tensor abs(const Tensor& a) { return unary_op(UnaryOp::Abs, a, "abs"); }
Tensor sign(const Tensor& a) { return unary_op(UnaryOp::Sign, a, "sign"); }
Tensor square(const Tensor& a) { return unary_op(UnaryOp::Square, a, "square"); }
Tensor reciprocal(const Tensor& a) { return float_unary(UnaryOp::Reciprocal, a, "reciprocal"); }
Tensor sin(const Tensor& a) { return float_unary(UnaryOp::Sin, a, "sin"); }
Tensor cos(const Tensor& a) { return float_unary(UnaryOp::Cos, a, "cos"); }
Tensor floor(const Tensor& a) { return unary_op(UnaryOp::Floor, a, "floor"); }
Tensor ceil(const Tensor& a) { return unary_op(UnaryOp::Ceil, a, "ceil"); }
Tensor round(const Tensor& a) { return unary_op(UnaryOp::Round, a, "round"); }
Tensor clamp(const Tensor& a, double lo, double hi) {
  MOX_CHECK(lo <= hi, "clamp", "min " + std::to_string(lo) + " > max " + std::to_string(hi));
  return unary_op(UnaryOp::Clamp, a, "clamp", {lo, hi});
}
Tensor clamp_min(const Tensor& a, double lo) { return clamp(a, lo, INFINITY); }
Tensor clamp_max(const Tensor& a, double hi) { return clamp(a, -INFINITY, hi); }

// ---------- activations ----------
Tensor relu(const Tensor& x) { return unary_op(UnaryOp::Relu, x, "relu"); }
Tensor leaky_relu(const Tensor& x, double s) { return unary_op(UnaryOp::LeakyRelu, x, "leaky_relu", {s, 0}); }
Tensor elu(const Tensor& x, double alpha) { return unary_op(UnaryOp::Elu, x, "elu", {alpha, 0}); }
Tensor selu(const Tensor& x) { return unary_op(UnaryOp::Selu, x, "selu"); }
Tensor gelu(const Tensor& x, bool tanh_approx) {
  return unary_op(tanh_approx ? UnaryOp::GeluTanh : UnaryOp::Gelu, x, "gelu");
}
Tensor sigmoid(const Tensor& x) { return float_unary(UnaryOp::Sigmoid, x, "sigmoid"); }
Tensor tanh(const Tensor& x) { return float_unary(UnaryOp::Tanh, x, "tanh"); }
Tensor softplus(const Tensor& x, double beta, double threshold) {
  return unary_op(UnaryOp::Softplus, x, "softplus", {beta, threshold});
}
Tensor silu(const Tensor& x) { return unary_op(UnaryOp::Silu, x, "silu"); }

// ---------- comparisons and selection ----------
Tensor eq(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Eq, a, b, "eq"); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Ne, a, b, "ne"); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Lt, a, b, "lt"); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Le, a, b, "le"); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Gt, a, b, "gt"); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Ge, a, b, "ge"); }
static Tensor scalar_like(const Tensor& a, double v) {
  return scalar_tensor(v, TensorOptions(is_floating(a.dtype()) ? a.dtype() : DType::F64, a.device()));
}
Tensor eq(const Tensor& a, double b) { return eq(a, scalar_like(a, b)); }
Tensor ne(const Tensor& a, double b) { return ne(a, scalar_like(a, b)); }
Tensor lt(const Tensor& a, double b) { return lt(a, scalar_like(a, b)); }
Tensor le(const Tensor& a, double b) { return le(a, scalar_like(a, b)); }
Tensor gt(const Tensor& a, double b) { return gt(a, scalar_like(a, b)); }
Tensor ge(const Tensor& a, double b) { return ge(a, scalar_like(a, b)); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  MOX_CHECK(cond.defined() && a.defined() && b.defined(), "where", "input is undefined");
  Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  DType dt = promote(a.dtype(), b.dtype());
  Tensor c = cond.dtype() == DType::U8 ? cond : ne(cond, 0.0);
  Tensor out = empty(s, TensorOptions(dt, a.device()));
  backend_for(a).where(c.detach().expand(s), a.detach().to(dt).expand(s), b.detach().to(dt).expand(s), out);
  if (any_requires_grad({&a, &b})) {
    Tensor cd = c.detach();
    Shape sa = a.shape(), sb = b.shape();
    record(out, "where", {a, b}, [cd, sa, sb](const Tensor& g) -> std::vector<Tensor> {
      Tensor z = zeros({}, TensorOptions(g.dtype(), g.device()));
      return {sum_to(where(cd, g, z), sa), sum_to(where(cd, z, g), sb)};
    });
  }
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, double b) {
  return where(cond, a, scalar_tensor(b, TensorOptions(a.dtype(), a.device())));
}

Tensor masked_fill(const Tensor& a, const Tensor& mask, double value) {
  return where(mask, scalar_tensor(value, TensorOptions(a.dtype(), a.device())), a);
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape()) return false;
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); i++) {
    if (std::isnan(x[i]) || std::isnan(y[i])) return false;
    if (std::abs(x[i] - y[i]) > atol + rtol * std::abs(y[i])) return false;
  }
  return true;
}

}  // namespace mox
