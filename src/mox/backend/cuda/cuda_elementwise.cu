// Elementwise kernels: unary math and activations (+ their derivatives), binary arithmetic
// and comparisons, where. Formulas and parameters are the CPU's (cpu_elementwise.cpp);
// bf16/f16 are read and written directly and computed in f32, f64 in f64.
// Operands are described jointly (one linear index addresses every operand); when every
// operand is contiguous or a broadcast scalar the kernel moves 16-byte vectors with no
// index math, otherwise offsets come from the merged dims (32-bit index math when the
// offsets fit).
#include <cmath>
#include <limits>
#include <type_traits>

#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/cuda/cuda_common.cuh"

namespace mox {

namespace {

using cuda::compute_t;
using cuda::kMaxDims;
using cuda::TensorDesc;

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
constexpr double kInvSqrt2 = 0.70710678118654752440084436210485;
constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;

using cuda::convert_to;  // cuda_common.cuh

// ---- math, overloaded for f32 and f64 ----
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_sin(float x) { return sinf(x); }
__device__ __forceinline__ double m_sin(double x) { return sin(x); }
__device__ __forceinline__ float m_cos(float x) { return cosf(x); }
__device__ __forceinline__ double m_cos(double x) { return cos(x); }
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float m_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double m_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float m_floor(float x) { return floorf(x); }
__device__ __forceinline__ double m_floor(double x) { return floor(x); }
__device__ __forceinline__ float m_ceil(float x) { return ceilf(x); }
__device__ __forceinline__ double m_ceil(double x) { return ceil(x); }
__device__ __forceinline__ float m_rint(float x) { return rintf(x); }  // half to even
__device__ __forceinline__ double m_rint(double x) { return rint(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return erf(x); }
__device__ __forceinline__ float m_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double m_pow(double x, double y) { return pow(x, y); }
template <typename T> __device__ __forceinline__ T m_sigmoid(T x) { return T(1) / (T(1) + m_exp(-x)); }

// y = f(x) with parameters a, b (T = f32 or f64).
template <UnaryOp OP, typename T>
__device__ __forceinline__ T unary_fn(T x, T a, T b) {
  if constexpr (OP == UnaryOp::Neg) return -x;
  else if constexpr (OP == UnaryOp::Exp) return m_exp(x);
  else if constexpr (OP == UnaryOp::Log) return m_log(x);
  else if constexpr (OP == UnaryOp::Sqrt) return m_sqrt(x);
  else if constexpr (OP == UnaryOp::Rsqrt) return T(1) / m_sqrt(x);
  else if constexpr (OP == UnaryOp::Abs) return x < T(0) ? -x : x;
  else if constexpr (OP == UnaryOp::Sign) return T((x > T(0)) - (x < T(0)));
  else if constexpr (OP == UnaryOp::Reciprocal) return T(1) / x;
  else if constexpr (OP == UnaryOp::Square) return x * x;
  else if constexpr (OP == UnaryOp::Sin) return m_sin(x);
  else if constexpr (OP == UnaryOp::Cos) return m_cos(x);
  else if constexpr (OP == UnaryOp::Log1p) return m_log1p(x);
  else if constexpr (OP == UnaryOp::Expm1) return m_expm1(x);
  else if constexpr (OP == UnaryOp::Floor) return m_floor(x);
  else if constexpr (OP == UnaryOp::Ceil) return m_ceil(x);
  else if constexpr (OP == UnaryOp::Round) return m_rint(x);
  else if constexpr (OP == UnaryOp::Relu) return x > T(0) ? x : T(0);
  else if constexpr (OP == UnaryOp::LeakyRelu) return x > T(0) ? x : x * a;
  else if constexpr (OP == UnaryOp::Elu) return x > T(0) ? x : a * (m_exp(x) - T(1));
  else if constexpr (OP == UnaryOp::Selu)
    return x > T(0) ? T(kSeluScale) * x : T(kSeluScale * kSeluAlpha) * (m_exp(x) - T(1));
  else if constexpr (OP == UnaryOp::Gelu) return T(0.5) * x * (T(1) + m_erf(x * T(kInvSqrt2)));
  else if constexpr (OP == UnaryOp::GeluTanh)
    return T(0.5) * x * (T(1) + m_tanh(T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x)));
  else if constexpr (OP == UnaryOp::Sigmoid) return m_sigmoid(x);
  else if constexpr (OP == UnaryOp::Tanh) return m_tanh(x);
  else if constexpr (OP == UnaryOp::Softplus) return x * a > b ? x : m_log1p(m_exp(x * a)) / a;
  else if constexpr (OP == UnaryOp::Silu) return x * m_sigmoid(x);
  else if constexpr (OP == UnaryOp::AddScalar) return x + a;
  else if constexpr (OP == UnaryOp::MulScalar) return x * a;
  else if constexpr (OP == UnaryOp::RSubScalar) return a - x;
  else if constexpr (OP == UnaryOp::RDivScalar) return a / x;
  else if constexpr (OP == UnaryOp::PowScalar) return a == T(2) ? x * x : m_pow(x, a);
  else if constexpr (OP == UnaryOp::RPowScalar) return m_pow(a, x);
  else if constexpr (OP == UnaryOp::Clamp) return x < a ? a : (x > b ? b : x);
  else static_assert(OP == UnaryOp::Neg, "unhandled unary op");
}

// gx = gy * dy/dx given x, y = f(x), g = gy. loga = log(a) (RPowScalar), precomputed.
template <UnaryOp OP, typename T>
__device__ __forceinline__ T unary_grad_fn(T x, T y, T g, T a, T b, T loga) {
  if constexpr (OP == UnaryOp::Neg) return -g;
  else if constexpr (OP == UnaryOp::Exp) return g * y;
  else if constexpr (OP == UnaryOp::Log) return g / x;
  else if constexpr (OP == UnaryOp::Sqrt) return g * T(0.5) / y;
  else if constexpr (OP == UnaryOp::Rsqrt) return g * T(-0.5) * y * y * y;
  else if constexpr (OP == UnaryOp::Abs) return x > T(0) ? g : (x < T(0) ? -g : T(0));
  else if constexpr (OP == UnaryOp::Sign) return T(0);
  else if constexpr (OP == UnaryOp::Reciprocal) return -g * y * y;
  else if constexpr (OP == UnaryOp::Square) return T(2) * g * x;
  else if constexpr (OP == UnaryOp::Sin) return g * m_cos(x);
  else if constexpr (OP == UnaryOp::Cos) return -g * m_sin(x);
  else if constexpr (OP == UnaryOp::Log1p) return g / (T(1) + x);
  else if constexpr (OP == UnaryOp::Expm1) return g * (y + T(1));
  else if constexpr (OP == UnaryOp::Floor || OP == UnaryOp::Ceil || OP == UnaryOp::Round) return T(0);
  else if constexpr (OP == UnaryOp::Relu) return x > T(0) ? g : T(0);
  else if constexpr (OP == UnaryOp::LeakyRelu) return x > T(0) ? g : g * a;
  else if constexpr (OP == UnaryOp::Elu) return x > T(0) ? g : g * (y + a);
  else if constexpr (OP == UnaryOp::Selu)
    return x > T(0) ? g * T(kSeluScale) : g * (y + T(kSeluScale * kSeluAlpha));
  else if constexpr (OP == UnaryOp::Gelu)
    return g * (T(0.5) * (T(1) + m_erf(x * T(kInvSqrt2))) + x * T(kInvSqrt2Pi) * m_exp(T(-0.5) * x * x));
  else if constexpr (OP == UnaryOp::GeluTanh) {
    const T u = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
    const T t = m_tanh(u);
    const T du = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
    return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
  } else if constexpr (OP == UnaryOp::Sigmoid) return g * y * (T(1) - y);
  else if constexpr (OP == UnaryOp::Tanh) return g * (T(1) - y * y);
  else if constexpr (OP == UnaryOp::Softplus) return x * a > b ? g : g * m_sigmoid(x * a);
  else if constexpr (OP == UnaryOp::Silu) {
    const T s = m_sigmoid(x);
    return g * (s * (T(1) + x * (T(1) - s)));
  } else if constexpr (OP == UnaryOp::AddScalar) return g;
  else if constexpr (OP == UnaryOp::MulScalar) return g * a;
  else if constexpr (OP == UnaryOp::RSubScalar) return -g;
  else if constexpr (OP == UnaryOp::RDivScalar) return -g * y / x;
  else if constexpr (OP == UnaryOp::PowScalar) return a == T(0) ? T(0) : g * a * m_pow(x, a - T(1));
  else if constexpr (OP == UnaryOp::RPowScalar) return g * y * loga;
  else if constexpr (OP == UnaryOp::Clamp) return (x >= a && x <= b) ? g : T(0);
  else static_assert(OP == UnaryOp::Neg, "unhandled unary op");
}

// Integer unary ops (the subset the CPU supports); a and b are already T(p.a), T(p.b).
template <UnaryOp OP, typename T>
__device__ __forceinline__ T unary_int_fn(T v, T a, T b) {
  if constexpr (OP == UnaryOp::Neg) return T(-v);
  else if constexpr (OP == UnaryOp::Abs) return v < 0 ? T(-v) : v;
  else if constexpr (OP == UnaryOp::Sign) return T((v > 0) - (v < 0));
  else if constexpr (OP == UnaryOp::Square) return T(v * v);
  else if constexpr (OP == UnaryOp::Relu) return v > 0 ? v : T(0);
  else if constexpr (OP == UnaryOp::AddScalar) return T(v + a);
  else if constexpr (OP == UnaryOp::MulScalar) return T(v * a);
  else if constexpr (OP == UnaryOp::RSubScalar) return T(a - v);
  else if constexpr (OP == UnaryOp::Clamp) return v < a ? a : (v > b ? b : v);
  else if constexpr (OP == UnaryOp::Floor || OP == UnaryOp::Ceil || OP == UnaryOp::Round) return v;
  else static_assert(OP == UnaryOp::Neg, "unhandled integer unary op");
}

// Binary arithmetic in the compute type C (f32 for halves); integers follow C++.
template <BinaryOp OP, typename C>
__device__ __forceinline__ C binary_fn(C a, C b) {
  if constexpr (OP == BinaryOp::Add) return C(a + b);
  else if constexpr (OP == BinaryOp::Sub) return C(a - b);
  else if constexpr (OP == BinaryOp::Mul) return C(a * b);
  else if constexpr (OP == BinaryOp::Div) return C(a / b);
  else if constexpr (OP == BinaryOp::Pow) {
    if constexpr (std::is_floating_point_v<C>) return m_pow(a, b);
    else return convert_to<C>(pow(double(a), double(b)));
  } else if constexpr (OP == BinaryOp::Maximum) return (a != a) ? a : (a > b ? a : b);
  else if constexpr (OP == BinaryOp::Minimum) return (a != a) ? a : (a < b ? a : b);
  else if constexpr (OP == BinaryOp::Atan2) return C(atan2(double(a), double(b)));
  else static_assert(OP == BinaryOp::Add, "unhandled binary op");
}

template <BinaryOp OP, typename C>
__device__ __forceinline__ uint8_t compare_fn(C a, C b) {
  if constexpr (OP == BinaryOp::Eq) return uint8_t(a == b);
  else if constexpr (OP == BinaryOp::Ne) return uint8_t(a != b);
  else if constexpr (OP == BinaryOp::Lt) return uint8_t(a < b);
  else if constexpr (OP == BinaryOp::Le) return uint8_t(a <= b);
  else if constexpr (OP == BinaryOp::Gt) return uint8_t(a > b);
  else if constexpr (OP == BinaryOp::Ge) return uint8_t(a >= b);
  else static_assert(OP == BinaryOp::Eq, "unhandled comparison");
}

// Functors: operator()(const C (&v)[N]) -> value converted to the output type.
template <UnaryOp OP, typename C> struct UnaryF {
  C a, b;
  __device__ __forceinline__ C operator()(const C (&v)[1]) const { return unary_fn<OP, C>(v[0], a, b); }
};
template <UnaryOp OP, typename C> struct UnaryIntF {
  C a, b;
  __device__ __forceinline__ C operator()(const C (&v)[1]) const { return unary_int_fn<OP, C>(v[0], a, b); }
};
template <UnaryOp OP, typename C> struct UnaryGradF {  // v = {x, y, gy}
  C a, b, loga;
  __device__ __forceinline__ C operator()(const C (&v)[3]) const {
    return unary_grad_fn<OP, C>(v[0], v[1], v[2], a, b, loga);
  }
};
template <BinaryOp OP, typename C> struct BinaryF {
  __device__ __forceinline__ C operator()(const C (&v)[2]) const { return binary_fn<OP, C>(v[0], v[1]); }
};
template <BinaryOp OP, typename C> struct CompareF {
  __device__ __forceinline__ uint8_t operator()(const C (&v)[2]) const { return compare_fn<OP, C>(v[0], v[1]); }
};

// ---------------------------------------------------------------------------------------
// Joint strided operands: operand 0 is the output, 1..N-1 the inputs.
template <int N> struct Joint {
  int dim = 0;
  int64_t numel = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};
  char* data[N] = {};
};

template <int N>
Joint<N> make_joint(const Tensor* const* ts, const char* where) {
  TensorDesc d[N];
  cuda::joint_desc(ts, N, d, where);
  Joint<N> j;
  j.dim = d[0].dim;
  j.numel = d[0].numel;
  for (int k = 0; k < N; ++k) {
    j.data[k] = d[k].data;
    for (int i = 0; i < d[k].dim; ++i) j.strides[k][i] = d[k].strides[i];
  }
  for (int i = 0; i < j.dim; ++i) j.sizes[i] = d[0].sizes[i];
  return j;
}

// Whether every offset of every operand (and the linear index) fits in int32.
template <int N> bool fits_int32(const Joint<N>& j) {
  constexpr int64_t kLimit = (int64_t(1) << 31) - (int64_t(1) << 24);  // room for the grid stride
  if (j.numel >= kLimit) return false;
  for (int k = 0; k < N; ++k) {
    int64_t span = 0;
    for (int i = 0; i < j.dim; ++i) span += (j.sizes[i] - 1) * (j.strides[k][i] < 0 ? -j.strides[k][i] : j.strides[k][i]);
    if (span >= kLimit) return false;
  }
  return true;
}

// Every operand a flat run (stride 1) or a broadcast scalar (stride 0), the output flat.
template <int N> bool is_flat(const Joint<N>& j) {
  if (j.dim == 0) return true;
  if (j.dim > 1 || j.strides[0][0] != 1) return false;
  for (int k = 1; k < N; ++k)
    if (j.strides[k][0] != 0 && j.strides[k][0] != 1) return false;
  return true;
}

template <int N, typename I>
__device__ __forceinline__ void joint_offsets(const Joint<N>& j, I i, I (&off)[N]) {
  if (j.dim <= 1) {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = j.dim == 0 ? I(0) : i * I(j.strides[k][0]);
    return;
  }
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= j.dim) continue;
    const I s = I(j.sizes[d]);
    const I q = i % s;
    i /= s;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += q * I(j.strides[k][d]);
  }
}

