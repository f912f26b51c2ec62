// Quantised models: static int8 conversion of an MLP checked against a double-precision
// emulation of the documented arithmetic (input quantisation, per-channel weights, int32
// products, fused ReLU and requantisation); CNN and BatchNorm folding close to float; the
// layout (quantization.json) + weights rebuild identical models; dynamic and block (w8/w4)
// GPTs close to float, generating with and without the cache alike; QAT trains the shared
// parameters and converts to the int8 model it simulated.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <unistd.h>

#include "mox/autograd/node.h"
#include "mox/compress/quantize.h"
#include "mox/nn/models/generate.h"
#include "mox/nn/models/gpt.h"
#include "mox/nn/nn.h"
#include "mox/nn/serialize.h"
#include "mox/ops/ops.h"

namespace mox::compress {
namespace {

std::shared_ptr<nn::Sequential> mlp() {
  manual_seed(11);
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Linear>(20, 16));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Linear>(16, 8));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Linear>(8, 4));
  m->eval();
  return m;
}

std::vector<Tensor> batches(const Shape& shape, int n, uint64_t seed) {
  Generator g(seed);
  std::vector<Tensor> out;
  for (int i = 0; i < n; i++) out.push_back(randn(shape, &g));
  return out;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float f : v) m = std::max(m, std::fabs(double(f)));
  return m;
}

// PyTorch's rule, written out: range widened to include 0, scale (max - min) / 255,
// zero_point round(-min / scale).
std::pair<double, int64_t> qparams(double lo, double hi) {
  lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
  double s = (hi - lo) / 255.0;
  if (s == 0) s = 1;
  int64_t zp = std::llround(-lo / s);
  return {s, std::clamp<int64_t>(zp, 0, 255)};
}

int64_t q_u8(double x, double s, int64_t zp) {
  return std::clamp<int64_t>(int64_t(std::nearbyint(x / s)) + zp, 0, 255);
}

std::string temp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("mox_quant_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d.string();
}

