#include "mox/train/compress.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mox/autograd/node.h"
#include "mox/compress/sparse.h"
#include "mox/compress/structured.h"
#include "mox/data/text/text_tokenizer.h"
#include "mox/io/file_util.h"
#include "mox/io/safetensors.h"
#include "mox/nn/models/generate.h"
#include "mox/nn/models/gpt_io.h"
#include "mox/nn/serialize.h"
#include "mox/ops/ops.h"
#include "mox/train/pretrain.h"
#include "mox/train/pruning.h"
#include "mox/train/run.h"
#include "mox/train/svg.h"

namespace mox::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void say(const CompressRunOptions& o, const std::string& s) {
  if (o.verbose > 0) (o.out ? *o.out : std::cout) << s << "\n" << std::flush;
}

std::string prepare_out_dir(const CompressRunOptions& o, const std::string& variant) {
  MOX_CHECK(fs::is_directory(o.model_dir), o.model_dir, "not a folder");
  std::string dir = o.out_dir;
  if (dir.empty()) {
    std::string src = fs::path(o.model_dir).lexically_normal().string();
    while (!src.empty() && src.back() == '/') src.pop_back();
    dir = src + "-" + variant;
  }
  MOX_CHECK(fs::weakly_canonical(dir) != fs::weakly_canonical(o.model_dir), dir,
            "the output folder is the source run: pass another --out");
  if (fs::exists(dir)) {
    MOX_CHECK(o.overwrite, dir, "already exists: pass --overwrite or another --out");
    fs::remove_all(dir);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  MOX_CHECK(!ec, dir, "cannot create the folder: " + ec.message());
  return dir;
}

int64_t file_bytes(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? 0 : int64_t(n);
}

json metrics_to_json(const MetricValues& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = std::isfinite(v) ? json(v) : json(nullptr);
  return j;
}

// The float weights of a classifier run (dense or sparse file; the run's checkpoint when the
// run has not finished).
std::string weights_of(const std::string& dir) {
  std::string w = (fs::path(dir) / "model.safetensors").string();
  if (fs::exists(w)) return w;
  w = (fs::path(dir) / "checkpoint" / "model.safetensors").string();
  MOX_CHECK(fs::exists(w), dir, "no model.safetensors in the run folder");
  return w;
}

// The source classifier run rebuilt as an experiment (data, optimiser, trainer) with its
// trained weights, fine-tuning settings applied to the config text.
struct Source {
  std::string text, file;
  io::Config config;
  Experiment e;
};

// lr: the fine-tuning rate; 0 = the run's rate times default_lr_scale.
Source load_source(const CompressRunOptions& o, int64_t epochs, int64_t steps, double lr, double default_lr_scale) {
  Source s;
  s.file = (fs::path(o.model_dir) / "config.toml").string();
  MOX_CHECK(fs::exists(s.file), o.model_dir, "not a run folder (config.toml missing)");
  MOX_CHECK(!fs::exists(fs::path(o.model_dir) / "quantization.json"), o.model_dir,
            "is already quantised: compress the float run it came from");
  s.text = io::read_file(s.file);
  io::Config base = io::parse_config(s.text, s.file);
  std::vector<std::string> sets = {"train.epochs=" + std::to_string(std::max<int64_t>(epochs, 1))};
  if (steps > 0) sets.push_back("train.steps_per_epoch=" + std::to_string(steps));
  const double base_lr = base.optimizer.get_float("lr", 1e-3);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", lr > 0 ? lr : base_lr * default_lr_scale);
  sets.push_back(std::string("optimizer.lr=") + buf);
  // Callbacks of the original run (early stopping, best-checkpoint) do not apply to a fine-tune.
  s.text = io::apply_overrides(s.text, s.file, sets);
  s.config = io::parse_config(s.text, s.file + " (fine-tuning)");
  s.config.callbacks = io::ConfigTable{};
  s.config.has_callbacks = false;
  ExperimentOptions eo;
  eo.log = nullptr;
  s.e = build_experiment(s.config, eo);
  compress::load_state_dict_any(*s.e.model, weights_of(o.model_dir));
  s.e.fit.verbose = o.verbose;
  s.e.fit.out = o.out;
  return s;
}

// Random training batches (seeded) for calibration.
std::vector<Tensor> calibration_batches(const data::Dataset& train, int64_t batches, int64_t batch_size, uint64_t seed) {
  const int64_t n = train.size();
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) idx[size_t(i)] = i;
  Generator gen(seed ^ 0x63616c6962ull);
  for (int64_t i = n - 1; i > 0; i--) std::swap(idx[size_t(i)], idx[size_t(gen.next_u64() % uint64_t(i + 1))]);
  std::vector<Tensor> out;
  for (int64_t b = 0; b < batches && b * batch_size < n; b++) {
    std::vector<int64_t> part(idx.begin() + b * batch_size, idx.begin() + std::min(n, (b + 1) * batch_size));
    out.push_back(train.get_batch(part).input);
  }
  return out;
}

