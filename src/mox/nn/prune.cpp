#include "mox/nn/prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mox/autograd/node.h"
#include "mox/ops/ops.h"

namespace mox::nn {

namespace {

// The weights magnitude pruning applies to: (name, tensor) of Linear and Conv2d modules.
std::vector<std::pair<std::string, Tensor>> prunable(Module& model, const std::vector<std::string>& skip) {
  std::vector<std::pair<std::string, Tensor>> out;
  auto params = model.named_parameters();
  for (auto& [name, m] : model.named_modules()) {
    if (m->type_name() != "Linear" && m->type_name() != "Conv2d") continue;
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    const std::string key = name.empty() ? "weight" : name + ".weight";
    if (params.contains(key)) out.emplace_back(key, params[key]);
  }
  return out;
}

// Marks the k smallest |values| (earlier index first among equals) as pruned (0).
std::vector<uint8_t> keep_mask(const std::vector<double>& mag, int64_t k) {
  std::vector<uint8_t> keep(mag.size(), 1);
  if (k <= 0) return keep;
  std::vector<int64_t> idx(mag.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto less = [&](int64_t a, int64_t b) { return mag[size_t(a)] != mag[size_t(b)] ? mag[size_t(a)] < mag[size_t(b)] : a < b; };
  std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), less);
  for (int64_t i = 0; i < k; ++i) keep[size_t(idx[size_t(i)])] = 0;
  return keep;
}

std::vector<double> magnitudes(const Tensor& w) {
  std::vector<double> v = w.detach().to(kCPU).to(DType::F64).contiguous().to_vector<double>();
  for (double& x : v) x = std::fabs(x);
  return v;
}

Tensor mask_tensor(const std::vector<uint8_t>& keep, const Tensor& like) {
  return from_vector(keep, like.shape()).to(like.device());
}

}  // namespace

std::map<std::string, Tensor> magnitude_prune_masks(Module& model, const PruneOptions& o) {
  MOX_CHECK(o.sparsity >= 0 && o.sparsity < 1, "prune", "sparsity must be in [0, 1), got " + std::to_string(o.sparsity));
  auto ws = prunable(model, o.skip);
  MOX_CHECK(!ws.empty(), "prune", "the model has no Linear or Conv2d weights to prune");
  std::map<std::string, Tensor> masks;
  if (!o.global) {
    for (auto& [name, w] : ws) {
      std::vector<double> mag = magnitudes(w);
      const int64_t k = std::llround(o.sparsity * double(mag.size()));
      masks[name] = mask_tensor(keep_mask(mag, k), w);
    }
    return masks;
  }
  std::vector<double> all;
  std::vector<size_t> starts;
  for (auto& [name, w] : ws) {
    starts.push_back(all.size());
    std::vector<double> mag = magnitudes(w);
    all.insert(all.end(), mag.begin(), mag.end());
  }
  const std::vector<uint8_t> keep = keep_mask(all, std::llround(o.sparsity * double(all.size())));
  for (size_t i = 0; i < ws.size(); ++i) {
    const size_t n = size_t(ws[i].second.numel());
    masks[ws[i].first] = mask_tensor(std::vector<uint8_t>(keep.begin() + starts[i], keep.begin() + starts[i] + n), ws[i].second);
  }
  return masks;
}

void apply_masks(Module& model, const std::map<std::string, Tensor>& masks) {
  NoGradGuard ng;
  auto params = model.named_parameters();
  for (const auto& [name, mask] : masks) {
    MOX_CHECK(params.contains(name), "prune", "the model has no parameter " + name + " for its mask");
    Tensor w = params[name];
    MOX_CHECK(mask.shape() == w.shape(), "prune",
              "mask " + mask.desc() + " does not match " + name + " " + w.desc());
    const Tensor m = (mask.device() == w.device() ? mask : mask.to(w.device())).to(w.dtype());
    w.copy_(mul(w.detach(), m));
  }
}

double prunable_sparsity(Module& model, const std::vector<std::string>& skip) {
  double zeros = 0, total = 0;
  for (auto& [name, w] : prunable(model, skip)) {
    zeros += double(w.numel()) - sum(ne(w.detach(), 0.0).to(DType::F64)).item<double>();
    total += double(w.numel());
  }
  return total > 0 ? zeros / total : 0.0;
}

double polynomial_sparsity(int64_t step, int64_t begin, int64_t end, double initial, double final, double power) {
  MOX_CHECK(end > begin, "prune", "the schedule must end after it begins (" + std::to_string(begin) + ", " +
                                      std::to_string(end) + ")");
  if (step <= begin) return initial;
  if (step >= end) return final;
  const double f = 1.0 - double(step - begin) / double(end - begin);
  return final + (initial - final) * std::pow(f, power);
}

}  // namespace mox::nn
