// conv2d, pooling, softmax, layer/batch norm, dropout: gradchecks on random shapes,
// hand-computed values, the parallel f32 kernels against f64, and PyTorch parity.
#include <gtest/gtest.h>

#include <cmath>

#include "ops_test_util.h"
#include "gradcheck.h"
#include "ops/ops_fixtures.h"

using namespace mox;
using mox::testing::gradcheck;
using mox::testing::rnd;
using mox::testing::rnd_noncontig;

namespace {

// Direct convolution (f64) as an independent reference for the im2col kernel.
Tensor naive_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), kh = w.size(2), kw = w.size(3), Cg = C / p.groups, Og = O / p.groups;
  const int64_t Ho = (H + 2 * p.pad_h - p.dil_h * (kh - 1) - 1) / p.stride_h + 1;
  const int64_t Wo = (W + 2 * p.pad_w - p.dil_w * (kw - 1) - 1) / p.stride_w + 1;
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(O, 0.0);
  std::vector<double> out(size_t(N * O * Ho * Wo));
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < O; o++)
      for (int64_t i = 0; i < Ho; i++)
        for (int64_t j = 0; j < Wo; j++) {
          double s = bv[o];
          int64_t g = o / Og;
          for (int64_t c = 0; c < Cg; c++)
            for (int64_t a = 0; a < kh; a++)
              for (int64_t q = 0; q < kw; q++) {
                int64_t ih = i * p.stride_h - p.pad_h + a * p.dil_h;
                int64_t iw = j * p.stride_w - p.pad_w + q * p.dil_w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += xv[((n * C + g * Cg + c) * H + ih) * W + iw] *
                     wv[((o * Cg + c) * kh + a) * kw + q];
              }
          out[((n * O + o) * Ho + i) * Wo + j] = s;
        }
  return from_vector(out, {N, O, Ho, Wo});
}

using mox::testing::max_abs;
using mox::testing::max_abs_diff;
using mox::testing::with_threads;

}  // namespace

// ---------------- conv2d ----------------

TEST(Conv2d, HandComputedStrideAndPadding) {
  Tensor x = arange(0, 16, 1, DType::F64).reshape({1, 1, 4, 4});
  Tensor w = ones({1, 1, 2, 2}, DType::F64);
  Tensor b = full({1}, 1.0, DType::F64);
  Conv2dParams p;
  p.stride_h = p.stride_w = 2;
  Tensor y = conv2d(x, w, b, p);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{11, 19, 43, 51}));
  // 3x3 ones kernel with padding 1: each output is the sum of the in-image neighbourhood.
  Conv2dParams q;
  q.pad_h = q.pad_w = 1;
  Tensor y2 = conv2d(x, ones({1, 1, 3, 3}, DType::F64), Tensor(), q);
  EXPECT_EQ(y2.shape(), (Shape{1, 1, 4, 4}));
  std::vector<double> v = y2.to_vector<double>();
  EXPECT_DOUBLE_EQ(v[0], 0 + 1 + 4 + 5);
  EXPECT_DOUBLE_EQ(v[5], 0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10);
  EXPECT_DOUBLE_EQ(v[15], 10 + 11 + 14 + 15);
}

