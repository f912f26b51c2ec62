#include "mox/data/datasets/csv.h"
#include "mox/data/datasets/csv_records.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <string_view>

#include "mox/data/datasets/idx.h"
#include "mox/tensor/error.h"

namespace mox::data {

// Splits the text into records of fields (RFC 4180). Blank lines yield no record.
std::vector<CsvRecord> parse_csv_records(std::string_view text, char delim, const std::string& path) {
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // UTF-8 BOM
  std::vector<CsvRecord> records;
  CsvRecord rec{1, {}};
  std::string field;
  int64_t line = 1;
  size_t i = 0;
  const size_t n = text.size();
  auto end_record = [&]() {
    rec.fields.push_back(std::move(field));
    field.clear();
    bool blank = rec.fields.size() == 1 && csv_trim(rec.fields[0]).empty();
    if (!blank) records.push_back(std::move(rec));
    rec = CsvRecord{line, {}};
  };
  while (i < n) {
    char c = text[i];
    if (c == '"' && field.empty()) {
      // Quoted field: runs to the closing quote; "" is a literal quote.
      const int64_t start_line = line;
      i++;
      while (true) {
        if (i >= n) throw Error(path + ":" + std::to_string(start_line), "unterminated quoted field");
        char q = text[i];
        if (q == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (q == '\n') line++;
        field += q;
        i++;
      }
      if (i < n && text[i] != delim && text[i] != '\n' && text[i] != '\r')
        throw Error(path + ":" + std::to_string(line), "field " + std::to_string(rec.fields.size() + 1) +
                                           ": unexpected character after the closing quote");
      continue;
    }
    if (c == delim) {
      rec.fields.push_back(std::move(field));
      field.clear();
      i++;
    } else if (c == '\n' || c == '\r') {
      // CRLF, LF or a lone CR end the line.
      i += (c == '\r' && i + 1 < n && text[i + 1] == '\n') ? 2 : 1;
      line++;
      end_record();
    } else {
      field += c;
      i++;
    }
  }
  if (!field.empty() || !rec.fields.empty()) end_record();
  return records;
}

std::string_view csv_trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool parse_csv_float(std::string_view s, float* out) {
  s = csv_trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_csv_int(std::string_view s, int64_t* out) {
  s = csv_trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}


namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string where(const std::string& path, int64_t line) { return path + ":" + std::to_string(line); }

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// The label's column index from the options, checked against the columns.
size_t label_column(const CsvOptions& opt, const std::vector<std::string>& columns, const std::string& path) {
  if (!opt.label_column.empty()) {
    if (!opt.header) throw Error(path, "label column " + quoted(opt.label_column) + " given by name, but the file has no header");
    auto it = std::find(columns.begin(), columns.end(), opt.label_column);
    if (it == columns.end()) {
      std::string names;
      for (const auto& c : columns) names += (names.empty() ? "" : ", ") + c;
      throw Error(path, "no column named " + quoted(opt.label_column) + " (columns: " + names + ")");
    }
    return size_t(it - columns.begin());
  }
  const int64_t k = int64_t(columns.size());
  const int64_t idx = opt.label_index < 0 ? opt.label_index + k : opt.label_index;
  if (idx < 0 || idx >= k)
    throw Error(path, "label column index " + std::to_string(opt.label_index) + " is out of range for " +
                          std::to_string(k) + " columns");
  return size_t(idx);
}

}  // namespace

CsvTable load_csv(const std::string& path, const CsvOptions& opt) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  std::string base = ends_with(path, ".gz") ? path.substr(0, path.size() - 3) : path;
  const char delim = opt.delimiter ? opt.delimiter : (ends_with(base, ".tsv") ? '\t' : ',');
  std::vector<CsvRecord> records =
      parse_csv_records(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), delim, path);
  if (records.empty()) throw Error(path, "empty table");

