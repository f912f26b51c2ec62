#pragma once
// Gradual magnitude pruning while a model is trained or fine-tuned (Zhu & Gupta, 2017): from
// begin_step to end_step, every `frequency` optimiser steps, the masks are recomputed at the
// sparsity of the polynomial schedule (nn/prune.h) and applied; after every other step the
// current masks are applied again, so pruned weights stay at zero. The masks and the
// sparsity reached are checkpointed with the Trainer, so a resumed run continues exactly.
#include <map>
#include <string>
#include <vector>

#include "mox/nn/prune.h"
#include "mox/train/trainer.h"

namespace mox::train {

struct PruningOptions {
  double initial_sparsity = 0.0, final_sparsity = 0.8;
  int64_t begin_step = 0, end_step = 1000, frequency = 100;  // in optimiser steps (global_step)
  double power = 3.0;
  bool global = false;                // one threshold over all layers
  std::vector<std::string> skip;      // module names kept dense
};

class PruningCallback : public Callback {
 public:
  explicit PruningCallback(PruningOptions options);
  std::string name() const override { return "pruning"; }
  void on_batch_end(Trainer& t, int64_t batch, const MetricValues& running) override;
  optim::StateDict state() const override;
  void load_state(const optim::StateDict& sd) override;

  double sparsity() const { return sparsity_; }  // the target of the current masks
  const std::map<std::string, Tensor>& masks() const { return masks_; }

 private:
  PruningOptions o_;
  double sparsity_ = 0.0;
  std::map<std::string, Tensor> masks_;
};

}  // namespace mox::train
