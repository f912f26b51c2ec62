// mox eval --model DIR [--data key=value]... [--split test|val|train] [--json]
// mox predict --model DIR INPUT... [--format csv|json]
// Both load a run folder written by `mox train` (train/run.h).
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command.h"
#include "mox/backend/backend.h"
#include "mox/data/pipeline.h"
#include "mox/train/metrics.h"
#include "mox/train/run.h"

namespace mox::cli {

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

Command add_eval_command(CLI::App& parent) {
  struct Args {
    std::string model, split = "test", precision = "f32", device;
    std::vector<std::string> data;
    int64_t batch = 1000, threads = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("eval", "Evaluate a trained run on a split of its data");
  app->add_option("--model", a->model, "Run folder written by mox train")->required();
  app->add_option("--data", a->data, "Override a [data] value: key=value (e.g. path=DIR); repeatable");
  app->add_option("--split", a->split, "test (default), val or train");
  app->add_option("--batch-size", a->batch, "Examples per forward pass")->check(CLI::PositiveNumber);
  app->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber);
  add_device_option(app, a->device);
  app->add_option("--precision", a->precision, "f32 (default) or bf16 (bfloat16 weights and matmuls)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  app->add_flag("--json", a->json, "Print the metrics as JSON");
  app->footer("Example: mox eval --model runs/mlp");
  return {app, [a] {
            if (a->threads > 0) set_num_threads(int(a->threads));
            train::EvalOptions o;
            o.run_dir = a->model;
            o.data_overrides = a->data;
            o.split = a->split;
            o.batch_size = a->batch;
            o.precision = a->precision;
            o.device = a->device;
            train::EvalOutput r = train::run_eval(o);
            if (a->json) {
              std::cout << r.json;
              return 0;
            }
            std::printf("%s: %s split, %lld examples, %s (%.0f examples/s)\n", a->model.c_str(), r.split.c_str(),
                        (long long)r.examples, a->precision.c_str(), r.samples_per_second);
            for (const auto& [k, v] : r.result.metrics) std::printf("  %-16s %.4f\n", k.c_str(), v);
            return 0;
          }};
}

Command add_predict_command(CLI::App& parent) {
  struct Args {
    std::string model, format = "csv", precision = "f32", device;
    std::vector<std::string> inputs;
    int64_t threads = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("predict", "Run a trained model on images, table rows or text lines");
  app->add_option("--model", a->model, "Run folder written by mox train")->required();
  app->add_option("INPUT", a->inputs,
                  "Inputs: IDX image files, PGM/PPM/PNG images, CSV/TSV rows, or text files with one "
                  "example per line ('-' reads stdin)")
      ->required();
  app->add_option("--format", a->format, "csv (default) or json")->check(CLI::IsMember({"csv", "json"}));
  add_device_option(app, a->device);
  app->add_option("--precision", a->precision, "f32 (default) or bf16 (bfloat16 weights and matmuls)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  app->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber);
  app->footer("Example: mox predict --model runs/mlp shirt.png --format json");
  return {app, [a] {
            if (a->threads > 0) set_num_threads(int(a->threads));
            train::LoadedRun run = train::load_run(a->model, a->precision, a->device);
            data::RawInputs raw = data::read_inputs(a->inputs, run.preprocess);
            Tensor x = data::preprocess_inputs(raw, run.preprocess);
            Tensor out = run.trainer->predict(x).contiguous().to(DType::F32);
            const int64_t n = out.size(0);
            const bool classify = run.task == "classification";
            // Classification: probabilities [N, C], or [N] for a single sigmoid output.
            const bool binary = classify && out.dim() == 1;
            const int64_t C = classify ? (binary ? 2 : out.size(1)) : 0;
            std::vector<std::string> names = run.class_names;
            if (classify && int64_t(names.size()) != C) {
              names.clear();
              for (int64_t c = 0; c < C; c++) names.push_back(std::to_string(c));
            }
            std::vector<float> v = out.to_vector<float>();
            const int64_t w = n > 0 ? int64_t(v.size()) / n : 0;
            nlohmann::ordered_json arr = nlohmann::ordered_json::array();
            if (a->format == "csv") {
              if (classify) {
                std::cout << "input,class,index,probability";
                for (const auto& c : names) std::cout << "," << csv_field("p_" + c);
              } else {
                std::cout << "input";
                for (int64_t j = 0; j < w; j++) std::cout << (w == 1 ? ",prediction" : ",prediction_" + std::to_string(j));
              }
              std::cout << "\n";
            }
            for (int64_t i = 0; i < n; i++) {
              std::vector<double> probs;
              if (binary) probs = {1.0 - v[size_t(i)], double(v[size_t(i)])};
              else
                for (int64_t j = 0; j < w; j++) probs.push_back(v[size_t(i * w + j)]);
              if (classify) {
                int64_t best = 0;
                for (int64_t c = 1; c < C; c++)
                  if (probs[size_t(c)] > probs[size_t(best)]) best = c;
                if (a->format == "csv") {
                  std::printf("%s,%s,%lld,%.6f", csv_field(raw.names[size_t(i)]).c_str(),
                              csv_field(names[size_t(best)]).c_str(), (long long)best, probs[size_t(best)]);
                  for (double p : probs) std::printf(",%.6f", p);
                  std::printf("\n");
                } else {
                  nlohmann::ordered_json j, pj = nlohmann::ordered_json::object();
                  j["input"] = raw.names[size_t(i)];
                  j["class"] = names[size_t(best)];
                  j["index"] = best;
                  j["probability"] = probs[size_t(best)];
                  for (int64_t c = 0; c < C; c++) pj[names[size_t(c)]] = probs[size_t(c)];
                  j["probabilities"] = pj;
                  arr.push_back(j);
                }
              } else if (a->format == "csv") {
                std::printf("%s", csv_field(raw.names[size_t(i)]).c_str());
                for (double p : probs) std::printf(",%.6g", p);
                std::printf("\n");
              } else {
                nlohmann::ordered_json j;
                j["input"] = raw.names[size_t(i)];
                j["prediction"] = w == 1 ? nlohmann::ordered_json(probs[0]) : nlohmann::ordered_json(probs);
                arr.push_back(j);
              }
            }
            std::fflush(stdout);
            if (a->format == "json") std::cout << arr.dump(2) << "\n";
            return 0;
          }};
}

}  // namespace mox::cli
