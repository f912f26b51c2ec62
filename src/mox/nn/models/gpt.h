#pragma once
// GPT-2's architecture (Radford et al. 2019; the layout of Hugging Face's GPT2LMHeadModel and
// nanoGPT): token + learned position embeddings, n_layer pre-LayerNorm blocks of causal
// multi-head self-attention (the fused scaled_dot_product_attention op) and a GELU (tanh) MLP,
// a final LayerNorm and a language-model head whose weight is the token embedding's when
// tie_embeddings is set (then there is no separate lm_head parameter).
// Parameter names follow GPT-2's: transformer.wte.weight, transformer.wpe.weight,
// transformer.h.<i>.ln_1.weight, .attn.c_attn.weight, .attn.c_proj.weight, .ln_2, .mlp.c_fc,
// .mlp.c_proj, transformer.ln_f, lm_head.weight (untied only); weights in PyTorch's
// nn.Linear layout [out, in] (Hugging Face's Conv1D stores [in, out]: transpose on import).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mox/nn/layers/dropout.h"
#include "mox/nn/layers/embedding.h"
#include "mox/nn/layers/layer_norm.h"
#include "mox/nn/layers/linear.h"
#include "mox/nn/module.h"

namespace mox::nn {

struct GPTConfig {
  int64_t n_layer = 4, n_head = 4, n_embd = 128;
  int64_t block_size = 128;  // longest context
  int64_t vocab_size = 256;
  double dropout = 0.0;
  bool bias = true;            // biases in the Linear layers and LayerNorms
  bool tie_embeddings = true;  // lm_head shares the token embedding's weight
  // The MLP's GELU: "gelu_tanh" (GPT-2's "gelu_new", the tanh approximation) or "gelu"
  // (the exact erf form, PyTorch's nn.GELU() default, as nanoGPT uses).
  std::string activation = "gelu_tanh";
  double layer_norm_eps = 1e-5;
  // Per-layer widths of a structurally pruned GPT (compress/structured.h); empty = the
  // defaults everywhere. layer_heads[l]: attention heads of layer l (n_head), each of size
  // head_dim() = n_embd / n_head, so layer l's attention is layer_heads[l] * head_dim() wide
  // (c_attn [3 * width, n_embd], c_proj [n_embd, width]). layer_mlp[l]: MLP hidden units of
  // layer l (4 * n_embd): c_fc [layer_mlp[l], n_embd], c_proj [n_embd, layer_mlp[l]].
  std::vector<int64_t> layer_heads, layer_mlp;
  void validate() const;       // throws mox::Error naming the field
  // Parameters of the model this config describes (tied embeddings counted once).
  int64_t num_parameters() const;
  int64_t head_dim() const { return n_embd / n_head; }
  int64_t heads(int64_t layer) const { return layer_heads.empty() ? n_head : layer_heads.at(size_t(layer)); }
  int64_t mlp_width(int64_t layer) const { return layer_mlp.empty() ? 4 * n_embd : layer_mlp.at(size_t(layer)); }
};

// mox's model.json for a GPT: {"type": "gpt", "n_layer": .., "n_head": .., "n_embd": ..,
// "block_size": .., "vocab_size": .., "dropout": .., "bias": .., "tie_embeddings": ..,
// "activation": .., "layer_norm_eps": .., "layer_heads": [..], "layer_mlp": [..]} (the last two
// written only when set, so unpruned models keep GPT-2's keys). from_json: missing keys keep the defaults, a wrong
// type or value throws mox::Error naming `where` and the key.
nlohmann::json gpt_config_to_json(const GPTConfig& c);
GPTConfig gpt_config_from_json(const nlohmann::json& j, const std::string& where);

// Keys and values of the positions a GPT has already seen, for generation one token at a time
// (GPT::forward_cached). Per layer, k[l] and v[l] are [B, H_l, block_size, D] buffers (H_l:
// the layer's heads, GPTConfig::heads(l)) of which
// the first `length` slots are filled. Rows of a batch share the slots: prompts of different
// lengths are left-padded, `pad` (i64 [B]) says how many leading slots of each row are
// padding; row b's token in slot s has position s - pad[b], and its padded slots are hidden
// from attention by a key padding mask.
struct KVCache {
  std::vector<Tensor> k, v;
  int64_t length = 0;  // slots filled
  Tensor pad;          // optional i64 [B]: left-padding count per row
  // The key padding mask built from `pad` (u8 [B, block_size]); rebuilt when `pad` is set to
  // another tensor (not when its values are edited in place).
  Tensor key_mask, key_mask_pad;
  int64_t batch() const { return k.empty() ? 0 : k[0].size(0); }
};

class CausalSelfAttention : public Module {
 public:
  // Layer `layer` of c: c.heads(layer) heads of c.head_dim().
  explicit CausalSelfAttention(const GPTConfig& c, int64_t layer = 0);
  Tensor forward(const Tensor& x) override;  // [B, T, C] -> [B, T, C]
  // Inference over a cache (under NoGradGuard): x [B, t, C] holds the new positions; their
  // keys and values are written into k_cache/v_cache ([B, H, S, D]) at slots
  // length..length+t-1, and the queries attend to slots 0..length+t-1 (mask: u8 [B,
  // length+t], nonzero = padding, or undefined).
  Tensor forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache,
                        int64_t length, const Tensor& mask);
  // residual + forward(x); the projection adds the residual in its GEMM's epilogue when no
  // dropout stands between them (linear_residual).
  Tensor forward_residual(const Tensor& x, const Tensor& residual);
  std::string type_name() const override { return "CausalSelfAttention"; }
  std::shared_ptr<Linear> c_attn, c_proj;
  std::shared_ptr<Dropout> resid_dropout;
  int64_t n_head, n_embd, head_dim;  // this layer's heads; attention width n_head * head_dim
  double attn_dropout;
};

