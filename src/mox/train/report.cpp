#include "mox/train/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>

#include "mox/io/file_util.h"
#include "mox/tensor/error.h"
#include "mox/train/metrics.h"
#include "mox/train/svg.h"

#ifndef MOX_VERSION
#define MOX_VERSION "dev"
#endif

namespace mox::train {
namespace {

constexpr const char* kWhere = "report";
// Beyond these the charts stop being readable (and ROC curves get expensive); the tables
// still list every class.
constexpr int64_t kMaxHeatmapClasses = 50;
constexpr int64_t kMaxBarClasses = 50;
constexpr int64_t kMaxRocClasses = 20;
constexpr size_t kMaxScatterPoints = 2000;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string esc(const std::string& s) { return xml_escape(s); }

// Metric values: 4 decimals in the usual range, scientific notation outside it.
std::string fmt(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[48];
  const double a = std::fabs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e6))
    std::snprintf(buf, sizeof buf, "%.3e", v);
  else
    std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

// 1234567 -> "1,234,567".
std::string fmt_int(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string fmt_seconds(double s) {
  if (!std::isfinite(s)) return fmt(s);
  char buf[64];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, s < 10 ? "%.2f s" : "%.1f s", s);
  } else if (s < 3600) {
    const int64_t t = std::llround(s);
    std::snprintf(buf, sizeof buf, "%lld min %02lld s", (long long)(t / 60), (long long)(t % 60));
  } else {
    const int64_t t = std::llround(s / 60);
    std::snprintf(buf, sizeof buf, "%lld h %02lld min", (long long)(t / 60), (long long)(t % 60));
  }
  return buf;
}

std::string fmt_rate(double v) {
  if (!std::isfinite(v)) return fmt(v);
  if (v >= 100) return fmt_int(std::llround(v));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// Gives the chart's root <svg> an id and a class so that the page (and tests) can find it,
// and a label for screen readers.
std::string tag_chart(const std::string& svg, const std::string& id, const std::string& label) {
  const size_t at = svg.find("<svg ");
  MOX_CHECK(at != std::string::npos, kWhere, "chart '" + id + "' is not an <svg> element");
  return svg.substr(0, at) + "<svg id=\"" + esc(id) + "\" class=\"chart\" role=\"img\" aria-label=\"" + esc(label) +
         "\" " + svg.substr(at + 5);
}

// Enlarges a small chart (the confusion matrix of 2 classes) towards `target` pixels wide,
// by at most `max_factor`: its viewBox keeps the drawing, only the displayed size changes.
std::string enlarge(const std::string& svg, double target, double max_factor) {
  const size_t w_at = svg.find(" width=\""), h_at = svg.find(" height=\""), end = svg.find('>');
  if (w_at == std::string::npos || h_at == std::string::npos || w_at > end || h_at > end) return svg;
  const double w = std::strtod(svg.c_str() + w_at + 8, nullptr), h = std::strtod(svg.c_str() + h_at + 9, nullptr);
  if (!(w > 0 && h > 0) || w >= target) return svg;
  const double f = std::min(max_factor, target / w);
  auto replace = [&](std::string s, const std::string& attr, double v) {
    const size_t at = s.find(" " + attr + "=\"");
    const size_t q = s.find('"', at + attr.size() + 3);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return s.substr(0, at + attr.size() + 3) + buf + s.substr(q);
  };
  return replace(replace(svg, "width", w * f), "height", h * f);
}

std::string figure(const std::string& svg, const std::string& id, const std::string& label) {
  return "<div class=\"fig\">" + tag_chart(svg, id, label) + "</div>\n";
}

std::string note(const std::string& text) { return "<p class=\"note\">" + esc(text) + "</p>\n"; }

// A key turned into an id fragment: lowercase letters, digits, '-' and '_'.
std::string id_part(const std::string& key) {
  std::string out;
  for (unsigned char c : key) out += std::isalnum(c) ? char(std::tolower(c)) : (c == '_' ? '_' : '-');
  return out.empty() ? "x" : out;
}

// --- classification -----------------------------------------------------------------------

struct ClassScores {
  int64_t classes = 0;
  std::vector<std::string> names;
  ClassificationReport report;
  std::vector<int64_t> confusion;  // C*C, rows = true class
  double auc = kNaN;               // binary AUC, or the macro one-vs-rest AUC
  std::string auc_label;           // "ROC AUC" / "macro ROC AUC (one-vs-rest)"
  std::vector<Series> roc;         // curves (names carry the AUC)
  std::vector<std::string> roc_notes;
  bool roc_applies = false;        // binary, or multi-class with C <= kMaxRocClasses
};

int64_t class_count(const SplitOutputs& s) {
  const std::string where = std::string(kWhere) + ": split '" + s.name + "'";
  MOX_CHECK(s.outputs.defined() && s.targets.defined(), where, "outputs or targets are undefined");
  MOX_CHECK((s.outputs.dim() == 2 && s.outputs.size(1) >= 2) || (s.outputs.dim() == 1 && is_floating(s.outputs.dtype())),
            where,
            "classification outputs must be probabilities [N, C] with C >= 2 or positive-class probabilities [N], got " +
                s.outputs.desc());
  MOX_CHECK(s.targets.dim() == 1 && !is_floating(s.targets.dtype()), where,
            "classification targets must be integer class ids [N], got " + s.targets.desc());
  MOX_CHECK(s.targets.size(0) == s.outputs.size(0), where,
            "outputs " + s.outputs.desc() + " and targets " + s.targets.desc() + " differ in length N");
  MOX_CHECK(s.targets.size(0) > 0, where, "the split has no samples");
  const int64_t C = s.outputs.dim() == 2 ? s.outputs.size(1) : 2;
  for (int64_t y : s.targets.to_vector<int64_t>())
    MOX_CHECK(y >= 0 && y < C, where,
              "target class " + std::to_string(y) + " is out of range for " + std::to_string(C) + " classes");
  return C;
}

// Keeps the corners of a monotone ROC staircase and drops points that lie within 0.002 of
// the previous kept one (under a pixel at the chart's size), so a curve of 10^5 distinct
// scores still draws with at most ~1000 points.
Series thin_curve(const std::string& name, const std::vector<double>& x, const std::vector<double>& y) {
  Series s;
  s.name = name;
  const size_t n = x.size();
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 && i + 1 < n) {
      const double dx1 = x[i] - x[i - 1], dy1 = y[i] - y[i - 1];
      const double dx2 = x[i + 1] - x[i], dy2 = y[i + 1] - y[i];
      if (dx1 * dy2 - dy1 * dx2 == 0) continue;  // on the line through its neighbours
      if (!s.x.empty() && std::fabs(x[i] - s.x.back()) < 0.002 && std::fabs(y[i] - s.y.back()) < 0.002) continue;
    }
    s.x.push_back(x[i]);
    s.y.push_back(y[i]);
  }
  return s;
}

