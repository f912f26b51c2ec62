// report.html: sections present or absent by task, numbers checked against hand-computed
// values (and against metrics.h, which is tested against scikit-learn), escaping of hostile
// text, no external references, NaN handling, input errors; and the scatter chart that the
// report adds to svg.h.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include <unistd.h>

#include "error_of.h"
#include "mox/io/file_util.h"
#include "mox/train/metrics.h"
#include "mox/train/report.h"
#include "mox/train/svg.h"
#include "test_report_util.h"

namespace mox::train {
namespace {

using testing::binary_run;
using testing::cifar_like;
using testing::regression_run;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + needle.size())) ++n;
  return n;
}

bool has(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

// The <svg> element whose id is `id`, or "" when there is none.
std::string svg_by_id(const std::string& html, const std::string& id) {
  const size_t at = html.find("<svg id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  const size_t end = html.find("</svg>", at);
  return end == std::string::npos ? "" : html.substr(at, end + 6 - at);
}

// The <section> whose id is `id`, or "".
std::string section(const std::string& html, const std::string& id) {
  const size_t at = html.find("<section id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  const size_t end = html.find("</section>", at);
  return html.substr(at, end + 10 - at);
}

std::string fmt4(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

TEST(Report, ClassificationHasEverySection) {
  const ReportInput in = cifar_like();
  const std::string html = render_report(in);
  ASSERT_TRUE(html.rfind("<!DOCTYPE html>", 0) == 0);
  EXPECT_TRUE(has(html, "</html>"));
  for (const char* id : {"summary", "curves", "metrics", "confusion", "roc", "per-class", "timings", "model", "config", "facts"})
    EXPECT_TRUE(has(html, std::string("id=\"") + id + "\"")) << id;
  for (const char* id : {"chart-loss", "chart-accuracy", "chart-lr", "chart-confusion", "chart-roc", "chart-per-class",
                         "chart-timings"})
    EXPECT_FALSE(svg_by_id(html, id).empty()) << id;
  EXPECT_FALSE(has(html, "id=\"regression\""));
  EXPECT_FALSE(has(html, "chart-scatter"));

  // Curves: loss with val_loss, accuracy with val_accuracy (two polylines of 5 points each);
  // lr on a log axis.
  const std::string loss = svg_by_id(html, "chart-loss");
  EXPECT_EQ(count(loss, "<polyline"), 2u);
  EXPECT_TRUE(has(loss, "<title>loss</title>") && has(loss, "<title>val_loss</title>"));
  EXPECT_EQ(count(svg_by_id(html, "chart-accuracy"), "<polyline"), 2u);
  const std::string lr = svg_by_id(html, "chart-lr");
  EXPECT_TRUE(has(lr, "log scale"));
  EXPECT_TRUE(has(lr, ">0.001<") && has(lr, ">0.1<")) << "decade ticks expected";
  // Epoch ticks (the labels 16 px below the plot, at y = 320 - 48 + 16) are 1..5, no "1.5".
  std::vector<std::string> xticks;
  const std::regex xtick(R"re(y="288" text-anchor="middle">([^<]*)</text>)re");
  for (auto it = std::sregex_iterator(loss.begin(), loss.end(), xtick); it != std::sregex_iterator(); ++it)
    xticks.push_back((*it)[1]);
  EXPECT_EQ(xticks, (std::vector<std::string>{"1", "2", "3", "4", "5"}));

  // Confusion matrix: 10x10 cells, class names on the axes; the counts are those of
  // metrics.h's confusion_matrix (tested against sklearn).
  const std::string conf = svg_by_id(html, "chart-confusion");
  EXPECT_EQ(count(conf, "<rect class=\"cell\""), 100u);
  EXPECT_TRUE(has(conf, ">automobile</text>"));
  const std::vector<int64_t> cm = confusion_matrix(in.splits[0].outputs, in.splits[0].targets, 10).to_vector<int64_t>();
  EXPECT_TRUE(has(conf, "True airplane, Predicted airplane: " + std::to_string(cm[0]) + "<"));
  EXPECT_TRUE(has(conf, "True truck, Predicted bird: " + std::to_string(cm[9 * 10 + 2]) + "<"));

  // ROC: one curve per class and the macro AUC of sklearn's one-vs-rest definition.
  const std::string roc = svg_by_id(html, "chart-roc");
  EXPECT_EQ(count(roc, "<g class=\"series\">"), 10u);
  EXPECT_TRUE(has(roc, "cat (AUC "));
  const double macro = roc_auc(in.splits[0].outputs, in.splits[0].targets);
  EXPECT_TRUE(has(section(html, "roc"), "macro ROC AUC (one-vs-rest): <b>" + fmt4(macro) + "</b>")) << macro;

  // Per-class table: 10 class rows, then accuracy and the three averages.
  const std::string pc = section(html, "per-class");
  EXPECT_EQ(count(pc, "<tr><td>"), 10u);
  EXPECT_EQ(count(pc, "<tr class=\"avg\">"), 4u);
  EXPECT_TRUE(has(pc, "<td>macro avg</td>") && has(pc, "<td>weighted avg</td>") && has(pc, "<td>micro avg</td>"));
  EXPECT_EQ(count(svg_by_id(html, "chart-per-class"), "<rect class=\"bar\""), 30u);

  // Header: subtitle, cards from the first split; metrics table with both splits.
  const std::string head = html.substr(0, html.find("</header>"));
  EXPECT_TRUE(has(head, "<h1>cifar10-cnn</h1>"));
  EXPECT_TRUE(has(head, "10 classes") && has(head, "328,586 parameters") && has(head, "5 epochs"));
  EXPECT_TRUE(has(head, "test: 1,000 samples") && has(head, "val: 500 samples"));
  EXPECT_TRUE(has(head, "test loss</div><div class=\"v\">0.6124<"));
  EXPECT_TRUE(has(head, "test macro AUC</div><div class=\"v\">" + fmt4(macro) + "<"));
  const std::string metrics = section(html, "metrics");
  EXPECT_TRUE(has(metrics, "<th>test</th><th>val</th>"));
  EXPECT_NE(head.find("id=\"metrics\""), std::string::npos) << "the metrics table sits in the header";
  const ClassificationReport rep = classification_report(in.splits[0].outputs, in.splits[0].targets, 10);
  EXPECT_TRUE(has(metrics, "<tr><td>accuracy</td><td>" + fmt4(rep.accuracy) + "</td>"));
  EXPECT_TRUE(has(metrics, "<tr><td>macro_f1</td><td>" + fmt4(rep.macro.f1) + "</td>"));
  EXPECT_TRUE(has(metrics, "<tr><td>loss</td><td>0.6124</td><td>0.6124</td></tr>"));
  const double val_auc = roc_auc(in.splits[1].outputs, in.splits[1].targets);
  EXPECT_TRUE(has(metrics, "<tr><td>auc</td><td>" + fmt4(macro) + "</td><td>" + fmt4(val_auc) + "</td></tr>"));

  // Timings, model summary and config, facts.
  const std::string tm = section(html, "timings");
  EXPECT_TRUE(has(tm, "<th scope=\"row\">total</th><td>1 min 00 s</td>")) << tm;  // 60.3 s
  EXPECT_TRUE(has(tm, "<th scope=\"row\">per epoch (mean)</th><td>12.1 s</td>"));
  EXPECT_TRUE(has(tm, "<td>11.8 s / 12.5 s</td>"));
  EXPECT_TRUE(has(tm, "<td>4,183</td>") && has(tm, "<td>328,586</td>"));
  EXPECT_EQ(count(svg_by_id(html, "chart-timings"), "<rect class=\"bar\""), 5u);
  EXPECT_TRUE(has(section(html, "model"), "<pre>Layer (type)"));
  EXPECT_TRUE(has(section(html, "config"), "name = &quot;cnn&quot;"));
  const std::string facts = section(html, "facts");
  EXPECT_TRUE(has(facts, "<th scope=\"row\">command</th><td>mox train cifar.toml</td>"));
  EXPECT_TRUE(has(facts, "<th scope=\"row\">test samples</th><td>1,000</td>"));
}

// Hand-computed: 3 classes, true = [0,0,1,1,2,2], pred = [0,1,1,1,0,2]:
// class 0: tp 1, fp 1, fn 1 -> P 0.5, R 0.5; class 1: tp 2, fp 1 -> P 0.6667, R 1;
// class 2: tp 1, fp 0, fn 1 -> P 1, R 0.5. Macro P = 0.7222, accuracy 4/6.
TEST(Report, PerClassNumbersByHand) {
  ReportInput in;
  in.task = "classification";
  in.class_names = {"cat", "dog", "<bird>"};
  SplitOutputs s;
  s.name = "test";
  const std::vector<int> pred = {0, 1, 1, 1, 0, 2};
  std::vector<float> p;
  for (int k : pred)
    for (int c = 0; c < 3; ++c) p.push_back(c == k ? 0.8f : 0.1f);
  s.outputs = from_vector(p, {6, 3});
  s.targets = from_vector(std::vector<int64_t>{0, 0, 1, 1, 2, 2});
  in.splits.push_back(s);
  const std::string pc = section(render_report(in), "per-class");
  EXPECT_TRUE(has(pc, "<tr><td>cat</td><td>0.5000</td><td>0.5000</td><td>0.5000</td><td>2</td></tr>")) << pc;
  EXPECT_TRUE(has(pc, "<tr><td>dog</td><td>0.6667</td><td>1.0000</td><td>0.8000</td><td>2</td></tr>"));
  EXPECT_TRUE(has(pc, "<tr><td>&lt;bird&gt;</td><td>1.0000</td><td>0.5000</td><td>0.6667</td><td>2</td></tr>"));
  EXPECT_TRUE(has(pc, "<td>accuracy</td><td></td><td></td><td>0.6667</td><td>6</td>"));
  // macro P = (0.5 + 0.6667 + 1)/3, R = (0.5 + 1 + 0.5)/3, F1 = (0.5 + 0.8 + 0.6667)/3
  EXPECT_TRUE(has(pc, "<td>macro avg</td><td>0.7222</td><td>0.6667</td><td>0.6556</td><td>6</td>"));
  // Without history, timings, model or config, those sections are left out.
  const std::string html = render_report(in);
  for (const char* id : {"curves", "timings", "model", "config"}) EXPECT_FALSE(has(html, std::string("id=\"") + id + "\"")) << id;
  EXPECT_TRUE(has(html, "<h1>mox run</h1>"));
}

// sklearn's classic example: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75.
TEST(Report, BinaryHasOneRocCurve) {
  for (bool two_columns : {false, true}) {
    ReportInput in;
    in.task = "classification";
    SplitOutputs s;
    s.name = "test";
    const std::vector<float> pos = {0.1f, 0.4f, 0.35f, 0.8f};
    if (two_columns) {
      std::vector<float> p;
      for (float v : pos) {
        p.push_back(1 - v);
        p.push_back(v);
      }
      s.outputs = from_vector(p, {4, 2});
    } else {
      s.outputs = from_vector(pos);
    }
    s.targets = from_vector(std::vector<int64_t>{0, 0, 1, 1});
    in.splits.push_back(s);
    const std::string html = render_report(in);
    const std::string roc = svg_by_id(html, "chart-roc");
    EXPECT_EQ(count(roc, "<g class=\"series\">"), 1u);
    EXPECT_TRUE(has(roc, "1 (AUC 0.7500)")) << roc;
    EXPECT_TRUE(has(section(html, "roc"), "ROC AUC: <b>0.7500</b>"));
    EXPECT_EQ(count(svg_by_id(html, "chart-confusion"), "<rect class=\"cell\""), 4u);
    // The staircase (0,0) (0,.5) (.5,.5) (.5,1) (1,1) keeps all its corners.
    EXPECT_TRUE(has(roc, "points=\"56,444 56,240 260,240 260,36 464,36\"")) << roc;
  }
  // One class only: no curve, a note instead.
  ReportInput in;
  in.task = "classification";
  SplitOutputs s{"test", from_vector(std::vector<float>{0.2f, 0.7f}), from_vector(std::vector<int64_t>{1, 1}), {}};
  in.splits.push_back(s);
  const std::string roc = section(render_report(in), "roc");
  EXPECT_TRUE(has(roc, "Only one class occurs")) << roc;
  EXPECT_FALSE(has(roc, "<svg"));
}

TEST(Report, LongRocCurvesAreThinned) {
  // 20000 distinct scores: the curve keeps its ends and corners but at most ~1000 points.
  testing::Lcg r(5);
  std::vector<float> p;
  std::vector<int64_t> y;
  for (int i = 0; i < 20000; ++i) {
    y.push_back(i % 2);
    p.push_back(float(0.5 * r.next() + 0.3 * double(i % 2)));
  }
  ReportInput in;
  in.task = "classification";
  in.splits.push_back({"test", from_vector(p), from_vector(y), {}});
  const std::string roc = svg_by_id(render_report(in), "chart-roc");
  const size_t at = roc.find("points=\"");
  ASSERT_NE(at, std::string::npos);
  const std::string pts = roc.substr(at + 8, roc.find('"', at + 8) - at - 8);
  const size_t n = count(pts, " ") + 1;
  EXPECT_GT(n, 100u);
  EXPECT_LE(n, 1100u);
  EXPECT_EQ(pts.rfind("56,444 ", 0), 0u) << pts.substr(0, 40);  // starts at (0, 0)
  EXPECT_EQ(pts.substr(pts.size() - 7), " 464,36");              // ends at (1, 1)
  // The AUC printed is that of the full curve.
  EXPECT_TRUE(has(roc, "(AUC " + fmt4(roc_auc(from_vector(p), from_vector(y))) + ")"));
}

TEST(Report, CurveOrderAndPairs) {
  ReportInput in;
  in.task = "regression";
  History h;
  h.add_epoch({{"accuracy", 0.5}, {"lr", 0.1}, {"val_accuracy", 0.4}, {"loss", 1.0}, {"top5", 0.9}, {"val_only", 2.0},
               {"val_loss", 1.2}});
  in.history = h;
  const std::string html = render_report(in);
  std::vector<std::string> order;
  const std::regex id(R"re(<svg id="(chart-[^"]+)")re");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), id); it != std::sregex_iterator(); ++it)
    order.push_back((*it)[1]);
  EXPECT_EQ(order, (std::vector<std::string>{"chart-loss", "chart-accuracy", "chart-top5", "chart-val_only", "chart-lr"}));
  EXPECT_EQ(count(svg_by_id(html, "chart-loss"), "<circle"), 2u);  // one epoch: lone points
}

TEST(Report, RegressionSectionsAndNumbers) {
  // pred [1, 2, 3, 4], true [1, 2, 3, 5]: MSE 0.25, RMSE 0.5, MAE 0.25,
  // R2 = 1 - 1/8.75 = 0.885714...
  ReportInput in;
  in.task = "regression";
  SplitOutputs s{"test", from_vector(std::vector<float>{1, 2, 3, 4}), from_vector(std::vector<float>{1, 2, 3, 5}), {}};
  in.splits.push_back(s);
  std::string html = render_report(in);
  const std::string reg = section(html, "regression");
  EXPECT_TRUE(has(reg, "<tr><td>all</td><td>0.2500</td><td>0.5000</td><td>0.2500</td><td>0.8857</td></tr>")) << reg;
  EXPECT_EQ(count(svg_by_id(html, "chart-scatter"), "<circle"), 4u);
  EXPECT_TRUE(has(svg_by_id(html, "chart-scatter"), "class=\"identity\""));
  for (const char* id : {"confusion", "roc", "per-class", "chart-confusion", "chart-roc", "chart-per-class"})
    EXPECT_FALSE(has(html, std::string("id=\"") + id + "\"")) << id;
  EXPECT_TRUE(has(html, "test MSE</div><div class=\"v\">0.2500<"));
  // Residuals 0, 0, 0, -1 over bins of 0.1 from -1 to 0: one in the first, three in the last.
  const std::string res = svg_by_id(html, "chart-residuals");
  EXPECT_EQ(count(res, "<rect class=\"bar\""), 10u);
  EXPECT_TRUE(has(res, ">-0.95, residuals: 1<") && has(res, ">-0.05, residuals: 3<")) << res;
  EXPECT_TRUE(has(res, ">-0.55, residuals: 0<"));

  // A larger run: curves for loss and mae with their val_ twins, at most 2000 points.
  html = render_report(regression_run(5000));
  for (const char* id : {"chart-loss", "chart-mae", "chart-lr", "chart-scatter", "chart-timings"})
    EXPECT_FALSE(svg_by_id(html, id).empty()) << id;
  EXPECT_EQ(count(svg_by_id(html, "chart-mae"), "<polyline"), 2u);
  EXPECT_EQ(count(svg_by_id(html, "chart-scatter"), "<circle"), 2000u);
  EXPECT_TRUE(has(html, "The scatter shows 2,000 of 5,000 points"));

  // Two outputs: a row per output and the mean, one scatter series per output.
  SplitOutputs two{"test", from_vector(std::vector<float>{1, 10, 2, 20, 3, 30, 4, 40}, {4, 2}),
                   from_vector(std::vector<float>{1, 10, 2, 20, 3, 30, 5, 40}, {4, 2}), {}};
  in.splits = {two};
  html = render_report(in);
  EXPECT_TRUE(has(html, "<td>output 0</td><td>0.2500</td>"));
  EXPECT_TRUE(has(html, "<td>output 1</td><td>0.0000</td>"));
  EXPECT_TRUE(has(html, "<td>mean over outputs</td><td>0.1250</td>"));
  EXPECT_EQ(count(svg_by_id(html, "chart-scatter"), "<g class=\"points\""), 2u);
}

TEST(Report, HostileTextIsEscaped) {
  ReportInput in = cifar_like();
  const std::string evil = "</pre><script>alert('x')</script><img src=x onerror=alert(1)>";
  in.title = evil;
  in.class_names[3] = evil;
  in.config_toml = "name = \"" + evil + "\"\n";
  in.model_summary = evil;
  in.data_description = evil;
  in.facts.emplace_back(evil, evil);
  in.splits[0].name = evil;
  in.splits[0].metrics.emplace_back(evil, 1.0);
  History h;
  h.add_epoch({{"<b>k</b>", 1.0}, {"val_<b>k</b>", 2.0}});
  h.add_epoch({{"<b>k</b>", 0.5}, {"val_<b>k</b>", 1.0}});
  in.history = h;
  const std::string html = render_report(in);
  EXPECT_FALSE(has(html, "<script"));
  EXPECT_FALSE(has(html, "<img"));
  EXPECT_FALSE(has(html, "<b>k"));
  EXPECT_EQ(count(html, "</pre>"), 2u);  // the two <pre> blocks' own ends, nothing injected
  EXPECT_TRUE(has(html, "&lt;/pre&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
  // The chart id made from a hostile key holds only safe characters.
  EXPECT_TRUE(has(html, "id=\"chart--b-k--b-\""));
}

TEST(Report, NoExternalReferences) {
  for (const ReportInput& in : {cifar_like(), binary_run(), regression_run()}) {
    const std::string html = render_report(in);
    // "http" only in the SVG namespace declarations.
    size_t n = 0;
    for (size_t at = html.find("http"); at != std::string::npos; at = html.find("http", at + 4), ++n)
      EXPECT_EQ(html.compare(at, 26, "http://www.w3.org/2000/svg"), 0) << html.substr(at, 60);
    EXPECT_GT(n, 3u);
    for (const char* bad : {"<script", "src=", "href=", "url(", "@import", "<link", "<iframe", "<object", "//cdn"})
      EXPECT_FALSE(has(html, bad)) << bad;
  }
}

TEST(Report, NanHandling) {
  ReportInput in = cifar_like();
  History h;
  // A diverged loss (NaN at epoch 3, inf at 4), validation only on some epochs, and a key
  // that is never finite.
  h.add_epoch({{"loss", 1.0}, {"accuracy", 0.5}, {"val_loss", 1.1}, {"broken", kNaN}});
  h.add_epoch({{"loss", 0.8}, {"accuracy", 0.6}, {"broken", kNaN}});
  h.add_epoch({{"loss", kNaN}, {"accuracy", 0.6}, {"val_loss", 0.9}, {"broken", kNaN}});
  h.add_epoch({{"loss", std::numeric_limits<double>::infinity()}, {"accuracy", 0.7}, {"broken", kNaN}});
  in.history = h;
  // A NaN row in the outputs, and a NaN test metric.
  float* p = in.splits[0].outputs.data<float>();
  p[5] = std::nanf("");
  in.splits[0].metrics = {{"loss", kNaN}};
  const std::string html = render_report(in);
  // Loss: two finite points (epochs 1, 2) joined, then a gap; val_loss: two lone points.
  const std::string loss = svg_by_id(html, "chart-loss");
  EXPECT_EQ(count(loss, "<polyline"), 1u);
  EXPECT_EQ(count(loss, "<circle"), 2u);
  EXPECT_TRUE(has(html, "No finite value of broken was recorded."));
  EXPECT_TRUE(svg_by_id(html, "chart-broken").empty());
  EXPECT_TRUE(has(section(html, "roc"), "non-finite values, so no ROC curve is drawn"));
  EXPECT_TRUE(svg_by_id(html, "chart-roc").empty());
  EXPECT_TRUE(has(html, "test loss</div><div class=\"v\">NaN<"));
  // No NaN or inf ever reaches a coordinate.
  const std::regex bad_number(R"(\b(x|y|cx|cy|x1|y1|x2|y2|width|height|points|transform)="[^"]*(nan|inf))",
                              std::regex::icase);
  std::smatch m;
  EXPECT_FALSE(std::regex_search(html, m, bad_number)) << m.str();

  // Regression with a NaN prediction: scores are NaN, the point is left out of the scatter.
  ReportInput r;
  r.task = "regression";
  r.splits.push_back({"test", from_vector(std::vector<float>{1, std::nanf(""), 3}), from_vector(std::vector<float>{1, 2, 3}), {}});
  const std::string rh = render_report(r);
  EXPECT_TRUE(has(rh, "<tr><td>all</td><td>NaN</td>"));
  EXPECT_EQ(count(svg_by_id(rh, "chart-scatter"), "<circle"), 2u);
  EXPECT_FALSE(std::regex_search(rh, m, bad_number)) << m.str();
}

TEST(Report, ManyClassesDropTheCharts) {
  ReportInput in;
  in.task = "classification";
  in.splits.push_back(testing::classification_split("test", 600, 25, 3));
  std::string html = render_report(in);
  EXPECT_FALSE(has(html, "id=\"roc\""));  // C > 20: no ROC section
  EXPECT_EQ(count(svg_by_id(html, "chart-confusion"), "<rect class=\"cell\""), 625u);
  EXPECT_TRUE(has(html, "<tr><td>24</td>"));  // default names are the class ids
  in.splits[0] = testing::classification_split("test", 600, 60, 4);
  html = render_report(in);
  EXPECT_TRUE(svg_by_id(html, "chart-confusion").empty());
  EXPECT_TRUE(svg_by_id(html, "chart-per-class").empty());
  EXPECT_TRUE(has(html, "Not drawn for 60 classes"));
  EXPECT_EQ(count(section(html, "per-class"), "<tr><td>"), 60u);
}

TEST(Report, InputErrors) {
  ReportInput in = cifar_like();
  in.task = "segmentation";
  expect_error([&] { render_report(in); }, {"report", "task must be 'classification', 'regression' or 'language-model'", "segmentation"});
  in = cifar_like();
  in.class_names.pop_back();
  expect_error([&] { render_report(in); }, {"report", "class_names has 9 names", "split 'test' has 10 classes"});
  in = cifar_like();
  in.splits[1].targets = from_vector(std::vector<int64_t>(500, 10));
  expect_error([&] { render_report(in); }, {"report: split 'val'", "target class 10 is out of range for 10 classes"});
  in = cifar_like();
  in.splits[0].targets = in.splits[0].targets.to(DType::F32);
  expect_error([&] { render_report(in); }, {"report: split 'test'", "integer class ids", "f32[1000]"});
  in = cifar_like();
  in.splits[1].name = "test";
  expect_error([&] { render_report(in); }, {"report", "split 'test' appears twice"});
  ReportInput r = regression_run(10);
  r.splits[0].targets = zeros({9});
  expect_error([&] { render_report(r); }, {"report: split 'test'", "one shape", "f32[10]", "f32[9]"});
}

TEST(Report, WriteReportIsAtomicAndMatchesRender) {
  const std::string dir = ::testing::TempDir() + "mox_report_write_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/report.html";
  const ReportInput in = binary_run();
  write_report(path, in);
  EXPECT_EQ(io::read_file(path), render_report(in));
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string(), "report.html");
    ++files;
  }
  EXPECT_EQ(files, 1);
  expect_error([&] { write_report(dir + "/missing/report.html", in); }, {dir + "/missing/report.html"});
  std::filesystem::remove_all(dir);
}

// --- svg.h additions: scatter_chart and integer x ticks ---

TEST(ReportSvg, ScatterChart) {
  Series a{"a", {0, 1, 2, kNaN, 3}, {0, 1.5, 2, 1, std::numeric_limits<double>::infinity()}};
  Series b{"b", {4}, {-1}};
  ChartOptions opt;
  opt.width = 480;
  opt.height = 400;
  const std::string svg = scatter_chart("pred <vs> true", "true", "pred", {a, b}, true, opt);
  EXPECT_EQ(count(svg, "<circle"), 4u);  // the NaN x and the inf y are left out
  EXPECT_EQ(count(svg, "<g class=\"points\""), 2u);
  EXPECT_TRUE(has(svg, "pred &lt;vs&gt; true"));
  // Identity line across the square plot: both axes span the data's [-1, 4] (ticks every 1);
  // the plot is square (left 70, top 36, side min(480-70-legend, 400-84) = 316).
  const std::regex diag(R"re(<line x1="70" y1="352" x2="386" y2="36" stroke="#666666" stroke-dasharray="5,4" class="identity"/>)re");
  EXPECT_TRUE(std::regex_search(svg, diag)) << svg;
  // Point (0, 0) at x = 70 + 316 * 1/5 = 133.2, y = 352 - 63.2 = 288.8.
  EXPECT_TRUE(has(svg, "<circle cx=\"133.2\" cy=\"288.8\" r=\"2.5\"/>")) << svg;
  // Without the identity line the axes are independent and there is no diagonal.
  const std::string free = scatter_chart("t", "x", "y", {a}, false, opt);
  EXPECT_FALSE(has(free, "identity"));
  expect_error([&] { scatter_chart("t", "x", "y", {Series{"bad", {1, 2}, {1}}}); }, {"scatter_chart", "series 'bad'"});
  expect_error([&] { scatter_chart("t", "x", "y", {a}, true, ChartOptions{100, 100}); }, {"scatter_chart", "too small"});
}

TEST(ReportSvg, IntegerEpochTicks) {
  ChartOptions opt;
  opt.integer_x = true;
  const std::string two = line_chart("t", "Epoch", "y", {Series{"s", {1, 2}, {0.5, 0.25}}}, opt);
  EXPECT_TRUE(has(two, ">1</text>") && has(two, ">2</text>"));
  EXPECT_FALSE(has(two, ">1.2</text>") || has(two, ">1.5</text>"));
  const std::string one = line_chart("t", "Epoch", "y", {Series{"s", {1}, {0.5}}}, opt);
  EXPECT_TRUE(has(one, ">0</text>") && has(one, ">1</text>") && has(one, ">2</text>"));
  // Without the option, the same two epochs get fractional ticks (unchanged behaviour).
  const std::string plain = line_chart("t", "Epoch", "y", {Series{"s", {1, 2}, {0.5, 0.25}}});
  EXPECT_TRUE(has(plain, ">1.2</text>"));
}

}  // namespace
}  // namespace mox::train
