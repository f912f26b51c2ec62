// int8 quantisation and qlinear (ops/quant.h) against a reference written out here: the
// documented quantisation formulas (f32 division, round half to even) and the product
// accumulated in double on the quantised integers. Every product runs on each kernel path:
// oneDNN (when built in) and mox's own kernel for each instruction set the CPU has.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "error_of.h"
#include "mox/backend/backend.h"
#include "mox/backend/quant.h"
#include "mox/ops/quant.h"
#include "mox/tensor/tensor.h"

using namespace mox;

namespace {

struct PathCase {
  bool dnnl;
  int isa_cap;
  std::string name;
};

std::vector<PathCase> paths() {
  std::vector<PathCase> p;
  if (cpu::int8_dnnl_available()) {
    p.push_back({true, -1, "dnnl"});          // oneDNN above its size threshold
    p.push_back({true, -2, "dnnl-always"});   // every product through oneDNN
  }
  p.push_back({false, 2, "mox-best"});
  p.push_back({false, 1, "mox-avx2-or-lower"});
  p.push_back({false, 0, "mox-baseline"});
  return p;
}

struct PathGuard {
  bool dnnl = cpu::int8_dnnl_enabled();
  ~PathGuard() {
    cpu::set_int8_dnnl_enabled(dnnl);
    cpu::set_int8_isa_cap(-1);
    cpu::set_int8_dnnl_min_work(-1);
  }
};

void use(const PathCase& c) {
  cpu::set_int8_dnnl_enabled(c.dnnl);
  cpu::set_int8_isa_cap(c.isa_cap < -1 ? -1 : c.isa_cap);
  cpu::set_int8_dnnl_min_work(c.isa_cap == -2 ? 0 : -1);
}

std::vector<float> randv(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Reference quantisers (the documented formulas).
int ref_q_u8(float x, float scale, int zp) {
  const float v = std::nearbyint(x / scale) + float(zp);
  return int(std::min(255.0f, std::max(0.0f, v)));
}
int ref_q_s8(float x, float scale) {
  const float v = std::nearbyint(x / scale);
  return int(std::min(127.0f, std::max(-127.0f, v)));
}
struct RefQP {
  float scale;
  int zp;
};
RefQP ref_qparams(float mn, float mx) {
  mn = std::min(mn, 0.0f);
  mx = std::max(mx, 0.0f);
  if (mn == 0 && mx == 0) return {1.0f, 0};
  float s = float((double(mx) - double(mn)) / 255.0);
  if (s < FLT_EPSILON) s = FLT_EPSILON;
  double z = std::nearbyint(-double(mn) / double(s));
  return {s, int(std::min(255.0, std::max(0.0, z)))};
}

struct RefW {
  std::vector<int> q;
  std::vector<float> scale;
};
RefW ref_weights(const std::vector<float>& w, int64_t N, int64_t K) {
  RefW r;
  r.q.resize(w.size());
  r.scale.resize(N);
  for (int64_t n = 0; n < N; n++) {
    float am = 0;
    for (int64_t k = 0; k < K; k++) am = std::max(am, std::fabs(w[n * K + k]));
    const float s = am > 0 ? am / 127.0f : 1.0f;
    r.scale[n] = s;
    for (int64_t k = 0; k < K; k++) r.q[n * K + k] = ref_q_s8(w[n * K + k], s);
  }
  return r;
}

// The reference y [M, N] as doubles, plus the magnitude of its terms (for the tolerance).
struct RefOut {
  std::vector<double> y, mag;
};
RefOut ref_linear(const std::vector<int>& xq, const std::vector<float>& sx, bool per_row, int zp,
                  const RefW& w, const std::vector<float>& bias, int64_t M, int64_t N, int64_t K,
                  bool relu) {
  RefOut r;
  r.y.resize(M * N);
  r.mag.resize(M * N);
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      double acc = 0;
      for (int64_t k = 0; k < K; k++) acc += double(xq[m * K + k] - zp) * double(w.q[n * K + k]);
      const double s = double(per_row ? sx[m] : sx[0]) * double(w.scale[n]);
      const double b = bias.empty() ? 0.0 : double(bias[n]);
      double y = acc * s + b;
      if (relu) y = std::max(y, 0.0);
      r.y[m * N + n] = y;
      r.mag[m * N + n] = std::fabs(acc * s) + std::fabs(b);
    }
  return r;
}

void expect_f32_close(const Tensor& y, const RefOut& r, const std::string& what) {
  ASSERT_EQ(y.dtype(), DType::F32) << what;
  const auto v = y.to_vector<float>();
  ASSERT_EQ(v.size(), r.y.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < v.size() && bad < 5; i++) {
    const double tol = 1e-5 * r.mag[i] + 1e-30;
    if (!(std::fabs(double(v[i]) - r.y[i]) <= tol)) {
      ADD_FAILURE() << what << ": element " << i << " = " << v[i] << ", reference " << r.y[i];
      bad++;
    }
  }
}

void expect_u8_close(const Tensor& y, const RefOut& r, float so, int zo, const std::string& what) {
  ASSERT_EQ(y.dtype(), DType::U8) << what;
  const auto v = y.to_vector<uint8_t>();
  ASSERT_EQ(v.size(), r.y.size()) << what;
  int bad = 0, exact = 0;
  for (size_t i = 0; i < v.size() && bad < 5; i++) {
    const double q = std::min(255.0, std::max(0.0, std::nearbyint(r.y[i] / so) + zo));
    if (std::fabs(double(v[i]) - q) > 1.0) {
      ADD_FAILURE() << what << ": element " << i << " = " << int(v[i]) << ", reference " << q;
      bad++;
    }
    exact += double(v[i]) == q;
  }
  // Off-by-one only at rounding ties / f32 rounding: the vast majority must be exact.
  EXPECT_GE(exact, int(v.size() * 9 / 10)) << what;
}

Tensor t_f32(const std::vector<float>& v, const Shape& s) { return from_vector<float>(v, s); }

}  // namespace

