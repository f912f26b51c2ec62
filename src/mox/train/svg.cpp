#include "mox/train/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "mox/tensor/error.h"

namespace mox::train {
namespace {

// matplotlib's tab10: distinct colours that stay distinguishable in print.
const char* const kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
const char* colour(size_t i) { return kPalette[i % 10]; }

// A coordinate with at most two decimals, trailing zeros dropped ("12.5", "40").
std::string num(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s(buf);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

std::string value_text(double v) {
  if (std::isnan(v)) return "nan";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Rough width of a label in pixels at 12px sans-serif: enough to size margins.
double text_width(const std::string& s, double font_px = 12) {
  return 0.6 * font_px * static_cast<double>(s.size());
}
double max_text_width(const std::vector<std::string>& labels, double font_px = 12) {
  double w = 0;
  for (const auto& l : labels) w = std::max(w, text_width(l, font_px));
  return w;
}

void open_svg(std::string& out, double width, double height) {
  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" +
         num(height) + "\" viewBox=\"0 0 " + num(width) + " " + num(height) +
         "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  out += "<rect x=\"0\" y=\"0\" width=\"" + num(width) + "\" height=\"" + num(height) +
         "\" fill=\"#ffffff\"/>\n";
}

// <text> at (x, y); `extra` holds further attributes (already escaped).
void text(std::string& out, double x, double y, const std::string& content,
          const std::string& anchor = "middle", const std::string& extra = "") {
  out += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" text-anchor=\"" + anchor + "\"" +
         (extra.empty() ? "" : " " + extra) + ">" + xml_escape(content) + "</text>\n";
}

// Text rotated by `degrees` about its anchor point (x, y).
void rotated_text(std::string& out, double x, double y, double degrees,
                  const std::string& content, const std::string& anchor) {
  out += "<text transform=\"translate(" + num(x) + "," + num(y) + ") rotate(" + num(degrees) +
         ")\" text-anchor=\"" + anchor + "\">" + xml_escape(content) + "</text>\n";
}

void line(std::string& out, double x1, double y1, double x2, double y2,
          const std::string& stroke, const std::string& extra = "") {
  out += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" +
         num(y2) + "\" stroke=\"" + stroke + "\"" + (extra.empty() ? "" : " " + extra) +
         "/>\n";
}

void title_text(std::string& out, double width, const std::string& title) {
  text(out, width / 2, 22, title, "middle", "font-size=\"15\" font-weight=\"bold\"");
}

// One axis: data range [lo, hi] mapped onto pixels [p0, p1] (p1 < p0 for y, which grows down).
struct Axis {
  double lo = 0, hi = 1, p0 = 0, p1 = 1;
  bool log = false;
  double map(double v) const {
    double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                   : (v - lo) / (hi - lo);
    return p0 + t * (p1 - p0);
  }
};

struct Plot {
  Axis x, y;
  double left() const { return x.p0; }
  double right() const { return x.p1; }
  double top() const { return y.p1; }
  double bottom() const { return y.p0; }
};

std::vector<std::string> tick_labels(const Ticks& t, bool log) {
  std::vector<std::string> labels;
  for (double v : t.values) {
    if (log) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", v);
      labels.emplace_back(buf);
    } else {
      labels.push_back(format_tick(v, t.step));
    }
  }
  return labels;
}

// Gridlines, tick labels and the frame; x ticks may be empty (bar charts label categories).
void draw_grid(std::string& out, const Plot& p, const Ticks* xt, const Ticks& yt) {
  if (xt) {
    auto labels = tick_labels(*xt, false);
    for (size_t i = 0; i < xt->values.size(); ++i) {
      double px = p.x.map(xt->values[i]);
      line(out, px, p.top(), px, p.bottom(), "#e5e5e5");
      text(out, px, p.bottom() + 16, labels[i]);
    }
  }
  auto labels = tick_labels(yt, p.y.log);
  for (size_t i = 0; i < yt.values.size(); ++i) {
    double py = p.y.map(yt.values[i]);
    line(out, p.left(), py, p.right(), py, "#e5e5e5");
    text(out, p.left() - 6, py + 4, labels[i], "end");
  }
  out += "<rect x=\"" + num(p.left()) + "\" y=\"" + num(p.top()) + "\" width=\"" +
         num(p.right() - p.left()) + "\" height=\"" + num(p.bottom() - p.top()) +
         "\" fill=\"none\" stroke=\"#333333\"/>\n";
}

bool drawable(double x, double y, bool log_y) {
  return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0);
}

// Each run of drawable points becomes a polyline (a lone point a circle), so a NaN
// leaves a gap instead of joining its neighbours.
void draw_series(std::string& out, const Plot& p, const Series& s, const char* stroke) {
  out += "<g class=\"series\"><title>" + xml_escape(s.name) + "</title>\n";
  size_t i = 0, n = s.x.size();
  while (i < n) {
    if (!drawable(s.x[i], s.y[i], p.y.log)) { ++i; continue; }
    size_t j = i;
    while (j < n && drawable(s.x[j], s.y[j], p.y.log)) ++j;
    if (j - i == 1) {
      out += "<circle cx=\"" + num(p.x.map(s.x[i])) + "\" cy=\"" + num(p.y.map(s.y[i])) +
             "\" r=\"3\" fill=\"" + stroke + "\"/>\n";
    } else {
      out += "<polyline fill=\"none\" stroke=\"" + std::string(stroke) +
             "\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"";
      for (size_t k = i; k < j; ++k) {
        if (k > i) out += ' ';
        out += num(p.x.map(s.x[k])) + "," + num(p.y.map(s.y[k]));
      }
      out += "\"/>\n";
    }
    i = j;
  }
  out += "</g>\n";
}

// Legend entries stacked from (x, y): a short coloured line (or square) and the name.
void draw_legend(std::string& out, double x, double y, const std::vector<std::string>& names,
                 bool squares) {
  for (size_t i = 0; i < names.size(); ++i) {
    double ly = y + 18.0 * static_cast<double>(i);
    if (squares) {
      out += "<rect x=\"" + num(x + 4) + "\" y=\"" + num(ly - 5) +
             "\" width=\"10\" height=\"10\" fill=\"" + colour(i) + "\"/>\n";
    } else {
      line(out, x, ly, x + 18, ly, colour(i), "stroke-width=\"3\"");
    }
    text(out, x + 24, ly + 4, names[i], "start");
  }
}

double legend_width(const std::vector<std::string>& names) {
  if (names.empty()) return 20;
  return std::min(220.0, 40 + max_text_width(names));
}

void check_size(const char* where, int width, int height) {
  MOX_CHECK(width >= 200 && height >= 150, where,
            "chart size " + std::to_string(width) + "x" + std::to_string(height) +
                " is too small (at least 200x150)");
}

void check_series(const char* where, const std::vector<Series>& series) {
  for (const auto& s : series)
    MOX_CHECK(s.x.size() == s.y.size(), where,
              "series '" + s.name + "' has " + std::to_string(s.x.size()) + " x values but " +
                  std::to_string(s.y.size()) + " y values");
}

std::string heatmap_impl(const std::string& title, const std::vector<std::string>& row_labels,
                         const std::vector<std::string>& col_labels,
                         const std::vector<double>& values,
                         const std::vector<std::string>& cell_text,
                         const std::string& row_axis, const std::string& col_axis) {
  const size_t R = row_labels.size(), C = col_labels.size();
  MOX_CHECK(R > 0 && C > 0, "heatmap", "needs at least one row and one column label");
  MOX_CHECK(values.size() == R * C, "heatmap",
            "matrix has " + std::to_string(values.size()) + " values, expected rows*cols = " +
                std::to_string(R) + "*" + std::to_string(C));
  double lo = 0, hi = -std::numeric_limits<double>::infinity();
  for (double v : values)
    if (std::isfinite(v)) { lo = std::min(lo, v); hi = std::max(hi, v); }

  const double cell = std::clamp(std::round(480.0 / static_cast<double>(std::max(R, C))), 14.0, 56.0);
  const double font = std::clamp(cell * 0.3, 7.0, 13.0);
  // Column labels wider than a cell are turned 45 degrees so they do not overlap.
  const bool rotate_cols = max_text_width(col_labels) > cell - 4;
  const double left = 30 + std::min(160.0, max_text_width(row_labels) + 10);
  const double top = 40;
  const double col_label_h = rotate_cols ? std::min(160.0, 0.75 * max_text_width(col_labels)) + 14 : 20;
  const double bottom = col_label_h + 28;
  const double width = std::max(left + cell * C + 20, text_width(title, 15) + 40);
  const double height = top + cell * R + bottom;

  std::string out;
  open_svg(out, width, height);
  title_text(out, width, title);
  for (size_t r = 0; r < R; ++r) {
    for (size_t c = 0; c < C; ++c) {
      const double v = values[r * C + c];
      const double x = left + cell * c, y = top + cell * r;
      double t = (std::isfinite(v) && hi > lo) ? (v - lo) / (hi - lo) : 0;
      // White -> dark blue (matplotlib's "Blues" end points).
      int red = static_cast<int>(std::lround(255 + t * (8 - 255)));
      int green = static_cast<int>(std::lround(255 + t * (48 - 255)));
      int blue = static_cast<int>(std::lround(255 + t * (107 - 255)));
      std::string fill = std::isfinite(v) ? "rgb(" + std::to_string(red) + "," +
                                                std::to_string(green) + "," +
                                                std::to_string(blue) + ")"
                                          : "#cccccc";
      out += "<rect class=\"cell\" x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" +
             num(cell) + "\" height=\"" + num(cell) + "\" fill=\"" + fill +
             "\" stroke=\"#d9d9d9\"><title>" +
             xml_escape(row_axis + " " + row_labels[r] + ", " + col_axis + " " +
                        col_labels[c] + ": " + cell_text[r * C + c]) +
             "</title></rect>\n";
      text(out, x + cell / 2, y + cell / 2 + font * 0.35, cell_text[r * C + c], "middle",
           "font-size=\"" + num(font) + "\" fill=\"" + (t > 0.5 ? "#ffffff" : "#000000") +
               "\"");
    }
  }
  for (size_t r = 0; r < R; ++r)
    text(out, left - 6, top + cell * r + cell / 2 + 4, row_labels[r], "end");
  const double grid_bottom = top + cell * R;
  for (size_t c = 0; c < C; ++c) {
    const double cx = left + cell * c + cell / 2;
    if (rotate_cols)
      rotated_text(out, cx, grid_bottom + 12, -45, col_labels[c], "end");
    else
      text(out, cx, grid_bottom + 16, col_labels[c]);
  }
  text(out, left + cell * C / 2, height - 10, col_axis, "middle", "font-weight=\"bold\"");
  rotated_text(out, 14, top + cell * R / 2, -90, row_axis, "middle");
  out += "</svg>\n";
  return out;
}

// Ticks at every whole number covering [lo, hi] (a single value gets one on each side).
Ticks integer_ticks(double lo, double hi) {
  double a = std::floor(lo), b = std::ceil(hi);
  if (b <= a) { a -= 1; b += 1; }
  Ticks t;
  t.step = 1;
  for (double v = a; v <= b + 0.5; v += 1) t.values.push_back(v);
  return t;
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  return out;
}

Ticks nice_ticks(double lo, double hi, int target_count) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    if (std::isfinite(lo)) hi = lo;
    else if (std::isfinite(hi)) lo = hi;
    else { lo = 0; hi = 1; }
  }
  if (lo > hi) std::swap(lo, hi);
  // A (nearly) constant range would give a zero step: widen it around the value.
  if (hi - lo <= 1e-9 * std::max(std::fabs(lo), std::fabs(hi))) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target_count);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double nice = f <= 1 + 1e-9 ? 1 : f <= 2 + 1e-9 ? 2 : f <= 5 + 1e-9 ? 5 : 10;
  Ticks t;
  t.step = nice * mag;
  const double k0 = std::floor(lo / t.step + 1e-9), k1 = std::ceil(hi / t.step - 1e-9);
  for (double k = k0; k <= k1 + 0.5; k += 1) {
    double v = k * t.step;
    t.values.push_back(v == 0 ? 0.0 : v);  // no "-0"
  }
  return t;
}

