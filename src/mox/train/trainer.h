#pragma once
// Trainer: Keras's fit / evaluate / predict over mox modules, datasets and optimisers.
//
//   train::Trainer t(model, optimizer, train::parse_loss("cross_entropy"));
//   train::History h = t.fit(train_set, {.epochs = 5, .batch_size = 64,
//                                        .validation_data = val_set,
//                                        .callbacks = {early_stopping, checkpointer}});
//   train::EvalResult r = t.evaluate(test_set);   // r.metrics: loss, accuracy, ...
//   Tensor probs = t.predict(inputs);
//
// Output heads: a Sequential that ends in Softmax (with a cross-entropy loss) or Sigmoid
// (with binary cross-entropy) is trained on the logits before that last layer, as Keras
// does for `Dense(10, activation="softmax")`, so the loss is computed stably; predict()
// returns probabilities for classification losses either way (softmax/sigmoid applied when
// the model ends in logits).
//
// Resuming: everything fit() changes (weights, optimiser moments, epoch and batch position,
// the default generator that Dropout draws from, the running sums of a partial epoch, the
// history, timings and each callback's state) goes into a checkpoint folder;
// load_checkpoint() followed by fit() with the same options continues exactly where the
// checkpoint was written, to the bit. Data order and augmentation are functions of (seed,
// epoch, batch index), so they need no state.
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mox/data/dataset.h"
#include "mox/nn/module.h"
#include "mox/optim/optimizer.h"
#include "mox/optim/schedulers.h"
#include "mox/optim/state_dict.h"
#include "mox/tensor/generator.h"
#include "mox/train/history.h"
#include "mox/train/progress.h"

