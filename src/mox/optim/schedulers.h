#pragma once
// Learning-rate schedules, with PyTorch's conventions: a scheduler wraps an optimiser,
// construction sets the epoch-0 learning rate, and each step() advances one epoch (or one
// batch, for the per-step schedules) and writes the new learning rate into every group.
// StepLR and ExponentialLR are chainable, as in PyTorch: they scale the group's current lr,
// so they compose with ReduceLROnPlateau or a manual set_lr.
//
// state_dict() holds the scheduler's own counters; the learning rates themselves live in
// the optimiser's state dict, so restore both to resume.
#include <string>
#include <vector>

#include "mox/optim/optimizer.h"

namespace mox::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  void step();
  int64_t last_epoch() const { return last_epoch_; }
  // The learning rate of each group as of the last step().
  const std::vector<double>& last_lr() const { return last_lr_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }

  StateDict state_dict() const;  // last_epoch, base_lr.<g>, last_lr.<g>
  void load_state_dict(const StateDict& sd);

 protected:
  LRScheduler(Optimizer& optimizer, std::string name);
  // Moves to epoch 0 (derived constructors call this last, once compute_lr works).
  void initial_step();
  // The learning rate of each group at last_epoch_, given the current ones.
  virtual std::vector<double> compute_lr() const = 0;

  Optimizer& opt_;
  std::string name_;
  std::vector<double> base_lrs_;  // the groups' learning rates when the scheduler was made
  std::vector<double> last_lr_;
  int64_t last_epoch_ = -1;
};

// lr *= gamma every step_size epochs.
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);

 protected:
  std::vector<double> compute_lr() const override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr *= gamma every epoch.
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma);

 protected:
  std::vector<double> compute_lr() const override;

 private:
  double gamma_;
};

// Linear warm-up from 0 to the base lr over warmup_steps, then a half cosine from the base
// lr down to min_lr at total_steps; min_lr after that. At step t:
//   t < warmup:  base * t / warmup
//   otherwise:   min_lr + (base - min_lr) * (1 + cos(pi * min(1, (t - warmup) / (total - warmup)))) / 2
// With warmup_steps = 0 this is torch.optim.lr_scheduler.CosineAnnealingLR(T_max =
// total_steps, eta_min = min_lr) in its closed form; with warm-up it is the schedule of
// Hugging Face's get_cosine_schedule_with_warmup, floored at min_lr.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t total_steps, int64_t warmup_steps = 0,
                    double min_lr = 0.0);

 protected:
  std::vector<double> compute_lr() const override;

 private:
  int64_t total_steps_, warmup_steps_;
  double min_lr_;
};

// Scales the learning rate by `factor` when a metric has stopped improving for more than
// `patience` epochs (PyTorch's ReduceLROnPlateau). step(metric) once per epoch.
struct ReduceLROnPlateauOptions {
  MOX_ARG(std::string, mode) = "min";  // "min": lower is better; "max": higher is better
  MOX_ARG(double, factor) = 0.1;
  MOX_ARG(int64_t, patience) = 10;
  MOX_ARG(double, threshold) = 1e-4;
  MOX_ARG(std::string, threshold_mode) = "rel";  // "rel" or "abs"
  MOX_ARG(int64_t, cooldown) = 0;
  MOX_ARG(double, min_lr) = 0;
  MOX_ARG(double, eps) = 1e-8;  // changes smaller than this are skipped
};

class ReduceLROnPlateau {
 public:
  ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options = {});
  void step(double metric);

  int64_t last_epoch() const { return last_epoch_; }
  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  bool in_cooldown() const { return cooldown_counter_ > 0; }
  const std::vector<double>& last_lr() const { return last_lr_; }

  StateDict state_dict() const;  // last_epoch, best, num_bad_epochs, cooldown_counter
  void load_state_dict(const StateDict& sd);

 private:
  bool is_better(double a, double best) const;

  Optimizer& opt_;
  ReduceLROnPlateauOptions options_;
  bool maximize_, relative_;
  double best_;
  int64_t num_bad_epochs_ = 0, cooldown_counter_ = 0, last_epoch_ = 0;
  std::vector<double> last_lr_;
};

}  // namespace mox::optim
