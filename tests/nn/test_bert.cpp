// BERT (src/mox/nn/models/bert.h): Hugging Face's parameter names and count, agreement with a
// PyTorch reference (tools/fixtures_bert.py: MLM logits, encoder and pooled outputs,
// classifier logits, MLM-loss gradients), padding invariance, the written-out attention used
// under attention dropout, config JSON and errors, and a classifier that learns a toy task.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "../error_of.h"
#include "../parity/parity_util.h"
#include "mox/io/safetensors.h"
#include "mox/mox.h"
#include "mox/nn/init.h"
#include "mox/nn/models/bert.h"
#include "mox/optim/optim.h"

using namespace mox;
using mox::testing::expect_close;

namespace {

// The fixture's model: vocab 23, hidden 16, 2 layers, 2 heads, intermediate 32, 12 positions.
nn::BertConfig tiny() {
  nn::BertConfig c;
  c.vocab_size = 23;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 32;
  c.max_position_embeddings = 12;
  return c;
}

bool has(const std::vector<std::string>& names, const std::string& n) {
  return std::find(names.begin(), names.end(), n) != names.end();
}

io::SafetensorsFile fixture() {
  return io::load_safetensors(std::string(MOX_SOURCE_DIR) + "/tests/fixtures/bert/bert.safetensors");
}

// The fixture's weight.<name> tensors whose names start with one of the prefixes.
nn::StateDict weights(const io::SafetensorsFile& f, const std::vector<std::string>& prefixes) {
  nn::StateDict sd;
  for (const std::string& key : f.names) {
    if (key.rfind("weight.", 0) != 0) continue;
    std::string name = key.substr(7);
    for (const auto& p : prefixes)
      if (name.rfind(p, 0) == 0) {
        sd.insert(name, f.at(key));
        break;
      }
  }
  return sd;
}

// Rows of [B, T, ...] at the positions where mask [B, T] is 1, as one flat vector.
std::vector<float> real_positions(const Tensor& t, const Tensor& mask) {
  std::vector<float> v = t.to_vector<float>(), out;
  std::vector<int64_t> m = mask.to_vector<int64_t>();
  const size_t per = v.size() / m.size();
  for (size_t i = 0; i < m.size(); i++)
    if (m[i]) out.insert(out.end(), v.begin() + long(i * per), v.begin() + long((i + 1) * per));
  return out;
}

void expect_near_all(const std::vector<float>& a, const std::vector<float>& b, double tol, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < a.size(); i++) worst = std::max(worst, double(std::abs(a[i] - b[i])));
  EXPECT_LE(worst, tol) << what;
}

}  // namespace

TEST(Bert, NamesAndParameterCount) {
  manual_seed(1);
  nn::BertForMaskedLM m(tiny());
  auto names = m.named_parameters().keys();
  EXPECT_EQ(names.front(), "bert.embeddings.word_embeddings.weight");
  for (const char* n : {"bert.embeddings.position_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
                        "bert.embeddings.LayerNorm.bias", "bert.encoder.layer.1.attention.self.query.weight",
                        "bert.encoder.layer.0.attention.self.value.bias",
                        "bert.encoder.layer.0.attention.output.dense.weight",
                        "bert.encoder.layer.0.attention.output.LayerNorm.weight",
                        "bert.encoder.layer.1.intermediate.dense.weight", "bert.encoder.layer.1.output.dense.bias",
                        "bert.encoder.layer.1.output.LayerNorm.bias", "cls.predictions.bias",
                        "cls.predictions.transform.dense.weight", "cls.predictions.transform.LayerNorm.weight"})
    EXPECT_TRUE(has(names, n)) << n;
  // HF's BertForMaskedLM: no pooler, and the decoder weight is the word embedding's.
  EXPECT_FALSE(has(names, "bert.pooler.dense.weight"));
  EXPECT_FALSE(has(names, "cls.predictions.decoder.weight"));
  EXPECT_EQ(int64_t(names.size()), 5 + 2 * 16 + 5);
  EXPECT_EQ(m.num_parameters(), tiny().num_parameters());
  EXPECT_EQ(m.state_dict().size(), names.size());
  EXPECT_EQ(m.bert->encoder->named_parameters().keys().front(), "layer.0.attention.self.query.weight");
  // bert-base-uncased by the formula: HF's BertForMaskedLM has 109,514,298 parameters.
  nn::BertConfig base;
  base.vocab_size = 30522;
  base.hidden_size = 768;
  base.num_hidden_layers = 12;
  base.num_attention_heads = 12;
  base.intermediate_size = 3072;
  base.max_position_embeddings = 512;
  EXPECT_EQ(base.num_parameters(), 109514298);

  nn::BertForSequenceClassification c(tiny(), 3);
  auto cn = c.named_parameters().keys();
  EXPECT_TRUE(has(cn, "bert.pooler.dense.weight"));
  EXPECT_EQ(cn[cn.size() - 2], "classifier.weight");
  EXPECT_EQ(cn.back(), "classifier.bias");
  const int64_t H = 16, V = 23;
  const int64_t mlm_head = H * H + H + 2 * H + V, pooler = H * H + H;
  EXPECT_EQ(c.num_parameters(), tiny().num_parameters() - mlm_head + pooler + H * 3 + 3);
  EXPECT_EQ(c.bert->num_parameters(), tiny().num_parameters() - mlm_head + pooler);
}