Ticks log_ticks(double lo, double hi) {
  MOX_CHECK(lo > 0 && hi > 0 && std::isfinite(lo) && std::isfinite(hi), "log_ticks",
            "a log axis needs a finite positive range, got [" + value_text(lo) + ", " +
                value_text(hi) + "]");
  if (lo > hi) std::swap(lo, hi);
  int e0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  int e1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  if (e1 <= e0) { e0 -= 1; e1 = e0 + 2; }
  const int stride = std::max(1, (e1 - e0 + 5) / 6);
  Ticks t;
  t.step = stride;
  for (int e = e0;; e += stride) {
    t.values.push_back(std::pow(10.0, e));
    if (e >= e1) break;
  }
  return t;
}

std::string format_tick(double value, double step) {
  char buf[48];
  if (std::fabs(value) < std::fabs(step) * 1e-9) return "0";
  if (step < 1e-4 || step >= 1e6) {
    std::snprintf(buf, sizeof buf, "%g", value);
  } else {
    const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  }
  return buf;
}

namespace {

// The range of the drawable points of all series; a unit range (a decade on a log axis)
// when there are none.
struct Extent {
  double xmin, xmax, ymin, ymax;
};
Extent data_extent(const std::vector<Series>& series, bool log_y) {
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i)
      if (drawable(s.x[i], s.y[i], log_y)) {
        xmin = std::min(xmin, s.x[i]); xmax = std::max(xmax, s.x[i]);
        ymin = std::min(ymin, s.y[i]); ymax = std::max(ymax, s.y[i]);
      }
  if (!(xmin <= xmax)) { xmin = 0; xmax = 1; }
  if (!(ymin <= ymax)) { ymin = log_y ? 1 : 0; ymax = log_y ? 10 : 1; }
  return {xmin, xmax, ymin, ymax};
}

}  // namespace

