#include "mox/train/pruning.h"

#include "mox/tensor/error.h"

namespace mox::train {

PruningCallback::PruningCallback(PruningOptions options) : o_(std::move(options)) {
  MOX_CHECK(o_.initial_sparsity >= 0 && o_.final_sparsity < 1 && o_.initial_sparsity <= o_.final_sparsity,
            "pruning", "need 0 <= initial_sparsity <= final_sparsity < 1, got " +
                           std::to_string(o_.initial_sparsity) + " and " + std::to_string(o_.final_sparsity));
  MOX_CHECK(o_.end_step > o_.begin_step, "pruning", "end_step must come after begin_step");
  MOX_CHECK(o_.frequency >= 1, "pruning", "frequency must be >= 1");
}

void PruningCallback::on_batch_end(Trainer& t, int64_t, const MetricValues&) {
  const int64_t step = t.global_step();  // optimiser steps done, this one included
  const bool due = step >= o_.begin_step && (step - o_.begin_step) % o_.frequency == 0 &&
                   step <= o_.end_step + o_.frequency - 1;
  if (due) {
    const double s = nn::polynomial_sparsity(step, o_.begin_step, o_.end_step, o_.initial_sparsity,
                                             o_.final_sparsity, o_.power);
    if (s > 0 && (masks_.empty() || s > sparsity_)) {
      nn::PruneOptions po;
      po.sparsity = s;
      po.global = o_.global;
      po.skip = o_.skip;
      masks_ = nn::magnitude_prune_masks(t.model(), po);
      sparsity_ = s;
    }
  }
  if (!masks_.empty()) nn::apply_masks(t.model(), masks_);
}

optim::StateDict PruningCallback::state() const {
  optim::StateDict sd;
  sd.scalars["sparsity"] = sparsity_;
  for (const auto& [name, m] : masks_) sd.tensors["mask." + name] = m.to(kCPU);
  return sd;
}

void PruningCallback::load_state(const optim::StateDict& sd) {
  sparsity_ = sd.scalar("sparsity", "pruning");
  masks_.clear();
  for (const auto& [key, t] : sd.tensors)
    if (key.rfind("mask.", 0) == 0) masks_[key.substr(5)] = t;
}

}  // namespace mox::train
