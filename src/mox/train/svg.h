#pragma once
// Charts for the self-contained training report (report.html): each function returns one
// <svg> element as a string, with width/height and a viewBox, that can be inlined in HTML
// and shows without network access or JavaScript. Every piece of text is XML-escaped, so
// metric names, class labels and titles may hold any characters.
//
//   line_chart  metric curves per epoch (loss, accuracy, lr on a log axis)
//   heatmap     confusion matrix (rows = true class, columns = predicted class)
//   roc_chart   ROC curves on the unit square with the chance diagonal
//   bar_chart   grouped bars per category (precision / recall / F1 per class)
//   scatter_chart  points per series (predicted vs true for regression, with a y = x line)
//
// Non-finite points are left out and break a curve in two, so a missing epoch (NaN from
// History::values) shows as a gap instead of a line drawn through it.
#include <cstdint>
#include <string>
#include <vector>

namespace mox::train {

// One curve: points (x[i], y[i]); x and y must have the same length.
struct Series {
  std::string name;
  std::vector<double> x, y;
};

// One group member of a bar chart: one value per category.
struct BarSeries {
  std::string name;
  std::vector<double> values;
};

struct ChartOptions {
  int width = 640;
  int height = 400;
  bool log_y = false;  // log10 y axis (learning rates); points with y <= 0 are left out
  bool integer_x = false;  // x ticks at whole numbers only (epochs): never "1.5"
};

// Axis ticks at multiples of a "nice" step (1, 2 or 5 times a power of ten) covering
// [lo, hi]; the axis then spans [values.front(), values.back()]. A degenerate range
// (lo == hi, or non-finite ends) is widened first, so a constant series still gets an axis.
struct Ticks {
  double step = 1;
  std::vector<double> values;
};
Ticks nice_ticks(double lo, double hi, int target_count = 5);
// Powers of ten covering [lo, hi] (lo > 0), every k-th decade when the span is wide.
Ticks log_ticks(double lo, double hi);
// A tick label with as many decimals as the step needs ("0.2", "0.004", "1500", "1e-05").
std::string format_tick(double value, double step);

// & < > " ' replaced by their entities.
std::string xml_escape(const std::string& text);

// One polyline per run of finite points of each series (a run of one point is a circle),
// gridlines, nice ticks, axis labels and a legend; colours follow the tab10 palette.
std::string line_chart(const std::string& title, const std::string& x_label,
                       const std::string& y_label, const std::vector<Series>& series,
                       const ChartOptions& options = {});

// matrix: rows x cols values, row-major. Each cell (a <rect class="cell">) is shaded from
// white (lowest of 0 and the minimum) to dark blue (the maximum) and shows its value,
// in white on dark cells. row_axis names the rows ("True"), col_axis the columns
// ("Predicted").
std::string heatmap(const std::string& title, const std::vector<std::string>& row_labels,
                    const std::vector<std::string>& col_labels,
                    const std::vector<double>& matrix, const std::string& row_axis,
                    const std::string& col_axis);
std::string heatmap(const std::string& title, const std::vector<std::string>& row_labels,
                    const std::vector<std::string>& col_labels,
                    const std::vector<int64_t>& matrix, const std::string& row_axis,
                    const std::string& col_axis);

// curves: x = false positive rate, y = true positive rate (put the AUC in the name).
// Square plot, both axes 0..1, dashed chance diagonal.
std::string roc_chart(const std::string& title, const std::vector<Series>& curves,
                      int size = 480);

// Grouped bars: for each category, one bar per series. The y axis starts at 0 (or the
// minimum, if negative) and is 0..1 when every value lies in [0, 1].
std::string bar_chart(const std::string& title, const std::vector<std::string>& categories,
                      const std::string& y_label, const std::vector<BarSeries>& series,
                      const ChartOptions& options = {});

// Points as small translucent circles (r = 2.5), one colour per series, non-finite points
// left out. With `identity_line` both axes share one range and a dashed y = x line (class
// "identity") is drawn across a square plot: points on it are perfect predictions.
std::string scatter_chart(const std::string& title, const std::string& x_label,
                          const std::string& y_label, const std::vector<Series>& series,
                          bool identity_line = false, const ChartOptions& options = {});

}  // namespace mox::train
