#pragma once
// report.html: one self-contained page per run (inline CSS and SVG, no scripts, no network)
// with the loss and metric curves for train and validation, the learning rate, the
// confusion matrix as a heat map, per-class precision/recall/F1 (table and bars), ROC
// curves where they apply (binary: one curve; multi-class: one-vs-rest per class), the
// regression scores and a predicted-vs-true scatter for regression, the config, the model
// summary and the timings.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mox/tensor/tensor.h"
#include "mox/train/history.h"

namespace mox::train {

// Model outputs on one split, as the report needs them.
struct SplitOutputs {
  std::string name;  // "test", "val"
  // Classification: probabilities [N, C] (C >= 2) or positive-class probabilities [N]
  // (binary with one sigmoid output). Regression: predictions [N] or [N, D].
  Tensor outputs;
  Tensor targets;  // i64 [N] class ids, or f32 like outputs for regression
  MetricValues metrics;  // the scalars already computed ("loss", "accuracy", ...), shown as a table
};

struct ReportInput {
  std::string title;                     // run name, e.g. "mlp"
  std::string task;                      // "classification", "regression" or "language-model"
  std::vector<std::string> class_names;  // classification: names of classes 0..C-1
  History history;                       // per-epoch keys: loss, accuracy, val_loss, lr, ...
  std::vector<SplitOutputs> splits;      // usually test (and val); the first drives the
                                         // confusion matrix, per-class scores and ROC
  std::string config_toml;               // the effective config, shown verbatim
  std::string model_summary;             // `mox summary` text
  std::string data_description;
  std::vector<double> seconds_per_epoch;
  double samples_per_second = 0;
  int64_t parameters = 0;
  std::vector<std::pair<std::string, std::string>> facts;  // extra key/value rows (date, threads, command)
  MetricValues headline;  // cards at the top ("val_loss", "val_perplexity", "tokens/s")
  std::string x_key;      // the history key plotted on the x axis of the curves ("step"); empty: epochs
};

// The page as a string.
std::string render_report(const ReportInput& in);
// Writes it atomically to `path`.
void write_report(const std::string& path, const ReportInput& in);

}  // namespace mox::train
