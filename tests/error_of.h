#pragma once
// Helpers for tests that assert an error names its file, field or shape.
// error_of: the message of the mox::Error that f throws, or "(no error)".
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "mox/tensor/error.h"

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const mox::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Runs f and expects a mox::Error whose message contains every needle.
template <typename F>
void expect_error(F f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected mox::Error";
  } catch (const mox::Error& e) {
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "'" << e.what() << "' lacks '" << n << "'";
  }
}