TEST(Conv2d, MatchesDirectConvolutionOnRandomConfigs) {
  Generator g(7);
  for (int trial = 0; trial < 12; trial++) {
    Conv2dParams p;
    p.groups = 1 + int64_t(g.below(3));
    p.stride_h = 1 + int64_t(g.below(2)), p.stride_w = 1 + int64_t(g.below(3));
    p.pad_h = int64_t(g.below(3)), p.pad_w = int64_t(g.below(2));
    p.dil_h = 1 + int64_t(g.below(2)), p.dil_w = 1 + int64_t(g.below(2));
    int64_t Cg = 1 + int64_t(g.below(3)), Og = 1 + int64_t(g.below(3));
    int64_t kh = 1 + int64_t(g.below(3)), kw = 1 + int64_t(g.below(3));
    int64_t N = 1 + int64_t(g.below(3)), H = 4 + int64_t(g.below(5)), W = 4 + int64_t(g.below(5));
    H = std::max(H, p.dil_h * (kh - 1) + 1 - 2 * p.pad_h);  // the kernel must fit
    W = std::max(W, p.dil_w * (kw - 1) + 1 - 2 * p.pad_w);
    SCOPED_TRACE("trial " + std::to_string(trial));
    Tensor x = rnd({N, Cg * p.groups, H, W}, 100 + trial).detach();
    Tensor w = rnd({Og * p.groups, Cg, kh, kw}, 200 + trial).detach();
    Tensor b = trial % 2 ? rnd({Og * p.groups}, 300 + trial).detach() : Tensor();
    Tensor want = naive_conv2d(x, w, b, p);
    EXPECT_LT(max_abs_diff(conv2d(x, w, b, p), want), 1e-12);
    Tensor y32 = conv2d(x.to(DType::F32), w.to(DType::F32), b.defined() ? b.to(DType::F32) : b, p);
    EXPECT_EQ(y32.dtype(), DType::F32);
    EXPECT_LT(max_abs_diff(y32, want), 1e-5);
  }
}

TEST(Conv2d, GradcheckGroupsStridePaddingDilation) {
  Conv2dParams p;
  p.stride_h = 2, p.stride_w = 1, p.pad_h = 1, p.pad_w = 2, p.dil_h = 1, p.dil_w = 2, p.groups = 2;
  Tensor x = rnd({2, 4, 6, 7}, 1), w = rnd({6, 2, 3, 2}, 2), b = rnd({6}, 3);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); },
                        {x, w, b}));
}

TEST(Conv2d, GradcheckRandomShapesNonContiguousNoBias) {
  Generator g(11);
  for (int trial = 0; trial < 4; trial++) {
    Conv2dParams p;
    p.groups = 1 + int64_t(g.below(2));
    p.stride_h = 1 + int64_t(g.below(2)), p.stride_w = 1 + int64_t(g.below(2));
    p.pad_h = int64_t(g.below(2)), p.pad_w = int64_t(g.below(2));
    p.dil_h = 1 + int64_t(g.below(2)), p.dil_w = 1;
    int64_t C = 2 * p.groups, O = 2 * p.groups;
    SCOPED_TRACE("trial " + std::to_string(trial));
    Tensor x = rnd_noncontig({2, C, 5, 6}, 20 + trial);  // non-contiguous input
    Tensor w = rnd({O, C / p.groups, 2, 3}, 30 + trial);
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), p); }, {x, w}));
  }
}

TEST(Conv2d, GradcheckPointwiseAndPartialInputs) {
  Conv2dParams p;
  Tensor x = rnd({3, 4, 3, 5}, 5), w = rnd({2, 4, 1, 1}, 6), b = rnd({2}, 7);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); },
                        {x, w, b}));
  // only some inputs need a gradient (bias alone, input alone)
  Conv2dParams q;
  q.pad_h = q.pad_w = 1;
  Tensor x3 = rnd({2, 3, 4, 5}, 8), w3 = rnd({4, 3, 3, 3}, 9);
  auto fn = [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], q); };
  EXPECT_TRUE(gradcheck(fn, {x3.detach(), w3.detach(), rnd({4}, 10)}));
  EXPECT_TRUE(gradcheck(fn, {x3, w3.detach(), rnd({4}, 11).detach()}));
}

