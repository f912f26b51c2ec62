#include "mox/train/history.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "mox/io/file_util.h"
#include "mox/tensor/error.h"

namespace mox::train {
namespace {

void check_key(const std::string& key) {
  MOX_CHECK(!key.empty(), "History", "metric key must not be empty");
  MOX_CHECK(key != "epoch", "History", "'epoch' is reserved for the epoch column");
  MOX_CHECK(key.find_first_of(",\"\r\n") == std::string::npos, "History",
            "metric key '" + key + "' must not contain ',', '\"' or line breaks");
}

// The shortest text that strtod reads back as exactly `v` ("0.1", not %.17g's
// "0.10000000000000001"), so a resumed History compares equal to the one written.
// Non-finite values as strtod reads them: "nan", "inf", "-inf".
std::string format_value(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

// Splits one CSV line on ','. Keys and numbers never contain commas or quotes, so no
// quoting is needed (add_epoch rejects keys that would).
std::vector<std::string> split_fields(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    size_t comma = line.find(',', start);
    fields.push_back(line.substr(start, comma == std::string::npos ? comma : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return fields;
}

}  // namespace

void History::add_epoch(const MetricValues& metrics) {
  std::set<std::string> seen;
  for (const auto& [key, v] : metrics) {
    check_key(key);
    MOX_CHECK(seen.insert(key).second, "History", "metric key '" + key + "' given twice");
  }
  std::vector<std::optional<double>> row(keys_.size());
  for (const auto& [key, v] : metrics) {
    auto it = index_.find(key);
    size_t col;
    if (it == index_.end()) {
      col = keys_.size();
      keys_.push_back(key);
      index_.emplace(key, col);
      row.resize(keys_.size());
    } else {
      col = it->second;
    }
    row[col] = v;
  }
  rows_.push_back(std::move(row));
}

void History::add_epoch(const std::map<std::string, double>& metrics) {
  add_epoch(MetricValues(metrics.begin(), metrics.end()));
}

bool History::has(const std::string& key) const { return index_.count(key) != 0; }

size_t History::column(const std::string& key) const {
  auto it = index_.find(key);
  MOX_CHECK(it != index_.end(), "History", "no metric '" + key + "' recorded");
  return it->second;
}

std::optional<double> History::value(int64_t epoch, const std::string& key) const {
  size_t col = column(key);
  MOX_CHECK(epoch >= 0 && epoch < epochs(), "History",
            "epoch " + std::to_string(epoch) + " out of range [0, " +
                std::to_string(epochs()) + ")");
  const auto& row = rows_[static_cast<size_t>(epoch)];
  return col < row.size() ? row[col] : std::nullopt;
}

std::vector<double> History::values(const std::string& key) const {
  size_t col = column(key);
  std::vector<double> out;
  out.reserve(rows_.size());
  for (const auto& row : rows_)
    out.push_back(col < row.size() && row[col] ? *row[col]
                                               : std::numeric_limits<double>::quiet_NaN());
  return out;
}

double History::last(const std::string& key) const {
  size_t col = column(key);
  for (auto it = rows_.rbegin(); it != rows_.rend(); ++it)
    if (col < it->size() && (*it)[col]) return *(*it)[col];
  throw Error("History", "no epoch has a value for '" + key + "'");
}

History::Best History::best(const std::string& key, Mode mode) const {
  size_t col = column(key);
  std::optional<Best> best;
  for (size_t e = 0; e < rows_.size(); e++) {
    const auto& row = rows_[e];
    if (col >= row.size() || !row[col] || std::isnan(*row[col])) continue;
    double v = *row[col];
    bool better = !best || (mode == Mode::Min ? v < best->value : v > best->value);
    if (better) best = Best{static_cast<int64_t>(e), v};
  }
  MOX_CHECK(best.has_value(), "History", "no epoch has a non-NaN value for '" + key + "'");
  return *best;
}

History::Mode History::default_mode(const std::string& key) {
  std::string k = key.rfind("val_", 0) == 0 ? key.substr(4) : key;
  for (const char* good : {"acc", "auc", "f1", "precision", "recall", "r2"})
    if (k.find(good) != std::string::npos) return Mode::Max;
  return Mode::Min;
}

void History::write_csv(const std::string& path) const {
  std::string out = "epoch";
  for (const auto& k : keys_) out += "," + k;
  out += "\n";
  for (size_t e = 0; e < rows_.size(); e++) {
    out += std::to_string(e);
    const auto& row = rows_[e];
    for (size_t c = 0; c < keys_.size(); c++) {
      out += ",";
      if (c < row.size() && row[c]) out += format_value(*row[c]);
    }
    out += "\n";
  }
  io::write_file_atomic(path, out);
}

History History::read_csv(const std::string& path) {
  const std::string text = io::read_file(path);
  History h;
  std::vector<std::string> header;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? nl : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    line_no++;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // files edited on Windows
    const std::string where = path + ":" + std::to_string(line_no);
    if (line.empty()) continue;
    std::vector<std::string> fields = split_fields(line);
    if (header.empty()) {
      MOX_CHECK(fields[0] == "epoch", where,
                "header must start with 'epoch', got '" + fields[0] + "'");
      std::set<std::string> seen;
      for (size_t i = 1; i < fields.size(); i++) {
        try {
          check_key(fields[i]);
        } catch (const Error& e) {
          throw Error(where, e.detail());
        }
        MOX_CHECK(seen.insert(fields[i]).second, where,
                  "column '" + fields[i] + "' appears twice");
      }
      header = std::move(fields);
      // Columns keep the file's order even where the first rows leave them empty.
      for (size_t i = 1; i < header.size(); i++) {
        h.index_.emplace(header[i], h.keys_.size());
        h.keys_.push_back(header[i]);
      }
      continue;
    }
    MOX_CHECK(fields.size() == header.size(), where,
              "expected " + std::to_string(header.size()) + " fields, got " +
                  std::to_string(fields.size()));
    const std::string expected_epoch = std::to_string(h.epochs());
    MOX_CHECK(fields[0] == expected_epoch, where,
              "expected epoch " + expected_epoch + ", got '" + fields[0] + "'");
    MetricValues record;
    for (size_t i = 1; i < fields.size(); i++) {
      const std::string& f = fields[i];
      if (f.empty()) continue;  // missing value
      errno = 0;
      char* end = nullptr;
      double v = std::strtod(f.c_str(), &end);
      bool overflow = errno == ERANGE && std::isinf(v);
      MOX_CHECK(end == f.c_str() + f.size() && !overflow, where,
                "column '" + header[i] + "': '" + f + "' is not a number");
      record.emplace_back(header[i], v);
    }
    h.add_epoch(record);
  }
  MOX_CHECK(!header.empty(), path, "empty history file (no 'epoch,...' header)");
  return h;
}

std::string History::to_json(int indent) const {
  nlohmann::ordered_json j;
  auto& ep = j["epoch"] = nlohmann::ordered_json::array();
  for (int64_t e = 0; e < epochs(); e++) ep.push_back(e);
  for (size_t c = 0; c < keys_.size(); c++) {
    auto& col = j[keys_[c]] = nlohmann::ordered_json::array();
    for (const auto& row : rows_) {
      if (c < row.size() && row[c] && std::isfinite(*row[c]))
        col.push_back(*row[c]);
      else
        col.push_back(nullptr);
    }
  }
  return j.dump(indent);
}

}  // namespace mox::train
