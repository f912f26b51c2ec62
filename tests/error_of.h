#pragma once
// The message of the mox::Error that f throws, or "(no error)": for tests that assert an
// error names its file, field or shape.
#include <functional>
#include <string>

#include "mox/tensor/error.h"

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const mox::Error& e) {
    return e.what();
  }
  return "(no error)";
}
