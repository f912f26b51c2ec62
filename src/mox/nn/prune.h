#pragma once
// Unstructured magnitude pruning (Han et al.; the gradual schedule of Zhu & Gupta, "To prune,
// or not to prune", 2017): the weights of a model's Linear and Conv2d layers with the
// smallest magnitudes are set to zero, per layer or under one global threshold, and masks
// keep them at zero while the model is fine-tuned.
//
//   nn::PruneOptions o;
//   o.sparsity = 0.8;
//   auto masks = nn::magnitude_prune_masks(*model, o);
//   nn::apply_masks(*model, masks);        // again after every optimiser step
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mox/nn/module.h"

namespace mox::nn {

struct PruneOptions {
  double sparsity = 0.5;           // fraction of the pruned weights set to zero, in [0, 1)
  bool global = false;             // one threshold over all layers (else the same fraction per layer)
  std::vector<std::string> skip;   // module names kept dense (e.g. the output layer "3")
};

// Masks (u8, 1 = kept) for the weight of every Linear and Conv2d module not in `skip`, keyed
// by the parameter's name ("0.weight"). Exactly round(sparsity * n) weights are pruned per
// layer (or over all n weights when global); among equal magnitudes the earlier index goes
// first. Masks live on the weights' devices.
std::map<std::string, Tensor> magnitude_prune_masks(Module& model, const PruneOptions& options);

// weight *= mask for every named weight (in place, outside autograd). Throws mox::Error naming
// a mask whose parameter is missing or whose shape differs.
void apply_masks(Module& model, const std::map<std::string, Tensor>& masks);

// The fraction of zeros among the weights magnitude_prune_masks would prune.
double prunable_sparsity(Module& model, const std::vector<std::string>& skip = {});

// Zhu & Gupta's schedule: the sparsity at `step` rising from `initial` at `begin` to `final`
// at `end` as final + (initial - final) * (1 - (step - begin) / (end - begin))^power; initial
// before begin, final after end.
double polynomial_sparsity(int64_t step, int64_t begin, int64_t end, double initial, double final,
                           double power = 3.0);

}  // namespace mox::nn
