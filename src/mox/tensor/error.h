#pragma once
// The one exception type of mox: carries the op (or file/field), and the shapes and
// dtypes involved, so that the CLI can print a single line that says what went wrong.
#include <stdexcept>
#include <string>

namespace mox {

class Error : public std::runtime_error {
 public:
  Error(std::string where, std::string what)
      : std::runtime_error(where.empty() ? what : where + ": " + what),
        where_(std::move(where)), what_(std::move(what)) {}
  const std::string& where() const { return where_; }  // op name, file or field
  const std::string& detail() const { return what_; }

 private:
  std::string where_, what_;
};

// MOX_CHECK(cond, where, message-expression): throws mox::Error when cond is false.
#define MOX_CHECK(cond, where, msg)                          \
  do {                                                       \
    if (!(cond)) throw ::mox::Error((where), (msg));         \
  } while (0)

}  // namespace mox