TEST(Conv2d, ParallelFloatKernelsMatchSerialDouble) {
  // Sizes that take each f32 path: batch split (per-thread buffers and weight-gradient
  // sums), row split for a batch smaller than the thread count (plain and grouped), the
  // pointwise path, and Winograd F(2x2,3x3) for 3x3 stride-1 convolutions (padding 0, 1, 2,
  // odd sizes, on 3 threads and on 1); 3 threads so that splits are uneven.
  struct Cfg {
    Shape x, w;
    int64_t pad, groups;
    int threads = 3;
  };
  for (const Cfg& c : {Cfg{{8, 16, 12, 12}, {32, 16, 3, 3}, 1, 1}, Cfg{{1, 16, 20, 20}, {32, 16, 3, 3}, 1, 1},
                       Cfg{{2, 16, 20, 19}, {32, 8, 3, 3}, 1, 2}, Cfg{{1, 64, 20, 20}, {48, 64, 1, 1}, 0, 1},
                       Cfg{{5, 6, 21, 20}, {40, 6, 5, 3}, 2, 1}, Cfg{{4, 8, 7, 9}, {12, 8, 3, 3}, 0, 1},
                       Cfg{{3, 10, 5, 6}, {9, 10, 3, 3}, 2, 1}, Cfg{{3, 12, 9, 8}, {16, 12, 3, 3}, 1, 1, 1}}) {
    SCOPED_TRACE("x " + shape_str(c.x) + " w " + shape_str(c.w) + " threads " +
                 std::to_string(c.threads));
    Conv2dParams p;
    p.pad_h = p.pad_w = c.pad, p.groups = c.groups;
    if (c.w[2] == 5) p.pad_w = 1;
    Tensor x = rnd(c.x, 41), w = rnd(c.w, 42), b = rnd({c.w[0]}, 43);
    Shape ys = conv2d(x.detach(), w.detach(), Tensor(), p).shape();
    Tensor gy = rnd(ys, 44).detach();
    auto run = [&](DType dt) {
      Tensor xi = x.detach().to(dt).requires_grad_(), wi = w.detach().to(dt).requires_grad_(),
             bi = b.detach().to(dt).requires_grad_();
      Tensor y = conv2d(xi, wi, bi, p);
      y.backward(gy.to(dt));
      return std::vector<Tensor>{y.detach(), xi.grad(), wi.grad(), bi.grad()};
    };
    std::vector<Tensor> f32 = with_threads(c.threads, [&] { return run(DType::F32); });
    std::vector<Tensor> f64 = with_threads(1, [&] { return run(DType::F64); });
    for (size_t i = 0; i < f32.size(); i++)
      EXPECT_LT(max_abs_diff(f32[i], f64[i]), 2e-5 * (1 + max_abs(f64[i]))) << "tensor " << i;
    EXPECT_LT(max_abs_diff(f64[0], naive_conv2d(x.detach(), w.detach(), b.detach(), p)), 1e-12);
  }
}

TEST(Conv2d, ShapeErrors) {
  Tensor x = zeros({1, 4, 5, 5});
  Conv2dParams p;
  EXPECT_THROW(conv2d(x, zeros({2, 3, 3, 3}), Tensor(), p), Error);  // channel mismatch
  p.groups = 3;
  EXPECT_THROW(conv2d(x, zeros({3, 1, 3, 3}), Tensor(), p), Error);  // 4 % 3 != 0
  p.groups = 1;
  EXPECT_THROW(conv2d(x, zeros({2, 4, 7, 7}), Tensor(), p), Error);  // kernel > input
  p.dil_h = 3;
  EXPECT_THROW(conv2d(x, zeros({2, 4, 3, 3}), Tensor(), p), Error);  // dilated kernel > input
  p.dil_h = 1;
  EXPECT_THROW(conv2d(x, zeros({2, 4, 3, 3}), zeros({3}), p), Error);  // bias size
  EXPECT_THROW(conv2d(zeros({4, 5, 5}), zeros({2, 4, 3, 3}), Tensor(), p), Error);  // rank
  try {
    conv2d(x, zeros({2, 2, 3, 3}), Tensor(), p);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "conv2d");
    EXPECT_NE(std::string(e.what()).find("input channels"), std::string::npos) << e.what();
  }
}

// ---------------- pooling ----------------