TEST(Bert, InitialisationLikeHuggingFace) {
  manual_seed(2);
  nn::BertConfig c = tiny();
  c.vocab_size = 500;
  c.hidden_size = 64;
  nn::BertForMaskedLM m(c);
  for (const auto& [name, p] : m.named_parameters()) {
    std::vector<double> v = p.to_vector<double>();
    double s = 0, s2 = 0;
    for (double x : v) s += x, s2 += x * x;
    const double mean = s / double(v.size()), sd = std::sqrt(s2 / double(v.size()) - mean * mean);
    const bool bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (bias) {
      EXPECT_EQ(s2, 0.0) << name;
    } else if (name.find("LayerNorm.weight") != std::string::npos) {
      EXPECT_EQ(mean, 1.0) << name;
      EXPECT_EQ(sd, 0.0) << name;
    } else if (v.size() >= 4000) {
      EXPECT_NEAR(sd, 0.02, 0.002) << name;
      EXPECT_NEAR(mean, 0.0, 0.002) << name;
    }
  }
  // The decoder is tied: it reads the word embedding's storage.
  EXPECT_EQ(m.predictions->decoder_weight.raw_data(), m.bert->embeddings->word_embeddings->weight.raw_data());
}

TEST(Bert, MatchesPyTorch) {
  io::SafetensorsFile f = fixture();
  Tensor ids = f.at("input_ids"), types = f.at("token_type_ids"), mask = f.at("attention_mask");

  nn::BertForMaskedLM mlm(tiny());
  nn::LoadResult r = mlm.load_state_dict(weights(f, {"bert.embeddings.", "bert.encoder.", "cls."}), true);
  EXPECT_TRUE(r.missing_keys.empty() && r.unexpected_keys.empty());
  mlm.eval();
  NoGradGuard ng;
  expect_close(mlm.bert->run(ids, types, mask).sequence, f.at("sequence_output"), "sequence output");
  expect_close(mlm.logits(ids, types, mask), f.at("mlm_logits"), "MLM logits");

  nn::BertForSequenceClassification clf(tiny(), 3);
  r = clf.load_state_dict(weights(f, {"bert.", "classifier."}), true);
  EXPECT_TRUE(r.missing_keys.empty() && r.unexpected_keys.empty());
  clf.eval();
  expect_close(clf.bert->run(ids, types, mask).pooled, f.at("pooled_output"), "pooled output");
  expect_close(clf.logits(ids, types, mask), f.at("cls_logits"), "classifier logits");
}

TEST(Bert, MlmGradientsMatchPyTorch) {
  io::SafetensorsFile f = fixture();
  nn::BertForMaskedLM mlm(tiny());
  mlm.load_state_dict(weights(f, {"bert.embeddings.", "bert.encoder.", "cls."}), true);
  Tensor logits = mlm.logits(f.at("input_ids"), f.at("token_type_ids"), f.at("attention_mask"));
  Tensor loss = cross_entropy(logits.reshape({-1, 23}), f.at("mlm_labels").reshape({-1}));
  expect_close(loss, f.at("mlm_loss"), "MLM loss");
  loss.backward();
  size_t checked = 0;
  for (const auto& [name, p] : mlm.named_parameters()) {
    ASSERT_TRUE(f.contains("grad." + name)) << name;
    expect_close(p.grad(), f.at("grad." + name), "grad of " + name);
    checked++;
  }
  EXPECT_EQ(checked, 42u);
}

