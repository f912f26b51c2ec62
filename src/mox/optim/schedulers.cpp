#include "mox/optim/schedulers.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "mox/tensor/error.h"

namespace mox::optim {

// ---------- LRScheduler ----------

LRScheduler::LRScheduler(Optimizer& optimizer, std::string name)
    : opt_(optimizer), name_(std::move(name)) {
  for (size_t g = 0; g < opt_.num_groups(); g++) base_lrs_.push_back(opt_.group_lr(g));
}

void LRScheduler::initial_step() { step(); }

void LRScheduler::step() {
  last_epoch_++;
  std::vector<double> lrs = compute_lr();
  for (size_t g = 0; g < lrs.size(); g++) opt_.set_group_lr(g, lrs[g]);
  last_lr_ = std::move(lrs);
}

StateDict LRScheduler::state_dict() const {
  StateDict sd;
  sd.scalars["last_epoch"] = double(last_epoch_);
  for (size_t g = 0; g < base_lrs_.size(); g++) {
    sd.scalars["base_lr." + std::to_string(g)] = base_lrs_[g];
    sd.scalars["last_lr." + std::to_string(g)] = last_lr_[g];
  }
  return sd;
}

void LRScheduler::load_state_dict(const StateDict& sd) {
  const std::string where = name_ + ".load_state_dict";
  MOX_CHECK(sd.scalars.count("base_lr." + std::to_string(base_lrs_.size())) == 0, where,
            "the state dict has more parameter groups than the optimiser's " +
                std::to_string(base_lrs_.size()));
  std::vector<double> base(base_lrs_.size()), last(base_lrs_.size());
  for (size_t g = 0; g < base.size(); g++) {
    base[g] = sd.scalar("base_lr." + std::to_string(g), where);
    last[g] = sd.scalar("last_lr." + std::to_string(g), where);
  }
  double e = sd.scalar("last_epoch", where);
  MOX_CHECK(e >= 0 && e == std::floor(e), where, "invalid last_epoch " + format_scalar(e));
  last_epoch_ = int64_t(e);
  base_lrs_ = std::move(base);
  last_lr_ = std::move(last);
}

// ---------- StepLR ----------

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer, "StepLR"), step_size_(step_size), gamma_(gamma) {
  MOX_CHECK(step_size > 0, name_, "step_size must be > 0, got " + std::to_string(step_size));
  MOX_CHECK(gamma >= 0, name_, "gamma must be >= 0");
  initial_step();
}

std::vector<double> StepLR::compute_lr() const {
  std::vector<double> lrs;
  bool decay = last_epoch_ != 0 && last_epoch_ % step_size_ == 0;
  for (size_t g = 0; g < opt_.num_groups(); g++)
    lrs.push_back(decay ? opt_.group_lr(g) * gamma_ : opt_.group_lr(g));
  return lrs;
}

// ---------- ExponentialLR ----------

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma)
    : LRScheduler(optimizer, "ExponentialLR"), gamma_(gamma) {
  MOX_CHECK(gamma >= 0, name_, "gamma must be >= 0");
  initial_step();
}

std::vector<double> ExponentialLR::compute_lr() const {
  std::vector<double> lrs;
  for (size_t g = 0; g < opt_.num_groups(); g++)
    lrs.push_back(last_epoch_ == 0 ? opt_.group_lr(g) : opt_.group_lr(g) * gamma_);
  return lrs;
}

// ---------- CosineAnnealingLR ----------

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t total_steps,
                                     int64_t warmup_steps, double min_lr)
    : LRScheduler(optimizer, "CosineAnnealingLR"), total_steps_(total_steps),
      warmup_steps_(warmup_steps), min_lr_(min_lr) {
  MOX_CHECK(total_steps > 0, name_, "total_steps must be > 0, got " + std::to_string(total_steps));
  MOX_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps, name_,
            "warmup_steps must lie in [0, total_steps = " + std::to_string(total_steps) +
                "], got " + std::to_string(warmup_steps));
  MOX_CHECK(min_lr >= 0, name_, "min_lr must be >= 0");
  initial_step();
}