// ROC curves for one split: the binary curve, or one-vs-rest per class.
void roc_curves(const SplitOutputs& s, ClassScores& cs) {
  const int64_t C = cs.classes;
  cs.roc_applies = C <= kMaxRocClasses;
  if (!cs.roc_applies) return;
  const std::vector<double> out = s.outputs.to_vector<double>();
  for (double v : out)
    if (!std::isfinite(v)) {
      cs.roc_notes.push_back("The outputs hold non-finite values, so no ROC curve is drawn.");
      return;
    }
  const std::vector<int64_t> y = s.targets.to_vector<int64_t>();
  const int64_t N = int64_t(y.size());
  if (C == 2) {
    int64_t pos = 0;
    for (int64_t v : y) pos += v == 1;
    if (pos == 0 || pos == N) {
      cs.roc_notes.push_back("Only one class occurs in the " + s.name + " targets, so the ROC curve is not defined.");
      return;
    }
    RocCurve r = roc_curve(s.outputs, s.targets);
    cs.auc = roc_auc(s.outputs, s.targets);
    cs.auc_label = "ROC AUC";
    cs.roc.push_back(thin_curve(cs.names[1] + " (AUC " + fmt(cs.auc) + ")", r.fpr, r.tpr));
    return;
  }
  double total = 0;
  int64_t counted = 0;
  std::vector<std::string> missing;
  std::vector<double> col(size_t(N), 0.0);
  std::vector<int64_t> is_k(size_t(N), 0);
  for (int64_t k = 0; k < C; ++k) {
    int64_t pos = 0;
    for (int64_t i = 0; i < N; ++i) {
      col[size_t(i)] = out[size_t(i * C + k)];
      is_k[size_t(i)] = y[size_t(i)] == k;
      pos += is_k[size_t(i)];
    }
    if (pos == 0 || pos == N) {
      missing.push_back(cs.names[size_t(k)]);
      continue;
    }
    Tensor scores = from_vector(col), labels = from_vector(is_k);
    RocCurve r = roc_curve(scores, labels);
    const double auc = roc_auc(scores, labels);
    total += auc;
    ++counted;
    cs.roc.push_back(thin_curve(cs.names[size_t(k)] + " (AUC " + fmt(auc) + ")", r.fpr, r.tpr));
  }
  if (counted > 0) {
    cs.auc = total / double(counted);
    cs.auc_label = counted == C ? "macro ROC AUC (one-vs-rest)"
                                : "macro ROC AUC (one-vs-rest, " + std::to_string(counted) + " of " + std::to_string(C) +
                                      " classes)";
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size(); ++i) list += (i ? ", " : "") + missing[i];
    cs.roc_notes.push_back("No curve for " + list + ": every " + s.name +
                           " sample is of that class, or none is (the one-vs-rest curve is not defined).");
  }
}

