#include "mox/nn/models/bert.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "mox/io/json_field.h"
#include "mox/nn/init.h"
#include "mox/ops/ops.h"

namespace mox::nn {

namespace {

// A named group of child modules with no computation of its own (PyTorch's ModuleList or a
// plain holder module), so that parameter names nest as in HF ("encoder.layer.0...").
struct Container : Module {
  explicit Container(std::string type) : type_(std::move(type)) {}
  using Module::add_child;
  std::string type_name() const override { return type_; }
  std::string type_;
};

std::shared_ptr<Container> container(std::string type) { return std::make_shared<Container>(std::move(type)); }

// HF's BertPreTrainedModel._init_weights: Linear and Embedding weights ~ N(0, 0.02), biases
// (including cls.predictions.bias) 0, LayerNorm weight 1 and bias 0.
void init_bert_weights(Module& m) {
  for (auto& [name, p] : m.named_parameters()) {
    const size_t dot = name.rfind('.');
    const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
    const bool is_norm = name.find("LayerNorm.") != std::string::npos;
    if (last == "bias") init::zeros_(p);
    else if (is_norm) init::ones_(p);
    else init::normal_(p, 0.0, 0.02);
  }
}

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

// ------------------------------------------------------------------ config

void BertConfig::validate() const {
  auto positive = [](int64_t v, const char* name) {
    MOX_CHECK(v >= 1, "BertConfig", std::string(name) + " must be >= 1, got " + str(v));
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(intermediate_size, "intermediate_size");
  positive(max_position_embeddings, "max_position_embeddings");
  positive(type_vocab_size, "type_vocab_size");
  MOX_CHECK(hidden_size % num_attention_heads == 0, "BertConfig",
            "hidden_size " + str(hidden_size) + " is not a multiple of num_attention_heads " +
                str(num_attention_heads));
  MOX_CHECK(hidden_dropout_prob >= 0 && hidden_dropout_prob < 1, "BertConfig",
            "hidden_dropout_prob must be in [0, 1), got " + std::to_string(hidden_dropout_prob));
  MOX_CHECK(attention_probs_dropout_prob >= 0 && attention_probs_dropout_prob < 1, "BertConfig",
            "attention_probs_dropout_prob must be in [0, 1), got " +
                std::to_string(attention_probs_dropout_prob));
  MOX_CHECK(layer_norm_eps > 0, "BertConfig", "layer_norm_eps must be > 0");
}

int64_t BertConfig::num_parameters() const {
  const int64_t H = hidden_size, I = intermediate_size, V = vocab_size;
  const int64_t ln = 2 * H;
  const int64_t embeddings = (V + max_position_embeddings + type_vocab_size) * H + ln;
  const int64_t layer = 4 * (H * H + H) + ln + (H * I + I) + (I * H + H) + ln;
  const int64_t mlm_head = (H * H + H) + ln + V;  // decoder weight = word embeddings
  return embeddings + num_hidden_layers * layer + mlm_head;
}

nlohmann::json bert_config_to_json(const BertConfig& c) {
  return {{"type", "bert"},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"num_attention_heads", c.num_attention_heads},
          {"intermediate_size", c.intermediate_size},
          {"max_position_embeddings", c.max_position_embeddings},
          {"type_vocab_size", c.type_vocab_size},
          {"hidden_dropout_prob", c.hidden_dropout_prob},
          {"attention_probs_dropout_prob", c.attention_probs_dropout_prob},
          {"layer_norm_eps", c.layer_norm_eps}};
}

BertConfig bert_config_from_json(const nlohmann::json& j, const std::string& where) {
  io::check_json_kind(j, "bert", where);
  BertConfig c;
  auto get = [&](const char* key, auto& field) { io::json_read(j, key, field, where); };
  get("vocab_size", c.vocab_size);
  get("hidden_size", c.hidden_size);
  get("num_hidden_layers", c.num_hidden_layers);
  get("num_attention_heads", c.num_attention_heads);
  get("intermediate_size", c.intermediate_size);
  get("max_position_embeddings", c.max_position_embeddings);
  get("type_vocab_size", c.type_vocab_size);
  get("hidden_dropout_prob", c.hidden_dropout_prob);
  get("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  get("layer_norm_eps", c.layer_norm_eps);
  return io::validated(c, where);
}

// ------------------------------------------------------------------ pieces

BertEmbeddings::BertEmbeddings(const BertConfig& c) {
  word_embeddings = register_module("word_embeddings", std::make_shared<Embedding>(c.vocab_size, c.hidden_size));
  position_embeddings = register_module(
      "position_embeddings", std::make_shared<Embedding>(c.max_position_embeddings, c.hidden_size));
  token_type_embeddings =
      register_module("token_type_embeddings", std::make_shared<Embedding>(c.type_vocab_size, c.hidden_size));
  norm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
  dropout = register_module("dropout", std::make_shared<Dropout>(c.hidden_dropout_prob));
}

Tensor BertEmbeddings::run(const Tensor& input_ids, const Tensor& token_type_ids) {
  const int64_t T = input_ids.size(1);
  Tensor types = token_type_ids.defined() ? token_type_ids : zeros(input_ids.shape(), DType::I64);
  Tensor x = word_embeddings->forward(input_ids) + token_type_embeddings->forward(types) +
             position_embeddings->forward(arange(T));  // [T, H] broadcast over the batch
  return dropout->forward(norm->forward(x));
}

BertSelfAttention::BertSelfAttention(const BertConfig& c)
    : num_heads(c.num_attention_heads), hidden(c.hidden_size) {
  query = register_module("query", std::make_shared<Linear>(c.hidden_size, c.hidden_size));
  key = register_module("key", std::make_shared<Linear>(c.hidden_size, c.hidden_size));
  value = register_module("value", std::make_shared<Linear>(c.hidden_size, c.hidden_size));
  dropout = register_module("dropout", std::make_shared<Dropout>(c.attention_probs_dropout_prob));
}

Tensor BertSelfAttention::run(const Tensor& x, const Tensor& key_padding_mask) {
  MOX_CHECK(x.dim() == 3 && x.size(2) == hidden, "BertSelfAttention",
            "expected [B, T, " + str(hidden) + "], got " + shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), H = num_heads, D = hidden / num_heads;
  // [B, T, C] -> [B, H, T, D] as a view: the fused kernel takes strided inputs.
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, H, D}).transpose(1, 2); };
  Tensor q = heads(query->forward(x)), k = heads(key->forward(x)), v = heads(value->forward(x));
  if (dropout->p > 0 && is_training()) {
    // Dropout acts on the attention probabilities, which the fused kernel never forms:
    // written out. Padding keys get a large negative score, and probabilities of zero after
    // the softmax so that a row with no real key yields 0 as the fused kernel's does.
    Tensor scores = matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(double(D)));  // [B, H, T, T]
    Tensor probs;
    if (key_padding_mask.defined()) {
      Tensor pad = key_padding_mask.reshape({B, 1, 1, T});
      probs = masked_fill(softmax(masked_fill(scores, pad, -1e30), -1), pad, 0.0);
    } else {
      probs = softmax(scores, -1);
    }
    Tensor y = matmul(dropout->forward(probs), v);  // [B, H, T, D]
    return y.transpose(1, 2).reshape({B, T, hidden});
  }
  Tensor y = scaled_dot_product_attention(q, k, v, /*causal=*/false, -1.0, key_padding_mask);
  // y is a [B, H, T, D] view of a [B, T, H, D] buffer: merging the heads is free.
  return y.transpose(1, 2).reshape({B, T, hidden});
}

