#include "mox/serve/cost.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>

#include "mox/io/config.h"
#include "mox/io/file_util.h"
#include "mox/nn/layers/conv2d.h"
#include "mox/nn/layers/linear.h"
#include "mox/nn/layers/rnn_base.h"
#include "mox/nn/layers/sequential.h"
#include "mox/nn/models/build_model.h"
#include "mox/tensor/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mox::serve {

namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); i++) out += (i ? sep : "") + v[i];
  return out;
}

const char* const kPrecisions[] = {"f32", "tf32", "bf16", "f16"};

}  // namespace

// ---------------------------------------------------------------- hardware

double Hardware::peak(const std::string& precision) const {
  auto it = peak_flops.find(precision);
  if (it != peak_flops.end()) return it->second;
  std::vector<std::string> have;
  for (const auto& [p, v] : peak_flops) have.push_back(p);
  throw Error("hardware " + name, "no peak FLOP/s for precision '" + precision + "' (given: " + join(have, ", ") +
                                      "); add peak_flops." + precision + " in a --hardware file");
}

const Hardware& HardwareTable::get(const std::string& name) const {
  auto it = entries.find(name);
  if (it != entries.end()) return it->second;
  throw Error("hardware", "unknown hardware '" + name + "' (known: " + join(names(), ", ") +
                              "; add it with --hardware FILE.toml, see examples/hardware.toml)");
}

std::vector<std::string> HardwareTable::names() const {
  std::vector<std::string> out;
  for (const auto& [n, h] : entries) out.push_back(n);
  return out;
}

HardwareTable default_hardware() {
  // Every number here is an assumption to be checked against one's own machine and price
  // list; a --hardware file overrides any of them.
  HardwareTable t;
  auto add = [&](Hardware h) { t.entries[h.name] = std::move(h); };
  // CPUs: a Xeon with AVX-512 and AMX (Sapphire Rapids class, like the 2-core machines mox
  // is developed on) at an assumed 2.6 GHz under load. f32 per core per cycle: 2 FMA units
  // x 16 f32 lanes x 2 FLOPs per FMA = 64; bf16 with AMX: 1024 FLOPs per core per cycle
  // (Intel's figure for TMUL). Power: the cores' share of a ~350 W 56-core socket plus
  // memory. Prices: typical on-demand cloud list prices (2025) for that many cores.
  const double ghz = 2.6e9;
  add({"cpu-2core", "2 x86 cores, AVX-512 + AMX, 2.6 GHz (assumed); ~0.10/h cloud VM",
       {{"f32", 2 * 64 * ghz}, {"bf16", 2 * 1024 * ghz}}, 20, 0.10});
  add({"cpu-16core", "16 x86 cores, AVX-512 + AMX, 2.6 GHz (assumed); ~0.80/h cloud VM",
       {{"f32", 16 * 64 * ghz}, {"bf16", 16 * 1024 * ghz}}, 150, 0.80});
  // GPUs: NVIDIA's data-sheet dense peaks (no 2:4 sparsity); f32 is the CUDA-core peak,
  // tf32 the tensor-core one. Board power at TDP. Prices: typical on-demand per-GPU list
  // prices at GPU clouds (2025); the hyperscalers charge more.
  add({"a100-80gb", "NVIDIA A100 80GB SXM, 400 W; ~1.80/h per GPU on demand",
       {{"f32", 19.5e12}, {"tf32", 156e12}, {"bf16", 312e12}, {"f16", 312e12}}, 400, 1.80});
  add({"h100-sxm", "NVIDIA H100 SXM5 80GB, 700 W; ~3.00/h per GPU on demand",
       {{"f32", 67e12}, {"tf32", 494e12}, {"bf16", 989e12}, {"f16", 989e12}}, 700, 3.00});
  add({"h200", "NVIDIA H200 141GB (H100 SXM compute, more memory), 700 W; ~3.70/h per GPU on demand",
       {{"f32", 67e12}, {"tf32", 494e12}, {"bf16", 989e12}, {"f16", 989e12}}, 700, 3.70});
  return t;
}