// Test metrics, sizes and the summary of a compressed classifier run.
CompressResult finish_classifier(const CompressRunOptions& o, const std::string& dir, Source& s, json compression,
                                 const std::string& config_text) {
  io::write_file_atomic((fs::path(dir) / "config.toml").string(), config_text);
  s.e.data.preprocess.save(dir);
  json sj;
  sj["name"] = s.config.model.name;
  sj["source"] = o.model_dir;
  sj["compression"] = std::move(compression);
  sj["model_bytes"] = file_bytes((fs::path(dir) / "model.safetensors").string());
  sj["source_model_bytes"] = file_bytes(weights_of(o.model_dir));
  if (s.e.data.test) {
    EvalResult r = s.e.trainer->evaluate(*s.e.data.test, 1000);
    sj["test"] = metrics_to_json(r.metrics);
    std::ostringstream line;
    line << "test";
    for (const auto& [k, v] : r.metrics)
      if (k == "loss" || k == "accuracy") line << " " << k << " " << v;
    say(o, line.str());
  }
  sj["mox_version"] = MOX_VERSION;
  std::string text = sj.dump(2) + "\n";
  io::write_file_atomic((fs::path(dir) / "summary.json").string(), text);
  say(o, "wrote " + dir + "/ (" + std::to_string(sj["model_bytes"].get<int64_t>()) + " bytes of weights, " +
             std::to_string(sj["source_model_bytes"].get<int64_t>()) + " before)");
  return {dir, text};
}

void copy_into(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
  MOX_CHECK(!ec, from.string(), "cannot copy to " + to.string() + ": " + ec.message());
}

void copy_gpt_files(const std::string& from, const std::string& to) {
  for (const char* f : {"config.toml", "tokenizer"})
    if (fs::exists(fs::path(from) / f)) copy_into(fs::path(from) / f, fs::path(to) / f);
  if (fs::exists(fs::path(from) / "data" / "val.tok")) {
    fs::create_directories(fs::path(to) / "data");
    copy_into(fs::path(from) / "data" / "val.tok", fs::path(to) / "data" / "val.tok");
  }
}

