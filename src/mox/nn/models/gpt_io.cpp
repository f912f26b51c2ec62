#include "mox/nn/models/gpt_io.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "mox/io/file_util.h"
#include "mox/io/json_field.h"
#include "mox/io/safetensors.h"
#include "mox/nn/serialize.h"
#include "mox/ops/ops.h"

namespace mox::nn {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// HF's per-block causal-mask buffers: "[transformer.]h.<i>.attn.bias" / ".attn.masked_bias".
// Not parameters (the mask is implied by causal attention), so loading skips them.
bool is_hf_attention_buffer(const std::string& name, const std::string& prefix) {
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  std::string rest = name.substr(prefix.size());
  if (rest.compare(0, 2, "h.") != 0) return false;
  size_t i = 2;
  while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) i++;
  if (i == 2) return false;
  rest = rest.substr(i);
  return rest == ".attn.bias" || rest == ".attn.masked_bias";
}

std::string torch_dtype_name(DType t) {
  switch (t) {
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    case DType::F64: return "float64";
    default: return "float32";
  }
}

nlohmann::json read_json(const std::string& path) {
  const std::string text = io::read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("invalid JSON: ") + e.what());
  }
}

// Reports a list of problems as one line: the first few, then how many more.
std::string join_problems(const std::vector<std::string>& problems) {
  const size_t shown = std::min<size_t>(problems.size(), 4);
  std::string msg;
  for (size_t i = 0; i < shown; i++) msg += (i ? "; " : "") + problems[i];
  if (problems.size() > shown) msg += "; and " + std::to_string(problems.size() - shown) + " more";
  return msg;
}

// Fills `model` from a safetensors file whose tensors are named `prefix_of(mox name)` and,
// when hf, hold Conv1D weights transposed. Everything is checked before anything is copied.
void load_weights(GPT& model, const std::string& path, bool hf) {
  io::SafetensorsFile file = io::load_safetensors(path);

  // "transformer.h.0..." (GPT2LMHeadModel) or "h.0..." (GPT2Model, the Hub's gpt2 files).
  std::string prefix = "transformer.";
  if (hf) {
    bool any_prefixed = false;
    for (const std::string& n : file.names) any_prefixed |= n.compare(0, prefix.size(), prefix) == 0;
    if (!any_prefixed) prefix.clear();
  }
  auto file_name = [&](const std::string& mox_name) {
    // mox names start with "transformer." except lm_head.weight, which HF names alike.
    if (mox_name.compare(0, 12, "transformer.") == 0) return prefix + mox_name.substr(12);
    return mox_name;
  };

  const std::string layout = hf ? " (Hugging Face layout)" : " (mox layout)";
  std::vector<std::string> problems;
  std::map<std::string, bool> used;  // file tensor names accounted for
  StateDict sd;
  const StateDict own = model.state_dict();
  for (const auto& [name, param] : own) {
    const std::string fname = file_name(name);
    if (!file.contains(fname)) {
      problems.push_back("tensor \"" + fname + "\" is missing (expected shape " +
                         shape_str(hf && gpt_is_conv1d_weight(name)
                                       ? Shape{param.size(1), param.size(0)}
                                       : param.shape()) + ")");
      continue;
    }
    used[fname] = true;
    Tensor t = file.tensors.at(fname);
    if (!is_floating(t.dtype())) {
      problems.push_back("tensor \"" + fname + "\" has dtype " + dtype_name(t.dtype()) +
                         " (expected F32, F16 or BF16)");
      continue;
    }
    const bool transpose = hf && gpt_is_conv1d_weight(name);
    const Shape expected = transpose ? Shape{param.size(1), param.size(0)} : param.shape();
    if (t.shape() != expected) {
      problems.push_back("tensor \"" + fname + "\" has shape " + shape_str(t.shape()) + ", expected " +
                         shape_str(expected) + (transpose ? " (Conv1D [in, out])" : ""));
      continue;
    }
    if (transpose) t = t.transpose(0, 1);
    sd.insert(name, t.to(param.dtype()).contiguous());
  }

  // lm_head.weight alongside tied embeddings: accepted only as a copy of wte.
  const GPTConfig& c = model.config();
  if (c.tie_embeddings && file.contains("lm_head.weight")) {
    used["lm_head.weight"] = true;
    const Tensor& head = file.tensors.at("lm_head.weight");
    const std::string wte = file_name("transformer.wte.weight");
    if (head.shape() != Shape{c.vocab_size, c.n_embd}) {
      problems.push_back("tensor \"lm_head.weight\" has shape " + shape_str(head.shape()) + ", expected " +
                         shape_str(Shape{c.vocab_size, c.n_embd}));
    } else if (!is_floating(head.dtype()) ||
               (file.contains(wte) && is_floating(file.tensors.at(wte).dtype()) &&
                !allclose(head.to(DType::F32), file.tensors.at(wte).to(DType::F32), 0.0, 0.0))) {
      problems.push_back("tensor \"lm_head.weight\" differs from \"" + wte +
                         "\" but the config ties the embeddings (tie_word_embeddings / tie_embeddings = true)");
    }
  }
  for (const std::string& n : file.names) {
    if (used.count(n)) continue;
    if (hf && is_hf_attention_buffer(n, prefix)) continue;
    problems.push_back("unexpected tensor \"" + n + "\" " + shape_str(file.tensors.at(n).shape()));
  }
  if (!problems.empty()) throw Error(path, join_problems(problems) + layout);

  try {
    model.load_state_dict(sd, /*strict=*/true);
  } catch (const Error& e) {
    throw Error(path, e.what());
  }
}

}  // namespace

