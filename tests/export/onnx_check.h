#pragma once
// Shared by the ONNX export tests: writes test inputs and mox's outputs as .npy files and
// runs tests/export/check_onnx.py (onnx.checker, shape inference, and the graph on a numpy
// interpreter compared with mox's outputs) under Debian's /usr/bin/python3.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mox/tensor/tensor.h"

namespace mox::testing {

inline const std::string kPython = "/usr/bin/python3";
inline const std::string kChecker = std::string(MOX_SOURCE_DIR) + "/tests/export/check_onnx.py";

// A fresh temporary folder for one test.
inline std::string onnx_test_dir(const std::string& name) {
  std::filesystem::path p =
      std::filesystem::temp_directory_path() / ("mox_onnx_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

// Writes a f32 or i64 tensor as a NumPy .npy file (format 1.0, little-endian, C order).
inline void write_npy(const std::string& path, const Tensor& t) {
  const bool ints = t.dtype() == DType::I64;
  std::string shape = "(";  // Python's tuple: (), (3,), (2, 3)
  for (size_t i = 0; i < t.shape().size(); i++) shape += (i ? ", " : "") + std::to_string(t.shape()[i]);
  shape += t.shape().size() == 1 ? ",)" : ")";
  std::string header = std::string("{'descr': '") + (ints ? "<i8" : "<f4") +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = uint16_t(header.size());
  f.write(reinterpret_cast<const char*>(&len), 2);
  f << header;
  if (ints) {
    std::vector<int64_t> v = t.to_vector<int64_t>();
    f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(int64_t)));
  } else {
    std::vector<float> v = t.to_vector<float>();
    f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  }
}

// Test inputs and what mox computed for them, by graph input / output name.
struct OnnxCase {
  std::map<std::string, Tensor> inputs, outputs;
};

struct CheckResult {
  int code = -1;
  std::string text;      // the script's output
  nlohmann::json report;  // its JSON line when it passed
};

// Runs a command line through the shell, capturing stdout and stderr together.
inline CheckResult run_shell(const std::string& command) {
  CheckResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.text.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Why the checker cannot run here ("" when it can): Debian's python3 with python3-onnx and
// numpy (scripts/setup installs them).
inline std::string checker_unavailable() {
  static const std::string why = [] {
    if (::access(kPython.c_str(), X_OK) != 0) return kPython + " is missing";
    CheckResult r = run_shell(kPython + " -c 'import onnx, numpy'");
    return r.code == 0 ? std::string() : "python3-onnx or numpy is missing: " + r.text;
  }();
  return why;
}

// check_onnx.py on `model` with the cases (written under dir/cases/).
inline CheckResult check_onnx(const std::string& model, const std::vector<OnnxCase>& cases, const std::string& dir) {
  std::string args = "'" + model + "'";
  if (!cases.empty()) {
    const std::string cdir = dir + "/cases";
    std::filesystem::create_directories(cdir);
    nlohmann::json list = nlohmann::json::array();
    for (size_t k = 0; k < cases.size(); k++) {
      nlohmann::json entry = {{"inputs", nlohmann::json::object()}, {"outputs", nlohmann::json::object()}};
      for (const auto& [group, tensors] : {std::pair{"inputs", &cases[k].inputs}, std::pair{"outputs", &cases[k].outputs}})
        for (const auto& [name, t] : *tensors) {
          const std::string file = std::to_string(k) + "_" + group + "_" + name + ".npy";
          write_npy(cdir + "/" + file, t);
          entry[group][name] = file;
        }
      list.push_back(entry);
    }
    std::ofstream(cdir + "/cases.json") << list.dump(1);
    args += " '" + cdir + "/cases.json'";
  }
  CheckResult r = run_shell(kPython + " '" + kChecker + "' " + args);
  if (r.code == 0) r.report = nlohmann::json::parse(r.text);
  return r;
}

}  // namespace mox::testing

// Skips the test when the checker's Python side is not installed.
#define MOX_REQUIRE_ONNX_CHECKER()                                          \
  do {                                                                      \
    const std::string why = ::mox::testing::checker_unavailable();         \
    if (!why.empty()) GTEST_SKIP() << "ONNX checker unavailable: " << why; \
  } while (0)