CompressResult quantize_gpt(const QuantizeRunOptions& o) {
  const compress::QuantConfig& qc = o.config;
  MOX_CHECK(qc.mode == "w8" || qc.mode == "w4" || qc.mode == "dynamic-int8", "quantize",
            "a GPT takes --mode w8, w4 or dynamic-int8 (static int8 and qat are for the classifier models)");
  MOX_CHECK(!fs::exists(fs::path(o.model_dir) / "quantization.json"), o.model_dir,
            "is already quantised: quantise the float run it came from");
  const std::string dir = prepare_out_dir(o, qc.mode);
  std::shared_ptr<nn::GPT> g = nn::load_gpt(o.model_dir);
  const int64_t f32_bytes = compress::model_bytes(*g);
  double t0 = now_s();
  compress::QuantizeReport rep = qc.mode == "dynamic-int8" ? compress::quantize_dynamic(*g, qc) : compress::quantize_blocks(*g, qc);
  const double seconds = now_s() - t0;
  copy_gpt_files(o.model_dir, dir);
  copy_into(fs::path(o.model_dir) / "model.json", fs::path(dir) / "model.json");
  nn::save_state_dict(*g, (fs::path(dir) / "model.safetensors").string(), {{"format", "pt"}, {"mox_quantization", "quantization.json"}});
  json layout = compress::quantization_json(*g, qc);
  io::write_file_atomic((fs::path(dir) / "quantization.json").string(), layout.dump(2) + "\n");
  json sj;
  sj["source"] = o.model_dir;
  sj["compression"] = {{"kind", "quantization"}, {"config", qc.to_json()}, {"quantized", rep.quantized},
                       {"kept_float", rep.kept_float}, {"seconds", seconds}};
  sj["model_bytes"] = file_bytes((fs::path(dir) / "model.safetensors").string());
  sj["source_model_bytes"] = file_bytes((fs::path(o.model_dir) / "model.safetensors").string());
  sj["weights_bytes"] = compress::model_bytes(*g);
  sj["source_weights_bytes"] = f32_bytes;
  if (fs::exists(fs::path(dir) / "data" / "val.tok")) {
    const double loss = gpt_validation_loss(load_gpt_run(dir), dir);
    sj["val_loss"] = loss;
    sj["val_perplexity"] = std::exp(loss);
    say(o, "val_loss " + std::to_string(loss) + " val_perplexity " + std::to_string(std::exp(loss)));
  }
  sj["mox_version"] = MOX_VERSION;
  std::string text = sj.dump(2) + "\n";
  io::write_file_atomic((fs::path(dir) / "summary.json").string(), text);
  say(o, "wrote " + dir + "/ (" + std::to_string(rep.quantized.size()) + " layers " + qc.mode + ", " +
             std::to_string(rep.kept_float.size()) + " kept in float)");
  return {dir, text};
}

}  // namespace

bool is_gpt_run(const std::string& dir) {
  const fs::path mj = fs::path(dir) / "model.json";
  if (!fs::exists(mj)) return false;
  try {
    json j = json::parse(io::read_file(mj.string()));
    return j.value("type", "") == "gpt";
  } catch (const json::exception&) {
    return false;
  }
}

namespace {

bool has_sparse_tensors(const std::string& path) {
  if (!fs::exists(path)) return false;
  for (const auto& [k, v] : io::load_safetensors(path).metadata)
    if (k.rfind("sparse.", 0) == 0) return true;
  return false;
}

}  // namespace

std::shared_ptr<nn::GPT> load_gpt_run(const std::string& dir) {
  const fs::path qpath = fs::path(dir) / "quantization.json";
  const std::string weights = (fs::path(dir) / "model.safetensors").string();
  if (!fs::exists(qpath) && !has_sparse_tensors(weights)) return nn::load_gpt(dir);
  const std::string mj = (fs::path(dir) / "model.json").string();
  MOX_CHECK(fs::exists(mj), dir, "a quantised or sparse GPT needs model.json");
  json cfg;
  try {
    cfg = json::parse(io::read_file(mj));
  } catch (const json::exception& e) {
    throw Error(mj, e.what());
  }
  auto g = std::make_shared<nn::GPT>(nn::gpt_config_from_json(cfg, mj));
  if (fs::exists(qpath)) {
    json layout;
    try {
      layout = json::parse(io::read_file(qpath.string()));
    } catch (const json::exception& e) {
      throw Error(qpath.string(), e.what());
    }
    compress::apply_quantization_layout(*g, layout, qpath.string());
  }
  compress::load_state_dict_any(*g, weights);  // dense or sparse (mox prune)
  g->eval();
  return g;
}