bool gpt_is_conv1d_weight(const std::string& name) {
  return ends_with(name, ".attn.c_attn.weight") || ends_with(name, ".attn.c_proj.weight") ||
         ends_with(name, ".mlp.c_fc.weight") || ends_with(name, ".mlp.c_proj.weight");
}

GPTConfig gpt_config_from_hf(const nlohmann::json& j, const std::string& where) {
  MOX_CHECK(j.is_object(), where, "expected a JSON object (a Hugging Face GPT-2 config.json)");
  if (auto t = io::json_get<std::string>(j, "model_type", where))
    MOX_CHECK(*t == "gpt2", where, "model_type: expected \"gpt2\", got \"" + *t + "\" (mox reads GPT-2 models only)");

  // GPT2Config's defaults, for keys the file leaves out.
  GPTConfig c;
  c.n_layer = io::json_get<int64_t>(j, "n_layer", where).value_or(12);
  c.n_head = io::json_get<int64_t>(j, "n_head", where).value_or(12);
  c.n_embd = io::json_get<int64_t>(j, "n_embd", where).value_or(768);
  c.vocab_size = io::json_get<int64_t>(j, "vocab_size", where).value_or(50257);
  // n_positions sizes wpe; n_ctx is its older alias (transformers ignores it when both exist).
  std::optional<int64_t> n_positions = io::json_get<int64_t>(j, "n_positions", where);
  if (!n_positions) n_positions = io::json_get<int64_t>(j, "n_ctx", where);
  c.block_size = n_positions.value_or(1024);
  c.layer_norm_eps = io::json_get<double>(j, "layer_norm_epsilon", where).value_or(1e-5);
  c.dropout = io::json_get<double>(j, "resid_pdrop", where).value_or(0.1);
  io::json_get<double>(j, "embd_pdrop", where);  // type-checked; mox has one dropout rate
  io::json_get<double>(j, "attn_pdrop", where);
  c.tie_embeddings = io::json_get<bool>(j, "tie_word_embeddings", where).value_or(true);
  c.bias = true;

  const std::string act = io::json_get<std::string>(j, "activation_function", where).value_or("gelu_new");
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") c.activation = "gelu_tanh";
  else if (act == "gelu") c.activation = "gelu";
  else
    throw Error(where, "activation_function: \"" + act +
                           "\" is not supported (mox's GPT has \"gelu_new\", \"gelu_pytorch_tanh\" and \"gelu\")");

  if (j.contains("n_inner") && !j.at("n_inner").is_null()) {
    const int64_t n_inner = *io::json_get<int64_t>(j, "n_inner", where);
    MOX_CHECK(n_inner == 4 * c.n_embd, where,
              "n_inner: " + std::to_string(n_inner) + " is not supported (mox's GPT MLP is 4 * n_embd = " +
                  std::to_string(4 * c.n_embd) + ")");
  }
  if (auto v = io::json_get<bool>(j, "scale_attn_weights", where))
    MOX_CHECK(*v, where, "scale_attn_weights: false is not supported (mox scales attention by 1/sqrt(head_dim))");
  if (auto v = io::json_get<bool>(j, "scale_attn_by_inverse_layer_idx", where))
    MOX_CHECK(!*v, where, "scale_attn_by_inverse_layer_idx: true is not supported");
  if (auto v = io::json_get<bool>(j, "add_cross_attention", where))
    MOX_CHECK(!*v, where, "add_cross_attention: true is not supported (mox's GPT is decoder-only)");

  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(where, e.what());
  }
  return c;
}

