// The GPT-2 architecture: parameter names and count, causality, agreement with attention
// written out by hand, and a tiny model that learns a sequence.
#include <gtest/gtest.h>

#include <cmath>

#include "../error_of.h"
#include "mox/mox.h"
#include "mox/nn/models/gpt.h"
#include "mox/optim/optim.h"

using namespace mox;

namespace {

nn::GPTConfig tiny() {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.block_size = 12;
  c.vocab_size = 11;
  return c;
}

Tensor tokens(int64_t B, int64_t T, uint64_t seed) {
  Generator g(seed);
  return randint(0, 11, {B, T}, &g);
}

}  // namespace

TEST(Gpt, NamesAndParameterCount) {
  manual_seed(1);
  nn::GPT m(tiny());
  auto names = m.named_parameters().keys();
  EXPECT_EQ(names.front(), "transformer.wte.weight");
  EXPECT_NE(std::find(names.begin(), names.end(), "transformer.h.1.attn.c_attn.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "transformer.h.0.mlp.c_proj.bias"), names.end());
  EXPECT_EQ(names.back(), "transformer.ln_f.bias");  // tied: no lm_head.weight
  EXPECT_EQ(m.num_parameters(), tiny().num_parameters());
  // GPT-2 small (124M) by the formula: the published 124,439,808 with tied embeddings.
  nn::GPTConfig g2;
  g2.n_layer = 12;
  g2.n_head = 12;
  g2.n_embd = 768;
  g2.block_size = 1024;
  g2.vocab_size = 50257;
  EXPECT_EQ(g2.num_parameters(), 124439808);
  nn::GPTConfig untied = tiny();
  untied.tie_embeddings = false;
  nn::GPT u(untied);
  EXPECT_EQ(u.num_parameters(), tiny().num_parameters() + 11 * 16);
  EXPECT_EQ(u.named_parameters().keys().back(), "lm_head.weight");
  // nanoGPT's bias = False: no bias in any Linear or LayerNorm; the formula's count drops
  // the 2 LayerNorm + 3C + C + 4C + C Linear biases per block and ln_f's.
  nn::GPTConfig nb = tiny();
  nb.bias = false;
  nn::GPT n(nb);
  for (const auto& name : n.named_parameters().keys())
    EXPECT_EQ(name.find(".bias"), std::string::npos) << name;
  EXPECT_EQ(n.num_parameters(), nb.num_parameters());
  const int64_t C = 16, L = 2;
  EXPECT_EQ(tiny().num_parameters() - nb.num_parameters(), L * (2 * C + 3 * C + C + 4 * C + C) + C);
  Tensor ids = tokens(2, 5, 9);
  EXPECT_EQ(n.forward(ids).shape(), (Shape{2, 5, 11}));
}

TEST(Gpt, LaterTokensDoNotChangeEarlierLogits) {
  manual_seed(2);
  nn::GPT m(tiny());
  m.eval();
  Tensor a = tokens(2, 10, 3), b = a.clone();
  b.data<int64_t>()[7] = (b.data<int64_t>()[7] + 1) % 11;  // row 0, position 7
  Tensor la = m(a), lb = m(b);
  ASSERT_EQ(la.shape(), (Shape{2, 10, 11}));
  auto va = la.to_vector<float>(), vb = lb.to_vector<float>();
  for (int64_t t = 0; t < 10; t++)
    for (int64_t v = 0; v < 11; v++) {
      float x = va[size_t(t * 11 + v)], y = vb[size_t(t * 11 + v)];
      if (t < 7) EXPECT_EQ(x, y) << "position " << t;
    }
  EXPECT_NE(va[7 * 11], vb[7 * 11]);
}

TEST(Gpt, MatchesAttentionWrittenOut) {
  // One block's attention recomputed with matmul + masked softmax from the same weights.
  manual_seed(4);
  nn::GPTConfig c = tiny();
  nn::GPT m(c);
  m.eval();
  NoGradGuard ng;
  Generator g(5);
  Tensor x = randn({2, 9, 16}, &g);
  auto& attn = *m.blocks[0]->attn;
  Tensor got = attn.forward(x);
  Tensor qkv = linear(x, attn.c_attn->weight, attn.c_attn->bias);
  auto parts = split(qkv, 16, 2);
  auto heads = [](const Tensor& t) { return t.reshape({2, 9, 2, 8}).transpose(1, 2); };
  Tensor q = heads(parts[0]), k = heads(parts[1]), v = heads(parts[2]);
  Tensor scores = matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(8.0));
  Tensor mask = full({9, 9}, 0.0);
  for (int i = 0; i < 9; i++)
    for (int j = i + 1; j < 9; j++) mask.data<float>()[i * 9 + j] = -INFINITY;
  Tensor y = matmul(softmax(scores + mask, -1), v).transpose(1, 2).contiguous().reshape({2, 9, 16});
  Tensor want = linear(y, attn.c_proj->weight, attn.c_proj->bias);
  auto a = got.to_vector<float>(), b = want.to_vector<float>();
  for (size_t i = 0; i < a.size(); i++) EXPECT_NEAR(a[i], b[i], 1e-5);
}

TEST(Gpt, LearnsARepeatingSequence) {
  // Next-token prediction of 0 1 2 ... 10 0 1 2 ...: a working model drives the loss near 0.
  manual_seed(6);
  nn::GPT m(tiny());
  optim::AdamW opt(m.parameters(), optim::AdamWOptions(1e-2));
  std::vector<int64_t> seq;
  for (int i = 0; i < 13; i++) seq.push_back(i % 11);
  Tensor all = from_vector(seq);
  Tensor x = all.slice(0, 0, 12).reshape({1, 12}), y = all.slice(0, 1, 13).reshape({1, 12});
  double first = 0, last = 0;
  for (int step = 0; step < 150; step++) {
    Tensor loss = cross_entropy(m(x).reshape({12, 11}), y.reshape({12}));
    if (step == 0) first = loss.item<float>();
    last = loss.item<float>();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  EXPECT_GT(first, 2.0);  // about log(11) at initialisation
  EXPECT_LT(last, 0.05);
}

TEST(Gpt, ErrorsNameTheField) {
  nn::GPTConfig c = tiny();
  c.n_head = 3;
  expect_error([&] { nn::GPT m(c); }, {"n_embd 16", "n_head 3"});
  manual_seed(7);
  nn::GPT m(tiny());
  expect_error([&] { m(tokens(1, 13, 1)); }, {"sequence length 13", "block_size"});
  expect_error([&] { m(randn({1, 4})); }, {"integer token ids"});
}