TEST(MaxPool2d, HandComputedValuesAndIndices) {
  Tensor x = arange(0, 16, 1, DType::F64).reshape({1, 1, 4, 4});
  Pool2dParams p;  // 2x2, stride 2
  ValuesIndices r = max_pool2d_with_indices(x, p);
  EXPECT_EQ(r.values.to_vector<double>(), (std::vector<double>{5, 7, 13, 15}));
  EXPECT_EQ(r.indices.to_vector<int64_t>(), (std::vector<int64_t>{5, 7, 13, 15}));
  // Padding counts as -inf: an all-negative border window still picks an image value.
  Tensor neg_x = mul(x, -1.0);
  Pool2dParams q;
  q.kh = q.kw = 3, q.stride_h = q.stride_w = 2, q.pad_h = q.pad_w = 1;
  ValuesIndices r2 = max_pool2d_with_indices(neg_x, q);
  EXPECT_EQ(r2.values.to_vector<double>(), (std::vector<double>{0, -1, -4, -5}));
  EXPECT_EQ(r2.indices.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 4, 5}));
}

TEST(MaxPool2d, CeilModeShapeLikePyTorch) {
  Pool2dParams p;
  p.kh = p.kw = 3, p.stride_h = p.stride_w = 2;
  EXPECT_EQ(max_pool2d(zeros({1, 1, 6, 6}), p).shape(), (Shape{1, 1, 2, 2}));
  p.ceil_mode = true;
  EXPECT_EQ(max_pool2d(zeros({1, 1, 6, 6}), p).shape(), (Shape{1, 1, 3, 3}));
  // The last window must start inside the input (or its left padding).
  p.kh = p.kw = 2, p.pad_h = p.pad_w = 1;
  EXPECT_EQ(max_pool2d(zeros({1, 1, 5, 5}), p).shape(), (Shape{1, 1, 3, 3}));
  EXPECT_EQ(avg_pool2d(zeros({2, 5, 5}), p).shape(), (Shape{2, 3, 3}));
}

TEST(MaxPool2d, Gradcheck) {
  for (bool ceil : {false, true}) {
    Pool2dParams p;
    p.kh = 3, p.kw = 2, p.stride_h = 2, p.stride_w = 1, p.pad_h = 1, p.pad_w = 1, p.ceil_mode = ceil;
    Tensor x = rnd({2, 3, 7, 6}, ceil ? 51 : 52);
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return max_pool2d(in[0], p); }, {x}));
    Tensor xn = rnd_noncontig({2, 2, 5, 6}, 53);
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return max_pool2d(in[0], p); }, {xn}));
  }
}

TEST(AvgPool2d, HandComputedCountIncludePad) {
  Tensor x = ones({1, 1, 3, 3}, DType::F64);
  Pool2dParams p;
  p.kh = p.kw = 2, p.stride_h = p.stride_w = 2, p.pad_h = p.pad_w = 1;
  p.count_include_pad = true;
  // corner windows cover one pixel and three padding cells
  EXPECT_EQ(avg_pool2d(x, p).to_vector<double>(), (std::vector<double>{0.25, 0.5, 0.5, 1.0}));
  p.count_include_pad = false;
  EXPECT_EQ(avg_pool2d(x, p).to_vector<double>(), (std::vector<double>{1, 1, 1, 1}));
}

TEST(AvgPool2d, Gradcheck) {
  for (int cfg = 0; cfg < 4; cfg++) {
    Pool2dParams p;
    p.kh = 3, p.kw = 2, p.stride_h = 2, p.stride_w = 2, p.pad_h = 1, p.pad_w = 1;
    p.ceil_mode = cfg & 1;
    p.count_include_pad = cfg & 2;
    SCOPED_TRACE("cfg " + std::to_string(cfg));
    Tensor x = rnd_noncontig({2, 2, 7, 6}, 60 + cfg);
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return avg_pool2d(in[0], p); }, {x}));
  }
}

TEST(Pool2d, Errors) {
  Pool2dParams p;
  p.kh = p.kw = 2, p.pad_h = 2;  // padding over half the kernel
  EXPECT_THROW(max_pool2d(zeros({1, 1, 4, 4}), p), Error);
  EXPECT_THROW(avg_pool2d(zeros({1, 1, 4, 4}), p), Error);
  Pool2dParams q;
  q.kh = q.kw = 5;
  EXPECT_THROW(max_pool2d(zeros({1, 1, 4, 4}), q), Error);  // output would be empty
  EXPECT_THROW(max_pool2d(zeros({4, 4}), Pool2dParams()), Error);
}

