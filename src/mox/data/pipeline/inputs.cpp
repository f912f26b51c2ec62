// read_inputs / preprocess_inputs: the files given to `mox predict` and `mox eval`.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <iostream>
#include <iterator>
#include <map>
#include <string_view>

#include "mox/autograd/node.h"
#include "mox/data/datasets/idx.h"
#include "mox/data/datasets/image_file.h"
#include "mox/data/pipeline.h"
#include "mox/data/datasets/csv_records.h"
#include "mox/io/file_util.h"
#include "mox/ops/ops.h"

namespace mox::data {

namespace {

using Kind = Preprocessor::Kind;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

enum class FileKind { Idx, Image, Table, Text };

FileKind file_kind(const std::string& path) {
  if (path == "-") return FileKind::Text;
  std::string name = path;
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  std::string base = ends_with(name, ".gz") ? name.substr(0, name.size() - 3) : name;
  if (ends_with(base, ".idx") || ends_with(base, "-ubyte") || ends_with(base, ".ubyte")) return FileKind::Idx;
  if (ends_with(name, ".pgm") || ends_with(name, ".ppm") || ends_with(name, ".pnm") || ends_with(name, ".png"))
    return FileKind::Image;
  if (ends_with(base, ".csv") || ends_with(base, ".tsv")) return FileKind::Table;
  return FileKind::Text;
}

const char* file_kind_name(FileKind k) {
  switch (k) {
    case FileKind::Idx: return "an IDX image file";
    case FileKind::Image: return "an image file";
    case FileKind::Table: return "a table";
    case FileKind::Text: return "a text file";
  }
  return "?";
}

Kind model_kind(FileKind k) {
  return k == FileKind::Table ? Kind::Table : k == FileKind::Text ? Kind::Text : Kind::Image;
}

// ---------------------------------------------------------------- images

void check_image_shape(const std::string& path, const Shape& one, const Preprocessor& pre) {
  MOX_CHECK(one == pre.input_shape, path,
            "image shape " + shape_str(one) + " does not match the model's input shape " + shape_str(pre.input_shape));
}

// An IDX file as raw images f32 [N, C, H, W] in [0, 1].
Tensor idx_images(const std::string& path, const Preprocessor& pre) {
  Tensor t = read_idx(path);
  if (t.dim() == 2) t = t.reshape({1, 1, t.size(0), t.size(1)});
  else if (t.dim() == 3) t = t.reshape({t.size(0), 1, t.size(1), t.size(2)});
  MOX_CHECK(t.dim() == 4, path, "expected images [N, H, W], [H, W] or [N, C, H, W], got " + t.desc());
  MOX_CHECK(t.size(0) > 0, path, "holds no images");
  Tensor x;
  if (t.dtype() == DType::U8) {
    x = t.to(DType::F32);
    NoGradGuard ng;
    x = x * (1.0 / 255.0);
  } else if (t.dtype() == DType::F32 || t.dtype() == DType::F64) {
    x = t.to(DType::F32);
  } else {
    throw Error(path, "expected u8 (or f32/f64) images, got " + t.desc());
  }
  check_image_shape(path, Shape(x.shape().begin() + 1, x.shape().end()), pre);
  return x.contiguous();
}

// ---------------------------------------------------------------- tables

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

struct TablePart {
  std::vector<float> values;   // rows x F
  std::vector<int64_t> labels; // classification targets (when the label column is present)
  std::vector<float> values_y; // regression targets
  bool has_targets = false;
  int64_t rows = 0;
  std::vector<std::string> names;
};

TablePart read_table(const std::string& path, const Preprocessor& pre) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  std::string base = path;
  std::transform(base.begin(), base.end(), base.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (ends_with(base, ".gz")) base.resize(base.size() - 3);
  const char delim = ends_with(base, ".tsv") ? '\t' : ',';
  std::vector<CsvRecord> records =
      parse_csv_records(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), delim, path);
  MOX_CHECK(!records.empty(), path, "empty table");
  const size_t F = pre.feature_names.size();
  MOX_CHECK(F > 0 && int64_t(F) == pre.input_shape.at(0), path, "the preprocessor names no feature columns");

