#include "mox/nn/models/gpt.h"

#include <cmath>

#include "mox/nn/init.h"
#include "mox/ops/ops.h"

namespace mox::nn {

namespace {

// A named group of child modules with no computation of its own (PyTorch's ModuleDict /
// ModuleList), so that parameter names nest as in GPT-2 ("transformer.h.0.attn...").
struct Container : Module {
  using Module::add_child;
  std::string type_name() const override { return "ModuleDict"; }
};

}  // namespace

void GPTConfig::validate() const {
  auto positive = [](int64_t v, const char* name) {
    MOX_CHECK(v >= 1, "GPTConfig", std::string(name) + " must be >= 1, got " + std::to_string(v));
  };
  positive(n_layer, "n_layer");
  positive(n_head, "n_head");
  positive(n_embd, "n_embd");
  positive(block_size, "block_size");
  positive(vocab_size, "vocab_size");
  MOX_CHECK(n_embd % n_head == 0, "GPTConfig",
            "n_embd " + std::to_string(n_embd) + " is not a multiple of n_head " + std::to_string(n_head));
  MOX_CHECK(dropout >= 0 && dropout < 1, "GPTConfig", "dropout must be in [0, 1)");
  MOX_CHECK(bias, "GPTConfig", "bias = false is not supported yet (LayerNorm has no bias-free form in mox)");
}

int64_t GPTConfig::num_parameters() const {
  const int64_t C = n_embd;
  const int64_t ln = 2 * C;
  const int64_t block = ln + (C * 3 * C + 3 * C) + (C * C + C) + ln + (C * 4 * C + 4 * C) + (4 * C * C + C);
  return vocab_size * C + block_size * C + n_layer * block + ln + (tie_embeddings ? 0 : vocab_size * C);
}

CausalSelfAttention::CausalSelfAttention(const GPTConfig& c)
    : n_head(c.n_head), n_embd(c.n_embd), attn_dropout(c.dropout) {
  c_attn = register_module("c_attn", std::make_shared<Linear>(c.n_embd, 3 * c.n_embd, c.bias));
  c_proj = register_module("c_proj", std::make_shared<Linear>(c.n_embd, c.n_embd, c.bias));
  resid_dropout = register_module("resid_dropout", std::make_shared<Dropout>(c.dropout));
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  MOX_CHECK(x.dim() == 3 && x.size(2) == n_embd, "CausalSelfAttention",
            "expected [B, T, " + std::to_string(n_embd) + "], got " + shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), H = n_head, D = n_embd / n_head;
  std::vector<Tensor> qkv = split(c_attn->forward(x), n_embd, 2);  // 3 x [B, T, C]
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, H, D}).transpose(1, 2); };  // [B, H, T, D]
  Tensor y = scaled_dot_product_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), /*causal=*/true);
  if (attn_dropout > 0 && is_training()) y = dropout(y, attn_dropout, true);
  y = y.transpose(1, 2).contiguous().reshape({B, T, n_embd});
  return resid_dropout->forward(c_proj->forward(y));
}

GPTMLP::GPTMLP(const GPTConfig& c) {
  c_fc = register_module("c_fc", std::make_shared<Linear>(c.n_embd, 4 * c.n_embd, c.bias));
  c_proj = register_module("c_proj", std::make_shared<Linear>(4 * c.n_embd, c.n_embd, c.bias));
  dropout = register_module("dropout", std::make_shared<Dropout>(c.dropout));
}

Tensor GPTMLP::forward(const Tensor& x) {
  return dropout->forward(c_proj->forward(gelu(c_fc->forward(x), /*tanh_approximation=*/true)));
}

GPTBlock::GPTBlock(const GPTConfig& c) {
  ln_1 = register_module("ln_1", std::make_shared<LayerNorm>(c.n_embd));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(c));
  ln_2 = register_module("ln_2", std::make_shared<LayerNorm>(c.n_embd));
  mlp = register_module("mlp", std::make_shared<GPTMLP>(c));
}

Tensor GPTBlock::forward(const Tensor& x) {
  Tensor h = x + attn->forward(ln_1->forward(x));
  return h + mlp->forward(ln_2->forward(h));
}

GPT::GPT(const GPTConfig& config) : config_(config) {
  config_.validate();
  const GPTConfig& c = config_;
  auto holder = std::make_shared<Container>();
  transformer = register_module("transformer", std::static_pointer_cast<Module>(holder));
  wte = std::make_shared<Embedding>(c.vocab_size, c.n_embd);
  wpe = std::make_shared<Embedding>(c.block_size, c.n_embd);
  drop = std::make_shared<Dropout>(c.dropout);
  holder->add_child("wte", wte);
  holder->add_child("wpe", wpe);
  holder->add_child("drop", drop);
  auto h = std::make_shared<Container>();
  holder->add_child("h", h);
  for (int64_t i = 0; i < c.n_layer; i++) {
    blocks.push_back(std::make_shared<GPTBlock>(c));
    h->add_child(std::to_string(i), blocks.back());
  }
  ln_f = std::make_shared<LayerNorm>(c.n_embd);
  holder->add_child("ln_f", ln_f);
  if (!c.tie_embeddings) lm_head = register_module("lm_head", std::make_shared<Linear>(c.n_embd, c.vocab_size, false));

  // GPT-2's initialisation: N(0, 0.02) weights, zero biases, and the residual projections
  // scaled by 1/sqrt(2 * n_layer).
  const double proj_std = 0.02 / std::sqrt(2.0 * double(c.n_layer));
  for (auto& [name, p] : named_parameters()) {
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool is_norm = name.find(".ln_") != std::string::npos;
    if (is_norm) continue;  // LayerNorm keeps weight 1, bias 0
    if (is_bias) {
      init::zeros_(p);
    } else if (name.size() >= 14 && name.compare(name.size() - 14, 14, "c_proj.weight") == 0) {
      init::normal_(p, 0.0, proj_std);
    } else {
      init::normal_(p, 0.0, 0.02);
    }
  }
}

Tensor GPT::forward(const Tensor& idx) {
  MOX_CHECK(idx.dim() == 2 && !is_floating(idx.dtype()), "GPT",
            "expected integer token ids [B, T], got " + idx.desc());
  const int64_t T = idx.size(1);
  MOX_CHECK(T >= 1 && T <= config_.block_size, "GPT",
            "sequence length " + std::to_string(T) + " is outside 1.." + std::to_string(config_.block_size) +
                " (block_size)");
  Tensor pos = arange(T);
  Tensor x = drop->forward(wte->forward(idx) + wpe->forward(pos));
  for (auto& b : blocks) x = b->forward(x);
  x = ln_f->forward(x);
  return lm_head ? lm_head->forward(x) : matmul(x, wte->weight.transpose(0, 1));
}

}  // namespace mox::nn
