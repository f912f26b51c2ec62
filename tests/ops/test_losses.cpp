// Losses: hand-computed values (reductions, ignore_index, label smoothing, clamping),
// gradchecks on random shapes, the fused cross-entropy kernel against a composition,
// and PyTorch parity.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "ops/ops_fixtures.h"

using namespace mox;
using mox::testing::gradcheck;
using mox::testing::rnd;
using mox::testing::rnd_noncontig;

namespace {

Tensor labels(std::vector<int64_t> v, Shape s) { return from_vector(v, s); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); i++) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace

TEST(CrossEntropy, HandComputed) {
  Tensor z = from_vector<double>({1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor t = labels({2, 1}, {2});
  double l0 = std::log(std::exp(1) + std::exp(2) + std::exp(3)) - 3, l1 = std::log(3.0);
  EXPECT_NEAR(cross_entropy(z, t).item<double>(), (l0 + l1) / 2, 1e-14);
  EXPECT_NEAR(cross_entropy(z, t, 0, "sum").item<double>(), l0 + l1, 1e-14);
  std::vector<double> none = cross_entropy(z, t, 0, "none").to_vector<double>();
  EXPECT_NEAR(none[0], l0, 1e-14);
  EXPECT_NEAR(none[1], l1, 1e-14);
  // ignore_index: the ignored row is 0 and the mean is over the other rows only
  Tensor ti = labels({2, -100}, {2});
  EXPECT_NEAR(cross_entropy(z, ti).item<double>(), l0, 1e-14);
  EXPECT_EQ(cross_entropy(z, ti, 0, "none").to_vector<double>()[1], 0.0);
  EXPECT_TRUE(std::isnan(cross_entropy(z, labels({-100, -100}, {2})).item<double>()));
  // label smoothing eps: (1-eps) nll + eps/C * sum_c -log p_c
  double eps = 0.3, lse = std::log(3.0);
  double want = (1 - eps) * lse + eps / 3 * (3 * lse);
  EXPECT_NEAR(cross_entropy(z.slice(0, 1, 2), labels({0}, {1}), eps).item<double>(), want, 1e-14);
}

TEST(CrossEntropy, GradcheckClassIndices) {
  Tensor z = rnd({5, 4}, 1, -3, 3);
  Tensor t = labels({0, 3, -100, 1, 3}, {5});
  for (std::string red : {"mean", "sum", "none"})
    for (double ls : {0.0, 0.2}) {
      SCOPED_TRACE(red + " ls=" + std::to_string(ls));
      EXPECT_TRUE(gradcheck(
          [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t, ls, red); }, {z}));
    }
  // spatial [N, C, d1, d2] with a custom ignore_index, and a non-contiguous input
  Tensor zs = rnd({2, 3, 2, 4}, 2, -3, 3);
  Tensor ts = labels({0, 1, 2, 1, 7, 0, 0, 2, 1, 1, 7, 2, 0, 0, 1, 2}, {2, 2, 4});
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], ts, 0.1, "mean", 7); }, {zs}));
  Tensor zn = rnd_noncontig({4, 6}, 3, -3, 3);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], labels({5, 0, 2, 2}, {4})); },
      {zn}));
  // unbatched [C] logits with a scalar target
  Tensor z1 = rnd({5}, 4);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], labels({3}, {}), 0.0, "none"); },
      {z1}));
}

TEST(CrossEntropy, GradcheckProbabilityTargets) {
  Tensor z = rnd({3, 5}, 5, -2, 2), p = rnd({3, 5}, 6, 0, 1);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], 0.1); }, {z, p}));
  Tensor zs = rnd({2, 3, 4}, 7), ps = rnd({2, 3, 4}, 8, 0, 1);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], 0.0, "none"); },
      {zs, ps}));
}

