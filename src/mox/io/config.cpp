#include "mox/io/config.h"

#include <toml++/toml.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "mox/io/file_util.h"

namespace mox::io {

// ---------------------------------------------------------------- ConfigValue

std::string ConfigValue::describe() const {
  if (is_bool()) return std::get<bool>(v) ? "true" : "false";
  if (is_int()) return std::to_string(std::get<int64_t>(v));
  if (is_float()) {
    std::ostringstream s;
    s << std::get<double>(v);
    return s.str();
  }
  if (is_string()) return "\"" + std::get<std::string>(v) + "\"";
  if (is_array()) return "an array";
  return "a table";
}

// ---------------------------------------------------------------- ConfigTable

void ConfigTable::set(const std::string& key, ConfigValue value) {
  if (!values_.count(key)) order_.push_back(key);
  values_[key] = std::move(value);
}

const ConfigValue* ConfigTable::find(const std::string& key) const {
  asked_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return nullptr;
  used_.insert(key);
  return &it->second;
}

Error ConfigTable::error(const std::string& key, const std::string& message) const {
  return Error(file_, (key.empty() ? path_ : key_path(key)) + ": " + message);
}

Error ConfigTable::value_error(const ConfigValue& v, const std::string& message) const {
  std::string at = v.line > 0 ? " (line " + std::to_string(v.line) + ")" : "";
  return Error(file_, v.path + ": " + message + at);
}

const ConfigValue& ConfigTable::require(const std::string& key) const {
  const ConfigValue* v = find(key);
  if (!v) throw error(key, "required field is missing");
  return *v;
}

namespace {

int64_t as_int(const ConfigTable& t, const ConfigValue& v) {
  if (v.is_int()) return std::get<int64_t>(v.v);
  throw t.value_error(v, "expected an integer, got " + v.describe());
}
double as_float(const ConfigTable& t, const ConfigValue& v) {
  if (v.is_int()) return double(std::get<int64_t>(v.v));
  if (v.is_float()) return std::get<double>(v.v);
  throw t.value_error(v, "expected a number, got " + v.describe());
}
bool as_bool(const ConfigTable& t, const ConfigValue& v) {
  if (v.is_bool()) return std::get<bool>(v.v);
  throw t.value_error(v, "expected true or false, got " + v.describe());
}
std::string as_string(const ConfigTable& t, const ConfigValue& v) {
  if (v.is_string()) return std::get<std::string>(v.v);
  throw t.value_error(v, "expected a string, got " + v.describe());
}

}  // namespace

int64_t ConfigTable::get_int(const std::string& key) const { return as_int(*this, require(key)); }
double ConfigTable::get_float(const std::string& key) const {
  return as_float(*this, require(key));
}
bool ConfigTable::get_bool(const std::string& key) const { return as_bool(*this, require(key)); }
std::string ConfigTable::get_string(const std::string& key) const {
  return as_string(*this, require(key));
}

int64_t ConfigTable::get_int(const std::string& key, int64_t fallback) const {
  const ConfigValue* v = find(key);
  return v ? as_int(*this, *v) : fallback;
}
double ConfigTable::get_float(const std::string& key, double fallback) const {
  const ConfigValue* v = find(key);
  return v ? as_float(*this, *v) : fallback;
}
bool ConfigTable::get_bool(const std::string& key, bool fallback) const {
  const ConfigValue* v = find(key);
  return v ? as_bool(*this, *v) : fallback;
}
std::string ConfigTable::get_string(const std::string& key, const std::string& fallback) const {
  const ConfigValue* v = find(key);
  return v ? as_string(*this, *v) : fallback;
}
std::optional<int64_t> ConfigTable::get_opt_int(const std::string& key) const {
  const ConfigValue* v = find(key);
  if (!v) return std::nullopt;
  return as_int(*this, *v);
}
std::optional<double> ConfigTable::get_opt_float(const std::string& key) const {
  const ConfigValue* v = find(key);
  if (!v) return std::nullopt;
  return as_float(*this, *v);
}
std::optional<std::string> ConfigTable::get_opt_string(const std::string& key) const {
  const ConfigValue* v = find(key);
  if (!v) return std::nullopt;
  return as_string(*this, *v);
}

std::vector<int64_t> ConfigTable::get_int_list(const std::string& key, int64_t n) const {
  const ConfigValue& v = require(key);
  std::string want = n >= 0 ? "an array of " + std::to_string(n) + " integers"
                             : "an array of integers";
  if (!v.is_array()) throw value_error(v, "expected " + want + ", got " + v.describe());
  const ConfigArray& a = std::get<ConfigArray>(v.v);
  if (n >= 0 && int64_t(a.size()) != n)
    throw value_error(v, "expected " + want + ", got " + std::to_string(a.size()) + " values");
  std::vector<int64_t> out;
  for (const ConfigValue& e : a) {
    if (!e.is_int()) throw value_error(e, "expected an integer, got " + e.describe());
    out.push_back(std::get<int64_t>(e.v));
  }
  return out;
}

std::vector<int64_t> ConfigTable::get_int_or_list(const std::string& key, int64_t n) const {
  const ConfigValue& v = require(key);
  if (v.is_int()) return std::vector<int64_t>(size_t(n), std::get<int64_t>(v.v));
  if (!v.is_array())
    throw value_error(v, "expected an integer or an array of " + std::to_string(n) +
                             " integers, got " + v.describe());
  return get_int_list(key, n);
}

const ConfigTable& ConfigTable::get_table(const std::string& key) const {
  const ConfigValue& v = require(key);
  if (!v.is_table()) throw value_error(v, "expected a table, got " + v.describe());
  return *std::get<std::shared_ptr<ConfigTable>>(v.v);
}

std::vector<std::shared_ptr<ConfigTable>> ConfigTable::get_table_array(
    const std::string& key) const {
  const ConfigValue& v = require(key);
  std::string want = "expected an array of tables ([[" + key_path(key) + "]])";
  if (!v.is_array()) throw value_error(v, want + ", got " + v.describe());
  std::vector<std::shared_ptr<ConfigTable>> out;
  for (const ConfigValue& e : std::get<ConfigArray>(v.v)) {
    if (!e.is_table()) throw value_error(e, want + ", got " + e.describe());
    out.push_back(std::get<std::shared_ptr<ConfigTable>>(e.v));
  }
  return out;
}

std::string ConfigTable::pick_key(const std::vector<std::string>& synonyms) const {
  std::string found;
  for (const std::string& k : synonyms) {
    asked_.insert(k);
    if (!has(k)) continue;
    if (!found.empty())
      throw error(k, "conflicts with " + found + " (they are synonyms; give one)");
    found = k;
  }
  return found;
}

void ConfigTable::check_no_unknown_keys(const std::string& owner) const {
  for (const std::string& k : order_) {
    if (used_.count(k)) continue;
    std::string msg = "unknown field";
    if (!owner.empty()) msg += " for " + owner;
    if (!asked_.empty()) {
      msg += " (known:";
      const char* sep = " ";
      for (const std::string& a : asked_) {
        msg += sep + a;
        sep = ", ";
      }
      msg += ")";
    }
    const ConfigValue& v = values_.at(k);
    throw value_error(v, msg);
  }
}

// ---------------------------------------------------------------- TOML -> ConfigTable

namespace {

int64_t line_of(const toml::node& n) { return int64_t(n.source().begin.line); }

ConfigValue convert(const toml::node& n, const std::string& file, const std::string& path);

std::shared_ptr<ConfigTable> convert_table(const toml::table& t, const std::string& file,
                                           const std::string& path) {
  auto out = std::make_shared<ConfigTable>(file, path);
  out->set_line(line_of(t));
  std::ostringstream s;
  s << t;
  out->set_toml(s.str());
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    out->set(key, convert(v, file, path.empty() ? key : path + "." + key));
  }
  return out;
}

ConfigValue convert(const toml::node& n, const std::string& file, const std::string& path) {
  ConfigValue out;
  out.path = path;
  out.line = line_of(n);
  if (auto v = n.as_boolean()) {
    out.v = v->get();
  } else if (auto i = n.as_integer()) {
    out.v = int64_t(i->get());
  } else if (auto f = n.as_floating_point()) {
    out.v = double(f->get());
  } else if (auto s = n.as_string()) {
    out.v = s->get();
  } else if (auto a = n.as_array()) {
    ConfigArray arr;
    for (size_t i = 0; i < a->size(); i++)
      arr.push_back(convert(*a->get(i), file, path + "[" + std::to_string(i) + "]"));
    out.v = std::move(arr);
  } else if (auto t = n.as_table()) {
    out.v = convert_table(*t, file, path);
  } else {
    // dates and times: kept as their TOML text; no mox option takes one
    std::ostringstream s;
    n.visit([&](const auto& x) { s << x; });
    out.v = s.str();
  }
  return out;
}

std::string file_stem(const std::string& path) {
  return std::filesystem::path(path).stem().string();
}

ModelConfig read_model(const ConfigTable& root, const std::string& file) {
  ModelConfig m;
  m.file = file;
  const ConfigValue* mv = root.find("model");
  if (!mv) throw Error(file, "model: required table [model] is missing");
  if (!mv->is_table()) throw root.value_error(*mv, "expected a table, got " + mv->describe());
  m.table = std::get<std::shared_ptr<ConfigTable>>(mv->v);
  const ConfigTable& t = *m.table;

  m.name = t.get_string("name", file_stem(file));
  m.input_shape = t.get_int_list("input_shape");
  if (m.input_shape.empty()) throw t.error("input_shape", "must have at least one dim");
  for (int64_t d : m.input_shape)
    if (d <= 0)
      throw t.error("input_shape", "every dim must be a positive integer, got " +
                                       std::to_string(d));
  m.layers = t.get_table_array("layers");
  if (m.layers.empty()) throw t.error("layers", "must hold at least one [[model.layers]] table");
  t.check_no_unknown_keys("[model]");
  return m;
}

}  // namespace