CompressResult run_quantize(const QuantizeRunOptions& o) {
  o.config.validate();
  if (is_gpt_run(o.model_dir)) return quantize_gpt(o);
  const compress::QuantConfig& qc = o.config;
  const bool qat = qc.mode == "qat";
  Source s = load_source(o, qat ? o.finetune_epochs : 1, o.steps_per_epoch, o.lr, 0.1);
  auto seq = s.e.model;
  const std::string dir = prepare_out_dir(o, qc.mode);
  compress::QuantConfig saved = qc;
  compress::QuantizeReport rep;
  double t0 = now_s();
  if (qc.mode == "ptq-int8" || qat) {
    std::vector<Tensor> calib = calibration_batches(*s.e.data.train, o.calib_batches, o.batch_size, s.e.seed);
    saved.calibration_batches = int64_t(calib.size());
    say(o, "calibrating on " + std::to_string(calib.size()) + " batches of " + std::to_string(o.batch_size) + " (" +
               compress::calibration_name(qc.calibration) + ")");
    if (!qat) {
      rep = compress::quantize_static(*seq, calib, qc);
    } else {
      compress::prepare_qat(*seq, calib, qc);
      say(o, "quantisation-aware fine-tuning: " + std::to_string(s.e.fit.epochs) + " epochs");
      FitOptions fit = s.e.fit;
      s.e.trainer->fit(s.e.data.train, fit);
      rep = compress::convert_qat(*seq, qc);
      saved.mode = "ptq-int8";  // what the saved layers are
    }
  } else if (qc.mode == "dynamic-int8") {
    rep = compress::quantize_dynamic(*seq, qc);
  } else {
    rep = compress::quantize_blocks(*seq, qc);
  }
  const double seconds = now_s() - t0;
  MOX_CHECK(!rep.quantized.empty(), "quantize", "no layer of the model could be quantised in mode " + qc.mode);
  nn::save_state_dict(*seq, (fs::path(dir) / "model.safetensors").string(), {{"format", "pt"}, {"mox_quantization", "quantization.json"}});
  json layout = compress::quantization_json(*seq, saved);
  layout["config"]["trained_with"] = qc.mode;
  io::write_file_atomic((fs::path(dir) / "quantization.json").string(), layout.dump(2) + "\n");
  json c = {{"kind", "quantization"}, {"config", qc.to_json()}, {"quantized", rep.quantized},
            {"kept_float", rep.kept_float}, {"seconds", seconds}};
  say(o, std::to_string(rep.quantized.size()) + " layers quantised (" + qc.mode + "), " +
             std::to_string(rep.kept_float.size()) + " kept in float");
  return finish_classifier(o, dir, s, c, io::read_file((fs::path(o.model_dir) / "config.toml").string()));
}

