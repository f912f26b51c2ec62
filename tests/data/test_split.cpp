// permutation, train/val/test splits (plain and stratified), k-fold, Subset, and the
// errors for impossible requests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "mox/data/split.h"

namespace mox::data {
namespace {

std::vector<int64_t> iota_vec(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) v[size_t(i)] = i;
  return v;
}

// Class labels with the given class sizes, interleaved so classes are not contiguous.
std::vector<int64_t> make_labels(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> y;
  std::vector<int64_t> left = sizes;
  for (bool any = true; any;) {
    any = false;
    for (size_t c = 0; c < left.size(); c++)
      if (left[c] > 0) {
        y.push_back(int64_t(c) * 10 - 5);  // non-contiguous, negative labels are fine
        left[c]--;
        any = true;
      }
  }
  return y;
}

std::map<int64_t, int64_t> class_counts(const std::vector<int64_t>& idx, const std::vector<int64_t>& y) {
  std::map<int64_t, int64_t> m;
  for (int64_t i : idx) m[y[size_t(i)]]++;
  return m;
}

void expect_partition(const std::vector<std::vector<int64_t>>& parts, int64_t n) {
  std::vector<int64_t> all;
  for (const auto& p : parts) {
    EXPECT_TRUE(std::is_sorted(p.begin(), p.end()));
    all.insert(all.end(), p.begin(), p.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, iota_vec(n));  // disjoint and covering
}

TEST(Split, PermutationIsSeededAndUniformish) {
  Generator g1(1), g2(1), g3(2);
  std::vector<int64_t> a = permutation(50, g1), b = permutation(50, g2), c = permutation(50, g3);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<int64_t> s = a;
  std::sort(s.begin(), s.end());
  EXPECT_EQ(s, iota_vec(50));
  EXPECT_TRUE(permutation(0, g1).empty());
  // Each of the 6 orders of 3 elements appears about 1/6 of the time.
  std::map<std::vector<int64_t>, int> freq;
  Generator g(9);
  for (int i = 0; i < 6000; i++) freq[permutation(3, g)]++;
  EXPECT_EQ(freq.size(), 6u);
  for (const auto& [p, f] : freq) EXPECT_NEAR(f, 1000, 150);
}

TEST(Split, FractionsGiveExactSizes) {
  Split s = train_val_test_split(Tensor(), 100, {.val_fraction = 0.2, .test_fraction = 0.1, .seed = 4});
  EXPECT_EQ(s.val.size(), 20u);
  EXPECT_EQ(s.test.size(), 10u);
  EXPECT_EQ(s.train.size(), 70u);
  expect_partition({s.train, s.val, s.test}, 100);
  Split again = train_val_test_split(Tensor(), 100, {.val_fraction = 0.2, .test_fraction = 0.1, .seed = 4});
  EXPECT_EQ(again.val, s.val);
  Split other = train_val_test_split(Tensor(), 100, {.val_fraction = 0.2, .test_fraction = 0.1, .seed = 5});
  EXPECT_NE(other.val, s.val);

  Split counts = train_val_test_split(Tensor(), 37, {.val_count = 7, .test_count = 0});
  EXPECT_EQ(counts.val.size(), 7u);
  EXPECT_TRUE(counts.test.empty());
  EXPECT_EQ(counts.train.size(), 30u);
  expect_partition({counts.train, counts.val, counts.test}, 37);
}

TEST(Split, StratifiedKeepsClassProportions) {
  for (auto sizes : std::vector<std::vector<int64_t>>{{50, 30, 20}, {41, 37, 19}, {3, 90, 7, 1}}) {
    std::vector<int64_t> y = make_labels(sizes);
    int64_t n = int64_t(y.size());
    double fv = 0.2, ft = 0.13;
    Split s = train_val_test_split(from_vector(y), n,
                                   {.val_fraction = fv, .test_fraction = ft, .stratified = true, .seed = 1});
    expect_partition({s.train, s.val, s.test}, n);
    EXPECT_EQ(int64_t(s.val.size()), std::llround(fv * double(n)));
    EXPECT_EQ(int64_t(s.test.size()), std::llround(ft * double(n)));
    auto cv = class_counts(s.val, y), ct = class_counts(s.test, y), ctr = class_counts(s.train, y);
    double hv = double(s.val.size()) / double(n), ht = double(s.test.size()) / double(n);
    for (size_t c = 0; c < sizes.size(); c++) {
      int64_t label = int64_t(c) * 10 - 5;
      double nc = double(sizes[c]);
      EXPECT_LE(std::abs(double(cv[label]) - hv * nc), 1.0) << "class " << c;
      EXPECT_LE(std::abs(double(ct[label]) - ht * nc), 1.0) << "class " << c;
      EXPECT_EQ(cv[label] + ct[label] + ctr[label], sizes[c]);
    }
  }
}

TEST(Split, KFoldCoversEveryIndexOnce) {
  for (int64_t n : {10, 23}) {
    std::vector<Fold> folds = kfold(n, 4, Tensor(), false, 3);
    ASSERT_EQ(folds.size(), 4u);
    std::vector<std::vector<int64_t>> vals;
    for (const Fold& f : folds) {
      expect_partition({f.train, f.val}, n);
      EXPECT_GE(int64_t(f.val.size()), n / 4);
      EXPECT_LE(int64_t(f.val.size()), n / 4 + 1);
      vals.push_back(f.val);
    }
    expect_partition(vals, n);
  }
  std::vector<Fold> loo = kfold(5, 5);
  for (const Fold& f : loo) EXPECT_EQ(f.val.size(), 1u);
}

TEST(Split, StratifiedKFold) {
  std::vector<int64_t> sizes{25, 14, 8};
  std::vector<int64_t> y = make_labels(sizes);
  int64_t n = int64_t(y.size()), k = 5;
  std::vector<Fold> folds = kfold(n, k, from_vector(y), true, 11);
  std::vector<std::vector<int64_t>> vals;
  for (const Fold& f : folds) {
    expect_partition({f.train, f.val}, n);
    EXPECT_GE(int64_t(f.val.size()), n / k);
    EXPECT_LE(int64_t(f.val.size()), n / k + 1);
    auto cv = class_counts(f.val, y);
    for (size_t c = 0; c < sizes.size(); c++)
      EXPECT_LE(std::abs(double(cv[int64_t(c) * 10 - 5]) - double(sizes[c]) / double(k)), 1.0);
    vals.push_back(f.val);
  }
  expect_partition(vals, n);
  EXPECT_EQ(kfold(n, k, from_vector(y), true, 11)[2].val, folds[2].val);
}

TEST(Split, SubsetMapsIndices) {
  std::vector<float> x{0, 10, 20, 30, 40, 50};
  auto parent = std::make_shared<TensorDataset>(from_vector(x, {6, 1}), arange(6));
  Subset sub(parent, {5, 1, 3});
  EXPECT_EQ(sub.size(), 3);
  EXPECT_EQ(sub.get(0).target.item<int64_t>(), 5);
  Batch b = sub.get_batch({2, 0});
  EXPECT_EQ(b.input.to_vector<float>(), (std::vector<float>{30, 50}));
  EXPECT_EQ(b.target.to_vector<int64_t>(), (std::vector<int64_t>{3, 5}));
  EXPECT_THROW(sub.get(3), Error);
  EXPECT_THROW(sub.get_batch({0, 3}), Error);
  EXPECT_THROW(Subset(parent, {6}), Error);
  EXPECT_THROW(Subset(nullptr, {}), Error);
}

// The error's message mentions `needle`.
template <typename F> void expect_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Split, ClearErrors) {
  expect_error([] { train_val_test_split(Tensor(), 10, {.val_fraction = -0.1}); }, "val_fraction");
  expect_error([] { train_val_test_split(Tensor(), 10, {.val_fraction = 1.0}); }, "val_fraction");
  expect_error([] { train_val_test_split(Tensor(), 10, {.val_fraction = 0.1, .test_fraction = -1}); },
               "test_fraction");
  expect_error([] { train_val_test_split(Tensor(), 10, {.val_fraction = 0.6, .test_fraction = 0.4}); },
               "< 1");
  expect_error([] { train_val_test_split(Tensor(), 10, {.val_count = 6, .test_count = 5}); }, "exceed");
  expect_error([] { train_val_test_split(Tensor(), 10, {.stratified = true}); }, "needs labels");
  expect_error([] { train_val_test_split(zeros({10}), 10, {.stratified = true}); }, "integer class labels");
  expect_error([] { train_val_test_split(arange(9), 10, {}); }, "n = 10");
  expect_error([] { kfold(10, 1); }, "k must be >= 2");
  expect_error([] { kfold(3, 4); }, "at least k examples");
  expect_error([] { kfold(10, 2, Tensor(), true); }, "needs labels");
  Generator g;
  expect_error([&] { permutation(-1, g); }, "n must be >= 0");
}

}  // namespace
}  // namespace mox::data
