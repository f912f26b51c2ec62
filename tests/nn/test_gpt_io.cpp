// GPT checkpoints in Hugging Face's and mox's layouts (nn/models/gpt_io.h): a tiny GPT-2 that
// tools/fixtures_gpt2.py wrote the way transformers' GPT2LMHeadModel.save_pretrained does,
// with the logits and a greedy continuation that script computed (in f64, from a GPT-2
// written there with Conv1D layers), round trips through both layouts, the prefixless
// "h.0..." naming, f16/bf16 files, and errors that name the file and the tensor or key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../error_of.h"
#include "io/test_util.h"
#include "mox/io/safetensors.h"
#include "mox/mox.h"
#include "mox/nn/models/gpt_io.h"

using namespace mox;
namespace fs = std::filesystem;

namespace {

const std::string kFixture = std::string(MOX_SOURCE_DIR) + "/tests/fixtures/gpt2";

io::SafetensorsFile reference() { return io::load_safetensors(kFixture + "/reference.safetensors"); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); i++) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// Every parameter of a equals b's bit for bit (same names, shapes, values).
void expect_same_parameters(const nn::Module& a, const nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.keys(), pb.keys());
  for (const auto& [name, t] : pa) {
    const Tensor& u = *pb.find(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    EXPECT_EQ(t.to_vector<float>(), u.to_vector<float>()) << name;
  }
}

// Greedy decoding with a full forward over the whole sequence at every step.
std::vector<int64_t> greedy(nn::GPT& m, std::vector<int64_t> seq, int steps) {
  NoGradGuard ng;
  std::vector<int64_t> out;
  for (int s = 0; s < steps; s++) {
    Tensor logits = m.forward(from_vector(seq, {1, int64_t(seq.size())}));
    std::vector<float> last = logits.select(1, int64_t(seq.size()) - 1).to_vector<float>();
    const int64_t next = std::max_element(last.begin(), last.end()) - last.begin();
    seq.push_back(next);
    out.push_back(next);
  }
  return out;
}

// A copy of the fixture folder whose tensors `edit` may change before they are written.
std::string edited_fixture(const mox::testing::TempDir& tmp, const std::string& name,
                           const std::function<void(io::NamedTensors&)>& edit,
                           const std::function<void(nlohmann::json&)>& edit_config = nullptr) {
  const std::string dir = tmp.file(name);
  fs::create_directories(dir);
  nlohmann::json config = nlohmann::json::parse(mox::testing::read_bytes(kFixture + "/config.json"));
  if (edit_config) edit_config(config);
  std::ofstream(dir + "/config.json") << config.dump(2);
  io::SafetensorsFile f = io::load_safetensors(kFixture + "/model.safetensors");
  io::NamedTensors tensors;
  for (const std::string& n : f.names) tensors.emplace_back(n, f.tensors.at(n));
  edit(tensors);
  io::save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  return dir;
}

}  // namespace

TEST(GptIo, ConfigFromHfFixture) {
  nlohmann::json j = nlohmann::json::parse(mox::testing::read_bytes(kFixture + "/config.json"));
  nn::GPTConfig c = nn::gpt_config_from_hf(j, "config.json");
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_embd, 32);
  EXPECT_EQ(c.block_size, 16);
  EXPECT_EQ(c.vocab_size, 50);
  EXPECT_EQ(c.activation, "gelu_tanh");
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.dropout, 0.1);
  EXPECT_TRUE(c.tie_embeddings);
  // An empty config is GPT-2 small (GPT2Config's defaults).
  nn::GPTConfig d = nn::gpt_config_from_hf(nlohmann::json::object(), "config.json");
  EXPECT_EQ(d.num_parameters(), 124439808);
  // to_hf -> from_hf keeps every field.
  c.activation = "gelu";
  c.tie_embeddings = false;
  c.dropout = 0.0;
  c.layer_norm_eps = 1e-6;
  nn::GPTConfig back = nn::gpt_config_from_hf(nn::gpt_config_to_hf(c), "x");
  EXPECT_EQ(nn::gpt_config_to_json(back), nn::gpt_config_to_json(c));
  EXPECT_EQ(nn::gpt_config_to_hf(c)["activation_function"], "gelu");
  EXPECT_EQ(nn::gpt_config_to_hf(nn::GPTConfig{})["activation_function"], "gelu_new");
}

