// The CPU fast paths behind conv2d and max_pool2d that the seed CNN runs through: the direct
// convolution for few input channels (f32, forward and weight/bias gradients), the fused
// ReLU (Conv2dParams::relu, on every path: direct, Winograd, im2col, f64) and its backward,
// nn::Sequential's Conv2d + ReLU fusion, and the vectorised 2x2 max pooling. References are
// independent: f64 through the im2col path, a naive f64 loop, the unfused ops, and a naive
// pooling loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops_test_util.h"
#include "gradcheck.h"
#include "mox/nn/nn.h"
#include "mox/ops/ops.h"

using namespace mox;
using mox::testing::gradcheck;
using mox::testing::rnd;

namespace {

using mox::testing::max_abs;
using mox::testing::max_abs_diff;
using mox::testing::with_threads;

// Naive f64 convolution, stride 1, no padding, one group.
std::vector<double> naive_valid_conv(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), kh = w.size(2), kw = w.size(3), Ho = H - kh + 1, Wo = W - kw + 1;
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> out;
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < O; o++)
      for (int64_t i = 0; i < Ho; i++)
        for (int64_t j = 0; j < Wo; j++) {
          double s = bv[o];
          for (int64_t c = 0; c < C; c++)
            for (int64_t a = 0; a < kh; a++)
              for (int64_t q = 0; q < kw; q++)
                s += xv[((n * C + c) * H + i + a) * W + j + q] * wv[((o * C + c) * kh + a) * kw + q];
          out.push_back(s);
        }
  return out;
}

// y, gx, gw, gb of conv2d (optionally fused with ReLU) for the upstream gradient gy.
std::vector<Tensor> conv_run(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& gy,
                             Conv2dParams p, DType dt, bool fused, bool need_gx = true) {
  Tensor xi = x.detach().to(dt), wi = w.detach().to(dt).requires_grad_(),
         bi = b.detach().to(dt).requires_grad_();
  if (need_gx) xi.requires_grad_();
  Tensor y;
  if (fused) {
    p.relu = true;
    y = conv2d(xi, wi, bi, p);
  } else {
    y = relu(conv2d(xi, wi, bi, p));
  }
  y.backward(gy.to(dt));
  return {y.detach(), need_gx ? xi.grad() : Tensor(), wi.grad(), bi.grad()};
}

}  // namespace

// Few input channels, no padding: the direct path (f32) against f64 (im2col) and a naive
// loop, on odd sizes and kernels, 3 threads (uneven split, batch smaller and larger than the
// thread count) and 1; without and with the fused ReLU; with and without the input gradient
// (the first layer of a CNN needs none).
TEST(ConvDirect, MatchesReferenceOnOddShapes) {
  struct Cfg {
    Shape x, w;
    int threads;
  };
  for (const Cfg& c : {Cfg{{5, 1, 28, 28}, {32, 1, 3, 3}, 3}, Cfg{{2, 1, 13, 29}, {7, 1, 3, 3}, 3},
                       Cfg{{4, 3, 11, 9}, {5, 3, 3, 3}, 3}, Cfg{{3, 2, 9, 17}, {6, 2, 2, 5}, 1},
                       Cfg{{1, 1, 5, 70}, {3, 1, 5, 5}, 3}, Cfg{{7, 1, 3, 3}, {4, 1, 3, 3}, 2}}) {
    for (bool fused : {false, true})
      for (bool need_gx : {true, false}) {
        SCOPED_TRACE("x " + shape_str(c.x) + " w " + shape_str(c.w) + " fused " +
                     std::to_string(fused) + " gx " + std::to_string(need_gx));
        Tensor x = rnd(c.x, 11), w = rnd(c.w, 12), b = rnd({c.w[0]}, 13);
        Conv2dParams p;
        Shape ys = conv2d(x, w, Tensor(), p).shape();
        Tensor gy = rnd(ys, 14);
        std::vector<Tensor> f32 = with_threads(c.threads, [&] {
          return conv_run(x, w, b, gy, p, DType::F32, fused, need_gx);
        });
        std::vector<Tensor> f64 =
            with_threads(1, [&] { return conv_run(x, w, b, gy, p, DType::F64, false, need_gx); });
        for (size_t i = 0; i < f32.size(); i++) {
          if (!f64[i].defined()) continue;
          EXPECT_LT(max_abs_diff(f32[i], f64[i]), 2e-5 * (1 + max_abs(f64[i]))) << "tensor " << i;
        }
        if (!fused) {
          std::vector<double> naive = naive_valid_conv(x, w, b);
          for (double& v : naive) v = v > 0 ? v : 0;
          EXPECT_LT(max_abs_diff(f64[0], from_vector(naive, ys)), 1e-12);
        }
      }
  }
}