TEST(QuantizeStatic, MlpMatchesTheIntegerArithmetic) {
  auto m = mlp();
  auto calib = batches({32, 20}, 3, 5);
  // Ranges the float model shows at each Linear's input, computed here.
  auto range_of = [](const std::vector<Tensor>& xs) {
    double lo = 1e30, hi = -1e30;
    for (const auto& x : xs)
      for (float f : x.to_vector<float>()) lo = std::min(lo, double(f)), hi = std::max(hi, double(f));
    return std::make_pair(lo, hi);
  };
  std::vector<Tensor> h1, h2;
  {
    NoGradGuard ng;
    for (const auto& x : calib) {
      h1.push_back(relu((*m)[0]->forward(x)));
      h2.push_back(relu((*m)[2]->forward(h1.back())));
    }
  }
  std::vector<std::pair<double, double>> ranges = {range_of(calib), range_of(h1), range_of(h2)};
  std::vector<Tensor> W, B;
  for (int i : {0, 2, 4}) {
    W.push_back(m->at<nn::Linear>(size_t(i))->weight.detach().clone());
    B.push_back(m->at<nn::Linear>(size_t(i))->bias.detach().clone());
  }
  Tensor x = batches({5, 20}, 1, 9)[0];
  Tensor want_float;
  {
    NoGradGuard ng;
    want_float = m->forward(x);
  }

  QuantConfig cfg;
  QuantizeReport rep = quantize_static(*m, calib, cfg);
  EXPECT_EQ(rep.quantized, (std::vector<std::string>{"0", "2", "4"}));
  EXPECT_EQ((*m)[1]->type_name(), "Identity");  // the ReLU rides in the epilogue
  auto* q0 = dynamic_cast<QuantizedLinear*>((*m)[0].get());
  ASSERT_NE(q0, nullptr);
  EXPECT_TRUE(q0->out.relu);
  EXPECT_TRUE(q0->out.requantize);
  EXPECT_FALSE(dynamic_cast<QuantizedLinear*>((*m)[4].get())->out.requantize);  // the output stays f32
  Tensor got;
  {
    NoGradGuard ng;
    got = m->forward(x);
  }
  ASSERT_EQ(got.dtype(), DType::F32);
  ASSERT_EQ(got.shape(), (Shape{5, 4}));

  // The reference: u8 activations between the layers, as documented.
  std::vector<double> ref;
  const std::vector<float> xv = x.to_vector<float>();
  for (int64_t r = 0; r < 5; r++) {
    auto [s0, z0] = qparams(ranges[0].first, ranges[0].second);
    std::vector<int64_t> a(20);
    for (int k = 0; k < 20; k++) a[size_t(k)] = q_u8(xv[size_t(r * 20 + k)], s0, z0);
    double sa = s0;
    int64_t za = z0;
    for (int l = 0; l < 3; l++) {
      const int64_t N = W[size_t(l)].size(0), K = W[size_t(l)].size(1);
      std::vector<float> w = W[size_t(l)].to_vector<float>(), b = B[size_t(l)].to_vector<float>();
      std::vector<double> y(static_cast<size_t>(N));
      for (int64_t n = 0; n < N; n++) {
        double amax = 0;
        for (int64_t k = 0; k < K; k++) amax = std::max(amax, std::fabs(double(w[size_t(n * K + k)])));
        const double sw = amax > 0 ? double(float(amax / 127.0)) : 1.0;
        int64_t acc = 0;
        for (int64_t k = 0; k < K; k++) {
          const int64_t qw = std::clamp<int64_t>(int64_t(std::nearbyint(w[size_t(n * K + k)] / sw)), -127, 127);
          acc += (a[size_t(k)] - za) * qw;
        }
        y[size_t(n)] = double(acc) * sa * sw + b[size_t(n)];
      }
      if (l == 2) {
        for (double v : y) ref.push_back(v);
        break;
      }
      auto [s1, z1] = qparams(ranges[size_t(l + 1)].first, ranges[size_t(l + 1)].second);
      a.assign(size_t(N), 0);
      for (int64_t n = 0; n < N; n++) a[size_t(n)] = q_u8(std::max(0.0, y[size_t(n)]), s1, z1);
      sa = s1, za = z1;
    }
  }
  std::vector<float> g = got.to_vector<float>(), f = want_float.to_vector<float>();
  const double scale = max_abs(f);
  int close = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    // A requantised value may round the other way (f32 vs double): one step of the next
    // layer's input scale, a small fraction of the output's range.
    EXPECT_NEAR(g[i], ref[i], 0.02 * scale) << i;
    close += std::fabs(g[i] - ref[i]) < 1e-4 * scale;
    EXPECT_NEAR(g[i], f[i], 0.06 * scale) << "int8 far from float at " << i;
  }
  EXPECT_GE(close, int(ref.size()) * 3 / 4);
}

std::shared_ptr<nn::Sequential> cnn(bool batch_norm) {
  manual_seed(3);
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Conv2d>(1, 4, 3));
  if (batch_norm) m->push_back(std::make_shared<nn::BatchNorm2d>(4));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::MaxPool2d>(2));
  m->push_back(std::make_shared<nn::Conv2d>(4, 6, nn::Size2(3, 2), 1, 1));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Flatten>());
  m->push_back(std::make_shared<nn::Linear>(6 * 6 * 7, 5));
  if (batch_norm) {
    NoGradGuard ng;
    auto bn = m->at<nn::BatchNorm2d>(1);
    bn->running_mean.copy_(from_vector<float>({0.1f, -0.2f, 0.3f, 0.0f}, {4}));
    bn->running_var.copy_(from_vector<float>({0.5f, 2.0f, 1.0f, 0.25f}, {4}));
    bn->weight.copy_(from_vector<float>({1.5f, 0.5f, -1.0f, 1.0f}, {4}));
    bn->bias.copy_(from_vector<float>({0.1f, 0.2f, -0.3f, 0.0f}, {4}));
  }
  m->eval();
  return m;
}

void expect_close_to_float(nn::Sequential& m, const Tensor& x, const Tensor& want, double tol) {
  Tensor got;
  {
    NoGradGuard ng;
    got = m.forward(x);
  }
  ASSERT_EQ(got.shape(), want.shape());
  std::vector<float> g = got.to_vector<float>(), f = want.to_vector<float>();
  const double scale = max_abs(f);
  for (size_t i = 0; i < f.size(); i++) EXPECT_NEAR(g[i], f[i], tol * scale) << i;
}