const std::vector<std::string>& config_sections() {
  static const std::vector<std::string> s = {"model", "data", "train", "optimizer", "scheduler", "callbacks"};
  return s;
}

namespace {

// The TOML document, or one error line "file:LINE:COL: invalid TOML: ...".
toml::table parse_toml(const std::string& text, const std::string& file) {
  try {
    return toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw Error(file + ":" + std::to_string(b.line) + ":" + std::to_string(b.column),
                "invalid TOML: " + std::string(e.description()));
  }
}

}  // namespace

std::shared_ptr<ConfigTable> parse_config_table(const std::string& text, const std::string& file) {
  return convert_table(parse_toml(text, file), file, "");
}

Config parse_config(const std::string& text, const std::string& file) {
  toml::table doc = parse_toml(text, file);
  std::shared_ptr<ConfigTable> root = convert_table(doc, file, "");

  Config c;
  c.path = file;
  c.text = text;
  c.model = read_model(*root, file);
  struct Section {
    const char* name;
    ConfigTable* table;
    bool* present;
  };
  for (Section s : {Section{"data", &c.data, &c.has_data}, Section{"train", &c.train, &c.has_train},
                    Section{"optimizer", &c.optimizer, &c.has_optimizer},
                    Section{"scheduler", &c.scheduler, &c.has_scheduler},
                    Section{"callbacks", &c.callbacks, &c.has_callbacks}}) {
    const ConfigValue* v = root->find(s.name);
    if (!v) {
      *s.table = ConfigTable(file, s.name);
      continue;
    }
    if (!v->is_table()) throw root->value_error(*v, "expected a table, got " + v->describe());
    *s.table = *std::get<std::shared_ptr<ConfigTable>>(v->v);
    *s.present = true;
  }
  root->check_no_unknown_keys("a config file");
  return c;
}