ClassScores classification_scores(const ReportInput& in, const SplitOutputs& s, bool with_roc) {
  ClassScores cs;
  cs.classes = class_count(s);
  const int64_t C = cs.classes;
  MOX_CHECK(in.class_names.empty() || int64_t(in.class_names.size()) == C, kWhere,
            "class_names has " + std::to_string(in.class_names.size()) + " names but split '" + s.name + "' has " +
                std::to_string(C) + " classes (outputs " + s.outputs.desc() + ")");
  for (int64_t k = 0; k < C; ++k) cs.names.push_back(in.class_names.empty() ? std::to_string(k) : in.class_names[size_t(k)]);
  cs.report = classification_report(s.outputs, s.targets, C);
  cs.confusion = confusion_matrix(s.outputs, s.targets, C).to_vector<int64_t>();
  if (with_roc) {
    roc_curves(s, cs);
  } else if (C <= kMaxRocClasses) {
    // The AUC alone, for the metrics table of the other splits.
    ClassScores tmp = cs;
    roc_curves(s, tmp);
    cs.auc = tmp.auc;
    cs.auc_label = tmp.auc_label;
  }
  return cs;
}

// --- regression -----------------------------------------------------------------------------

struct RegressionScores {
  int64_t outputs = 1;
  double mse = kNaN, mae = kNaN, r2 = kNaN;
  std::vector<double> mse_d, mae_d, r2_d;  // per output when outputs > 1
};

RegressionScores regression_scores(const SplitOutputs& s) {
  const std::string where = std::string(kWhere) + ": split '" + s.name + "'";
  MOX_CHECK(s.outputs.defined() && s.targets.defined(), where, "outputs or targets are undefined");
  MOX_CHECK((s.outputs.dim() == 1 || s.outputs.dim() == 2) && s.outputs.shape() == s.targets.shape(), where,
            "regression outputs and targets must have one shape [N] or [N, D], got " + s.outputs.desc() + " and " +
                s.targets.desc());
  MOX_CHECK(s.outputs.size(0) > 0, where, "the split has no samples");
  MOX_CHECK(is_floating(s.outputs.dtype()) && is_floating(s.targets.dtype()), where,
            "regression outputs and targets must be floating point, got " + s.outputs.desc() + " and " + s.targets.desc());
  RegressionScores r;
  r.outputs = s.outputs.dim() == 2 ? s.outputs.size(1) : 1;
  r.mse = mse(s.outputs, s.targets);
  r.mae = mae(s.outputs, s.targets);
  r.r2 = r2(s.outputs, s.targets);
  if (r.outputs > 1) {
    for (int64_t d = 0; d < r.outputs; ++d) {
      Tensor p = s.outputs.select(1, d), t = s.targets.select(1, d);
      r.mse_d.push_back(mse(p, t));
      r.mae_d.push_back(mae(p, t));
      r.r2_d.push_back(r2(p, t));
    }
  }
  return r;
}

// Predicted vs true, at most kMaxScatterPoints points in all (an even stride through the
// samples, so the picture does not depend on a random draw). Outputs beyond ten share one
// series.
std::vector<Series> scatter_series(const SplitOutputs& s) {
  const std::vector<double> p = s.outputs.to_vector<double>(), t = s.targets.to_vector<double>();
  const int64_t N = s.outputs.size(0), D = s.outputs.dim() == 2 ? s.outputs.size(1) : 1;
  const int64_t cap = int64_t(kMaxScatterPoints);
  if (D == 1 || D > 10) {
    Series ser{D == 1 ? "samples" : "all outputs", {}, {}};
    const int64_t total = N * D, take = std::min(total, cap);
    for (int64_t k = 0; k < take; ++k) {
      const int64_t j = int64_t(static_cast<unsigned __int128>(k) * uint64_t(total) / uint64_t(take));
      ser.x.push_back(t[size_t(j)]);
      ser.y.push_back(p[size_t(j)]);
    }
    return {ser};
  }
  std::vector<Series> out;
  const int64_t take = std::min(N, cap / D);
  for (int64_t d = 0; d < D; ++d) {
    Series ser{"output " + std::to_string(d), {}, {}};
    for (int64_t k = 0; k < take; ++k) {
      const int64_t i = int64_t(static_cast<unsigned __int128>(k) * uint64_t(N) / uint64_t(take));
      ser.x.push_back(t[size_t(i * D + d)]);
      ser.y.push_back(p[size_t(i * D + d)]);
    }
    out.push_back(std::move(ser));
  }
  return out;
}