namespace {

CompressResult prune_gpt(const PruneRunOptions& o, const std::string& variant) {
  MOX_CHECK(!fs::exists(fs::path(o.model_dir) / "quantization.json"), o.model_dir,
            "is quantised: prune the float run it came from");
  MOX_CHECK(o.structured || o.finetune_steps == 0, "prune",
            "a sparse GPT is pruned in one shot: fine-tuning it (--finetune-steps) needs --structured");
  const std::string dir = prepare_out_dir(o, variant);
  std::shared_ptr<nn::GPT> g = load_gpt_run(o.model_dir);
  json c = {{"kind", o.structured ? "structured-pruning" : "pruning"}, {"sparsity", o.sparsity}, {"skip", o.skip}};
  c["parameters_before"] = g->config().num_parameters();
  if (o.structured) {
    compress::prune_heads(*g, o.sparsity);
    nn::GPTConfig gc = compress::prune_gpt_mlp(*g, o.sparsity);
    c["parameters_after"] = gc.num_parameters();
    c["layer_heads"] = gc.layer_heads;
    c["layer_mlp"] = gc.layer_mlp;
    say(o, "structured pruning: " + std::to_string(c["parameters_before"].get<int64_t>()) + " -> " +
               std::to_string(gc.num_parameters()) + " parameters");
    if (o.finetune_steps > 0) {
      // Pre-training on the run's corpus, starting from the pruned model (its [model] init).
      const std::string init = dir + ".pruned";
      fs::remove_all(init);
      nn::save_gpt(*g, init);
      copy_gpt_files(o.model_dir, init);
      PretrainOptions po;
      po.overrides = {"model.init=" + fs::absolute(init).string()};
      po.out = dir;
      po.overwrite = true;
      po.steps = o.finetune_steps;
      po.data_from = o.model_dir;  // the run's own tokenized corpus
      po.log = o.verbose > 0 ? (o.out ? o.out : &std::cout) : nullptr;
      run_pretrain((fs::path(o.model_dir) / "config.toml").string(), po);
      fs::remove_all(init);
      g = load_gpt_run(dir);
      c["finetune_steps"] = o.finetune_steps;
    } else {
      nn::save_gpt(*g, dir);
      copy_gpt_files(o.model_dir, dir);
    }
  } else {
    nn::PruneOptions fo;
    fo.sparsity = o.sparsity;
    fo.global = o.global;
    fo.skip = o.skip;
    nn::apply_masks(*g, nn::magnitude_prune_masks(*g, fo));
    c["weight_sparsity"] = nn::prunable_sparsity(*g, o.skip);
    io::write_file_atomic((fs::path(dir) / "model.json").string(), nn::gpt_config_to_json(g->config()).dump(2) + "\n");
    compress::save_sparse_state_dict(*g, (fs::path(dir) / "model.safetensors").string(), {{"format", "pt"}});
    copy_gpt_files(o.model_dir, dir);
  }
  json sj;
  sj["source"] = o.model_dir;
  sj["compression"] = c;
  sj["model_bytes"] = file_bytes((fs::path(dir) / "model.safetensors").string());
  sj["source_model_bytes"] = file_bytes((fs::path(o.model_dir) / "model.safetensors").string());
  if (fs::exists(fs::path(dir) / "data" / "val.tok")) {
    const double loss = gpt_validation_loss(load_gpt_run(dir), dir);
    sj["val_loss"] = loss;
    sj["val_perplexity"] = std::exp(loss);
    say(o, "val_loss " + std::to_string(loss) + " val_perplexity " + std::to_string(std::exp(loss)));
  }
  sj["mox_version"] = MOX_VERSION;
  std::string text = sj.dump(2) + "\n";
  io::write_file_atomic((fs::path(dir) / "summary.json").string(), text);
  say(o, "wrote " + dir + "/");
  return {dir, text};
}

}  // namespace