// Tolerance: max |mox - reference| over all logits <= 1e-4 (absolute; the logits have std
// ~1.2, the reference is f64 rounded to f32).
TEST(GptIo, HfLogitsMatchReference) {
  auto m = nn::load_gpt(kFixture);
  EXPECT_FALSE(m->is_training());
  io::SafetensorsFile ref = reference();
  NoGradGuard ng;
  Tensor logits = m->forward(ref.at("input_ids"));
  EXPECT_LE(max_abs_diff(logits, ref.at("logits")), 1e-4);
}

TEST(GptIo, HfGreedyContinuationMatchesReference) {
  auto m = nn::load_gpt(kFixture);
  io::SafetensorsFile ref = reference();
  EXPECT_EQ(greedy(*m, ref.at("prompt").to_vector<int64_t>(), 8), ref.at("greedy").to_vector<int64_t>());
}

TEST(GptIo, HfRoundTripWritesConv1DLayout) {
  mox::testing::TempDir tmp;
  auto m = nn::load_gpt(kFixture);
  const std::string dir = tmp.file("hf");
  nn::save_gpt_hf(*m, dir);

  nlohmann::json config = nlohmann::json::parse(mox::testing::read_bytes(dir + "/config.json"));
  EXPECT_EQ(config["model_type"], "gpt2");
  EXPECT_EQ(config["architectures"][0], "GPT2LMHeadModel");
  EXPECT_EQ(config["activation_function"], "gelu_new");
  EXPECT_EQ(config["n_positions"], 16);
  EXPECT_FALSE(fs::exists(dir + "/model.json"));

  io::SafetensorsFile f = io::load_safetensors(dir + "/model.safetensors");
  EXPECT_EQ(f.metadata.at("format"), "pt");  // from_pretrained refuses files without it
  EXPECT_FALSE(f.contains("lm_head.weight"));  // tied, as save_pretrained writes it
  const Tensor& w = f.at("transformer.h.0.attn.c_attn.weight");
  EXPECT_EQ(w.shape(), (Shape{32, 96}));  // Conv1D [in, out]
  io::SafetensorsFile orig = io::load_safetensors(kFixture + "/model.safetensors");
  EXPECT_EQ(w.to_vector<float>(), orig.at("transformer.h.0.attn.c_attn.weight").to_vector<float>());
  EXPECT_EQ(m->blocks[0]->attn->c_attn->weight.shape(), (Shape{96, 32}));  // nn.Linear in memory

  auto back = nn::load_gpt(dir);
  expect_same_parameters(*m, *back);
}

TEST(GptIo, MoxRoundTrip) {
  mox::testing::TempDir tmp;
  auto m = nn::load_gpt(kFixture);
  const std::string dir = tmp.file("mox");
  nn::save_gpt(*m, dir);
  EXPECT_FALSE(fs::exists(dir + "/config.json"));
  nlohmann::json j = nlohmann::json::parse(mox::testing::read_bytes(dir + "/model.json"));
  EXPECT_EQ(j["type"], "gpt");
  io::SafetensorsFile f = io::load_safetensors(dir + "/model.safetensors");
  EXPECT_EQ(f.at("transformer.h.0.attn.c_attn.weight").shape(), (Shape{96, 32}));  // nn.Linear
  auto back = nn::load_gpt(dir);
  expect_same_parameters(*m, *back);
  io::SafetensorsFile ref = reference();
  NoGradGuard ng;
  EXPECT_LE(max_abs_diff(back->forward(ref.at("input_ids")), ref.at("logits")), 1e-4);
}

namespace {

// One block, 8 wide, 13 tokens: the smallest GPT the round trips below need.
nn::GPTConfig small_config() {
  nn::GPTConfig c;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 8;
  c.block_size = 6;
  c.vocab_size = 13;
  return c;
}

}  // namespace

