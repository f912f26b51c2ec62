#pragma once
// GPT models on disk, in mox's own layout and in Hugging Face's:
//
//   mox layout   <dir>/model.json         gpt_config_to_json (gpt.h): {"type": "gpt", ...}
//                <dir>/model.safetensors  GPT::named_parameters() names, PyTorch nn.Linear
//                                         layout ([out, in])
//   HF layout    <dir>/config.json        transformers' GPT2Config (model_type "gpt2")
//                <dir>/model.safetensors  GPT2LMHeadModel's state dict: "transformer.h.0..."
//                                         (save_pretrained) or "h.0..." (GPT2Model, as the
//                                         Hub's gpt2 checkpoints hold it); Conv1D weights
//                                         (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj)
//                                         stored [in, out]
//
// The parameter names are the same in both (mox's GPT uses GPT-2's); only the layout of the
// four Conv1D weights per block and the config file differ. Loading checks every tensor
// before any is copied: a missing, unexpected or mis-shaped tensor is a mox::Error naming the
// file and the tensor. HF's causal-mask buffers (h.<i>.attn.bias, h.<i>.attn.masked_bias) are
// skipped; lm_head.weight is accepted with tied embeddings when it equals wte's weight (older
// checkpoints store both). F32, F16, BF16 and F64 tensors are read (converted to f32).
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "mox/nn/models/gpt.h"

namespace mox::nn {

// Hugging Face GPT-2 config.json -> GPTConfig. Keys (missing ones take GPT2Config's defaults,
// as transformers does): n_layer (12), n_head (12), n_embd (768), n_positions (1024; n_ctx
// when n_positions is absent) -> block_size, vocab_size (50257), layer_norm_epsilon (1e-5),
// activation_function ("gelu_new"; "gelu_new" and "gelu_pytorch_tanh" -> "gelu_tanh",
// "gelu" -> "gelu"), resid_pdrop (0.1) -> dropout (mox has one rate; GPT-2's three are
// equal), tie_word_embeddings (true), model_type ("gpt2" when present). Settings mox's GPT
// does not implement are refused naming the key: n_inner other than null / 4 * n_embd,
// scale_attn_weights = false, scale_attn_by_inverse_layer_idx = true, add_cross_attention.
// Errors: mox::Error(where, "<key>: ...").
GPTConfig gpt_config_from_hf(const nlohmann::json& j, const std::string& where);
// GPTConfig -> config.json that transformers' GPT2Config / GPT2LMHeadModel read
// (architectures ["GPT2LMHeadModel"], model_type "gpt2", n_ctx = n_positions, ...).
nlohmann::json gpt_config_to_hf(const GPTConfig& c);

// The GPT stored in `dir` in either layout (model.json present -> mox layout, else
// config.json -> HF layout), in eval mode (as from_pretrained returns it).
std::shared_ptr<GPT> load_gpt(const std::string& dir);
// mox layout: model.json + model.safetensors (metadata {"format": "pt"}). `dir` is created
// when missing; each file is written atomically.
void save_gpt(const GPT& model, const std::string& dir);
// HF layout: config.json + model.safetensors with "transformer.*" names and Conv1D weights
// [in, out], no lm_head.weight when tied (as save_pretrained writes it), metadata
// {"format": "pt"} (from_pretrained requires it). Readable by GPT2LMHeadModel.from_pretrained.
// Refused (mox::Error) for a GPT with per-layer widths (GPTConfig::layer_heads / layer_mlp).
void save_gpt_hf(const GPT& model, const std::string& dir);

// True for the names of the four Conv1D weights of a block ("....attn.c_attn.weight",
// "....attn.c_proj.weight", "....mlp.c_fc.weight", "....mlp.c_proj.weight").
bool gpt_is_conv1d_weight(const std::string& name);

}  // namespace mox::nn
