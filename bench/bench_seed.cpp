// The seed models (examples/mlp.toml, examples/cnn.toml) trained on Fashion-MNIST exactly as
// a trainer runs them, timed the way PyTorch's anchors time theirs
// (/work/shared/anchors/cpu/bench_mlp.py, bench_cnn.py): each epoch shuffles the 60k
// training images, and every step gathers its batch with index_select, runs forward,
// cross_entropy, zero_grad, backward, an Adam step (lr 1e-3, eps 1e-7), loss.item() and
// counts correct predictions; the epoch's wall and CPU (user+sys) time covers all of it,
// the last partial batch included (938 steps at batch 64). Evaluation (10k test images,
// batch 1000) is not timed; inference throughput is timed afterwards in images/s at batch
// 1000 (warm-up pass, then repeats of >= 0.5 s, as the anchors do; --infer-reps 0 skips it).
//
//   bench_seed [--model mlp|cnn] [--threads N] [--epochs E] [--steps S] [--batch B]
//              [--infer-reps R] [--init xavier|default] [--seed S] [--profile] [--no-eval]
//              [--data DIR] [--bf16]
//
// --steps S: time S steps of the first epoch only (a quick ms/step figure; the accuracy is
// then that of a partly trained model). --init xavier (default) is the anchors' init
// (xavier_uniform weights, zero biases); default keeps PyTorch's layer defaults.
// --profile: adds the time per step spent in each phase (gather, forward, loss, backward,
// step, bookkeeping), measured with a clock around each. --no-eval skips the test-set
// evaluation after each epoch (for profilers: it would outweigh a short run's forwards).
// --bf16: after the f32 figures, the trained model's dense layers are converted to bf16 (as
// `mox eval --precision bf16` does; convolutions stay f32) and the test accuracy and
// inference throughput are measured again (bf16 products run on oneDNN's AMX /
// AVX512-BF16 kernels when mox has it).
// The last line is one JSON object with the anchors' keys (epoch_s, epoch_cpu_s, test_acc,
// infer_img_per_s; with --bf16 also bf16_test_acc, bf16_infer_img_per_s), for bench/seed.sh.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mox/data/datasets/idx.h"
#include "mox/io/config.h"
#include "mox/mox.h"
#include "mox/nn/init.h"
#include "mox/nn/models/build_model.h"
#include "mox/nn/nn.h"
#include "mox/optim/optim.h"

using namespace mox;

namespace {

double wall_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpu_now() {  // user + sys of all threads of this process
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); i++) {
    char b[32];
    std::snprintf(b, sizeof b, "%s%.6g", i ? ", " : "", v[i]);
    s += b;
  }
  return s + "]";
}

