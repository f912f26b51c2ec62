// mox's side of the side-by-side benchmark (bench/run.sh runs bench/torch_ops.py on the
// same cases). Each case: warm-up, then repeated samples, the median time per iteration.
//
//   bench_ops [--threads T] [--list] [CASE...]        (no CASE: all of them)
//
// Prints one line per result: "<case>\t<impl>\t<seconds per iteration>", impl = "mox", or
// "cblas" for OpenBLAS's cblas_sgemm called directly (the floor mox's matmul sits on).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench/timing.h"
#include "mox/mox.h"
#include "mox/nn/nn.h"
#include "mox/nn/nn.h"
#include "mox/optim/adam.h"

namespace {

using mox::Tensor;
using mox::bench::median_seconds;

void report(const std::string& name, const char* impl, double seconds) {
  std::printf("%s\t%s\t%.9g\n", name.c_str(), impl, seconds);
  std::fflush(stdout);
}

// C = A B with A, B, C [n, n] f32: mox::matmul (allocates C, checks shapes, records no
// graph since nothing requires grad), then cblas_sgemm into a preallocated C.
void bench_sgemm(const std::string& name, int64_t n) {
  mox::Generator g(1);
  Tensor a = mox::randn({n, n}, &g), b = mox::randn({n, n}, &g);
  report(name, "mox", median_seconds([&] { mox::matmul(a, b); }));
  Tensor c = mox::empty({n, n});
  const float *pa = a.data<float>(), *pb = b.data<float>();
  float* pc = c.data<float>();
  int ni = int(n);
  report(name, "cblas", median_seconds([&] {
           cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.0f, pa, ni, pb,
                       ni, 0.0f, pc, ni);
         }));
}

// One training step of the seed MLP: x [64, 784] -> Linear(784,128) ReLU Linear(128,10),
// cross-entropy, backward, Adam.
void bench_mlp_step(const std::string& name) {
  mox::Generator g(2);
  auto model = std::make_shared<mox::nn::Sequential>(
      std::initializer_list<std::shared_ptr<mox::nn::Module>>{
          std::make_shared<mox::nn::Linear>(784, 128), std::make_shared<mox::nn::ReLU>(),
          std::make_shared<mox::nn::Linear>(128, 10)});
  mox::optim::Adam opt(model->parameters(), mox::optim::AdamOptions(1e-3));
  Tensor x = mox::randn({64, 784}, &g), y = mox::randint(0, 10, {64}, &g);
  report(name, "mox", median_seconds([&] {
           opt.zero_grad();
           Tensor loss = mox::cross_entropy(model->forward(x), y);
           loss.backward();
           opt.step();
         }));
}

// conv2d 32 -> 64 channels, 3x3, padding 1 on x [64, 32, 14, 14]: forward + backward
// (gradients of x, weight and bias) with a fixed upstream gradient.
void bench_conv(const std::string& name) {
  mox::Generator g(3);
  Tensor x = mox::randn({64, 32, 14, 14}, &g).requires_grad_(true);
  Tensor w = mox::randn({64, 32, 3, 3}, &g).mul_(0.05).requires_grad_(true);
  Tensor b = mox::randn({64}, &g).requires_grad_(true);
  Tensor gy = mox::randn({64, 64, 14, 14}, &g);
  mox::Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  report(name, "mox", median_seconds([&] {
           x.zero_grad();
           w.zero_grad();
           b.zero_grad();
           mox::conv2d(x, w, b, p).backward(gy);
         }));
}

// softmax over the last dim of x [64, 4096] (inference: no graph).
void bench_softmax(const std::string& name) {
  mox::Generator g(4);
  Tensor x = mox::randn({64, 4096}, &g);
  mox::NoGradGuard ng;
  report(name, "mox", median_seconds([&] { mox::softmax(x, -1); }));
}

// layer_norm over the last dim of x [64, 4096] with weight and bias (inference).
void bench_layer_norm(const std::string& name) {
  mox::Generator g(5);
  Tensor x = mox::randn({64, 4096}, &g);
  Tensor w = mox::randn({4096}, &g), b = mox::randn({4096}, &g);
  mox::NoGradGuard ng;
  report(name, "mox", median_seconds([&] { mox::layer_norm(x, {4096}, w, b, 1e-5); }));
}