namespace {

// A number >= 0 at `key` of t, if present.
std::optional<double> non_negative(const io::ConfigTable& t, const std::string& key) {
  const io::ConfigValue* v = t.find(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw t.value_error(*v, "expected a number >= 0, got " + v->describe());
  const double x = v->is_int() ? double(std::get<int64_t>(v->v)) : std::get<double>(v->v);
  if (!std::isfinite(x) || x < 0) throw t.value_error(*v, "must be a number >= 0, got " + v->describe());
  return x;
}

const io::ConfigTable& table_at(const io::ConfigTable& parent, const std::string& key, const std::string& want) {
  const io::ConfigValue* v = parent.find(key);
  if (!v->is_table()) throw parent.value_error(*v, "expected " + want + ", got " + v->describe());
  return *std::get<std::shared_ptr<io::ConfigTable>>(v->v);
}

}  // namespace

void merge_hardware(HardwareTable& table, const std::string& text, const std::string& file) {
  std::shared_ptr<io::ConfigTable> root = io::parse_config_table(text, file);
  table.file = file;
  if (root->has("hardware")) {
    const io::ConfigTable& hw = table_at(*root, "hardware", "a table of devices ([hardware.NAME])");
    for (const std::string& name : hw.keys()) {
      const io::ConfigTable& e = table_at(hw, name, "a device table ([hardware." + name + "])");
      const bool existing = table.entries.count(name) != 0;
      Hardware h = existing ? table.entries[name] : Hardware{};
      h.name = name;
      if (auto d = e.get_opt_string("description")) h.description = *d;
      if (auto w = non_negative(e, "watts")) h.watts = *w;
      else if (!existing) throw e.error("watts", "missing (a new device needs watts, price_per_hour and peak_flops)");
      if (auto p = non_negative(e, "price_per_hour")) h.price_per_hour = *p;
      else if (!existing) throw e.error("price_per_hour", "missing (a new device needs watts, price_per_hour and peak_flops)");
      if (e.has("peak_flops")) {
        const io::ConfigTable& pf = table_at(e, "peak_flops", "a table of FLOP/s per precision (f32, tf32, bf16, f16)");
        for (const char* p : kPrecisions) {
          if (auto v = non_negative(pf, p)) {
            if (*v <= 0) throw pf.error(p, "must be > 0");
            h.peak_flops[p] = *v;
          }
        }
        pf.check_no_unknown_keys("peak_flops (precisions)");
      }
      if (h.peak_flops.empty())
        throw e.error("peak_flops", "missing (give at least one of f32, tf32, bf16, f16)");
      e.check_no_unknown_keys("a device");
      table.entries[name] = h;
    }
  }
  root->check_no_unknown_keys("a hardware table ([hardware.NAME] tables)");
}

HardwareTable load_hardware(const std::string& path) {
  HardwareTable t = default_hardware();
  if (!path.empty()) merge_hardware(t, io::read_file(path), path);
  return t;
}

// ---------------------------------------------------------------- training

double transformer_train_flops_per_token(double params, int64_t layers, int64_t context, int64_t width) {
  // Kaplan et al. 2020, Table 1: per token, forward 2N + 2 n_layer n_ctx d_attn; training
  // (forward + backward) three times that.
  double f = 6.0 * params;
  if (layers > 0 && context > 0 && width > 0) f += 6.0 * double(layers) * double(context) * double(width);
  return f;
}

namespace {

double product(const std::vector<int64_t>& s, size_t from, size_t to) {
  double p = 1;
  for (size_t i = from; i < to && i < s.size(); i++) p *= double(std::max<int64_t>(s[i], 1));
  return p;
}

// One module's forward FLOPs given its input shape (batch dim first); `shape` becomes its
// output shape.
double module_flops(const nn::Module& m, std::vector<int64_t>& shape) {
  if (auto* seq = dynamic_cast<const nn::Sequential*>(&m)) {
    double f = 0;
    for (const auto& [name, child] : seq->named_children().items()) f += module_flops(*child, shape);
    return f;
  }
  std::vector<int64_t> out = m.output_shape(shape);
  double f = 0;
  if (auto* lin = dynamic_cast<const nn::Linear*>(&m)) {
    // every position but the batch and feature dims applies the matrix once
    const double positions = out.size() >= 2 ? product(out, 1, out.size() - 1) : 1;
    f = 2.0 * double(lin->in_features) * double(lin->out_features) * positions;
  } else if (auto* conv = dynamic_cast<const nn::Conv2d*>(&m)) {
    const auto& o = conv->options;
    const double hw = out.size() >= 2 ? product(out, out.size() - 2, out.size()) : 1;
    f = 2.0 * double(o.in_channels() / std::max<int64_t>(o.groups(), 1)) * double(o.kernel_size().h) *
        double(o.kernel_size().w) * double(o.out_channels()) * hw;
  } else if (auto* rnn = dynamic_cast<const nn::RNNBase*>(&m)) {
    double weights = 0;
    for (const auto& w : rnn->weights) weights += double(w.w_ih.numel() + w.w_hh.numel());
    const size_t tdim = rnn->options.batch_first() ? 1 : 0;
    const double steps = shape.size() > tdim + 1 ? double(std::max<int64_t>(shape[tdim], 1)) : 1;
    f = 2.0 * weights * steps;
  }
  shape = out;
  return f;
}

json read_json_file(const std::string& path) {
  try {
    return json::parse(io::read_file(path));
  } catch (const json::exception& e) {
    throw Error(path, std::string("not valid JSON: ") + e.what());
  }
}

double num_field(const json& j, const std::string& key, const std::string& file) {
  if (!j.contains(key)) throw Error(file, key + ": missing");
  if (!j[key].is_number()) throw Error(file, key + ": expected a number, got " + j[key].dump());
  return j[key].get<double>();
}

int64_t int_of(const json& j, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (j.contains(k) && j[k].is_number_integer()) return j[k].get<int64_t>();
  return 0;
}

// Layers, context and width of a transformer config (GPT's or BERT's key names).
void transformer_shape(const json& cfg, TrainingWork& w) {
  w.layers = int_of(cfg, {"n_layer", "num_hidden_layers"});
  w.width = int_of(cfg, {"n_embd", "hidden_size"});
  if (w.context == 0) w.context = int_of(cfg, {"block_size", "max_length", "max_position_embeddings"});
}

std::string transformer_formula(const TrainingWork& w) {
  if (w.layers > 0 && w.context > 0 && w.width > 0)
    return "6N + 6*L*T*d per token (Kaplan et al. 2020; N = " + std::to_string(w.parameters) +
           " parameters incl. embeddings, L = " + std::to_string(w.layers) + ", T = " + std::to_string(w.context) +
           ", d = " + std::to_string(w.width) + ")";
  return "6N per token (Chinchilla's C = 6ND; no model shape, so attention is not counted)";
}

}  // namespace

double forward_flops_per_example(const nn::Module& model, const std::vector<int64_t>& input_shape) {
  std::vector<int64_t> shape = input_shape;
  return module_flops(model, shape);
}

TrainingWork training_work_of_run(const std::string& dir) {
  MOX_CHECK(fs::is_directory(dir), dir, "not a run folder (no such directory)");
  const std::string sp = (fs::path(dir) / "summary.json").string();
  MOX_CHECK(fs::exists(sp), sp, "missing: not a finished run of mox train / mox pretrain");
  const json sj = read_json_file(sp);
  TrainingWork w;
  w.source = dir;
  w.precision = sj.value("precision", std::string("f32"));
  w.device = sj.value("device", std::string(""));
  const std::string mj_path = (fs::path(dir) / "model.json").string();
  const std::string cfg_path = (fs::path(dir) / "config.toml").string();

  if (sj.contains("tokens_per_second")) {  // mox pretrain (GPT, or BERT masked-LM)
    w.kind = "gpt";
    w.unit = "token";
    w.parameters = int64_t(num_field(sj, "parameters", sp));
    w.units_per_second = num_field(sj, "tokens_per_second", sp);
    w.seconds = num_field(sj, "train_seconds", sp);
    w.units = sj.contains("tokens") ? num_field(sj, "tokens", sp) : w.units_per_second * w.seconds;
    w.context = int_of(sj, {"block_size"});
    if (sj.contains("model") && sj["model"].is_object()) transformer_shape(sj["model"], w);
    else if (fs::exists(mj_path)) transformer_shape(read_json_file(mj_path), w);
    w.flops_per_unit = transformer_train_flops_per_token(double(w.parameters), w.layers, w.context, w.width);
    w.formula = transformer_formula(w);
    return w;
  }
  if (sj.contains("samples_per_second") && fs::exists(cfg_path)) {  // mox train
    w.kind = "classifier";
    w.unit = "example";
    w.parameters = int64_t(num_field(sj, "parameters", sp));
    w.units_per_second = num_field(sj, "samples_per_second", sp);
    MOX_CHECK(sj.contains("seconds_per_epoch") && sj["seconds_per_epoch"].is_array(), sp,
              "seconds_per_epoch: missing");
    for (const json& s : sj["seconds_per_epoch"]) w.seconds += s.get<double>();
    w.units = w.units_per_second * w.seconds;
    io::Config cfg = io::load_config(cfg_path);
    std::shared_ptr<nn::Sequential> model = nn::build_model(cfg.model);
    w.flops_per_unit = 3.0 * forward_flops_per_example(*model, nn::model_input_shape(cfg.model));
    w.formula = "3 x forward FLOPs per example (forward counted layer by layer: Linear, Conv2d, RNN/LSTM/GRU)";
    return w;
  }
  if (sj.contains("seconds_per_epoch") && sj.contains("train_examples") && fs::exists(mj_path)) {
    // mox finetune (a transformer classifier): every example is a padded sequence of T tokens
    w.kind = "transformer-classifier";
    w.unit = "example";
    w.parameters = int64_t(num_field(sj, "parameters", sp));
    for (const json& s : sj["seconds_per_epoch"]) w.seconds += s.get<double>();
    const double epochs = double(sj["seconds_per_epoch"].size());
    w.units = num_field(sj, "train_examples", sp) * epochs;
    w.units_per_second = w.seconds > 0 ? w.units / w.seconds : 0;
    transformer_shape(read_json_file(mj_path), w);
    MOX_CHECK(w.context > 0, mj_path, "max_length: missing (the sequence length of an example)");
    w.flops_per_unit =
        double(w.context) * transformer_train_flops_per_token(double(w.parameters), w.layers, w.context, w.width);
    w.formula = "T x (" + transformer_formula(w) + ") per example";
    return w;
  }
  throw Error(sp, "no throughput: expected tokens_per_second (mox pretrain) or samples_per_second with "
                  "config.toml (mox train)");
}

TrainingWork training_work_estimate(double params, double tokens, int64_t layers, int64_t context, int64_t width) {
  MOX_CHECK(std::isfinite(params) && params > 0, "--params", "must be > 0");
  MOX_CHECK(std::isfinite(tokens) && tokens > 0, "--tokens", "must be > 0");
  MOX_CHECK(layers >= 0 && context >= 0 && width >= 0, "--layers/--context/--width", "must be >= 0");
  TrainingWork w;
  w.source = "estimate";
  w.kind = "estimate";
  w.unit = "token";
  w.parameters = int64_t(params);
  w.layers = layers;
  w.context = context;
  w.width = width;
  w.units = tokens;
  w.flops_per_unit = transformer_train_flops_per_token(params, layers, context, width);
  w.formula = transformer_formula(w);
  return w;
}

TrainingCost training_cost(const TrainingWork& work, const Hardware& hw, const TrainingCostOptions& o) {
  MOX_CHECK(o.devices >= 1, "--devices", "must be >= 1");
  MOX_CHECK(o.kwh_price >= 0, "--kwh-price", "must be >= 0");
  TrainingCost c;
  c.work = work;
  c.hardware = hw;
  c.devices = o.devices;
  c.measured = work.kind != "estimate";
  c.precision = o.precision;
  if (c.precision.empty())
    c.precision = c.measured ? work.precision : (hw.peak_flops.count("bf16") ? "bf16" : "f32");
  c.peak_flops = hw.peak(c.precision);
  c.total_flops = work.total_flops();
  if (c.measured) {
    c.seconds = work.seconds;
    c.achieved_flops = work.flops_per_unit * work.units_per_second;
    c.mfu = c.achieved_flops / (c.peak_flops * double(o.devices));
  } else {
    MOX_CHECK(o.mfu > 0 && o.mfu <= 1, "--mfu", "must be in (0, 1], got " + std::to_string(o.mfu));
    c.mfu = o.mfu;
    c.achieved_flops = c.peak_flops * double(o.devices) * o.mfu;
    c.seconds = c.total_flops / c.achieved_flops;
  }
  c.device_hours = c.seconds / 3600.0 * double(o.devices);
  c.kwh = hw.watts * c.device_hours / 1000.0;
  c.rental_cost = c.device_hours * hw.price_per_hour;
  c.energy_cost = c.kwh * o.kwh_price;
  c.total_cost = c.rental_cost + c.energy_cost;
  return c;
}

// ---------------------------------------------------------------- bench file

namespace {

// Reads fields of one JSON object, naming file and path in errors.
struct Fields {
  const json& j;
  std::string file, path;  // path: "" or "results[1]."

