#include "mox/nn/layers/batch_norm.h"

#include "mox/autograd/node.h"
#include "mox/nn/init.h"
#include "mox/nn/layers/layer_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

BatchNormBase::BatchNormBase(int64_t c, double eps_, std::optional<double> momentum_,
                             bool affine, bool track)
    : num_features(c), eps(eps_), momentum(momentum_) {
  MOX_CHECK(c > 0, "BatchNorm", "num_features must be positive, got " + std::to_string(c));
  MOX_CHECK(!momentum || (*momentum >= 0.0 && *momentum <= 1.0), "BatchNorm",
            "momentum must be in [0, 1], got " + repr_float(momentum.value_or(0)));
  if (affine) {
    weight = register_parameter("weight", empty({c}));
    bias = register_parameter("bias", empty({c}));
  }
  if (track) {
    running_mean = register_buffer("running_mean", zeros({c}));
    running_var = register_buffer("running_var", ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::I64));
  }
  reset_parameters();
}

void BatchNormBase::reset_running_stats() {
  if (!running_mean.defined()) return;
  init::zeros_(running_mean);
  init::ones_(running_var);
  init::zeros_(num_batches_tracked);
}

void BatchNormBase::reset_parameters() {
  reset_running_stats();
  if (weight.defined()) init::ones_(weight);
  if (bias.defined()) init::zeros_(bias);
}

Tensor BatchNormBase::forward(const Tensor& x) {
  check_input(x.shape());
  MOX_CHECK(!is_training() || x.numel() / num_features > 1, type_name(),
            "expected more than 1 value per channel when training, got input " + x.desc());
  bool track = running_mean.defined();
  double m = momentum.value_or(0.0);
  if (is_training() && track) {
    NoGradGuard ng;
    num_batches_tracked.add_(ones({}, TensorOptions(DType::I64, num_batches_tracked.device())));
    if (!momentum) m = 1.0 / double(num_batches_tracked.item<int64_t>());
  }
  // Without running statistics the batch's own are used in eval mode too.
  bool use_batch_stats = is_training() || !track;
  return batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, m, eps);
}

Shape BatchNormBase::output_shape(const Shape& in) const {
  check_input(in);
  return in;
}

std::string BatchNormBase::extra_repr() const {
  return std::to_string(num_features) + ", eps=" + repr_float(eps) + ", momentum=" +
         (momentum ? repr_float(*momentum) : std::string("None")) +
         ", affine=" + repr_bool(weight.defined()) +
         ", track_running_stats=" + repr_bool(running_mean.defined());
}

void BatchNorm1d::check_input(const Shape& s) const {
  check_rank(s, 2, 3, "BatchNorm1d", "[N, C] or [N, C, L]");
  check_size(s, 1, num_features, "BatchNorm1d", "num_features (dim C)");
}

void BatchNorm2d::check_input(const Shape& s) const {
  check_rank(s, 4, 4, "BatchNorm2d", "[N, C, H, W]");
  check_size(s, 1, num_features, "BatchNorm2d", "num_features (dim C)");
}

}  // namespace mox::nn