BertDenseNorm::BertDenseNorm(int64_t in_features, const BertConfig& c, std::string type)
    : type_(std::move(type)) {
  dense = register_module("dense", std::make_shared<Linear>(in_features, c.hidden_size));
  norm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
  dropout = register_module("dropout", std::make_shared<Dropout>(c.hidden_dropout_prob));
}

Tensor BertDenseNorm::run(const Tensor& h, const Tensor& residual) {
  return norm->forward(dropout->forward(dense->forward(h)) + residual);
}

BertAttention::BertAttention(const BertConfig& c) {
  self = register_module("self", std::make_shared<BertSelfAttention>(c));
  output = register_module("output", std::make_shared<BertDenseNorm>(c.hidden_size, c, "BertSelfOutput"));
}

Tensor BertAttention::run(const Tensor& x, const Tensor& key_padding_mask) {
  return output->run(self->run(x, key_padding_mask), x);
}

BertLayer::BertLayer(const BertConfig& c) {
  attention = register_module("attention", std::make_shared<BertAttention>(c));
  auto inter = container("BertIntermediate");
  intermediate = register_module("intermediate", std::static_pointer_cast<Module>(inter));
  intermediate_dense = std::make_shared<Linear>(c.hidden_size, c.intermediate_size);
  inter->add_child("dense", intermediate_dense);
  output = register_module("output", std::make_shared<BertDenseNorm>(c.intermediate_size, c, "BertOutput"));
}

Tensor BertLayer::run(const Tensor& x, const Tensor& key_padding_mask) {
  Tensor a = attention->run(x, key_padding_mask);
  return output->run(gelu(intermediate_dense->forward(a)), a);
}

// ------------------------------------------------------------------ BertModel

BertModel::BertModel(const BertConfig& config, bool add_pooling_layer) : config_(config) {
  config_.validate();
  const BertConfig& c = config_;
  embeddings = register_module("embeddings", std::make_shared<BertEmbeddings>(c));
  auto enc = container("BertEncoder");
  encoder = register_module("encoder", std::static_pointer_cast<Module>(enc));
  auto list = container("ModuleList");
  enc->add_child("layer", list);
  for (int64_t i = 0; i < c.num_hidden_layers; i++) {
    layers.push_back(std::make_shared<BertLayer>(c));
    list->add_child(std::to_string(i), layers.back());
  }
  if (add_pooling_layer) {
    auto pool = container("BertPooler");
    pooler = register_module("pooler", std::static_pointer_cast<Module>(pool));
    pooler_dense = std::make_shared<Linear>(c.hidden_size, c.hidden_size);
    pool->add_child("dense", pooler_dense);
  }
  init_bert_weights(*this);
}