  const json& need(const std::string& key) const {
    if (!j.contains(key)) throw Error(file, path + key + ": missing");
    return j[key];
  }
  double number(const std::string& key) const {
    const json& v = need(key);
    if (!v.is_number()) throw Error(file, path + key + ": expected a number, got " + v.dump());
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < 0) throw Error(file, path + key + ": must be >= 0, got " + v.dump());
    return x;
  }
  int64_t integer(const std::string& key) const {
    const json& v = need(key);
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      throw Error(file, path + key + ": expected an integer >= 0, got " + v.dump());
    return v.get<int64_t>();
  }
  std::string string(const std::string& key, bool required) const {
    if (!required && !j.contains(key)) return "";
    const json& v = need(key);
    if (!v.is_string()) throw Error(file, path + key + ": expected a string, got " + v.dump());
    return v.get<std::string>();
  }
};

}  // namespace

BenchRun parse_bench(const std::string& text, const std::string& file) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(file, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error(file, "expected a JSON object (a mox bench-serve file)");
  Fields top{j, file, ""};
  BenchRun b;
  b.file = file;
  b.model = top.string("model", true);
  b.endpoint = top.string("endpoint", false);
  b.hardware = top.string("hardware", false);
  if (j.contains("replica_threads")) b.replica_threads = top.integer("replica_threads");
  const json& results = top.need("results");
  if (!results.is_array() || results.empty()) throw Error(file, "results: expected a non-empty array of results");
  for (size_t i = 0; i < results.size(); i++) {
    const std::string path = "results[" + std::to_string(i) + "].";
    if (!results[i].is_object()) throw Error(file, path.substr(0, path.size() - 1) + ": expected an object");
    Fields f{results[i], file, path};
    BenchResult r;
    r.concurrency = f.integer("concurrency");
    if (results[i].contains("batching")) {
      if (!results[i]["batching"].is_boolean()) throw Error(file, path + "batching: expected true or false");
      r.batching = results[i]["batching"].get<bool>();
    }
    r.requests = f.integer("requests");
    r.errors = f.integer("errors");
    r.duration_s = f.number("duration_s");
    r.prompt_tokens = f.integer("prompt_tokens");
    r.completion_tokens = f.integer("completion_tokens");
    r.tokens_per_s = f.number("tokens_per_s");
    r.completion_tokens_per_s = f.number("completion_tokens_per_s");
    r.requests_per_s = results[i].contains("requests_per_s") ? f.number("requests_per_s")
                       : r.duration_s > 0                      ? double(r.requests) / r.duration_s
                                                               : 0;
    const json& lat = f.need("latency_ms");
    if (!lat.is_object()) throw Error(file, path + "latency_ms: expected an object {p50, p90, p99}");
    Fields l{lat, file, path + "latency_ms."};
    r.latency_ms = {l.number("p50"), l.number("p90"), l.number("p99")};
    b.results.push_back(r);
  }
  return b;
}