std::string line_chart(const std::string& title, const std::string& x_label,
                       const std::string& y_label, const std::vector<Series>& series,
                       const ChartOptions& options) {
  check_size("line_chart", options.width, options.height);
  check_series("line_chart", series);
  const bool log_y = options.log_y;
  auto [xmin, xmax, ymin, ymax] = data_extent(series, log_y);

  std::vector<std::string> names;
  for (const auto& s : series) names.push_back(s.name);
  const double W = options.width, H = options.height;
  const double left = 70, right = legend_width(names), top = 36, bottom = 48;
  MOX_CHECK(W - left - right >= 60, "line_chart",
            "width " + std::to_string(options.width) + " leaves no room for the plot beside the legend");

  Plot p;
  p.x.p0 = left; p.x.p1 = W - right;
  p.y.p0 = H - bottom; p.y.p1 = top;
  Ticks xt = nice_ticks(xmin, xmax, std::max(2, static_cast<int>((p.x.p1 - p.x.p0) / 80)));
  if (options.integer_x && xt.step < 1) xt = integer_ticks(xmin, xmax);
  const Ticks yt = log_y ? log_ticks(ymin, ymax)
                         : nice_ticks(ymin, ymax, std::max(2, static_cast<int>((p.y.p0 - p.y.p1) / 50)));
  p.x.lo = xt.values.front(); p.x.hi = xt.values.back();
  p.y.lo = yt.values.front(); p.y.hi = yt.values.back();
  p.y.log = log_y;

  std::string out;
  open_svg(out, W, H);
  title_text(out, W, title);
  draw_grid(out, p, &xt, yt);
  for (size_t i = 0; i < series.size(); ++i) draw_series(out, p, series[i], colour(i));
  draw_legend(out, p.right() + 12, p.top() + 10, names, false);
  text(out, (p.left() + p.right()) / 2, H - 10, x_label);
  rotated_text(out, 16, (p.top() + p.bottom()) / 2, -90, y_label, "middle");
  out += "</svg>\n";
  return out;
}

