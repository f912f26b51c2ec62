// The fused optimiser kernels (Backend::sgd_update, rmsprop_update, adagrad_update) against
// the same rule composed from separate ops in PyTorch 1.13's operation order, on a
// parameter large enough (100003 elements, not a multiple of the vector width) that the
// CPU kernels split it across threads and run their vector loops and remainders.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <tuple>

#include "mox/backend/backend.h"
#include "optim/fixtures.h"

namespace mox {
namespace {

using testing::close;

constexpr int64_t kN = 100003;

// Forces a thread count for the test's duration (so that the OpenMP split runs even where
// the default is one thread), restoring the previous one after.
struct ThreadsGuard {
  int saved = get_num_threads();
  explicit ThreadsGuard(int n) { set_num_threads(n); }
  ~ThreadsGuard() { set_num_threads(saved); }
};

// Both sides follow the same operation order, so f64 agrees to rounding noise. f32 allows
// a few ulp of the O(1) terms (d / avg in RMSprop), which show as absolute error where a
// state value is the small difference of two such terms.
double rtol(DType dt) { return dt == DType::F64 ? 1e-12 : 2e-5; }
double atol(DType dt) { return dt == DType::F64 ? 1e-15 : 1e-6; }

Tensor randn_like_dt(Generator& g, DType dt, double scale) {
  return mul(randn({kN}, &g).to(dt), scale);
}

struct SgdCase {
  const char* name;
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
};

class FusedSgd : public ::testing::TestWithParam<std::tuple<SgdCase, DType>> {};

TEST_P(FusedSgd, MatchesComposedOps) {
  auto [c, dt] = GetParam();
  ThreadsGuard threads(3);
  NoGradGuard ng;
  Generator gen(1);
  Tensor p = randn_like_dt(gen, dt, 1.0), p0 = p.clone(), ref_p = p.clone();
  Tensor buf = empty({kN}, TensorOptions(dt)), ref_buf;
  for (int step = 1; step <= 3; step++) {
    SCOPED_TRACE("step " + std::to_string(step));
    Tensor grad = randn_like_dt(gen, dt, 0.1);
    // composed: torch/optim/sgd.py _single_tensor_sgd
    Tensor d = c.weight_decay != 0 ? add(grad, mul(ref_p, c.weight_decay)) : grad;
    if (c.momentum != 0) {
      ref_buf = step == 1 ? d.clone() : add(mul(ref_buf, c.momentum), mul(d, 1.0 - c.dampening));
      d = c.nesterov ? add(d, mul(ref_buf, c.momentum)) : ref_buf;
    }
    ref_p = add(ref_p, mul(d, -c.lr));
    // fused
    SgdParams sp{c.lr, c.momentum, c.dampening, c.weight_decay, c.nesterov, step == 1};
    backend_for(p).sgd_update(p, grad, c.momentum != 0 ? buf : Tensor(), sp);
    EXPECT_TRUE(close(p, ref_p, rtol(dt), atol(dt)));
    if (c.momentum != 0) {
      EXPECT_TRUE(close(buf, ref_buf, rtol(dt), atol(dt)));
    }
  }
  EXPECT_FALSE(close(p, p0, 1e-3, 0));  // the steps really moved the parameter
}

const SgdCase kSgdCases[] = {
    {"plain", 0.1, 0, 0, 0, false},
    {"weight_decay", 0.05, 0, 0, 0.01, false},
    {"momentum_dampening_decay", 0.05, 0.9, 0.1, 0.01, false},
    {"nesterov_decay", 0.02, 0.8, 0, 0.001, true},
};

INSTANTIATE_TEST_SUITE_P(
    Cases, FusedSgd,
    ::testing::Combine(::testing::ValuesIn(kSgdCases), ::testing::Values(DType::F64, DType::F32)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param).name) +
             (std::get<1>(info.param) == DType::F64 ? "_f64" : "_f32");
    });

struct RmspropCase {
  const char* name;
  double lr, alpha, eps, weight_decay, momentum;
  bool centered;
};

class FusedRmsprop : public ::testing::TestWithParam<std::tuple<RmspropCase, DType>> {};

TEST_P(FusedRmsprop, MatchesComposedOps) {
  auto [c, dt] = GetParam();
  ThreadsGuard threads(3);
  NoGradGuard ng;
  Generator gen(2);
  Tensor p = randn_like_dt(gen, dt, 1.0), p0 = p.clone(), ref_p = p.clone();
  // Non-zero starting state, so that every term of the rule matters from step 1.
  Tensor sq = add(abs(randn_like_dt(gen, dt, 0.01)), 0.02), ref_sq = sq.clone();
  Tensor ga = randn_like_dt(gen, dt, 0.01), ref_ga = ga.clone();
  Tensor buf = randn_like_dt(gen, dt, 0.1), ref_buf = buf.clone();
  for (int step = 1; step <= 3; step++) {
    SCOPED_TRACE("step " + std::to_string(step));
    Tensor grad = randn_like_dt(gen, dt, 0.1);
    // composed: torch/optim/rmsprop.py _single_tensor_rmsprop
    Tensor d = c.weight_decay != 0 ? add(grad, mul(ref_p, c.weight_decay)) : grad;
    ref_sq = add(mul(ref_sq, c.alpha), mul(mul(d, 1.0 - c.alpha), d));
    Tensor avg;
    if (c.centered) {
      ref_ga = add(mul(ref_ga, c.alpha), mul(d, 1.0 - c.alpha));
      avg = sqrt(add(ref_sq, mul(mul(ref_ga, -1.0), ref_ga)));
    } else {
      avg = sqrt(ref_sq);
    }
    avg = add(avg, c.eps);
    if (c.momentum > 0) {
      ref_buf = add(mul(ref_buf, c.momentum), div(d, avg));
      ref_p = add(ref_p, mul(ref_buf, -c.lr));
    } else {
      ref_p = add(ref_p, div(mul(d, -c.lr), avg));
    }
    // fused
    RmspropParams rp{c.lr, c.alpha, c.eps, c.weight_decay, c.momentum, c.centered};
    backend_for(p).rmsprop_update(p, grad, sq, c.momentum > 0 ? buf : Tensor(),
                                  c.centered ? ga : Tensor(), rp);
    EXPECT_TRUE(close(p, ref_p, rtol(dt), atol(dt)));
    EXPECT_TRUE(close(sq, ref_sq, rtol(dt), atol(dt)));
    if (c.centered) {
      EXPECT_TRUE(close(ga, ref_ga, rtol(dt), atol(dt)));
    }
    if (c.momentum > 0) {
      EXPECT_TRUE(close(buf, ref_buf, rtol(dt), atol(dt)));
    }
  }
  EXPECT_FALSE(close(p, p0, 1e-3, 0));
}