BenchRun load_bench(const std::string& path) { return parse_bench(io::read_file(path), path); }

// ---------------------------------------------------------------- serving

double cost_per_1m_tokens(double price_per_hour, double tokens_per_s) {
  if (tokens_per_s <= 0) return std::numeric_limits<double>::infinity();
  return price_per_hour / (3600.0 * tokens_per_s) * 1e6;
}

bool capacity_in_all_tokens(const BenchRun& bench) {
  for (const BenchResult& r : bench.results)
    if (r.completion_tokens_per_s > 0) return false;
  return true;
}

double capacity_of(const BenchRun& bench, const BenchResult& r) {
  return capacity_in_all_tokens(bench) ? r.tokens_per_s : r.completion_tokens_per_s;
}

size_t pick_operating_point(const BenchRun& bench, double max_p99_ms) {
  std::optional<size_t> best;
  double best_p99 = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < bench.results.size(); i++) {
    const BenchResult& r = bench.results[i];
    const double error_rate = r.requests + r.errors > 0 ? double(r.errors) / double(r.requests + r.errors) : 0;
    if (error_rate > 0.01) continue;
    best_p99 = std::min(best_p99, r.latency_ms.p99);
    if (max_p99_ms > 0 && r.latency_ms.p99 > max_p99_ms) continue;
    if (!best || capacity_of(bench, r) > capacity_of(bench, bench.results[*best])) best = i;
  }
  if (!best) {
    if (!std::isfinite(best_p99)) throw Error(bench.file, "no result with an error rate of at most 1%");
    char buf[160];
    std::snprintf(buf, sizeof buf, "no result with p99 latency within %g ms (the lowest p99 is %g ms)", max_p99_ms,
                  best_p99);
    throw Error(bench.file, buf);
  }
  return *best;
}

