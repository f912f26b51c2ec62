#include "mox/data/datasets/text.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <string_view>

#include "mox/data/text/tokenizer.h"
#include "mox/io/file_util.h"
#include "mox/tensor/error.h"

namespace mox::data {

namespace fs = std::filesystem;

namespace {

// Splits text into lines (LF or CRLF); a final line without '\n' is kept.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    size_t end = line.find('\t', start);
    if (end == std::string_view::npos) {
      fields.push_back(line.substr(start));
      return fields;
    }
    fields.push_back(line.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace

TextCorpus load_text_folder(const std::string& root) {
  std::error_code ec;
  MOX_CHECK(fs::is_directory(root, ec), root, "not a directory (expected root/<class>/*.txt)");
  TextCorpus corpus;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory()) corpus.class_names.push_back(entry.path().filename().string());
  std::sort(corpus.class_names.begin(), corpus.class_names.end());
  MOX_CHECK(!corpus.class_names.empty(), root, "no class folders (expected root/<class>/*.txt)");
  for (size_t k = 0; k < corpus.class_names.size(); ++k) {
    const fs::path dir = fs::path(root) / corpus.class_names[k];
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file() && entry.path().extension() == ".txt")
        files.push_back(entry.path().string());
    std::sort(files.begin(), files.end());
    MOX_CHECK(!files.empty(), dir.string(), "class folder holds no .txt files");
    for (const auto& f : files) {
      corpus.texts.push_back(io::read_file(f));
      corpus.labels.push_back(int64_t(k));
    }
  }
  return corpus;
}

TextCorpus load_text_tsv(const std::string& path, const std::string& text_column,
                         const std::string& label_column) {
  std::string text = io::read_file(path);
  std::string_view body = text;
  if (body.substr(0, 3) == "\xEF\xBB\xBF") body.remove_prefix(3);  // UTF-8 BOM
  const auto lines = split_lines(body);
  MOX_CHECK(!lines.empty(), path, "empty file (expected a header row)");
  const auto header = split_tabs(lines[0]);
  auto column = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    MOX_CHECK(it != header.end(), path + ":1",
              "no column named '" + name + "' in the header");
    return size_t(it - header.begin());
  };
  const size_t tc = column(text_column), lc = column(label_column);
  std::vector<std::string> raw_labels;
  TextCorpus corpus;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const auto fields = split_tabs(lines[i]);
    MOX_CHECK(fields.size() == header.size(), path + ":" + std::to_string(i + 1),
              "expected " + std::to_string(header.size()) + " fields, found " +
                  std::to_string(fields.size()));
    corpus.texts.emplace_back(fields[tc]);
    raw_labels.emplace_back(fields[lc]);
  }
  MOX_CHECK(!corpus.texts.empty(), path, "no examples after the header row");
  std::map<std::string, int64_t> index;
  for (const auto& l : raw_labels) index.emplace(l, 0);
  for (auto& [name, k] : index) {
    k = int64_t(corpus.class_names.size());
    corpus.class_names.push_back(name);
  }
  for (const auto& l : raw_labels) corpus.labels.push_back(index.at(l));
  return corpus;
}

TextCorpus load_fortunes(const std::string& dir, const std::vector<std::string>& categories) {
  MOX_CHECK(!categories.empty(), dir, "no fortune categories given");
  TextCorpus corpus;
  corpus.class_names = categories;
  std::sort(corpus.class_names.begin(), corpus.class_names.end());
  MOX_CHECK(std::adjacent_find(corpus.class_names.begin(), corpus.class_names.end()) ==
                corpus.class_names.end(),
            dir, "a fortune category is listed twice");
  for (size_t k = 0; k < corpus.class_names.size(); ++k) {
    const std::string path = (fs::path(dir) / corpus.class_names[k]).string();
    const std::string text = io::read_file(path);
    std::string entry;
    size_t count = 0;
    auto flush = [&]() {
      // An entry of only whitespace (e.g. between two "%" lines) is no example.
      if (entry.find_first_not_of(" \t\r\n") != std::string::npos) {
        while (!entry.empty() && (entry.back() == '\n' || entry.back() == '\r')) entry.pop_back();
        corpus.texts.push_back(std::move(entry));
        corpus.labels.push_back(int64_t(k));
        count++;
      }
      entry.clear();
    };
    for (std::string_view line : split_lines(text)) {
      if (line == "%") {
        flush();
      } else {
        entry += line;
        entry += '\n';
      }
    }
    flush();
    MOX_CHECK(count > 0, path, "no fortunes (entries separated by lines holding only '%')");
  }
  return corpus;
}

std::shared_ptr<TensorDataset> make_text_dataset(const std::vector<std::string>& texts,
                                                 const std::vector<int64_t>& labels,
                                                 const Vocab& vocab, int64_t length,
                                                 Vocab::Padding padding) {
  MOX_CHECK(texts.size() == labels.size(), "make_text_dataset",
            std::to_string(texts.size()) + " texts but " + std::to_string(labels.size()) +
                " labels");
  MOX_CHECK(length > 0, "make_text_dataset", "length must be > 0, got " + std::to_string(length));
  const int64_t n = int64_t(texts.size());
  std::vector<int64_t> ids;
  ids.reserve(size_t(n * length));
  for (const auto& t : texts) {
    const auto row = vocab.encode(tokenize(t), length, padding);
    ids.insert(ids.end(), row.begin(), row.end());
  }
  return std::make_shared<TensorDataset>(from_vector(ids, Shape{n, length}),
                                         from_vector(labels, Shape{n}));
}

}  // namespace mox::data