TEST(Bert, PaddingDoesNotReachRealPositions) {
  manual_seed(3);
  nn::BertConfig c = tiny();
  nn::BertForMaskedLM mlm(c);
  nn::BertForSequenceClassification clf(c, 2);
  mlm.eval();
  clf.eval();
  NoGradGuard ng;
  // Weights well above BERT's N(0, 0.02), so that attending to a token shows.
  for (nn::Module* m : {static_cast<nn::Module*>(&mlm), static_cast<nn::Module*>(&clf)})
    for (auto& [name, p] : m->named_parameters())
      if (name.find("LayerNorm") == std::string::npos) nn::init::normal_(p, 0.0, 0.3);
  Generator g(4);
  Tensor a = randint(3, 23, {2, 8}, &g), types = zeros({2, 8}, DType::I64);
  Tensor mask = ones({2, 8}, DType::I64);
  for (int t = 5; t < 8; t++) mask.data<int64_t>()[t] = 0;  // row 0: 3 padding positions
  for (int t = 4; t < 8; t++) types.data<int64_t>()[8 + t] = 1;
  Tensor b = a.clone(), btypes = types.clone();
  for (int t = 5; t < 8; t++) {
    b.data<int64_t>()[t] = (a.data<int64_t>()[t] + 7) % 23;
    btypes.data<int64_t>()[t] = 1;
  }
  expect_near_all(real_positions(mlm.logits(a, types, mask), mask),
                  real_positions(mlm.logits(b, btypes, mask), mask), 1e-6, "MLM logits at real positions");
  expect_near_all(clf.logits(a, types, mask).to_vector<float>(), clf.logits(b, btypes, mask).to_vector<float>(),
                  1e-6, "classifier logits");
  // A bool-style (u8) mask means the same.
  expect_near_all(real_positions(mlm.logits(a, types, mask.to(DType::U8)), mask),
                  real_positions(mlm.logits(a, types, mask), mask), 0, "u8 mask");
  // Without the mask the changed tokens are attended to: the comparison above can fail.
  std::vector<float> ua = real_positions(mlm.logits(a, types, Tensor()), mask);
  std::vector<float> ub = real_positions(mlm.logits(b, btypes, Tensor()), mask);
  double diff = 0;
  for (size_t i = 0; i < ua.size(); i++) diff = std::max(diff, double(std::abs(ua[i] - ub[i])));
  EXPECT_GT(diff, 1e-3);
  // Undefined token types and mask mean all 0 and all 1.
  expect_near_all(mlm.logits(a, Tensor(), Tensor()).to_vector<float>(),
                  mlm.logits(a, zeros({2, 8}, DType::I64), ones({2, 8}, DType::I64)).to_vector<float>(), 0,
                  "defaults");
}

TEST(Bert, AttentionDropoutPathMatchesFusedAttention) {
  // Under attention dropout in training the probabilities are written out (the fused kernel
  // never forms them). With p tiny (nothing dropped, scale 1 + 1e-12) that path must give the
  // fused kernel's result, padding included; with p = 0.5 it must differ.
  manual_seed(5);
  nn::BertConfig c = tiny();
  c.attention_probs_dropout_prob = 0.1;
  nn::BertForMaskedLM m(c);
  Generator g(6);
  Tensor ids = randint(0, 23, {2, 9}, &g), mask = ones({2, 9}, DType::I64);
  for (int t = 6; t < 9; t++) mask.data<int64_t>()[9 + t] = 0;
  for (int t = 0; t < 9; t++) mask.data<int64_t>()[t] = t < 2;
  NoGradGuard ng;
  m.eval();
  std::vector<float> fused = m.logits(ids, Tensor(), mask).to_vector<float>();
  m.train();
  for (auto& layer : m.bert->layers) layer->attention->self->dropout->p = 1e-12;
  expect_near_all(m.logits(ids, Tensor(), mask).to_vector<float>(), fused, 2e-5, "written-out attention");
  for (auto& layer : m.bert->layers) layer->attention->self->dropout->p = 0.5;
  std::vector<float> dropped = m.logits(ids, Tensor(), mask).to_vector<float>();
  double diff = 0;
  for (size_t i = 0; i < fused.size(); i++) diff = std::max(diff, double(std::abs(fused[i] - dropped[i])));
  EXPECT_GT(diff, 1e-3);
}