std::vector<double> CosineAnnealingLR::compute_lr() const {
  const double t = double(last_epoch_);
  std::vector<double> lrs;
  for (double base : base_lrs_) {
    if (last_epoch_ < warmup_steps_) {
      lrs.push_back(base * t / double(warmup_steps_));
      continue;
    }
    double span = double(std::max<int64_t>(1, total_steps_ - warmup_steps_));
    double progress = std::min(1.0, (t - double(warmup_steps_)) / span);
    lrs.push_back(min_lr_ + (base - min_lr_) * (1.0 + std::cos(std::numbers::pi * progress)) / 2);
  }
  return lrs;
}

// ---------- ReduceLROnPlateau ----------

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options)
    : opt_(optimizer), options_(std::move(options)) {
  const char* n = "ReduceLROnPlateau";
  MOX_CHECK(options_.mode() == "min" || options_.mode() == "max", n,
            "mode must be \"min\" or \"max\", got \"" + options_.mode() + "\"");
  MOX_CHECK(options_.threshold_mode() == "rel" || options_.threshold_mode() == "abs", n,
            "threshold_mode must be \"rel\" or \"abs\", got \"" + options_.threshold_mode() + "\"");
  MOX_CHECK(options_.factor() < 1.0 && options_.factor() >= 0, n, "factor must lie in [0, 1)");
  MOX_CHECK(options_.patience() >= 0, n, "patience must be >= 0");
  MOX_CHECK(options_.cooldown() >= 0, n, "cooldown must be >= 0");
  maximize_ = options_.mode() == "max";
  relative_ = options_.threshold_mode() == "rel";
  best_ = maximize_ ? -INFINITY : INFINITY;
  for (size_t g = 0; g < opt_.num_groups(); g++) last_lr_.push_back(opt_.group_lr(g));
}

bool ReduceLROnPlateau::is_better(double a, double best) const {
  const double th = options_.threshold();
  if (!maximize_) return relative_ ? a < best * (1.0 - th) : a < best - th;
  return relative_ ? a > best * (th + 1.0) : a > best + th;
}

void ReduceLROnPlateau::step(double metric) {
  last_epoch_++;
  if (is_better(metric, best_)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    num_bad_epochs_++;
  }
  if (cooldown_counter_ > 0) {
    cooldown_counter_--;
    num_bad_epochs_ = 0;  // bad epochs during cooldown do not count
  }
  if (num_bad_epochs_ > options_.patience()) {
    for (size_t g = 0; g < opt_.num_groups(); g++) {
      double old_lr = opt_.group_lr(g);
      double new_lr = std::max(old_lr * options_.factor(), options_.min_lr());
      if (old_lr - new_lr > options_.eps()) opt_.set_group_lr(g, new_lr);
    }
    cooldown_counter_ = options_.cooldown();
    num_bad_epochs_ = 0;
  }
  last_lr_.clear();
  for (size_t g = 0; g < opt_.num_groups(); g++) last_lr_.push_back(opt_.group_lr(g));
}

StateDict ReduceLROnPlateau::state_dict() const {
  StateDict sd;
  sd.scalars["last_epoch"] = double(last_epoch_);
  sd.scalars["best"] = best_;
  sd.scalars["num_bad_epochs"] = double(num_bad_epochs_);
  sd.scalars["cooldown_counter"] = double(cooldown_counter_);
  return sd;
}

void ReduceLROnPlateau::load_state_dict(const StateDict& sd) {
  const char* where = "ReduceLROnPlateau.load_state_dict";
  double e = sd.scalar("last_epoch", where), best = sd.scalar("best", where);
  double bad = sd.scalar("num_bad_epochs", where), cool = sd.scalar("cooldown_counter", where);
  for (double v : {e, bad, cool})
    MOX_CHECK(v >= 0 && v == std::floor(v), where, "invalid counter " + format_scalar(v));
  last_epoch_ = int64_t(e);
  best_ = best;
  num_bad_epochs_ = int64_t(bad);
  cooldown_counter_ = int64_t(cool);
  last_lr_.clear();
  for (size_t g = 0; g < opt_.num_groups(); g++) last_lr_.push_back(opt_.group_lr(g));
}

}  // namespace mox::optim