// ---------------- softmax ----------------

TEST(Softmax, HandComputedAndStable) {
  Tensor x = from_vector<double>({1, 2, 3}, {1, 3});
  double z = std::exp(1) + std::exp(2) + std::exp(3);
  std::vector<double> s = softmax(x).to_vector<double>();
  for (int i = 0; i < 3; i++) EXPECT_NEAR(s[i], std::exp(i + 1) / z, 1e-15);
  std::vector<double> ls = log_softmax(x).to_vector<double>();
  for (int i = 0; i < 3; i++) EXPECT_NEAR(ls[i], (i + 1) - std::log(z), 1e-14);
  // Huge logits must not overflow (f32 exp(1000) is inf).
  Tensor big = from_vector<float>({1000.f, 1001.f, -1000.f}, {3});
  std::vector<float> sb = softmax(big).to_vector<float>();
  EXPECT_NEAR(sb[0], 1 / (1 + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(sb[1], 1 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_EQ(sb[2], 0.0f);
  std::vector<float> lb = log_softmax(big).to_vector<float>();
  EXPECT_NEAR(lb[2], -2001.0 - std::log1p(std::exp(-1.0)), 1e-3);
}

TEST(Softmax, GradcheckEveryDim) {
  for (int64_t d : {0, 1, 2, -1}) {
    SCOPED_TRACE("dim " + std::to_string(d));
    Tensor x = rnd({3, 4, 5}, 70 + d, -3, 3);
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return softmax(in[0], d); }, {x}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return log_softmax(in[0], d); }, {x}));
  }
  Tensor xn = rnd_noncontig({4, 6}, 77, -3, 3);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return softmax(in[0], -1); }, {xn}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return log_softmax(in[0], 0); }, {xn}));
}

TEST(Softmax, OtherDimIsContiguousAndSumsToOne) {
  Tensor x = rnd({3, 5, 4}, 80).detach();
  Tensor s = softmax(x, 1);
  EXPECT_TRUE(s.is_contiguous());
  std::vector<double> tot = sum(s, {1}).to_vector<double>();
  for (double t : tot) EXPECT_NEAR(t, 1.0, 1e-14);
}

TEST(Softmax, ParallelFloatKernelMatchesDouble) {
  Tensor x = rnd({64, 1000}, 81, -8, 8).detach(), gy = rnd({64, 1000}, 82).detach();
  for (bool log : {false, true}) {
    auto run = [&](DType dt) {
      Tensor xi = x.detach().to(dt).requires_grad_();
      Tensor y = log ? log_softmax(xi) : softmax(xi);
      y.backward(gy.to(dt));
      return std::vector<Tensor>{y.detach(), xi.grad()};
    };
    std::vector<Tensor> a = run(DType::F32), b = run(DType::F64);
    EXPECT_LT(max_abs_diff(a[0], b[0]), log ? 1e-5 : 1e-6) << "log=" << log;
    EXPECT_LT(max_abs_diff(a[1], b[1]), 1e-5) << "log=" << log;
  }
}

// ---------------- layer norm ----------------

TEST(LayerNorm, HandComputed) {
  Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 4});
  std::vector<double> y = layer_norm(x, {4}, Tensor(), Tensor(), 0.0).to_vector<double>();
  double sd = std::sqrt(1.25);
  EXPECT_NEAR(y[0], -1.5 / sd, 1e-14);
  EXPECT_NEAR(y[3], 1.5 / sd, 1e-14);
  Tensor w = from_vector<double>({1, 2, 3, 4}, {4}), b = full({4}, 0.5, DType::F64);
  std::vector<double> y2 = layer_norm(x, {4}, w, b, 0.0).to_vector<double>();
  EXPECT_NEAR(y2[1], 2 * (-0.5 / sd) + 0.5, 1e-14);
}