// LSTM(32 -> 64), batch_first x [64, 50, 32]: forward, sum(output).backward().
void bench_lstm(const std::string& name) {
  mox::manual_seed(6);
  mox::nn::LSTM lstm(mox::nn::LSTMOptions(32, 64).batch_first(true));
  mox::Generator g(6);
  Tensor x = mox::randn({64, 50, 32}, &g);
  report(name, "mox", median_seconds([&] {
           lstm.zero_grad();
           mox::sum(lstm(x)).backward();
         }));
}

// Causal self-attention q, k, v [32, 4, 128, 32] (f32, requiring grad): forward and
// sum(output).backward(). "attention_fwd_bwd": the fused kernel
// (scaled_dot_product_attention); "attention_naive_fwd_bwd": the composition of mox ops
// softmax(q k^T / sqrt(d) + mask) v, which stores the [32, 4, 128, 128] scores. PyTorch
// 1.13 has no fused attention, so its side runs that explicit composition in both cases.
void bench_attention(const std::string& name, bool fused) {
  const int64_t B = 32, H = 4, T = 128, D = 32;
  mox::Generator g(7);
  Tensor q = mox::randn({B, H, T, D}, &g), k = mox::randn({B, H, T, D}, &g),
         v = mox::randn({B, H, T, D}, &g);
  for (Tensor* t : {&q, &k, &v}) t->requires_grad_(true);
  // additive mask: 0 on and below the diagonal, -inf above
  Tensor mask = mox::empty({T, T});
  float* pm = mask.data<float>();
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j < T; j++) pm[i * T + j] = j > i ? -INFINITY : 0.0f;
  const double scale = 1.0 / std::sqrt(double(D));
  report(name, "mox", median_seconds([&] {
           for (Tensor* t : {&q, &k, &v}) t->zero_grad();
           Tensor o = fused ? mox::scaled_dot_product_attention(q, k, v, true)
                            : mox::matmul(mox::softmax(mox::add(mox::mul(mox::matmul(
                                                                    q, k.transpose(-2, -1)),
                                                                scale),
                                                       mask),
                                              -1),
                                          v);
           mox::sum(o).backward();
         }));
}

const std::vector<std::pair<std::string, std::function<void(const std::string&)>>>& cases() {
  static const std::vector<std::pair<std::string, std::function<void(const std::string&)>>> c = {
      {"sgemm_256", [](const std::string& n) { bench_sgemm(n, 256); }},
      {"sgemm_512", [](const std::string& n) { bench_sgemm(n, 512); }},
      {"sgemm_1024", [](const std::string& n) { bench_sgemm(n, 1024); }},
      {"sgemm_2048", [](const std::string& n) { bench_sgemm(n, 2048); }},
      {"mlp_step", bench_mlp_step},
      {"conv2d_fwd_bwd", bench_conv},
      {"softmax", bench_softmax},
      {"layer_norm", bench_layer_norm},
      {"lstm_fwd_bwd", bench_lstm},
      {"attention_fwd_bwd", [](const std::string& n) { bench_attention(n, true); }},
      {"attention_naive_fwd_bwd", [](const std::string& n) { bench_attention(n, false); }},
  };
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> only;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      if (a == "--threads" && i + 1 < argc) {
        threads = std::atoi(argv[++i]);
      } else if (a == "--list") {
        for (const auto& [name, fn] : cases()) std::printf("%s\n", name.c_str());
        return 0;
      } else if (!a.empty() && a[0] == '-') {
        std::fprintf(stderr, "bench_ops: unknown option %s\n", a.c_str());
        return 2;
      } else {
        only.push_back(a);
      }
    }
    if (threads > 0) mox::set_num_threads(threads);
    std::fprintf(stderr, "bench_ops: %d threads\n", mox::get_num_threads());
    for (const std::string& name : only) {
      bool known = std::any_of(cases().begin(), cases().end(),
                               [&](const auto& c) { return c.first == name; });
      if (!known) {
        std::fprintf(stderr, "bench_ops: unknown case %s (see --list)\n", name.c_str());
        return 2;
      }
    }
    for (const auto& [name, fn] : cases())
      if (only.empty() || std::find(only.begin(), only.end(), name) != only.end()) fn(name);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ops: error: %s\n", e.what());
    return 1;
  }
}