class GPTMLP : public Module {
 public:
  explicit GPTMLP(const GPTConfig& c, int64_t layer = 0);  // c.mlp_width(layer) hidden units
  Tensor forward(const Tensor& x) override;
  Tensor forward_residual(const Tensor& x, const Tensor& residual);  // residual + forward(x)
  std::string type_name() const override { return "MLP"; }
  std::shared_ptr<Linear> c_fc, c_proj;
  std::shared_ptr<Dropout> dropout;
  bool exact_gelu = false;
};

class GPTBlock : public Module {
 public:
  explicit GPTBlock(const GPTConfig& c, int64_t layer = 0);
  Tensor forward(const Tensor& x) override;  // x + attn(ln_1(x)), then + mlp(ln_2(.))
  Tensor forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache,
                        int64_t length, const Tensor& mask);  // see CausalSelfAttention
  std::string type_name() const override { return "Block"; }
  std::shared_ptr<LayerNorm> ln_1, ln_2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<GPTMLP> mlp;
};

class GPT : public Module {
 public:
  explicit GPT(const GPTConfig& config);
  // idx: i64 token ids [B, T] with T <= block_size -> logits [B, T, vocab_size].
  Tensor forward(const Tensor& idx) override;
  std::string type_name() const override { return "GPT"; }

  // An empty cache for `batch` rows (zeroed buffers in the parameters' dtype, length 0).
  KVCache make_cache(int64_t batch) const;
  // Incremental inference (runs under NoGradGuard; dropout is never applied): idx [B, t]
  // holds the next t tokens of each row; their keys/values are appended to the cache at slots
  // length..length+t-1 (length grows by t) and the logits returned: [B, t, vocab_size], or
  // only the last position's [B, vocab_size] when last_only. Throws mox::Error when the batch
  // does not match the cache or length + t > block_size (the caller starts a new cache).
  Tensor forward_cached(const Tensor& idx, KVCache& cache, bool last_only = true);
  const GPTConfig& config() const { return config_; }
  // Replaces the config after the blocks' widths were changed in place (structured pruning,
  // compress/structured.h, swaps c_attn/c_proj/c_fc for narrower Linears). Only layer_heads
  // and layer_mlp may differ from the current config; every block must already have the
  // widths c describes (else mox::Error naming the layer).
  void set_config(const GPTConfig& c);

  std::shared_ptr<Module> transformer;  // wte, wpe, drop, h.<i>, ln_f
  std::shared_ptr<Embedding> wte, wpe;
  std::shared_ptr<Dropout> drop;
  std::vector<std::shared_ptr<GPTBlock>> blocks;
  std::shared_ptr<LayerNorm> ln_f;
  std::shared_ptr<Linear> lm_head;  // null when tied

 private:
  GPTConfig config_;
};

}  // namespace mox::nn
