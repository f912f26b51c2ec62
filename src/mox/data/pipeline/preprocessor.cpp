// Preprocessor: applying the fitted preprocessing, and saving/loading it (preprocess.json,
// vocab.txt) in a run folder.
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "mox/data/pipeline.h"
#include "mox/data/pipeline/detail.h"
#include "mox/data/text/tokenizer.h"
#include "mox/io/file_util.h"

namespace mox::data {

namespace pipeline_detail {

namespace {

Tensor affine_dim1(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std,
                   bool inverse, const char* where) {
  MOX_CHECK(x.defined() && x.dim() >= 2, where, "expects [N, K, ...], got " + (x.defined() ? x.desc() : "nothing"));
  MOX_CHECK(mean.size() == std.size() && int64_t(mean.size()) == x.size(1), where,
            std::to_string(mean.size()) + " means / " + std::to_string(std.size()) + " stds for " +
                std::to_string(x.size(1)) + " channels of " + x.desc());
  Tensor in = x.dtype() == DType::F32 ? x.contiguous() : x.to(DType::F32).contiguous();
  Tensor out = empty(in.shape(), DType::F32);
  const int64_t N = in.size(0), K = in.size(1), inner = N * K == 0 ? 0 : in.numel() / (N * K);
  const float* src = in.data<float>();
  float* dst = out.data<float>();
  for (int64_t k = 0; k < K; k++) {
    // y = x * a + b in double coefficients, rounded once per element.
    const double a = inverse ? std[size_t(k)] : 1.0 / std[size_t(k)];
    const double b = inverse ? mean[size_t(k)] : -mean[size_t(k)] / std[size_t(k)];
    for (int64_t n = 0; n < N; n++) {
      const float* s = src + (n * K + k) * inner;
      float* d = dst + (n * K + k) * inner;
      for (int64_t i = 0; i < inner; i++) d[i] = float(double(s[i]) * a + b);
    }
  }
  return out;
}

}  // namespace

Tensor normalize_dim1(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std) {
  return affine_dim1(x, mean, std, false, "normalize");
}
Tensor denormalize_dim1(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std) {
  return affine_dim1(x, mean, std, true, "denormalize");
}

}  // namespace pipeline_detail

const char* kind_name(Preprocessor::Kind kind) {
  switch (kind) {
    case Preprocessor::Kind::Image: return "image";
    case Preprocessor::Kind::Table: return "table";
    case Preprocessor::Kind::Text: return "text";
  }
  return "?";
}

Tensor Preprocessor::images(const Tensor& raw) const {
  const char* where = "preprocess";
  MOX_CHECK(kind == Kind::Image, where, std::string("image inputs given to a model of ") + kind_name(kind) + " inputs");
  MOX_CHECK(raw.defined() && raw.dim() == 4, where, "expects images [N, C, H, W], got " + (raw.defined() ? raw.desc() : "nothing"));
  MOX_CHECK(raw.dtype() == DType::F32 || raw.dtype() == DType::F64, where, "expects f32 images, got " + raw.desc());
  Shape one(raw.shape().begin() + 1, raw.shape().end());
  MOX_CHECK(one == input_shape, where,
            "image shape " + shape_str(one) + " does not match the model's input shape " + shape_str(input_shape));
  if (mean.empty()) return raw.dtype() == DType::F32 ? raw.contiguous() : raw.to(DType::F32).contiguous();
  return pipeline_detail::normalize_dim1(raw, mean, std);
}

Tensor Preprocessor::table(const Tensor& raw) const {
  const char* where = "preprocess";
  MOX_CHECK(kind == Kind::Table, where, std::string("table inputs given to a model of ") + kind_name(kind) + " inputs");
  MOX_CHECK(raw.defined() && raw.dim() == 2, where, "expects rows [N, F], got " + (raw.defined() ? raw.desc() : "nothing"));
  MOX_CHECK(input_shape.size() == 1 && raw.size(1) == input_shape[0], where,
            "rows of " + std::to_string(raw.size(1)) + " features do not match the model's input shape " +
                shape_str(input_shape));
  if (mean.empty()) return raw.dtype() == DType::F32 ? raw.contiguous() : raw.to(DType::F32).contiguous();
  return pipeline_detail::normalize_dim1(raw, mean, std);
}

Tensor Preprocessor::texts(const std::vector<std::string>& raw) const {
  const char* where = "preprocess";
  MOX_CHECK(kind == Kind::Text, where, std::string("text inputs given to a model of ") + kind_name(kind) + " inputs");
  MOX_CHECK(vocab != nullptr && sequence_length > 0, where, "text preprocessing without a vocabulary");
  const int64_t N = int64_t(raw.size()), L = sequence_length;
  Tensor out = empty({N, L}, DType::I64);
  int64_t* y = out.data<int64_t>();
  for (int64_t i = 0; i < N; i++) {
    std::vector<int64_t> ids = vocab->encode(tokenize(raw[size_t(i)]), L, padding);
    std::copy(ids.begin(), ids.end(), y + i * L);
  }
  return out;
}

void Preprocessor::save(const std::string& dir) const {
  namespace fs = std::filesystem;
  nlohmann::ordered_json j;
  j["format"] = "mox-preprocess";
  j["version"] = 1;
  j["kind"] = kind_name(kind);
  j["input_shape"] = input_shape;
  j["mean"] = mean;
  j["std"] = std;
  j["task"] = task == Task::Classification ? "classification" : "regression";
  j["class_names"] = class_names;
  if (kind == Kind::Table) {
    j["feature_names"] = feature_names;
    j["label_name"] = label_name;
  }
  if (kind == Kind::Text) {
    MOX_CHECK(vocab != nullptr, dir, "text preprocessor without a vocabulary cannot be saved");
    j["sequence_length"] = sequence_length;
    j["padding"] = padding == Vocab::Padding::Pre ? "pre" : "post";
    j["vocab"] = "vocab.txt";
    vocab->save((fs::path(dir) / "vocab.txt").string());
  }
  io::write_file_atomic((fs::path(dir) / "preprocess.json").string(), j.dump(2) + "\n");
}

Preprocessor Preprocessor::load(const std::string& dir) {
  namespace fs = std::filesystem;
  using nlohmann::json;
  const std::string path = (fs::path(dir) / "preprocess.json").string();
  const std::string text = io::read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(path, std::string("not valid JSON: ") + e.what());
  }
  MOX_CHECK(j.is_object(), path, "expected a JSON object");
  auto field = [&](const char* key) -> const json& {
    MOX_CHECK(j.contains(key), path, std::string(key) + ": required field is missing");
    return j.at(key);
  };
  auto bad = [&](const char* key, const std::string& want) {
    return Error(path, std::string(key) + ": expected " + want + ", got " + j.at(key).dump());
  };
  auto string_list = [&](const char* key) {
    std::vector<std::string> out;
    if (!j.contains(key)) return out;
    const json& a = j.at(key);
    if (!a.is_array()) throw bad(key, "an array of strings");
    for (const json& e : a) {
      if (!e.is_string()) throw bad(key, "an array of strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  };
  auto number_list = [&](const char* key) {
    std::vector<double> out;
    const json& a = field(key);
    if (!a.is_array()) throw bad(key, "an array of numbers");
    for (const json& e : a) {
      if (!e.is_number()) throw bad(key, "an array of numbers");
      out.push_back(e.get<double>());
    }
    return out;
  };

  if (field("format") != "mox-preprocess") throw bad("format", "\"mox-preprocess\"");
  if (field("version") != 1) throw bad("version", "1");
  Preprocessor p;
  const json& kind = field("kind");
  if (kind == "image") p.kind = Kind::Image;
  else if (kind == "table") p.kind = Kind::Table;
  else if (kind == "text") p.kind = Kind::Text;
  else throw bad("kind", "\"image\", \"table\" or \"text\"");
  const json& shape = field("input_shape");
  if (!shape.is_array() || shape.empty()) throw bad("input_shape", "an array of positive integers");
  for (const json& e : shape) {
    if (!e.is_number_integer() || e.get<int64_t>() <= 0) throw bad("input_shape", "an array of positive integers");
    p.input_shape.push_back(e.get<int64_t>());
  }
  p.mean = number_list("mean");
  p.std = number_list("std");
  if (p.mean.size() != p.std.size()) throw Error(path, "mean and std: different lengths (" + std::to_string(p.mean.size()) + " and " + std::to_string(p.std.size()) + ")");
  for (double s : p.std)
    if (!(s > 0) || !std::isfinite(s)) throw bad("std", "positive numbers");
  if (!p.mean.empty()) {
    const int64_t want = p.kind == Kind::Image ? p.input_shape[0] : p.kind == Kind::Table ? p.input_shape[0] : 0;
    if (int64_t(p.mean.size()) != want)
      throw Error(path, "mean: " + std::to_string(p.mean.size()) + " values for input shape " + shape_str(p.input_shape));
  }
  const json& task = field("task");
  if (task == "classification") p.task = Task::Classification;
  else if (task == "regression") p.task = Task::Regression;
  else throw bad("task", "\"classification\" or \"regression\"");
  p.class_names = string_list("class_names");
  if (p.kind == Kind::Image && p.input_shape.size() != 3) throw bad("input_shape", "[C, H, W] for images");
  if (p.kind == Kind::Table) {
    if (p.input_shape.size() != 1) throw bad("input_shape", "[F] for tables");
    p.feature_names = string_list("feature_names");
    if (int64_t(p.feature_names.size()) != p.input_shape[0])
      throw Error(path, "feature_names: " + std::to_string(p.feature_names.size()) + " names for input shape " + shape_str(p.input_shape));
    const json& l = field("label_name");
    if (!l.is_string()) throw bad("label_name", "a string");
    p.label_name = l.get<std::string>();
  }
  if (p.kind == Kind::Text) {
    const json& L = field("sequence_length");
    if (!L.is_number_integer() || L.get<int64_t>() <= 0) throw bad("sequence_length", "a positive integer");
    p.sequence_length = L.get<int64_t>();
    if (p.input_shape != Shape{p.sequence_length}) throw bad("input_shape", "[sequence_length]");
    const json& pad = field("padding");
    if (pad != "pre" && pad != "post") throw bad("padding", "\"pre\" or \"post\"");
    p.padding = pad == "pre" ? Vocab::Padding::Pre : Vocab::Padding::Post;
    const json& v = field("vocab");
    if (!v.is_string() || v.get<std::string>().empty()) throw bad("vocab", "a file name");
    p.vocab = std::make_shared<Vocab>(Vocab::load((fs::path(dir) / v.get<std::string>()).string()));
  }
  return p;
}

}  // namespace mox::data
