// Fake quantisation (QAT) against PyTorch's fake_quantize_per_tensor_affine and
// _per_channel_affine (tools/fixtures_ops.py -> tests/fixtures/ops/quant.json): values with
// round-half-to-even and clamping, and the straight-through gradient.
#include <gtest/gtest.h>

#include "mox/mox.h"
#include "ops/ops_fixtures.h"

using namespace mox;

TEST(FakeQuantize, MatchesPyTorchFixtures) {
  using mox::testing::Inputs;
  using mox::testing::json;
  std::map<std::string, mox::testing::CaseFn> ops;
  ops["fake_quantize"] = [](Inputs& in, const json& p, const json&) {
    return fake_quantize(in.at("x"), p.at("scale"), p.at("zero_point"), p.at("qmin"), p.at("qmax"));
  };
  ops["fake_quantize_per_channel"] = [](Inputs& in, const json& p, const json&) {
    return fake_quantize_per_channel(in.at("x"), in.at("scale"), in.at("zero_point"), p.at("axis"), p.at("qmin"),
                                     p.at("qmax"));
  };
  mox::testing::run_fixture_cases("quant.json", ops);
}

TEST(FakeQuantize, StraightThroughAndErrors) {
  Tensor x = from_vector<float>({-10.f, -0.26f, 0.24f, 0.5f, 10.f}, {5}).requires_grad_();
  Tensor y = fake_quantize(x, 0.5, 0, -4, 3);
  EXPECT_EQ(y.to_vector<float>(), std::vector<float>({-2.f, -0.5f, 0.f, 0.5f, 1.5f}));
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), std::vector<float>({0.f, 1.f, 1.f, 1.f, 0.f}));  // clamped: no gradient
  EXPECT_THROW(fake_quantize(x, 0.0, 0, -4, 3), Error);
  EXPECT_THROW(fake_quantize(x, 0.5, 9, -4, 3), Error);
  EXPECT_THROW(fake_quantize(x, 0.5, 0, 3, 3), Error);
  EXPECT_THROW(fake_quantize_per_channel(randn({2, 3}), ones({3}), zeros({3}, DType::I64), 0, -8, 7), Error);
  EXPECT_THROW(fake_quantize_per_channel(randn({2, 3}), ones({2}), zeros({2}), 0, -8, 7), Error);
}
