#include "mox/data/dataset.h"

#include "mox/autograd/node.h"
#include "mox/ops/ops.h"

namespace mox::data {

Batch Dataset::get_batch(const std::vector<int64_t>& indices) const {
  MOX_CHECK(!indices.empty(), "Dataset", "empty batch");
  std::vector<Tensor> xs, ys;
  xs.reserve(indices.size());
  ys.reserve(indices.size());
  for (int64_t i : indices) {
    Example e = get(i);
    xs.push_back(e.input);
    ys.push_back(e.target);
  }
  NoGradGuard ng;
  return {stack(xs, 0), stack(ys, 0), Tensor()};
}

TensorDataset::TensorDataset(Tensor inputs, Tensor targets)
    : inputs_(std::move(inputs)), targets_(std::move(targets)) {
  MOX_CHECK(inputs_.defined() && targets_.defined() && inputs_.dim() >= 1 && targets_.dim() >= 1,
            "TensorDataset", "inputs and targets need a first (example) dim");
  MOX_CHECK(inputs_.size(0) == targets_.size(0), "TensorDataset",
            "inputs " + inputs_.desc() + " and targets " + targets_.desc() +
                " have different numbers of examples");
}

Example TensorDataset::get(int64_t index) const {
  MOX_CHECK(index >= 0 && index < size(), "TensorDataset",
            "index " + std::to_string(index) + " out of range for " + std::to_string(size()) + " examples");
  return {inputs_[index], targets_[index]};
}

Batch TensorDataset::get_batch(const std::vector<int64_t>& indices) const {
  MOX_CHECK(!indices.empty(), "TensorDataset", "empty batch");
  for (int64_t i : indices)
    MOX_CHECK(i >= 0 && i < size(), "TensorDataset",
              "index " + std::to_string(i) + " out of range for " + std::to_string(size()) + " examples");
  NoGradGuard ng;
  Tensor idx = from_vector(indices);
  return {index_select(inputs_, 0, idx), index_select(targets_, 0, idx), Tensor()};
}

}  // namespace mox::data