// General strided kernel (index type I: int32 when everything fits, else int64).
template <typename TOut, typename TIn, int NIN, typename F, typename I>
__global__ void ew_strided_kernel(Joint<NIN + 1> j, F f) {
  const I n = I(j.numel);
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < n; i += I(blockDim.x) * I(gridDim.x)) {
    I off[NIN + 1];
    joint_offsets<NIN + 1, I>(j, i, off);
    compute_t<TIn> v[NIN];
#pragma unroll
    for (int k = 0; k < NIN; ++k) v[k] = cuda::load(reinterpret_cast<const TIn*>(j.data[k + 1]) + off[k + 1]);
    reinterpret_cast<TOut*>(j.data[0])[off[0]] = convert_to<TOut>(f(v));
  }
}

template <typename T, int V> struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

template <int NIN> struct FlatPtrs {
  const void* in[NIN];
  bool scalar[NIN];
  void* out;
  int64_t n;
};

// Flat operands, V elements per thread and step with 16-byte (or narrower) accesses.
template <typename TOut, typename TIn, int NIN, typename F, int V>
__global__ void ew_flat_kernel(FlatPtrs<NIN> p, F f) {
  const int64_t nv = p.n / V;
  const TIn* in[NIN];
#pragma unroll
  for (int k = 0; k < NIN; ++k) in[k] = static_cast<const TIn*>(p.in[k]);
  TOut* out = static_cast<TOut*>(p.out);
  MOX_GRID_STRIDE(iv, nv) {
    Vec<TIn, V> a[NIN];
#pragma unroll
    for (int k = 0; k < NIN; ++k) {
      if (p.scalar[k]) {
#pragma unroll
        for (int e = 0; e < V; ++e) a[k].v[e] = in[k][0];
      } else {
        a[k] = reinterpret_cast<const Vec<TIn, V>*>(in[k])[iv];
      }
    }
    Vec<TOut, V> o;
#pragma unroll
    for (int e = 0; e < V; ++e) {
      compute_t<TIn> v[NIN];
#pragma unroll
      for (int k = 0; k < NIN; ++k) v[k] = cuda::load(&a[k].v[e]);
      o.v[e] = convert_to<TOut>(f(v));
    }
    reinterpret_cast<Vec<TOut, V>*>(out)[iv] = o;
  }
  // The tail (fewer than V elements), one per thread of the first block.
  const int64_t i = nv * V + int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < p.n) {
    compute_t<TIn> v[NIN];
#pragma unroll
    for (int k = 0; k < NIN; ++k) v[k] = cuda::load(in[k] + (p.scalar[k] ? 0 : i));
    out[i] = convert_to<TOut>(f(v));
  }
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Runs out = f(ins...) over operands jointly shaped like out.
template <typename TOut, typename TIn, int NIN, typename F>
void run_ew(const Tensor& out, const Tensor* const* ins, const F& f, const char* name) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const Tensor* ts[NIN + 1];
  ts[0] = &out;
  for (int k = 0; k < NIN; ++k) ts[k + 1] = ins[k];
  Joint<NIN + 1> j = make_joint<NIN + 1>(ts, name);
  if (is_flat(j)) {
    constexpr size_t kWidest = sizeof(TIn) > sizeof(TOut) ? sizeof(TIn) : sizeof(TOut);
    constexpr int V = int(16 / kWidest) < 1 ? 1 : int(16 / kWidest);
    FlatPtrs<NIN> p;
    p.out = j.data[0];
    p.n = n;
    bool ok = aligned(p.out, sizeof(TOut) * V);
    for (int k = 0; k < NIN; ++k) {
      p.in[k] = j.data[k + 1];
      p.scalar[k] = j.dim == 0 || j.strides[k + 1][0] == 0;
      ok = ok && (p.scalar[k] || aligned(p.in[k], sizeof(TIn) * V));
    }
    if (ok) {
      // At least one block, so that the tail is covered.
      ew_flat_kernel<TOut, TIn, NIN, F, V>
          <<<cuda::blocks_for((n + V - 1) / V), cuda::kThreads, 0, cuda::stream()>>>(p, f);
      MOX_CUDA_LAUNCHED(name);
      return;
    }
  }
  if (fits_int32(j))
    ew_strided_kernel<TOut, TIn, NIN, F, int32_t><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(j, f);
  else
    ew_strided_kernel<TOut, TIn, NIN, F, int64_t><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(j, f);
  MOX_CUDA_LAUNCHED(name);
}

