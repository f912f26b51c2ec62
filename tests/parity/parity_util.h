#pragma once
// Loads a whole-model PyTorch fixture (tools/fixtures_models.py) and compares mox's
// forward and backward with it. Tensors in a fixture: weight.<name>, input, target, output,
// loss, grad.<name>, grad_input; metadata: model, loss.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "mox/io/safetensors.h"
#include "mox/mox.h"
#include "mox/nn/module.h"

namespace mox::testing {

inline io::SafetensorsFile load_model_fixture(const std::string& name) {
  return io::load_safetensors(std::string(MOX_SOURCE_DIR) + "/tests/fixtures/models/" + name +
                              ".safetensors");
}

// The weight.<name> tensors as a state dict with PyTorch's names.
inline nn::StateDict fixture_state_dict(const io::SafetensorsFile& f) {
  nn::StateDict sd;
  for (const std::string& key : f.names)
    if (key.rfind("weight.", 0) == 0) sd.insert(key.substr(7), f.at(key));
  return sd;
}

// ||got - want|| / ||want|| <= 1e-5 (norm-wise), and elementwise
// |got - want| <= 1e-4 |want| + 1e-5 max|want| (a small atol for values near zero).
// A reference that is zero up to f64 rounding needs ||got|| <= 1e-6 instead.
inline void expect_close(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what << ": mox computed nothing";
  ASSERT_EQ(got.shape(), want.shape()) << what;
  std::vector<double> a = got.to_vector<double>(), b = want.to_vector<double>();
  double diff2 = 0, ref2 = 0, ref_max = 0;
  for (size_t i = 0; i < a.size(); i++) {
    diff2 += (a[i] - b[i]) * (a[i] - b[i]);
    ref2 += b[i] * b[i];
    ref_max = std::max(ref_max, std::abs(b[i]));
  }
  if (std::sqrt(ref2) < 1e-12) {
    // Zero in exact arithmetic (the f64 reference holds only rounding noise), e.g. the
    // gradient of attention's key bias, which softmax's shift invariance cancels: nothing
    // to be relative to, so mox's f32 rounding noise must simply be tiny.
    EXPECT_LE(std::sqrt(diff2), 1e-6) << what << ": expected (near) zero";
    return;
  }
  double rel = std::sqrt(diff2) / std::sqrt(ref2);
  EXPECT_LE(rel, 1e-5) << what << ": relative norm error " << rel;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::abs(a[i] - b[i]) > 1e-4 * std::abs(b[i]) + 1e-5 * ref_max) {
      if (bad++ == 0) first = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements differ; first at flat index " << first
                     << ": mox " << a[first] << " vs torch " << b[first];
}

// Loads the fixture's weights into model, runs forward (with the fixture's loss) and
// backward, and compares output, loss and every gradient. forward(x) returns the output.
template <typename Forward>
void check_model_parity(nn::Module& model, const std::string& fixture, Forward forward) {
  io::SafetensorsFile f = load_model_fixture(fixture);
  nn::LoadResult lr = model.load_state_dict(fixture_state_dict(f), /*strict=*/true);
  EXPECT_TRUE(lr.missing_keys.empty() && lr.unexpected_keys.empty());
  model.zero_grad();

  Tensor x = f.at("input").clone().requires_grad_(true);
  Tensor out = forward(x);
  expect_close(out, f.at("output"), fixture + " output");

  std::string loss_name = f.metadata.at("loss");
  Tensor loss = loss_name == "cross_entropy" ? cross_entropy(out, f.at("target"))
                                              : mse_loss(out, f.at("target"));
  expect_close(loss, f.at("loss"), fixture + " loss");
  loss.backward();

  size_t checked = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(f.contains("grad." + name)) << "fixture has no gradient for " << name;
    expect_close(p.grad(), f.at("grad." + name), fixture + " grad of " + name);
    checked++;
  }
  size_t in_fixture = 0;
  for (const std::string& key : f.names) in_fixture += key.rfind("grad.", 0) == 0;
  EXPECT_EQ(checked, in_fixture) << "every parameter gradient of the fixture is compared";
  expect_close(x.grad(), f.at("grad_input"), fixture + " grad of the input");
}

}  // namespace mox::testing