// The fused ReLU gives relu(conv2d(...)) and its gradients on every path: direct (1 input
// channel), Winograd (3x3, >= 8 channels), im2col (5x5, stride 2, groups), 1x1, and f64.
TEST(ConvFusedRelu, EqualsUnfusedOnEveryPath) {
  struct Cfg {
    Shape x, w;
    int64_t pad, stride, groups;
  };
  for (const Cfg& c : {Cfg{{3, 1, 12, 11}, {8, 1, 3, 3}, 0, 1, 1}, Cfg{{4, 16, 9, 10}, {16, 16, 3, 3}, 1, 1, 1},
                       Cfg{{2, 6, 13, 12}, {8, 3, 5, 5}, 2, 2, 2}, Cfg{{2, 12, 5, 6}, {10, 12, 1, 1}, 0, 1, 1},
                       Cfg{{3, 16, 5, 5}, {16, 16, 3, 3}, 0, 1, 1}}) {
    for (DType dt : {DType::F32, DType::F64}) {
      SCOPED_TRACE("x " + shape_str(c.x) + " w " + shape_str(c.w) + " " + dtype_name(dt));
      Conv2dParams p;
      p.pad_h = p.pad_w = c.pad, p.stride_h = p.stride_w = c.stride, p.groups = c.groups;
      Tensor x = rnd(c.x, 21), w = rnd(c.w, 22), b = rnd({c.w[0]}, 23);
      Tensor gy = rnd(conv2d(x, w, Tensor(), p).shape(), 24);
      std::vector<Tensor> fused = with_threads(2, [&] { return conv_run(x, w, b, gy, p, dt, true); });
      std::vector<Tensor> plain = with_threads(2, [&] { return conv_run(x, w, b, gy, p, dt, false); });
      const double tol = dt == DType::F64 ? 1e-12 : 1e-6;
      for (size_t i = 0; i < fused.size(); i++)
        EXPECT_LT(max_abs_diff(fused[i], plain[i]), tol * (1 + max_abs(plain[i]))) << "tensor " << i;
      EXPECT_GT(max_abs(fused[0]), 0.0);
      EXPECT_EQ(fused[0].to_vector<double>().size(), plain[0].to_vector<double>().size());
    }
  }
}

// Double-precision gradcheck of the fused op (inputs keep the pre-activations away from 0,
// where ReLU has no derivative).
TEST(ConvFusedRelu, Gradcheck) {
  Conv2dParams p;
  p.relu = true;
  p.pad_h = 1;
  Tensor x = rnd({2, 3, 5, 6}, 31).requires_grad_(), w = rnd({4, 3, 3, 2}, 32).requires_grad_(),
         b = rnd({4}, 33).requires_grad_();
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); },
                        {x, w, b}));
  // the ReLU zeroes what the plain convolution leaves negative
  Conv2dParams q = p;
  q.relu = false;
  std::vector<double> y = conv2d(x, w, b, p).to_vector<double>(), z = conv2d(x, w, b, q).to_vector<double>();
  int negatives = 0;
  for (size_t i = 0; i < y.size(); i++) {
    EXPECT_EQ(y[i], z[i] > 0 ? z[i] : 0.0);
    negatives += z[i] < 0;
  }
  EXPECT_GT(negatives, 0);
}