TEST(GptIo, BiasFreeModelsKeepMoxLayoutOnly) {
  // nanoGPT's bias = False round-trips through mox's layout; GPT-2's layout has biases, so
  // the Hugging Face export refuses it with a line that says what to do.
  mox::testing::TempDir tmp;
  nn::GPTConfig c = small_config();
  c.bias = false;
  nn::GPT m(c);
  nn::save_gpt(m, tmp.file("nb"));
  auto back = nn::load_gpt(tmp.file("nb"));
  EXPECT_FALSE(back->config().bias);
  expect_same_parameters(m, *back);
  expect_error([&] { nn::save_gpt_hf(m, tmp.file("hf")); }, {"hf", "bias = false", "--layout mox"});
}

TEST(GptIo, UntiedRoundTripBothLayouts) {
  manual_seed(5);
  nn::GPTConfig c = small_config();
  c.tie_embeddings = false;
  c.activation = "gelu";
  nn::GPT m(c);
  mox::testing::TempDir tmp;
  nn::save_gpt_hf(m, tmp.file("hf"));
  io::SafetensorsFile f = io::load_safetensors(tmp.file("hf") + "/model.safetensors");
  EXPECT_EQ(f.at("lm_head.weight").shape(), (Shape{13, 8}));  // nn.Linear in HF too
  EXPECT_EQ(f.at("transformer.h.0.mlp.c_fc.weight").shape(), (Shape{8, 32}));
  auto hf = nn::load_gpt(tmp.file("hf"));
  EXPECT_FALSE(hf->config().tie_embeddings);
  EXPECT_EQ(hf->config().activation, "gelu");
  expect_same_parameters(m, *hf);
  nn::save_gpt(m, tmp.file("mox"));
  expect_same_parameters(m, *nn::load_gpt(tmp.file("mox")));
}

// The Hub's gpt2 checkpoints name tensors without "transformer." and keep float mask
// buffers (attn.bias, attn.masked_bias) and, in older files, a tied lm_head.weight copy.
TEST(GptIo, PrefixlessHfFileLoads) {
  mox::testing::TempDir tmp;
  const std::string dir = edited_fixture(tmp, "prefixless", [](io::NamedTensors& ts) {
    Tensor wte;
    for (auto& [name, t] : ts) {
      if (name.rfind("transformer.", 0) == 0) name = name.substr(12);
      if (name == "wte.weight") wte = t;
      if (name.size() > 10 && name.substr(name.size() - 10) == ".attn.bias") t = t.to(DType::F32);
    }
    ts.emplace_back("h.0.attn.masked_bias", full({}, -1e4));
    ts.emplace_back("h.1.attn.masked_bias", full({}, -1e4));
    ts.emplace_back("lm_head.weight", wte.clone());
  });
  io::SafetensorsFile f = io::load_safetensors(dir + "/model.safetensors");
  ASSERT_TRUE(f.contains("h.0.attn.c_attn.weight"));
  ASSERT_FALSE(f.contains("transformer.wte.weight"));
  auto m = nn::load_gpt(dir);
  io::SafetensorsFile ref = reference();
  NoGradGuard ng;
  EXPECT_LE(max_abs_diff(m->forward(ref.at("input_ids")), ref.at("logits")), 1e-4);
}

TEST(GptIo, HalfPrecisionFilesLoadAsF32) {
  mox::testing::TempDir tmp;
  auto f32 = nn::load_gpt(kFixture);
  for (DType dt : {DType::F16, DType::BF16}) {
    const std::string dir = edited_fixture(tmp, dtype_name(dt), [dt](io::NamedTensors& ts) {
      for (auto& [name, t] : ts)
        if (is_floating(t.dtype())) t = t.to(dt);
    });
    auto m = nn::load_gpt(dir);
    auto expected = f32->named_parameters();
    for (const auto& [name, p] : m->named_parameters()) {
      EXPECT_EQ(p.dtype(), DType::F32) << name;
      EXPECT_EQ(p.to_vector<float>(), expected.find(name)->to(dt).to(DType::F32).to_vector<float>())
          << dtype_name(dt) << " " << name;
    }
  }
}