Config load_config(const std::string& path) { return parse_config(read_file(path), path); }

namespace {

// One step of an override's key: a table key, optionally followed by [index]es.
struct KeyStep {
  std::string key;
  std::vector<int64_t> indices;
};

std::vector<KeyStep> parse_key_path(const std::string& path, const std::string& where) {
  std::vector<KeyStep> steps;
  size_t i = 0;
  while (i < path.size()) {
    KeyStep st;
    while (i < path.size() && path[i] != '.' && path[i] != '[') st.key += path[i++];
    if (st.key.empty()) throw Error(where, "empty key in \"" + path + "\"");
    while (i < path.size() && path[i] == '[') {
      size_t close = path.find(']', i);
      if (close == std::string::npos) throw Error(where, "unclosed [ in \"" + path + "\"");
      std::string num = path.substr(i + 1, close - i - 1);
      if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos)
        throw Error(where, "index \"" + num + "\" is not a non-negative integer");
      st.indices.push_back(std::stoll(num));
      i = close + 1;
    }
    steps.push_back(st);
    if (i < path.size()) {
      if (path[i] != '.') throw Error(where, "expected '.' after ] in \"" + path + "\"");
      i++;
      if (i == path.size()) throw Error(where, "key ends with '.'");
    }
  }
  if (steps.empty()) throw Error(where, "empty key");
  return steps;
}