TEST(CrossEntropy, FusedFloatKernelMatchesComposition) {
  // Big enough to split rows over threads.
  Generator g(9);
  Tensor z = mul(randn({512, 100}, &g), 3.0);
  Tensor t = randint(0, 100, {512}, &g);
  Tensor zd = z.to(DType::F64).requires_grad_();
  Tensor zf = z.detach().requires_grad_();
  Tensor lf = cross_entropy(zf, t, 0.1);
  // reference: composition in f64
  Tensor lp = log_softmax(zd, 1);
  Tensor picked = gather(lp, 1, t.reshape({512, 1}));
  Tensor ref = add(mul(mean(picked), -0.9), mul(mean(sum(lp, {1})), -0.1 / 100));
  EXPECT_NEAR(lf.item<double>(), ref.item<double>(), 1e-5);
  lf.backward();
  ref.backward();
  EXPECT_LT(max_abs_diff(zf.grad(), zd.grad()), 1e-7);
}

TEST(CrossEntropy, Errors) {
  Tensor z = zeros({2, 3});
  EXPECT_THROW(cross_entropy(z, labels({0, 3}, {2})), Error);   // class out of range
  EXPECT_THROW(cross_entropy(z, labels({0, -2}, {2})), Error);  // negative, not ignore_index
  EXPECT_THROW(cross_entropy(z, labels({0, 1, 2}, {3})), Error);  // batch mismatch
  EXPECT_THROW(cross_entropy(z, labels({0, 1}, {2}), 1.5), Error);
  EXPECT_THROW(cross_entropy(z, labels({0, 1}, {2}), 0.0, "avg"), Error);
  try {
    cross_entropy(z, labels({0, 5}, {2}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("5"), std::string::npos) << e.what();
  }
}

TEST(NllLoss, ValuesAndGradcheck) {
  Tensor lp = from_vector<double>({-1, -2, -3, -4, -5, -6}, {2, 3});
  EXPECT_NEAR(nll_loss(lp, labels({1, 2}, {2})).item<double>(), (2 + 6) / 2.0, 1e-15);
  EXPECT_NEAR(nll_loss(lp, labels({1, 2}, {2}), "mean", 2).item<double>(), 2.0, 1e-15);
  Tensor x = rnd({4, 3, 2}, 10);
  Tensor t = labels({0, 2, 1, 1, 2, 0, 0, 1}, {4, 2});
  for (std::string red : {"mean", "sum", "none"})
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return nll_loss(in[0], t, red, 1); }, {x}));
}

TEST(RegressionLosses, ValuesAndGradcheck) {
  Tensor a = from_vector<double>({1, 2, 4}, {3}), b = from_vector<double>({1, 4, 3.5}, {3});
  EXPECT_NEAR(mse_loss(a, b).item<double>(), (0 + 4 + 0.25) / 3, 1e-15);
  EXPECT_NEAR(l1_loss(a, b, "sum").item<double>(), 2.5, 1e-15);
  // huber delta 1: |d| < 1 -> d^2/2, else |d| - 1/2
  EXPECT_EQ(huber_loss(a, b, 1.0, "none").to_vector<double>(), (std::vector<double>{0, 1.5, 0.125}));
  Tensor x = rnd_noncontig({3, 4}, 11, -2, 2), y = rnd({3, 4}, 12, -2, 2), yb = rnd({4}, 13);
  for (std::string red : {"mean", "sum", "none"}) {
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1], red); }, {x, y}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return l1_loss(in[0], in[1], red); }, {x, y}));
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return huber_loss(in[0], in[1], 0.7, red); }, {x, y}));
  }
  // broadcasting target
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1]); }, {x, yb}));
}