namespace mox::train {

// ---------------------------------------------------------------- losses

struct LossSpec {
  // Canonical names: "cross_entropy" (Keras: sparse_categorical_crossentropy,
  // categorical_crossentropy), "binary_cross_entropy" (binary_crossentropy, bce), "mse"
  // (mean_squared_error), "mae" (l1, mean_absolute_error), "huber".
  std::string name = "cross_entropy";
  double label_smoothing = 0.0;  // cross_entropy
  double huber_delta = 1.0;      // huber
  bool classification() const { return name == "cross_entropy" || name == "binary_cross_entropy"; }
};
// Accepts the canonical names and the aliases above; throws listing the known names.
LossSpec parse_loss(const std::string& name);
const std::vector<std::string>& known_losses();

// ---------------------------------------------------------------- callbacks

class Trainer;

// A teacher's logits for a batch (distillation): eval mode, no gradients, a trailing Softmax
// skipped, the result on `device` in f32.
Tensor teacher_logits(nn::Module& teacher, const Tensor& x, Device device);

// Hooks into fit(), as Keras's callbacks. Every epoch's logs are final (and already in the
// history) when on_epoch_end runs; a callback stops training with trainer.request_stop().
class Callback {
 public:
  virtual ~Callback() = default;
  // Unique among a fit's callbacks: keys its state in checkpoints ("early_stopping").
  virtual std::string name() const = 0;
  virtual void on_train_begin(Trainer&) {}
  virtual void on_epoch_begin(Trainer&, int64_t /*epoch*/) {}
  // After each optimiser step; `running` holds the epoch's running training metrics.
  virtual void on_batch_end(Trainer&, int64_t /*batch*/, const MetricValues& /*running*/) {}
  virtual void on_epoch_end(Trainer&, int64_t /*epoch*/, const MetricValues& /*logs*/) {}
  virtual void on_train_end(Trainer&) {}
  // State that must survive a resume (counters, best values, best weights).
  virtual optim::StateDict state() const { return {}; }
  virtual void load_state(const optim::StateDict&) {}
};
using CallbackPtr = std::shared_ptr<Callback>;

// ---------------------------------------------------------------- fit / evaluate

struct FitOptions {
  int64_t epochs = 1;
  int64_t batch_size = 32;
  // Held-out validation: a data set, or the last `validation_split` fraction of the
  // training set (Keras: taken before shuffling). Neither: no val_ metrics.
  std::shared_ptr<const data::Dataset> validation_data;
  double validation_split = 0.0;
  bool shuffle = true;
  uint64_t seed = 0;             // shuffling and augmentation
  int64_t steps_per_epoch = 0;   // > 0: at most this many batches per epoch (short runs)
  bool drop_last = false;
  // Batches prepared ahead on a background thread. -1 (auto): 2 when batches cost something
  // to make (augmentation, or a data set that is not held as tensors), else 0: gathering
  // rows of an in-memory tensor takes microseconds, and a third thread competing with the
  // compute threads for the cores costs more than it saves (measured: the seed MLP's epoch
  // on 2 cores is ~8% slower with prefetching).
  int64_t prefetch = -1;
  // Training-time augmentation of a batch, run where the batch is prepared, with a
  // generator seeded by (seed, epoch, batch index).
  std::function<void(data::Batch&, Generator&)> augment;
  double clip_grad_norm = 0.0;   // > 0: clip the global gradient norm before each step
  // F32, or BF16/F16: autocast over each step's forward pass and loss (f32 master weights;
  // F16 also scales the loss). The device is the model's: move it first (model.to(device)).
  DType precision = DType::F32;
  // Knowledge distillation (cross_entropy losses only): with a teacher, each batch's loss is
  // ops::distillation_loss(student logits, teacher logits, labels, temperature, alpha); the
  // teacher runs in eval mode without gradients (a trailing Softmax is skipped: its logits).
  std::shared_ptr<nn::Module> teacher;
  double distill_temperature = 4.0, distill_alpha = 0.9;
  // The teacher's logits for the whole training set computed once before the first epoch and
  // looked up by example index (no augmentation only: augmented batches need the teacher).
  bool cache_teacher_logits = false;
  std::vector<CallbackPtr> callbacks;
  // 0: silent; 1: progress bar (live on a terminal, one line per epoch otherwise);
  // 2: one line per epoch.
  int verbose = 1;
  std::ostream* out = nullptr;   // progress output; std::cout when null
  int64_t eval_batch_size = 1000;
};

// A model's outputs over a data set and the metrics computed from them.
struct EvalResult {
  MetricValues metrics;  // loss, accuracy, top_5_accuracy, precision/recall/f1 (macro),
                         // auc, log_loss for classification; loss, mse, mae, r2 for regression
  Tensor outputs;        // probabilities [N, C] / [N] (binary sigmoid) or predictions [N, D]
  Tensor targets;        // the data set's targets
  double seconds = 0;
  double value(const std::string& key) const;  // throws for a missing key
};

class Trainer {
 public:
  Trainer(std::shared_ptr<nn::Module> model, std::shared_ptr<optim::Optimizer> optimizer,
          LossSpec loss);

  // Trains for options.epochs epochs (or from a loaded checkpoint's position up to them).
  History fit(std::shared_ptr<const data::Dataset> train, const FitOptions& options);
  // Metrics over a data set, in eval mode without gradients.
  EvalResult evaluate(const data::Dataset& data, int64_t batch_size = 1000);
  // Outputs for inputs [N, ...]: probabilities for classification losses.
  Tensor predict(const Tensor& inputs, int64_t batch_size = 1000);

  // The model's raw output (logits for classification heads) in the current mode.
  Tensor forward_logits(const Tensor& x);
  // Logits -> what predict() returns (softmax / sigmoid for classification).
  Tensor outputs_from_logits(const Tensor& logits) const;
  // The loss of logits against targets (targets converted as the loss needs).
  Tensor loss(const Tensor& logits, const Tensor& target) const;

