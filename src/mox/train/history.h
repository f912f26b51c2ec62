#pragma once
// History: what Trainer::fit returns (as Keras's History), one record of named scalar
// metrics per epoch under Keras's keys ("loss", "accuracy", "val_loss", "lr", ...).
// Keys keep the order in which they first appeared, which is the column order of the CSV.
// An epoch may lack a key (validation every other epoch, a metric added on resume): that
// cell is "missing", distinct from a NaN value (a diverged loss is a result worth keeping).
//
// The CSV file ("epoch,<keys...>", epoch counted from 0 as Keras's CSVLogger does) is
// rewritten whole and atomically after every epoch, so a crash leaves the previous
// complete file, and read_csv() restores it when training resumes. Values are written
// in the shortest form that reads back as the same double (0.25, 0.1, 3.0000001e-04), so
// a resumed history holds exactly the values that were recorded.
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mox::train {

// Metric values of one epoch (or of the steps so far), in display order.
using MetricValues = std::vector<std::pair<std::string, double>>;

class History {
 public:
  enum class Mode { Min, Max };
  struct Best {
    int64_t epoch = 0;  // from 0
    double value = 0;
  };

  // Appends one epoch. Keys must be non-empty, unique within the record, not "epoch", and
  // free of ',', '"', and line breaks (they become CSV column names); throws otherwise.
  void add_epoch(const MetricValues& metrics);
  void add_epoch(const std::map<std::string, double>& metrics);
  // Makes add_epoch({{"loss", 0.5}, {"accuracy", 0.9}}) unambiguous (keeps that order).
  void add_epoch(std::initializer_list<std::pair<std::string, double>> metrics) {
    add_epoch(MetricValues(metrics));
  }

  int64_t epochs() const { return static_cast<int64_t>(rows_.size()); }
  const std::vector<std::string>& keys() const { return keys_; }
  bool has(const std::string& key) const;

  // One value per epoch; NaN where the epoch lacks the key. Throws for an unknown key.
  std::vector<double> values(const std::string& key) const;
  // The value of `key` at `epoch`, or nullopt when missing. Throws for a bad epoch/key.
  std::optional<double> value(int64_t epoch, const std::string& key) const;
  // The value of the latest epoch that has `key`; throws when no epoch has it.
  double last(const std::string& key) const;
  // The epoch with the lowest (Min) or highest (Max) value, the first one on ties; missing
  // and NaN values are skipped. Throws when no epoch has a non-NaN value for `key`.
  Best best(const std::string& key, Mode mode) const;
  // Keras's mode "auto": Max for keys that measure goodness (accuracy, auc, f1, precision,
  // recall, r2, with or without "val_"), Min otherwise (losses, errors).
  static Mode default_mode(const std::string& key);

  // "epoch,<keys...>" then one row per epoch; missing values are empty cells.
  void write_csv(const std::string& path) const;
  // Reads a file written by write_csv; errors name "path:line".
  static History read_csv(const std::string& path);

  // {"epoch": [0, 1, ...], "<key>": [v0, v1, ...], ...} in key order (Keras's
  // history.history plus the epoch list); missing and non-finite values are null.
  std::string to_json(int indent = 2) const;

 private:
  size_t column(const std::string& key) const;  // throws for an unknown key
  std::vector<std::string> keys_;
  std::map<std::string, size_t> index_;                  // key -> column in keys_
  std::vector<std::vector<std::optional<double>>> rows_;  // [epoch][column]; may be short
};

}  // namespace mox::train
