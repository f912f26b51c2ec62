#pragma once
// Helpers for the data pipeline tests: temp folders, small IDX / CIFAR / text files, and
// configs built from a [data] table.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "mox/io/config.h"
#include "mox/tensor/tensor.h"

namespace pipeline_test {

namespace fs = std::filesystem;

// A fresh, empty folder under the test temp dir.
inline std::string fresh_dir(const std::string& name) {
  fs::path p = fs::path(::testing::TempDir()) / ("mox_pipeline_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

inline void write_text(const std::string& path, const std::string& text) {
  write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

// An IDX u8 file of the given dims.
inline void write_idx_u8(const std::string& path, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b = {0, 0, 0x08, uint8_t(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  write_bytes(path, b);
}

// The [data] table of a config holding `data_toml` (a minimal [model] is added).
struct DataConfig {
  mox::io::Config config;
  const mox::io::ConfigTable& data() const { return config.data; }
};
inline DataConfig data_config(const std::string& data_toml) {
  const std::string text = "[model]\ninput_shape = [1]\n[[model.layers]]\ntype = \"Flatten\"\n\n[data]\n" + data_toml;
  return DataConfig{mox::io::parse_config(text, "run.toml")};
}

// A TOML basic string holding path.
inline std::string q(const std::string& s) { return "\"" + s + "\""; }

}  // namespace pipeline_test
