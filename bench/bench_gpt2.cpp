// mox's side of the GPU benchmark (bench/gpu.sh), the counterpart of bench/gpu/torch_gpt2.py
// and torch_gen.py: the same model (GPT-2 124M, vocab padded to 50304, tied head, GELU-tanh,
// biases), the same step (bf16 autocast, f32 master weights, AdamW lr 6e-4 betas 0.9/0.95,
// weight decay 0.1 on matrices, gradient clipping at 1.0) on uniform random tokens already on
// the device, timed per step with a device synchronisation, median over the timed steps.
// Results are key=value lines (stdout, and appended to --out), like the PyTorch script's.
//
//   bench_gpt2 --mode matmul   [--device cuda] [--matmul-n 8192]
//   bench_gpt2 --mode train    [--device cuda] [--batch 32] [--seq 1024] [--steps 30] [--warmup 5]
//   bench_gpt2 --mode generate [--device cuda] [--batch 1|16] (prompt 64, 128 new tokens, greedy)
//   --tiny: a 2-layer, 64-wide model with a 512-token vocabulary (a CPU smoke test)
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "mox/autograd/node.h"
#include "mox/backend/backend.h"
#include "mox/nn/models/generate.h"
#include "mox/nn/models/gpt.h"
#include "mox/ops/autocast.h"
#include "mox/ops/ops.h"
#include "mox/optim/optim.h"

using namespace mox;

