#pragma once
// A training run described by one TOML config, as `mox train`, `mox eval`, `mox cv` and
// `mox predict` run it. The config's sections:
//
//   [model]      the layers (nn/models/build_model.h)
//   [data]       the data set, splits, preprocessing, augmentation (data/pipeline.h)
//   [train]      epochs = 5, batch_size = 64, loss = "cross_entropy", seed = 0,
//                init = "pytorch" | "keras", shuffle = true, steps_per_epoch = 0,
//                clip_grad_norm = 0, label_smoothing = 0, eval_batch_size = 1000,
//                prefetch = -1 (automatic: 2 with augmentation or data not held in memory,
//                else 0), threads = 0 (0: MOX_NUM_THREADS or all cores),
//                validate_on = "val" | "test" | "none" (the split behind the val_ metrics)
//   [optimizer]  type = "adam" | "adamw" | "sgd" | "rmsprop" | "adagrad", lr, and the
//                optimiser's options (betas, eps, weight_decay, momentum, nesterov, ...)
//   [scheduler]  type = "step" (step_size, gamma) | "exponential" (gamma) | "cosine"
//                (warmup_steps, min_lr, total_steps) | "plateau" (monitor, factor, patience,
//                threshold, cooldown, min_lr, mode); per = "epoch" | "step"
//   [callbacks]  early_stopping = {monitor, patience, min_delta, mode, restore_best_weights}
//                model_checkpoint = {monitor, mode, save_best_only}  (writes best.safetensors)
//
// A run folder holds: config.toml (the effective config, overrides applied),
// model.safetensors (PyTorch state_dict names), preprocess.json (+ vocab.txt), history.csv,
// summary.json, report.html, checkpoint/ (resumable state) and best.safetensors when asked.
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mox/data/pipeline.h"
#include "mox/io/config.h"
#include "mox/nn/layers/sequential.h"
#include "mox/train/compute.h"
#include "mox/train/trainer.h"

namespace mox::train {

// Everything a config describes, built and ready to fit.
struct Experiment {
  io::Config config;
  data::DataBundle data;
  std::shared_ptr<nn::Sequential> model;
  std::shared_ptr<optim::Optimizer> optimizer;
  std::shared_ptr<Trainer> trainer;
  FitOptions fit;                       // epochs, batch size, augmentation, LR/early-stopping callbacks
  std::shared_ptr<EarlyStopping> early_stopping;  // when configured
  uint64_t seed = 0;
  std::string init;                     // "pytorch" or "keras"
  std::string loss_name;
  Compute compute;                      // [train] device and precision (the model lives there)
};

struct ExperimentOptions {
  std::optional<uint64_t> seed;        // overrides train.seed
  bool need_splits = true;             // false for cross-validation
  std::string init_weights;            // safetensors file with PyTorch state_dict names
  std::string run_dir;                 // where best.safetensors goes (model_checkpoint)
  std::ostream* log = nullptr;         // progress messages; silent when null
  std::string device, precision;       // override [train] device / precision when set
};

// Builds data, model (seeded; Keras or PyTorch init; --init weights), optimiser, schedule
// and callbacks. Errors name the config file and the key.
Experiment build_experiment(const io::Config& config, const ExperimentOptions& options = {});
// The same with a prepared data bundle (cross-validation folds).
Experiment build_experiment(const io::Config& config, data::DataBundle data, const ExperimentOptions& options);

struct TrainOptions {
  std::string config_path;               // empty when resuming (the run's config.toml is used)
  std::vector<std::string> overrides;    // --set key=value
  std::string out_dir;                   // default runs/<model name>
  std::string resume_dir;                // continue the run in this folder
  std::optional<uint64_t> seed;
  std::string init_weights;
  int64_t save_every = 0;                // checkpoint every N steps (besides every epoch)
  int64_t steps = 0;                     // at most N steps per epoch
  bool overwrite = false;                // reuse an out_dir that already holds a run
  int verbose = 1;
  std::ostream* out = nullptr;           // std::cout when null
  std::string device, precision;         // --device / --precision (override [train])
  // Knowledge distillation (`mox distill`): the run folder of a trained teacher; each batch's
  // loss becomes distillation_loss(student, teacher, labels, temperature, alpha).
  std::string teacher_dir;
  double distill_temperature = 4.0, distill_alpha = 0.9;
  bool cache_teacher_logits = false;  // teacher's logits computed once (no augmentation)
};

struct TrainResult {
  std::string run_dir;
  History history;
  std::string summary_json;
};

// `mox train`: builds the experiment, fits (or continues a checkpoint), evaluates on the
// validation and test splits and writes the run folder.
TrainResult run_train(const TrainOptions& options);

// `mox eval`: the run's model on a split of its data (test by default).
struct EvalOptions {
  std::string run_dir;
  std::vector<std::string> data_overrides;  // key=value for [data] (e.g. path=...)
  std::string split = "test";               // test | val | train
  int64_t batch_size = 1000;
  std::string precision = "f32";            // f32 | bf16
  std::string device;                       // cpu (default) | cuda
};
struct EvalOutput {
  EvalResult result;
  std::string split;
  int64_t examples = 0;
  double samples_per_second = 0;
  std::string json;  // {"split": ..., "examples": ..., "metrics": {...}}
};
EvalOutput run_eval(const EvalOptions& options);

// The model of a run folder, for predict and eval: config, model with the trained weights,
// preprocessing, trainer (for predict()).
struct LoadedRun {
  io::Config config;
  std::shared_ptr<nn::Sequential> model;
  std::shared_ptr<Trainer> trainer;
  data::Preprocessor preprocess;
  std::vector<std::string> class_names;
  std::string task;  // "classification" | "regression"
};
// precision "bf16" holds the dense layers' weights in bfloat16 and runs their products in
// bf16 with f32 accumulation (oneDNN on CPUs with AMX/AVX512-BF16); convolutions stay f32;
// "f32" (the default) runs as trained.
// device: where the model runs (empty: cpu); inputs are moved there, outputs come back.
LoadedRun load_run(const std::string& run_dir, const std::string& precision = "f32",
                   const std::string& device = "");

// `mox cv`: k-fold cross-validation on the training part of the data.
struct CvOptions {
  std::string config_path;
  std::vector<std::string> overrides;
  int64_t folds = 5;
  std::optional<uint64_t> seed;
  int64_t steps = 0;
  std::string out_dir;  // cv.json goes here when set
  std::string device, precision;  // --device / --precision (override [train])
  int verbose = 1;
  std::ostream* out = nullptr;
};
struct CvResult {
  std::vector<MetricValues> folds;  // validation metrics per fold
  MetricValues mean, std;           // over folds (population std)
  std::string json;
};
CvResult run_cv(const CvOptions& options);

}  // namespace mox::train
