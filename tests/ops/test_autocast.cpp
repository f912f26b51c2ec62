// Autocast (mixed precision): which ops run in the half type, which in f32, the per-guard
// cache of rounded parameters, and gradients reaching the f32 master weights.
#include <gtest/gtest.h>

#include "mox/autograd/node.h"
#include "mox/nn/models/gpt.h"
#include "mox/ops/autocast.h"
#include "mox/ops/ops.h"

namespace mox {
namespace {

double rel(const Tensor& a, const Tensor& b) {
  Tensor d = sub(a.to(DType::F64), b.to(DType::F64));
  return norm(d).item<double>() / norm(b.to(DType::F64)).item<double>();
}

TEST(Autocast, MatrixProductsRunInTheHalfTypeOnRoundedOperands) {
  Generator g(1);
  Tensor x = randn({5, 16}, &g), w = randn({8, 16}, &g), b = randn({8}, &g);
  Tensor ref = linear(x.to(DType::BF16), w.to(DType::BF16), b.to(DType::BF16));
  Tensor mm_ref = matmul(x.to(DType::BF16), w.t().to(DType::BF16));
  AutocastGuard ac(DType::BF16);
  EXPECT_TRUE(autocast_enabled());
  Tensor y = linear(x, w, b);
  EXPECT_EQ(y.dtype(), DType::BF16);
  EXPECT_EQ(y.to_vector<float>(), ref.to_vector<float>());
  Tensor m = matmul(x, w.t());
  EXPECT_EQ(m.dtype(), DType::BF16);
  EXPECT_EQ(m.to_vector<float>(), mm_ref.to_vector<float>());
  // f64 is never rounded
  EXPECT_EQ(matmul(x.to(DType::F64), w.t().to(DType::F64)).dtype(), DType::F64);
}

TEST(Autocast, NormsSoftmaxAndLossesRunInF32) {
  Generator g(2);
  Tensor h = randn({4, 10}, &g).to(DType::BF16);
  Tensor t = from_vector<int64_t>({1, 0, 9, 3}, {4});
  AutocastGuard ac(DType::BF16);
  EXPECT_EQ(layer_norm(h, {10}, Tensor(), Tensor(), 1e-5).dtype(), DType::F32);
  EXPECT_EQ(softmax(h, -1).dtype(), DType::F32);
  EXPECT_EQ(log_softmax(h, -1).dtype(), DType::F32);
  Tensor l = cross_entropy(h, t);
  EXPECT_EQ(l.dtype(), DType::F32);
  EXPECT_NEAR(l.item<double>(), cross_entropy(h.to(DType::F32), t).item<double>(), 1e-6);
  // elementwise ops follow promotion: f32 + bf16 = f32
  EXPECT_EQ(add(h, randn({4, 10}, &g)).dtype(), DType::F32);
}

TEST(Autocast, ParametersAreRoundedOncePerGuardAndGradientsReachTheF32Leaf) {
  Generator g(3);
  Tensor w = randn({6, 12}, &g).requires_grad_();
  Tensor x = randn({3, 12}, &g);
  Tensor h1, h2;
  {
    AutocastGuard ac(DType::BF16);
    h1 = detail::autocast_half(w);
    EXPECT_TRUE(detail::autocast_half(w).same(h1)) << "second use must hit the cache";
    Tensor xa = detail::autocast_half(x);
    EXPECT_FALSE(detail::autocast_half(x).same(xa)) << "activations are not cached";
    {
      AutocastGuard off(DType::BF16, false);
      EXPECT_FALSE(autocast_enabled());
      EXPECT_EQ(linear(x, w, Tensor()).dtype(), DType::F32);
    }
    EXPECT_TRUE(autocast_enabled());
    // used twice: the gradient of both uses accumulates into w
    Tensor y = add(linear(x, w, Tensor()), linear(x, w, Tensor()));
    Tensor loss = sum(mul(y.to(DType::F32), y.to(DType::F32)));
    loss.backward();
  }
  EXPECT_FALSE(autocast_enabled());
  {
    AutocastGuard ac(DType::BF16);
    h2 = detail::autocast_half(w);
  }
  EXPECT_FALSE(h1.same(h2)) << "the cache ends with the outermost guard";
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), DType::F32);
  // the f32 gradient of the same loss: d/dw sum((2 x w^T)^2) = 8 (x w^T)^T x
  Tensor ref = mul(matmul(matmul(x, w.detach().t()).t(), x), 8.0);
  EXPECT_LT(rel(w.grad(), ref), 2e-2);
}

TEST(Autocast, AttentionRunsInTheHalfType) {
  Generator g(4);
  Tensor qkv = randn({2, 5, 3 * 8}, &g);
  Tensor ref = attention_qkv(qkv.to(DType::BF16), 2, true);
  AutocastGuard ac(DType::BF16);
  Tensor out = attention_qkv(qkv, 2, true);
  EXPECT_EQ(out.dtype(), DType::BF16);
  EXPECT_EQ(out.to_vector<float>(), ref.to_vector<float>());
  Tensor q = randn({1, 2, 4, 8}, &g);
  EXPECT_EQ(scaled_dot_product_attention(q, q, q, true).dtype(), DType::BF16);
}

TEST(Autocast, RejectsNonHalfTypes) {
  EXPECT_THROW(AutocastGuard(DType::F32), Error);
}

// A GPT step under bf16 autocast: the loss and the gradients stay close to f32's, and the
// parameters and their gradients stay f32.
TEST(Autocast, GptLossAndGradientsTrackF32) {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 32;
  c.block_size = 16;
  c.vocab_size = 50;
  c.dropout = 0;
  manual_seed(5);
  auto model = std::make_shared<nn::GPT>(c);
  Generator g(6);
  Tensor idx = randint(0, 50, {2, 16}, &g), tgt = randint(0, 50, {2, 16}, &g);
  auto loss_of = [&](bool mixed) {
    for (Tensor p : model->parameters()) p.zero_grad();
    Tensor loss;
    {
      std::optional<AutocastGuard> ac;
      if (mixed) ac.emplace(DType::BF16);
      Tensor logits = model->forward(idx);
      if (mixed) {
        EXPECT_EQ(logits.dtype(), DType::BF16);
      }
      loss = cross_entropy(logits.reshape({-1, 50}), tgt.reshape({-1}));
    }
    EXPECT_EQ(loss.dtype(), DType::F32);
    loss.backward();
    std::vector<Tensor> grads;
    for (Tensor p : model->parameters()) {
      EXPECT_EQ(p.grad().dtype(), DType::F32);
      grads.push_back(p.grad().clone());
    }
    return std::make_pair(loss.item<double>(), grads);
  };
  auto [l32, g32] = loss_of(false);
  auto [l16, g16] = loss_of(true);
  EXPECT_NEAR(l16, l32, 1e-2 * l32);
  for (size_t i = 0; i < g32.size(); ++i) EXPECT_LT(rel(g16[i], g32[i]), 5e-2) << "parameter " << i;
}

}  // namespace
}  // namespace mox
