#pragma once
// ProgressBar: the per-epoch progress display of Trainer::fit.
// - Interactive (a terminal): one live line redrawn in place with '\r',
//     Epoch 2/5  [=========>....................]  512/938  1.2k it/s  ETA 0:03  loss 0.4123
//   at most every `min_interval` seconds (10 redraws/s), because printing every step of a
//   fast model costs more than the step and floods slow terminals; finish() draws the
//   final state (elapsed time in place of the ETA, validation metrics added) and ends it.
// - Not a terminal (a log file, CI): nothing per step, exactly one line per epoch from
//   finish(), so logs stay greppable and free of '\r' noise:
//     Epoch 2/5  938 steps  3.21 s  292 it/s  loss 0.4123  accuracy 0.8512  val_loss 0.3
// total_steps <= 0 means an epoch of unknown length: no bar and no ETA.
// Number formats: rates with k/M suffixes (1.2k it/s; below 1 it/s the step time in s/it),
// ETA as m:ss (h:mm:ss from an hour), metrics with 4 decimals (scientific when tiny/huge),
// a metric whose key ends in "/s" as a rate ("tok/s 16.6k").
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <utility>

#include "mox/train/history.h"

namespace mox::train {

class ProgressBar {
 public:
  using Clock = std::function<double()>;  // seconds on a monotonic clock

  ProgressBar(int64_t total_steps, int64_t epoch, int64_t epochs, std::ostream& out,
              bool interactive, Clock now = steady_seconds, double min_interval = 0.1);

  // `step` steps of this epoch are done (1..total); `metrics` are the running values.
  void update(int64_t step, const MetricValues& metrics = {});
  // Ends the epoch's display with its final metrics (training and validation).
  void finish(const MetricValues& metrics);

  // Replaces the "Epoch 2/5" prefix (pre-training shows "Steps 101-200/500").
  void set_label(std::string label) { label_ = std::move(label); }

  // How many times the live line was drawn (update() redraws plus finish()).
  int64_t redraws() const { return redraws_; }

  // True when stdout is a terminal (the default choice for `interactive`).
  static bool stdout_is_terminal();
  static double steady_seconds();

  // The compact formats, exposed for tests and for other displays.
  static std::string format_rate(double steps_per_second);  // "292 it/s", "1.2k it/s"
  static std::string format_eta(double seconds);             // "0:03", "1:02:03"
  static std::string format_duration(double seconds);        // "3.21 s", "1:05"
  static std::string format_metric(double v);                // "0.4123", "3.000e-04"

 private:
  std::string prefix() const;  // "Epoch 2/5"
  std::string bar(int64_t step) const;
  void draw(const std::string& line);

  int64_t total_, epoch_, epochs_;
  std::ostream& out_;
  bool interactive_;
  Clock now_;
  double min_interval_;
  double start_;
  double last_draw_ = 0;
  int64_t steps_done_ = 0;
  int64_t redraws_ = 0;
  size_t last_len_ = 0;  // length of the line on screen, to blank what a shorter one leaves
  bool finished_ = false;
  std::string label_;
};

}  // namespace mox::train