nlohmann::json gpt_config_to_hf(const GPTConfig& c) {
  return {{"architectures", {"GPT2LMHeadModel"}},
          {"model_type", "gpt2"},
          {"activation_function", c.activation == "gelu" ? "gelu" : "gelu_new"},
          {"n_layer", c.n_layer},
          {"n_head", c.n_head},
          {"n_embd", c.n_embd},
          {"n_inner", nullptr},
          {"n_positions", c.block_size},
          {"n_ctx", c.block_size},
          {"vocab_size", c.vocab_size},
          {"layer_norm_epsilon", c.layer_norm_eps},
          {"resid_pdrop", c.dropout},
          {"embd_pdrop", c.dropout},
          {"attn_pdrop", c.dropout},
          {"initializer_range", 0.02},
          {"tie_word_embeddings", c.tie_embeddings},
          {"scale_attn_weights", true},
          {"scale_attn_by_inverse_layer_idx", false},
          {"reorder_and_upcast_attn", false},
          {"use_cache", true}};
}

std::shared_ptr<GPT> load_gpt(const std::string& dir) {
  MOX_CHECK(fs::is_directory(dir), dir, "not a folder (expected a GPT model folder)");
  const fs::path d(dir);
  const std::string weights = (d / "model.safetensors").string();
  std::shared_ptr<GPT> model;
  bool hf;
  if (fs::exists(d / "model.json")) {
    const std::string path = (d / "model.json").string();
    model = std::make_shared<GPT>(gpt_config_from_json(read_json(path), path));
    hf = false;
  } else if (fs::exists(d / "config.json")) {
    const std::string path = (d / "config.json").string();
    model = std::make_shared<GPT>(gpt_config_from_hf(read_json(path), path));
    hf = true;
  } else {
    throw Error(dir, "no model.json (mox layout) or config.json (Hugging Face layout): not a GPT model folder");
  }
  if (!fs::exists(weights)) {
    std::string hint;
    if (fs::exists(d / "pytorch_model.bin"))
      hint = " (pytorch_model.bin is not read: convert it to safetensors first)";
    throw Error(weights, "missing: the model's weights are read from model.safetensors" + hint);
  }
  load_weights(*model, weights, hf);
  model->eval();
  return model;
}

void save_gpt(const GPT& model, const std::string& dir) {
  fs::create_directories(dir);
  const fs::path d(dir);
  io::write_file_atomic((d / "model.json").string(), gpt_config_to_json(model.config()).dump(2) + "\n");
  save_state_dict(model, (d / "model.safetensors").string(), {{"format", "pt"}});
}

void save_gpt_hf(const GPT& model, const std::string& dir) {
  MOX_CHECK(model.config().bias, dir,
            "a GPT with bias = false has no Hugging Face GPT-2 layout (GPT-2 has biases): export it with --layout mox");
  MOX_CHECK(model.config().layer_heads.empty() && model.config().layer_mlp.empty(), dir,
            "a GPT with pruned attention heads or MLP units (layer_heads / layer_mlp) has no Hugging Face "
            "GPT-2 layout (GPT-2's layers all have n_head heads and 4 * n_embd MLP units): export it with --layout mox");
  fs::create_directories(dir);
  const fs::path d(dir);
  io::NamedTensors tensors;
  DType dtype = DType::F32;
  for (const auto& [name, t] : model.state_dict()) {
    if (name == "transformer.wte.weight") dtype = t.dtype();
    tensors.emplace_back(name, gpt_is_conv1d_weight(name) ? t.transpose(0, 1) : t);  // -> Conv1D [in, out]
  }
  nlohmann::json config = gpt_config_to_hf(model.config());
  config["torch_dtype"] = torch_dtype_name(dtype);
  io::write_file_atomic((d / "config.json").string(), config.dump(2) + "\n");
  io::save_safetensors((d / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

}  // namespace mox::nn