std::string heatmap(const std::string& title, const std::vector<std::string>& row_labels,
                    const std::vector<std::string>& col_labels,
                    const std::vector<double>& matrix, const std::string& row_axis,
                    const std::string& col_axis) {
  std::vector<std::string> texts;
  texts.reserve(matrix.size());
  for (double v : matrix) texts.push_back(value_text(v));
  return heatmap_impl(title, row_labels, col_labels, matrix, texts, row_axis, col_axis);
}

std::string heatmap(const std::string& title, const std::vector<std::string>& row_labels,
                    const std::vector<std::string>& col_labels,
                    const std::vector<int64_t>& matrix, const std::string& row_axis,
                    const std::string& col_axis) {
  // Counts are printed exactly; the double copy only sets the shade.
  std::vector<double> values;
  std::vector<std::string> texts;
  values.reserve(matrix.size());
  texts.reserve(matrix.size());
  for (int64_t v : matrix) {
    values.push_back(static_cast<double>(v));
    texts.push_back(std::to_string(v));
  }
  return heatmap_impl(title, row_labels, col_labels, values, texts, row_axis, col_axis);
}

std::string roc_chart(const std::string& title, const std::vector<Series>& curves, int size) {
  check_size("roc_chart", size, size);
  check_series("roc_chart", curves);
  const double left = 56, right = 16, top = 36, bottom = 46;
  const double side = size - left - right;
  const double W = size, H = top + side + bottom;
  Plot p;
  p.x = {0, 1, left, left + side, false};
  p.y = {0, 1, top + side, top, false};
  const Ticks t = nice_ticks(0, 1, 5);

  std::string out;
  open_svg(out, W, H);
  title_text(out, W, title);
  draw_grid(out, p, &t, t);
  line(out, p.x.map(0), p.y.map(0), p.x.map(1), p.y.map(1), "#999999",
       "stroke-dasharray=\"5,4\" class=\"chance\"");
  for (size_t i = 0; i < curves.size(); ++i) draw_series(out, p, curves[i], colour(i));
  // The legend sits in the lower right, below the diagonal, where ROC curves rarely go.
  std::vector<std::string> names;
  for (const auto& c : curves) names.push_back(c.name);
  if (!names.empty()) {
    const double lw = std::min(side - 20, 34 + max_text_width(names));
    const double lh = 18.0 * static_cast<double>(names.size()) + 6;
    const double lx = p.right() - lw - 8, ly = p.bottom() - lh - 8;
    out += "<rect x=\"" + num(lx) + "\" y=\"" + num(ly) + "\" width=\"" + num(lw) +
           "\" height=\"" + num(lh) + "\" fill=\"#ffffff\" fill-opacity=\"0.85\" stroke=\"#cccccc\"/>\n";
    draw_legend(out, lx + 6, ly + 14, names, false);
  }
  text(out, (p.left() + p.right()) / 2, H - 10, "False positive rate");
  rotated_text(out, 16, (p.top() + p.bottom()) / 2, -90, "True positive rate", "middle");
  out += "</svg>\n";
  return out;
}

