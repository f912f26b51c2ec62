#pragma once
// The compression commands over run folders: `mox quantize`, `mox prune`, and the
// measurements behind `mox compress-report` (`mox distill` is `mox train` / `mox pretrain`
// with a teacher: TrainOptions::teacher_dir, PretrainOptions::teacher_dir).
//
// Each command reads a trained run folder (written by mox train, or by mox pretrain for a GPT)
// and writes a new run folder that mox eval / predict / generate load like any other:
//   classifier runs   config.toml (for structured pruning: the smaller layers), preprocess.json,
//                     model.safetensors (int8 tensors and scales / sparse values and bitmaps /
//                     the smaller dense weights), quantization.json (quantised models),
//                     summary.json ({"source", "compression": {...}, "test": metrics, sizes}),
//                     history.csv when fine-tuned
//   GPT runs          config.toml, model.json, tokenizer/, data/val.tok, model.safetensors,
//                     quantization.json, summary.json ({"val_loss", "val_perplexity", ...})
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "mox/compress/quantize.h"
#include "mox/nn/models/gpt.h"

namespace mox::train {

struct CompressRunOptions {
  std::string model_dir;       // the trained run
  std::string out_dir;         // the new run (default: <model_dir>-<variant>)
  bool overwrite = false;      // replace an existing out_dir
  int verbose = 1;
  std::ostream* out = nullptr; // std::cout when null
};

struct QuantizeRunOptions : CompressRunOptions {
  compress::QuantConfig config;   // mode, activations, calibration, percentile, skip
  int64_t calib_batches = 32;     // static / qat: batches of the training split observed
  int64_t batch_size = 64;        // calibration (and qat) batch size
  int64_t finetune_epochs = 1;    // qat
  int64_t steps_per_epoch = 0;    // qat: at most this many steps per epoch (0: all)
  double lr = 0;                  // qat: 0 = a tenth of the run's [optimizer] lr
};

struct PruneRunOptions : CompressRunOptions {
  double sparsity = 0.8;          // unstructured: fraction of zero weights; structured: fraction of units removed
  bool structured = false;
  bool global = false;            // unstructured: one threshold over all layers
  std::vector<std::string> skip;  // layers left dense / unpruned
  int64_t finetune_epochs = 1;    // classifiers
  int64_t finetune_steps = 0;     // GPT (structured only): steps of pre-training on the run's corpus
  int64_t steps_per_epoch = 0;
  int64_t frequency = 0;          // unstructured: prune every k steps (0: 20 updates over the first 3/4 of fine-tuning)
  double lr = 0;                  // 0 = the run's [optimizer] lr (Zhu & Gupta prune at the training rate)
};

struct CompressResult {
  std::string run_dir;
  std::string summary_json;
};

CompressResult run_quantize(const QuantizeRunOptions& options);
// Classifier runs: unstructured (gradual magnitude pruning while fine-tuning, stored sparse) or
// structured (smaller layers, then fine-tuning). GPT runs: unstructured one-shot (stored
// sparse), or structured: the fraction of each layer's attention heads and MLP units with
// the smallest L1 norms removed, then finetune_steps of pre-training from the pruned model.
CompressResult run_prune(const PruneRunOptions& options);

// The GPT of a mox LM run folder, quantised or not (quantization.json), in eval mode.
std::shared_ptr<nn::GPT> load_gpt_run(const std::string& dir);
// True when `dir` holds a GPT run (model.json of type gpt), false for a classifier run.
bool is_gpt_run(const std::string& dir);

// One row of the compression report: what a run costs and buys.
struct RunMeasure {
  std::string run, variant;       // folder; variant: "f32", "ptq-int8", "sparse 80%", ...
  std::string kind;               // "classifier" | "gpt"
  std::string metric;             // "accuracy" | "val_perplexity"
  double value = 0;               // the metric
  int64_t file_bytes = 0;         // model.safetensors on disk
  int64_t parameters = 0;         // nonzero weights counted for sparse models
  double latency_b1_ms = 0;       // classifier: median batch-1 forward; gpt: ms per generated token
  double throughput = 0;          // classifier: examples/s at batch 256; gpt: generated tokens/s
};
struct MeasureOptions {
  int64_t reps_b1 = 200, reps_b256 = 20, gen_tokens = 200, gen_reps = 3;
  int64_t max_eval = 0;          // classifier: at most this many test examples (0: all)
};
RunMeasure measure_run(const std::string& dir, const MeasureOptions& options = {});
// compress_report.md, compress_report.json and compress_report.svg (accuracy vs size, accuracy
// vs latency) in out_dir; returns the Markdown.
std::string write_compress_report(const std::vector<RunMeasure>& rows, const std::string& out_dir);

}  // namespace mox::train