TEST(QuantizeStatic, CnnAndBatchNormFoldingStayCloseToFloat) {
  for (bool bn : {false, true}) {
    SCOPED_TRACE(bn ? "with BatchNorm" : "plain");
    auto m = cnn(bn);
    Tensor x = rand({3, 1, 14, 15});
    Tensor want;
    {
      NoGradGuard ng;
      want = m->forward(x);
    }
    std::vector<Tensor> calib;
    Generator g(2);
    for (int i = 0; i < 4; i++) calib.push_back(rand({8, 1, 14, 15}, &g));
    calib.push_back(x);
    QuantizeReport rep = quantize_static(*m, calib, QuantConfig{});
    EXPECT_EQ(rep.quantized.size(), 3u);
    auto* c0 = dynamic_cast<QuantizedConv2d*>((*m)[0].get());
    ASSERT_NE(c0, nullptr);
    EXPECT_TRUE(c0->out.relu);
    EXPECT_TRUE(c0->out.requantize);  // through the MaxPool2d, as u8
    if (bn) {
      EXPECT_EQ((*m)[1]->type_name(), "Identity");
    }
    expect_close_to_float(*m, x, want, 0.05);
  }
}

TEST(QuantizeStatic, CalibrationMethodsAndSkips) {
  for (Calibration c : {Calibration::Percentile, Calibration::Entropy}) {
    auto m = mlp();
    auto calib = batches({64, 20}, 2, 7);
    QuantConfig cfg;
    cfg.calibration = c;
    cfg.skip = {"last"};
    QuantizeReport rep = quantize_static(*m, calib, cfg);
    EXPECT_EQ(rep.quantized, (std::vector<std::string>{"0", "2"}));
    EXPECT_EQ(rep.kept_float, (std::vector<std::string>{"4"}));
    EXPECT_EQ((*m)[4]->type_name(), "Linear");
    // The layer before a float layer hands it f32.
    EXPECT_FALSE(dynamic_cast<QuantizedLinear*>((*m)[2].get())->out.requantize);
  }
  auto m = mlp();
  EXPECT_THROW(quantize_static(*m, {}, QuantConfig{}), Error);
  QuantConfig bad;
  bad.mode = "int3";
  EXPECT_THROW(bad.validate(), Error);
}