TEST(LayerNorm, Gradcheck) {
  Tensor x = rnd({3, 4, 5}, 90, -2, 2), w = rnd({4, 5}, 91), b = rnd({4, 5}, 92);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return layer_norm(in[0], {4, 5}, in[1], in[2]); },
      {x, w, b}));
  Tensor xn = rnd_noncontig({5, 6}, 93, -2, 2), wn = rnd({6}, 94);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return layer_norm(in[0], {6}, in[1], Tensor()); },
      {xn, wn}));
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return layer_norm(in[0], {6}, Tensor(), Tensor(), 1e-3); },
      {xn}));
}

TEST(LayerNorm, ParallelFloatKernelMatchesDouble) {
  Tensor x = rnd({64, 512}, 95, -3, 5).detach(), gy = rnd({64, 512}, 96).detach();
  Tensor w = rnd({512}, 97).detach(), b = rnd({512}, 98).detach();
  auto run = [&](DType dt) {
    Tensor xi = x.detach().to(dt).requires_grad_(), wi = w.detach().to(dt).requires_grad_(),
           bi = b.detach().to(dt).requires_grad_();
    Tensor y = layer_norm(xi, {512}, wi, bi);
    y.backward(gy.to(dt));
    return std::vector<Tensor>{y.detach(), xi.grad(), wi.grad(), bi.grad()};
  };
  std::vector<Tensor> a = run(DType::F32);
  std::vector<Tensor> b64 = with_threads(1, [&] { return run(DType::F64); });
  for (size_t i = 0; i < a.size(); i++)
    EXPECT_LT(max_abs_diff(a[i], b64[i]), 1e-5 * (1 + max_abs(b64[i]))) << "tensor " << i;
}

TEST(LayerNorm, ShapeErrors) {
  EXPECT_THROW(layer_norm(zeros({2, 3}), {4}, Tensor(), Tensor()), Error);
  EXPECT_THROW(layer_norm(zeros({2, 3}), {3}, zeros({4}), Tensor()), Error);
}

// ---------------- batch norm ----------------

TEST(BatchNorm, TrainingUpdatesRunningStatsLikePyTorch) {
  Tensor x = from_vector<double>({1, 3}, {2, 1});
  Tensor rm = zeros({1}, DType::F64), rv = ones({1}, DType::F64);
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.1, 0.0);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{-1, 1}));  // biased var 1
  EXPECT_NEAR(rm.item<double>(), 0.2, 1e-15);                       // 0.9*0 + 0.1*2
  EXPECT_NEAR(rv.item<double>(), 1.1, 1e-15);                       // 0.9*1 + 0.1*2 (unbiased)
  // Eval uses the running statistics.
  Tensor ye = batch_norm(x, rm, rv, Tensor(), Tensor(), false, 0.1, 0.0);
  EXPECT_NEAR(ye.to_vector<double>()[0], (1 - 0.2) / std::sqrt(1.1), 1e-14);
}

TEST(BatchNorm, Gradcheck) {
  Tensor x = rnd({4, 3, 2, 2}, 100, -2, 2), w = rnd({3}, 101), b = rnd({3}, 102);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true);
      },
      {x, w, b}));
  Tensor rm = rnd({3}, 103).detach(), rv = rnd({3}, 104, 0.5, 1.5).detach();
  Tensor x2 = rnd_noncontig({5, 3}, 105);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return batch_norm(in[0], rm, rv, in[1], in[2], false); },
      {x2, w, b}));
}

TEST(BatchNorm, Errors) {
  EXPECT_THROW(batch_norm(zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);
  EXPECT_THROW(batch_norm(zeros({4, 3}), zeros({2}), ones({2}), Tensor(), Tensor(), true), Error);
  EXPECT_THROW(batch_norm(zeros({4, 3}), Tensor(), Tensor(), Tensor(), Tensor(), false), Error);
}

// ---------------- dropout ----------------

TEST(Dropout, IdentityWhenNotTrainingOrZeroP) {
  Tensor x = rnd({10}, 110);
  EXPECT_TRUE(dropout(x, 0.5, false).same(x));
  EXPECT_TRUE(dropout(x, 0.0, true).same(x));
  EXPECT_THROW(dropout(x, 1.5, true), Error);
  EXPECT_EQ(max_abs(dropout(x, 1.0, true)), 0.0);
}

TEST(Dropout, ScaledBernoulliMaskSeededAndDifferentiable) {
  Tensor x = ones({20000}, DType::F64).requires_grad_();
  Generator g1(5), g2(5);
  Tensor y = dropout(x, 0.3, true, &g1);
  Tensor y2 = dropout(x, 0.3, true, &g2);
  EXPECT_EQ(y.to_vector<double>(), y2.to_vector<double>());
  std::vector<double> v = y.to_vector<double>();
  int64_t zeros_n = 0;
  for (double e : v) {
    if (e == 0.0)
      zeros_n++;
    else
      EXPECT_NEAR(e, 1.0 / 0.7, 1e-12);
  }
  EXPECT_NEAR(double(zeros_n) / double(v.size()), 0.3, 0.02);
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), v);  // gradient is the scaled mask
}

