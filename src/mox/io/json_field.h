#pragma once
// Type-checked reads of JSON config fields (model.json, Hugging Face config.json): a value of
// the wrong JSON type is one mox::Error naming the file (`where`) and the key.
#include <optional>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "mox/tensor/error.h"

namespace mox::io {

// j[key] as a T, or nullopt when j has no such key.
template <typename T>
std::optional<T> json_get(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) return std::nullopt;
  const nlohmann::json& v = j.at(key);
  bool ok;
  const char* expected;
  if constexpr (std::is_same_v<T, bool>) {
    ok = v.is_boolean();
    expected = "a boolean";
  } else if constexpr (std::is_integral_v<T>) {
    ok = v.is_number_integer();
    expected = "an integer";
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = v.is_number();
    expected = "a number";
  } else {
    ok = v.is_string();
    expected = "a string";
  }
  MOX_CHECK(ok, where, std::string(key) + ": expected " + expected + ", got " + v.dump());
  return v.get<T>();
}

// field = j[key] when present (field keeps its value otherwise).
template <typename T> void json_read(const nlohmann::json& j, const char* key, T& field, const std::string& where) {
  if (std::optional<T> v = json_get<T>(j, key, where)) field = *v;
}

// j is an object whose "type", when present, is `kind` (mox's model.json files).
inline void check_json_kind(const nlohmann::json& j, const std::string& kind, const std::string& where) {
  MOX_CHECK(j.is_object(), where, "expected a JSON object for the " + kind + " config");
  if (j.contains("type"))
    MOX_CHECK(j.at("type") == kind, where, "field \"type\" must be \"" + kind + "\", got " + j.at("type").dump());
}

// c after c.validate(), whose error is re-thrown naming `where`.
template <typename C> C validated(C c, const std::string& where) {
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(where, e.what());
  }
  return c;
}

}  // namespace mox::io
