// mox cost train --run DIR [--hardware-name NAME] [--hardware FILE] [--devices N] [--kwh-price P]
// mox cost train --params N --tokens T [--layers L --context C --width D] --hardware-name NAME [--mfu 0.4]
// mox cost serve --bench FILE [--prices FILE] [--hardware-name NAME] [--max-p99-ms MS]
//                [--requests-per-month N --growth G --months M ...] [--html FILE]
// mox cost hardware [--hardware FILE]
// What training and serving a model costs, and when serving it pays back (serve/cost.h).
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>

#include "command.h"
#include "mox/io/file_util.h"
#include "mox/serve/cost.h"
#include "mox/serve/prices.h"
#include "mox/tensor/error.h"

namespace mox::cli {

namespace {

// The hardware a run computed on when --hardware-name is not given: CPU runs default to
// cpu-2core (the machines mox is developed on); GPUs must be named.
std::string hardware_for_run(const serve::TrainingWork& w, const std::string& given,
                             const serve::HardwareTable& table) {
  if (!given.empty()) return given;
  if (w.device.empty() || w.device == "cpu") return "cpu-2core";
  throw Error("--hardware-name", "the run computed on " + w.device + ": name its hardware (known: " + [&] {
    std::string s;
    for (const std::string& n : table.names()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }() + ")");
}

void add_hardware_options(CLI::App* app, std::string& name, std::string& file) {
  app->add_option("--hardware-name", name, "Hardware table entry (mox cost hardware lists them)");
  app->add_option("--hardware", file, "TOML file adding or overriding hardware entries (examples/hardware.toml)")
      ->check(CLI::ExistingFile);
}

}  // namespace

Command add_cost_command(CLI::App& parent) {
  struct Args {
    // train
    std::string run, hardware_name, hardware_file, precision, format = "table";
    double params = 0, tokens = 0, mfu = 0.4, kwh_price = 0;
    int64_t layers = 0, context = 0, width = 0, devices = 1;
    // serve
    std::string bench, prices, model_name, html, training_run, training_hardware;
    double max_p99_ms = 0, training_cost = 0;
    double requests_per_month = 0, prompt_tokens = 0, completion_tokens = 0;
    CLI::Option *requests_given = nullptr, *prompt_given = nullptr, *completion_given = nullptr;
    serve::Demand demand;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("cost", "Training and serving cost, revenue forecast and break-even");
  app->require_subcommand(1);
  app->footer(
      "Example: mox cost train --run runs/gpt\n"
      "         mox cost train --params 1e9 --tokens 2e10 --layers 24 --context 2048 --width 2048 --hardware-name h100-sxm --devices 8\n"
      "         mox cost serve --bench bench.json --prices examples/prices.toml --requests-per-month 1e6 --growth 0.1 --html cost.html");

  CLI::App* tr = app->add_subcommand("train", "FLOPs, MFU, device-hours, energy and money of a training run (or a plan)");
  tr->add_option("--run", a->run, "Run folder of mox pretrain / mox train / mox finetune (measured throughput)");
  tr->add_option("--params", a->params, "Estimate: parameters N")->check(CLI::PositiveNumber);
  tr->add_option("--tokens", a->tokens, "Estimate: training tokens T")->check(CLI::PositiveNumber);
  tr->add_option("--layers", a->layers, "Estimate: transformer layers L (with --context and --width: attention FLOPs)")
      ->check(CLI::NonNegativeNumber);
  tr->add_option("--context", a->context, "Estimate: context length T")->check(CLI::NonNegativeNumber);
  tr->add_option("--width", a->width, "Estimate: model width d")->check(CLI::NonNegativeNumber);
  tr->add_option("--mfu", a->mfu, "Estimate: assumed model-FLOP utilisation (default 0.4)");
  add_hardware_options(tr, a->hardware_name, a->hardware_file);
  tr->add_option("--devices", a->devices, "Devices (GPUs or machines) in parallel (default 1)")->check(CLI::PositiveNumber);
  tr->add_option("--precision", a->precision,
                 "Peak to compare against: f32, tf32, bf16, f16 (default: the run's; estimates: bf16 when listed)")
      ->check(CLI::IsMember({"f32", "tf32", "bf16", "f16"}));
  tr->add_option("--kwh-price", a->kwh_price, "Electricity price per kWh, added to the rental cost (default 0)")
      ->check(CLI::NonNegativeNumber);
  tr->add_option("--format", a->format, "table (default) or json")->check(CLI::IsMember({"table", "json"}));
  tr->footer("FLOPs: 6N + 6*L*T*d per token for transformers (Kaplan et al. 2020), 3 x forward per example for "
             "mox train classifiers.");

  CLI::App* sv = app->add_subcommand("serve", "Cost per 1M tokens from a mox bench-serve file; revenue forecast and break-even");
  sv->add_option("--bench", a->bench, "JSON file written by mox bench-serve")->required()->check(CLI::ExistingFile);
  sv->add_option("--prices", a->prices, "Price list TOML (as mox usage reads it); needed for a forecast")
      ->check(CLI::ExistingFile);
  sv->add_option("--model-name", a->model_name, "Model whose price applies (default: the bench file's model)");
  add_hardware_options(sv, a->hardware_name, a->hardware_file);
  sv->add_option("--max-p99-ms", a->max_p99_ms, "Operating point: p99 latency limit in ms (default: any)")
      ->check(CLI::NonNegativeNumber);
  a->requests_given = sv->add_option("--requests-per-month", a->requests_per_month, "Forecast: requests in month 1");
  sv->add_option("--growth", a->demand.growth, "Forecast: monthly growth, compounded (0.1 = +10%; default 0)");
  sv->add_option("--months", a->demand.months, "Forecast: months (default 24)");
  a->prompt_given = sv->add_option("--prompt-tokens", a->prompt_tokens, "Prompt tokens per request (default: the bench's average)");
  a->completion_given = sv->add_option("--completion-tokens", a->completion_tokens,
                 "Completion tokens per request (default: the bench's average)");
  sv->add_option("--peak-factor", a->demand.peak_factor, "Peak load over the monthly average (default 3)");
  sv->add_option("--target-utilisation", a->demand.target_utilisation,
                 "Fraction of a replica's measured throughput used at peak (default 1)");
  sv->add_option("--min-replicas", a->demand.min_replicas, "Replicas kept running at any load (default 1)");
  sv->add_option("--fixed-monthly", a->demand.fixed_monthly, "Other costs per month (default 0)");
  sv->add_option("--training-cost", a->training_cost, "One-off training cost to pay back (default 0)");
  sv->add_option("--training-run", a->training_run, "Run folder whose training cost (mox cost train) is paid back");
  sv->add_option("--training-hardware", a->training_hardware,
                 "Hardware of --training-run (default: cpu-2core for CPU runs)");
  sv->add_option("--html", a->html, "Also write a self-contained HTML report with charts");
  sv->add_option("--format", a->format, "table (default) or json")->check(CLI::IsMember({"table", "json"}));

  CLI::App* hw = app->add_subcommand("hardware", "List the hardware table (built-in entries and --hardware FILE)");
  hw->add_option("--hardware", a->hardware_file, "TOML file adding or overriding entries")->check(CLI::ExistingFile);

  return {app, [a, tr, sv, hw] {
            const serve::HardwareTable table = serve::load_hardware(a->hardware_file);
            if (hw->parsed()) {
              for (const std::string& n : table.names()) {
                const serve::Hardware& h = table.get(n);
                std::cout << n << ": " << h.watts << " W, " << h.price_per_hour << "/h, peak FLOP/s";
                for (const auto& [p, v] : h.peak_flops) std::cout << " " << p << " " << v;
                std::cout << (h.description.empty() ? "" : "  (" + h.description + ")") << "\n";
              }
              return 0;
            }
            if (tr->parsed()) {
              const bool estimate = a->params > 0 || a->tokens > 0;
              if (a->run.empty() == !estimate)
                throw Error("mox cost train", "give either --run DIR or --params N --tokens T");
              if (estimate && (a->params <= 0 || a->tokens <= 0))
                throw Error("mox cost train", "an estimate needs both --params and --tokens");
              if (estimate && a->hardware_name.empty())
                throw Error("--hardware-name", "an estimate needs the hardware (known: " + [&] {
                  std::string s;
                  for (const std::string& n : table.names()) s += (s.empty() ? "" : ", ") + n;
                  return s;
                }() + ")");
              serve::TrainingWork w = estimate ? serve::training_work_estimate(a->params, a->tokens, a->layers,
                                                                                a->context, a->width)
                                               : serve::training_work_of_run(a->run);
              serve::TrainingCostOptions o;
              o.devices = a->devices;
              o.mfu = a->mfu;
              o.kwh_price = a->kwh_price;
              o.precision = a->precision;
              const serve::Hardware& h = table.get(estimate ? a->hardware_name : hardware_for_run(w, a->hardware_name, table));
              serve::TrainingCost c = serve::training_cost(w, h, o);
              std::cout << (a->format == "json" ? serve::training_json(c) : serve::training_table(c));
              return 0;
            }
            // serve
            serve::ServingReport r;
            r.bench = serve::load_bench(a->bench);
            r.model = a->model_name.empty() ? r.bench.model : a->model_name;
            std::string hname = a->hardware_name.empty() ? r.bench.hardware : a->hardware_name;
            if (hname.empty())
              throw Error(a->bench, "hardware: not given; name it with --hardware-name");
            r.hardware = table.get(hname);
            r.max_p99_ms = a->max_p99_ms;
            r.operating_point = serve::pick_operating_point(r.bench, a->max_p99_ms);
            const serve::BenchResult& op = r.bench.results[r.operating_point];
            r.cost_per_1m_completion = serve::cost_per_1m_tokens(r.hardware.price_per_hour, op.completion_tokens_per_s);
            r.cost_per_1m_tokens = serve::cost_per_1m_tokens(r.hardware.price_per_hour, op.tokens_per_s);
            if (!a->prices.empty()) {
              const serve::PriceList prices = serve::load_prices(a->prices);
              r.currency = prices.currency;
              r.price = prices.price_of(r.model);
              if (!r.price)
                throw Error(a->prices, "no price for model '" + r.model + "' (no [models." + r.model +
                                           "] and no [default]; or pick another with --model-name)");
            }
            if (a->requests_given->count() > 0) {
              if (!r.price) throw Error("--prices", "a forecast needs a price list (--prices FILE)");
              serve::Demand d = a->demand;
              d.requests_per_month = a->requests_per_month;
              const double ok = double(std::max<int64_t>(op.requests, 1));
              d.prompt_tokens = a->prompt_given->count() ? a->prompt_tokens : double(op.prompt_tokens) / ok;
              d.completion_tokens = a->completion_given->count() ? a->completion_tokens : double(op.completion_tokens) / ok;
              d.training_cost = a->training_cost;
              if (!a->training_run.empty()) {
                if (a->training_cost > 0)
                  throw Error("--training-run", "give either --training-run or --training-cost, not both");
                serve::TrainingWork w = serve::training_work_of_run(a->training_run);
                const serve::Hardware& th = table.get(hardware_for_run(w, a->training_hardware, table));
                d.training_cost = serve::training_cost(w, th, {}).total_cost;
              }
              serve::check_demand(d);
              r.demand = d;
              r.forecast = serve::forecast(d, serve::revenue_per_request(*r.price, d.prompt_tokens, d.completion_tokens,
                                                                         r.bench.endpoint),
                                           serve::capacity_of(r.bench, op), serve::capacity_in_all_tokens(r.bench),
                                           r.hardware.price_per_hour);
            }
            std::cout << (a->format == "json" ? serve::serving_json(r) : serve::serving_table(r));
            if (!a->html.empty()) {
              io::write_file_atomic(a->html, serve::serving_html(r));
              std::cerr << "wrote " << a->html << "\n";
            }
            return 0;
          }};
}

}  // namespace mox::cli
