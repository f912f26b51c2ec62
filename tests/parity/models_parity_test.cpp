// Whole models against PyTorch 1.13 (tests/fixtures/models, from tools/fixtures_models.py):
// the same weights give the same outputs, loss and gradients of every parameter and of the
// input, to 1e-5 relative (norm-wise).
#include <gtest/gtest.h>

#include "mox/nn/models/build_model.h"
#include "mox/nn/models/last_time_step.h"
#include "mox/nn/nn.h"
#include "parity/parity_util.h"
#include "parity/transformer.h"

namespace mox::testing {
namespace {

TEST(ModelParity, MLP) {
  // nn.Sequential(Linear(784,128), ReLU(), Linear(128,10)), cross-entropy
  nn::Sequential model{std::make_shared<nn::Linear>(784, 128), std::make_shared<nn::ReLU>(),
                       std::make_shared<nn::Linear>(128, 10)};
  check_model_parity(model, "mlp", [&](const Tensor& x) { return model.forward(x); });
}

TEST(ModelParity, CNN) {
  // Conv2d(1,4,3) ReLU MaxPool2d(2) Conv2d(4,8,3) Flatten Linear(72,5) on [2, 1, 12, 12]
  nn::Sequential model{std::make_shared<nn::Conv2d>(1, 4, 3), std::make_shared<nn::ReLU>(),
                       std::make_shared<nn::MaxPool2d>(2), std::make_shared<nn::Conv2d>(4, 8, 3),
                       std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(72, 5)};
  check_model_parity(model, "cnn", [&](const Tensor& x) { return model.forward(x); });
}

// LSTM(5, 7, batch_first) then Linear(7, 3) on the last time step.
class LSTMHead : public nn::Module {
 public:
  LSTMHead() {
    lstm = register_module("lstm",
                           std::make_shared<nn::LSTM>(nn::LSTMOptions(5, 7).batch_first(true)));
    fc = register_module("fc", std::make_shared<nn::Linear>(7, 3));
  }
  Tensor forward(const Tensor& x) override {
    return fc->forward(nn::LastTimeStep().forward(lstm->forward(x)));
  }
  std::shared_ptr<nn::LSTM> lstm;
  std::shared_ptr<nn::Linear> fc;
};

TEST(ModelParity, LSTM) {
  LSTMHead model;
  check_model_parity(model, "lstm", [&](const Tensor& x) { return model.forward(x); });
}

TEST(ModelParity, TransformerEncoder) {
  Transformer model(16, 2, 2);
  check_model_parity(model, "transformer", [&](const Tensor& x) { return model.forward(x); });
}

// The config builder's MLP is PyTorch's nn.Sequential with one more module (Flatten first),
// so the fixture's weights load into it once the indices are shifted by one.
TEST(ModelParity, ConfigBuiltMLP) {
  io::Config c = io::parse_config(R"(
[model]
input_shape = [784]
[[model.layers]]
type = "Identity"
[[model.layers]]
type = "Dense"
units = 128
activation = "relu"
[[model.layers]]
type = "Dense"
units = 10
)",
                                  "mlp.toml");
  auto model = nn::build_model(c.model);
  io::SafetensorsFile f = load_model_fixture("mlp");
  nn::StateDict sd;
  for (const auto& [name, t] : fixture_state_dict(f)) {
    size_t dot = name.find('.');
    sd.insert(std::to_string(std::stoi(name.substr(0, dot)) + 1) + name.substr(dot), t);
  }
  model->load_state_dict(sd);
  expect_close(model->forward(f.at("input")), f.at("output"), "config-built MLP output");
}

}  // namespace
}  // namespace mox::testing