  CsvTable table;
  const size_t ncols = records[0].fields.size();
  const int64_t first_line = records[0].line;
  if (opt.header) {
    for (const std::string& c : records[0].fields) table.columns.emplace_back(csv_trim(c));
  } else {
    for (size_t c = 0; c < ncols; c++) table.columns.push_back("col" + std::to_string(c));
  }
  const size_t body = opt.header ? 1 : 0;
  if (records.size() <= body) throw Error(path, "no data rows after the header");
  if (ncols < 2) throw Error(path, "needs at least one feature column and a label column, found " + std::to_string(ncols) + " column");
  const size_t label = label_column(opt, table.columns, path);
  table.label_name = table.columns[label];
  // The feature columns, in input order.
  std::vector<size_t> feature_cols;
  if (opt.features.empty()) {
    for (size_t c = 0; c < ncols; c++)
      if (c != label) feature_cols.push_back(c);
  } else {
    if (!opt.header) throw Error(path, "feature columns given by name, but the file has no header");
    for (const std::string& f : opt.features) {
      auto it = std::find(table.columns.begin(), table.columns.end(), f);
      if (it == table.columns.end()) {
        std::string names;
        for (const auto& c : table.columns) names += (names.empty() ? "" : ", ") + c;
        throw Error(path, "no feature column named " + quoted(f) + " (columns: " + names + ")");
      }
      size_t c = size_t(it - table.columns.begin());
      if (c == label) throw Error(path, "column " + quoted(f) + " is the label, it cannot also be a feature");
      if (std::find(feature_cols.begin(), feature_cols.end(), c) != feature_cols.end())
        throw Error(path, "feature column " + quoted(f) + " listed twice");
      feature_cols.push_back(c);
    }
  }
  for (size_t c : feature_cols) table.feature_names.push_back(table.columns[c]);

  // rows (N, ncols) text -> features (N, F) f32, labels as text until the classes are known
  const int64_t N = int64_t(records.size() - body), F = int64_t(feature_cols.size());
  Tensor inputs = empty({N, F}, DType::F32);
  float* x = inputs.data<float>();
  std::vector<std::string> labels(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; r++) {
    CsvRecord& rec = records[body + size_t(r)];
    if (rec.fields.size() != ncols)
      throw Error(where(path, rec.line), "expected " + std::to_string(ncols) + " fields (as on line " +
                                             std::to_string(first_line) + "), found " + std::to_string(rec.fields.size()));
    float* row = x + r * F;
    for (size_t f = 0; f < feature_cols.size(); f++) {
      const size_t c = feature_cols[f];
      if (!parse_csv_float(rec.fields[c], &row[f]))
        throw Error(where(path, rec.line), "column " + quoted(table.columns[c]) + ": " +
                                               (csv_trim(rec.fields[c]).empty() ? std::string("empty feature value")
                                                                            : "non-numeric feature value " + quoted(rec.fields[c])));
    }
    labels[size_t(r)] = std::string(csv_trim(rec.fields[label]));
  }

  Tensor targets;
  if (opt.task == CsvOptions::Task::Regression) {
    targets = empty({N, 1}, DType::F32);
    float* y = targets.data<float>();
    for (int64_t r = 0; r < N; r++)
      if (!parse_csv_float(labels[size_t(r)], &y[r]))
        throw Error(where(path, records[body + size_t(r)].line),
                    "column " + quoted(table.label_name) + ": non-numeric regression target " + quoted(labels[size_t(r)]));
  } else {
    // Classes in sorted order: numerically when every label is an integer (so "10" follows
    // "9"), else by name.
    std::vector<std::string> classes = labels;
    std::sort(classes.begin(), classes.end());
    classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
    bool numeric = true;
    for (const std::string& c : classes) {
      int64_t v;
      numeric = numeric && parse_csv_int(c, &v);
    }
    if (numeric) {
      // Canonical spelling, so that "7", "07" and "+7" are one class.
      for (std::string& l : labels) {
        int64_t v = 0;
        parse_csv_int(l, &v);
        l = std::to_string(v);
      }
      classes = labels;
      std::sort(classes.begin(), classes.end());
      classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
      std::sort(classes.begin(), classes.end(), [](const std::string& a, const std::string& b) {
        int64_t va = 0, vb = 0;
        parse_csv_int(a, &va);
        parse_csv_int(b, &vb);
        return va < vb;
      });
    }
    for (int64_t r = 0; r < N; r++)
      if (labels[size_t(r)].empty())
        throw Error(where(path, records[body + size_t(r)].line), "column " + quoted(table.label_name) + ": empty label");
    std::map<std::string, int64_t> index;
    for (size_t k = 0; k < classes.size(); k++) index[classes[k]] = int64_t(k);
    targets = empty({N}, DType::I64);
    int64_t* y = targets.data<int64_t>();
    for (int64_t r = 0; r < N; r++) y[r] = index.at(labels[size_t(r)]);
    table.class_names = std::move(classes);
  }
  table.dataset = std::make_shared<TensorDataset>(inputs, targets);
  return table;
}

}  // namespace mox::data
