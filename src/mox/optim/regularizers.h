#pragma once
// Penalties to add to a loss (differentiable scalars, in the parameters' dtype):
//   l1_penalty = lambda * sum over params of sum |p|   (gradient lambda * sign(p); drives
//                weights to exactly zero, i.e. sparsity)
//   l2_penalty = lambda * sum over params of sum p^2   (gradient 2 * lambda * p; the same
//                as SGD's weight_decay = 2 * lambda, but shaped by adaptive optimisers)
#include <vector>

#include "mox/tensor/tensor.h"

namespace mox::optim {

Tensor l1_penalty(const std::vector<Tensor>& params, double lambda);
Tensor l2_penalty(const std::vector<Tensor>& params, double lambda);

}  // namespace mox::optim