TEST(QParams, ChooseEdgeCases) {
  // all positive: the range widens to include 0, zero point 0
  QParams p = choose_qparams_u8(2.0f, 10.0f);
  EXPECT_FLOAT_EQ(p.scale, 10.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 0);
  // all negative: zero point 255
  p = choose_qparams_u8(-5.1f, -1.0f);
  EXPECT_FLOAT_EQ(p.scale, 5.1f / 255.0f);
  EXPECT_EQ(p.zero_point, 255);
  // zero range
  p = choose_qparams_u8(0.0f, 0.0f);
  EXPECT_EQ(p.scale, 1.0f);
  EXPECT_EQ(p.zero_point, 0);
  // mixed: zp = round(1 / (4/255)) = round(63.75) = 64
  p = choose_qparams_u8(-1.0f, 3.0f);
  EXPECT_FLOAT_EQ(p.scale, 4.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 64);
  // tiny range: scale never below float eps
  p = choose_qparams_u8(0.0f, 1e-10f);
  EXPECT_EQ(p.scale, FLT_EPSILON);
  EXPECT_EQ(p.zero_point, 0);
  EXPECT_THROW(choose_qparams_u8(1.0f, 0.0f), Error);
}

TEST(QParams, QuantizeRoundHalfEvenAndRoundTrip) {
  // scale 0.5, zp 10: x/scale = 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0, -1.5 -> -2
  const std::vector<float> x{0.25f, 0.75f, 1.25f, -0.25f, -0.75f, 0.0f, 200.0f, -200.0f, 3.0f};
  const std::vector<int> want{10, 12, 12, 10, 8, 10, 255, 0, 16};
  Tensor q = quantize_u8(t_f32(x, {3, 3}), QParams{0.5f, 10});
  ASSERT_EQ(q.dtype(), DType::U8);
  EXPECT_EQ(q.shape(), (Shape{3, 3}));
  auto qv = q.to_vector<uint8_t>();
  for (size_t i = 0; i < x.size(); i++) EXPECT_EQ(int(qv[i]), want[i]) << "x = " << x[i];
  Tensor d = dequantize_u8(q, QParams{0.5f, 10});
  auto dv = d.to_vector<float>();
  for (size_t i = 0; i < x.size(); i++) EXPECT_EQ(dv[i], float(want[i] - 10) * 0.5f);
  // Round trip of a random range: |x - dq(q(x))| <= scale / 2 inside the range.
  auto r = randv(1000, -3.0f, 5.0f, 7);
  QParams p = choose_qparams_u8(-3.0f, 5.0f);
  auto back = dequantize_u8(quantize_u8(t_f32(r, {1000}), p), p).to_vector<float>();
  for (size_t i = 0; i < r.size(); i++) {
    EXPECT_LE(std::fabs(back[i] - r[i]), p.scale * 0.5f + 1e-6f);
    EXPECT_EQ(back[i], float(ref_q_u8(r[i], p.scale, p.zero_point) - p.zero_point) * p.scale);
  }
  // a large tensor (threaded path) agrees with the formula
  auto big = randv(300000, -2.0f, 2.0f, 8);
  auto bq = quantize_u8(t_f32(big, {300000}), QParams{0.01f, 128}).to_vector<uint8_t>();
  for (size_t i = 0; i < big.size(); i += 7) ASSERT_EQ(int(bq[i]), ref_q_u8(big[i], 0.01f, 128));
  EXPECT_THROW(quantize_u8(t_f32(x, {9}), QParams{0.0f, 0}), Error);
  EXPECT_THROW(quantize_u8(t_f32(x, {9}), QParams{1.0f, 300}), Error);
  EXPECT_THROW(dequantize_u8(t_f32(x, {9}), QParams{1.0f, 0}), Error);
}

