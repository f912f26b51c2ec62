#pragma once
// The two-block pre-norm transformer of tools/fixtures_models.py, written with the mox
// primitives (LayerNorm, Linear, matmul, softmax, gelu, masked_fill), with the same
// module names so that PyTorch's state_dict loads into it.
#include <cmath>
#include <memory>
#include <vector>

#include "mox/mox.h"
#include "mox/nn/nn.h"

namespace mox::testing {

class Block : public nn::Module {
 public:
  Block(int64_t d, int64_t heads) : heads_(heads) {
    ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(d));
    q = register_module("q", std::make_shared<nn::Linear>(d, d));
    k = register_module("k", std::make_shared<nn::Linear>(d, d));
    v = register_module("v", std::make_shared<nn::Linear>(d, d));
    o = register_module("o", std::make_shared<nn::Linear>(d, d));
    ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(d));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(d, 4 * d));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(4 * d, d));
  }

  // x [B, T, C] -> [B, T, C]
  Tensor forward(const Tensor& x) override {
    int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = heads_, hd = C / H;
    Tensor y = ln1->forward(x);
    auto split_heads = [&](const Tensor& t) {  // [B, T, C] -> [B, H, T, hd]
      return t.view({B, T, H, hd}).transpose(1, 2);
    };
    Tensor qh = split_heads(q->forward(y)), kh = split_heads(k->forward(y)),
           vh = split_heads(v->forward(y));
    Tensor att = matmul(qh, kh.transpose(-2, -1)) * (1.0 / std::sqrt(double(hd)));  // [B,H,T,T]
    att = softmax(masked_fill(att, causal_mask(T), -INFINITY), -1);
    y = matmul(att, vh).transpose(1, 2).reshape({B, T, C});
    Tensor h = x + o->forward(y);
    return h + fc2->forward(gelu(fc1->forward(ln2->forward(h))));
  }
  std::string type_name() const override { return "Block"; }

  // [T, T] u8, 1 above the diagonal: position t may not look at later positions.
  static Tensor causal_mask(int64_t T) {
    std::vector<uint8_t> m(size_t(T * T), 0);
    for (int64_t i = 0; i < T; i++)
      for (int64_t j = i + 1; j < T; j++) m[size_t(i * T + j)] = 1;
    return from_vector(m, {T, T});
  }

  std::shared_ptr<nn::LayerNorm> ln1, ln2;
  std::shared_ptr<nn::Linear> q, k, v, o, fc1, fc2;

 private:
  int64_t heads_;
};

class Transformer : public nn::Module {
 public:
  Transformer(int64_t d = 16, int64_t heads = 2, int64_t layers = 2) {
    blocks = register_module("blocks", std::make_shared<nn::Sequential>());
    for (int64_t i = 0; i < layers; i++) blocks->push_back(std::make_shared<Block>(d, heads));
    ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(d));
  }
  Tensor forward(const Tensor& x) override { return ln_f->forward(blocks->forward(x)); }
  std::string type_name() const override { return "Transformer"; }

  std::shared_ptr<nn::Sequential> blocks;
  std::shared_ptr<nn::LayerNorm> ln_f;
};

}  // namespace mox::testing
