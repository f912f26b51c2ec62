#pragma once
// BERT (Devlin et al. 2019) in the layout of Hugging Face's BertModel, BertForMaskedLM and
// BertForSequenceClassification: word + learned position + token-type embeddings and a
// LayerNorm, then num_hidden_layers post-LayerNorm encoder blocks
//   x = LN(x + dense(self_attention(x)));  x = LN(x + dense(gelu(dense(x))))
// (bidirectional multi-head attention through the fused scaled_dot_product_attention op, with
// padding keys hidden; exact erf GELU), and a pooler tanh(dense(h[:, 0])).
//
// Parameter names are Hugging Face's, so that a BERT state dict (safetensors) loads:
//   embeddings.{word_embeddings,position_embeddings,token_type_embeddings,LayerNorm}
//   encoder.layer.<i>.attention.self.{query,key,value}
//   encoder.layer.<i>.attention.output.{dense,LayerNorm}
//   encoder.layer.<i>.intermediate.dense, encoder.layer.<i>.output.{dense,LayerNorm}
//   pooler.dense
// prefixed with "bert." in the heads, which add cls.predictions.{transform.dense,
// transform.LayerNorm,bias} (MLM; the decoder's weight is the word embedding's, so there is no
// cls.predictions.decoder parameter) or classifier (sequence classification). Weights are in
// nn.Linear's [out, in] layout, as HF stores them.
//
// As in HF, BertForMaskedLM's encoder has no pooler (add_pooling_layer = false), and
// BertForSequenceClassification's has one: to start a classifier from a pre-trained MLM's
// encoder, load bert.state_dict() into the classifier's bert with strict = false (the pooler
// keeps its fresh initialisation, as HF does).
//
// Differences from HF: the word embedding has no padding_idx (its pad row is an ordinary row),
// and a query whose keys are all padding yields 0 instead of a uniform average of the values
// (such rows are padding themselves and never read).
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

struct BertConfig {
  int64_t vocab_size = 256, hidden_size = 128, num_hidden_layers = 4, num_attention_heads = 4;
  int64_t intermediate_size = 512, max_position_embeddings = 128, type_vocab_size = 2;
  double hidden_dropout_prob = 0.0, attention_probs_dropout_prob = 0.0, layer_norm_eps = 1e-12;
  void validate() const;  // throws mox::Error naming the field
  // Parameters of BertForMaskedLM (no pooler; the tied decoder weight counted once).
  int64_t num_parameters() const;
};

// mox's model.json for a BERT: {"type": "bert", "vocab_size": .., "hidden_size": .., ...every
// field above}. from_json: missing keys keep the defaults; a wrong type or an invalid value
// throws mox::Error naming `where` and the key.
nlohmann::json bert_config_to_json(const BertConfig& c);
BertConfig bert_config_from_json(const nlohmann::json& j, const std::string& where);

struct BertOutput {
  Tensor sequence;  // [B, T, H] the last encoder layer's output
  Tensor pooled;    // [B, H] tanh(pooler.dense(sequence[:, 0])); undefined without a pooler
};

// ---- the pieces (HF's module names in comments) ----

// embeddings: LN(word(ids) + position(0..T-1) + token_type(types)), then dropout.
class BertEmbeddings : public Module {
 public:
  explicit BertEmbeddings(const BertConfig& c);
  Tensor run(const Tensor& input_ids, const Tensor& token_type_ids);
  Tensor forward(const Tensor& input_ids) override { return run(input_ids, Tensor()); }
  std::string type_name() const override { return "BertEmbeddings"; }
  std::shared_ptr<Embedding> word_embeddings, position_embeddings, token_type_embeddings;
  std::shared_ptr<LayerNorm> norm;  // "LayerNorm"
  std::shared_ptr<Dropout> dropout;
};

// attention.self: query/key/value projections and softmax(q k^T / sqrt(d)) v per head.
class BertSelfAttention : public Module {
 public:
  explicit BertSelfAttention(const BertConfig& c);
  // x [B, T, H]; key_padding_mask: undefined or u8 [B, T] with nonzero = padding (the fused
  // op's convention). Returns the heads' outputs merged back to [B, T, H].
  Tensor run(const Tensor& x, const Tensor& key_padding_mask);
  Tensor forward(const Tensor& x) override { return run(x, Tensor()); }
  std::string type_name() const override { return "BertSelfAttention"; }
  std::shared_ptr<Linear> query, key, value;
  std::shared_ptr<Dropout> dropout;  // on the attention probabilities
  int64_t num_heads, hidden;
};