// Counts of (predicted - true) over about a dozen bins at nice edges, all outputs pooled;
// "" when no residual is finite.
std::string residual_histogram(const SplitOutputs& s) {
  const std::vector<double> p = s.outputs.to_vector<double>(), t = s.targets.to_vector<double>();
  std::vector<double> r;
  for (size_t i = 0; i < p.size(); ++i)
    if (std::isfinite(p[i] - t[i])) r.push_back(p[i] - t[i]);
  if (r.empty()) return "";
  const auto [lo, hi] = std::minmax_element(r.begin(), r.end());
  const Ticks edges = nice_ticks(*lo, *hi, 12);
  const size_t bins = edges.values.size() - 1;
  std::vector<double> counts(bins, 0.0);
  for (double v : r) {
    const double q = std::floor((v - edges.values.front()) / edges.step);
    counts[q <= 0 ? 0 : std::min(size_t(q), bins - 1)] += 1;
  }
  std::vector<std::string> labels;
  for (size_t b = 0; b < bins; ++b) {
    // Bin centres, with one more decimal when the half step needs it (0.025 -> "0.275").
    const double c = edges.values[b] + edges.step / 2;
    std::string label = format_tick(c, edges.step / 2);
    if (std::fabs(std::strtod(label.c_str(), nullptr) - c) > 1e-9 * std::max(1.0, std::fabs(c)))
      label = format_tick(c, edges.step / 20);
    labels.push_back(label);
  }
  ChartOptions opt;
  opt.width = 540;
  opt.height = 260;
  return bar_chart("Residuals (predicted \xe2\x88\x92 true), bin centres", labels, "samples", {{"residuals", counts}}, opt);
}

// --- training curves ------------------------------------------------------------------------

bool is_lr_key(const std::string& k) { return k == "lr" || k == "learning_rate"; }

std::string pretty(const std::string& key) {
  if (key == "loss") return "Loss";
  if (key == "accuracy" || key == "acc") return "Accuracy";
  if (key == "mse") return "Mean squared error";
  if (key == "mae") return "Mean absolute error";
  if (key == "r2") return "R\xc2\xb2";
  if (is_lr_key(key)) return "Learning rate";
  if (key == "step") return "Step";
  if (key == "tokens_per_second") return "Tokens per second";
  if (key == "perplexity") return "Perplexity";
  return key;
}

// x_key: the history key that gives each record's x (pre-training: "step"); empty: epochs.
std::string curves_section(const History& h, const std::string& x_key) {
  if (h.epochs() == 0) return "";
  const bool by_key = !x_key.empty() && h.has(x_key);
  std::vector<double> epochs;
  if (by_key) epochs = h.values(x_key);
  else for (int64_t e = 0; e < h.epochs(); ++e) epochs.push_back(double(e + 1));
  std::vector<std::string> keys = h.keys();
  if (by_key) keys.erase(std::find(keys.begin(), keys.end(), x_key));
  std::set<std::string> keyset(keys.begin(), keys.end());
  // One chart per metric: the training key with its "val_" twin; lr charts go last.
  std::vector<std::vector<std::string>> charts, lr_charts;
  std::set<std::string> used;
  auto add = [&](const std::string& k) {
    if (used.count(k)) return;
    used.insert(k);
    if (is_lr_key(k)) { lr_charts.push_back({k}); return; }
    std::vector<std::string> group{k};
    if (keyset.count("val_" + k) && !used.count("val_" + k)) {
      group.push_back("val_" + k);
      used.insert("val_" + k);
    }
    charts.push_back(group);
  };
  if (keyset.count("loss")) add("loss");
  for (const auto& k : keys) {
    if (k.rfind("val_", 0) == 0 && keyset.count(k.substr(4))) continue;  // drawn with its twin
    add(k);
  }
  for (const auto& k : keys) add(k);  // val_ keys whose twin was taken already
  for (auto& g : lr_charts) charts.push_back(g);

  std::string body;
  std::set<std::string> ids;
  for (const auto& group : charts) {
    std::vector<Series> series;
    bool any = false, positive = true;
    for (const auto& k : group) {
      Series s{k, epochs, h.values(k)};
      for (double v : s.y) {
        if (std::isfinite(v)) { any = true; positive = positive && v > 0; }
      }
      series.push_back(std::move(s));
    }
    const std::string& key = group[0];
    std::string id = "chart-" + id_part(key);
    while (ids.count(id)) id += "-2";
    ids.insert(id);
    if (!any) {
      body += "<div class=\"fig empty\"><h3>" + esc(pretty(key)) + "</h3>" +
              note("No finite value of " + key + " was recorded.") + "</div>\n";
      continue;
    }
    ChartOptions opt;
    opt.width = 560;
    opt.height = 320;
    opt.integer_x = true;
    opt.log_y = is_lr_key(key) && positive;
    const std::string title = pretty(key) + (opt.log_y ? " (log scale)" : "");
    body += figure(line_chart(title, by_key ? pretty(x_key) : "Epoch", key, series, opt), id, title);
  }
  return "<section id=\"curves\">\n<h2>Training curves</h2>\n<div class=\"grid\">\n" + body + "</div>\n</section>\n";
}