  // Header: the first row holds every feature name.
  const CsvRecord& first = records[0];
  std::vector<std::string> head;
  for (const auto& f : first.fields) head.emplace_back(csv_trim(f));
  std::vector<size_t> cols(F);
  bool header = true;
  for (size_t f = 0; f < F && header; f++) {
    auto it = std::find(head.begin(), head.end(), pre.feature_names[f]);
    header = it != head.end();
    if (header) cols[f] = size_t(it - head.begin());
  }
  int64_t label_col = -1;
  size_t body = 0;
  if (header) {
    body = 1;
    auto it = pre.label_name.empty() ? head.end() : std::find(head.begin(), head.end(), pre.label_name);
    if (it != head.end()) label_col = int64_t(it - head.begin());
  } else {
    bool numeric = true;
    float v;
    for (const auto& f : first.fields) numeric = numeric && parse_csv_float(f, &v);
    if (!numeric) {
      std::string missing;
      for (const auto& name : pre.feature_names)
        if (std::find(head.begin(), head.end(), name) == head.end()) missing += (missing.empty() ? "" : ", ") + name;
      throw Error(path + ":" + std::to_string(first.line),
                  "the header lacks the feature column(s) " + missing + " (the model reads: " + joined(pre.feature_names) + ")");
    }
    MOX_CHECK(first.fields.size() == F, path + ":" + std::to_string(first.line),
              "a row without a header must hold the " + std::to_string(F) + " features (" + joined(pre.feature_names) +
                  "), found " + std::to_string(first.fields.size()) + " values");
    for (size_t f = 0; f < F; f++) cols[f] = f;
  }
  MOX_CHECK(records.size() > body, path, "no data rows after the header");

  TablePart part;
  part.has_targets = label_col >= 0;
  std::map<std::string, int64_t> class_index;
  bool numeric_classes = !pre.class_names.empty();
  for (size_t k = 0; k < pre.class_names.size(); k++) {
    int64_t v;
    numeric_classes = numeric_classes && parse_csv_int(pre.class_names[k], &v);
    class_index[pre.class_names[k]] = int64_t(k);
  }
  const size_t ncols = first.fields.size();
  for (size_t r = body; r < records.size(); r++) {
    const CsvRecord& rec = records[r];
    const std::string at = path + ":" + std::to_string(rec.line);
    MOX_CHECK(rec.fields.size() == ncols, at,
              "expected " + std::to_string(ncols) + " fields (as on line " + std::to_string(first.line) + "), found " +
                  std::to_string(rec.fields.size()));
    for (size_t f = 0; f < F; f++) {
      float v;
      MOX_CHECK(parse_csv_float(rec.fields[cols[f]], &v), at,
                "column '" + pre.feature_names[f] + "': non-numeric feature value '" + rec.fields[cols[f]] + "'");
      part.values.push_back(v);
    }
    if (part.has_targets) {
      std::string label(csv_trim(rec.fields[size_t(label_col)]));
      if (pre.task == Task::Regression) {
        float y;
        MOX_CHECK(parse_csv_float(label, &y), at, "column '" + pre.label_name + "': non-numeric target '" + label + "'");
        part.values_y.push_back(y);
      } else {
        int64_t v;
        if (numeric_classes && parse_csv_int(label, &v)) label = std::to_string(v);
        auto it = class_index.find(label);
        MOX_CHECK(it != class_index.end(), at,
                  "column '" + pre.label_name + "': class '" + label + "' is not one of the model's classes (" +
                      joined(pre.class_names) + ")");
        part.labels.push_back(it->second);
      }
    }
    part.names.push_back(at);
    part.rows++;
  }
  return part;
}

// ---------------------------------------------------------------- text

void read_text_lines(const std::string& path, std::vector<std::string>& texts, std::vector<std::string>& names) {
  std::string text;
  std::string label = path;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    label = "stdin";
  } else {
    text = io::read_file(path);
  }
  const size_t before = texts.size();
  size_t start = 0;
  int64_t line = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view l(text.data() + start, end - start);
    line++;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (!csv_trim(l).empty()) {
      texts.emplace_back(l);
      names.push_back(label + ":" + std::to_string(line));
    }
    start = end + 1;
  }
  MOX_CHECK(texts.size() > before, label, "no text (one example per non-empty line)");
}

}  // namespace