TEST(Bert, ClassifierLearnsAToyTask) {
  // Label: does token 5 occur among the real tokens? Needs attention across positions (the
  // pooled output reads position 0 only); padding at the end of half the rows holds 5s that
  // must be ignored.
  manual_seed(7);
  nn::BertConfig c = tiny();
  c.vocab_size = 8;
  c.max_position_embeddings = 8;
  nn::BertForSequenceClassification m(c, 2);
  const int64_t B = 16, T = 8;
  Generator g(8);
  std::vector<int64_t> ids(B * T), mask(B * T, 1), labels(B);
  for (int64_t b = 0; b < B; b++) {
    const int64_t len = b % 2 ? 5 : 8;
    ids[b * T] = 1;  // [CLS]
    bool five = false;
    for (int64_t t = 1; t < T; t++) {
      if (t >= len) {
        ids[b * T + t] = 5;
        mask[b * T + t] = 0;
        continue;
      }
      int64_t v = 2 + int64_t(g.below(4));  // 2..5
      if (b % 4 < 2 && v == 5) v = 4;       // about half the rows have no 5
      ids[b * T + t] = v;
      five |= v == 5;
    }
    labels[b] = five;
  }
  int64_t positives = 0;
  for (int64_t l : labels) positives += l;
  ASSERT_GT(positives, 3);
  ASSERT_LT(positives, 13);
  Tensor x = from_vector(ids, {B, T}), am = from_vector(mask, {B, T}), y = from_vector(labels);
  optim::AdamW opt(m.parameters(), optim::AdamWOptions(3e-3));
  double first = 0, last = 0;
  for (int step = 0; step < 60; step++) {
    Tensor loss = cross_entropy(m.logits(x, Tensor(), am), y);
    if (step == 0) first = loss.item<float>();
    last = loss.item<float>();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  EXPECT_GT(first, 0.5);  // about log 2 at initialisation
  EXPECT_LT(last, 0.05);
  m.eval();
  NoGradGuard ng;
  Tensor pred = argmax(m.logits(x, Tensor(), am), 1);
  EXPECT_EQ(pred.to_vector<int64_t>(), labels);
}

TEST(Bert, ConfigJson) {
  nn::BertConfig c = tiny();
  c.hidden_dropout_prob = 0.1;
  c.layer_norm_eps = 1e-6;
  nlohmann::json j = nn::bert_config_to_json(c);
  EXPECT_EQ(j.at("type"), "bert");
  EXPECT_EQ(j.size(), 11u);
  nn::BertConfig back = nn::bert_config_from_json(j, "model.json");
  EXPECT_EQ(nn::bert_config_to_json(back), j);
  nn::BertConfig d = nn::bert_config_from_json(nlohmann::json{{"hidden_size", 64}}, "model.json");
  EXPECT_EQ(d.hidden_size, 64);
  EXPECT_EQ(d.vocab_size, 256);
  EXPECT_EQ(d.num_hidden_layers, 4);
  EXPECT_EQ(d.layer_norm_eps, 1e-12);
  expect_error([] { nn::bert_config_from_json(nlohmann::json{{"hidden_size", "64"}}, "run/model.json"); },
               {"run/model.json", "hidden_size", "expected an integer"});
  expect_error([] { nn::bert_config_from_json(nlohmann::json{{"layer_norm_eps", true}}, "m.json"); },
               {"m.json", "layer_norm_eps"});
  expect_error([] { nn::bert_config_from_json(nlohmann::json{{"type", "gpt"}}, "m.json"); }, {"m.json", "type"});
  expect_error([] { nn::bert_config_from_json(nlohmann::json{{"num_attention_heads", 5}}, "m.json"); },
               {"m.json", "hidden_size 128", "num_attention_heads 5"});
}

TEST(Bert, ErrorsNameTheFieldOrInput) {
  nn::BertConfig c = tiny();
  c.num_attention_heads = 3;
  expect_error([&] { nn::BertModel m(c); }, {"hidden_size 16", "num_attention_heads 3"});
  c = tiny();
  c.type_vocab_size = 0;
  expect_error([&] { c.validate(); }, {"type_vocab_size"});
  c = tiny();
  c.attention_probs_dropout_prob = 1.0;
  expect_error([&] { c.validate(); }, {"attention_probs_dropout_prob"});
  expect_error([&] { nn::BertForSequenceClassification m(tiny(), 0); }, {"num_labels"});

  manual_seed(9);
  nn::BertForMaskedLM m(tiny());
  Tensor ids = zeros({2, 5}, DType::I64);
  expect_error([&] { m.logits(zeros({1, 13}, DType::I64), Tensor(), Tensor()); },
               {"sequence length 13", "max_position_embeddings"});
  expect_error([&] { m.logits(randn({2, 5}), Tensor(), Tensor()); }, {"integer input_ids"});
  expect_error([&] { m.logits(ids, zeros({2, 4}, DType::I64), Tensor()); }, {"token_type_ids"});
  expect_error([&] { m.logits(ids, Tensor(), ones({2, 5})); }, {"attention_mask", "f32[2, 5]"});
  expect_error([&] { m.logits(ids, Tensor(), ones({5}, DType::I64)); }, {"attention_mask", "[2, 5]"});
}