std::string bar_chart(const std::string& title, const std::vector<std::string>& categories,
                      const std::string& y_label, const std::vector<BarSeries>& series,
                      const ChartOptions& options) {
  check_size("bar_chart", options.width, options.height);
  const size_t K = categories.size(), S = series.size();
  MOX_CHECK(K > 0, "bar_chart", "needs at least one category");
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : series) {
    MOX_CHECK(s.values.size() == K, "bar_chart",
              "series '" + s.name + "' has " + std::to_string(s.values.size()) +
                  " values for " + std::to_string(K) + " categories");
    for (double v : s.values)
      if (std::isfinite(v)) { lo = std::min(lo, v); hi = std::max(hi, v); }
  }
  if (!(lo <= hi)) { lo = 0; hi = 1; }
  // Scores in [0, 1] keep the full unit axis so charts of different runs compare by eye.
  if (lo >= 0 && hi <= 1) { lo = 0; hi = 1; }
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);

  std::vector<std::string> names;
  for (const auto& s : series) names.push_back(s.name);
  const double W = options.width, H = options.height;
  const double left = 60, right = legend_width(names), top = 36;
  const double plot_w = W - left - right;
  MOX_CHECK(plot_w >= 60, "bar_chart",
            "width " + std::to_string(options.width) + " leaves no room for the plot beside the legend");
  const double group = plot_w / static_cast<double>(K);
  const bool rotate = max_text_width(categories) > group - 4;
  const double bottom = rotate ? 30 + std::min(120.0, 0.75 * max_text_width(categories)) : 48;
  MOX_CHECK(H - top - bottom >= 40, "bar_chart",
            "height " + std::to_string(options.height) + " leaves no room for the plot below the labels");

  Plot p;
  p.x = {0, 1, left, W - right, false};
  p.y.p0 = H - bottom; p.y.p1 = top;
  const Ticks yt = nice_ticks(lo, hi, std::max(2, static_cast<int>((p.y.p0 - p.y.p1) / 50)));
  p.y.lo = yt.values.front(); p.y.hi = yt.values.back();

  std::string out;
  open_svg(out, W, H);
  title_text(out, W, title);
  draw_grid(out, p, nullptr, yt);
  const double inner = group * 0.8;
  const double bar = S > 0 ? inner / static_cast<double>(S) : inner;
  const double y0 = p.y.map(0);
  for (size_t k = 0; k < K; ++k) {
    const double gx = left + group * static_cast<double>(k) + (group - inner) / 2;
    for (size_t s = 0; s < S; ++s) {
      const double v = series[s].values[k];
      if (!std::isfinite(v)) continue;
      const double yv = p.y.map(v);
      out += "<rect class=\"bar\" x=\"" + num(gx + bar * static_cast<double>(s)) + "\" y=\"" +
             num(std::min(y0, yv)) + "\" width=\"" + num(bar) + "\" height=\"" +
             num(std::fabs(y0 - yv)) + "\" fill=\"" + colour(s) + "\"><title>" +
             xml_escape(categories[k] + ", " + series[s].name + ": " + value_text(v)) +
             "</title></rect>\n";
    }
    const double cx = left + group * (static_cast<double>(k) + 0.5);
    if (rotate)
      rotated_text(out, cx, p.bottom() + 12, -40, categories[k], "end");
    else
      text(out, cx, p.bottom() + 16, categories[k]);
  }
  if (lo < 0) line(out, p.left(), y0, p.right(), y0, "#333333");
  draw_legend(out, p.right() + 12, p.top() + 10, names, true);
  rotated_text(out, 16, (p.top() + p.bottom()) / 2, -90, y_label, "middle");
  out += "</svg>\n";
  return out;
}