TEST(BinaryCrossEntropy, ValuesClampAndGradcheck) {
  Tensor p = from_vector<double>({0.25, 0.5}, {2}), y = from_vector<double>({1, 0}, {2});
  EXPECT_NEAR(binary_cross_entropy(p, y).item<double>(), (-std::log(0.25) - std::log(0.5)) / 2, 1e-15);
  // log(0) is clamped to -100 like PyTorch
  Tensor p0 = from_vector<double>({0.0}, {1}), y1 = from_vector<double>({1.0}, {1});
  EXPECT_NEAR(binary_cross_entropy(p0, y1).item<double>(), 100.0, 1e-12);
  EXPECT_THROW(binary_cross_entropy(from_vector<double>({1.5}, {1}), y1), Error);
  Tensor pr = rnd({3, 4}, 14, 0.05, 0.95), yr = rnd({3, 4}, 15, 0, 1);
  for (std::string red : {"mean", "sum", "none"})
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return binary_cross_entropy(in[0], in[1], red); }, {pr, yr}));
}

TEST(BinaryCrossEntropyWithLogits, StableValuesAndGradcheck) {
  Tensor z = from_vector<double>({0, 1000, -1000}, {3}), y = from_vector<double>({1, 0, 1}, {3});
  std::vector<double> l = binary_cross_entropy_with_logits(z, y, "none").to_vector<double>();
  EXPECT_NEAR(l[0], std::log(2.0), 1e-15);
  EXPECT_NEAR(l[1], 1000.0, 1e-9);  // no overflow for large logits
  EXPECT_NEAR(l[2], 1000.0, 1e-9);
  // gradient at exactly 0 is sigmoid(0) - y
  Tensor z0 = zeros({1}, DType::F64).requires_grad_();
  binary_cross_entropy_with_logits(z0, from_vector<double>({1.0}, {1})).backward();
  EXPECT_NEAR(z0.grad().item<double>(), -0.5, 1e-15);
  // pos_weight multiplies the positive term
  Tensor pw = full({1}, 3.0, DType::F64);
  EXPECT_NEAR(binary_cross_entropy_with_logits(zeros({1}, DType::F64), ones({1}, DType::F64), "sum", pw)
                  .item<double>(),
              3 * std::log(2.0), 1e-15);
  Tensor zr = rnd_noncontig({3, 4}, 16, -4, 4), yr = rnd({3, 4}, 17, 0, 1), pwr = rnd({4}, 18, 0.5, 3);
  for (std::string red : {"mean", "sum", "none"}) {
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return binary_cross_entropy_with_logits(in[0], in[1], red); },
        {zr, yr}));
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return binary_cross_entropy_with_logits(in[0], in[1], red, in[2]);
        },
        {zr, yr, pwr}));
  }
}

TEST(KlDiv, ValuesAndGradcheck) {
  Tensor lq = from_vector<double>({std::log(0.5), std::log(0.5)}, {1, 2});
  Tensor p = from_vector<double>({0.25, 0.75}, {1, 2});
  double want = 0.25 * std::log(0.5) + 0.75 * std::log(1.5);
  EXPECT_NEAR(kl_div(lq, p, "sum").item<double>(), want, 1e-15);
  EXPECT_NEAR(kl_div(lq, p, "batchmean").item<double>(), want, 1e-15);
  EXPECT_NEAR(kl_div(lq, p, "mean").item<double>(), want / 2, 1e-15);
  EXPECT_NEAR(kl_div(lq, log(p), "sum", true).item<double>(), want, 1e-14);
  // zero target probability contributes 0, not NaN
  Tensor p0 = from_vector<double>({0.0, 1.0}, {1, 2});
  EXPECT_NEAR(kl_div(lq, p0, "sum").item<double>(), -std::log(0.5), 1e-15);
  Tensor x = rnd({3, 4}, 19, -3, -0.1), t = rnd({3, 4}, 20, 0.05, 1);
  for (std::string red : {"mean", "sum", "none", "batchmean"}) {
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return kl_div(in[0], in[1], red); }, {x, t}));
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return kl_div(in[0], in[1], red, true); },
                          {x, rnd_noncontig({3, 4}, 21, -3, 0)}));
  }
}

