#pragma once
// PyTorch parity for the ops tests: reads the JSON cases written by tools/fixtures_ops.py
// (inputs, parameters, upstream gradient, expected output and input gradients, all f32)
// and compares mox's results at 1e-5 relative tolerance.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <string>

#include "mox/mox.h"

namespace mox::testing {

using json = nlohmann::json;

inline json load_ops_fixture(const std::string& file) {
  std::string path = std::string(MOX_SOURCE_DIR) + "/tests/fixtures/ops/" + file;
  std::ifstream f(path);
  if (!f) throw Error(path, "fixture missing: run /usr/bin/python3 tools/fixtures_ops.py");
  return json::parse(f);
}

inline Tensor tensor_from_json(const json& j) {
  Shape shape = j.at("shape").get<Shape>();
  if (j.at("dtype") == "i64") return from_vector(j.at("data").get<std::vector<int64_t>>(), shape);
  return from_vector(j.at("data").get<std::vector<float>>(), shape);
}

// |got - want| <= atol + rtol |want| elementwise, shapes equal.
inline ::testing::AssertionResult matches_json(const Tensor& got, const json& want,
                                               double rtol = 1e-5, double atol = 1e-6) {
  Shape shape = want.at("shape").get<Shape>();
  if (got.shape() != shape)
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << " vs expected "
                                         << shape_str(shape);
  std::vector<double> g = got.to_vector<double>();
  std::vector<double> w = want.at("data").get<std::vector<double>>();
  for (size_t i = 0; i < w.size(); i++)
    if (!(std::abs(g[i] - w[i]) <= atol + rtol * std::abs(w[i])))
      return ::testing::AssertionFailure() << "element " << i << ": got " << g[i] << ", expected "
                                           << w[i];
  return ::testing::AssertionSuccess();
}

using Inputs = std::map<std::string, Tensor>;
using CaseFn = std::function<Tensor(Inputs& in, const json& params, const json& c)>;

// Runs every case of `file` whose op has an entry in `ops`: float inputs require grad,
// the output is compared, then backward with the stored gy, then each stored gradient.
inline void run_fixture_cases(const std::string& file, const std::map<std::string, CaseFn>& ops,
                              double rtol = 1e-5, double atol = 1e-6) {
  json fx = load_ops_fixture(file);
  int ran = 0;
  for (const json& c : fx.at("cases")) {
    const std::string name = c.at("name"), op = c.at("op");
    auto it = ops.find(op);
    ASSERT_NE(it, ops.end()) << "no runner for op " << op << " (case " << name << ")";
    SCOPED_TRACE("fixture case " + name);
    Inputs in;
    for (auto& [k, v] : c.at("inputs").items()) {
      Tensor t = tensor_from_json(v);
      if (is_floating(t.dtype()) && c.at("grads").contains(k)) t.requires_grad_(true);
      in[k] = t;
    }
    Tensor out = it->second(in, c.at("params"), c);
    EXPECT_TRUE(matches_json(out, c.at("output"), rtol, atol)) << "output";
    if (!c.at("grads").empty()) {
      ASSERT_TRUE(out.requires_grad());
      out.backward(tensor_from_json(c.at("gy")));
      for (auto& [k, want] : c.at("grads").items()) {
        ASSERT_TRUE(in.at(k).grad().defined()) << "no gradient for " << k;
        EXPECT_TRUE(matches_json(in.at(k).grad(), want, rtol, atol)) << "gradient of " << k;
      }
    }
    ran++;
  }
  EXPECT_GT(ran, 0);
}

}  // namespace mox::testing
