#include "mox/util/npm.h"

#include <cstdlib>
#include <filesystem>

namespace mox::util {

namespace fs = std::filesystem;

std::optional<std::string> find_npm_package(const std::string& name, const std::string& env_var) {
  if (!env_var.empty()) {
    if (const char* env = std::getenv(env_var.c_str()); env != nullptr && *env != '\0') {
      if (fs::is_directory(env)) return std::string(env);
      return std::nullopt;
    }
  }
  std::error_code ec;
  fs::path dir = fs::current_path(ec);
  if (ec) return std::nullopt;
  for (;;) {
    const fs::path candidate = dir / "third_party_data" / "npm" / "node_modules" / name;
    if (fs::is_directory(candidate, ec)) return candidate.string();
    if (!dir.has_parent_path() || dir.parent_path() == dir) return std::nullopt;
    dir = dir.parent_path();
  }
}

}  // namespace mox::util
