// [data.augment]: reading the keys (before any data is loaded) and building the batch
// functions of DataBundle::augment for images and for encoded text.
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_map>

#include "mox/data/pipeline/detail.h"
#include "mox/data/text/tokenizer.h"
#include "mox/data/transforms/image.h"
#include "mox/data/transforms/text.h"

namespace mox::data::pipeline_detail {

using io::ConfigTable;
using io::ConfigValue;

double config_number(const ConfigTable& t, const ConfigValue& v) {
  if (v.is_int()) return double(std::get<int64_t>(v.v));
  if (v.is_float()) return std::get<double>(v.v);
  throw t.value_error(v, "expected a number, got " + v.describe());
}

namespace {

// A probability (a number in [0, 1]).
double probability(const ConfigTable& t, const ConfigValue& v) {
  double p = config_number(t, v);
  if (!(p >= 0 && p <= 1)) throw t.value_error(v, "expected a probability in [0, 1], got " + v.describe());
  return p;
}

double in_range(const ConfigTable& t, const ConfigValue& v, double lo, double hi, const std::string& what) {
  double x = config_number(t, v);
  if (!(x >= lo && x <= hi)) throw t.value_error(v, "expected " + what + ", got " + v.describe());
  return x;
}

int64_t non_negative_int(const ConfigTable& t, const ConfigValue& v, const std::string& what) {
  if (!v.is_int() || std::get<int64_t>(v.v) < 0)
    throw t.value_error(v, "expected " + what + " (an integer >= 0), got " + v.describe());
  return std::get<int64_t>(v.v);
}

const ConfigTable& sub_table(const ConfigValue& v) { return *std::get<std::shared_ptr<ConfigTable>>(v.v); }

}  // namespace

ImageAugmentSpec read_image_augment(const ConfigTable& aug) {
  ImageAugmentSpec s;
  if (const ConfigValue* v = aug.find("random_crop")) {
    // random_crop = 4 or {padding = 4}: a crop of the image's own size from the padded image.
    if (v->is_table()) {
      const ConfigTable& t = sub_table(*v);
      s.crop_padding = 0;
      if (const ConfigValue* p = t.find("padding")) s.crop_padding = non_negative_int(t, *p, "a padding in pixels");
      t.check_no_unknown_keys("random_crop (the crop keeps the image size)");
    } else if (v->is_bool()) {
      if (std::get<bool>(v->v)) throw aug.value_error(*v, "expected {padding = N} or a padding in pixels, got true");
    } else {
      s.crop_padding = non_negative_int(aug, *v, "{padding = N} or a padding in pixels");
    }
  }
  if (const ConfigValue* v = aug.find("horizontal_flip"))
    s.flip_p = v->is_bool() ? (std::get<bool>(v->v) ? 0.5 : 0.0) : probability(aug, *v);
  if (const ConfigValue* v = aug.find("rotation"))
    s.rotation = in_range(aug, *v, 0, 180, "a maximum angle in degrees in [0, 180]");
  if (const ConfigValue* v = aug.find("translation")) {
    // translation = 0.1 or [0.1, 0.2]: the largest shift as a fraction of the width, height.
    if (v->is_array()) {
      const auto& a = std::get<io::ConfigArray>(v->v);
      if (a.size() != 2) throw aug.value_error(*v, "expected a fraction or [x, y] fractions, got " + std::to_string(a.size()) + " values");
      s.translate_x = in_range(aug, a[0], 0, 1, "a fraction in [0, 1]");
      s.translate_y = in_range(aug, a[1], 0, 1, "a fraction in [0, 1]");
    } else {
      s.translate_x = s.translate_y = in_range(aug, *v, 0, 1, "a fraction in [0, 1] or [x, y] fractions");
    }
  }
  if (const ConfigValue* v = aug.find("brightness")) s.brightness = in_range(aug, *v, 0, 1, "a number in [0, 1]");
  if (const ConfigValue* v = aug.find("contrast")) s.contrast = in_range(aug, *v, 0, 1, "a number in [0, 1]");
  if (const ConfigValue* v = aug.find("cutout")) {
    // cutout = 8 (always) or {size = 8, p = 0.5}.
    if (v->is_table()) {
      const ConfigTable& t = sub_table(*v);
      const ConfigValue* size = t.find("size");
      if (!size) throw t.error("size", "required field is missing");
      s.cutout_size = non_negative_int(t, *size, "a square size in pixels");
      if (s.cutout_size == 0) throw t.value_error(*size, "expected a square size >= 1, got 0");
      if (const ConfigValue* p = t.find("p")) s.cutout_p = probability(t, *p);
      t.check_no_unknown_keys("cutout");
    } else {
      s.cutout_size = non_negative_int(aug, *v, "{size = N, p = P} or a square size in pixels");
    }
  }
  aug.check_no_unknown_keys("image augmentation");
  return s;
}

Augmentation build_image_augment(const ImageAugmentSpec& s, const Shape& shape,
                                 const std::vector<double>& mean, const std::vector<double>& std) {
  MOX_CHECK(shape.size() == 3, "data.augment", "image augmentation needs images [C, H, W], got " + shape_str(shape));
  std::vector<TransformPtr> ts;
  if (s.crop_padding >= 0) ts.push_back(std::make_shared<RandomCrop>(shape[1], shape[2], s.crop_padding));
  if (s.flip_p > 0) ts.push_back(std::make_shared<RandomHorizontalFlip>(s.flip_p));
  if (s.rotation > 0) ts.push_back(std::make_shared<RandomRotation>(s.rotation));
  if (s.translate_x > 0 || s.translate_y > 0)
    ts.push_back(std::make_shared<RandomTranslation>(s.translate_x, s.translate_y));
  if (s.brightness > 0 || s.contrast > 0)
    ts.push_back(std::make_shared<RandomBrightnessContrast>(s.brightness, s.contrast));
  if (s.cutout_size > 0 && s.cutout_p > 0) ts.push_back(std::make_shared<Cutout>(s.cutout_size, s.cutout_p));
  Augmentation a;
  if (ts.empty()) return a;
  for (const auto& t : ts) a.description += (a.description.empty() ? "" : ", ") + t->describe();
  auto compose = std::make_shared<const Compose>(std::move(ts));
  if (mean.empty()) {
    a.fn = [compose](Batch& b, Generator& g) { b.input = compose->apply(b.input, g); };
  } else {
    // The transforms work on pixels in [0, 1]: undo the normalisation, augment, redo it.
    a.fn = [compose, mean, std](Batch& b, Generator& g) {
      b.input = normalize_dim1(compose->apply(denormalize_dim1(b.input, mean, std), g), mean, std);
    };
  }
  return a;
}

TextAugmentSpec read_text_augment(const ConfigTable& aug) {
  TextAugmentSpec s;
  if (const ConfigValue* v = aug.find("word_replacement")) {
    // word_replacement = 0.1 or {p = 0.1, synonyms = "file"}.
    if (v->is_table()) {
      const ConfigTable& t = sub_table(*v);
      const ConfigValue* p = t.find("p");
      if (!p) throw t.error("p", "required field is missing");
      s.replace_p = probability(t, *p);
      s.synonyms_path = t.get_string("synonyms", "");
      t.check_no_unknown_keys("word_replacement");
    } else {
      s.replace_p = probability(aug, *v);
    }
  }
  if (const ConfigValue* v = aug.find("word_deletion")) s.delete_p = probability(aug, *v);
  if (const ConfigValue* v = aug.find("word_swap")) s.swaps = non_negative_int(aug, *v, "a number of swaps");
  s.sentence_reordering = aug.get_bool("sentence_reordering", false);
  aug.check_no_unknown_keys("text augmentation");
  return s;
}

Augmentation build_text_augment(const TextAugmentSpec& s, std::shared_ptr<const Vocab> vocab,
                                int64_t length, Vocab::Padding padding,
                                const std::vector<std::string>& train_texts,
                                const Tensor& train_ids) {
  std::vector<TextTransformPtr> ts;
  if (s.replace_p > 0) {
    if (s.synonyms_path.empty())
      ts.push_back(std::make_shared<RandomWordReplacement>(s.replace_p, *vocab));
    else
      ts.push_back(std::make_shared<RandomWordReplacement>(s.replace_p, load_synonyms(s.synonyms_path)));
  }
  if (s.delete_p > 0) ts.push_back(std::make_shared<RandomDeletion>(s.delete_p));
  if (s.swaps > 0) ts.push_back(std::make_shared<RandomSwap>(s.swaps));
  Augmentation a;
  if (ts.empty() && !s.sentence_reordering) return a;
  if (s.sentence_reordering) a.description = SentenceReordering().describe();
  for (const auto& t : ts) a.description += (a.description.empty() ? "" : ", ") + t->describe();

  // Sentence reordering: the raw text of each distinct training row, found by the row's
  // ids (their bytes as the key); the first text wins when several encode alike.
  using RowIndex = std::unordered_map<std::string, std::string>;
  std::shared_ptr<const RowIndex> raw_of;
  if (s.sentence_reordering) {
    auto index = std::make_shared<RowIndex>();
    Tensor ids = train_ids.contiguous();
    MOX_CHECK(ids.dim() == 2 && ids.size(0) == int64_t(train_texts.size()) && ids.size(1) == length,
              "data.augment", "internal: training ids " + ids.desc() + " do not match " +
                                  std::to_string(train_texts.size()) + " texts");
    const char* base = static_cast<const char*>(ids.raw_data());
    const size_t row_bytes = size_t(length) * sizeof(int64_t);
    for (size_t i = 0; i < train_texts.size(); i++)
      index->emplace(std::string(base + i * row_bytes, row_bytes), train_texts[i]);
    raw_of = std::move(index);
  }
  auto compose = std::make_shared<const TextCompose>(std::move(ts));
  a.fn = [compose, vocab, length, padding, raw_of](Batch& b, Generator& g) {
    MOX_CHECK(b.input.dim() == 2 && b.input.size(1) == length && b.input.dtype() == DType::I64,
              "data.augment", "text augmentation expects ids i64 [B, " + std::to_string(length) +
                                  "], got " + b.input.desc());
    Tensor in = b.input.contiguous();
    const int64_t B = in.size(0);
    const int64_t* x = in.data<int64_t>();
    Tensor out = empty({B, length}, DType::I64);
    int64_t* y = out.data<int64_t>();
    SentenceReordering reorder;
    for (int64_t r = 0; r < B; r++) {
      const int64_t* row = x + r * length;
      std::vector<std::string> tokens;
      bool done = false;
      if (raw_of) {
        auto it = raw_of->find(std::string(reinterpret_cast<const char*>(row), size_t(length) * sizeof(int64_t)));
        if (it != raw_of->end()) {
          tokens = tokenize(reorder.apply(it->second, g));
          done = true;
        }
      }
      if (!done) tokens = vocab->decode(std::vector<int64_t>(row, row + length));
      std::vector<int64_t> ids = vocab->encode(compose->apply(tokens, g), length, padding);
      std::memcpy(y + r * length, ids.data(), size_t(length) * sizeof(int64_t));
    }
    b.input = out;
  };
  return a;
}

}  // namespace mox::data::pipeline_detail
