#include "mox/optim/grad_scaler.h"

#include <cmath>

#include "mox/autograd/node.h"
#include "mox/ops/ops.h"
#include "mox/tensor/error.h"

namespace mox::optim {

GradScaler::GradScaler(GradScalerOptions options) : opt_(options), scale_(options.init_scale) {
  MOX_CHECK(opt_.init_scale > 0 && std::isfinite(opt_.init_scale), "GradScaler",
            "init_scale must be positive and finite, got " + std::to_string(opt_.init_scale));
  MOX_CHECK(opt_.growth_factor > 1, "GradScaler", "growth_factor must be > 1");
  MOX_CHECK(opt_.backoff_factor > 0 && opt_.backoff_factor < 1, "GradScaler",
            "backoff_factor must be in (0, 1)");
  MOX_CHECK(opt_.growth_interval >= 1, "GradScaler", "growth_interval must be >= 1");
}

Tensor GradScaler::scale(const Tensor& loss) const {
  if (!opt_.enabled) return loss;
  // The product is computed in f32 at least: a scaled f16 loss would overflow itself.
  Tensor l = loss.dtype() == DType::F64 ? loss : loss.to(DType::F32);
  return mul(l, scale_);
}

bool GradScaler::unscale_(Optimizer& opt) {
  if (!opt_.enabled) return true;
  if (unscaled_) return !found_inf_;
  NoGradGuard ng;
  const double inv = 1.0 / scale_;
  std::vector<Tensor> maxima;
  for (Tensor p : opt.params()) {
    Tensor g = p.grad();
    if (!g.defined() || g.numel() == 0) continue;
    g.mul_(inv);
    // max |g| is inf for an inf and NaN for a NaN; one value per gradient, read once.
    Tensor m = amax(abs(g)).to(DType::F32);
    if (!maxima.empty() && m.device() != maxima[0].device()) m = m.to(maxima[0].device());
    maxima.push_back(m.reshape({1}));
  }
  found_inf_ = false;
  if (!maxima.empty()) {
    // sum propagates NaN where a max might drop it
    Tensor all = cat(maxima, 0);
    std::vector<float> v = stack({amax(all), sum(all)}).to_vector<float>();
    found_inf_ = !std::isfinite(v[0]) || !std::isfinite(v[1]);
  }
  unscaled_ = true;
  return !found_inf_;
}

bool GradScaler::step(Optimizer& opt) {
  if (!opt_.enabled) {
    opt.step();
    return true;
  }
  MOX_CHECK(!stepped_, "GradScaler", "step() was already called since the last update()");
  unscale_(opt);
  stepped_ = true;
  if (found_inf_) {
    skipped_++;
    return false;
  }
  opt.step();
  return true;
}

void GradScaler::update() {
  if (!opt_.enabled) return;
  if (!unscaled_) return;  // nothing was checked this step: leave the scale alone
  if (found_inf_) {
    scale_ *= opt_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ >= opt_.growth_interval) {
    double s = scale_ * opt_.growth_factor;
    if (std::isfinite(s)) scale_ = s;
    growth_tracker_ = 0;
  }
  unscaled_ = found_inf_ = stepped_ = false;
}

StateDict GradScaler::state_dict() const {
  StateDict sd;
  sd.scalars["scale"] = scale_;
  sd.scalars["growth_tracker"] = double(growth_tracker_);
  sd.scalars["skipped_steps"] = double(skipped_);
  return sd;
}

void GradScaler::load_state_dict(const StateDict& sd) {
  double s = sd.scalar("scale", "GradScaler");
  MOX_CHECK(s > 0 && std::isfinite(s), "GradScaler", "saved scale must be positive, got " + format_scalar(s));
  scale_ = s;
  growth_tracker_ = int64_t(sd.scalar("growth_tracker", "GradScaler"));
  skipped_ = int64_t(sd.scalar("skipped_steps", "GradScaler"));
  unscaled_ = found_inf_ = stepped_ = false;
}

}  // namespace mox::optim
