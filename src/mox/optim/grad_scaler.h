#pragma once
// Dynamic loss scaling for f16 mixed precision (PyTorch's torch.amp.GradScaler): the loss
// is multiplied by a large factor before backward so that small f16 gradients do not
// flush to zero; the gradients are divided by it again before the optimiser step. A step
// whose gradients hold an inf or NaN (the scale was too large) is skipped and the scale
// multiplied by backoff_factor; after growth_interval steps in a row without one, the
// scale is multiplied by growth_factor. bf16 has f32's range and needs none of this.
//
//   Tensor loss = ...;                       // forward under AutocastGuard(F16)
//   scaler.scale(loss).backward();
//   scaler.unscale_(opt);                    // optional: before clip_grad_norm_
//   scaler.step(opt);                        // skipped when a gradient is not finite
//   scaler.update();
#include "mox/optim/optimizer.h"

namespace mox::optim {

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;  // disabled: scale() returns the loss, step() steps, update() does nothing
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  Tensor scale(const Tensor& loss) const;
  // Divides the gradients of opt's parameters by the scale (once per step) and records
  // whether all of them are finite (one synchronisation). Returns that.
  bool unscale_(Optimizer& opt);
  // Unscales if not done yet, then steps unless a gradient was not finite. Returns whether
  // the optimiser stepped.
  bool step(Optimizer& opt);
  // Adjusts the scale after step(): backoff on a skipped step, growth after an interval.
  void update();

  double get_scale() const { return scale_; }
  bool enabled() const { return opt_.enabled; }
  int64_t skipped_steps() const { return skipped_; }

  // For checkpoints: scale, growth tracker and the count of skipped steps.
  StateDict state_dict() const;
  void load_state_dict(const StateDict& sd);

 private:
  GradScalerOptions opt_;
  double scale_;
  int64_t growth_tracker_ = 0, skipped_ = 0;
  bool unscaled_ = false, found_inf_ = false, stepped_ = false;
};

}  // namespace mox::optim