// A permutation of [0, n) from gen: random keys, argsorted.
Tensor permutation(int64_t n, Generator& gen) {
  std::vector<int64_t> keys = randint(0, int64_t(1) << 40, {n}, &gen).to_vector<int64_t>(), order(n);
  for (int64_t i = 0; i < n; i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  return from_vector(order);
}

struct Options {
  std::string model = "cnn", init = "xavier", data = "/usr/share/datasets/fashion-mnist";
  int threads = 0, epochs = 1, infer_reps = 3;
  int64_t steps = 0, batch = 64;
  uint64_t seed = 0;
  bool profile = false, eval = true, bf16 = false;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "bench_seed: %s\nusage: bench_seed [--model mlp|cnn] [--threads N] [--epochs E] "
               "[--steps S] [--batch B] [--infer-reps R] [--init xavier|default] [--seed S] "
               "[--profile] [--no-eval] [--data DIR] [--bf16]\n",
               msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--model") o.model = val();
    else if (a == "--threads") o.threads = std::atoi(val().c_str());
    else if (a == "--epochs") o.epochs = std::atoi(val().c_str());
    else if (a == "--steps") o.steps = std::atoll(val().c_str());
    else if (a == "--batch") o.batch = std::atoll(val().c_str());
    else if (a == "--infer-reps") o.infer_reps = std::atoi(val().c_str());
    else if (a == "--init") o.init = val();
    else if (a == "--seed") o.seed = std::strtoull(val().c_str(), nullptr, 10);
    else if (a == "--data") o.data = val();
    else if (a == "--profile") o.profile = true;
    else if (a == "--no-eval") o.eval = false;
    else if (a == "--bf16") o.bf16 = true;
    else usage(("unknown argument " + a).c_str());
  }
  if (o.model != "mlp" && o.model != "cnn") usage("--model must be mlp or cnn");
  if (o.init != "xavier" && o.init != "default") usage("--init must be xavier or default");
  if (o.epochs < 1 || o.batch < 1 || o.steps < 0 || o.infer_reps < 0) usage("counts must be positive");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    if (o.threads > 0) set_num_threads(o.threads);
    auto train_set = data::load_fashion_mnist(o.data, true), test_set = data::load_fashion_mnist(o.data, false);
    Tensor xtr = train_set->inputs(), ytr = train_set->targets();
    Tensor xte = test_set->inputs(), yte = test_set->targets();

    manual_seed(o.seed);
    auto built = nn::build_model(io::load_config(std::string(MOX_SOURCE_DIR) + "/examples/" + o.model + ".toml").model);
    // The loss takes logits: a final Softmax (Keras's Dense(10, softmax)) is left out, as
    // the trainer folds it into the loss.
    auto model = std::make_shared<nn::Sequential>();
    for (size_t i = 0; i < built->size(); i++)
      if (i + 1 < built->size() || (*built)[i]->type_name() != "Softmax")
        model->push_back(built->named_children().items()[i].first, (*built)[i]);
    if (o.init == "xavier") {
      NoGradGuard ng;
      for (auto& [name, p] : model->named_parameters()) {
        if (p.dim() >= 2) nn::init::xavier_uniform_(p);
        else nn::init::zeros_(p);
      }
    }
    optim::AdamOptions ao(1e-3);
    ao.eps(1e-7);
    optim::Adam opt(model->parameters(), ao);
    Generator gen(o.seed);
    const int64_t N = xtr.size(0), B = o.batch;
    std::printf("bench_seed: %s, %lld parameters, %d threads, batch %lld, train %s, test %s\n", o.model.c_str(),
                (long long)[&] {
                  int64_t n = 0;
                  for (auto& p : model->parameters()) n += p.numel();
                  return n;
                }(),
                get_num_threads(), (long long)B, shape_str(xtr.shape()).c_str(), shape_str(xte.shape()).c_str());

    auto evaluate = [&]() {
      model->eval();
      NoGradGuard ng;
      int64_t correct = 0;
      for (int64_t s = 0; s < xte.size(0); s += 1000) {
        int64_t e = std::min<int64_t>(s + 1000, xte.size(0));
        correct += sum(eq(argmax((*model)(xte.slice(0, s, e)), 1), yte.slice(0, s, e))).item<int64_t>();
      }
      model->train();
      return double(correct) / double(xte.size(0));
    };

    enum { kGather, kForward, kLoss, kBackward, kStep, kBook, kPhases };
    const char* phase_names[kPhases] = {"gather", "forward", "loss", "backward", "step", "bookkeeping"};
    std::vector<double> epoch_s, epoch_cpu_s, accs, step_ms;
    double phase[kPhases] = {};
    int64_t phase_steps = 0;
    model->train();
    for (int ep = 1; ep <= o.epochs; ep++) {
      Tensor perm = permutation(N, gen);
      const int64_t end = o.steps > 0 ? std::min(N, o.steps * B) : N;
      double t0 = wall_now(), c0 = cpu_now();
      double loss_sum = 0;
      int64_t correct = 0, seen = 0, steps = 0;
      for (int64_t s = 0; s < end; s += B) {
        double tp = o.profile ? wall_now() : 0, tq;
        auto mark = [&](int ph) {
          if (!o.profile) return;
          tq = wall_now();
          phase[ph] += tq - tp;
          tp = tq;
        };
        Tensor idx = perm.slice(0, s, std::min(s + B, N));
        Tensor xb = index_select(xtr, 0, idx), yb = index_select(ytr, 0, idx);
        mark(kGather);
        Tensor logits = (*model)(xb);
        mark(kForward);
        Tensor loss = cross_entropy(logits, yb);
        mark(kLoss);
        opt.zero_grad();
        loss.backward();
        mark(kBackward);
        opt.step();
        mark(kStep);
        loss_sum += loss.item<float>();
        correct += sum(eq(argmax(logits.detach(), 1), yb)).item<int64_t>();
        seen += idx.size(0);
        steps++;
        mark(kBook);
      }
      double secs = wall_now() - t0, cpu = cpu_now() - c0;
      phase_steps += steps;
      epoch_s.push_back(secs);
      epoch_cpu_s.push_back(cpu);
      step_ms.push_back(1e3 * secs / double(steps));
      double acc = o.eval ? evaluate() : 0.0;
      accs.push_back(acc);
      std::printf("epoch %d: %.3f s (cpu %.3f s)  %lld steps, %.3f ms/step  train_loss %.4f  train_acc %.4f  "
                  "test_acc %.4f\n",
                  ep, secs, cpu, (long long)steps, step_ms.back(), loss_sum / double(steps),
                  double(correct) / double(seen), acc);
      std::fflush(stdout);
    }
    if (o.profile) {
      std::printf("per step (ms):");
      for (int i = 0; i < kPhases; i++) std::printf("  %s %.3f", phase_names[i], 1e3 * phase[i] / double(phase_steps));
      std::printf("\n");
    }

    // inference at batch 1000 over the test set
    model->eval();
    auto time_inference = [&]() {
      std::vector<double> ips;
      if (o.infer_reps == 0) return ips;
      NoGradGuard ng;
      auto pass = [&]() {
        int64_t sink = 0;
        for (int64_t s = 0; s < xte.size(0); s += 1000)
          sink += argmax((*model)(xte.slice(0, s, std::min<int64_t>(s + 1000, xte.size(0)))), 1).numel();
        return sink;
      };
      double t0 = wall_now();
      pass();
      double warm = wall_now() - t0;
      int passes = std::max(1, int(0.5 / warm + 0.999));
      for (int r = 0; r < o.infer_reps; r++) {
        t0 = wall_now();
        for (int k = 0; k < passes; k++) pass();
        ips.push_back(double(passes) * double(xte.size(0)) / (wall_now() - t0));
      }
      return ips;
    };
    std::vector<double> ips = time_inference();
    if (ips.empty()) ips.push_back(0.0);
    std::printf("inference: %.0f images/s (median of %d, batch 1000)\n", median(ips), o.infer_reps);
    std::string bf16_json;
    if (o.bf16) {
      // The same trained model with its dense layers in bf16, as `mox eval --precision bf16`
      // runs it: Linear rounds its f32 input to bf16; convolutions stay f32.
      const double acc32 = o.eval ? evaluate() : 0.0;
      for (auto& [name, m] : model->named_modules())
        if (m->type_name() == "Linear") m->to(DType::BF16);
      const double acc16 = evaluate();
      model->eval();
      std::vector<double> ips16 = time_inference();
      if (ips16.empty()) ips16.push_back(0.0);
      std::printf("bf16: test_acc %.4f (f32 %.4f), inference %.0f images/s (median of %d, batch 1000), "
                  "%.2fx f32\n",
                  acc16, acc32, median(ips16), o.infer_reps, median(ips) > 0 ? median(ips16) / median(ips) : 0.0);
      bf16_json = ", \"bf16_test_acc\": " + std::to_string(acc16) +
                  ", \"bf16_infer_img_per_s\": {\"max\": " +
                  std::to_string(*std::max_element(ips16.begin(), ips16.end())) +
                  ", \"median\": " + std::to_string(median(ips16)) + ", \"all\": " + json_list(ips16) + "}";
    }
    std::printf("{\"bench\": \"%s\", \"impl\": \"mox\", \"threads\": %d, \"batch\": %lld, \"epochs\": %d, "
                "\"steps\": %lld, \"epoch_s\": {\"min\": %.6g, \"median\": %.6g, \"all\": %s}, "
                "\"epoch_cpu_s\": %s, \"ms_per_step\": %s, \"test_acc\": %s, "
                "\"infer_img_per_s\": {\"max\": %.6g, \"median\": %.6g, \"all\": %s}%s}\n",
                o.model.c_str(), get_num_threads(), (long long)B, o.epochs, (long long)o.steps,
                *std::min_element(epoch_s.begin(), epoch_s.end()), median(epoch_s), json_list(epoch_s).c_str(),
                json_list(epoch_cpu_s).c_str(), json_list(step_ms).c_str(), json_list(accs).c_str(),
                *std::max_element(ips.begin(), ips.end()), median(ips), json_list(ips).c_str(), bf16_json.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_seed: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
