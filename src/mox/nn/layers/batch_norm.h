#pragma once
// Batch normalisation over the channel dim C of x [N, C] / [N, C, L] (BatchNorm1d) or
// [N, C, H, W] (BatchNorm2d). Training mode normalises with the batch's statistics and
// updates running_mean / running_var (running = (1 - momentum) * running + momentum *
// batch, with the unbiased batch variance); eval mode uses the running statistics.
// momentum = nullopt means a cumulative average (1 / num_batches_tracked), as in PyTorch.
#include <optional>

#include "mox/nn/module.h"

namespace mox::nn {

class BatchNormBase : public Module {
 public:
  BatchNormBase(int64_t num_features, double eps, std::optional<double> momentum, bool affine,
                bool track_running_stats);
  void reset_running_stats();
  void reset_parameters();

  Tensor forward(const Tensor& x) override;
  Shape output_shape(const Shape& input) const override;
  std::string extra_repr() const override;

  int64_t num_features;
  double eps;
  std::optional<double> momentum;
  Tensor weight, bias;               // [C] (ones, zeros) when affine
  Tensor running_mean, running_var;  // [C] (zeros, ones) when track_running_stats
  Tensor num_batches_tracked;        // i64 scalar, batches seen in training mode

 protected:
  virtual void check_input(const Shape& s) const = 0;
};

class BatchNorm1d : public BatchNormBase {
 public:
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5,
                       std::optional<double> momentum = 0.1, bool affine = true,
                       bool track_running_stats = true)
      : BatchNormBase(num_features, eps, momentum, affine, track_running_stats) {}
  std::string type_name() const override { return "BatchNorm1d"; }

 protected:
  void check_input(const Shape& s) const override;
};

class BatchNorm2d : public BatchNormBase {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5,
                       std::optional<double> momentum = 0.1, bool affine = true,
                       bool track_running_stats = true)
      : BatchNormBase(num_features, eps, momentum, affine, track_running_stats) {}
  std::string type_name() const override { return "BatchNorm2d"; }

 protected:
  void check_input(const Shape& s) const override;
};

}  // namespace mox::nn
