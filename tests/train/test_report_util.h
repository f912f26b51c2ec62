#pragma once
// Realistic inputs for the report tests: a 10-class run with 5 epochs of history, a binary
// run with one sigmoid output, and a regression run.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mox/train/report.h"

namespace mox::train::testing {

// Deterministic pseudo-random numbers in [0, 1).
struct Lcg {
  uint64_t s;
  explicit Lcg(uint64_t seed) : s(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  double next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return double(s >> 11) / 9007199254740992.0;
  }
};

inline History five_epochs(bool regression) {
  History h;
  for (int e = 0; e < 5; ++e) {
    const double t = e;
    if (regression)
      h.add_epoch({{"loss", 2.0 / (1 + t)}, {"mae", 1.2 / (1 + 0.5 * t)}, {"val_loss", 2.2 / (1 + 0.8 * t)},
                   {"val_mae", 1.3 / (1 + 0.4 * t)}, {"lr", 1e-3 * std::pow(0.5, t)}});
    else
      h.add_epoch({{"loss", 1.9 * std::exp(-0.45 * t)}, {"accuracy", 0.45 + 0.1 * t}, {"val_loss", 2.0 * std::exp(-0.35 * t)},
                   {"val_accuracy", 0.42 + 0.09 * t}, {"lr", 0.1 * std::pow(0.3, t)}});
  }
  return h;
}

// N samples of C classes; probabilities put mass `skill` on the true class most of the time.
inline SplitOutputs classification_split(const std::string& name, int64_t N, int64_t C, uint64_t seed) {
  Lcg r(seed);
  std::vector<float> p(static_cast<size_t>(N * C));
  std::vector<int64_t> y(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    y[size_t(i)] = i % C;
    const int64_t hit = r.next() < 0.8 ? y[size_t(i)] : int64_t(r.next() * double(C)) % C;
    double sum = 0;
    std::vector<double> row(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      row[size_t(c)] = std::exp(2.0 * r.next() + (c == hit ? 3.0 : 0.0));
      sum += row[size_t(c)];
    }
    for (int64_t c = 0; c < C; ++c) p[size_t(i * C + c)] = float(row[size_t(c)] / sum);
  }
  SplitOutputs s;
  s.name = name;
  s.outputs = from_vector(p, {N, C});
  s.targets = from_vector(y);
  s.metrics = {{"loss", 0.6124}};
  return s;
}

inline ReportInput cifar_like() {
  ReportInput in;
  in.title = "cifar10-cnn";
  in.task = "classification";
  in.class_names = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  in.history = five_epochs(false);
  in.splits.push_back(classification_split("test", 1000, 10, 1));
  in.splits.push_back(classification_split("val", 500, 10, 2));
  in.config_toml = "[model]\nname = \"cnn\"\n\n[train]\nepochs = 5\nbatch_size = 128\nlr = 0.1\n";
  in.model_summary =
      "Layer (type)        Output shape     Param #\n"
      "Conv2d              [32, 32, 32]         896\n"
      "ReLU                [32, 32, 32]           0\n"
      "Flatten             [32768]                0\n"
      "Linear              [10]             327,690\n"
      "Total params: 328,586\n";
  in.data_description = "CIFAR-10: 50,000 training and 10,000 test images, 3x32x32";
  in.seconds_per_epoch = {12.5, 11.9, 12.1, 12.0, 11.8};
  in.samples_per_second = 4183.2;
  in.parameters = 328586;
  in.facts = {{"date", "2024-05-01 12:00"}, {"threads", "2"}, {"command", "mox train cifar.toml"}};
  return in;
}

inline ReportInput binary_run() {
  ReportInput in;
  in.title = "spam";
  in.task = "classification";
  in.class_names = {"ham", "spam"};
  in.history = five_epochs(false);
  Lcg r(7);
  const int64_t N = 400;
  std::vector<float> p(static_cast<size_t>(N));
  std::vector<int64_t> y(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    y[size_t(i)] = i % 3 == 0;
    p[size_t(i)] = float(1 / (1 + std::exp(-(y[size_t(i)] ? 1.5 : -1.5) - 2.5 * (r.next() - 0.5) * 2)));
  }
  SplitOutputs s;
  s.name = "test";
  s.outputs = from_vector(p);
  s.targets = from_vector(y);
  s.metrics = {{"loss", 0.31}};
  in.splits.push_back(s);
  in.seconds_per_epoch = {0.8, 0.7, 0.7, 0.7, 0.71};
  in.samples_per_second = 15000;
  in.parameters = 1025;
  return in;
}

inline ReportInput regression_run(int64_t N = 3000) {
  ReportInput in;
  in.title = "housing";
  in.task = "regression";
  in.history = five_epochs(true);
  Lcg r(11);
  std::vector<float> pred(static_cast<size_t>(N)), truth(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    truth[size_t(i)] = float(5 * r.next());
    pred[size_t(i)] = truth[size_t(i)] + float(0.6 * (r.next() - 0.5));
  }
  SplitOutputs s;
  s.name = "test";
  s.outputs = from_vector(pred);
  s.targets = from_vector(truth);
  s.metrics = {{"loss", 0.03}};
  in.splits.push_back(s);
  in.config_toml = "[model]\nlayers = [64, 64]\n";
  in.seconds_per_epoch = {1.5, 1.4, 1.4, 1.45, 1.4};
  in.samples_per_second = 9000;
  in.parameters = 4801;
  return in;
}

}  // namespace mox::train::testing