CompressResult run_prune(const PruneRunOptions& o) {
  MOX_CHECK(o.sparsity > 0 && o.sparsity < 1, "prune", "--sparsity must be in (0, 1), got " + std::to_string(o.sparsity));
  char pct[32];
  std::snprintf(pct, sizeof pct, "%d", int(std::lround(o.sparsity * 100)));
  if (is_gpt_run(o.model_dir)) return prune_gpt(o, std::string(o.structured ? "structured" : "sparse") + pct);
  std::snprintf(pct, sizeof pct, "%d", int(std::lround(o.sparsity * 100)));
  Source s = load_source(o, o.finetune_epochs, o.steps_per_epoch, o.lr, 1.0);
  const std::string dir = prepare_out_dir(o, std::string(o.structured ? "structured" : "sparse") + pct);
  const int64_t params_before = s.e.model->num_parameters();
  json c = {{"kind", o.structured ? "structured-pruning" : "pruning"}, {"sparsity", o.sparsity},
            {"finetune_epochs", o.finetune_epochs}, {"skip", o.skip}};
  std::string config_text = io::read_file((fs::path(o.model_dir) / "config.toml").string());
  if (o.structured) {
    compress::StructuredPruneOptions so;
    so.fraction = o.sparsity;
    so.skip = o.skip;
    compress::StructuredPruneResult pr = compress::prune_structured(*s.e.model, io::parse_config(config_text, s.file), so);
    config_text = pr.config_text;
    json layers = json::object();
    for (const auto& [name, ba] : pr.layers) layers[name] = {ba.first, ba.second};
    c["layers"] = layers;
    c["parameters_before"] = pr.params_before;
    c["parameters_after"] = pr.params_after;
    say(o, "structured pruning: " + std::to_string(pr.params_before) + " -> " + std::to_string(pr.params_after) + " parameters");
    // The smaller model, trained from the kept weights.
    Source t;
    t.file = s.file;
    t.text = io::apply_overrides(config_text, s.file, {"train.epochs=" + std::to_string(std::max<int64_t>(o.finetune_epochs, 1))});
    if (o.steps_per_epoch > 0) t.text = io::apply_overrides(t.text, s.file, {"train.steps_per_epoch=" + std::to_string(o.steps_per_epoch)});
    char lrb[64];
    std::snprintf(lrb, sizeof lrb, "%.9g", s.config.optimizer.get_float("lr", 1e-3));
    t.text = io::apply_overrides(t.text, s.file, {std::string("optimizer.lr=") + lrb});
    t.config = io::parse_config(t.text, s.file + " (structured)");
    t.config.callbacks = io::ConfigTable{};
    t.config.has_callbacks = false;
    t.e = build_experiment(t.config, ExperimentOptions{});
    t.e.model->load_state_dict(pr.model->state_dict());
    t.e.fit.verbose = o.verbose;
    t.e.fit.out = o.out;
    s = std::move(t);
    if (o.finetune_epochs > 0) s.e.trainer->fit(s.e.data.train, s.e.fit);
    nn::save_state_dict(*s.e.model, (fs::path(dir) / "model.safetensors").string(), {{"format", "pt"}});
  } else {
    PruningOptions po;
    po.final_sparsity = o.sparsity;
    po.global = o.global;
    po.skip = o.skip;
    const int64_t per_epoch = o.steps_per_epoch > 0 ? o.steps_per_epoch
                                                    : (s.e.data.train->size() + s.e.fit.batch_size - 1) / s.e.fit.batch_size;
    const int64_t total = std::max<int64_t>(1, per_epoch * std::max<int64_t>(o.finetune_epochs, 1));
    po.end_step = o.finetune_epochs > 0 ? std::max<int64_t>(1, total * 3 / 4) : 0;
    po.frequency = o.frequency > 0 ? o.frequency : std::max<int64_t>(1, po.end_step / 20);
    auto cb = std::make_shared<PruningCallback>(po);
    if (o.finetune_epochs > 0) {
      s.e.fit.callbacks.push_back(cb);
      s.e.trainer->fit(s.e.data.train, s.e.fit);
    }
    // The final masks at the target sparsity (one-shot when there was no fine-tuning).
    nn::PruneOptions fo;
    fo.global = o.global;
    fo.skip = o.skip;
    fo.sparsity = o.sparsity;
    auto masks = nn::magnitude_prune_masks(*s.e.model, fo);
    nn::apply_masks(*s.e.model, masks);
    c["weight_sparsity"] = nn::prunable_sparsity(*s.e.model, o.skip);
    c["prune_every"] = po.frequency;
    compress::save_sparse_state_dict(*s.e.model, (fs::path(dir) / "model.safetensors").string(), {{"format", "pt"}});
    say(o, "pruned to " + std::to_string(c["weight_sparsity"].get<double>()) + " sparsity (stored sparse)");
  }
  c["parameters"] = params_before;
  return finish_classifier(o, dir, s, c, config_text);
}

// ---------------------------------------------------------------- measurement and report

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int64_t weight_count(const nn::Module& m) {
  int64_t n = 0;
  for (const auto& [name, t] : m.state_dict()) {
    const bool weight = name.size() >= 6 && (name.compare(name.size() - 6, 6, "weight") == 0 || name.find("qweight") != std::string::npos);
    if (!weight) continue;
    if (is_floating(t.dtype())) {
      Tensor nz = ne(t.detach().to(DType::F32), 0.0);
      n += int64_t(sum(nz.to(DType::F32)).item<double>());
    } else {
      n += t.numel() * (t.dtype() == DType::U8 && name.find("qweight") != std::string::npos ? 2 : 1);
    }
  }
  return n;
}

