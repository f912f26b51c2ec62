#pragma once
// What training and serving a model costs, and when serving it pays back (`mox cost`).
// Pure functions over small structs; the files they read (run folders, bench files,
// hardware tables) have loaders here, the renderers (table, JSON, HTML) are at the end.
//
// ---------------------------------------------------------------- hardware table
// A device (or machine) by name: peak FLOP/s per precision, power draw and rental price.
// The built-in table (default_hardware) holds cpu-2core, cpu-16core, a100-80gb, h100-sxm
// and h200 with the assumptions they rest on (cost.cpp); a user file adds or overrides
// entries (examples/hardware.toml):
//
//   [hardware.my-gpu]                  # quote names with dots: [hardware."rtx.4090"]
//   description = "my workstation"     # optional
//   watts = 450                        # power draw under load
//   price_per_hour = 0.0               # rental (or amortised) price, in the price list's currency
//   [hardware.my-gpu.peak_flops]       # dense peak FLOP/s per precision: f32, tf32, bf16, f16
//   f32 = 82.6e12
//   bf16 = 165e12
//
//   [hardware.h100-sxm]                # an existing entry: only the keys given change
//   price_per_hour = 2.10
//
// A new entry must give watts, price_per_hour and at least one peak_flops value.
//
// ---------------------------------------------------------------- training
// FLOPs are counted as multiply-adds x 2. A GPT / transformer LM per token of training:
//   6N + 6 * L * T * d       (Kaplan et al. 2020, "Scaling Laws for Neural Language
//                             Models", Table 1: forward 2N + 2 n_layer n_ctx d_attn,
//                             backward twice the forward; Chinchilla's C = 6ND is the
//                             first term)
// with N the run's parameter count (embeddings included), L layers, T the context
// (block size) and d the width. A classifier (`mox train` run): the forward FLOPs of one
// example counted layer by layer (Linear 2*in*out per position, Conv2d
// 2*(Cin/groups)*kh*kw*Cout*Hout*Wout, RNN/LSTM/GRU 2*weights per time step; norms,
// activations and pooling left out), and training = 3 x forward.
//
// MFU = achieved FLOP/s / (peak FLOP/s of the run's precision x devices). Device-hours =
// wall time x devices; money = device-hours x price_per_hour; energy = watts x
// device-hours; energy cost = kWh x --kwh-price, added to the money (a cloud price already
// includes power: leave --kwh-price at 0 there; for owned hardware give price_per_hour = 0
// or an amortised price, and the electricity price).
//
// ---------------------------------------------------------------- bench file
// `mox bench-serve` writes (and load_bench reads) JSON:
//
//   {"model": "gpt-char", "endpoint": "/v1/completions", "hardware": "cpu-2core",
//    "replica_threads": 2,
//    "results": [
//      {"concurrency": 1, "batching": true, "requests": 120, "errors": 0, "duration_s": 10.0,
//       "requests_per_s": 12.0, "prompt_tokens": 1200, "completion_tokens": 3840,
//       "tokens_per_s": 384.0, "completion_tokens_per_s": 384.0,
//       "latency_ms": {"p50": 80.1, "p90": 95.0, "p99": 120.3}}, ...]}
//
// Required: "model" and a non-empty "results"; in each result concurrency, requests,
// errors, duration_s, prompt_tokens, completion_tokens, tokens_per_s,
// completion_tokens_per_s and latency_ms.p50/p90/p99. Optional: endpoint, hardware,
// replica_threads, batching, requests_per_s (computed from requests / duration_s when
// absent). Token counts are of the successful requests; tokens_per_s counts prompt and
// completion tokens. Other keys are ignored. A missing or mistyped field is one error
// naming the file and the field ("bench.json: results[1].latency_ms.p99: missing").
//
// ---------------------------------------------------------------- serving
// The operating point: the result with the highest completion_tokens_per_s (tokens_per_s
// when no result generates completions, e.g. /v1/classify) among those whose p99 latency
// is within max_p99_ms (any, when 0) and whose error rate is at most 1%.
// Cost per 1M tokens at full use = price_per_hour / (3600 * tokens_per_s) * 1e6, given both
// per 1M completion tokens (prompt tokens free) and per 1M tokens (prompt + completion).
//
// Forecast, month m = 1..months: requests = R * (1 + growth)^(m-1); tokens = requests x
// the per-request averages; revenue = tokens at the model's price (+ per_classification
// per request on /v1/classify); average load = that month's tokens of the capacity basis
// (completion tokens, or all tokens when the bench has no completions) / seconds in a month
// (730 h); peak = average x peak_factor; replicas = max(min_replicas,
// ceil(peak / (replica tokens/s x target_utilisation))); serving cost = replicas x 730 h x
// price_per_hour; cost = serving + fixed_monthly; margin = revenue - cost; cumulative
// profit starts at -training_cost. Break-even: the first month whose cumulative profit is
// >= 0. Break-even price: the single price per 1M tokens (or per 1M completion tokens,
// prompts free) at which the horizon's revenue equals its costs plus the training cost.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mox/serve/prices.h"