TEST(GptIo, ErrorsNameFileAndTensor) {
  mox::testing::TempDir tmp;
  // Missing tensor.
  std::string dir = edited_fixture(tmp, "missing", [](io::NamedTensors& ts) {
    std::erase_if(ts, [](auto& p) { return p.first == "transformer.h.1.mlp.c_fc.bias"; });
  });
  expect_error([&] { nn::load_gpt(dir); },
               {dir + "/model.safetensors", "\"transformer.h.1.mlp.c_fc.bias\" is missing", "[128]"});

  // A Conv1D weight stored in nn.Linear's layout.
  dir = edited_fixture(tmp, "shape", [](io::NamedTensors& ts) {
    for (auto& [name, t] : ts)
      if (name == "transformer.h.0.attn.c_attn.weight") t = t.transpose(0, 1).contiguous();
  });
  expect_error([&] { nn::load_gpt(dir); },
               {dir + "/model.safetensors", "\"transformer.h.0.attn.c_attn.weight\" has shape [96, 32]",
                "expected [32, 96]", "Conv1D"});

  // An unexpected tensor (the mask buffers are the only ones skipped).
  dir = edited_fixture(tmp, "extra", [](io::NamedTensors& ts) {
    ts.emplace_back("transformer.h.0.attn.rotary", zeros({4}));
  });
  expect_error([&] { nn::load_gpt(dir); }, {dir + "/model.safetensors", "unexpected tensor \"transformer.h.0.attn.rotary\""});

  // A tied lm_head.weight that is not wte's.
  dir = edited_fixture(tmp, "head", [](io::NamedTensors& ts) { ts.emplace_back("lm_head.weight", zeros({50, 32})); });
  expect_error([&] { nn::load_gpt(dir); }, {dir + "/model.safetensors", "\"lm_head.weight\" differs"});

  // Integer weights.
  dir = edited_fixture(tmp, "int", [](io::NamedTensors& ts) {
    for (auto& [name, t] : ts)
      if (name == "transformer.ln_f.bias") t = t.to(DType::I32);
  });
  expect_error([&] { nn::load_gpt(dir); }, {"\"transformer.ln_f.bias\" has dtype i32"});

  // Config keys.
  dir = edited_fixture(tmp, "act", [](io::NamedTensors&) {}, [](nlohmann::json& j) { j["activation_function"] = "relu"; });
  expect_error([&] { nn::load_gpt(dir); }, {dir + "/config.json", "activation_function", "\"relu\""});
  auto config = [](const char* text) { return nlohmann::json::parse(text); };
  expect_error([&] { nn::gpt_config_from_hf(config(R"({"model_type": "bert"})"), "c.json"); },
               {"c.json", "model_type", "\"bert\""});
  expect_error([&] { nn::gpt_config_from_hf(config(R"({"n_embd": 32, "n_inner": 64})"), "c.json"); },
               {"c.json", "n_inner: 64"});
  expect_error([&] { nn::gpt_config_from_hf(config(R"({"n_layer": "2"})"), "c.json"); },
               {"c.json", "n_layer: expected an integer"});
  expect_error([&] { nn::gpt_config_from_hf(config(R"({"n_embd": 30, "n_head": 4})"), "c.json"); },
               {"c.json", "n_embd 30 is not a multiple of n_head 4"});

  // Not a model folder; no weights.
  fs::create_directories(tmp.file("empty"));
  expect_error([&] { nn::load_gpt(tmp.file("empty")); }, {tmp.file("empty"), "no model.json"});
  fs::create_directories(tmp.file("noweights"));
  fs::copy_file(kFixture + "/config.json", tmp.file("noweights") + "/config.json");
  expect_error([&] { nn::load_gpt(tmp.file("noweights")); }, {"noweights/model.safetensors", "missing"});
}
