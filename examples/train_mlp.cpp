// The seed MLP on Fashion-MNIST through the C++ API: Flatten, Linear 784->128, ReLU,
// Dropout 0.2, Linear 128->10; cross-entropy; Adam 1e-3; batch 64.
//   train_mlp [--epochs N] [--data DIR] [--threads N]
// DIR holds the four IDX files (gzip or plain); default: Debian's dataset-fashion-mnist.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mox/data/datasets/idx.h"
#include "mox/mox.h"
#include "mox/nn/nn.h"
#include "mox/optim/optim.h"

using namespace mox;

int main(int argc, char** argv) {
  int epochs = 3;
  std::string dir = "/usr/share/datasets/fashion-mnist";
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--epochs" && i + 1 < argc) epochs = std::atoi(argv[++i]);
    else if (a == "--data" && i + 1 < argc) dir = argv[++i];
    else if (a == "--threads" && i + 1 < argc) set_num_threads(std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: train_mlp [--epochs N] [--data DIR] [--threads N]\n");
      return 2;
    }
  }
  try {
    // inputs f32 [N,1,28,28] in [0,1], targets i64 [N]
    auto train_set = data::load_fashion_mnist(dir, true), test_set = data::load_fashion_mnist(dir, false);
    Tensor xtr = train_set->inputs(), ytr = train_set->targets();
    Tensor xte = test_set->inputs(), yte = test_set->targets();
    std::printf("Fashion-MNIST: train %s, test %s, %d threads\n", shape_str(xtr.shape()).c_str(),
                shape_str(xte.shape()).c_str(), get_num_threads());

    manual_seed(0);
    Generator gen(0);
    auto model = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(784, 128), std::make_shared<nn::ReLU>(),
        std::make_shared<nn::Dropout>(0.2, &gen), std::make_shared<nn::Linear>(128, 10)});
    optim::Adam opt(model->parameters(), optim::AdamOptions(1e-3));
    const int64_t B = 64, N = xtr.size(0);

    for (int ep = 1; ep <= epochs; ep++) {
      model->train();
      Tensor perm = randint(0, 1 << 30, {N}, &gen);  // random keys -> a permutation by argsort
      std::vector<int64_t> keys = perm.to_vector<int64_t>(), order(N);
      for (int64_t i = 0; i < N; i++) order[i] = i;
      std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
      Tensor idx_all = from_vector(order);
      auto t0 = std::chrono::steady_clock::now();
      double loss_sum = 0;
      int64_t correct = 0, seen = 0;
      for (int64_t s = 0; s + B <= N; s += B) {
        Tensor idx = idx_all.slice(0, s, s + B);
        Tensor xb = index_select(xtr, 0, idx), yb = index_select(ytr, 0, idx);
        Tensor logits = (*model)(xb);
        Tensor loss = cross_entropy(logits, yb);
        opt.zero_grad();
        loss.backward();
        opt.step();
        loss_sum += loss.item<float>() * B;
        correct += sum(eq(argmax(logits, 1), yb)).item<int64_t>();
        seen += B;
      }
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      model->eval();
      int64_t test_correct = 0;
      {
        NoGradGuard ng;
        for (int64_t s = 0; s < xte.size(0); s += 1000) {
          int64_t e = std::min<int64_t>(s + 1000, xte.size(0));
          Tensor pred = argmax((*model)(xte.slice(0, s, e)), 1);
          test_correct += sum(eq(pred, yte.slice(0, s, e))).item<int64_t>();
        }
      }
      std::printf("epoch %d/%d  loss %.4f  accuracy %.4f  test_accuracy %.4f  %.2f s  (%.0f samples/s)\n", ep,
                  epochs, loss_sum / seen, double(correct) / seen, double(test_correct) / xte.size(0), secs,
                  seen / secs);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_mlp: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
