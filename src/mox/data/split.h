#pragma once
// Splitting a data set into train/validation/test parts and k cross-validation folds, as
// index lists, plus Subset, the Dataset view over such a list. Everything is seeded, so a
// split is reproducible; stratified splits keep each class's share in every part.
#include <cstdint>
#include <memory>
#include <vector>

#include "mox/data/dataset.h"
#include "mox/tensor/generator.h"

namespace mox::data {

// A uniformly random ordering of 0..n-1 (Fisher-Yates, drawing from gen).
std::vector<int64_t> permutation(int64_t n, Generator& gen);

struct SplitOptions {
  double val_fraction = 0.1;
  double test_fraction = 0.0;
  int64_t val_count = -1;   // >= 0: an exact count, overriding val_fraction
  int64_t test_count = -1;  // >= 0: an exact count, overriding test_fraction
  bool stratified = false;  // needs i64 labels [n]
  uint64_t seed = 0;
};

struct Split {
  std::vector<int64_t> train, val, test;  // disjoint, together 0..n-1, each sorted
};

// Fractions are rounded to the nearest count. Stratified: each class's val and test counts
// are its share of the totals rounded (largest remainder), so totals are exact and each
// class is within one example of its proportional count.
Split train_val_test_split(const Tensor& labels_or_undefined, int64_t n, const SplitOptions& opt);

struct Fold {
  std::vector<int64_t> train, val;  // each sorted
};

// k folds whose val parts partition 0..n-1 (sizes differ by at most one); stratified
// folds hold each class's examples in (almost, within one) equal numbers.
std::vector<Fold> kfold(int64_t n, int64_t k, const Tensor& labels_or_undefined = Tensor(),
                        bool stratified = false, uint64_t seed = 0);

// The examples of `parent` at `indices`, renumbered 0..indices.size()-1.
class Subset : public Dataset {
 public:
  Subset(std::shared_ptr<const Dataset> parent, std::vector<int64_t> indices);
  int64_t size() const override { return int64_t(indices_.size()); }
  Example get(int64_t index) const override;
  Batch get_batch(const std::vector<int64_t>& indices) const override;
  const std::vector<int64_t>& indices() const { return indices_; }
  const std::shared_ptr<const Dataset>& parent() const { return parent_; }

 private:
  std::shared_ptr<const Dataset> parent_;
  std::vector<int64_t> indices_;
};

}  // namespace mox::data
