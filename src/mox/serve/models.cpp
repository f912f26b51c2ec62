#include "mox/serve/models.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "mox/data/datasets/image_file.h"
#include "mox/data/pipeline.h"
#include "mox/ops/ops.h"
#include "mox/tensor/error.h"
#include "mox/train/compress.h"

namespace mox::serve {

namespace fs = std::filesystem;
using json = nlohmann::json;

ServedModel::ServedModel(const std::string& spec, const SchedulerOptions& scheduler_options) {
  const size_t eq = spec.find('=');
  dir_ = eq == std::string::npos ? spec : spec.substr(eq + 1);
  MOX_CHECK(fs::is_directory(dir_), "--model", dir_ + ": no such folder");
  name_ = eq == std::string::npos ? fs::path(dir_).lexically_normal().filename().string() : spec.substr(0, eq);
  if (name_.empty() || name_ == ".") name_ = fs::absolute(dir_).lexically_normal().parent_path().filename().string();
  MOX_CHECK(!name_.empty(), "--model", spec + ": give the model a name (NAME=DIR)");
  std::error_code ec;
  const auto t = fs::last_write_time(dir_, ec);
  if (!ec)
    created_ = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::file_clock::to_sys(t).time_since_epoch())
                   .count();
  if (train::is_gpt_run(dir_)) {
    gpt_ = train::load_gpt_run(dir_);
    const fs::path sub = fs::path(dir_) / "tokenizer";
    if (fs::is_directory(sub)) tokenizer_ = data::load_text_tokenizer(sub.string());
    else tokenizer_ = data::load_text_tokenizer(dir_);
    MOX_CHECK(tokenizer_->vocab_size() <= gpt_->config().vocab_size, dir_,
              "the tokenizer has " + std::to_string(tokenizer_->vocab_size()) + " ids, the model " +
                  std::to_string(gpt_->config().vocab_size));
    scheduler_ = std::make_unique<GenerationScheduler>(gpt_, scheduler_options);
  } else {
    run_ = std::make_unique<train::LoadedRun>(train::load_run(dir_));
    run_->model->eval();
  }
}

ServedModel::~ServedModel() {
  if (scheduler_) scheduler_->stop(/*drain=*/true);
}

json ServedModel::describe() const {
  json j = {{"id", name_}, {"object", "model"}, {"created", created_}, {"owned_by", "mox"}};
  if (gpt_) {
    const nn::GPTConfig& c = gpt_->config();
    j["mox"] = {{"kind", "gpt"}, {"context_length", c.block_size}, {"vocab_size", c.vocab_size},
                {"n_layer", c.n_layer}, {"n_embd", c.n_embd}, {"tokenizer", tokenizer_->kind()}};
  } else {
    json classes = run_->class_names;
    j["mox"] = {{"kind", "classifier"}, {"task", run_->task}, {"input", input_kind()},
                {"input_shape", run_->preprocess.input_shape}, {"classes", classes}};
  }
  return j;
}

int64_t ServedModel::context() const { return gpt_ ? gpt_->config().block_size : 0; }
int64_t ServedModel::vocab_size() const { return gpt_ ? gpt_->config().vocab_size : 0; }

std::vector<int32_t> ServedModel::encode(const std::string& text) const { return tokenizer_->encode(text); }

std::string ServedModel::decode(const std::vector<int32_t>& ids) const { return tokenizer_->decode(ids); }

std::string ServedModel::input_kind() const { return run_ ? data::kind_name(run_->preprocess.kind) : "tokens"; }

std::string base64_decode(const std::string& text, const std::string& param) {
  std::string s = text;
  // A data URL ("data:image/png;base64,....") is accepted as well.
  if (s.rfind("data:", 0) == 0) {
    const size_t comma = s.find(',');
    if (comma == std::string::npos || s.substr(0, comma).find(";base64") == std::string::npos)
      throw bad_request("Invalid value for '" + param + "': a data URL must be base64 (data:image/png;base64,...).", param);
    s = s.substr(comma + 1);
  }
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  bool padding = false;
  for (char c : s) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      padding = true;
      continue;
    }
    const int v = value(c);
    if (v < 0 || padding)
      throw bad_request("Invalid value for '" + param + "': not base64 (character '" + std::string(1, c) + "').", param);
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xFF));
    }
  }
  return out;
}

namespace {

// The shape of a nested JSON array of numbers ([] for a number); throws for ragged arrays
// or non-numbers.
std::vector<int64_t> nested_shape(const json& v, const std::string& param) {
  if (v.is_number()) return {};
  if (!v.is_array() || v.empty())
    throw bad_request("Invalid value for '" + param + "': expected numbers or (nested) arrays of numbers.", param);
  std::vector<int64_t> first = nested_shape(v[0], param);
  for (size_t i = 1; i < v.size(); i++)
    if (nested_shape(v[i], param) != first)
      throw bad_request("Invalid value for '" + param + "': the nested arrays are ragged (element " + std::to_string(i) +
                            " differs from element 0).",
                        param);
  first.insert(first.begin(), int64_t(v.size()));
  return first;
}

void flatten_numbers(const json& v, std::vector<float>& out) {
  if (v.is_number()) out.push_back(v.get<float>());
  else
    for (const json& e : v) flatten_numbers(e, out);
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); i++) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

}  // namespace

