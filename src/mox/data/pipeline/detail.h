#pragma once
// Internals of the data pipeline shared by pipeline.cpp and pipeline/*.cpp; not an API.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mox/data/dataset.h"
#include "mox/data/text/vocab.h"
#include "mox/io/config.h"
#include "mox/tensor/generator.h"
#include "mox/tensor/tensor.h"

namespace mox::data::pipeline_detail {

// x [N, K, ...] (any float dtype) -> f32 (x - mean[k]) / std[k] along dim 1, a fresh
// contiguous tensor; inverse: x * std[k] + mean[k].
Tensor normalize_dim1(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std);
Tensor denormalize_dim1(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& std);

struct Augmentation {
  std::function<void(Batch&, Generator&)> fn;  // null: nothing to do
  std::string description;
};

// [data.augment] for images, read (and every key checked) before the data is loaded;
// build() then makes the batch function for images of shape [C, H, W].
struct ImageAugmentSpec {
  int64_t crop_padding = -1;  // < 0: no RandomCrop
  double flip_p = 0;
  double rotation = 0;
  double translate_x = 0, translate_y = 0;
  double brightness = 0, contrast = 0;
  int64_t cutout_size = 0;
  double cutout_p = 1.0;
};
ImageAugmentSpec read_image_augment(const io::ConfigTable& aug);
Augmentation build_image_augment(const ImageAugmentSpec& spec, const Shape& input_shape,
                                 const std::vector<double>& mean, const std::vector<double>& std);

// [data.augment] for text sets.
struct TextAugmentSpec {
  double replace_p = 0;
  std::string synonyms_path;  // empty: replacement from the vocabulary
  double delete_p = 0;
  int64_t swaps = 0;
  bool sentence_reordering = false;
};
TextAugmentSpec read_text_augment(const io::ConfigTable& aug);
// train_texts[i] is the raw text of row i of train_ids (i64 [N, length]); only kept when
// sentence_reordering is on.
Augmentation build_text_augment(const TextAugmentSpec& spec, std::shared_ptr<const Vocab> vocab,
                                int64_t length, Vocab::Padding padding,
                                const std::vector<std::string>& train_texts,
                                const Tensor& train_ids);

// A number from a config value (integers accepted), else an error naming it.
double config_number(const io::ConfigTable& t, const io::ConfigValue& v);

}  // namespace mox::data::pipeline_detail
