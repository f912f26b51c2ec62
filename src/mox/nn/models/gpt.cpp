#include "mox/nn/models/gpt.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "mox/autograd/node.h"
#include "mox/io/json_field.h"
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

// GELU(fc(x)) and residual + proj(h), with the bias add (and GELU-tanh) or the residual add in
// the GEMM's epilogue when the Linear holds a float weight; a quantised Linear (compress/,
// no float weight) runs its own forward.
Tensor linear_gelu_of(Linear& fc, const Tensor& x, bool exact) {
  if (exact) return gelu(fc.forward(x), false);
  if (!fc.weight.defined()) return gelu(fc.forward(x), true);
  return linear_gelu(x, fc.weight, fc.bias);
}
Tensor linear_residual_of(Linear& proj, const Tensor& h, const Tensor& residual) {
  if (!proj.weight.defined()) return residual + proj.forward(h);
  return linear_residual(h, proj.weight, proj.bias, residual);
}

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
  MOX_CHECK(activation == "gelu_tanh" || activation == "gelu", "GPTConfig",
            "activation must be \"gelu_tanh\" or \"gelu\", got \"" + activation + "\"");
  MOX_CHECK(layer_norm_eps > 0, "GPTConfig", "layer_norm_eps must be > 0");
  auto per_layer = [&](const std::vector<int64_t>& v, const char* name) {
    if (v.empty()) return;
    MOX_CHECK(int64_t(v.size()) == n_layer, "GPTConfig",
              std::string(name) + " has " + std::to_string(v.size()) + " entries, n_layer is " +
                  std::to_string(n_layer) + " (one per layer, or none)");
    for (size_t l = 0; l < v.size(); l++)
      MOX_CHECK(v[l] >= 1, "GPTConfig",
                std::string(name) + "[" + std::to_string(l) + "] must be >= 1, got " + std::to_string(v[l]));
  };
  per_layer(layer_heads, "layer_heads");
  per_layer(layer_mlp, "layer_mlp");
}

nlohmann::json gpt_config_to_json(const GPTConfig& c) {
  nlohmann::json j = {{"type", "gpt"},         {"n_layer", c.n_layer},
                      {"n_head", c.n_head},    {"n_embd", c.n_embd},
                      {"block_size", c.block_size}, {"vocab_size", c.vocab_size},
                      {"dropout", c.dropout},  {"bias", c.bias},
                      {"tie_embeddings", c.tie_embeddings}, {"activation", c.activation},
                      {"layer_norm_eps", c.layer_norm_eps}};
  if (!c.layer_heads.empty()) j["layer_heads"] = c.layer_heads;
  if (!c.layer_mlp.empty()) j["layer_mlp"] = c.layer_mlp;
  return j;
}

namespace {

// An optional array of integers (model.json's layer_heads / layer_mlp).
void read_int_list(const nlohmann::json& j, const char* key, std::vector<int64_t>& out,
                   const std::string& where) {
  if (!j.contains(key)) return;
  const nlohmann::json& v = j.at(key);
  MOX_CHECK(v.is_array(), where, std::string(key) + ": expected an array of integers, got " + v.dump());
  out.clear();
  for (const nlohmann::json& e : v) {
    MOX_CHECK(e.is_number_integer(), where,
              std::string(key) + ": expected an array of integers, got " + v.dump());
    out.push_back(e.get<int64_t>());
  }
}

}  // namespace

GPTConfig gpt_config_from_json(const nlohmann::json& j, const std::string& where) {
  io::check_json_kind(j, "gpt", where);
  GPTConfig c;
  auto get = [&](const char* key, auto& field) { io::json_read(j, key, field, where); };
  get("n_layer", c.n_layer);
  get("n_head", c.n_head);
  get("n_embd", c.n_embd);
  get("block_size", c.block_size);
  get("vocab_size", c.vocab_size);
  get("dropout", c.dropout);
  get("bias", c.bias);
  get("tie_embeddings", c.tie_embeddings);
  get("activation", c.activation);
  get("layer_norm_eps", c.layer_norm_eps);
  read_int_list(j, "layer_heads", c.layer_heads, where);
  read_int_list(j, "layer_mlp", c.layer_mlp, where);
  return io::validated(c, where);
}

