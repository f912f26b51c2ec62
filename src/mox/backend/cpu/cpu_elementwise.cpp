// Elementwise kernels: unary math and activations (+ their derivatives), binary
// arithmetic and comparisons, where. The f32 contiguous loops are compiled per
// instruction set (MOX_SIMD); strided or broadcast operands go through loops.h rows.
#include <cmath>
#include <type_traits>

#include "mox/backend/cpu/convert.h"
#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/loops.h"
#include "mox/backend/cpu/math.h"

namespace mox {

using namespace cpu;

namespace {

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
constexpr double kInvSqrt2 = 0.70710678118654752440084436210485;
constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;

// y = f(x) with parameters a, b; one case per op, the loop inside so it vectorises.
#define MOX_UNARY_FLOAT_CASES(X)                                                        \
  X(Neg, -x)                                                                            \
  X(Exp, m_exp(x))                                                                      \
  X(Log, m_log(x))                                                                      \
  X(Sqrt, m_sqrt(x))                                                                    \
  X(Rsqrt, T(1) / m_sqrt(x))                                                            \
  X(Abs, x < T(0) ? -x : x)                                                             \
  X(Sign, T((x > T(0)) - (x < T(0))))                                                   \
  X(Reciprocal, T(1) / x)                                                               \
  X(Square, x * x)                                                                      \
  X(Sin, std::sin(x))                                                                   \
  X(Cos, std::cos(x))                                                                   \
  X(Log1p, m_log1p(x))                                                                  \
  X(Expm1, m_expm1(x))                                                                  \
  X(Floor, std::floor(x))                                                               \
  X(Ceil, std::ceil(x))                                                                 \
  X(Round, std::nearbyint(x))                                                           \
  X(Relu, x > T(0) ? x : T(0))                                                          \
  X(LeakyRelu, x > T(0) ? x : x * a)                                                    \
  X(Elu, x > T(0) ? x : a * (m_exp(x) - T(1)))                                          \
  X(Selu, x > T(0) ? T(kSeluScale) * x : T(kSeluScale * kSeluAlpha) * (m_exp(x) - T(1))) \
  X(Gelu, T(0.5) * x * (T(1) + m_erf(x * T(kInvSqrt2))))                                \
  X(GeluTanh, T(0.5) * x * (T(1) + m_tanh(T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x)))) \
  X(Sigmoid, m_sigmoid(x))                                                              \
  X(Tanh, m_tanh(x))                                                                    \
  X(Softplus, x * a > b ? x : m_log1p(m_exp(x * a)) / a)                                \
  X(Silu, x * m_sigmoid(x))                                                             \
  X(AddScalar, x + a)                                                                   \
  X(MulScalar, x * a)                                                                   \
  X(RSubScalar, a - x)                                                                  \
  X(RDivScalar, a / x)                                                                  \
  X(PowScalar, a == T(2) ? x * x : T(std::pow(x, a)))                                   \
  X(RPowScalar, T(std::pow(a, x)))                                                      \
  X(Clamp, x < a ? a : (x > b ? b : x))

// gx = gy * dy/dx, given x, y = f(x) and gy.
#define MOX_UNARY_GRAD_CASES(X)                                                          \
  X(Neg, -g)                                                                             \
  X(Exp, g * y)                                                                          \
  X(Log, g / x)                                                                          \
  X(Sqrt, g * T(0.5) / y)                                                                \
  X(Rsqrt, g * T(-0.5) * y * y * y)                                                      \
  X(Abs, x > T(0) ? g : (x < T(0) ? -g : T(0)))                                          \
  X(Sign, T(0))                                                                          \
  X(Reciprocal, -g * y * y)                                                              \
  X(Square, T(2) * g * x)                                                                \
  X(Sin, g * std::cos(x))                                                                \
  X(Cos, -g * std::sin(x))                                                               \
  X(Log1p, g / (T(1) + x))                                                               \
  X(Expm1, g * (y + T(1)))                                                               \
  X(Floor, T(0))                                                                         \
  X(Ceil, T(0))                                                                          \
  X(Round, T(0))                                                                         \
  X(Relu, x > T(0) ? g : T(0))                                                           \
  X(LeakyRelu, x > T(0) ? g : g * a)                                                     \
  X(Elu, x > T(0) ? g : g * (y + a))                                                     \
  X(Selu, x > T(0) ? g * T(kSeluScale) : g * (y + T(kSeluScale * kSeluAlpha)))           \
  X(Gelu, g * (T(0.5) * (T(1) + m_erf(x * T(kInvSqrt2))) + x * T(kInvSqrt2Pi) * m_exp(T(-0.5) * x * x))) \
  X(GeluTanh, gelu_tanh_grad(x, g))                                                      \
  X(Sigmoid, g * y * (T(1) - y))                                                         \
  X(Tanh, g * (T(1) - y * y))                                                            \
  X(Softplus, x * a > b ? g : g * m_sigmoid(x * a))                                      \
  X(Silu, silu_grad(x, g))                                                               \
  X(AddScalar, g)                                                                        \
  X(MulScalar, g * a)                                                                    \
  X(RSubScalar, -g)                                                                      \
  X(RDivScalar, -g * y / x)                                                              \
  X(PowScalar, a == T(0) ? T(0) : g * a * T(std::pow(x, a - T(1))))                      \
  X(RPowScalar, g * y * T(std::log(double(a))))                                          \
  X(Clamp, (x >= a && x <= b) ? g : T(0))

template <typename T>
MOX_INLINE T gelu_tanh_grad(T x, T g) {
  T u = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
  T t = m_tanh(u);
  T du = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
  return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
}
template <typename T>
MOX_INLINE T silu_grad(T x, T g) {
  T s = m_sigmoid(x);
  return g * (s * (T(1) + x * (T(1) - s)));
}

template <typename T>
MOX_INLINE void unary_loop(UnaryOp op, const T* __restrict xp,
                                                      int64_t xs, T* __restrict yp, int64_t ys,
                                                      int64_t n, T a, T b) {
  switch (op) {
#define X(NAME, EXPR)                                                   \
  case UnaryOp::NAME:                                                   \
    if (xs == 1 && ys == 1) {                                           \
      for (int64_t i = 0; i < n; i++) {                                 \
        const T x = xp[i];                                              \
        yp[i] = EXPR;                                                   \
      }                                                                 \
    } else {                                                            \
      for (int64_t i = 0; i < n; i++) {                                 \
        const T x = xp[i * xs];                                         \
        yp[i * ys] = EXPR;                                              \
      }                                                                 \
    }                                                                   \
    break;
    MOX_UNARY_FLOAT_CASES(X)
#undef X
  }
}

// xp and yp are never null (unary_backward substitutes gy for an unneeded operand), so the
// unit-stride loop is branch-free and vectorises.
template <typename T>
MOX_INLINE void unary_grad_loop(UnaryOp op, const T* xp, int64_t xs,
                                                           const T* yp, int64_t ys, const T* gp,
                                                           int64_t gs, T* __restrict op_,
                                                           int64_t os, int64_t n, T a, T b) {
  switch (op) {
#define X(NAME, EXPR)                                                      \
  case UnaryOp::NAME:                                                      \
    for (int64_t i = 0; i < n; i++) {                                      \
      [[maybe_unused]] const T x = xp[i * xs];                             \
      [[maybe_unused]] const T y = yp[i * ys];                             \
      [[maybe_unused]] const T g = gp[i * gs];                                              \
      op_[i * os] = EXPR;                                                  \
    }                                                                      \
    break;
    MOX_UNARY_GRAD_CASES(X)
#undef X
  }
}

MOX_SIMD void unary_f32(UnaryOp op, const float* x, int64_t xs, float* y, int64_t ys, int64_t n,
                        float a, float b) {
  unary_loop<float>(op, x, xs, y, ys, n, a, b);
}
void unary_f64(UnaryOp op, const double* x, int64_t xs, double* y, int64_t ys, int64_t n,
               double a, double b) {
  unary_loop<double>(op, x, xs, y, ys, n, a, b);
}
MOX_SIMD void unary_grad_f32(UnaryOp op, const float* x, int64_t xs, const float* y, int64_t ys,
                             const float* g, int64_t gs, float* o, int64_t os, int64_t n, float a,
                             float b) {
  if (xs == 1 && ys == 1 && gs == 1 && os == 1)
    unary_grad_loop<float>(op, x, 1, y, 1, g, 1, o, 1, n, a, b);  // unit strides: vectorises
  else
    unary_grad_loop<float>(op, x, xs, y, ys, g, gs, o, os, n, a, b);
}
void unary_grad_f64(UnaryOp op, const double* x, int64_t xs, const double* y, int64_t ys,
                    const double* g, int64_t gs, double* o, int64_t os, int64_t n, double a,
                    double b) {
  unary_grad_loop<double>(op, x, xs, y, ys, g, gs, o, os, n, a, b);
}

// Integer tensors support the ops that make sense on integers.
template <typename T>
void unary_int(UnaryOp op, const T* x, int64_t xs, T* y, int64_t ys, int64_t n, double a, double b) {
  for (int64_t i = 0; i < n; i++) {
    T v = x[i * xs], r;
    switch (op) {
      case UnaryOp::Neg: r = T(-v); break;
      case UnaryOp::Abs: r = v < 0 ? T(-v) : v; break;
      case UnaryOp::Sign: r = T((v > 0) - (v < 0)); break;
      case UnaryOp::Square: r = T(v * v); break;
      case UnaryOp::Relu: r = v > 0 ? v : T(0); break;
      case UnaryOp::AddScalar: r = T(v + T(a)); break;
      case UnaryOp::MulScalar: r = T(v * T(a)); break;
      case UnaryOp::RSubScalar: r = T(T(a) - v); break;
      case UnaryOp::Clamp: r = v < T(a) ? T(a) : (v > T(b) ? T(b) : v); break;
      case UnaryOp::Floor: case UnaryOp::Ceil: case UnaryOp::Round: r = v; break;
      default:
        throw Error("unary", "op not supported on integer tensors");
    }
    y[i * ys] = r;
  }
}

// ---- binary ----
#define MOX_BINARY_CASES(X)                              \
  X(Add, a + b)                                          \
  X(Sub, a - b)                                          \
  X(Mul, a * b)                                          \
  X(Div, a / b)                                          \
  X(Pow, T(std::pow(a, b)))                              \
  X(Maximum, (a != a) ? a : (a > b ? a : b))             \
  X(Minimum, (a != a) ? a : (a < b ? a : b))             \
  X(Atan2, T(std::atan2(double(a), double(b))))

#define MOX_COMPARE_CASES(X) \
  X(Eq, a == b) X(Ne, a != b) X(Lt, a < b) X(Le, a <= b) X(Gt, a > b) X(Ge, a >= b)

template <typename T>
MOX_INLINE void binary_loop(BinaryOp op, const T* ap, int64_t as,
                                                       const T* bp, int64_t bs, T* __restrict op_,
                                                       int64_t os, int64_t n) {
  switch (op) {
#define X(NAME, EXPR)                                                         \
  case BinaryOp::NAME:                                                        \
    if (as == 1 && bs == 1 && os == 1) {                                      \
      for (int64_t i = 0; i < n; i++) {                                       \
        const T a = ap[i], b = bp[i];                                         \
        op_[i] = EXPR;                                                        \
      }                                                                       \
    } else if (as == 1 && bs == 0 && os == 1) {                               \
      const T b = bp[0];                                                      \
      for (int64_t i = 0; i < n; i++) {                                       \
        const T a = ap[i];                                                    \
        op_[i] = EXPR;                                                        \
      }                                                                       \
    } else if (as == 0 && bs == 1 && os == 1) {                               \
      const T a = ap[0];                                                      \
      for (int64_t i = 0; i < n; i++) {                                       \
        const T b = bp[i];                                                    \
        op_[i] = EXPR;                                                        \
      }                                                                       \
    } else {                                                                  \
      for (int64_t i = 0; i < n; i++) {                                       \
        const T a = ap[i * as], b = bp[i * bs];                               \
        op_[i * os] = EXPR;                                                   \
      }                                                                       \
    }                                                                         \
    break;
    MOX_BINARY_CASES(X)
#undef X
    default:
      throw Error("binary", "comparison routed to the arithmetic loop");
  }
}

MOX_SIMD void binary_f32(BinaryOp op, const float* a, int64_t as, const float* b, int64_t bs,
                         float* o, int64_t os, int64_t n) {
  binary_loop<float>(op, a, as, b, bs, o, os, n);
}

template <typename T>
void compare_loop(BinaryOp op, const T* ap, int64_t as, const T* bp, int64_t bs, uint8_t* o,
                  int64_t os, int64_t n) {
  switch (op) {
#define X(NAME, EXPR)                                   \
  case BinaryOp::NAME:                                  \
    for (int64_t i = 0; i < n; i++) {                   \
      const T a = ap[i * as], b = bp[i * bs];           \
      o[i * os] = uint8_t(EXPR);                        \
    }                                                   \
    break;
    MOX_COMPARE_CASES(X)
#undef X
    default:
      break;
  }
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) {
  MOX_CHECK(x.shape() == out.shape(), "unary", "shape mismatch " + x.desc() + " vs " + out.desc());
  MOX_CHECK(x.dtype() == out.dtype(), "unary", "dtype mismatch " + x.desc() + " vs " + out.desc());
  if (x.numel() == 0) return;
  std::array<const Shape*, 2> st{&x.strides(), &out.strides()};
  std::array<char*, 2> base{static_cast<char*>(x.raw_data()), static_cast<char*>(out.raw_data())};
  std::array<int64_t, 2> es{int64_t(x.element_size()), int64_t(out.element_size())};
  switch (x.dtype()) {
    case DType::F32:
      for_each_row<2>(x.shape(), st, base, es, [&](std::array<char*, 2> q, std::array<int64_t, 2> s, int64_t n) {
        unary_f32(op, reinterpret_cast<float*>(q[0]), s[0], reinterpret_cast<float*>(q[1]), s[1], n,
                  float(p.a), float(p.b));
      });
      break;
    case DType::F64:
      for_each_row<2>(x.shape(), st, base, es, [&](std::array<char*, 2> q, std::array<int64_t, 2> s, int64_t n) {
        unary_f64(op, reinterpret_cast<double*>(q[0]), s[0], reinterpret_cast<double*>(q[1]), s[1], n,
                  p.a, p.b);
      });
      break;
    case DType::I64:
      for_each_row<2>(x.shape(), st, base, es, [&](std::array<char*, 2> q, std::array<int64_t, 2> s, int64_t n) {
        unary_int(op, reinterpret_cast<int64_t*>(q[0]), s[0], reinterpret_cast<int64_t*>(q[1]), s[1], n, p.a, p.b);
      });
      break;
    case DType::I32:
      for_each_row<2>(x.shape(), st, base, es, [&](std::array<char*, 2> q, std::array<int64_t, 2> s, int64_t n) {
        unary_int(op, reinterpret_cast<int32_t*>(q[0]), s[0], reinterpret_cast<int32_t*>(q[1]), s[1], n, p.a, p.b);
      });
      break;
    default:
      throw Error("unary", std::string("unsupported dtype on cpu: ") + dtype_name(x.dtype()));
  }
}

void CpuBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                                const Tensor& gx, UnaryParams p) {
  MOX_CHECK(gy.shape() == gx.shape(), "unary_backward", "shape mismatch");
  if (gx.numel() == 0) return;
  // x or y may be undefined when the derivative does not need them; substitute gy (unused).
  const Tensor& xx = x.defined() ? x : gy;
  const Tensor& yy = y.defined() ? y : gy;
  std::array<const Shape*, 4> st{&xx.strides(), &yy.strides(), &gy.strides(), &gx.strides()};
  std::array<char*, 4> base{static_cast<char*>(xx.raw_data()), static_cast<char*>(yy.raw_data()),
                            static_cast<char*>(gy.raw_data()), static_cast<char*>(gx.raw_data())};
  int64_t e = int64_t(gx.element_size());
  std::array<int64_t, 4> es{e, e, e, e};
  if (gx.dtype() == DType::F32) {
    for_each_row<4>(gx.shape(), st, base, es, [&](std::array<char*, 4> q, std::array<int64_t, 4> s, int64_t n) {
      unary_grad_f32(op, reinterpret_cast<float*>(q[0]), s[0], reinterpret_cast<float*>(q[1]), s[1],
                     reinterpret_cast<float*>(q[2]), s[2], reinterpret_cast<float*>(q[3]), s[3], n,
                     float(p.a), float(p.b));
    });
  } else if (gx.dtype() == DType::F64) {
    for_each_row<4>(gx.shape(), st, base, es, [&](std::array<char*, 4> q, std::array<int64_t, 4> s, int64_t n) {
      unary_grad_f64(op, reinterpret_cast<double*>(q[0]), s[0], reinterpret_cast<double*>(q[1]), s[1],
                     reinterpret_cast<double*>(q[2]), s[2], reinterpret_cast<double*>(q[3]), s[3], n,
                     p.a, p.b);
    });
  } else {
    throw Error("unary_backward", std::string("unsupported dtype ") + dtype_name(gx.dtype()));
  }
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  MOX_CHECK(a.shape() == out.shape() && b.shape() == out.shape(), "binary",
            "operands must be broadcast to the output shape: " + a.desc() + ", " + b.desc() +
                " -> " + out.desc());
  MOX_CHECK(a.dtype() == b.dtype(), "binary", "dtype mismatch " + a.desc() + " vs " + b.desc());
  if (out.numel() == 0) return;
  std::array<const Shape*, 3> st{&a.strides(), &b.strides(), &out.strides()};
  std::array<char*, 3> base{static_cast<char*>(a.raw_data()), static_cast<char*>(b.raw_data()),
                            static_cast<char*>(out.raw_data())};
  std::array<int64_t, 3> es{int64_t(a.element_size()), int64_t(b.element_size()),
                            int64_t(out.element_size())};
  if (is_comparison(op)) {
    MOX_CHECK(out.dtype() == DType::U8, "binary", "comparison output must be u8");
    MOX_DISPATCH_COMPUTE(a.dtype(), T, "compare", {
      for_each_row<3>(out.shape(), st, base, es, [&](std::array<char*, 3> q, std::array<int64_t, 3> s, int64_t n) {
        compare_loop<T>(op, reinterpret_cast<T*>(q[0]), s[0], reinterpret_cast<T*>(q[1]), s[1],
                        reinterpret_cast<uint8_t*>(q[2]), s[2], n);
      });
    });
    return;
  }
  MOX_CHECK(out.dtype() == a.dtype(), "binary", "output dtype must match: " + out.desc());
  if (a.dtype() == DType::F32) {
    for_each_row<3>(out.shape(), st, base, es, [&](std::array<char*, 3> q, std::array<int64_t, 3> s, int64_t n) {
      binary_f32(op, reinterpret_cast<float*>(q[0]), s[0], reinterpret_cast<float*>(q[1]), s[1],
                 reinterpret_cast<float*>(q[2]), s[2], n);
    });
    return;
  }
  if (op == BinaryOp::Atan2 && !is_floating(a.dtype())) throw Error("atan2", "needs floating-point inputs");
  MOX_DISPATCH_COMPUTE(a.dtype(), T, "binary", {
    for_each_row<3>(out.shape(), st, base, es, [&](std::array<char*, 3> q, std::array<int64_t, 3> s, int64_t n) {
      binary_loop<T>(op, reinterpret_cast<T*>(q[0]), s[0], reinterpret_cast<T*>(q[1]), s[1],
                     reinterpret_cast<T*>(q[2]), s[2], n);
    });
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  MOX_CHECK(cond.dtype() == DType::U8, "where", "condition must be u8, got " + cond.desc());
  MOX_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(), "where", "dtype mismatch");
  if (out.numel() == 0) return;
  std::array<const Shape*, 4> st{&cond.strides(), &a.strides(), &b.strides(), &out.strides()};
  std::array<char*, 4> base{static_cast<char*>(cond.raw_data()), static_cast<char*>(a.raw_data()),
                            static_cast<char*>(b.raw_data()), static_cast<char*>(out.raw_data())};
  int64_t e = int64_t(out.element_size());
  std::array<int64_t, 4> es{1, e, e, e};
  MOX_DISPATCH_ALL(out.dtype(), T, {
    for_each_row<4>(out.shape(), st, base, es, [&](std::array<char*, 4> q, std::array<int64_t, 4> s, int64_t n) {
      const uint8_t* c = reinterpret_cast<uint8_t*>(q[0]);
      const T* x = reinterpret_cast<T*>(q[1]);
      const T* y = reinterpret_cast<T*>(q[2]);
      T* o = reinterpret_cast<T*>(q[3]);
      for (int64_t i = 0; i < n; i++) o[i * s[3]] = c[i * s[0]] ? x[i * s[1]] : y[i * s[2]];
    });
  });
}

}  // namespace mox
