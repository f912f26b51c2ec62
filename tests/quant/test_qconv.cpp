// qconv2d (ops/quant.h) against a direct convolution written out here in double on the
// quantised integers (the documented formulas: f32 division, round half to even, zero
// padding = the input's zero point), on every kernel path (oneDNN when built in, the own
// kernel for each instruction set the CPU has).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "mox/backend/backend.h"
#include "mox/backend/quant.h"
#include "mox/ops/quant.h"
#include "mox/tensor/tensor.h"

using namespace mox;

namespace {

struct PathGuard {
  bool dnnl = cpu::int8_dnnl_enabled();
  ~PathGuard() {
    cpu::set_int8_dnnl_enabled(dnnl);
    cpu::set_int8_isa_cap(-1);
    cpu::set_int8_dnnl_min_work(-1);
  }
};

std::vector<std::pair<bool, int>> paths() {
  std::vector<std::pair<bool, int>> p;
  if (cpu::int8_dnnl_available()) {
    p.push_back({true, -1});  // oneDNN above its size threshold
    p.push_back({true, -2});  // every product through oneDNN
  }
  for (int cap : {2, 1, 0}) p.push_back({false, cap});
  return p;
}

std::vector<float> randv(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

int ref_q_u8(float x, float scale, int zp) {
  const float v = std::nearbyint(x / scale) + float(zp);
  return int(std::min(255.0f, std::max(0.0f, v)));
}
int ref_q_s8(float x, float scale) {
  const float v = std::nearbyint(x / scale);
  return int(std::min(127.0f, std::max(-127.0f, v)));
}

struct Case {
  int64_t N, C, H, W, OC, kh, kw;
  std::array<int64_t, 2> stride, pad, dil;
};

void check_conv(const Case& c, QActMode mode, bool bias, bool relu, bool requant, bool u8_input,
                uint32_t seed) {
  const int64_t OH = (c.H + 2 * c.pad[0] - c.dil[0] * (c.kh - 1) - 1) / c.stride[0] + 1;
  const int64_t OW = (c.W + 2 * c.pad[1] - c.dil[1] * (c.kw - 1) - 1) / c.stride[1] + 1;
  const int64_t K = c.C * c.kh * c.kw, img = c.C * c.H * c.W;
  auto x = randv(c.N * img, -1.0f, 2.0f, seed);
  auto w = randv(c.OC * K, -0.5f, 0.5f, seed + 1);
  std::vector<float> b = bias ? randv(c.OC, -1.0f, 1.0f, seed + 2) : std::vector<float>{};

  // reference weights
  std::vector<int> wq(c.OC * K);
  std::vector<float> ws(c.OC);
  for (int64_t o = 0; o < c.OC; o++) {
    float am = 0;
    for (int64_t k = 0; k < K; k++) am = std::max(am, std::fabs(w[o * K + k]));
    ws[o] = am > 0 ? am / 127.0f : 1.0f;
    for (int64_t k = 0; k < K; k++) wq[o * K + k] = ref_q_s8(w[o * K + k], ws[o]);
  }
  // reference input quantisation: per tensor (u8, zp) or per image (symmetric)
  std::vector<int> xq(x.size());
  std::vector<float> sx(c.N);
  std::vector<int> zx(c.N, 0);
  QInput in;
  in.mode = u8_input ? QActMode::Static : mode;
  if (mode == QActMode::DynamicToken && !u8_input) {
    for (int64_t n = 0; n < c.N; n++) {
      float am = 0;
      for (int64_t i = 0; i < img; i++) am = std::max(am, std::fabs(x[n * img + i]));
      sx[n] = am > 0 ? am / 127.0f : 1.0f;
      for (int64_t i = 0; i < img; i++) xq[n * img + i] = ref_q_s8(x[n * img + i], sx[n]);
    }
  } else {
    float s = 0.015f;
    int zp = 70;
    if (mode == QActMode::DynamicTensor && !u8_input) {
      float mn = 0, mx = 0;  // the range widened to include 0
      for (float v : x) mn = std::min(mn, v), mx = std::max(mx, v);
      s = float((double(mx) - double(mn)) / 255.0);
      zp = int(std::nearbyint(-double(mn) / double(s)));
    }
    in.params = QParams{s, zp};
    for (size_t i = 0; i < x.size(); i++) xq[i] = ref_q_u8(x[i], s, zp);
    for (int64_t n = 0; n < c.N; n++) sx[n] = s, zx[n] = zp;
  }
  // direct convolution on the integers; padding contributes (zp - zp) = 0
  std::vector<double> ref(c.N * c.OC * OH * OW), mag(ref.size());
  for (int64_t n = 0; n < c.N; n++)
    for (int64_t o = 0; o < c.OC; o++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double acc = 0;
          for (int64_t ci = 0; ci < c.C; ci++)
            for (int64_t i = 0; i < c.kh; i++)
              for (int64_t j = 0; j < c.kw; j++) {
                const int64_t ih = oh * c.stride[0] - c.pad[0] + i * c.dil[0];
                const int64_t iw = ow * c.stride[1] - c.pad[1] + j * c.dil[1];
                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                acc += double(xq[n * img + (ci * c.H + ih) * c.W + iw] - zx[n]) *
                       double(wq[((o * c.C + ci) * c.kh + i) * c.kw + j]);
              }
          const double s = double(sx[n]) * double(ws[o]);
          const double bb = bias ? double(b[o]) : 0.0;
          double y = acc * s + bb;
          if (relu) y = std::max(y, 0.0);
          const size_t idx = ((n * c.OC + o) * OH + oh) * OW + ow;
          ref[idx] = y;
          mag[idx] = std::fabs(acc * s) + std::fabs(bb);
        }

  QWeight qw = make_qweight(from_vector<float>(w, {c.OC, c.C, c.kh, c.kw}),
                            bias ? from_vector<float>(b, {c.OC}) : Tensor());
  Tensor xt;
  if (u8_input) {
    std::vector<uint8_t> xu(xq.begin(), xq.end());
    xt = from_vector<uint8_t>(xu, {c.N, c.C, c.H, c.W});
  } else {
    xt = from_vector<float>(x, {c.N, c.C, c.H, c.W});
  }
  QOutput out{relu, requant, QParams{0.04f, relu ? 0 : 100}};
  PathGuard guard;
  for (auto [dn, cap] : paths()) {
    cpu::set_int8_dnnl_enabled(dn);
    cpu::set_int8_isa_cap(cap < -1 ? -1 : cap);
    cpu::set_int8_dnnl_min_work(cap == -2 ? 0 : -1);
    const std::string what = std::string(dn ? "dnnl " + std::to_string(cap) : "mox cap " + std::to_string(cap)) + " N" +
                             std::to_string(c.N) + " C" + std::to_string(c.C) + " " +
                             std::to_string(c.H) + "x" + std::to_string(c.W) + " OC" +
                             std::to_string(c.OC) + " k" + std::to_string(c.kh) + "x" +
                             std::to_string(c.kw) + " mode " + std::to_string(int(mode)) +
                             (u8_input ? " u8in" : "") + (requant ? " requant" : "");
    const int64_t calls = cpu::int8_dnnl_calls();
    Tensor y = qconv2d(xt, qw, c.stride, c.pad, c.dil, in, out);
    // Static layers with few taps (C*kh*kw <= 32) take mox's direct kernel without oneDNN.
    const bool small = in.mode == QActMode::Static && K <= 32 && !dn;
    if (small) {
      EXPECT_EQ(cpu::int8_last_path(), "mox:direct-small") << what;
      EXPECT_EQ(cpu::int8_dnnl_calls(), calls) << what;
    } else if (cap == -2) {
      EXPECT_EQ(cpu::int8_dnnl_calls(), calls + 1) << what << ": not run by oneDNN";
    }
    if (!dn) {
      EXPECT_EQ(cpu::int8_dnnl_calls(), calls) << what;
    }
    ASSERT_EQ(y.shape(), (Shape{c.N, c.OC, OH, OW})) << what;
    int bad = 0, exact = 0;
    if (requant) {
      ASSERT_EQ(y.dtype(), DType::U8) << what;
      auto v = y.to_vector<uint8_t>();
      for (size_t i = 0; i < v.size() && bad < 5; i++) {
        const double q = std::min(255.0, std::max(0.0, std::nearbyint(ref[i] / 0.04) + out.params.zero_point));
        if (std::fabs(double(v[i]) - q) > 1.0) {
          ADD_FAILURE() << what << ": element " << i << " = " << int(v[i]) << ", reference " << q;
          bad++;
        }
        exact += double(v[i]) == q;
      }
      EXPECT_GE(exact, int(v.size() * 9 / 10)) << what;
    } else {
      ASSERT_EQ(y.dtype(), DType::F32) << what;
      auto v = y.to_vector<float>();
      for (size_t i = 0; i < v.size() && bad < 5; i++)
        if (!(std::fabs(double(v[i]) - ref[i]) <= 1e-5 * mag[i] + 1e-30)) {
          ADD_FAILURE() << what << ": element " << i << " = " << v[i] << ", reference " << ref[i];
          bad++;
        }
    }
  }
}

}  // namespace

TEST(QConv2d, StridePaddingDilation) {
  uint32_t seed = 1;
  const std::vector<Case> cases{
      {1, 3, 9, 9, 4, 3, 3, {1, 1}, {0, 0}, {1, 1}},
      {3, 3, 9, 11, 5, 3, 3, {2, 2}, {1, 1}, {1, 1}},   // stride 2, padding 1
      {1, 2, 10, 10, 3, 3, 3, {1, 1}, {2, 2}, {2, 2}},  // dilation 2
      {3, 4, 8, 7, 6, 2, 3, {1, 2}, {1, 0}, {1, 1}},    // kh != kw, mixed strides
      {3, 1, 12, 12, 8, 3, 3, {1, 1}, {0, 0}, {1, 1}},  // 1 input channel
      {2, 1, 1, 1, 3, 1, 1, {1, 1}, {0, 0}, {1, 1}},    // 1x1 everything
  };
  for (const Case& c : cases)
    for (QActMode mode : {QActMode::Static, QActMode::DynamicTensor, QActMode::DynamicToken})
      check_conv(c, mode, true, mode == QActMode::Static, false, false, seed++);
}

TEST(QConv2d, RequantAndU8Input) {
  uint32_t seed = 50;
  const Case c{3, 3, 9, 11, 5, 3, 3, {2, 2}, {1, 1}, {1, 1}};
  for (bool relu : {false, true}) {
    check_conv(c, QActMode::Static, true, relu, true, false, seed++);
    check_conv(c, QActMode::Static, true, relu, true, true, seed++);
    check_conv(c, QActMode::Static, false, relu, false, true, seed++);
    check_conv(c, QActMode::DynamicToken, false, relu, true, false, seed++);
  }
}

TEST(QConv2d, CnnShapes) {
  // The Fashion-MNIST CNN's layers (big enough for oneDNN's kernels), batch 1 and 3.
  uint32_t seed = 80;
  for (int64_t n : {1, 3}) {
    check_conv({n, 1, 28, 28, 32, 3, 3, {1, 1}, {0, 0}, {1, 1}}, QActMode::DynamicTensor, true, true, false, false, seed++);
    check_conv({n, 32, 13, 13, 64, 3, 3, {1, 1}, {0, 0}, {1, 1}}, QActMode::Static, true, true, true, true, seed++);
    check_conv({n, 64, 5, 5, 64, 3, 3, {1, 1}, {1, 1}, {1, 1}}, QActMode::DynamicToken, true, false, false, false, seed++);
  }
}

TEST(QConv2d, BadInputs) {
  QWeight qw = make_qweight(from_vector<float>(randv(2 * 3 * 3 * 3, -1, 1, 1), {2, 3, 3, 3}), Tensor());
  Tensor x = from_vector<float>(randv(3 * 25, -1, 1, 2), {1, 3, 5, 5});
  auto conv = [&](const Tensor& xx, const QWeight& w, std::array<int64_t, 2> s = {1, 1},
                  std::array<int64_t, 2> p = {0, 0}, std::array<int64_t, 2> d = {1, 1}) {
    return qconv2d(xx, w, s, p, d, QInput{}, QOutput{});
  };
  EXPECT_NO_THROW(conv(x, qw));
  EXPECT_THROW(conv(from_vector<float>(randv(2 * 25, -1, 1, 2), {1, 2, 5, 5}), qw), Error);  // channels
  EXPECT_THROW(conv(from_vector<float>(randv(75, -1, 1, 2), {3, 5, 5}), qw), Error);         // 3-D
  EXPECT_THROW(conv(from_vector<float>(randv(3 * 4, -1, 1, 2), {1, 3, 2, 2}), qw), Error);  // too small
  EXPECT_THROW(conv(x, qw, {0, 1}), Error);
  EXPECT_THROW(conv(x, qw, {1, 1}, {-1, 0}), Error);
  EXPECT_THROW(conv(x, qw, {1, 1}, {0, 0}, {3, 3}), Error);  // dilated kernel 7 > 5
  EXPECT_THROW(conv(x.to(DType::F64), qw), Error);
  EXPECT_THROW(conv(zeros({1, 3, 5, 5}, DType::U8), qw), Error);  // u8 needs Static
  QWeight lin = make_qweight(from_vector<float>(randv(6, -1, 1, 3), {2, 3}), Tensor());
  EXPECT_THROW(conv(x, lin), Error);
}

// Quantised CNNs pool u8 activations: the CPU backend's max_pool2d takes u8 (called directly:
// ops::max_pool2d's argument check admits float dtypes only).
TEST(QPool, MaxPoolU8) {
  for (auto [H, W, k, s] : std::vector<std::array<int64_t, 4>>{{6, 7, 2, 2}, {5, 5, 3, 2}, {26, 26, 2, 2}}) {
    const int64_t N = 2, C = 3, Ho = (H - k) / s + 1, Wo = (W - k) / s + 1;
    std::mt19937 g(unsigned(H * 100 + k));
    std::vector<uint8_t> x(N * C * H * W);
    for (auto& v : x) v = uint8_t(g() % 256);
    Tensor xt = from_vector<uint8_t>(x, {N, C, H, W});
    Pool2dParams p;
    p.kh = p.kw = k;
    p.stride_h = p.stride_w = s;
    for (bool with_idx : {false, true}) {
      Tensor y = empty({N, C, Ho, Wo}, DType::U8);
      Tensor idx = with_idx ? empty({N, C, Ho, Wo}, DType::I64) : Tensor();
      backend_for(kCPU).max_pool2d(xt, y, idx, p);
      auto yv = y.to_vector<uint8_t>();
      std::vector<int64_t> iv = with_idx ? idx.to_vector<int64_t>() : std::vector<int64_t>{};
      for (int64_t pl = 0; pl < N * C; pl++)
        for (int64_t oh = 0; oh < Ho; oh++)
          for (int64_t ow = 0; ow < Wo; ow++) {
            int best = -1;
            int64_t arg = -1;
            for (int64_t i = 0; i < k; i++)
              for (int64_t j = 0; j < k; j++) {
                const int64_t h = oh * s + i, w = ow * s + j;
                const int v = x[(pl * H + h) * W + w];
                if (v > best) best = v, arg = h * W + w;
              }
            const int64_t o = (pl * Ho + oh) * Wo + ow;
            ASSERT_EQ(int(yv[o]), best) << H << "x" << W << " k" << k;
            if (with_idx) {
              ASSERT_EQ(iv[o], arg);
            }
          }
    }
  }
}

// ---------------------------------------------------------------- channels-last paths

namespace {

Tensor channels_last_copy(const Tensor& x) {  // same values, memory [N, H, W, C]
  return x.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
}

bool is_channels_last(const Tensor& t) {
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  return t.stride(0) == H * W * C && t.stride(1) == 1 && t.stride(2) == W * C && t.stride(3) == C;
}

}  // namespace

TEST(QConv2d, StaticLargerLayers) {
  // Static layers with more than 32 taps (oneDNN's static primitive when built in, else
  // im2col + the own GEMM): f32 in and out, padding and stride, u8 in, requantised out.
  uint32_t seed = 400;
  check_conv({2, 8, 9, 9, 16, 3, 3, {1, 1}, {1, 1}, {1, 1}}, QActMode::Static, true, true, false, false, seed++);
  check_conv({3, 5, 11, 10, 7, 3, 3, {2, 2}, {1, 1}, {1, 1}}, QActMode::Static, true, false, false, false, seed++);
  check_conv({2, 8, 9, 9, 16, 3, 3, {1, 1}, {0, 0}, {1, 1}}, QActMode::Static, false, false, true, true, seed++);
  check_conv({1, 16, 7, 7, 20, 3, 3, {1, 1}, {1, 1}, {2, 2}}, QActMode::Static, true, true, true, false, seed++);
}

TEST(QConv2d, ChannelsLastOutputAndInput) {
  // A static conv with a u8 result returns it channels-last (oneDNN's static path or the
  // direct kernel); the values equal the NCHW result exactly; a channels-last input (u8 or
  // f32) gives the same result as its NCHW copy.
  PathGuard guard;
  const bool was_cl = qconv2d_channels_last();
  for (auto [C, OC] : std::vector<std::pair<int64_t, int64_t>>{{1, 8}, {6, 12}, {32, 16}}) {
    const int64_t N = 3, H = 10, W = 9;
    auto xv = randv(N * C * H * W, -1.0f, 2.0f, unsigned(C));
    Tensor x = from_vector<float>(xv, {N, C, H, W});
    QWeight qw = make_qweight(from_vector<float>(randv(OC * C * 9, -0.5f, 0.5f, unsigned(C + 1)), {OC, C, 3, 3}),
                              from_vector<float>(randv(OC, -1.0f, 1.0f, unsigned(C + 2)), {OC}));
    const QInput in{QActMode::Static, QParams{0.015f, 70}};
    const QOutput out{true, true, QParams{0.03f, 5}};
    for (auto [dn, cap] : paths()) {
      cpu::set_int8_dnnl_enabled(dn);
      cpu::set_int8_isa_cap(cap < -1 ? -1 : cap);
      cpu::set_int8_dnnl_min_work(cap == -2 ? 0 : -1);
      const std::string what = (dn ? "dnnl " : "mox ") + std::to_string(cap) + " C" + std::to_string(C);
      set_qconv2d_channels_last(false);
      Tensor ref = qconv2d(x, qw, {1, 1}, {1, 1}, {1, 1}, in, out);
      ASSERT_TRUE(ref.is_contiguous()) << what;
      set_qconv2d_channels_last(true);
      Tensor y = qconv2d(x, qw, {1, 1}, {1, 1}, {1, 1}, in, out);
      ASSERT_EQ(y.shape(), ref.shape()) << what;
      const bool static_path = dn || C * 9 <= 32;  // else im2col + own GEMM, NCHW
      if (static_path) {
        EXPECT_TRUE(is_channels_last(y)) << what << ": strides " << shape_str(y.strides());
        EXPECT_FALSE(y.is_contiguous()) << what;
      }
      EXPECT_EQ(y.to_vector<uint8_t>(), ref.to_vector<uint8_t>()) << what;
      // channels-last inputs: f32 and u8
      Tensor y2 = qconv2d(channels_last_copy(x), qw, {1, 1}, {1, 1}, {1, 1}, in, out);
      EXPECT_EQ(y2.to_vector<uint8_t>(), ref.to_vector<uint8_t>()) << what << " (f32 channels-last input)";
      Tensor xq = quantize_u8(x, in.params);
      Tensor y3 = qconv2d(channels_last_copy(xq), qw, {1, 1}, {1, 1}, {1, 1}, in, out);
      Tensor y4 = qconv2d(xq, qw, {1, 1}, {1, 1}, {1, 1}, in, out);
      EXPECT_EQ(y3.to_vector<uint8_t>(), y4.to_vector<uint8_t>()) << what << " (u8 channels-last input)";
      EXPECT_EQ(y3.to_vector<uint8_t>(), ref.to_vector<uint8_t>()) << what << " (u8 input)";
    }
  }
  set_qconv2d_channels_last(was_cl);
}

TEST(QPool, MaxPoolU8ChannelsLast) {
  // u8 channels-last in, channels-last out (no indices): against the direct maximum over the
  // in-image taps; 2x2/2 (the vector path), 3x3/2 with padding, 3x3/1.
  for (auto [k, s, pad] : std::vector<std::array<int64_t, 3>>{{2, 2, 0}, {3, 2, 1}, {3, 1, 0}, {2, 2, 1}}) {
    const int64_t N = 2, C = 19, H = 9, W = 8;
    const int64_t Ho = (H + 2 * pad - k) / s + 1, Wo = (W + 2 * pad - k) / s + 1;
    std::mt19937 g(unsigned(k * 10 + s + pad));
    std::vector<uint8_t> x(N * C * H * W);
    for (auto& v : x) v = uint8_t(g() % 256);
    Tensor xt = channels_last_copy(from_vector<uint8_t>(x, {N, C, H, W}));
    ASSERT_TRUE(is_channels_last(xt));
    Pool2dParams p;
    p.kh = p.kw = k;
    p.stride_h = p.stride_w = s;
    p.pad_h = p.pad_w = pad;
    Tensor y = empty({N, Ho, Wo, C}, DType::U8).permute({0, 3, 1, 2});
    backend_for(kCPU).max_pool2d(xt, y, Tensor(), p);
    auto yv = y.to_vector<uint8_t>();  // NCHW order
    for (int64_t n = 0; n < N; n++)
      for (int64_t c = 0; c < C; c++)
        for (int64_t oh = 0; oh < Ho; oh++)
          for (int64_t ow = 0; ow < Wo; ow++) {
            int best = 0;
            for (int64_t i = 0; i < k; i++)
              for (int64_t j = 0; j < k; j++) {
                const int64_t h = oh * s - pad + i, w = ow * s - pad + j;
                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                best = std::max(best, int(x[((n * C + c) * H + h) * W + w]));
              }
            ASSERT_EQ(int(yv[((n * C + c) * Ho + oh) * Wo + ow]), best)
                << "k" << k << " s" << s << " pad" << pad << " at " << n << "," << c << "," << oh << "," << ow;
          }
  }
  // a channels-last input with a contiguous NCHW output is refused (no silent relayout)
  Tensor xt = channels_last_copy(zeros({1, 3, 4, 4}, DType::U8));
  Tensor y = empty({1, 3, 2, 2}, DType::U8);
  EXPECT_THROW(backend_for(kCPU).max_pool2d(xt, y, Tensor(), Pool2dParams{}), Error);
}

TEST(QConv2d, ChannelsLastChainEqualsNchw) {
  // The CNN's chain: conv(f32 -> u8, ReLU) -> max pool 2 -> conv(u8 -> u8, ReLU) -> max pool
  // 2 -> conv(u8 -> f32): channels-last all the way equals the NCHW chain exactly.
  PathGuard guard;
  const bool was_cl = qconv2d_channels_last();
  const int64_t N = 3;
  Tensor x = from_vector<float>(randv(N * 28 * 28, 0.0f, 1.0f, 900), {N, 1, 28, 28});
  auto mk = [](int64_t oc, int64_t ic, uint32_t seed) {
    return make_qweight(from_vector<float>(randv(oc * ic * 9, -0.3f, 0.3f, seed), {oc, ic, 3, 3}),
                        from_vector<float>(randv(oc, -0.2f, 0.2f, seed + 1), {oc}));
  };
  QWeight w1 = mk(32, 1, 901), w2 = mk(64, 32, 903), w3 = mk(64, 64, 905);
  const QParams p0{1.0f / 255, 0}, p1{0.02f, 0}, p2{0.05f, 0};
  Pool2dParams pool;
  auto maxpool = [&](const Tensor& t) {
    const int64_t Ho = t.size(2) / 2, Wo = t.size(3) / 2;
    Tensor o = t.is_contiguous() ? empty({t.size(0), t.size(1), Ho, Wo}, DType::U8)
                                 : empty({t.size(0), Ho, Wo, t.size(1)}, DType::U8).permute({0, 3, 1, 2});
    backend_for(kCPU).max_pool2d(t, o, Tensor(), pool);
    return o;
  };
  auto chain = [&]() {
    Tensor a = qconv2d(x, w1, {1, 1}, {0, 0}, {1, 1}, QInput{QActMode::Static, p0}, QOutput{true, true, p1});
    a = maxpool(a);
    Tensor b = qconv2d(a, w2, {1, 1}, {0, 0}, {1, 1}, QInput{QActMode::Static, p1}, QOutput{true, true, p2});
    b = maxpool(b);
    return qconv2d(b, w3, {1, 1}, {0, 0}, {1, 1}, QInput{QActMode::Static, p2}, QOutput{true, false, {}});
  };
  for (auto [dn, cap] : paths()) {
    cpu::set_int8_dnnl_enabled(dn);
    cpu::set_int8_isa_cap(cap < -1 ? -1 : cap);
    cpu::set_int8_dnnl_min_work(cap == -2 ? 0 : -1);
    set_qconv2d_channels_last(false);
    Tensor ref = chain();
    set_qconv2d_channels_last(true);
    Tensor y = chain();
    ASSERT_EQ(y.shape(), (Shape{N, 64, 3, 3}));
    ASSERT_EQ(y.dtype(), DType::F32);
    EXPECT_EQ(y.to_vector<float>(), ref.to_vector<float>()) << (dn ? "dnnl " : "mox ") << cap;
  }
  set_qconv2d_channels_last(was_cl);
}
