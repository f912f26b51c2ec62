#pragma once
// The TOML run configuration shared by `mox summary`, `mox train` and the other commands:
//
//   [model]
//   name = "mlp"                      # optional, shown by summary
//   input_shape = [1, 28, 28]         # one example, without the batch dim
//   [[model.layers]]
//   type = "Flatten"
//   [[model.layers]]
//   type = "Dense"                    # PyTorch class names or Keras aliases
//   units = 128
//   activation = "relu"
//
//   [data] / [train] / [optimizer] / [scheduler]   kept as ConfigTables for their readers
//
// The TOML library stays inside config.cpp: the parsed document is copied into
// ConfigTable / ConfigValue, which carry the file name and the dotted path of every
// value ("model.layers[2].kernel_size") so that every reader can report a bad value in
// one line: `examples/bad.toml: model.layers[2].kernel_size: expected an integer, got "x"`.
// Readers mark the keys they consume; check_no_unknown_keys() then rejects typos.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mox/tensor/error.h"

namespace mox::io {

class ConfigTable;
struct ConfigValue;
using ConfigArray = std::vector<ConfigValue>;

struct ConfigValue {
  std::variant<bool, int64_t, double, std::string, ConfigArray, std::shared_ptr<ConfigTable>> v;
  std::string path;  // "model.layers[2].kernel_size"
  int64_t line = 0;  // 1-based line in the file, 0 when unknown

  bool is_bool() const { return std::holds_alternative<bool>(v); }
  bool is_int() const { return std::holds_alternative<int64_t>(v); }
  bool is_float() const { return std::holds_alternative<double>(v); }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return std::holds_alternative<std::string>(v); }
  bool is_array() const { return std::holds_alternative<ConfigArray>(v); }
  bool is_table() const { return std::holds_alternative<std::shared_ptr<ConfigTable>>(v); }
  // How the value reads in an error message: `"x"`, `3.5`, `true`, `an array`, `a table`.
  std::string describe() const;
};

// One TOML table with typed, error-reporting accessors. Accessors throw mox::Error(file,
// "<path>.<key>: expected ..., got ...") on a value of the wrong type or range.
class ConfigTable {
 public:
  ConfigTable() = default;
  ConfigTable(std::string file, std::string path) : file_(std::move(file)), path_(std::move(path)) {}

  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }  // "model", "model.layers[2]", "train"
  int64_t line() const { return line_; }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  std::vector<std::string> keys() const { return order_; }  // in file order
  const ConfigValue* find(const std::string& key) const;   // marks key as used

  // Required values (missing -> error) ...
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // integers are accepted
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  // ... and optional ones (absent -> fallback).
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::optional<int64_t> get_opt_int(const std::string& key) const;
  std::optional<double> get_opt_float(const std::string& key) const;
  std::optional<std::string> get_opt_string(const std::string& key) const;
  // An array of integers (length n when n >= 0).
  std::vector<int64_t> get_int_list(const std::string& key, int64_t n = -1) const;
  // An integer or an array of `n` integers (kernel_size = 3 or [3, 5]); the single integer
  // is repeated n times.
  std::vector<int64_t> get_int_or_list(const std::string& key, int64_t n) const;
  const ConfigTable& get_table(const std::string& key) const;
  std::vector<std::shared_ptr<ConfigTable>> get_table_array(const std::string& key) const;

  // The first of several synonymous keys that is present ("units" / "out_features");
  // more than one present is an error. Empty when none is.
  std::string pick_key(const std::vector<std::string>& synonyms) const;

  // Throws on the first key that no accessor has read (a typo or an unsupported option),
  // listing the keys the readers asked for; owner names the reader ("Conv2d").
  void check_no_unknown_keys(const std::string& owner = "") const;
  // Error about this table's key (or the table itself when key is empty).
  Error error(const std::string& key, const std::string& message) const;
  Error value_error(const ConfigValue& v, const std::string& message) const;

  // The table as TOML text, as written in the file (comments dropped).
  const std::string& toml() const { return toml_; }

  // Building (used by the parser).
  void set(const std::string& key, ConfigValue value);
  void set_toml(std::string t) { toml_ = std::move(t); }
  void set_line(int64_t l) { line_ = l; }

 private:
  const ConfigValue& require(const std::string& key) const;
  std::string key_path(const std::string& key) const { return path_ + "." + key; }

  std::string file_, path_, toml_;
  int64_t line_ = 0;
  std::map<std::string, ConfigValue> values_;
  std::vector<std::string> order_;
  mutable std::set<std::string> used_;   // present keys that a reader consumed
  mutable std::set<std::string> asked_;  // every key a reader looked for
};

// [model]: the input of one example and the layers, in order.
struct ModelConfig {
  std::string file;                           // for error messages
  std::string name;                           // [model] name, or the file's stem
  std::vector<int64_t> input_shape;           // without the batch dim
  std::vector<std::shared_ptr<ConfigTable>> layers;  // [[model.layers]], path model.layers[i]
  std::shared_ptr<ConfigTable> table;         // the [model] table itself
};

struct Config {
  std::string path;
  ModelConfig model;
  // The tables other commands read; empty tables (path set) when absent from the file.
  ConfigTable data, train, optimizer, scheduler, callbacks;
  bool has_data = false, has_train = false, has_optimizer = false, has_scheduler = false,
       has_callbacks = false;
  std::string text;  // the TOML text the config was parsed from
};

// The top-level tables a config may hold; anything else is rejected as a likely typo.
const std::vector<std::string>& config_sections();

// Parses TOML text (file names the source in errors). Syntax errors become one line:
// "file:LINE:COL: <TOML parser message>".
Config parse_config(const std::string& text, const std::string& file);
// Reads and parses a file.
Config load_config(const std::string& path);
// The whole document as one table, for commands whose configs have other sections
// (`mox pretrain`: [model] type = "gpt", [corpus], ...). Syntax errors as parse_config's.
std::shared_ptr<ConfigTable> parse_config_table(const std::string& text, const std::string& file);

// Applies command-line overrides "dotted.key=value" (`train.epochs=3`,
// `model.layers[1].units=64`, `optimizer.betas=[0.9, 0.98]`) to TOML text and returns the
// new text. The value is read as a TOML value (number, boolean, array, inline table,
// quoted string); anything else is taken as a plain string (`data.dataset=csv`). Missing
// tables on the way are created; indexing past an array's end or into a non-table is an
// error naming the override.
std::string apply_overrides(const std::string& text, const std::string& file,
                            const std::vector<std::string>& overrides);

}  // namespace mox::io
