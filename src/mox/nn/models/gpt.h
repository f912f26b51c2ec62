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
  void validate() const;       // throws mox::Error naming the field
  // Parameters of the model this config describes (tied embeddings counted once).
  int64_t num_parameters() const;
};

class CausalSelfAttention : public Module {
 public:
  explicit CausalSelfAttention(const GPTConfig& c);
  Tensor forward(const Tensor& x) override;  // [B, T, C] -> [B, T, C]
  std::string type_name() const override { return "CausalSelfAttention"; }
  std::shared_ptr<Linear> c_attn, c_proj;
  std::shared_ptr<Dropout> resid_dropout;
  int64_t n_head, n_embd;
  double attn_dropout;
};

class GPTMLP : public Module {
 public:
  explicit GPTMLP(const GPTConfig& c);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MLP"; }
  std::shared_ptr<Linear> c_fc, c_proj;
  std::shared_ptr<Dropout> dropout;
};

class GPTBlock : public Module {
 public:
  explicit GPTBlock(const GPTConfig& c);
  Tensor forward(const Tensor& x) override;  // x + attn(ln_1(x)), then + mlp(ln_2(.))
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
  const GPTConfig& config() const { return config_; }

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