// attention.output and output: LN(residual + dropout(dense(h))).
class BertDenseNorm : public Module {
 public:
  BertDenseNorm(int64_t in_features, const BertConfig& c, std::string type);
  Tensor run(const Tensor& h, const Tensor& residual);
  std::string type_name() const override { return type_; }
  std::shared_ptr<Linear> dense;
  std::shared_ptr<LayerNorm> norm;  // "LayerNorm"
  std::shared_ptr<Dropout> dropout;

 private:
  std::string type_;
};

// attention: self + output.
class BertAttention : public Module {
 public:
  explicit BertAttention(const BertConfig& c);
  Tensor run(const Tensor& x, const Tensor& key_padding_mask);
  Tensor forward(const Tensor& x) override { return run(x, Tensor()); }
  std::string type_name() const override { return "BertAttention"; }
  std::shared_ptr<BertSelfAttention> self;
  std::shared_ptr<BertDenseNorm> output;
};

// One encoder block: attention, then intermediate (dense + GELU) and output.
class BertLayer : public Module {
 public:
  explicit BertLayer(const BertConfig& c);
  Tensor run(const Tensor& x, const Tensor& key_padding_mask);
  Tensor forward(const Tensor& x) override { return run(x, Tensor()); }
  std::string type_name() const override { return "BertLayer"; }
  std::shared_ptr<BertAttention> attention;
  std::shared_ptr<Module> intermediate;  // holds intermediate_dense as "dense"
  std::shared_ptr<Linear> intermediate_dense;
  std::shared_ptr<BertDenseNorm> output;
};

// ---- the models ----

class BertModel : public Module {
 public:
  explicit BertModel(const BertConfig& config, bool add_pooling_layer = true);
  // input_ids: integer [B, T], T <= max_position_embeddings. token_type_ids: undefined (all
  // 0) or integer [B, T] in [0, type_vocab_size). attention_mask: undefined (no padding) or an
  // integer/bool [B, T] with 1 = real token, 0 = padding (HF's convention).
  BertOutput run(const Tensor& input_ids, const Tensor& token_type_ids,
                 const Tensor& attention_mask);
  Tensor forward(const Tensor& input_ids) override;  // the sequence output
  std::string type_name() const override { return "BertModel"; }
  const BertConfig& config() const { return config_; }

  std::shared_ptr<BertEmbeddings> embeddings;
  std::shared_ptr<Module> encoder;  // encoder.layer.<i>
  std::vector<std::shared_ptr<BertLayer>> layers;
  std::shared_ptr<Module> pooler;  // pooler.dense; null without a pooling layer
  std::shared_ptr<Linear> pooler_dense;

 private:
  BertConfig config_;
};

// cls.predictions: transform (dense, GELU, LayerNorm), then h @ word_embeddings^T + bias.
class BertLMPredictionHead : public Module {
 public:
  BertLMPredictionHead(const BertConfig& c, Tensor decoder_weight);
  Tensor forward(const Tensor& h) override;  // [B, T, H] -> [B, T, V]
  std::string type_name() const override { return "BertLMPredictionHead"; }
  Tensor bias;  // [V], registered before transform as in HF
  std::shared_ptr<Module> transform;
  std::shared_ptr<Linear> transform_dense;
  std::shared_ptr<LayerNorm> transform_norm;  // transform.LayerNorm
  Tensor decoder_weight;  // the word embedding's weight (tied, not registered here)
};

class BertForMaskedLM : public Module {
 public:
  explicit BertForMaskedLM(const BertConfig& config);
  // [B, T, vocab_size] logits; arguments as BertModel::run.
  Tensor logits(const Tensor& ids, const Tensor& token_type_ids, const Tensor& attention_mask);
  Tensor forward(const Tensor& ids) override { return logits(ids, Tensor(), Tensor()); }
  std::string type_name() const override { return "BertForMaskedLM"; }
  const BertConfig& config() const { return config_; }

  std::shared_ptr<BertModel> bert;  // without a pooler
  std::shared_ptr<Module> cls;      // cls.predictions
  std::shared_ptr<BertLMPredictionHead> predictions;

 private:
  BertConfig config_;
};

class BertForSequenceClassification : public Module {
 public:
  BertForSequenceClassification(const BertConfig& config, int64_t num_labels);
  // [B, num_labels] = classifier(dropout(pooled)); arguments as BertModel::run.
  Tensor logits(const Tensor& ids, const Tensor& token_type_ids, const Tensor& attention_mask);
  Tensor forward(const Tensor& ids) override { return logits(ids, Tensor(), Tensor()); }
  std::string type_name() const override { return "BertForSequenceClassification"; }
  const BertConfig& config() const { return config_; }

  std::shared_ptr<BertModel> bert;  // with a pooler
  std::shared_ptr<Dropout> dropout;
  std::shared_ptr<Linear> classifier;
  int64_t num_labels;

 private:
  BertConfig config_;
};

}  // namespace mox::nn