// Calls f with the value as a TOML node: the text parsed as TOML ("3", "[1, 2]", "{a = 1}",
// "\"x\"", "true"), or else as a plain string.
template <typename F>
void with_override_value(const std::string& value, F&& f) {
  toml::table t;
  try {
    t = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    f(toml::value<std::string>(value));
    return;
  }
  t.get("v")->visit([&](auto&& x) { f(x); });
}

}  // namespace

std::string apply_overrides(const std::string& text, const std::string& file,
                            const std::vector<std::string>& overrides) {
  if (overrides.empty()) return text;
  toml::table doc = parse_toml(text, file);
  for (const std::string& o : overrides) {
    const std::string where = "--set " + o;
    size_t eq = o.find('=');
    if (eq == std::string::npos || eq == 0) throw Error(where, "expected key=value");
    std::string key = o.substr(0, eq), value = o.substr(eq + 1);
    while (!key.empty() && key.back() == ' ') key.pop_back();
    while (!value.empty() && value.front() == ' ') value.erase(value.begin());
    std::vector<KeyStep> steps = parse_key_path(key, where);
    toml::table* tbl = &doc;
    for (size_t s = 0; s < steps.size(); s++) {
      const KeyStep& st = steps[s];
      const bool last = s + 1 == steps.size();
      if (last && st.indices.empty()) {
        with_override_value(value, [&](const auto& v) { tbl->insert_or_assign(st.key, v); });
        break;
      }
      toml::node* node = tbl->get(st.key);
      if (!node) {
        if (!st.indices.empty()) throw Error(where, "\"" + st.key + "\" is not in the config, so it cannot be indexed");
        tbl->insert_or_assign(st.key, toml::table{});
        node = tbl->get(st.key);
      }
      for (size_t k = 0; k < st.indices.size(); k++) {
        auto* arr = node->as_array();
        if (!arr) throw Error(where, "\"" + st.key + "\" is not an array");
        int64_t idx = st.indices[k];
        if (idx >= int64_t(arr->size()))
          throw Error(where, "index " + std::to_string(idx) + " is past the end of \"" + st.key + "\" (" +
                                 std::to_string(arr->size()) + " elements)");
        if (last && k + 1 == st.indices.size()) {
          with_override_value(value, [&](const auto& v) { arr->replace(arr->cbegin() + idx, v); });
          node = nullptr;
          break;
        }
        node = arr->get(size_t(idx));
      }
      if (!node) break;
      tbl = node->as_table();
      if (!tbl) throw Error(where, "\"" + st.key + "\" is not a table");
    }
  }
  std::ostringstream os;
  os << doc << "\n";
  return os.str();
}

}  // namespace mox::io
