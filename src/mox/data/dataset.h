#pragma once
// A data set is an indexable collection of (input, target) examples; the DataLoader
// batches them. Datasets that fit in memory hold two tensors whose first dim indexes the
// examples (TensorDataset); loaders for files build one.
#include <memory>
#include <vector>

#include "mox/tensor/tensor.h"

namespace mox::data {

struct Example {
  Tensor input;   // one example's features, e.g. f32 [1, 28, 28] or i64 [T]
  Tensor target;  // its label (i64 []) or regression target (f32 [k])
};

struct Batch {
  Tensor input;   // [B, ...]
  Tensor target;  // [B, ...]
  // The examples' indices in the data set, when a DataLoader made the batch (i64 [B]).
  Tensor indices;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;
  // The examples at `indices` stacked along a new first dim. The default stacks get(i);
  // in-memory datasets override it with one gather.
  virtual Batch get_batch(const std::vector<int64_t>& indices) const;
};

// Inputs and targets held as tensors: example i is (inputs[i], targets[i]).
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor inputs, Tensor targets);
  int64_t size() const override { return inputs_.size(0); }
  Example get(int64_t index) const override;
  Batch get_batch(const std::vector<int64_t>& indices) const override;
  const Tensor& inputs() const { return inputs_; }
  const Tensor& targets() const { return targets_; }

 private:
  Tensor inputs_, targets_;
};

}  // namespace mox::data