TEST(ApplyReduction, Modes) {
  Tensor l = from_vector<double>({1, 2, 3}, {3});
  EXPECT_DOUBLE_EQ(apply_reduction(l, "mean", "test").item<double>(), 2.0);
  EXPECT_DOUBLE_EQ(apply_reduction(l, "sum", "test").item<double>(), 6.0);
  EXPECT_TRUE(apply_reduction(l, "none", "test").same(l));
  EXPECT_THROW(apply_reduction(l, "max", "test"), Error);
}

TEST(Losses, MatchesPyTorchFixtures) {
  using mox::testing::Inputs;
  using mox::testing::json;
  auto opt = [](Inputs& in, const char* k) { return in.count(k) ? in.at(k) : Tensor(); };
  std::map<std::string, mox::testing::CaseFn> ops;
  ops["cross_entropy"] = [](Inputs& in, const json& p, const json&) {
    return cross_entropy(in.at("x"), in.at("target"), p.at("label_smoothing"), p.at("reduction"),
                         p.at("ignore_index"));
  };
  ops["nll_loss"] = [](Inputs& in, const json& p, const json&) {
    return nll_loss(in.at("x"), in.at("target"), p.at("reduction"), p.at("ignore_index"));
  };
  ops["mse_loss"] = [](Inputs& in, const json& p, const json&) {
    return mse_loss(in.at("x"), in.at("y"), p.at("reduction"));
  };
  ops["l1_loss"] = [](Inputs& in, const json& p, const json&) {
    return l1_loss(in.at("x"), in.at("y"), p.at("reduction"));
  };
  ops["huber_loss"] = [](Inputs& in, const json& p, const json&) {
    return huber_loss(in.at("x"), in.at("y"), p.at("delta"), p.at("reduction"));
  };
  ops["binary_cross_entropy"] = [](Inputs& in, const json& p, const json&) {
    return binary_cross_entropy(in.at("x"), in.at("y"), p.at("reduction"));
  };
  ops["binary_cross_entropy_with_logits"] = [&](Inputs& in, const json& p, const json&) {
    return binary_cross_entropy_with_logits(in.at("x"), in.at("y"), p.at("reduction"),
                                            opt(in, "pos_weight"));
  };
  ops["kl_div"] = [](Inputs& in, const json& p, const json&) {
    return kl_div(in.at("x"), in.at("y"), p.at("reduction"), p.at("log_target"));
  };
  ops["distillation_loss"] = [](Inputs& in, const json& p, const json&) {
    return distillation_loss(in.at("x"), in.at("teacher"), in.at("target"), p.at("temperature"), p.at("alpha"));
  };
  mox::testing::run_fixture_cases("losses.json", ops);
}

TEST(DistillationLoss, GradcheckTeacherConstantAndErrors) {
  Generator g(8);
  Tensor s = randn({4, 6}, &g, DType::F64).requires_grad_();
  Tensor t = randn({4, 6}, &g, DType::F64).requires_grad_();
  Tensor y = from_vector<int64_t>({1, 5, 0, 3}, {4});
  EXPECT_TRUE(mox::testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return distillation_loss(in[0], t, y, 3.0, 0.6); }, {s}));
  distillation_loss(s, t, y, 2.0, 0.5).backward();
  EXPECT_FALSE(t.grad().defined()) << "the teacher must get no gradient";
  // alpha = 0 is plain cross-entropy; identical logits give a zero soft term
  EXPECT_NEAR(distillation_loss(s, t, y, 2.0, 0.0).item<double>(), cross_entropy(s, y).item<double>(), 1e-12);
  EXPECT_NEAR(distillation_loss(s, s, y, 2.0, 1.0).item<double>(), 0.0, 1e-12);
  EXPECT_THROW(distillation_loss(s, t, y, 0.0, 0.5), Error);
  EXPECT_THROW(distillation_loss(s, t, y, 1.0, 1.5), Error);
  EXPECT_THROW(distillation_loss(s, randn({4, 5}, &g, DType::F64), y, 1.0, 0.5), Error);
}