std::string variant_of(const std::string& dir) {
  const fs::path s = fs::path(dir) / "summary.json";
  if (!fs::exists(s)) return "f32";
  try {
    json j = json::parse(io::read_file(s.string()));
    if (!j.contains("compression")) {
      if (j.contains("distillation")) return "distilled";
      const std::string name = j.value("name", std::string());
      return name.empty() ? "f32" : "f32 " + name;  // a float run (its model's name)
    }
    const json& c = j["compression"];
    const std::string kind = c.value("kind", "");
    if (kind == "quantization") return c["config"].value("mode", "quantized");
    char b[64];
    if (kind == "pruning") std::snprintf(b, sizeof b, "sparse %.0f%%", 100 * c.value("sparsity", 0.0));
    else std::snprintf(b, sizeof b, "structured %.0f%%", 100 * c.value("sparsity", 0.0));
    return b;
  } catch (const json::exception&) {
    return "?";
  }
}

}  // namespace

RunMeasure measure_run(const std::string& dir, const MeasureOptions& mo) {
  RunMeasure r;
  r.run = dir;
  r.variant = variant_of(dir);
  r.file_bytes = file_bytes((fs::path(dir) / "model.safetensors").string());
  if (is_gpt_run(dir)) {
    r.kind = "gpt";
    r.metric = "val_perplexity";
    std::shared_ptr<nn::GPT> g = load_gpt_run(dir);
    r.parameters = weight_count(*g);
    r.value = std::exp(gpt_validation_loss(g, dir));
    std::unique_ptr<data::TextTokenizer> tok = data::load_text_tokenizer((fs::path(dir) / "tokenizer").string());
    nn::GenerateOptions go;
    go.max_new_tokens = mo.gen_tokens;
    go.sampling.seed = 1;
    std::vector<int32_t> prompt = tok->encode("\n");
    if (prompt.empty()) prompt = {0};
    std::vector<double> rates;
    for (int64_t rep = 0; rep < mo.gen_reps + 1; rep++) {
      const double t0 = now_s();
      auto out = nn::generate(*g, {prompt}, go, [&](const std::vector<int32_t>& ids) { return tok->decode(ids); });
      const double dt = now_s() - t0;
      if (rep > 0 && dt > 0) rates.push_back(double(out[0].size()) / dt);  // the first run warms up
    }
    r.throughput = median(rates);
    r.latency_b1_ms = r.throughput > 0 ? 1000.0 / r.throughput : 0;
    return r;
  }
  r.kind = "classifier";
  r.metric = "accuracy";
  EvalOptions eo;
  eo.run_dir = dir;
  EvalOutput ev = run_eval(eo);
  auto metric = [&](const std::string& k) {
    return std::find_if(ev.result.metrics.begin(), ev.result.metrics.end(), [&](const auto& kv) { return kv.first == k; });
  };
  auto it = metric("accuracy");
  if (it == ev.result.metrics.end()) {
    r.metric = "loss";
    it = metric("loss");
  }
  r.value = it != ev.result.metrics.end() ? it->second : 0;
  LoadedRun run = load_run(dir);
  r.parameters = weight_count(*run.model);
  // Inputs: the first test examples, as eval read them.
  io::Config config = run.config;
  data::PipelineOptions po;
  po.seed = uint64_t(config.train.get_int("seed", 0));
  data::DataBundle b = data::load_data(config.data, po);
  MOX_CHECK(b.test != nullptr, dir, "the data has no test split to time the model on");
  auto batch_of = [&](int64_t n) {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < n; i++) idx.push_back(i % b.test->size());
    return b.test->get_batch(idx).input;
  };
  NoGradGuard ng;
  run.model->eval();
  auto time_it = [&](const Tensor& x, int64_t reps) {
    for (int64_t i = 0; i < std::max<int64_t>(3, reps / 10); i++) run.model->forward(x);
    std::vector<double> t;
    for (int64_t i = 0; i < reps; i++) {
      const double t0 = now_s();
      run.model->forward(x);
      t.push_back(now_s() - t0);
    }
    return median(t);
  };
  r.latency_b1_ms = 1000.0 * time_it(batch_of(1), mo.reps_b1);
  const double t256 = time_it(batch_of(256), mo.reps_b256);
  r.throughput = t256 > 0 ? 256.0 / t256 : 0;
  return r;
}