Classification ServedModel::classify(const ClassifyParams& p) {
  MOX_CHECK(run_ != nullptr, "classify", name_ + " is not a classifier");
  if (run_->task != "classification")
    throw bad_request("The model '" + name_ + "' is a regression model; /v1/classify needs a classifier.", "model");
  const data::Preprocessor& pre = run_->preprocess;
  const Shape& in_shape = pre.input_shape;
  constexpr int64_t kMaxInputs = 1024;
  data::RawInputs raw;
  if (!p.images_b64.empty()) {
    if (pre.kind != data::Preprocessor::Kind::Image)
      throw bad_request("The model '" + name_ + "' takes " + input_kind() + " inputs, not images.", "image");
    if (int64_t(p.images_b64.size()) > kMaxInputs)
      throw bad_request("Invalid value for 'image': at most " + std::to_string(kMaxInputs) + " images per request.", "image");
    std::vector<Tensor> images;
    for (size_t i = 0; i < p.images_b64.size(); i++) {
      const std::string param = p.images_b64.size() == 1 ? "image" : "image[" + std::to_string(i) + "]";
      const std::string bytes = base64_decode(p.images_b64[i], param);
      Tensor img;
      try {
        img = data::decode_image(param, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      } catch (const Error& e) {
        throw bad_request(std::string("Invalid value for '") + param + "': " + e.what(), param);
      }
      if (img.shape() != in_shape)
        throw bad_request("Invalid value for '" + param + "': the image is " + shape_text(img.shape()) +
                              " (C, H, W), the model takes " + shape_text(in_shape) + ".",
                          param);
      images.push_back(img.unsqueeze(0));
    }
    raw.images = cat(images, 0);
  } else if (pre.kind == data::Preprocessor::Kind::Text) {
    if (p.input.is_string()) {
      raw.texts.push_back(p.input.get<std::string>());
    } else {
      for (const json& e : p.input) {
        if (!e.is_string())
          throw bad_request("Invalid type for 'input': the model '" + name_ + "' takes text (a string or an array of strings).",
                            "input");
        raw.texts.push_back(e.get<std::string>());
      }
    }
    if (int64_t(raw.texts.size()) > kMaxInputs)
      throw bad_request("Invalid value for 'input': at most " + std::to_string(kMaxInputs) + " texts per request.", "input");
  } else {
    if (p.input.is_string())
      throw bad_request("Invalid type for 'input': the model '" + name_ + "' takes " + input_kind() +
                            " inputs (arrays of numbers), not text.",
                        "input");
    const std::vector<int64_t> shape = nested_shape(p.input, "input");
    const int64_t per = std::accumulate(in_shape.begin(), in_shape.end(), int64_t(1), std::multiplies<int64_t>());
    // One example as given (the model's shape, or flat), or a batch of them.
    int64_t n = 0;
    const std::vector<int64_t> one(in_shape.begin(), in_shape.end());
    std::vector<int64_t> one_squeezed;  // grey images may leave out C
    if (pre.kind == data::Preprocessor::Kind::Image && in_shape.size() == 3 && in_shape[0] == 1)
      one_squeezed = {in_shape[1], in_shape[2]};
    auto is_one = [&](const std::vector<int64_t>& s) {
      return s == one || (!one_squeezed.empty() && s == one_squeezed) || s == std::vector<int64_t>{per};
    };
    if (is_one(shape)) n = 1;
    else if (!shape.empty() && is_one(std::vector<int64_t>(shape.begin() + 1, shape.end()))) n = shape[0];
    else
      throw bad_request("Invalid value for 'input': its shape " + shape_text(shape) + " does not fit the model '" + name_ +
                            "', which takes " + shape_text(one) + " per example (or " + std::to_string(per) +
                            " numbers), optionally in a batch [N, ...].",
                        "input");
    if (n > kMaxInputs)
      throw bad_request("Invalid value for 'input': at most " + std::to_string(kMaxInputs) + " inputs per request.", "input");
    std::vector<float> values;
    values.reserve(size_t(n * per));
    flatten_numbers(p.input, values);
    for (float v : values)
      if (!std::isfinite(v)) throw bad_request("Invalid value for 'input': numbers must be finite.", "input");
    Shape full = {n};
    full.insert(full.end(), in_shape.begin(), in_shape.end());
    Tensor x = from_vector(values, full);
    if (pre.kind == data::Preprocessor::Kind::Image) raw.images = x;
    else raw.table = x;
  }
  const int64_t n = raw.images.defined() ? raw.images.size(0) : raw.table.defined() ? raw.table.size(0) : int64_t(raw.texts.size());
  for (int64_t i = 0; i < n; i++) raw.names.push_back("input[" + std::to_string(i) + "]");

  Tensor probs;
  {
    std::lock_guard<std::mutex> lock(run_mu_);
    Tensor x = data::preprocess_inputs(raw, pre);
    probs = run_->trainer->predict(x).contiguous().to(DType::F32);
  }
  const bool binary = probs.dim() == 1;
  const int64_t C = binary ? 2 : probs.size(1);
  std::vector<std::string> names = run_->class_names;
  if (int64_t(names.size()) != C) {
    names.clear();
    for (int64_t c = 0; c < C; c++) names.push_back(std::to_string(c));
  }
  const std::vector<float> v = probs.to_vector<float>();
  Classification out;
  for (int64_t i = 0; i < n; i++) {
    std::vector<double> pr;
    if (binary) pr = {1.0 - v[size_t(i)], double(v[size_t(i)])};
    else
      for (int64_t c = 0; c < C; c++) pr.push_back(v[size_t(i * C + c)]);
    std::vector<int64_t> order(static_cast<size_t>(C));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return pr[size_t(a)] > pr[size_t(b)]; });
    Classification::Item item;
    item.index = order[0];
    item.label = names[size_t(order[0])];
    item.probability = pr[size_t(order[0])];
    const int64_t k = p.top_k > 0 ? std::min(p.top_k, C) : C;
    for (int64_t j = 0; j < k; j++) item.probabilities.push_back({names[size_t(order[size_t(j)])], pr[size_t(order[size_t(j)])]});
    out.items.push_back(std::move(item));
  }
  return out;
}

}  // namespace mox::serve