#define MOX_UNARY_OPS(X)                                                                        \
  X(Neg) X(Exp) X(Log) X(Sqrt) X(Rsqrt) X(Abs) X(Sign) X(Reciprocal) X(Square) X(Sin) X(Cos)     \
  X(Log1p) X(Expm1) X(Floor) X(Ceil) X(Round) X(Relu) X(LeakyRelu) X(Elu) X(Selu) X(Gelu)        \
  X(GeluTanh) X(Sigmoid) X(Tanh) X(Softplus) X(Silu) X(AddScalar) X(MulScalar) X(RSubScalar)     \
  X(RDivScalar) X(PowScalar) X(RPowScalar) X(Clamp)

#define MOX_UNARY_INT_OPS(X) \
  X(Neg) X(Abs) X(Sign) X(Square) X(Relu) X(AddScalar) X(MulScalar) X(RSubScalar) X(Clamp) X(Floor) X(Ceil) X(Round)

template <typename T>
void unary_float(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) {
  using C = compute_t<T>;
  const Tensor* ins[1] = {&x};
  const C a = C(p.a), b = C(p.b);
  switch (op) {
#define X(NAME)                                                              \
  case UnaryOp::NAME:                                                        \
    run_ew<T, T, 1>(out, ins, UnaryF<UnaryOp::NAME, C>{a, b}, "unary");      \
    return;
    MOX_UNARY_OPS(X)
#undef X
  }
  throw Error("unary", "unknown op " + std::to_string(int(op)));
}

