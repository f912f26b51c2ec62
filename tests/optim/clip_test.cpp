// clip_grad_norm_ / clip_grad_value_ against PyTorch 1.13 (tools/fixtures_optim.py), and
// the regularisation penalties.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "optim/fixtures.h"

namespace mox {
namespace {

std::vector<Tensor> params_with_grads(const io::SafetensorsFile& f) {
  std::vector<Tensor> ps;
  for (int i = 0; i < 3; i++) {
    Tensor g = f.at("grad." + std::to_string(i));
    Tensor p = zeros(g.shape(), TensorOptions(DType::F32, kCPU, true));
    p.set_grad(g.clone());
    ps.push_back(p);
  }
  return ps;
}

TEST(ClipGradNorm, MatchesPyTorch) {
  io::SafetensorsFile f = io::load_safetensors(testing::optim_fixture("clip"));
  std::vector<double> norm_type = f.at("norm_type").to_vector<double>();
  std::vector<double> max_norm = f.at("max_norm").to_vector<double>();
  std::vector<double> total = f.at("total_norm").to_vector<double>();
  ASSERT_EQ(norm_type.size(), 5u);
  ASSERT_TRUE(std::isinf(norm_type[2]));
  for (size_t c = 0; c < norm_type.size(); c++) {
    SCOPED_TRACE("norm_type " + std::to_string(norm_type[c]) + " max_norm " +
                 std::to_string(max_norm[c]));
    std::vector<Tensor> ps = params_with_grads(f);
    double n = optim::clip_grad_norm_(ps, max_norm[c], norm_type[c]);
    EXPECT_NEAR(n, total[c], 1e-5 * total[c]);
    for (int i = 0; i < 3; i++)
      EXPECT_TRUE(testing::close(ps[i].grad(), f.at("case" + std::to_string(c) + ".clipped." +
                                                    std::to_string(i)),
                                 1e-5, 1e-7))
          << "param " << i;
  }
  // the last case has a large max_norm: gradients are left exactly as they were
  std::vector<Tensor> ps = params_with_grads(f);
  optim::clip_grad_norm_(ps, 100.0);
  EXPECT_EQ(ps[0].grad().to_vector<float>(), f.at("grad.0").to_vector<float>());
}

TEST(ClipGradNorm, SkipsMissingGradsAndHandlesStridedGrads) {
  Tensor a = zeros({2, 2}, TensorOptions(DType::F32, kCPU, true));
  Tensor b = zeros({3}, TensorOptions(DType::F32, kCPU, true));
  EXPECT_EQ(optim::clip_grad_norm_({a, b}, 1.0), 0.0);  // no grads at all
  // a's grad is an expanded view (stride 0): its four elements alias one value
  a.set_grad(full({1, 1}, 3.0).expand({2, 2}));
  double n = optim::clip_grad_norm_({a, b}, 1.0);
  EXPECT_NEAR(n, 6.0, 1e-6);  // sqrt(4 * 9)
  EXPECT_FALSE(b.grad().defined());
  for (float v : a.grad().to_vector<float>()) EXPECT_NEAR(v, 0.5, 1e-6);
}

TEST(ClipGradNorm, NonFiniteNorm) {
  Tensor a = zeros({3}, TensorOptions(DType::F32, kCPU, true));
  a.set_grad(from_vector<float>({1.0f, NAN, 2.0f}));
  EXPECT_THROW(optim::clip_grad_norm_({a}, 1.0, 2.0, true), Error);
  EXPECT_THROW(optim::clip_grad_norm_({a}, 1.0, INFINITY, true), Error);
  // without error_if_nonfinite the NaN spreads to all gradients, as in PyTorch
  EXPECT_TRUE(std::isnan(optim::clip_grad_norm_({a}, 1.0)));
  for (float v : a.grad().to_vector<float>()) EXPECT_TRUE(std::isnan(v));
  EXPECT_THROW(optim::clip_grad_norm_({a}, 1.0, 0.0), Error);
  EXPECT_THROW(optim::clip_grad_norm_({a}, 1.0, -2.0), Error);
}

TEST(ClipGradValue, ClampsEveryElement) {
  Tensor a = zeros({4}, TensorOptions(DType::F32, kCPU, true));
  Tensor b = zeros({2, 2}, TensorOptions(DType::F64, kCPU, true));
  a.set_grad(from_vector<float>({-3.0f, -0.5f, 0.25f, 9.0f}));
  b.set_grad(from_vector<double>({1.0, -2.0, 0.0, 5.0}, {2, 2}).t());  // strided grad
  optim::clip_grad_value_({a, b}, 1.0);
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{-1.0f, -0.5f, 0.25f, 1.0f}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{1.0, 0.0, -1.0, 1.0}));
  EXPECT_THROW(optim::clip_grad_value_({a}, -1.0), Error);
}

TEST(Regularizers, Values) {
  Tensor a = from_vector<float>({1.0f, -2.0f, 0.5f});
  Tensor b = from_vector<float>({-3.0f, 0.0f}, {1, 2});
  EXPECT_NEAR(optim::l1_penalty({a, b}, 0.1).item<double>(), 0.1 * 6.5, 1e-6);
  EXPECT_NEAR(optim::l2_penalty({a, b}, 0.1).item<double>(), 0.1 * 14.25, 1e-6);
  EXPECT_EQ(optim::l1_penalty({}, 0.1).item<double>(), 0.0);
  EXPECT_EQ(optim::l2_penalty({a}, 0.1).shape(), Shape{});
  EXPECT_THROW(optim::l2_penalty({a}, -1.0), Error);
  EXPECT_THROW(optim::l1_penalty({arange(3)}, 1.0), Error);
}

TEST(Regularizers, Gradients) {
  using testing::gradcheck;
  // l1 away from 0, where |p| is differentiable
  Tensor p = testing::rnd({3, 4}, 1, 0.2, 1.0);
  Tensor q = testing::rnd_noncontig({2, 5}, 2, -1.0, -0.2);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return optim::l1_penalty(in, 0.3); },
                        {p, q}));
  Tensor r = testing::rnd({4}, 3);
  Tensor s = testing::rnd_noncontig({3, 2}, 4);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return optim::l2_penalty(in, 0.7); },
                        {r, s}));
  // the gradient of l2 is 2 * lambda * p
  r.zero_grad();
  optim::l2_penalty({r}, 0.7).backward();
  EXPECT_TRUE(testing::close(r.grad(), mul(r.detach(), 1.4), 1e-12, 1e-12));
}

}  // namespace
}  // namespace mox