int64_t GPTConfig::num_parameters() const {
  const int64_t C = n_embd, b = bias ? 1 : 0;
  const int64_t ln = (1 + b) * C;
  int64_t blocks = 0;
  for (int64_t l = 0; l < n_layer; l++) {
    const int64_t A = heads(l) * head_dim(), M = mlp_width(l);  // attention and MLP widths
    blocks += ln + (C * 3 * A + b * 3 * A) + (A * C + b * C) + ln + (C * M + b * M) + (M * C + b * C);
  }
  return vocab_size * C + block_size * C + blocks + ln + (tie_embeddings ? 0 : vocab_size * C);
}

CausalSelfAttention::CausalSelfAttention(const GPTConfig& c, int64_t layer)
    : n_head(c.heads(layer)), n_embd(c.n_embd), head_dim(c.head_dim()), attn_dropout(c.dropout) {
  const int64_t A = n_head * head_dim;  // attention width (n_embd unless heads were pruned)
  c_attn = register_module("c_attn", std::make_shared<Linear>(c.n_embd, 3 * A, c.bias));
  c_proj = register_module("c_proj", std::make_shared<Linear>(A, c.n_embd, c.bias));
  resid_dropout = register_module("resid_dropout", std::make_shared<Dropout>(c.dropout));
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  MOX_CHECK(x.dim() == 3 && x.size(2) == n_embd, "CausalSelfAttention",
            "expected [B, T, " + std::to_string(n_embd) + "], got " + shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), H = n_head, D = head_dim, A = H * D;
  if (attn_dropout == 0 || !is_training())  // the fused path: no split, no head copies
    return resid_dropout->forward(c_proj->forward(attention_qkv(c_attn->forward(x), n_head, true)));
  std::vector<Tensor> qkv = split(c_attn->forward(x), A, 2);  // 3 x [B, T, A]
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, H, D}).transpose(1, 2); };  // [B, H, T, D]
  Tensor y = scaled_dot_product_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), /*causal=*/true);
  if (attn_dropout > 0 && is_training()) y = dropout(y, attn_dropout, true);
  y = y.transpose(1, 2).contiguous().reshape({B, T, A});
  return resid_dropout->forward(c_proj->forward(y));
}

Tensor CausalSelfAttention::forward_residual(const Tensor& x, const Tensor& residual) {
  const bool no_dropout = attn_dropout == 0 || !is_training();
  if (!no_dropout) return residual + forward(x);
  Tensor y = attention_qkv(c_attn->forward(x), n_head, true);
  return linear_residual_of(*c_proj, y, residual);
}

Tensor CausalSelfAttention::forward_cached(const Tensor& x, const Tensor& k_cache,
                                           const Tensor& v_cache, int64_t length,
                                           const Tensor& mask) {
  const int64_t B = x.size(0), t = x.size(1), H = n_head, D = head_dim;
  // [B, t, 3A] -> q, k, v as [B, H, t, D] views (one view + one permute: few ops per token).
  Tensor qkv = c_attn->forward(x).view({B, t, 3, H, D}).permute({2, 0, 3, 1, 4});
  // The new keys and values go straight into their slots; attention then reads the filled
  // part of the buffers as strided views (unit stride in D, so the kernel copies nothing).
  k_cache.narrow(2, length, t).copy_(qkv.select(0, 1));
  v_cache.narrow(2, length, t).copy_(qkv.select(0, 2));
  Tensor y = scaled_dot_product_attention(qkv.select(0, 0), k_cache.narrow(2, 0, length + t),
                                          v_cache.narrow(2, 0, length + t), /*causal=*/true,
                                          -1.0, mask);
  // y is laid out [B, t, H, D]: merging the heads is a view.
  return c_proj->forward(y.transpose(1, 2).reshape({B, t, H * D}));
}