std::string scatter_chart(const std::string& title, const std::string& x_label,
                          const std::string& y_label, const std::vector<Series>& series,
                          bool identity_line, const ChartOptions& options) {
  check_size("scatter_chart", options.width, options.height);
  check_series("scatter_chart", series);
  const bool log_y = options.log_y && !identity_line;
  auto [xmin, xmax, ymin, ymax] = data_extent(series, log_y);
  if (identity_line) {
    xmin = ymin = std::min(xmin, ymin);
    xmax = ymax = std::max(xmax, ymax);
  }

  std::vector<std::string> names;
  for (const auto& s : series) names.push_back(s.name);
  const double W = options.width, H = options.height;
  const double left = 70, right = legend_width(names), top = 36, bottom = 48;
  double pw = W - left - right, ph = H - top - bottom;
  MOX_CHECK(pw >= 60, "scatter_chart",
            "width " + std::to_string(options.width) + " leaves no room for the plot beside the legend");
  if (identity_line) pw = ph = std::min(pw, ph);

  Plot p;
  p.x.p0 = left; p.x.p1 = left + pw;
  p.y.p0 = top + ph; p.y.p1 = top;
  // Denser ticks than line charts: a shared range padded out to a coarse step would leave
  // much of a predicted-vs-true plot empty.
  const Ticks xt = nice_ticks(xmin, xmax, std::max(2, static_cast<int>(pw / 50)));
  const Ticks yt = identity_line ? xt
                   : log_y       ? log_ticks(ymin, ymax)
                                 : nice_ticks(ymin, ymax, std::max(2, static_cast<int>(ph / 50)));
  p.x.lo = xt.values.front(); p.x.hi = xt.values.back();
  p.y.lo = yt.values.front(); p.y.hi = yt.values.back();
  p.y.log = log_y;

  std::string out;
  open_svg(out, W, H);
  title_text(out, W, title);
  draw_grid(out, p, &xt, yt);
  if (identity_line)
    line(out, p.x.map(p.x.lo), p.y.map(p.y.lo), p.x.map(p.x.hi), p.y.map(p.y.hi), "#666666",
         "stroke-dasharray=\"5,4\" class=\"identity\"");
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    out += "<g class=\"points\" fill=\"" + std::string(colour(k)) +
           "\" fill-opacity=\"0.55\"><title>" + xml_escape(s.name) + "</title>\n";
    for (size_t i = 0; i < s.x.size(); ++i)
      if (drawable(s.x[i], s.y[i], log_y))
        out += "<circle cx=\"" + num(p.x.map(s.x[i])) + "\" cy=\"" + num(p.y.map(s.y[i])) +
               "\" r=\"2.5\"/>\n";
    out += "</g>\n";
  }
  draw_legend(out, p.right() + 12, p.top() + 10, names, true);
  text(out, (p.left() + p.right()) / 2, p.bottom() + 38, x_label);
  rotated_text(out, 16, (p.top() + p.bottom()) / 2, -90, y_label, "middle");
  out += "</svg>\n";
  return out;
}

}  // namespace mox::train