  nn::Module& model() { return *model_; }
  const std::shared_ptr<nn::Module>& model_ptr() const { return model_; }
  optim::Optimizer& optimizer() { return *optimizer_; }
  const LossSpec& loss_spec() const { return loss_; }
  const History& history() const { return history_; }

  // Ends fit() after the current epoch (EarlyStopping).
  void request_stop() { stop_ = true; }
  bool stop_requested() const { return stop_; }

  // Position: epochs completed, batches done in the current epoch, optimiser steps.
  int64_t epoch() const { return epoch_; }
  int64_t batch_in_epoch() const { return batch_; }
  int64_t global_step() const { return global_step_; }
  const std::vector<double>& seconds_per_epoch() const { return seconds_per_epoch_; }
  // Training samples per second over all completed epochs.
  double samples_per_second() const;

  // Writes the whole training state to `dir` atomically: the folder is built beside it and
  // renamed into place, so an interruption leaves the previous checkpoint whole. `extra`
  // files (name -> contents, e.g. the config) are written into the folder too.
  void save_checkpoint(const std::string& dir,
                       const std::map<std::string, std::string>& extra = {}) const;
  // Restores a checkpoint written by save_checkpoint; the next fit() continues from it.
  // Errors name the folder and the file.
  void load_checkpoint(const std::string& dir);
  // Whether `dir` holds a checkpoint (or the previous one left by an interrupted save).
  static bool has_checkpoint(const std::string& dir);

 private:
  struct Running {
    double loss_sum = 0, correct = 0, topk_correct = 0, abs_err = 0, sq_err = 0;
    int64_t samples = 0;
  };
  MetricValues running_metrics(const Running& r) const;
  void write_checkpoint_files(const std::string& dir,
                              const std::map<std::string, std::string>& extra) const;
  void accumulate(Running& r, const Tensor& logits, const Tensor& target, const Tensor& loss);

  std::shared_ptr<nn::Module> model_;
  std::shared_ptr<optim::Optimizer> optimizer_;
  LossSpec loss_;
  std::shared_ptr<nn::Module> head_;  // final Softmax/Sigmoid trained through the loss
  size_t body_size_ = 0;              // children of the Sequential run by forward_logits
  bool split_head_ = false;

  History history_;
  std::vector<double> seconds_per_epoch_;
  int64_t epoch_ = 0, batch_ = 0, global_step_ = 0, samples_seen_ = 0;
  Running running_;  // of the current epoch
  optim::StateDict loss_scale_;  // the f16 GradScaler's state (empty: none yet)
  double epoch_lr_ = 0;       // the learning rate when the current epoch began
  double epoch_seconds_ = 0;  // training time of the current (partial) epoch so far
  bool stop_ = false;
  const std::vector<CallbackPtr>* callbacks_ = nullptr;  // during fit, for checkpoints
  std::map<std::string, optim::StateDict> pending_callback_state_;  // from load_checkpoint
};

// ---------------------------------------------------------------- callbacks

// Stops when `monitor` has not improved by more than min_delta for `patience` epochs
// (Keras semantics); restore_best_weights puts back the best epoch's weights when it stops.
struct EarlyStoppingOptions {
  std::string monitor = "val_loss";
  int64_t patience = 0;
  double min_delta = 0.0;
  std::string mode = "auto";  // auto | min | max
  bool restore_best_weights = false;
};
class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions options = {});
  std::string name() const override { return "early_stopping"; }
  void on_train_begin(Trainer&) override;
  void on_epoch_end(Trainer& t, int64_t epoch, const MetricValues& logs) override;
  optim::StateDict state() const override;
  void load_state(const optim::StateDict& sd) override;
  int64_t stopped_epoch() const { return stopped_epoch_; }  // -1 when it did not stop
  int64_t best_epoch() const { return best_epoch_; }

 private:
  EarlyStoppingOptions opt_;
  bool maximize_ = false;
  double best_ = 0;
  int64_t best_epoch_ = -1, wait_ = 0, stopped_epoch_ = -1;
  std::map<std::string, Tensor> best_weights_;
};

