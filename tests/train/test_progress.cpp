// ProgressBar with a fake clock: the exact one-line-per-epoch log output, the live
// interactive line (\r redraws, bar, count, rate, ETA, metrics), redraw throttling, and
// the compact number formats.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "mox/tensor/error.h"
#include "mox/train/progress.h"

namespace mox::train {
namespace {

// A clock the test moves by hand.
struct FakeClock {
  double t = 100.0;
  ProgressBar::Clock fn() {
    return [this] { return t; };
  }
};

int64_t count(const std::string& s, char c) { return std::count(s.begin(), s.end(), c); }

TEST(ProgressBar, LogModePrintsExactlyOneLinePerEpoch) {
  FakeClock clock;
  std::ostringstream out;
  ProgressBar bar(938, 2, 5, out, /*interactive=*/false, clock.fn());
  for (int64_t s = 1; s <= 938; s++) {
    clock.t += 3.21 / 938;
    bar.update(s, {{"loss", 0.5}, {"accuracy", 0.8}});
  }
  EXPECT_EQ(out.str(), "");  // nothing per step
  bar.finish({{"loss", 0.41234}, {"accuracy", 0.85116}, {"val_loss", 0.3}});
  EXPECT_EQ(out.str(),
            "Epoch 2/5  938 steps  3.21 s  292 it/s  loss 0.4123  accuracy 0.8512  "
            "val_loss 0.3000\n");
  EXPECT_EQ(bar.redraws(), 0);
}

TEST(ProgressBar, LabelAndRateMetrics) {
  // Pre-training's display: a step-range label in place of "Epoch", tokens/s as a rate.
  FakeClock clock;
  std::ostringstream out;
  ProgressBar bar(100, 1, 1, out, /*interactive=*/false, clock.fn());
  bar.set_label("Steps 101-200/500");
  clock.t += 20.0;
  bar.finish({{"loss", 2.5}, {"tok/s", 16572.37}, {"it/s", 3.5}});
  EXPECT_EQ(out.str(), "Steps 101-200/500  100 steps  20.0 s  5.00 it/s  loss 2.5000  tok/s 16.6k  it/s 3.5\n");
}

TEST(ProgressBar, LogModeWithoutUpdatesUsesTotalSteps) {
  FakeClock clock;
  std::ostringstream out;
  ProgressBar bar(100, 1, 1, out, false, clock.fn());
  clock.t += 0.05;
  bar.finish({});
  EXPECT_EQ(out.str(), "Epoch 1/1  100 steps  0.05 s  2.0k it/s\n");
  EXPECT_THROW(bar.finish({}), Error);
  EXPECT_THROW(bar.update(1), Error);
}

TEST(ProgressBar, InteractiveDrawsBarCountRateEtaAndMetrics) {
  FakeClock clock;
  std::ostringstream out;
  ProgressBar bar(938, 2, 5, out, /*interactive=*/true, clock.fn());
  clock.t += 0.4;  // 512 steps in 0.4 s: 1280 it/s, 426 left -> 0.33 s
  bar.update(512, {{"loss", 0.4123}, {"accuracy", 0.8512}});
  EXPECT_EQ(out.str(),
            "\rEpoch 2/5  [================>.............]  512/938  1.3k it/s  ETA 0:00  "
            "loss 0.4123 accuracy 0.8512");
  EXPECT_EQ(count(out.str(), '\n'), 0);

  // A slower epoch: the ETA in m:ss.
  std::ostringstream out2;
  FakeClock c2;
  ProgressBar slow(1000, 1, 3, out2, true, c2.fn());
  c2.t += 20;  // 100 steps in 20 s: 5 it/s, 900 left -> 180 s
  slow.update(100);
  EXPECT_NE(out2.str().find("[===>..........................]  100/1000  5.00 it/s  ETA 3:00"),
            std::string::npos)
      << out2.str();
}

TEST(ProgressBar, InteractiveFinishRedrawsFullBarAndEndsTheLine) {
  FakeClock clock;
  std::ostringstream out;
  ProgressBar bar(10, 1, 1, out, true, clock.fn());
  clock.t += 1;
  bar.update(5, {{"loss", 1.23456789}, {"accuracy", 0.5}, {"lr", 0.001}});
  clock.t += 1;
  bar.update(10, {{"loss", 1.0}});  // shorter line: must blank the rest of the old one
  const std::string before = out.str();
  const size_t first_len = before.find('\r', 1) - 1;
  const std::string second = before.substr(first_len + 2);
  EXPECT_EQ(second.size(), first_len) << "a shorter redraw must overwrite the old tail";
  EXPECT_EQ(second.find_last_not_of(' ') + 1,
            std::string("Epoch 1/1  [==============================]  10/10  5.00 it/s  "
                        "ETA 0:00  loss 1.0000")
                .size());
  bar.finish({{"loss", 1.0}, {"val_loss", 2.5e-5}});
  const std::string s = out.str();
  EXPECT_EQ(count(s, '\n'), 1);
  EXPECT_EQ(s.back(), '\n');
  const std::string last = s.substr(s.rfind('\r') + 1);
  EXPECT_EQ(last.substr(0, last.find_last_not_of(" \n") + 1),
            "Epoch 1/1  [==============================]  10/10  5.00 it/s  2.00 s  "
            "loss 1.0000 val_loss 2.500e-05");
  EXPECT_EQ(bar.redraws(), 3);
}

TEST(ProgressBar, ThrottlesRedrawsToTenPerSecond) {
  FakeClock clock;
  std::ostringstream out;
  ProgressBar bar(2000, 1, 1, out, true, clock.fn());
  for (int64_t s = 1; s <= 2000; s++) {  // 2000 steps of 1 ms = 2 s
    clock.t += 0.001;
    bar.update(s, {{"loss", 1.0 / static_cast<double>(s)}});
  }
  // The first update draws, then one every 0.1 s: about 20 in 2 s, never 2000.
  EXPECT_GE(bar.redraws(), 19);
  EXPECT_LE(bar.redraws(), 21);
  EXPECT_EQ(count(out.str(), '\r'), bar.redraws());
  bar.finish({{"loss", 0.1}});
  EXPECT_EQ(count(out.str(), '\r'), bar.redraws());
  EXPECT_NE(out.str().find("2000/2000"), std::string::npos);
}

TEST(ProgressBar, UnknownLengthShowsStepsWithoutBarOrEta) {
  FakeClock clock;
  std::ostringstream out;
  ProgressBar bar(0, 1, 2, out, true, clock.fn());
  clock.t += 2;
  bar.update(50);
  EXPECT_EQ(out.str(), "\rEpoch 1/2  50 steps  25.0 it/s");
  bar.finish({});
  EXPECT_NE(out.str().find("Epoch 1/2  50 steps  25.0 it/s  2.00 s\n"), std::string::npos)
      << out.str();
}

TEST(ProgressBar, RejectsBadArguments) {
  std::ostringstream out;
  EXPECT_THROW(ProgressBar(10, 0, 5, out, false), Error);
  EXPECT_THROW(ProgressBar(10, 6, 5, out, false), Error);
  ProgressBar bar(10, 1, 5, out, false);
  EXPECT_THROW(bar.update(11), Error);
  EXPECT_THROW(bar.update(-1), Error);
}

TEST(ProgressBar, CompactFormats) {
  EXPECT_EQ(ProgressBar::format_rate(0.5), "2.00 s/it");
  EXPECT_EQ(ProgressBar::format_rate(3.14159), "3.14 it/s");
  EXPECT_EQ(ProgressBar::format_rate(42.42), "42.4 it/s");
  EXPECT_EQ(ProgressBar::format_rate(292.1), "292 it/s");
  EXPECT_EQ(ProgressBar::format_rate(1234), "1.2k it/s");
  EXPECT_EQ(ProgressBar::format_rate(56789), "57k it/s");
  EXPECT_EQ(ProgressBar::format_rate(3.4e6), "3.4M it/s");
  EXPECT_EQ(ProgressBar::format_rate(0), "- it/s");
  EXPECT_EQ(ProgressBar::format_eta(3.4), "0:03");
  EXPECT_EQ(ProgressBar::format_eta(125), "2:05");
  EXPECT_EQ(ProgressBar::format_eta(3723), "1:02:03");
  EXPECT_EQ(ProgressBar::format_eta(-1), "-:--");
  EXPECT_EQ(ProgressBar::format_duration(3.214), "3.21 s");
  EXPECT_EQ(ProgressBar::format_duration(42.04), "42.0 s");
  EXPECT_EQ(ProgressBar::format_duration(65), "1:05");
  EXPECT_EQ(ProgressBar::format_metric(0.41234), "0.4123");
  EXPECT_EQ(ProgressBar::format_metric(0), "0.0000");
  EXPECT_EQ(ProgressBar::format_metric(3e-4), "3.000e-04");
  EXPECT_EQ(ProgressBar::format_metric(-12.5), "-12.5000");
  EXPECT_EQ(ProgressBar::format_metric(NAN), "nan");
}

}  // namespace
}  // namespace mox::train