template <typename T>
void unary_int(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) {
  const Tensor* ins[1] = {&x};
  const T a = static_cast<T>(p.a), b = static_cast<T>(p.b);  // the CPU's T(a), T(b)
  switch (op) {
#define X(NAME)                                                              \
  case UnaryOp::NAME:                                                        \
    run_ew<T, T, 1>(out, ins, UnaryIntF<UnaryOp::NAME, T>{a, b}, "unary");   \
    return;
    MOX_UNARY_INT_OPS(X)
#undef X
    default:
      throw Error("unary", "op not supported on integer tensors (" + x.desc() + ")");
  }
}

template <typename T>
void unary_grad(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx,
                UnaryParams p) {
  using C = compute_t<T>;
  const Tensor* ins[3] = {&x, &y, &gy};
  const C a = C(p.a), b = C(p.b);
  const C loga = C(std::log(double(a)));
  switch (op) {
#define X(NAME)                                                                       \
  case UnaryOp::NAME:                                                                 \
    run_ew<T, T, 3>(gx, ins, UnaryGradF<UnaryOp::NAME, C>{a, b, loga}, "unary_backward"); \
    return;
    MOX_UNARY_OPS(X)
#undef X
  }
  throw Error("unary_backward", "unknown op " + std::to_string(int(op)));
}