TEST(QuantizeLayout, SavedModelReloadsIdentically) {
  auto m = cnn(true);
  std::vector<Tensor> calib = {rand({8, 1, 14, 15})};
  QuantConfig cfg;
  quantize_static(*m, calib, cfg);
  Tensor x = rand({2, 1, 14, 15}), want;
  {
    NoGradGuard ng;
    want = m->forward(x);
  }
  const std::string dir = temp_dir("layout");
  nn::save_state_dict(*m, dir + "/model.safetensors");
  nlohmann::json layout = quantization_json(*m, cfg);
  EXPECT_EQ(layout["layers"]["0"]["type"], "QuantizedConv2d");
  auto fresh = cnn(true);  // the float model the config builds
  apply_quantization_layout(*fresh, nlohmann::json::parse(layout.dump()), "quantization.json");
  nn::load_state_dict(*fresh, dir + "/model.safetensors");
  Tensor got;
  {
    NoGradGuard ng;
    got = fresh->forward(x);
  }
  EXPECT_EQ(got.to_vector<float>(), want.to_vector<float>());
  // Int8 weights and f32 scales: about a quarter of the float bytes.
  EXPECT_LT(double(model_bytes(*m)), 0.3 * double(model_bytes(*cnn(true))));

  nlohmann::json broken = layout;
  broken["layers"]["0"]["type"] = "QuantizedLSTM";
  auto other = cnn(true);
  try {
    apply_quantization_layout(*other, broken, "q.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("QuantizedLSTM"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

nn::GPTConfig tiny_gpt() {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 64;
  c.block_size = 16;
  c.vocab_size = 40;
  return c;
}

TEST(QuantizeGpt, BlocksAndDynamicStayCloseAndReload) {
  Tensor idx = from_vector<int64_t>({1, 5, 9, 2, 33, 7, 0, 12, 3, 3, 8, 21}, {2, 6});
  for (const char* mode : {"w8", "w4", "dynamic-int8"}) {
    SCOPED_TRACE(mode);
    manual_seed(21);
    auto g = std::make_shared<nn::GPT>(tiny_gpt());
    g->eval();
    Tensor want;
    {
      NoGradGuard ng;
      want = g->forward(idx);
    }
    QuantConfig cfg;
    cfg.mode = mode;
    QuantizeReport rep = std::string(mode) == "dynamic-int8" ? quantize_dynamic(*g, cfg) : quantize_blocks(*g, cfg);
    EXPECT_EQ(rep.quantized.size(), 9u);  // 4 Linears per block and the (tied) head
    EXPECT_EQ(rep.quantized.back(), "lm_head");
    ASSERT_NE(g->lm_head, nullptr);
    EXPECT_NE(g->lm_head->type_name(), "Linear");
    EXPECT_NE(g->blocks[0]->mlp->c_fc->type_name(), "Linear");  // the typed members follow
    Tensor got;
    {
      NoGradGuard ng;
      got = g->forward(idx);
    }
    std::vector<float> a = got.to_vector<float>(), b = want.to_vector<float>();
    double err = 0, ref = 0;
    for (size_t i = 0; i < a.size(); i++) err += std::pow(a[i] - b[i], 2), ref += std::pow(b[i], 2);
    const double rel = std::sqrt(err / ref);
    EXPECT_LT(rel, std::string(mode) == "w4" ? 0.15 : 0.03);
    EXPECT_GT(rel, 0.0);  // it did quantise

    // Greedy generation: the cached and the uncached paths agree.
    nn::GenerateOptions go;
    go.max_new_tokens = 8;
    go.sampling.temperature = 0;
    auto dec = [](const std::vector<int32_t>&) { return std::string(); };
    auto with = nn::generate(*g, {{1, 2, 3}}, go, dec);
    go.use_cache = false;
    auto without = nn::generate(*g, {{1, 2, 3}}, go, dec);
    EXPECT_EQ(with, without);

    const std::string dir = temp_dir(std::string("gpt_") + mode);
    nn::save_state_dict(*g, dir + "/model.safetensors");
    auto fresh = std::make_shared<nn::GPT>(tiny_gpt());
    apply_quantization_layout(*fresh, quantization_json(*g, cfg), "quantization.json");
    nn::load_state_dict(*fresh, dir + "/model.safetensors");
    Tensor again;
    {
      NoGradGuard ng;
      again = fresh->forward(idx);
    }
    EXPECT_EQ(again.to_vector<float>(), a);
    std::filesystem::remove_all(dir);
  }
}

TEST(QuantizeQat, TrainsTheSharedParametersAndConvertsToWhatItSimulated) {
  auto m = mlp();
  std::vector<Tensor> before;
  for (const auto& p : m->parameters()) before.push_back(p);
  auto calib = batches({32, 20}, 2, 4);
  QuantConfig cfg;
  cfg.mode = "qat";
  prepare_qat(*m, calib, cfg);
  ASSERT_EQ((*m)[0]->type_name(), "QATLinear");
  // Same parameter handles: an optimiser built before prepare_qat trains them.
  std::vector<Tensor> after = m->parameters();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); i++) EXPECT_EQ(after[i].data<float>(), before[i].data<float>());
  m->train();
  auto* q = dynamic_cast<QATLinear*>((*m)[0].get());
  const float hi0 = q->hi;
  Tensor x = 3.0 * randn({16, 20});  // wider than the calibration data: the range grows
  Tensor loss = sum(m->forward(x) * m->forward(x));
  loss.backward();
  EXPECT_GT(q->hi, hi0);
  ASSERT_TRUE(before[0].grad().defined());
  EXPECT_GT(sum(abs(before[0].grad())).item<double>(), 0.0);

  m->eval();
  Tensor probe = randn({6, 20}), simulated;
  {
    NoGradGuard ng;
    simulated = m->forward(probe);
  }
  convert_qat(*m, cfg);
  ASSERT_EQ((*m)[0]->type_name(), "QuantizedLinear");
  expect_close_to_float(*m, probe, simulated, 0.02);
}

}  // namespace
}  // namespace mox::compress