BertOutput BertModel::run(const Tensor& input_ids, const Tensor& token_type_ids,
                          const Tensor& attention_mask) {
  MOX_CHECK(input_ids.defined() && input_ids.dim() == 2 && is_integral(input_ids.dtype()), "BertModel",
            "expected integer input_ids [B, T], got " + (input_ids.defined() ? input_ids.desc() : "undefined"));
  const int64_t T = input_ids.size(1);
  MOX_CHECK(T >= 1 && T <= config_.max_position_embeddings, "BertModel",
            "sequence length " + str(T) + " is outside 1.." + str(config_.max_position_embeddings) +
                " (max_position_embeddings)");
  if (token_type_ids.defined())
    MOX_CHECK(token_type_ids.shape() == input_ids.shape() && is_integral(token_type_ids.dtype()), "BertModel",
              "token_type_ids must be integer " + shape_str(input_ids.shape()) + " like input_ids, got " +
                  token_type_ids.desc());
  Tensor key_padding_mask;  // the fused op's convention: nonzero = padding
  if (attention_mask.defined()) {
    MOX_CHECK(attention_mask.shape() == input_ids.shape() && is_integral(attention_mask.dtype()), "BertModel",
              "attention_mask must be integer or bool " + shape_str(input_ids.shape()) +
                  " (1 = token, 0 = padding), got " + attention_mask.desc());
    key_padding_mask = eq(attention_mask, 0.0);
  }
  Tensor x = embeddings->run(input_ids, token_type_ids);
  for (auto& layer : layers) x = layer->run(x, key_padding_mask);
  BertOutput out;
  out.sequence = x;
  if (pooler_dense) out.pooled = tanh(pooler_dense->forward(x.select(1, 0)));
  return out;
}

Tensor BertModel::forward(const Tensor& input_ids) { return run(input_ids, Tensor(), Tensor()).sequence; }

// ------------------------------------------------------------------ heads

BertLMPredictionHead::BertLMPredictionHead(const BertConfig& c, Tensor decoder)
    : decoder_weight(std::move(decoder)) {
  bias = register_parameter("bias", zeros({c.vocab_size}));
  auto t = container("BertPredictionHeadTransform");
  transform = register_module("transform", std::static_pointer_cast<Module>(t));
  transform_dense = std::make_shared<Linear>(c.hidden_size, c.hidden_size);
  transform_norm = std::make_shared<LayerNorm>(c.hidden_size, c.layer_norm_eps);
  t->add_child("dense", transform_dense);
  t->add_child("LayerNorm", transform_norm);
  init_bert_weights(*this);
}

Tensor BertLMPredictionHead::forward(const Tensor& h) {
  Tensor t = transform_norm->forward(gelu(transform_dense->forward(h)));
  return linear(t, decoder_weight, bias);  // t @ word_embeddings^T + bias
}

BertForMaskedLM::BertForMaskedLM(const BertConfig& config) : config_(config) {
  config_.validate();
  bert = register_module("bert", std::make_shared<BertModel>(config_, /*add_pooling_layer=*/false));
  auto c = container("BertOnlyMLMHead");
  cls = register_module("cls", std::static_pointer_cast<Module>(c));
  predictions = std::make_shared<BertLMPredictionHead>(config_, bert->embeddings->word_embeddings->weight);
  c->add_child("predictions", predictions);
}

Tensor BertForMaskedLM::logits(const Tensor& ids, const Tensor& token_type_ids, const Tensor& attention_mask) {
  return predictions->forward(bert->run(ids, token_type_ids, attention_mask).sequence);
}

BertForSequenceClassification::BertForSequenceClassification(const BertConfig& config, int64_t labels)
    : num_labels(labels), config_(config) {
  config_.validate();
  MOX_CHECK(labels >= 1, "BertForSequenceClassification", "num_labels must be >= 1, got " + str(labels));
  bert = register_module("bert", std::make_shared<BertModel>(config_, /*add_pooling_layer=*/true));
  dropout = register_module("dropout", std::make_shared<Dropout>(config_.hidden_dropout_prob));
  classifier = register_module("classifier", std::make_shared<Linear>(config_.hidden_size, labels));
  init_bert_weights(*classifier);
}

Tensor BertForSequenceClassification::logits(const Tensor& ids, const Tensor& token_type_ids,
                                             const Tensor& attention_mask) {
  return classifier->forward(dropout->forward(bert->run(ids, token_type_ids, attention_mask).pooled));
}

}  // namespace mox::nn
