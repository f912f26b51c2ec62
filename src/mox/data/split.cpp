#include "mox/data/split.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>

namespace mox::data {

namespace {

// Labels as host values, grouped by class (in label order), each group shuffled.
std::vector<std::vector<int64_t>> shuffled_classes(const Tensor& labels, int64_t n,
                                                   Generator& gen, const char* where) {
  MOX_CHECK(labels.defined(), where, "stratified splitting needs labels, got none");
  MOX_CHECK(is_integral(labels.dtype()) && labels.dim() == 1 && labels.size(0) == n, where,
            "stratified splitting needs integer class labels [" + std::to_string(n) + "], got " +
                labels.desc());
  std::vector<int64_t> y = labels.to_vector<int64_t>();
  std::map<int64_t, std::vector<int64_t>> by_class;
  for (int64_t i = 0; i < n; i++) by_class[y[size_t(i)]].push_back(i);
  std::vector<std::vector<int64_t>> classes;
  for (auto& [label, idx] : by_class) {
    for (size_t i = idx.size(); i > 1; i--) std::swap(idx[i - 1], idx[gen.below(i)]);
    classes.push_back(std::move(idx));
  }
  return classes;
}

// Distributes `total` over groups in proportion to their sizes (summing to n): each group
// gets the floor of its share, and the groups with the largest remainders one more, so the
// counts sum to `total` exactly and each is within one of its share.
std::vector<int64_t> apportion(const std::vector<int64_t>& sizes, int64_t n, int64_t total) {
  std::vector<int64_t> count(sizes.size()), rem(sizes.size());
  int64_t given = 0;
  for (size_t c = 0; c < sizes.size(); c++) {
    count[c] = total * sizes[c] / n;
    rem[c] = total * sizes[c] % n;
    given += count[c];
  }
  std::vector<size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rem[a] > rem[b]; });
  for (size_t i = 0; given < total; i++, given++) count[order[i % order.size()]]++;
  return count;
}

int64_t part_count(double fraction, int64_t count, int64_t n, const char* what) {
  if (count >= 0) return count;
  MOX_CHECK(count == -1, "train_val_test_split",
            std::string(what) + "_count must be >= 0 (or -1 to use the fraction), got " +
                std::to_string(count));
  return int64_t(std::llround(fraction * double(n)));
}

std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

std::vector<int64_t> permutation(int64_t n, Generator& gen) {
  MOX_CHECK(n >= 0, "permutation", "n must be >= 0, got " + std::to_string(n));
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t(0));
  // Fisher-Yates: position i takes a uniformly chosen element of p[0..i].
  for (int64_t i = n - 1; i > 0; i--) std::swap(p[size_t(i)], p[size_t(gen.below(uint64_t(i + 1)))]);
  return p;
}

Split train_val_test_split(const Tensor& labels, int64_t n, const SplitOptions& opt) {
  const char* where = "train_val_test_split";
  MOX_CHECK(n >= 1, where, "needs at least one example, got n = " + std::to_string(n));
  auto frac_ok = [](double f) { return std::isfinite(f) && f >= 0.0 && f < 1.0; };
  if (opt.val_count < 0)
    MOX_CHECK(frac_ok(opt.val_fraction), where,
              "val_fraction must be in [0, 1), got " + std::to_string(opt.val_fraction));
  if (opt.test_count < 0)
    MOX_CHECK(frac_ok(opt.test_fraction), where,
              "test_fraction must be in [0, 1), got " + std::to_string(opt.test_fraction));
  if (opt.val_count < 0 && opt.test_count < 0)
    MOX_CHECK(opt.val_fraction + opt.test_fraction < 1.0, where,
              "val_fraction + test_fraction must be < 1 to leave training examples, got " +
                  std::to_string(opt.val_fraction) + " + " + std::to_string(opt.test_fraction));
  int64_t nv = part_count(opt.val_fraction, opt.val_count, n, "val");
  int64_t nt = part_count(opt.test_fraction, opt.test_count, n, "test");
  MOX_CHECK(nv + nt <= n, where,
            "val (" + std::to_string(nv) + ") and test (" + std::to_string(nt) +
                ") examples exceed the " + std::to_string(n) + " examples");
  if (labels.defined())
    MOX_CHECK(labels.dim() >= 1 && labels.size(0) == n, where,
              "labels " + labels.desc() + " do not have n = " + std::to_string(n) + " examples");

  Generator gen(opt.seed);
  Split s;
  if (!opt.stratified) {
    std::vector<int64_t> p = permutation(n, gen);
    s.val.assign(p.begin(), p.begin() + nv);
    s.test.assign(p.begin() + nv, p.begin() + nv + nt);
    s.train.assign(p.begin() + nv + nt, p.end());
  } else {
    std::vector<std::vector<int64_t>> classes = shuffled_classes(labels, n, gen, where);
    std::vector<int64_t> sizes;
    for (const auto& c : classes) sizes.push_back(int64_t(c.size()));
    std::vector<int64_t> v = apportion(sizes, n, nv), t = apportion(sizes, n, nt);
    // Val and test are rounded independently, so a class that would keep fewer than two
    // training examples can be over-asked; it hands test examples to a class with room.
    for (size_t c = 0; c < classes.size(); c++) {
      while (v[c] + t[c] > sizes[c]) {
        size_t d = 0;
        while (d < classes.size() && (d == c || v[d] + t[d] >= sizes[d])) d++;
        MOX_CHECK(d < classes.size(), where, "internal: no class has room for test examples");
        t[c]--;
        t[d]++;
      }
    }
    for (size_t c = 0; c < classes.size(); c++) {
      const auto& idx = classes[c];
      s.val.insert(s.val.end(), idx.begin(), idx.begin() + v[c]);
      s.test.insert(s.test.end(), idx.begin() + v[c], idx.begin() + v[c] + t[c]);
      s.train.insert(s.train.end(), idx.begin() + v[c] + t[c], idx.end());
    }
  }
  s.train = sorted(std::move(s.train));
  s.val = sorted(std::move(s.val));
  s.test = sorted(std::move(s.test));
  return s;
}