// Names of the nodes on the path from t back to its first leaf (last input first).
std::vector<std::string> graph_names(const Tensor& t) {
  std::vector<std::string> names;
  for (std::shared_ptr<Node> n = t.grad_fn(); n;) {
    names.push_back(n->name());
    std::shared_ptr<Node> next;
    for (const Edge& e : n->next)
      if (e.node) next = e.node;
    n = next;
  }
  return names;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Sequential runs Conv2d + ReLU (+ MaxPool2d(2)) as one fused op: same output and parameter
// gradients as the modules called one after the other.
TEST(ConvFusedRelu, SequentialFusesConvReluAndPool) {
  for (bool with_pool : {false, true}) {
    SCOPED_TRACE(with_pool ? "conv relu pool" : "conv relu");
    manual_seed(5);
    auto conv = std::make_shared<nn::Conv2d>(1, 6, 3);
    auto seq = std::make_shared<nn::Sequential>();
    seq->push_back(conv);
    seq->push_back(std::make_shared<nn::ReLU>());
    if (with_pool) seq->push_back(std::make_shared<nn::MaxPool2d>(2));
    seq->push_back(std::make_shared<nn::Flatten>());
    Tensor x = rnd({3, 1, 9, 8}, 41).detach().to(DType::F32);
    Tensor y = seq->forward(x);
    std::vector<std::string> names = graph_names(y);
    EXPECT_TRUE(has(names, with_pool ? "conv2d_relu_maxpool2" : "conv2d_relu"));
    EXPECT_FALSE(has(names, "relu"));
    EXPECT_FALSE(has(names, "max_pool2d"));
    sum(mul(y, y)).backward();
    std::vector<Tensor> g{conv->weight.grad().clone(), conv->bias.grad().clone()};
    seq->zero_grad();
    Tensor h = relu(conv->forward(x));
    if (with_pool) h = max_pool2d(h, Pool2dParams{});
    Tensor z = reshape(h, {3, -1});
    sum(mul(z, z)).backward();
    EXPECT_LT(max_abs_diff(y, z), 1e-6);
    EXPECT_LT(max_abs_diff(g[0], conv->weight.grad()), 1e-5 * (1 + max_abs(g[0])));
    EXPECT_LT(max_abs_diff(g[1], conv->bias.grad()), 1e-5 * (1 + max_abs(g[1])));
  }
}

// conv2d_relu_maxpool2 (the fused first-layer kernel) against the three ops in f64: odd
// conv sizes (the pooling drops the last row/column), 1 and 3 input channels, with and
// without bias, 1 and 3 threads; without grad (inference) too; and the unfused fallback
// when the input requires grad.
TEST(ConvFusedReluPool, MatchesComposition) {
  struct Cfg {
    Shape x, w;
    bool bias;
    int threads;
  };
  for (const Cfg& c : {Cfg{{5, 1, 28, 28}, {32, 1, 3, 3}, true, 3}, Cfg{{2, 1, 13, 30}, {7, 1, 3, 3}, true, 1},
                       Cfg{{4, 3, 11, 9}, {5, 3, 3, 3}, false, 3}, Cfg{{3, 2, 9, 17}, {6, 2, 2, 4}, true, 2}}) {
    SCOPED_TRACE("x " + shape_str(c.x) + " w " + shape_str(c.w));
    Tensor x = rnd(c.x, 61).detach(), w = rnd(c.w, 62).detach(), b = rnd({c.w[0]}, 63).detach();
    Conv2dParams p;
    Shape cs = conv2d(x, w, Tensor(), p).shape();
    Tensor gy = rnd({cs[0], cs[1], cs[2] / 2, cs[3] / 2}, 64).detach();
    auto run = [&](DType dt, bool fused) {
      Tensor wi = w.to(dt).requires_grad_(), bi = c.bias ? b.to(dt).requires_grad_() : Tensor();
      Tensor y = fused ? conv2d_relu_maxpool2(x.to(dt), wi, bi, p)
                       : max_pool2d(relu(conv2d(x.to(dt), wi, bi, p)), Pool2dParams{});
      EXPECT_EQ(has(graph_names(y), "conv2d_relu_maxpool2"), fused && dt == DType::F32);
      y.backward(gy.to(dt));
      return std::vector<Tensor>{y.detach(), wi.grad(), c.bias ? bi.grad() : zeros({1})};
    };
    std::vector<Tensor> f32 = with_threads(c.threads, [&] { return run(DType::F32, true); });
    std::vector<Tensor> f64 = with_threads(1, [&] { return run(DType::F64, false); });
    for (size_t i = 0; i < f32.size(); i++)
      EXPECT_LT(max_abs_diff(f32[i], f64[i]), 2e-5 * (1 + max_abs(f64[i]))) << "tensor " << i;
    Tensor inf = with_threads(c.threads, [&] {
      NoGradGuard ng;
      return conv2d_relu_maxpool2(x.to(DType::F32), w.to(DType::F32), c.bias ? b.to(DType::F32) : Tensor(), p);
    });
    EXPECT_LT(max_abs_diff(inf, f64[0]), 2e-5 * (1 + max_abs(f64[0])));
    // an input that needs its gradient takes the unfused ops (the kernel has no input gradient)
    Tensor xg = x.to(DType::F32).requires_grad_();
    Tensor y = conv2d_relu_maxpool2(xg, w.to(DType::F32), Tensor(), p);
    EXPECT_TRUE(has(graph_names(y), "max_pool2d"));
  }
}

// 2x2 stride-2 max pooling (vectorised 8 outputs at a time, narrow and odd planes, tails)
// against a naive loop: values, argmax indices (first maximum on ties, the first NaN wins,
// -inf windows), f32 and f64, 1 and 3 threads, and the backward scatter.
TEST(MaxPool2dFast, MatchesNaiveWithTiesNanAndInf) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  for (Shape s : {Shape{2, 3, 26, 26}, Shape{3, 2, 11, 11}, Shape{1, 2, 5, 37}, Shape{2, 1, 2, 2},
                  Shape{1, 1, 7, 40}}) {
    SCOPED_TRACE(shape_str(s));
    Tensor x = rnd(s, 51);
    std::vector<float> xv = x.to_vector<float>();
    for (size_t i = 0; i < xv.size(); i++) {  // ties, NaNs and infinities in some windows
      if (i % 7 == 3) xv[i] = xv[i - 1];
      if (i % 29 == 5) xv[i] = nan;
      if (i % 31 == 2) xv[i] = -inf;
      if (i % 37 == 9) xv[i] = inf;
    }
    x = from_vector(xv, s);
    const int64_t planes = s[0] * s[1], H = s[2], W = s[3], Ho = H / 2, Wo = W / 2;
    std::vector<float> want;
    std::vector<int64_t> want_idx;
    for (int64_t pl = 0; pl < planes; pl++)
      for (int64_t i = 0; i < Ho; i++)
        for (int64_t j = 0; j < Wo; j++) {
          float best = -inf;
          int64_t arg = 2 * i * W + 2 * j;
          for (int64_t a = 0; a < 2; a++)
            for (int64_t q = 0; q < 2; q++) {
              float v = xv[size_t(pl * H * W + (2 * i + a) * W + 2 * j + q)];
              if (std::isnan(best)) continue;
              if (v > best || std::isnan(v)) best = v, arg = (2 * i + a) * W + 2 * j + q;
            }
          want.push_back(best);
          want_idx.push_back(arg);
        }
    for (DType dt : {DType::F32, DType::F64})
      for (int threads : {1, 3}) {
        ValuesIndices r = with_threads(threads, [&] { return max_pool2d_with_indices(x.to(dt), Pool2dParams{}); });
        std::vector<double> got = r.values.to_vector<double>();
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); i++) {
          if (std::isnan(want[i])) EXPECT_TRUE(std::isnan(got[i])) << i;
          else EXPECT_EQ(got[i], double(want[i])) << i;
        }
        EXPECT_EQ(r.indices.to_vector<int64_t>(), want_idx);
        // no-grad forward (no indices) gives the same values
        Tensor v = with_threads(threads, [&] { return max_pool2d(x.to(dt), Pool2dParams{}); });
        std::vector<double> got2 = v.to_vector<double>();
        for (size_t i = 0; i < got2.size(); i++)
          EXPECT_TRUE(got2[i] == got[i] || (std::isnan(got2[i]) && std::isnan(got[i]))) << i;
      }
    // backward: each window's gradient lands on its argmax
    Tensor xg = x.to(DType::F64).requires_grad_();
    Tensor gy = rnd({s[0], s[1], Ho, Wo}, 52);
    max_pool2d(xg, Pool2dParams{}).backward(gy);
    std::vector<double> gx(size_t(planes * H * W), 0.0), gyv = gy.to_vector<double>();
    for (int64_t pl = 0; pl < planes; pl++)
      for (int64_t k = 0; k < Ho * Wo; k++) gx[size_t(pl * H * W + want_idx[size_t(pl * Ho * Wo + k)])] += gyv[size_t(pl * Ho * Wo + k)];
    EXPECT_EQ(xg.grad().to_vector<double>(), gx);
  }
}
