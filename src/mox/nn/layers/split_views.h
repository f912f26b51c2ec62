#pragma once
// Splits for the recurrent layers' inner loops whose pieces share ONE backward node.
// mox::split/narrow record a node per piece, and each piece's backward materialises a
// zero tensor of the whole input; for the T time steps of an RNN that is O(T^2) work.
// Here the engine gathers the gradients of all pieces and the node concatenates them
// once (O(size)); pieces that get no gradient count as zeros.
#include <vector>

#include "mox/tensor/tensor.h"

namespace mox::nn {

// Views of x along dim with the given sizes (which must sum to x.size(dim)).
std::vector<Tensor> split_views(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// The x.size(dim) slices of x along dim, each without that dim (like torch.unbind).
std::vector<Tensor> unbind_views(const Tensor& x, int64_t dim);

}  // namespace mox::nn