GPTMLP::GPTMLP(const GPTConfig& c, int64_t layer) : exact_gelu(c.activation == "gelu") {
  const int64_t M = c.mlp_width(layer);
  c_fc = register_module("c_fc", std::make_shared<Linear>(c.n_embd, M, c.bias));
  c_proj = register_module("c_proj", std::make_shared<Linear>(M, c.n_embd, c.bias));
  dropout = register_module("dropout", std::make_shared<Dropout>(c.dropout));
}

Tensor GPTMLP::forward(const Tensor& x) {
  // GELU-tanh with the bias add rides in c_fc's GEMM epilogue (one pass over the activations).
  return dropout->forward(c_proj->forward(linear_gelu_of(*c_fc, x, exact_gelu)));
}

Tensor GPTMLP::forward_residual(const Tensor& x, const Tensor& residual) {
  if (dropout->p > 0 && is_training()) return residual + forward(x);
  return linear_residual_of(*c_proj, linear_gelu_of(*c_fc, x, exact_gelu), residual);
}

GPTBlock::GPTBlock(const GPTConfig& c, int64_t layer) {
  ln_1 = register_module("ln_1", std::make_shared<LayerNorm>(c.n_embd, c.layer_norm_eps, true, c.bias));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(c, layer));
  ln_2 = register_module("ln_2", std::make_shared<LayerNorm>(c.n_embd, c.layer_norm_eps, true, c.bias));
  mlp = register_module("mlp", std::make_shared<GPTMLP>(c, layer));
}

Tensor GPTBlock::forward(const Tensor& x) {
  Tensor h = attn->forward_residual(ln_1->forward(x), x);
  return mlp->forward_residual(ln_2->forward(h), h);
}

Tensor GPTBlock::forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache,
                                int64_t length, const Tensor& mask) {
  Tensor h = x + attn->forward_cached(ln_1->forward(x), k_cache, v_cache, length, mask);
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
    blocks.push_back(std::make_shared<GPTBlock>(c, i));
    h->add_child(std::to_string(i), blocks.back());
  }
  ln_f = std::make_shared<LayerNorm>(c.n_embd, c.layer_norm_eps, true, c.bias);
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

KVCache GPT::make_cache(int64_t batch) const {
  MOX_CHECK(batch >= 1, "GPT::make_cache", "batch must be >= 1, got " + std::to_string(batch));
  const int64_t D = config_.head_dim();
  const TensorOptions opt(wte->weight.dtype(), wte->weight.device());
  KVCache cache;
  for (size_t l = 0; l < blocks.size(); l++) {
    const int64_t H = blocks[l]->attn->n_head;  // config_.heads(l)
    cache.k.push_back(zeros({batch, H, config_.block_size, D}, opt));
    cache.v.push_back(zeros({batch, H, config_.block_size, D}, opt));
  }
  return cache;
}

void GPT::set_config(const GPTConfig& c) {
  const char* where = "GPT::set_config";
  c.validate();
  GPTConfig same = c;  // everything but the per-layer widths must stay
  same.layer_heads = config_.layer_heads;
  same.layer_mlp = config_.layer_mlp;
  MOX_CHECK(gpt_config_to_json(same) == gpt_config_to_json(config_), where,
            "only layer_heads and layer_mlp may change: " + gpt_config_to_json(c).dump() + " vs " +
                gpt_config_to_json(config_).dump());
  for (size_t l = 0; l < blocks.size(); l++) {
    const CausalSelfAttention& a = *blocks[l]->attn;
    const GPTMLP& m = *blocks[l]->mlp;
    const int64_t A = c.heads(int64_t(l)) * c.head_dim(), M = c.mlp_width(int64_t(l));
    const std::string layer = "layer " + std::to_string(l) + ": ";
    MOX_CHECK(a.n_head == c.heads(int64_t(l)), where,
              layer + "the attention has " + std::to_string(a.n_head) + " heads, the config " +
                  std::to_string(c.heads(int64_t(l))));
    MOX_CHECK(a.c_attn->out_features == 3 * A && a.c_proj->in_features == A, where,
              layer + "c_attn/c_proj are " + std::to_string(a.c_attn->out_features) + "/" +
                  std::to_string(a.c_proj->in_features) + " wide, the config needs " +
                  std::to_string(3 * A) + "/" + std::to_string(A));
    MOX_CHECK(m.c_fc->out_features == M && m.c_proj->in_features == M, where,
              layer + "the MLP is " + std::to_string(m.c_fc->out_features) + "/" +
                  std::to_string(m.c_proj->in_features) + " wide, the config needs " + std::to_string(M));
  }
  config_ = c;
}