void check_demand(const Demand& d) {
  auto finite_at_least = [](double v, double lo, const char* opt) {
    if (std::isfinite(v) && v >= lo) return;
    char buf[96];
    std::snprintf(buf, sizeof buf, "must be >= %g, got %g", lo, v);
    throw Error(opt, buf);
  };
  finite_at_least(d.requests_per_month, 0, "--requests-per-month");
  if (!std::isfinite(d.growth) || d.growth <= -1) throw Error("--growth", "must be > -1 (a monthly rate: 0.1 = +10%)");
  if (d.months < 1 || d.months > 1200) throw Error("--months", "must be in 1..1200");
  finite_at_least(d.prompt_tokens, 0, "--prompt-tokens");
  finite_at_least(d.completion_tokens, 0, "--completion-tokens");
  finite_at_least(d.peak_factor, 1, "--peak-factor");
  if (!(d.target_utilisation > 0 && d.target_utilisation <= 1))
    throw Error("--target-utilisation", "must be in (0, 1]");
  if (d.min_replicas < 0) throw Error("--min-replicas", "must be >= 0");
  finite_at_least(d.fixed_monthly, 0, "--fixed-monthly");
  finite_at_least(d.training_cost, 0, "--training-cost");
}

double revenue_per_request(const ModelPrice& p, double prompt_tokens, double completion_tokens,
                           const std::string& endpoint) {
  double r = (prompt_tokens * p.prompt_per_1m + completion_tokens * p.completion_per_1m) / 1e6;
  if (endpoint == "/v1/classify") r += p.per_classification;
  return r;
}

