#pragma once
// Tables of numbers in CSV / TSV files (optionally gzip-compressed): one example per row,
// every column but the label is a numeric feature. Follows RFC 4180: quoted fields may hold
// delimiters, newlines and doubled quotes (""); CRLF or LF line ends; blank lines skipped.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mox/data/dataset.h"

namespace mox::data {

struct CsvOptions {
  enum class Task { Classification, Regression };
  char delimiter = 0;         // 0: '\t' for *.tsv[.gz], ',' otherwise
  bool header = true;         // the first row names the columns
  std::string label_column;   // the label's name in the header; empty: use label_index
  int64_t label_index = -1;   // the label's column index; negative counts from the end
  // The feature columns by header name, in this order; empty: every column but the label.
  // Columns that are neither features nor the label are skipped (they may hold text).
  std::vector<std::string> features;
  // Classification: labels (class names or integers) are mapped to 0..K-1 in sorted order
  // (numeric order when all are integers), targets i64 [N]. Regression: targets f32 [N, 1].
  Task task = Task::Classification;
};

struct CsvTable {
  std::shared_ptr<TensorDataset> dataset;  // inputs f32 [N, F]
  std::vector<std::string> columns;        // every column, in file order ("col0"... without header)
  std::vector<std::string> feature_names;  // the F feature columns, in input order
  std::string label_name;
  std::vector<std::string> class_names;    // classification: class_names[k] is the label mapped to k
};

CsvTable load_csv(const std::string& path, const CsvOptions& options = {});

}  // namespace mox::data