// Saves the model's weights (safetensors, atomically) after every epoch, or only when
// `monitor` improves (save_best_only).
struct ModelCheckpointOptions {
  std::string path;  // e.g. "run/best.safetensors"
  std::string monitor = "val_loss";
  std::string mode = "auto";
  bool save_best_only = false;
};
class ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(ModelCheckpointOptions options);
  std::string name() const override { return "model_checkpoint"; }
  void on_epoch_end(Trainer& t, int64_t epoch, const MetricValues& logs) override;
  optim::StateDict state() const override;
  void load_state(const optim::StateDict& sd) override;
  int64_t best_epoch() const { return best_epoch_; }

 private:
  ModelCheckpointOptions opt_;
  bool maximize_ = false;
  bool has_best_ = false;
  double best_ = 0;
  int64_t best_epoch_ = -1;
};

// Moves an LR schedule: a per-epoch or per-step LRScheduler, or ReduceLROnPlateau on a
// monitored metric. The scheduler must wrap the trainer's optimiser.
class LearningRateScheduler : public Callback {
 public:
  // per_step: scheduler.step() after every optimiser step (warm-up/cosine over steps);
  // otherwise after every epoch.
  LearningRateScheduler(std::shared_ptr<optim::LRScheduler> scheduler, bool per_step);
  LearningRateScheduler(std::shared_ptr<optim::ReduceLROnPlateau> plateau, std::string monitor);
  std::string name() const override { return "lr_scheduler"; }
  void on_batch_end(Trainer&, int64_t batch, const MetricValues& running) override;
  void on_epoch_end(Trainer& t, int64_t epoch, const MetricValues& logs) override;
  optim::StateDict state() const override;
  void load_state(const optim::StateDict& sd) override;

 private:
  std::shared_ptr<optim::LRScheduler> scheduler_;
  std::shared_ptr<optim::ReduceLROnPlateau> plateau_;
  bool per_step_ = false;
  std::string monitor_;
};

// Rewrites the history CSV (Keras's CSVLogger columns) atomically after every epoch.
class CSVLogger : public Callback {
 public:
  explicit CSVLogger(std::string path) : path_(std::move(path)) {}
  std::string name() const override { return "csv_logger"; }
  void on_epoch_end(Trainer& t, int64_t epoch, const MetricValues& logs) override;

 private:
  std::string path_;
};

// The progress display (train/progress.h) for each epoch.
class ProgressCallback : public Callback {
 public:
  ProgressCallback(std::ostream& out, bool interactive, int64_t epochs);
  std::string name() const override { return "progress"; }
  void on_epoch_begin(Trainer& t, int64_t epoch) override;
  void on_batch_end(Trainer& t, int64_t batch, const MetricValues& running) override;
  void on_epoch_end(Trainer& t, int64_t epoch, const MetricValues& logs) override;
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  std::ostream& out_;
  bool interactive_;
  int64_t epochs_, steps_ = 0;
  std::unique_ptr<ProgressBar> bar_;
};

// Writes a resumable checkpoint (Trainer::save_checkpoint) to `dir` after every epoch and,
// with every_steps > 0, every that many optimiser steps. Put it last among the callbacks so
// that the others' state is already updated for the epoch.
class Checkpointer : public Callback {
 public:
  Checkpointer(std::string dir, int64_t every_steps = 0,
               std::map<std::string, std::string> extra = {});
  std::string name() const override { return "checkpointer"; }
  void on_batch_end(Trainer& t, int64_t batch, const MetricValues& running) override;
  void on_epoch_end(Trainer& t, int64_t epoch, const MetricValues& logs) override;
  int64_t saves() const { return saves_; }

 private:
  std::string dir_;
  int64_t every_;
  std::map<std::string, std::string> extra_;
  int64_t saves_ = 0;
};

}  // namespace mox::train