// --- page pieces ----------------------------------------------------------------------------

std::string card(const std::string& label, const std::string& value) {
  return "<div class=\"card\"><div class=\"k\">" + esc(label) + "</div><div class=\"v\">" + esc(value) + "</div></div>\n";
}

std::string kv_table(const std::vector<std::pair<std::string, std::string>>& rows, const std::string& cls = "kv") {
  std::string out = "<table class=\"" + cls + "\">\n";
  for (const auto& [k, v] : rows) out += "<tr><th scope=\"row\">" + esc(k) + "</th><td>" + esc(v) + "</td></tr>\n";
  return out + "</table>\n";
}

const char* kStyle = R"CSS(
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#eef1f4;--bg:#f4f6f8;--card:#fff;--accent:#1f77b4}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:20px 24px 8px}
h1{font-size:26px;margin:0;letter-spacing:-.01em}
h2{font-size:16px;margin:0 0 12px;padding-bottom:6px;border-bottom:1px solid var(--soft)}
h3{font-size:13px;margin:4px 0 8px;color:var(--muted);font-weight:600}
header#summary{background:var(--card);border:1px solid var(--line);border-top:4px solid var(--accent);border-radius:8px;padding:16px 20px;margin:0 0 16px}
.sub{color:var(--muted);margin:4px 0 0}
.desc{margin:6px 0 0;white-space:pre-wrap}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:14px}
.card{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:130px}
.card .k{color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.05em}
.card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 20px 16px;margin:0 0 16px;min-width:0}
.row{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(540px,100%),1fr));gap:0 16px;align-items:stretch}
.head{display:flex;flex-wrap:wrap;gap:12px 40px;justify-content:space-between;align-items:flex-start}
.intro{flex:1 1 520px;min-width:0}
.head section{border:0;padding:0;margin:0;background:none}
.head h2{font-size:13px;color:var(--muted);border:0;padding:0;margin:2px 0 4px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(500px,100%),1fr));gap:12px 20px;align-items:start}
.fig{min-width:0}
.fig svg{display:block;max-width:100%;height:auto;margin:0 auto}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:0 0 8px}
th,td{padding:3px 12px;border-bottom:1px solid var(--soft);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid var(--line);font-weight:600}
tbody tr:nth-child(even){background:#fafbfc}
tr.avg td,tr.avg th{border-top:1px solid var(--line);color:var(--muted)}
table.kv th{font-weight:500;color:var(--muted);text-align:left}
table.kv td{text-align:left;white-space:pre-wrap}
.scroll{overflow-x:auto}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:10px 12px;margin:0;overflow:auto;max-height:560px;font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
.note{color:var(--muted);font-style:italic;margin:6px 0}
footer{color:var(--muted);font-size:12px;text-align:center;padding:4px 0 20px}
)CSS";

}  // namespace