namespace {

std::string g_out;

template <typename T> void emit(const std::string& key, const T& value) {
  std::ostringstream s;
  s.precision(6);
  s << key << "=" << value;
  std::cout << s.str() << std::endl;
  if (!g_out.empty()) std::ofstream(g_out, std::ios::app) << s.str() << "\n";
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Args {
  std::string mode = "train", device = "cuda", precision = "bf16";
  int64_t batch = 32, seq = 1024, steps = 30, warmup = 5, matmul_n = 8192, matmul_iters = 20;
  int64_t new_tokens = 128, prompt = 64;
  bool tiny = false;
};

nn::GPTConfig model_config(const Args& a) {
  nn::GPTConfig c;
  if (a.tiny) {
    c.n_layer = 2;
    c.n_head = 4;
    c.n_embd = 64;
    c.vocab_size = 512;
    c.block_size = std::max<int64_t>(a.seq, a.prompt + a.new_tokens);
  } else {
    c.n_layer = 12;
    c.n_head = 12;
    c.n_embd = 768;
    c.vocab_size = 50304;
    c.block_size = 1024;
  }
  c.dropout = 0;
  c.bias = true;
  return c;
}

void run_matmul(const Args& a, Device dev) {
  const int64_t n = a.matmul_n;
  Tensor x = randn({n, n}).to(DType::BF16).to(dev), y = randn({n, n}).to(DType::BF16).to(dev);
  Backend& be = backend_for(dev);
  NoGradGuard ng;
  for (int i = 0; i < 3; ++i) matmul(x, y);
  be.synchronize();
  std::vector<double> times;
  for (int64_t i = 0; i < a.matmul_iters; ++i) {
    double t0 = now();
    Tensor z = matmul(x, y);
    be.synchronize();
    times.push_back(now() - t0);
  }
  const double flop = 2.0 * double(n) * double(n) * double(n);
  emit("mox_bf16_matmul_n", n);
  emit("mox_bf16_matmul_tflops", flop / median(times) / 1e12);
  emit("mox_bf16_matmul_tflops_best", flop / *std::min_element(times.begin(), times.end()) / 1e12);
}

void run_train(const Args& a, Device dev, DType precision) {
  const nn::GPTConfig c = model_config(a);
  const int64_t B = a.batch, T = a.seq, data_vocab = a.tiny ? 500 : 50257;
  manual_seed(1337);
  auto model = std::make_shared<nn::GPT>(c);
  model->to(dev);
  model->train();
  const int64_t N = model->num_parameters();
  optim::AdamW opt(optim::weight_decay_groups(model->parameters(), 0.1),
                   optim::AdamWOptions(6e-4).betas(0.9, 0.95).eps(1e-8));
  std::vector<Tensor> xs, ys;
  Generator g(7);
  for (int i = 0; i < 8; ++i) {
    Tensor d = randint(0, data_vocab, {B, T + 1}, &g);
    xs.push_back(d.narrow(1, 0, T).contiguous().to(dev));
    ys.push_back(d.narrow(1, 1, T).contiguous().to(dev));
  }
  Backend& be = backend_for(dev);
  auto step = [&](int64_t i) {
    Tensor loss;
    {
      std::optional<AutocastGuard> ac;
      if (precision != DType::F32) ac.emplace(precision);
      Tensor logits = model->forward(xs[size_t(i % 8)]);
      loss = cross_entropy(logits.reshape({B * T, c.vocab_size}), ys[size_t(i % 8)].reshape({B * T}));
    }
    loss.backward();
    optim::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
    opt.zero_grad();
    return loss;
  };
  const std::string prefix = "mox";
  emit(prefix + "_batch", B);
  emit(prefix + "_seq", T);
  emit(prefix + "_precision", dtype_name(precision));
  double t_all = now();
  for (int64_t i = 0; i < a.warmup; ++i) {
    be.synchronize();
    double t0 = now();
    Tensor l = step(i);
    be.synchronize();
    std::cerr << "[mox] warmup step " << i << ": " << (now() - t0) * 1e3 << " ms loss " << l.item<float>() << "\n";
  }
  emit(prefix + "_warmup_total_s", now() - t_all);
  std::vector<double> times;
  Tensor loss;
  be.synchronize();
  for (int64_t i = 0; i < a.steps; ++i) {
    double t0 = now();
    loss = step(a.warmup + i);
    be.synchronize();
    times.push_back(now() - t0);
    if (i % 10 == 0 || i == a.steps - 1) std::cerr << "[mox] step " << i << ": " << times.back() * 1e3 << " ms\n";
  }
  const double med = median(times), tokens = double(B * T);
  const double flops_per_token = 6.0 * double(N) + 6.0 * double(c.n_layer * c.n_embd * T);
  emit(prefix + "_num_params", N);
  emit(prefix + "_steps_timed", times.size());
  emit(prefix + "_ms_per_step", med * 1e3);
  emit(prefix + "_tok_per_s", tokens / med);
  emit(prefix + "_model_tflops", tokens / med * flops_per_token / 1e12);
  emit(prefix + "_final_loss", loss.item<float>());
  const Allocator::Stats st = be.allocator().stats();
  emit(prefix + "_peak_mem_gib", double(st.peak_bytes) / double(1 << 30));
  emit(prefix + "_status", "ok");
}

void run_generate(const Args& a, Device dev, DType precision) {
  const nn::GPTConfig c = model_config(a);
  manual_seed(0);
  auto model = std::make_shared<nn::GPT>(c);
  model->to(dev);
  if (precision != DType::F32) model->to(precision);  // inference weights in the half type
  Generator g(1);
  std::vector<std::vector<int32_t>> prompts(size_t(a.batch));
  for (auto& p : prompts)
    for (int64_t i = 0; i < a.prompt; ++i) p.push_back(int32_t(g.below(uint64_t(a.tiny ? 500 : 50257))));
  nn::GenerateOptions o;
  o.max_new_tokens = a.new_tokens;
  o.sampling.temperature = 0;  // greedy, as the reference
  nn::generate(*model, prompts, o, {});  // warm-up
  std::vector<double> times;
  for (int r = 0; r < 3; ++r) {
    double t0 = now();
    auto out = nn::generate(*model, prompts, o, {});
    times.push_back(now() - t0);
  }
  const std::string key = "mox_generate_b" + std::to_string(a.batch);
  emit(key + "_tok_per_s", double(a.batch * a.new_tokens) / median(times));
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app("mox GPT-2 benchmark (bench/gpu.sh)");
  app.add_option("--mode", a.mode)->check(CLI::IsMember({"matmul", "train", "generate"}));
  app.add_option("--device", a.device);
  app.add_option("--precision", a.precision)->check(CLI::IsMember({"f32", "bf16", "f16"}));
  app.add_option("--batch", a.batch);
  app.add_option("--seq", a.seq);
  app.add_option("--steps", a.steps);
  app.add_option("--warmup", a.warmup);
  app.add_option("--matmul-n", a.matmul_n);
  app.add_option("--matmul-iters", a.matmul_iters);
  app.add_option("--new-tokens", a.new_tokens);
  app.add_option("--out", g_out);
  app.add_flag("--tiny", a.tiny);
  CLI11_PARSE(app, argc, argv);
  try {
    const Device dev = Device::parse(a.device);
    backend_for(dev);
    const DType precision = a.precision == "bf16" ? DType::BF16 : a.precision == "f16" ? DType::F16 : DType::F32;
    emit("mox_device", dev.str());
    if (a.mode == "matmul") run_matmul(a, dev);
    else if (a.mode == "train") run_train(a, dev, precision);
    else run_generate(a, dev, precision);
  } catch (const Error& e) {
    std::cerr << "bench_gpt2: " << e.what() << "\n";
    emit("mox_" + a.mode + "_status", std::string("error: ") + e.what());
    return 1;
  }
  return 0;
}