#define MOX_BINARY_OPS(X) X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Maximum) X(Minimum) X(Atan2)
#define MOX_COMPARE_OPS(X) X(Eq) X(Ne) X(Lt) X(Le) X(Gt) X(Ge)

template <typename T>
void binary_arith(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  using C = compute_t<T>;
  const Tensor* ins[2] = {&a, &b};
  switch (op) {
#define X(NAME)                                                           \
  case BinaryOp::NAME:                                                    \
    run_ew<T, T, 2>(out, ins, BinaryF<BinaryOp::NAME, C>{}, "binary");    \
    return;
    MOX_BINARY_OPS(X)
#undef X
    default:
      break;
  }
  throw Error("binary", "comparison routed to the arithmetic kernel");
}

template <typename T>
void binary_compare(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  using C = compute_t<T>;
  const Tensor* ins[2] = {&a, &b};
  switch (op) {
#define X(NAME)                                                                \
  case BinaryOp::NAME:                                                         \
    run_ew<uint8_t, T, 2>(out, ins, CompareF<BinaryOp::NAME, C>{}, "compare"); \
    return;
    MOX_COMPARE_OPS(X)
#undef X
    default:
      break;
  }
  throw Error("binary", "arithmetic op routed to the comparison kernel");
}

// where: out = cond ? a : b, moving elements of U's size (no conversion).
template <typename U>
__global__ void where_kernel(Joint<4> j) {
  const int64_t n = j.numel;
  const uint8_t* c = reinterpret_cast<const uint8_t*>(j.data[1]);
  const U* a = reinterpret_cast<const U*>(j.data[2]);
  const U* b = reinterpret_cast<const U*>(j.data[3]);
  U* o = reinterpret_cast<U*>(j.data[0]);
  MOX_GRID_STRIDE(i, n) {
    int64_t off[4];
    joint_offsets<4, int64_t>(j, i, off);
    o[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];
  }
}

}  // namespace

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) {
  MOX_CHECK(x.shape() == out.shape(), "unary", "shape mismatch " + x.desc() + " vs " + out.desc());
  MOX_CHECK(x.dtype() == out.dtype(), "unary", "dtype mismatch " + x.desc() + " vs " + out.desc());
  if (x.numel() == 0) return;
  switch (x.dtype()) {
    case DType::F32: unary_float<float>(op, x, out, p); break;
    case DType::F64: unary_float<double>(op, x, out, p); break;
    case DType::BF16: unary_float<__nv_bfloat16>(op, x, out, p); break;
    case DType::F16: unary_float<__half>(op, x, out, p); break;
    case DType::I64: unary_int<int64_t>(op, x, out, p); break;
    case DType::I32: unary_int<int32_t>(op, x, out, p); break;
    default:  // like the CPU: i8/u8 have no unary kernels
      throw Error("unary", std::string("unsupported dtype: ") + dtype_name(x.dtype()));
  }
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                                 const Tensor& gx, UnaryParams p) {
  MOX_CHECK(gy.shape() == gx.shape(), "unary_backward", "shape mismatch " + gy.desc() + " vs " + gx.desc());
  if (gx.numel() == 0) return;
  // x or y may be undefined when the derivative does not need them; substitute gy (unread).
  const Tensor& xx = x.defined() ? x : gy;
  const Tensor& yy = y.defined() ? y : gy;
  for (const Tensor* t : {&xx, &yy, &gy})
    MOX_CHECK(t->dtype() == gx.dtype(), "unary_backward",
              "operands must share gx's dtype: " + t->desc() + " vs " + gx.desc());
  switch (gx.dtype()) {
    case DType::F32: unary_grad<float>(op, xx, yy, gy, gx, p); break;
    case DType::F64: unary_grad<double>(op, xx, yy, gy, gx, p); break;
    case DType::BF16: unary_grad<__nv_bfloat16>(op, xx, yy, gy, gx, p); break;
    case DType::F16: unary_grad<__half>(op, xx, yy, gy, gx, p); break;
    default:
      throw Error("unary_backward", std::string("unsupported dtype ") + dtype_name(gx.dtype()));
  }
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  MOX_CHECK(a.shape() == out.shape() && b.shape() == out.shape(), "binary",
            "operands must be broadcast to the output shape: " + a.desc() + ", " + b.desc() +
                " -> " + out.desc());
  MOX_CHECK(a.dtype() == b.dtype(), "binary", "dtype mismatch " + a.desc() + " vs " + b.desc());
  if (out.numel() == 0) return;
  if (is_comparison(op)) {
    MOX_CHECK(out.dtype() == DType::U8, "binary", "comparison output must be u8, got " + out.desc());
    MOX_CUDA_DISPATCH_ALL(a.dtype(), T, binary_compare<T>(op, a, b, out));
    return;
  }
  MOX_CHECK(out.dtype() == a.dtype(), "binary", "output dtype must match: " + out.desc() + " vs " + a.desc());
  if (op == BinaryOp::Atan2 && !is_floating(a.dtype())) throw Error("atan2", "needs floating-point inputs");
  MOX_CUDA_DISPATCH_ALL(a.dtype(), T, binary_arith<T>(op, a, b, out));
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  MOX_CHECK(cond.dtype() == DType::U8, "where", "condition must be u8, got " + cond.desc());
  MOX_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(), "where",
            "dtype mismatch: " + a.desc() + ", " + b.desc() + " -> " + out.desc());
  if (out.numel() == 0) return;
  const Tensor* ts[4] = {&out, &cond, &a, &b};
  Joint<4> j = make_joint<4>(ts, "where");
  const unsigned blocks = cuda::blocks_for(j.numel);
  switch (out.element_size()) {
    case 1: where_kernel<uint8_t><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(j); break;
    case 2: where_kernel<uint16_t><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(j); break;
    case 4: where_kernel<uint32_t><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(j); break;
    case 8: where_kernel<uint64_t><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(j); break;
    default: throw Error("where", "unexpected element size of " + out.desc());
  }
  MOX_CUDA_LAUNCHED("where");
}

}  // namespace mox