Forecast forecast(const Demand& d, double revenue_per_req, double replica_tokens_per_s, bool all_tokens,
                  double price_per_hour) {
  check_demand(d);
  MOX_CHECK(replica_tokens_per_s > 0, "forecast", "the replica's throughput must be > 0 tokens/s");
  Forecast f;
  const double seconds_per_month = kHoursPerMonth * 3600.0;
  double cumulative = -d.training_cost;
  for (int64_t m = 1; m <= d.months; m++) {
    MonthRow row;
    row.month = m;
    row.requests = d.requests_per_month * std::pow(1.0 + d.growth, double(m - 1));
    row.prompt_tokens = row.requests * d.prompt_tokens;
    row.completion_tokens = row.requests * d.completion_tokens;
    row.revenue = row.requests * revenue_per_req;
    const double basis_tokens = all_tokens ? row.prompt_tokens + row.completion_tokens : row.completion_tokens;
    row.average_tokens_per_s = basis_tokens / seconds_per_month;
    row.peak_tokens_per_s = row.average_tokens_per_s * d.peak_factor;
    // (a relative epsilon keeps an exact fit, e.g. peak == capacity, from rounding up)
    const double need = row.peak_tokens_per_s / (replica_tokens_per_s * d.target_utilisation);
    row.replicas = std::max<int64_t>(d.min_replicas, int64_t(std::ceil(need * (1 - 1e-12))));
    row.utilisation = row.replicas > 0 ? row.average_tokens_per_s / (double(row.replicas) * replica_tokens_per_s) : 0;
    row.serving_cost = double(row.replicas) * kHoursPerMonth * price_per_hour;
    row.fixed_cost = d.fixed_monthly;
    row.cost = row.serving_cost + row.fixed_cost;
    row.margin = row.revenue - row.cost;
    cumulative += row.margin;
    row.cumulative = cumulative;
    if (f.break_even_month == 0 && cumulative >= 0) f.break_even_month = m;
    f.total_revenue += row.revenue;
    f.total_cost += row.cost;
    f.total_tokens += row.prompt_tokens + row.completion_tokens;
    f.total_completion_tokens += row.completion_tokens;
    f.months.push_back(row);
  }
  const double to_recover = f.total_cost + d.training_cost;
  const double inf = std::numeric_limits<double>::infinity();
  f.break_even_price_per_1m_tokens = f.total_tokens > 0 ? to_recover / (f.total_tokens / 1e6) : inf;
  f.break_even_price_per_1m_completion = f.total_completion_tokens > 0 ? to_recover / (f.total_completion_tokens / 1e6) : inf;
  double serving = 0;
  for (const MonthRow& r : f.months) serving += r.serving_cost;
  f.serving_cost_per_1m_tokens = f.total_tokens > 0 ? serving / (f.total_tokens / 1e6) : inf;
  return f;
}

}  // namespace mox::serve
