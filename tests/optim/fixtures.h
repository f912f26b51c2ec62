#pragma once
// Loading the PyTorch reference fixtures written by tools/fixtures_optim.py, and building
// the optimiser a fixture's metadata describes.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "mox/io/safetensors.h"
#include "mox/mox.h"
#include "mox/optim/optim.h"

namespace mox::testing {

inline std::string optim_fixture(const std::string& name) {
  return std::string(MOX_SOURCE_DIR) + "/tests/fixtures/optim/" + name + ".safetensors";
}

// Metadata value `key`, or `fallback` when absent.
inline std::string meta(const io::SafetensorsFile& f, const std::string& key,
                        const std::string& fallback = "") {
  auto it = f.metadata.find(key);
  return it == f.metadata.end() ? fallback : it->second;
}
inline double meta_num(const io::SafetensorsFile& f, const std::string& key, double fallback) {
  std::string v = meta(f, key);
  return v.empty() ? fallback : optim::parse_scalar(v, key);
}
inline bool meta_bool(const io::SafetensorsFile& f, const std::string& key) {
  return meta(f, key) == "true";
}

// Parameters 0 and 1 form group 0 with the optimiser's options; parameter 2 forms group 1
// with the group1_lr / group1_weight_decay overrides, as in the fixture script.
inline std::unique_ptr<optim::Optimizer> make_optimizer(const io::SafetensorsFile& cfg,
                                                       const std::vector<Tensor>& params) {
  std::vector<optim::ParamGroup> groups(2);
  groups[0].params = {params[0], params[1]};
  groups[1].params = {params[2]};
  if (cfg.metadata.count("group1_lr")) groups[1].lr = meta_num(cfg, "group1_lr", 0);
  if (cfg.metadata.count("group1_weight_decay"))
    groups[1].weight_decay = meta_num(cfg, "group1_weight_decay", 0);
  const std::string kind = meta(cfg, "optimizer");
  const double lr = meta_num(cfg, "lr", 0), wd = meta_num(cfg, "weight_decay", 0);
  if (kind == "SGD")
    return std::make_unique<optim::SGD>(groups, optim::SGDOptions(lr)
                                                    .momentum(meta_num(cfg, "momentum", 0))
                                                    .dampening(meta_num(cfg, "dampening", 0))
                                                    .nesterov(meta_bool(cfg, "nesterov"))
                                                    .weight_decay(wd));
  if (kind == "Adagrad")
    return std::make_unique<optim::Adagrad>(
        groups, optim::AdagradOptions(lr)
                    .lr_decay(meta_num(cfg, "lr_decay", 0))
                    .initial_accumulator_value(meta_num(cfg, "initial_accumulator_value", 0))
                    .eps(meta_num(cfg, "eps", 1e-10))
                    .weight_decay(wd));
  if (kind == "RMSprop")
    return std::make_unique<optim::RMSprop>(groups, optim::RMSpropOptions(lr)
                                                        .alpha(meta_num(cfg, "alpha", 0.99))
                                                        .eps(meta_num(cfg, "eps", 1e-8))
                                                        .momentum(meta_num(cfg, "momentum", 0))
                                                        .centered(meta_bool(cfg, "centered"))
                                                        .weight_decay(wd));
  if (kind == "Adam" || kind == "AdamW") {
    double b1 = meta_num(cfg, "beta1", 0.9), b2 = meta_num(cfg, "beta2", 0.999);
    bool ams = meta_bool(cfg, "amsgrad");
    double eps = meta_num(cfg, "eps", 1e-8);
    if (kind == "Adam")
      return std::make_unique<optim::Adam>(
          groups, optim::AdamOptions(lr).betas(b1, b2).eps(eps).amsgrad(ams).weight_decay(wd));
    return std::make_unique<optim::AdamW>(
        groups, optim::AdamWOptions(lr).betas(b1, b2).eps(eps).amsgrad(ams).weight_decay(
                    meta_num(cfg, "weight_decay", 0.01)));
  }
  throw Error("test", "unknown optimizer '" + kind + "' in " + cfg.path);
}

// The recorded run: initial parameters, 100 gradients each, and the steps on which
// parameter 2 gets no gradient.
struct GradSequence {
  io::SafetensorsFile file;
  int64_t steps = 0;
  explicit GradSequence(DType dtype = DType::F32) : dtype_(dtype) {
    file = io::load_safetensors(optim_fixture("grads"));
    steps = file.at("grad.0").size(0);
    skip_ = file.at("skip.2").to_vector<uint8_t>();
  }
  // Fresh leaf parameters holding the initial values.
  std::vector<Tensor> initial_params() const {
    std::vector<Tensor> ps;
    for (int i = 0; i < 3; i++) {
      Tensor p = file.at("param." + std::to_string(i)).to(dtype_).clone();
      p.requires_grad_(true);
      ps.push_back(p);
    }
    return ps;
  }
  // Sets the .grads for step s (parameter 2's left undefined on its skipped steps).
  void set_grads(std::vector<Tensor>& params, int64_t s) const {
    for (int i = 0; i < 3; i++) {
      if (i == 2 && skip_[size_t(s)]) {
        params[i].zero_grad();
        continue;
      }
      params[i].set_grad(file.at("grad." + std::to_string(i)).select(0, s).to(dtype_).clone());
    }
  }

 private:
  DType dtype_;
  std::vector<uint8_t> skip_;
};

// Elementwise |a - e| <= rtol * |e| + atol, reporting the worst element.
inline ::testing::AssertionResult close(const Tensor& actual, const Tensor& expected, double rtol,
                                        double atol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << actual.desc() << " vs " << expected.desc();
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  for (size_t i = 0; i < a.size(); i++)
    if (!(std::abs(a[i] - e[i]) <= rtol * std::abs(e[i]) + atol))
      return ::testing::AssertionFailure()
             << "element " << i << ": " << a[i] << " vs expected " << e[i] << " (diff "
             << std::abs(a[i] - e[i]) << ")";
  return ::testing::AssertionSuccess();
}

}  // namespace mox::testing