// ---------------- PyTorch parity ----------------

TEST(NnOps, MatchesPyTorchFixtures) {
  using mox::testing::Inputs;
  using mox::testing::json;
  auto pair = [](const json& j) { return std::vector<int64_t>(j.get<std::vector<int64_t>>()); };
  auto pool = [&](const json& pr) {
    Pool2dParams p;
    auto k = pair(pr.at("kernel")), s = pair(pr.at("stride")), pd = pair(pr.at("padding"));
    p.kh = k[0], p.kw = k[1], p.stride_h = s[0], p.stride_w = s[1], p.pad_h = pd[0], p.pad_w = pd[1];
    p.ceil_mode = pr.at("ceil_mode");
    if (pr.contains("count_include_pad")) p.count_include_pad = pr.at("count_include_pad");
    return p;
  };
  auto opt = [](Inputs& in, const char* k) { return in.count(k) ? in.at(k) : Tensor(); };
  std::map<std::string, mox::testing::CaseFn> ops;
  ops["conv2d"] = [&](Inputs& in, const json& pr, const json&) {
    Conv2dParams p;
    auto s = pair(pr.at("stride")), pd = pair(pr.at("padding")), d = pair(pr.at("dilation"));
    p.stride_h = s[0], p.stride_w = s[1], p.pad_h = pd[0], p.pad_w = pd[1], p.dil_h = d[0],
    p.dil_w = d[1], p.groups = pr.at("groups");
    return conv2d(in.at("x"), in.at("w"), opt(in, "b"), p);
  };
  ops["max_pool2d"] = [&](Inputs& in, const json& pr, const json& c) {
    ValuesIndices r = max_pool2d_with_indices(in.at("x"), pool(pr));
    EXPECT_EQ(r.indices.to_vector<int64_t>(), c.at("indices").at("data").get<std::vector<int64_t>>());
    return r.values;
  };
  ops["avg_pool2d"] = [&](Inputs& in, const json& pr, const json&) {
    return avg_pool2d(in.at("x"), pool(pr));
  };
  ops["softmax"] = [](Inputs& in, const json& pr, const json&) {
    return pr.at("log") ? log_softmax(in.at("x"), pr.at("dim")) : softmax(in.at("x"), pr.at("dim"));
  };
  ops["layer_norm"] = [&](Inputs& in, const json& pr, const json&) {
    return layer_norm(in.at("x"), pr.at("normalized_shape").get<Shape>(), opt(in, "w"),
                      opt(in, "b"), pr.at("eps"));
  };
  ops["batch_norm"] = [&](Inputs& in, const json& pr, const json& c) {
    Tensor rm = mox::testing::tensor_from_json(c.at("running_mean"));
    Tensor rv = mox::testing::tensor_from_json(c.at("running_var"));
    bool training = pr.at("training");
    Tensor y = batch_norm(in.at("x"), rm, rv, in.at("w"), in.at("b"), training, pr.at("momentum"),
                          pr.at("eps"));
    if (training) {
      EXPECT_TRUE(mox::testing::matches_json(rm, c.at("running_mean_after"))) << "running_mean";
      EXPECT_TRUE(mox::testing::matches_json(rv, c.at("running_var_after"))) << "running_var";
    }
    return y;
  };
  mox::testing::run_fixture_cases("nn.json", ops);
}