std::vector<Fold> kfold(int64_t n, int64_t k, const Tensor& labels, bool stratified, uint64_t seed) {
  const char* where = "kfold";
  MOX_CHECK(k >= 2, where, "k must be >= 2, got " + std::to_string(k));
  MOX_CHECK(k <= n, where,
            "k = " + std::to_string(k) + " folds need at least k examples, got n = " + std::to_string(n));
  if (labels.defined())
    MOX_CHECK(labels.dim() >= 1 && labels.size(0) == n, where,
              "labels " + labels.desc() + " do not have n = " + std::to_string(n) + " examples");
  Generator gen(seed);
  std::vector<int64_t> fold_of(static_cast<size_t>(n));
  if (!stratified) {
    // Contiguous chunks of a permutation: the first n % k folds take one extra example.
    std::vector<int64_t> p = permutation(n, gen);
    int64_t pos = 0;
    for (int64_t f = 0; f < k; f++) {
      int64_t len = n / k + (f < n % k ? 1 : 0);
      for (int64_t j = 0; j < len; j++) fold_of[size_t(p[size_t(pos + j)])] = f;
      pos += len;
    }
  } else {
    // Deal each class's shuffled examples round-robin, continuing where the previous class
    // stopped, so folds differ by at most one overall and by at most one per class.
    int64_t next = 0;
    for (const auto& idx : shuffled_classes(labels, n, gen, where))
      for (int64_t i : idx) fold_of[size_t(i)] = next++ % k;
  }
  std::vector<Fold> folds(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; i++)
    for (int64_t f = 0; f < k; f++) {
      Fold& fold = folds[size_t(f)];
      (fold_of[size_t(i)] == f ? fold.val : fold.train).push_back(i);
    }
  return folds;
}

Subset::Subset(std::shared_ptr<const Dataset> parent, std::vector<int64_t> indices)
    : parent_(std::move(parent)), indices_(std::move(indices)) {
  MOX_CHECK(parent_ != nullptr, "Subset", "no parent dataset");
  int64_t n = parent_->size();
  for (int64_t i : indices_)
    MOX_CHECK(i >= 0 && i < n, "Subset",
              "index " + std::to_string(i) + " out of range for a parent of " + std::to_string(n) +
                  " examples");
}

Example Subset::get(int64_t index) const {
  MOX_CHECK(index >= 0 && index < size(), "Subset",
            "index " + std::to_string(index) + " out of range for " + std::to_string(size()) + " examples");
  return parent_->get(indices_[size_t(index)]);
}

Batch Subset::get_batch(const std::vector<int64_t>& indices) const {
  std::vector<int64_t> mapped;
  mapped.reserve(indices.size());
  for (int64_t i : indices) {
    MOX_CHECK(i >= 0 && i < size(), "Subset",
              "index " + std::to_string(i) + " out of range for " + std::to_string(size()) + " examples");
    mapped.push_back(indices_[size_t(i)]);
  }
  return parent_->get_batch(mapped);
}

}  // namespace mox::data