std::string write_compress_report(const std::vector<RunMeasure>& rows, const std::string& out_dir) {
  MOX_CHECK(!rows.empty(), "compress-report", "no runs to report");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  MOX_CHECK(!ec, out_dir, "cannot create the folder: " + ec.message());
  // The baseline: the first float row of each kind (else the first row).
  // The baseline of each kind: its first row (the float run the others came from).
  auto baseline = [&](const RunMeasure& r) -> const RunMeasure& {
    for (const auto& b : rows)
      if (b.kind == r.kind) return b;
    return r;
  };
  std::ostringstream md;
  md << "# Compression report\n\n";
  md << "Each run measured here, in one process (" << get_num_threads() << " threads): accuracy on the test split "
        "(classifiers) or validation perplexity (GPT), the model file's size, batch-1 latency (median forward pass; "
        "GPT: ms per generated token) and throughput (examples/s at batch 256; GPT: generated tokens/s). "
        "Ratios are against the float run of the same kind.\n\n";
  md << "| variant | run | metric | value | change | file KB | size vs f32 | weights | batch-1 ms | speed-up | throughput | speed-up |\n";
  md << "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  json arr = json::array();
  char buf[512];
  for (const auto& r : rows) {
    const RunMeasure& b = baseline(r);
    const double change = r.metric == "val_perplexity" ? 100.0 * (r.value / b.value - 1.0) : 100.0 * (r.value - b.value);
    const double size_ratio = b.file_bytes > 0 ? double(r.file_bytes) / double(b.file_bytes) : 0;
    const double lat_x = r.latency_b1_ms > 0 ? b.latency_b1_ms / r.latency_b1_ms : 0;
    const double thr_x = b.throughput > 0 ? r.throughput / b.throughput : 0;
    std::snprintf(buf, sizeof buf, "| %s | %s | %s | %.4f | %+.2f%s | %.1f | %.1f%% | %lld | %.3f | %.2fx | %.0f | %.2fx |\n",
                  r.variant.c_str(), fs::path(r.run).filename().c_str(), r.metric.c_str(), r.value, change,
                  r.metric == "val_perplexity" ? "%" : " pt", double(r.file_bytes) / 1024.0, 100 * size_ratio,
                  (long long)r.parameters, r.latency_b1_ms, lat_x, r.throughput, thr_x);
    md << buf;
    arr.push_back({{"variant", r.variant}, {"run", r.run}, {"kind", r.kind}, {"metric", r.metric}, {"value", r.value},
                   {"change", change}, {"file_bytes", r.file_bytes}, {"size_ratio", size_ratio}, {"weights", r.parameters},
                   {"latency_b1_ms", r.latency_b1_ms}, {"latency_speedup", lat_x}, {"throughput", r.throughput},
                   {"throughput_speedup", thr_x}});
  }
  // The chart: metric vs size and metric vs batch-1 latency, one series per kind... per run.
  std::vector<Series> by_size, by_latency;
  for (const auto& r : rows) {
    const std::string name = r.variant + (r.kind == "gpt" ? " (gpt)" : "");
    by_size.push_back({name, {double(r.file_bytes) / 1024.0}, {r.value}});
    by_latency.push_back({name, {r.latency_b1_ms}, {r.value}});
  }
  const std::string metric = rows.front().metric;
  ChartOptions co;
  co.width = 560;
  co.height = 380;
  std::string a = scatter_chart(metric + " vs model size", "model file (KB)", metric, by_size, false, co);
  std::string c = scatter_chart(metric + " vs batch-1 latency", "batch-1 latency (ms)", metric, by_latency, false, co);
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1140\" height=\"400\" viewBox=\"0 0 1140 400\">\n"
      << "<g transform=\"translate(0,10)\">" << a << "</g>\n<g transform=\"translate(575,10)\">" << c << "</g>\n</svg>\n";
  md << "\n![accuracy vs size and latency](compress_report.svg)\n";
  io::write_file_atomic((fs::path(out_dir) / "compress_report.md").string(), md.str());
  io::write_file_atomic((fs::path(out_dir) / "compress_report.json").string(), json{{"rows", arr}}.dump(2) + "\n");
  io::write_file_atomic((fs::path(out_dir) / "compress_report.svg").string(), svg.str());
  return md.str();
}

}  // namespace mox::train