std::string render_report(const ReportInput& in) {
  const bool classification = in.task == "classification";
  MOX_CHECK(classification || in.task == "regression" || in.task == "language-model", kWhere,
            "task must be 'classification', 'regression' or 'language-model', got '" + in.task + "'");
  MOX_CHECK(in.task != "language-model" || in.splits.empty(), kWhere,
            "a language-model report takes its figures from the history and headline, not splits");
  {
    std::set<std::string> names;
    for (const auto& s : in.splits) {
      MOX_CHECK(!s.name.empty(), kWhere, "a split has an empty name");
      MOX_CHECK(names.insert(s.name).second, kWhere, "split '" + s.name + "' appears twice");
    }
  }

  // Scores of every split; the first one also gets the detailed sections.
  std::vector<ClassScores> cls;
  std::vector<RegressionScores> reg;
  for (size_t i = 0; i < in.splits.size(); ++i) {
    if (classification)
      cls.push_back(classification_scores(in, in.splits[i], i == 0));
    else
      reg.push_back(regression_scores(in.splits[i]));
  }
  // The metrics table: what the trainer measured, then the scores computed here.
  std::vector<std::string> metric_rows;
  std::vector<std::vector<std::pair<std::string, double>>> split_metrics(in.splits.size());
  for (size_t i = 0; i < in.splits.size(); ++i) {
    auto& m = split_metrics[i];
    for (const auto& kv : in.splits[i].metrics) m.push_back(kv);
    auto add = [&](const std::string& k, double v) {
      for (const auto& kv : m)
        if (kv.first == k) return;
      m.emplace_back(k, v);
    };
    if (classification) {
      add("accuracy", cls[i].report.accuracy);
      add("macro_f1", cls[i].report.macro.f1);
      add("weighted_f1", cls[i].report.weighted.f1);
      if (!std::isnan(cls[i].auc)) add("auc", cls[i].auc);  // the trainer's key
    } else {
      add("mse", reg[i].mse);
      add("mae", reg[i].mae);
      add("r2", reg[i].r2);
    }
    for (const auto& kv : m)
      if (std::find(metric_rows.begin(), metric_rows.end(), kv.first) == metric_rows.end()) metric_rows.push_back(kv.first);
  }
  auto metric_of = [&](size_t split, const std::string& k) {
    for (const auto& kv : split_metrics[split])
      if (kv.first == k) return kv.second;
    return kNaN;
  };

  std::string h;
  h.reserve(1 << 16);
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
       "<meta name=\"generator\" content=\"mox " MOX_VERSION "\">\n<title>" +
       esc(in.title.empty() ? "mox run" : in.title) + " \xe2\x80\x94 mox report</title>\n<style>" + kStyle +
       "</style>\n</head>\n<body>\n<main>\n";

  // Header: title, task, data, headline metrics of the first split.
  {
    h += "<header id=\"summary\">\n<div class=\"head\">\n<div class=\"intro\">\n<h1>" + esc(in.title.empty() ? "mox run" : in.title) + "</h1>\n";
    std::vector<std::string> bits{in.task};
    if (classification && !cls.empty()) bits.push_back(std::to_string(cls[0].classes) + " classes");
    if (!classification && !reg.empty() && reg[0].outputs > 1) bits.push_back(std::to_string(reg[0].outputs) + " outputs");
    if (in.parameters > 0) bits.push_back(fmt_int(in.parameters) + " parameters");
    if (in.history.epochs() > 0) bits.push_back(std::to_string(in.history.epochs()) + (in.history.epochs() == 1 ? " epoch" : " epochs"));
    for (const auto& s : in.splits) bits.push_back(s.name + ": " + fmt_int(s.outputs.size(0)) + " samples");
    std::string sub;
    for (size_t i = 0; i < bits.size(); ++i) sub += (i ? " \xc2\xb7 " : "") + esc(bits[i]);
    h += "<p class=\"sub\">" + sub + "</p>\n";
    if (!in.data_description.empty()) h += "<p class=\"desc\">" + esc(in.data_description) + "</p>\n";
    if (!in.headline.empty()) {
      h += "<div class=\"cards\">\n";
      for (const auto& [k, v] : in.headline) h += card(k, fmt(v));
      h += "</div>\n";
    }
    if (!in.splits.empty()) {
      const std::string& sn = in.splits[0].name;
      h += "<div class=\"cards\">\n";
      for (const auto& kv : in.splits[0].metrics)
        if (kv.first == "loss") h += card(sn + " loss", fmt(kv.second));
      if (classification) {
        h += card(sn + " accuracy", fmt(metric_of(0, "accuracy")));
        h += card(sn + " macro F1", fmt(cls[0].report.macro.f1));
        if (!std::isnan(cls[0].auc)) h += card(sn + (cls[0].classes == 2 ? " ROC AUC" : " macro AUC"), fmt(cls[0].auc));
      } else {
        h += card(sn + " MSE", fmt(reg[0].mse));
        h += card(sn + " MAE", fmt(reg[0].mae));
        h += card(sn + " R\xc2\xb2", fmt(reg[0].r2));
      }
      h += "</div>\n";
    }
    h += "</div>\n";
    // Scores per split: what the trainer measured, then the scores computed here.
    if (!in.splits.empty()) {
      h += "<section id=\"metrics\">\n<h2>Evaluation</h2>\n<div class=\"scroll\"><table>\n<thead><tr><th>metric</th>";
      for (const auto& s : in.splits) h += "<th>" + esc(s.name) + "</th>";
      h += "</tr></thead>\n<tbody>\n";
      for (const auto& k : metric_rows) {
        h += "<tr><td>" + esc(k) + "</td>";
        for (size_t i = 0; i < in.splits.size(); ++i) h += "<td>" + esc(fmt(metric_of(i, k))) + "</td>";
        h += "</tr>\n";
      }
      h += "</tbody></table></div>\n</section>\n";
    }
    h += "</div>\n</header>\n";
  }

  h += curves_section(in.history, in.x_key);

  if (classification && !cls.empty()) {
    const ClassScores& c = cls[0];
    const std::string& sn = in.splits[0].name;
    const auto& r = c.report;
    h += "<div class=\"row\">\n";
    // Confusion matrix.
    h += "<section id=\"confusion\">\n<h2>Confusion matrix (" + esc(sn) + ")</h2>\n";
    if (c.classes <= kMaxHeatmapClasses)
      h += figure(enlarge(heatmap("Counts", c.names, c.names, c.confusion, "True", "Predicted"), 520, 1.6),
                  "chart-confusion", "Confusion matrix");
    else
      h += note("Not drawn for " + std::to_string(c.classes) + " classes (at most " + std::to_string(kMaxHeatmapClasses) +
                "); the per-class table lists every class.");
    h += "</section>\n";
    // ROC.
    if (c.roc_applies) {
      h += "<section id=\"roc\">\n<h2>ROC curves (" + esc(sn) + ")</h2>\n";
      if (!c.roc.empty()) {
        const std::string title = c.classes == 2 ? "ROC" : "One-vs-rest ROC";
        h += figure(roc_chart(title, c.roc, 480), "chart-roc", title);
        h += "<p>" + esc(c.auc_label) + ": <b>" + esc(fmt(c.auc)) + "</b></p>\n";
      }
      for (const auto& n : c.roc_notes) h += note(n);
      h += "</section>\n";
    }
    h += "</div>\n";

    // Per-class precision / recall / F1.
    h += "<section id=\"per-class\">\n<h2>Per-class scores (" + esc(sn) + ")</h2>\n<div class=\"row\">\n";
    h += "<div class=\"scroll\"><table class=\"per-class\">\n<thead><tr><th>class</th><th>precision</th><th>recall</th>"
         "<th>F1</th><th>support</th></tr></thead>\n<tbody>\n";
    for (int64_t k = 0; k < c.classes; ++k)
      h += "<tr><td>" + esc(c.names[size_t(k)]) + "</td><td>" + fmt(r.precision[size_t(k)]) + "</td><td>" +
           fmt(r.recall[size_t(k)]) + "</td><td>" + fmt(r.f1[size_t(k)]) + "</td><td>" + fmt_int(r.support[size_t(k)]) +
           "</td></tr>\n";
    h += "</tbody>\n<tbody>\n";
    h += "<tr class=\"avg\"><td>accuracy</td><td></td><td></td><td>" + fmt(r.accuracy) + "</td><td>" + fmt_int(r.total) +
         "</td></tr>\n";
    const std::pair<const char*, const AveragedScores*> avgs[] = {
        {"macro avg", &r.macro}, {"weighted avg", &r.weighted}, {"micro avg", &r.micro}};
    for (const auto& [name, a] : avgs)
      h += std::string("<tr class=\"avg\"><td>") + name + "</td><td>" + fmt(a->precision) + "</td><td>" + fmt(a->recall) +
           "</td><td>" + fmt(a->f1) + "</td><td>" + fmt_int(r.total) + "</td></tr>\n";
    h += "</tbody></table></div>\n";
    if (c.classes <= kMaxBarClasses) {
      ChartOptions opt;
      opt.width = 600;
      opt.height = 340;
      h += figure(bar_chart("Precision, recall and F1 per class", c.names, "score",
                            {{"precision", r.precision}, {"recall", r.recall}, {"F1", r.f1}}, opt),
                  "chart-per-class", "Precision, recall and F1 per class");
    }
    h += "</div>\n</section>\n";
  }

  if (!classification && !reg.empty()) {
    const RegressionScores& r = reg[0];
    const SplitOutputs& s = in.splits[0];
    h += "<section id=\"regression\">\n<h2>Regression (" + esc(s.name) + ")</h2>\n<div class=\"row\">\n<div>\n";
    h += "<table>\n<thead><tr><th>output</th><th>MSE</th><th>RMSE</th><th>MAE</th><th>R\xc2\xb2</th></tr></thead>\n<tbody>\n";
    auto row = [&](const std::string& name, double m, double a, double q, bool avg) {
      h += std::string(avg ? "<tr class=\"avg\">" : "<tr>") + "<td>" + esc(name) + "</td><td>" + fmt(m) + "</td><td>" +
           fmt(std::sqrt(m)) + "</td><td>" + fmt(a) + "</td><td>" + fmt(q) + "</td></tr>\n";
    };
    for (size_t d = 0; d < r.mse_d.size(); ++d) row("output " + std::to_string(d), r.mse_d[d], r.mae_d[d], r.r2_d[d], false);
    row(r.outputs > 1 ? "mean over outputs" : "all", r.mse, r.mae, r.r2, r.outputs > 1);
    h += "</tbody></table>\n";
    const std::vector<Series> points = scatter_series(s);
    int64_t shown = 0;
    for (const auto& ser : points) shown += int64_t(ser.x.size());
    const int64_t total = s.outputs.numel();
    if (shown < total)
      h += note("The scatter shows " + fmt_int(shown) + " of " + fmt_int(total) +
                " points, evenly spaced through the split.");
    const std::string residuals = residual_histogram(s);
    if (!residuals.empty()) h += figure(residuals, "chart-residuals", "Residuals");
    h += "</div>\n";
    ChartOptions opt;
    opt.width = 560;
    opt.height = 480;
    h += figure(scatter_chart("Predicted vs true", "true value", "predicted value", points, true, opt),
                "chart-scatter", "Predicted vs true values");
    h += "</div>\n</section>\n";
  }

  h += "<div class=\"row\">\n";
  // Timings.
  if (!in.seconds_per_epoch.empty() || in.samples_per_second > 0 || in.parameters > 0) {
    const auto& t = in.seconds_per_epoch;
    std::vector<std::pair<std::string, std::string>> rows;
    if (!t.empty()) {
      double total = 0, lo = INFINITY, hi = -INFINITY;
      for (double v : t) {
        total += v;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      rows.emplace_back("epochs timed", std::to_string(t.size()));
      rows.emplace_back("total", fmt_seconds(total));
      rows.emplace_back("per epoch (mean)", fmt_seconds(total / double(t.size())));
      if (t.size() > 1) rows.emplace_back("fastest / slowest", fmt_seconds(lo) + " / " + fmt_seconds(hi));
    }
    if (in.samples_per_second > 0) rows.emplace_back("samples / s", fmt_rate(in.samples_per_second));
    if (in.parameters > 0) rows.emplace_back("parameters", fmt_int(in.parameters));
    h += "<section id=\"timings\">\n<h2>Timings</h2>\n" + kv_table(rows);
    if (!t.empty()) {
      ChartOptions opt;
      opt.width = 540;
      opt.height = 230;
      std::vector<double> x;
      for (size_t i = 0; i < t.size(); ++i) x.push_back(double(i + 1));
      std::string svg;
      if (t.size() <= 30) {
        std::vector<std::string> cats;
        for (size_t i = 0; i < t.size(); ++i) cats.push_back(std::to_string(i + 1));
        svg = bar_chart("Seconds per epoch", cats, "seconds", {{"seconds", t}}, opt);
      } else {
        opt.integer_x = true;
        svg = line_chart("Seconds per epoch", "Epoch", "seconds", {{"seconds", x, t}}, opt);
      }
      h += figure(svg, "chart-timings", "Seconds per epoch");
    }
    h += "</section>\n";
  }

  // Facts.
  {
    std::vector<std::pair<std::string, std::string>> rows;
    rows.emplace_back("task", in.task);
    if (classification && !cls.empty()) rows.emplace_back("classes", std::to_string(cls[0].classes));
    if (in.history.epochs() > 0) rows.emplace_back("epochs", std::to_string(in.history.epochs()));
    for (const auto& s : in.splits) rows.emplace_back(s.name + " samples", fmt_int(s.outputs.size(0)));
    for (const auto& kv : in.facts) rows.push_back(kv);
    h += "<section id=\"facts\">\n<h2>Facts</h2>\n" + kv_table(rows) + "</section>\n";
  }

  h += "</div>\n";

  // Model and config, verbatim.
  if (!in.model_summary.empty() || !in.config_toml.empty()) {
    h += "<div class=\"row\">\n";
    if (!in.model_summary.empty())
      h += "<section id=\"model\">\n<h2>Model</h2>\n<pre>" + esc(in.model_summary) + "</pre>\n</section>\n";
    if (!in.config_toml.empty())
      h += "<section id=\"config\">\n<h2>Config</h2>\n<pre>" + esc(in.config_toml) + "</pre>\n</section>\n";
    h += "</div>\n";
  }

  h += "</main>\n<footer>Generated by mox " MOX_VERSION "</footer>\n</body>\n</html>\n";
  return h;
}

void write_report(const std::string& path, const ReportInput& in) { io::write_file_atomic(path, render_report(in)); }

}  // namespace mox::train