namespace mox::nn {
class Module;
}

namespace mox::serve {

// ---------------------------------------------------------------- hardware

struct Hardware {
  std::string name, description;
  std::map<std::string, double> peak_flops;  // "f32", "tf32", "bf16", "f16" -> FLOP/s
  double watts = 0;
  double price_per_hour = 0;
  // The peak of `precision`; an unknown precision is an error listing the ones given.
  double peak(const std::string& precision) const;
};

struct HardwareTable {
  std::map<std::string, Hardware> entries;
  std::string file;  // the user file merged in, if any (for messages)
  // Unknown name: "unknown hardware 'x' (known: a100-80gb, cpu-16core, ...)".
  const Hardware& get(const std::string& name) const;
  std::vector<std::string> names() const;
};

// The built-in entries (assumptions in cost.cpp).
HardwareTable default_hardware();
// Adds or overrides entries from hardware TOML text (`file` names it in errors).
void merge_hardware(HardwareTable& table, const std::string& text, const std::string& file);
// The built-in table with `path` merged in (nothing merged when path is empty).
HardwareTable load_hardware(const std::string& path);

// ---------------------------------------------------------------- training

// 6N + 6 * layers * context * width: training FLOPs per token of a transformer LM
// (the second term is 0 when any of layers, context, width is 0).
double transformer_train_flops_per_token(double params, int64_t layers, int64_t context, int64_t width);
// Forward FLOPs of one example through `model` (a Sequential's children in order, or the
// module itself), input_shape with a leading batch dim (-1 allowed). Layers it counts:
// see the header comment.
double forward_flops_per_example(const nn::Module& model, const std::vector<int64_t>& input_shape);

// The work a training run did (or is planned to do).
struct TrainingWork {
  std::string source;        // the run folder, or "estimate"
  std::string kind;          // "gpt", "classifier" or "estimate"
  std::string formula;       // how flops_per_unit was counted, in words
  std::string unit;          // "token" or "example"
  int64_t parameters = 0;
  int64_t layers = 0, context = 0, width = 0;  // transformer shape (0: unknown)
  double flops_per_unit = 0;                   // training FLOPs per token / example
  double units = 0;                            // tokens / examples processed
  double units_per_second = 0;                 // measured throughput (0 for an estimate)
  double seconds = 0;                          // measured training time (0 for an estimate)
  std::string precision = "f32";              // the run's precision
  std::string device;                         // the run's device ("cpu", "cuda:0"), if known
  double total_flops() const { return flops_per_unit * units; }
};

// Reads a run folder: a GPT pretraining run (model.json type "gpt" or "bert"-style
// config, summary.json tokens / tokens_per_second / train_seconds) or a classifier run
// (config.toml + summary.json samples_per_second / seconds_per_epoch). Missing files or
// fields are errors naming them.
TrainingWork training_work_of_run(const std::string& dir);
// A planned run: params x tokens with the optional transformer shape.
TrainingWork training_work_estimate(double params, double tokens, int64_t layers, int64_t context, int64_t width);

struct TrainingCostOptions {
  int64_t devices = 1;      // accelerators (or machines) the run used / will use
  double mfu = 0.4;         // estimate: the assumed model-FLOP utilisation
  double kwh_price = 0;     // energy price per kWh (0: not counted)
  std::string precision;    // the peak to compare against; empty: the run's (estimates: bf16
                            // when the hardware lists it, else f32)
};

struct TrainingCost {
  TrainingWork work;
  Hardware hardware;
  std::string precision;
  int64_t devices = 1;
  bool measured = false;     // from a run (true) or an estimate at an assumed MFU
  double total_flops = 0;
  double seconds = 0;        // wall time
  double device_hours = 0;   // seconds / 3600 x devices
  double achieved_flops = 0; // FLOP/s, all devices together
  double peak_flops = 0;     // per device
  double mfu = 0;
  double kwh = 0;
  double rental_cost = 0;    // device_hours x price_per_hour
  double energy_cost = 0;    // kwh x kwh_price
  double total_cost = 0;
  std::string currency = "USD";
};

TrainingCost training_cost(const TrainingWork& work, const Hardware& hardware, const TrainingCostOptions& options);

// ---------------------------------------------------------------- bench file

struct LatencyMs {
  double p50 = 0, p90 = 0, p99 = 0;
};

struct BenchResult {
  int64_t concurrency = 0;
  bool batching = false;
  int64_t requests = 0, errors = 0;
  double duration_s = 0, requests_per_s = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  double tokens_per_s = 0, completion_tokens_per_s = 0;
  LatencyMs latency_ms;
};

struct BenchRun {
  std::string file;
  std::string model, endpoint, hardware;
  int64_t replica_threads = 0;
  std::vector<BenchResult> results;
};

BenchRun parse_bench(const std::string& json_text, const std::string& file);
BenchRun load_bench(const std::string& path);

// ---------------------------------------------------------------- serving

// price_per_hour / (3600 * tokens_per_s) * 1e6; infinity when tokens_per_s <= 0.
double cost_per_1m_tokens(double price_per_hour, double tokens_per_s);

// True when the bench generates no completions: capacity is then counted in all tokens.
bool capacity_in_all_tokens(const BenchRun& bench);
// The replica's capacity at a result, in the basis above (tokens/s).
double capacity_of(const BenchRun& bench, const BenchResult& r);
// Index of the operating point (see the header comment); max_p99_ms <= 0: any latency.
// None qualifying is an error naming the file and the best p99 there was.
size_t pick_operating_point(const BenchRun& bench, double max_p99_ms);

struct Demand {
  double requests_per_month = 0;
  double growth = 0;             // per month: 0.1 = +10% a month, compounded
  int64_t months = 24;
  double prompt_tokens = 0;      // per request (average)
  double completion_tokens = 0;  // per request (average)
  double peak_factor = 3;        // peak load over the month's average
  double target_utilisation = 1; // fraction of a replica's measured capacity used at peak
  int64_t min_replicas = 1;      // kept running even without load
  double fixed_monthly = 0;      // other monthly costs
  double training_cost = 0;      // one-off, before month 1
};
// Rejects negative demand, growth <= -1, months < 1, peak_factor < 1, utilisation outside
// (0, 1], negative costs (one-line errors naming the option).
void check_demand(const Demand& d);

constexpr double kHoursPerMonth = 730;  // 8760 / 12

struct MonthRow {
  int64_t month = 0;
  double requests = 0, prompt_tokens = 0, completion_tokens = 0;
  double revenue = 0;
  double average_tokens_per_s = 0, peak_tokens_per_s = 0;  // capacity basis
  int64_t replicas = 0;
  double utilisation = 0;  // average load / (replicas x capacity)
  double serving_cost = 0, fixed_cost = 0, cost = 0;
  double margin = 0;       // revenue - cost
  double cumulative = 0;   // profit so far, training cost included
};

struct Forecast {
  std::vector<MonthRow> months;
  int64_t break_even_month = 0;  // 0: not within the horizon
  double total_revenue = 0, total_cost = 0;  // over the horizon, training cost excluded
  double total_tokens = 0, total_completion_tokens = 0;
  // The single price that breaks even over the horizon (training cost included).
  double break_even_price_per_1m_tokens = 0;
  double break_even_price_per_1m_completion = 0;
  // What serving cost per 1M tokens at this volume (idle capacity included).
  double serving_cost_per_1m_tokens = 0;
};

// revenue_per_request: what one average request earns (revenue_per_request()).
Forecast forecast(const Demand& demand, double revenue_per_request, double replica_tokens_per_s,
                  bool capacity_in_all_tokens, double price_per_hour);
// (prompt x prompt_per_1m + completion x completion_per_1m) / 1e6, + per_classification on
// the /v1/classify endpoint.
double revenue_per_request(const ModelPrice& price, double prompt_tokens, double completion_tokens,
                           const std::string& endpoint);

// Everything `mox cost serve` reports.
struct ServingReport {
  BenchRun bench;
  Hardware hardware;
  std::string model, currency = "USD";
  size_t operating_point = 0;
  double max_p99_ms = 0;
  double cost_per_1m_completion = 0;  // at the operating point, full use
  double cost_per_1m_tokens = 0;
  std::optional<ModelPrice> price;    // the model's price (when a price list was given)
  std::optional<Demand> demand;       // with a forecast
  Forecast forecast;
};

// ---------------------------------------------------------------- renderers

std::string training_table(const TrainingCost& c);
std::string training_json(const TrainingCost& c);
std::string serving_table(const ServingReport& r);
std::string serving_json(const ServingReport& r);
// A self-contained page (inline CSS and SVG, no scripts, no external references): the bench
// results and cost per 1M tokens per concurrency, and with a forecast monthly revenue vs
// cost and cumulative profit with the break-even month marked.
std::string serving_html(const ServingReport& r);

}  // namespace mox::serve