Tensor GPT::forward_cached(const Tensor& idx, KVCache& cache, bool last_only) {
  const char* where = "GPT::forward_cached";
  MOX_CHECK(idx.dim() == 2 && !is_floating(idx.dtype()), where,
            "expected integer token ids [B, t], got " + idx.desc());
  MOX_CHECK(cache.k.size() == blocks.size() && cache.v.size() == blocks.size(), where,
            "the cache holds " + std::to_string(cache.k.size()) + " layers, the model " +
                std::to_string(blocks.size()) + " (make it with GPT::make_cache)");
  const int64_t B = idx.size(0), t = idx.size(1), L = cache.length, S = config_.block_size;
  MOX_CHECK(B == cache.batch(), where,
            "idx has " + std::to_string(B) + " rows, the cache " + std::to_string(cache.batch()));
  MOX_CHECK(t >= 1, where, "no new tokens (idx " + idx.desc() + ")");
  MOX_CHECK(L >= 0 && L + t <= S, where,
            "the cache holds " + std::to_string(L) + " positions; " + std::to_string(t) +
                " more exceed block_size " + std::to_string(S));
  NoGradGuard no_grad;
  Tensor x, mask;
  if (!cache.pad.defined()) {
    // Positions L..L+t-1 are rows of the position table: a view, broadcast over the batch.
    x = wte->forward(idx) + wpe->weight.narrow(0, L, t);
  } else {
    const Tensor& pad = cache.pad;
    MOX_CHECK(pad.dim() == 1 && pad.size(0) == B && pad.dtype() == DType::I64, where,
              "cache.pad must be i64 [" + std::to_string(B) + "], got " + pad.desc());
    const std::vector<int64_t> p = pad.to_vector<int64_t>();
    for (int64_t b = 0; b < B; b++)
      MOX_CHECK(p[size_t(b)] >= 0 && p[size_t(b)] <= S, where,
                "cache.pad[" + std::to_string(b) + "] = " + std::to_string(p[size_t(b)]) +
                    " is outside 0.." + std::to_string(S));
    if (!cache.key_mask.defined() || !cache.key_mask_pad.same(pad)) {
      std::vector<uint8_t> m(size_t(B * S), 0);
      for (int64_t b = 0; b < B; b++)
        std::fill_n(m.begin() + b * S, p[size_t(b)], uint8_t(1));
      cache.key_mask = from_vector(m, {B, S}).to(wte->weight.device());
      cache.key_mask_pad = pad;
    }
    // Row b's slot s holds position s - pad[b]; padded slots (masked) take position 0.
    std::vector<int64_t> pos(size_t(B * t));
    for (int64_t b = 0; b < B; b++)
      for (int64_t j = 0; j < t; j++) pos[size_t(b * t + j)] = std::max<int64_t>(0, L + j - p[size_t(b)]);
    x = wte->forward(idx) + wpe->forward(from_vector(pos, {B, t}));
    mask = cache.key_mask.narrow(1, 0, L + t).contiguous();  // shared by every layer
  }
  for (size_t l = 0; l < blocks.size(); l++)
    x = blocks[l]->forward_cached(x, cache.k[l], cache.v[l], L, mask);
  cache.length = L + t;
  if (last_only) x = x.select(1, t - 1);  // [B, C]: the head runs on one position per row
  x = ln_f->forward(x);
  return lm_head ? lm_head->forward(x) : matmul(x, wte->weight.transpose(0, 1));
}

}  // namespace mox::nn
