#pragma once
// Gradient clipping (PyTorch's torch.nn.utils.clip_grad_norm_ / clip_grad_value_).
// Parameters without a .grad are skipped.
#include <vector>

#include "mox/tensor/tensor.h"

namespace mox::optim {

// Scales all gradients together so that their combined norm is at most max_norm:
// total = (sum over params of ||grad||_p^p)^(1/p) (max |grad| for p = inf), and when
// total > max_norm every gradient is multiplied by max_norm / (total + 1e-6).
// Returns the total norm before clipping. A non-finite total throws mox::Error when
// error_if_nonfinite, and otherwise propagates into the gradients, as in PyTorch.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

// Clamps every gradient element to [-clip_value, clip_value].
void clip_grad_value_(const std::vector<Tensor>& params, double clip_value);

}  // namespace mox::optim