const RmspropCase kRmspropCases[] = {
    {"plain", 0.01, 0.99, 1e-8, 0, 0, false},
    {"centered_decay", 0.01, 0.9, 1e-6, 0.01, 0, true},
    {"momentum", 0.005, 0.95, 1e-8, 0, 0.9, false},
    {"momentum_centered_decay", 0.01, 0.99, 1e-8, 0.001, 0.5, true},
};

INSTANTIATE_TEST_SUITE_P(
    Cases, FusedRmsprop,
    ::testing::Combine(::testing::ValuesIn(kRmspropCases),
                       ::testing::Values(DType::F64, DType::F32)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param).name) +
             (std::get<1>(info.param) == DType::F64 ? "_f64" : "_f32");
    });

struct AdagradCase {
  const char* name;
  double lr, lr_decay, weight_decay, eps;
};

class FusedAdagrad : public ::testing::TestWithParam<std::tuple<AdagradCase, DType>> {};

TEST_P(FusedAdagrad, MatchesComposedOps) {
  auto [c, dt] = GetParam();
  ThreadsGuard threads(3);
  NoGradGuard ng;
  Generator gen(3);
  Tensor p = randn_like_dt(gen, dt, 1.0), p0 = p.clone(), ref_p = p.clone();
  Tensor sum = abs(randn_like_dt(gen, dt, 0.1)), ref_sum = sum.clone();
  for (int step = 1; step <= 3; step++) {
    SCOPED_TRACE("step " + std::to_string(step));
    Tensor grad = randn_like_dt(gen, dt, 0.1);
    // composed: torch/optim/adagrad.py _single_tensor_adagrad
    Tensor d = c.weight_decay != 0 ? add(grad, mul(ref_p, c.weight_decay)) : grad;
    const double clr = c.lr / (1.0 + double(step - 1) * c.lr_decay);
    ref_sum = add(ref_sum, mul(d, d));
    Tensor std = add(sqrt(ref_sum), c.eps);
    ref_p = add(ref_p, div(mul(d, -clr), std));
    // fused
    AdagradParams ap{c.lr, c.lr_decay, c.weight_decay, c.eps, step};
    backend_for(p).adagrad_update(p, grad, sum, ap);
    EXPECT_TRUE(close(p, ref_p, rtol(dt), atol(dt)));
    EXPECT_TRUE(close(sum, ref_sum, rtol(dt), atol(dt)));
  }
  EXPECT_FALSE(close(p, p0, 1e-3, 0));
}

const AdagradCase kAdagradCases[] = {
    {"plain", 0.1, 0, 0, 1e-10},
    {"decay_lr_decay", 0.05, 0.1, 0.01, 1e-8},
};

INSTANTIATE_TEST_SUITE_P(
    Cases, FusedAdagrad,
    ::testing::Combine(::testing::ValuesIn(kAdagradCases),
                       ::testing::Values(DType::F64, DType::F32)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param).name) +
             (std::get<1>(info.param) == DType::F64 ? "_f64" : "_f32");
    });

// Bad operands are reported, not read or written out of bounds.
TEST(FusedUpdate, RejectsBadOperands) {
  Backend& be = backend_for(kCPU);
  Tensor p = zeros({6}), g = zeros({6}), s = zeros({6});
  auto expect_error = [](const std::function<void()>& fn, const std::string& phrase) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected: " << phrase;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
    }
  };
  SgdParams sp{0.1, 0.9, 0, 0, false, false};
  expect_error([&] { be.sgd_update(p, g, Tensor(), sp); }, "momentum needs momentum_buf");
  expect_error([&] { be.sgd_update(p, zeros({5}), s, sp); }, "match parameter");
  expect_error([&] { be.sgd_update(zeros({2, 3}).t(), g, s, sp); }, "contiguous");
  expect_error([&] { be.sgd_update(p, g, zeros({6}, DType::F64), sp); }, "match parameter");
  RmspropParams rp{0.1, 0.99, 1e-8, 0, 0.9, true};
  expect_error([&] { be.rmsprop_update(p, g, s, s.clone(), Tensor(), rp); }, "grad_avg");
  expect_error([&] { be.rmsprop_update(p, g, s, Tensor(), s.clone(), rp); }, "momentum_buf");
  AdagradParams ap{0.1, 0, 0, 1e-10, 0};
  expect_error([&] { be.adagrad_update(p, g, s, ap); }, "step must be >= 1");
  ap.step = 1;
  expect_error([&] { be.adagrad_update(arange(6), arange(6), arange(6), ap); }, "f32 or f64");
}

}  // namespace
}  // namespace mox