RawInputs read_inputs(const std::vector<std::string>& paths, const Preprocessor& pre) {
  MOX_CHECK(!paths.empty(), "read_inputs", "no input files");
  const FileKind kind0 = file_kind(paths[0]);
  for (const auto& p : paths) {
    const FileKind k = file_kind(p);
    // IDX files and single images are both image inputs and may be mixed.
    MOX_CHECK(model_kind(k) == model_kind(kind0), "read_inputs",
              "mixed input kinds: " + paths[0] + " is " + file_kind_name(kind0) + ", " + p + " is " +
                  file_kind_name(k) + "; give files of one kind");
  }
  for (const auto& p : paths) {
    const FileKind k = file_kind(p);
    MOX_CHECK(model_kind(k) == pre.kind, p,
              std::string(file_kind_name(k)) + ", but the model takes " + kind_name(pre.kind) + " inputs" +
                  (pre.kind == Kind::Text ? " (one example per line: a .txt file or - for stdin)"
                   : pre.kind == Kind::Table ? " (a .csv or .tsv file)"
                                             : " (.png, .pgm, .ppm or IDX files)"));
  }
  RawInputs out;
  switch (pre.kind) {
    case Kind::Image: {
      std::vector<Tensor> parts;
      for (const auto& p : paths) {
        if (file_kind(p) == FileKind::Idx) {
          Tensor x = idx_images(p, pre);
          for (int64_t i = 0; i < x.size(0); i++) out.names.push_back(p + "[" + std::to_string(i) + "]");
          parts.push_back(x);
        } else {
          Tensor x = read_image(p);
          check_image_shape(p, x.shape(), pre);
          out.names.push_back(p);
          parts.push_back(x.unsqueeze(0));
        }
      }
      NoGradGuard ng;
      out.images = parts.size() == 1 ? parts[0].contiguous() : cat(parts, 0);
      break;
    }
    case Kind::Table: {
      std::vector<TablePart> parts;
      bool all_targets = true;
      int64_t rows = 0;
      for (const auto& p : paths) {
        parts.push_back(read_table(p, pre));
        all_targets = all_targets && parts.back().has_targets;
        rows += parts.back().rows;
      }
      const int64_t F = int64_t(pre.feature_names.size());
      out.table = empty({rows, F}, DType::F32);
      float* x = out.table.data<float>();
      for (const auto& part : parts) {
        std::copy(part.values.begin(), part.values.end(), x);
        x += part.values.size();
        out.names.insert(out.names.end(), part.names.begin(), part.names.end());
      }
      if (all_targets) {
        if (pre.task == Task::Regression) {
          out.targets = empty({rows, 1}, DType::F32);
          float* y = out.targets.data<float>();
          for (const auto& part : parts) y = std::copy(part.values_y.begin(), part.values_y.end(), y);
        } else {
          out.targets = empty({rows}, DType::I64);
          int64_t* y = out.targets.data<int64_t>();
          for (const auto& part : parts) y = std::copy(part.labels.begin(), part.labels.end(), y);
        }
      }
      break;
    }
    case Kind::Text:
      for (const auto& p : paths) read_text_lines(p, out.texts, out.names);
      break;
  }
  return out;
}

Tensor preprocess_inputs(const RawInputs& raw, const Preprocessor& pre) {
  switch (pre.kind) {
    case Kind::Image:
      MOX_CHECK(raw.images.defined(), "preprocess_inputs", "the model takes images, but the inputs hold none");
      return pre.images(raw.images);
    case Kind::Table:
      MOX_CHECK(raw.table.defined(), "preprocess_inputs", "the model takes table rows, but the inputs hold none");
      return pre.table(raw.table);
    case Kind::Text:
      MOX_CHECK(!raw.texts.empty(), "preprocess_inputs", "the model takes texts, but the inputs hold none");
      return pre.texts(raw.texts);
  }
  return Tensor();
}

}  // namespace mox::data