TEST(QWeight, PerChannelSymmetric) {
  const int64_t N = 4, K = 5;
  auto w = randv(N * K, -2.0f, 2.0f, 3);
  for (int64_t k = 0; k < K; k++) w[2 * K + k] = 0.0f;  // an all-zero channel
  w[0] = 2.5f;                                          // exact max
  QWeight qw = make_qweight(t_f32(w, {N, K}), t_f32({1, 2, 3, 4}, {N}));
  RefW r = ref_weights(w, N, K);
  ASSERT_EQ(qw.q.dtype(), DType::I8);
  EXPECT_EQ(qw.q.shape(), (Shape{N, K}));
  auto q = qw.q.to_vector<int8_t>();
  auto s = qw.scale.to_vector<float>();
  for (int64_t i = 0; i < N * K; i++) EXPECT_EQ(int(q[i]), r.q[i]);
  for (int64_t n = 0; n < N; n++) EXPECT_EQ(s[n], r.scale[n]);
  EXPECT_EQ(s[2], 1.0f);
  EXPECT_EQ(int(q[0]), 127);
  ASSERT_TRUE(qw.bias.defined());
  EXPECT_EQ(qw.bias.to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
  // 4-D conv weights
  auto w4 = randv(3 * 2 * 2 * 3, -1.0f, 1.0f, 4);
  QWeight q4 = make_qweight(t_f32(w4, {3, 2, 2, 3}), Tensor());
  EXPECT_EQ(q4.q.shape(), (Shape{3, 2, 2, 3}));
  RefW r4 = ref_weights(w4, 3, 12);
  auto q4v = q4.q.to_vector<int8_t>();
  for (size_t i = 0; i < w4.size(); i++) EXPECT_EQ(int(q4v[i]), r4.q[i]);
  // from int8
  Tensor qi = from_vector<int8_t>({1, -2, 3, 127, -127, 0}, {2, 3});
  QWeight f = make_qweight_from_int8(qi, t_f32({0.5f, 0.25f}, {2}), Tensor());
  EXPECT_EQ(f.q.to_vector<int8_t>(), qi.to_vector<int8_t>());
  // bad inputs
  EXPECT_THROW(make_qweight(t_f32(w, {N * K}), Tensor()), Error);
  EXPECT_THROW(make_qweight(t_f32(w, {N, K}), t_f32({1, 2, 3}, {3})), Error);
  EXPECT_THROW(make_qweight_from_int8(t_f32(w, {N, K}), t_f32({1, 1, 1, 1}, {4}), Tensor()), Error);
  EXPECT_THROW(make_qweight_from_int8(qi, t_f32({1, 1, 1}, {3}), Tensor()), Error);
  EXPECT_THROW(make_qweight_from_int8(qi, t_f32({1, 0}, {2}), Tensor()), Error);
  EXPECT_THROW(make_qweight_from_int8(qi, t_f32({1, 1}, {2}), t_f32({1}, {1})), Error);
}

namespace {

// Runs qlinear on x [shape..., K] for every path and compares with the reference.
void check_linear(const Shape& xshape, int64_t N, QActMode mode, bool bias, bool relu, bool requant,
                  uint32_t seed, float lo = -2.0f, float hi = 3.0f) {
  const int64_t K = xshape.back();
  int64_t M = 1;
  for (size_t i = 0; i + 1 < xshape.size(); i++) M *= xshape[i];
  auto x = randv(M * K, lo, hi, seed);
  auto w = randv(N * K, -1.0f, 1.0f, seed + 1);
  std::vector<float> b = bias ? randv(N, -1.0f, 1.0f, seed + 2) : std::vector<float>{};
  if (M > 1)
    for (int64_t k = 0; k < K; k++) x[1 * K + k] = 0.0f;  // an all-zero row
  QWeight qw = make_qweight(t_f32(w, {N, K}), bias ? t_f32(b, {N}) : Tensor());
  RefW rw = ref_weights(w, N, K);

  // reference input quantisation
  std::vector<int> xq(M * K);
  std::vector<float> sx;
  int zp = 0;
  QInput in;
  in.mode = mode;
  if (mode == QActMode::DynamicToken) {
    sx.resize(M);
    for (int64_t m = 0; m < M; m++) {
      float am = 0;
      for (int64_t k = 0; k < K; k++) am = std::max(am, std::fabs(x[m * K + k]));
      sx[m] = am > 0 ? am / 127.0f : 1.0f;
      for (int64_t k = 0; k < K; k++) xq[m * K + k] = ref_q_s8(x[m * K + k], sx[m]);
    }
  } else {
    RefQP p{0.02f, 100};
    if (mode == QActMode::DynamicTensor) {
      float mn = x[0], mx = x[0];
      for (float v : x) mn = std::min(mn, v), mx = std::max(mx, v);
      p = ref_qparams(mn, mx);
    }
    in.params = QParams{p.scale, p.zp};
    sx = {p.scale};
    zp = p.zp;
    for (int64_t i = 0; i < M * K; i++) xq[i] = ref_q_u8(x[i], p.scale, p.zp);
  }
  RefOut ref = ref_linear(xq, sx, mode == QActMode::DynamicToken, zp, rw, b, M, N, K, relu);
  QOutput out;
  out.relu = relu;
  out.requantize = requant;
  out.params = QParams{0.05f, relu ? 0 : 90};
  Shape yshape = xshape;
  yshape.back() = N;
  PathGuard guard;
  for (const auto& pc : paths()) {
    use(pc);
    const std::string what = pc.name + " x" + shape_str(xshape) + " N=" + std::to_string(N) +
                             " mode=" + std::to_string(int(mode)) + (bias ? " bias" : "") +
                             (relu ? " relu" : "") + (requant ? " requant" : "");
    const int64_t calls = cpu::int8_dnnl_calls();
    Tensor y = qlinear(t_f32(x, xshape), qw, in, out);
    if (pc.isa_cap == -2) {
      EXPECT_EQ(cpu::int8_dnnl_calls(), calls + 1) << what << ": not run by oneDNN";
    }
    if (!pc.dnnl) {
      EXPECT_EQ(cpu::int8_dnnl_calls(), calls) << what;
    }
    EXPECT_EQ(y.shape(), yshape) << what;
    EXPECT_FALSE(y.requires_grad());
    if (requant)
      expect_u8_close(y, ref, out.params.scale, out.params.zero_point, what);
    else
      expect_f32_close(y, ref, what);
    if (mode == QActMode::Static && !requant) {
      // the same product from the already-quantised u8 input
      std::vector<uint8_t> xu(xq.begin(), xq.end());
      Tensor y2 = qlinear(from_vector<uint8_t>(xu, xshape), qw, in, out);
      expect_f32_close(y2, ref, what + " (u8 input)");
    }
  }
}

}  // namespace

TEST(QLinear, ModesBiasReluRequant) {
  uint32_t seed = 100;
  for (QActMode mode : {QActMode::Static, QActMode::DynamicTensor, QActMode::DynamicToken})
    for (bool bias : {false, true})
      for (bool relu : {false, true})
        for (bool rq : {false, true}) check_linear({9, 37}, 5, mode, bias, relu, rq, seed++);
}

TEST(QLinear, OddSizes) {
  uint32_t seed = 200;
  for (QActMode mode : {QActMode::Static, QActMode::DynamicTensor, QActMode::DynamicToken}) {
    check_linear({4, 1}, 3, mode, true, false, false, seed++);    // K = 1
    check_linear({1, 37}, 3, mode, true, false, false, seed++);   // M = 1, N = 3
    check_linear({257, 37}, 19, mode, true, true, false, seed++);  // M = 257 (oneDNN-sized)
    check_linear({257, 130}, 67, mode, true, false, true, seed++);
    check_linear({1, 784}, 128, mode, true, true, false, seed++);  // batch-1 MLP layer
    check_linear({3, 5, 64}, 10, mode, false, false, false, seed++);  // 3-D [B, T, K]
  }
  // all-negative inputs (zero point 255) and all-positive ones (zero point 0)
  check_linear({33, 50}, 7, QActMode::DynamicTensor, true, false, false, seed++, -4.0f, -1.0f);
  check_linear({33, 50}, 7, QActMode::DynamicTensor, true, true, true, seed++, 1.0f, 4.0f);
}

TEST(QLinear, UsesBothPaths) {
  PathGuard guard;
  auto x = randv(256 * 784, -1.0f, 1.0f, 5);
  auto w = randv(128 * 784, -1.0f, 1.0f, 6);
  QWeight qw = make_qweight(t_f32(w, {128, 784}), Tensor());
  cpu::set_int8_dnnl_enabled(false);
  qlinear(t_f32(x, {256, 784}), qw, QInput{}, QOutput{});
  EXPECT_EQ(cpu::int8_last_path().rfind("mox:", 0), 0u) << cpu::int8_last_path();
  if (cpu::int8_dnnl_available()) {
    cpu::set_int8_dnnl_enabled(true);
    const int64_t before = cpu::int8_dnnl_calls();
    qlinear(t_f32(x, {256, 784}), qw, QInput{}, QOutput{});
    qlinear(t_f32(x, {256, 784}), qw, QInput{QActMode::DynamicToken, {}}, QOutput{});
    EXPECT_EQ(cpu::int8_dnnl_calls(), before + 2);
    EXPECT_EQ(cpu::int8_last_path().rfind("dnnl:", 0), 0u) << cpu::int8_last_path();
  }
}

TEST(QLinear, Threads) {
  // the threaded own kernel (rows split and columns split) equals the reference too
  const int old = get_num_threads();
  set_num_threads(2);
  check_linear({64, 200}, 100, QActMode::DynamicTensor, true, false, false, 300);
  check_linear({2, 900}, 700, QActMode::Static, true, true, true, 301);
  set_num_threads(old);
}

TEST(QLinear, BadInputs) {
  QWeight qw = make_qweight(t_f32(randv(12, -1, 1, 1), {3, 4}), Tensor());
  Tensor x = t_f32(randv(8, -1, 1, 2), {2, 4});
  expect_error([&] { qlinear(t_f32(randv(10, -1, 1, 2), {2, 5}), qw, QInput{}, QOutput{}); },
               {"qlinear", "[2, 5]"});
  expect_error([&] { qlinear(x.to(DType::F64), qw, QInput{}, QOutput{}); }, {"qlinear", "f32 or u8"});
  // u8 input needs Static
  expect_error([&] { qlinear(zeros({2, 4}, DType::U8), qw, QInput{}, QOutput{}); }, {"qlinear", "Static"});
  // bad static params
  EXPECT_THROW(qlinear(x, qw, QInput{QActMode::Static, QParams{-1.0f, 0}}, QOutput{}), Error);
  EXPECT_THROW(qlinear(x, qw, QInput{}, QOutput{false, true, QParams{1.0f, 256}}), Error);
  // conv weights into a linear
  QWeight q4 = make_qweight(t_f32(randv(24, -1, 1, 3), {2, 3, 2, 2}), Tensor());
  EXPECT_THROW(qlinear(x, q4, QInput{}, QOutput{}), Error);
  EXPECT_THROW(qlinear(x, QWeight{}, QInput{}, QOutput{}), Error);
}
