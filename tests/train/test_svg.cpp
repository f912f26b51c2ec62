// SVG charts: well-formed XML (checked by a small parser below), one polyline per run of
// finite points with the right point count, nice ticks over several ranges, heatmap cells
// and numbers, ROC square and chance line, grouped bars, escaping, and input errors.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "mox/tensor/error.h"
#include "mox/train/svg.h"

namespace mox::train {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Checks that `s` is one well-formed XML element: tags balanced and properly nested,
// attribute values quoted, '&' only in known entities, no raw '<' or '>' in text or
// attribute values. Returns "" when well-formed, otherwise what is wrong.
std::string xml_error(const std::string& s) {
  size_t i = 0;
  std::vector<std::string> stack;
  int roots = 0;
  auto name_at = [&](size_t& k) {
    size_t start = k;
    while (k < s.size() && (std::isalnum(static_cast<unsigned char>(s[k])) || s[k] == '-' ||
                            s[k] == ':' || s[k] == '_'))
      ++k;
    return s.substr(start, k - start);
  };
  auto check_entity = [&](size_t k) -> bool {  // s[k] == '&'
    for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&apos;"})
      if (s.compare(k, std::strlen(e), e) == 0) return true;
    return false;
  };
  while (i < s.size()) {
    if (s[i] != '<') {
      if (s[i] == '>') return "raw '>' in text at " + std::to_string(i);
      if (s[i] == '&' && !check_entity(i)) return "bad entity at " + std::to_string(i);
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(s[i])))
        return "text outside the root at " + std::to_string(i);
      ++i;
      continue;
    }
    if (s.compare(i, 2, "</") == 0) {
      i += 2;
      std::string name = name_at(i);
      if (i >= s.size() || s[i] != '>') return "bad end tag " + name;
      ++i;
      if (stack.empty() || stack.back() != name) return "unbalanced </" + name + ">";
      stack.pop_back();
      continue;
    }
    ++i;
    std::string name = name_at(i);
    if (name.empty()) return "empty tag name at " + std::to_string(i);
    if (stack.empty() && ++roots > 1) return "more than one root element";
    while (true) {
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
      if (i >= s.size()) return "unterminated tag " + name;
      if (s.compare(i, 2, "/>") == 0) { i += 2; break; }
      if (s[i] == '>') { ++i; stack.push_back(name); break; }
      std::string attr = name_at(i);
      if (attr.empty() || i + 1 >= s.size() || s[i] != '=' || s[i + 1] != '"')
        return "bad attribute in <" + name + "> at " + std::to_string(i);
      i += 2;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '<' || s[i] == '>') return "raw '<' or '>' in attribute " + attr;
        if (s[i] == '&' && !check_entity(i)) return "bad entity in attribute " + attr;
        ++i;
      }
      if (i >= s.size()) return "unterminated attribute " + attr;
      ++i;
    }
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return "no root element";
  return "";
}

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

// Point counts of every <polyline>, in document order.
std::vector<size_t> polyline_points(const std::string& svg) {
  std::vector<size_t> out;
  std::regex re("<polyline[^>]* points=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
       ++it) {
    std::string pts = (*it)[1];
    size_t n = 0;
    std::regex pair("(-?[0-9.]+),(-?[0-9.]+)");
    for (auto p = std::sregex_iterator(pts.begin(), pts.end(), pair);
         p != std::sregex_iterator(); ++p)
      ++n;
    out.push_back(n);
  }
  return out;
}

TEST(SvgXmlChecker, RejectsMalformedInput) {
  EXPECT_EQ(xml_error("<svg><g></g></svg>"), "");
  EXPECT_NE(xml_error("<svg><g></svg>"), "");
  EXPECT_NE(xml_error("<svg><text>a<b</text></svg>"), "");
  EXPECT_NE(xml_error("<svg><text>a & b</text></svg>"), "");
  EXPECT_NE(xml_error("<svg x=1></svg>"), "");
  EXPECT_NE(xml_error("<svg></svg><svg></svg>"), "");
}

TEST(SvgEscape, ReplacesSpecialCharacters) {
  EXPECT_EQ(xml_escape("a<b & c>\"d'"), "a&lt;b &amp; c&gt;&quot;d&#39;");
  EXPECT_EQ(xml_escape("plain"), "plain");
}

TEST(SvgTicks, UnitRange) {
  Ticks t = nice_ticks(0, 1, 5);
  EXPECT_DOUBLE_EQ(t.step, 0.2);
  ASSERT_EQ(t.values.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(t.values[i], 0.2 * i, 1e-12);
  EXPECT_EQ(format_tick(t.values[0], t.step), "0");
  EXPECT_EQ(format_tick(t.values[1], t.step), "0.2");
  EXPECT_EQ(format_tick(t.values[3], t.step), "0.6");
}

TEST(SvgTicks, SmallRange) {
  Ticks t = nice_ticks(0.0031, 0.0097, 5);
  EXPECT_NEAR(t.step, 0.002, 1e-15);
  ASSERT_EQ(t.values.size(), 5u);
  EXPECT_NEAR(t.values.front(), 0.002, 1e-15);
  EXPECT_NEAR(t.values.back(), 0.010, 1e-15);
  EXPECT_EQ(format_tick(t.values[0], t.step), "0.002");
  EXPECT_EQ(format_tick(t.values[4], t.step), "0.010");
}

TEST(SvgTicks, LargeAndNegativeRanges) {
  Ticks t = nice_ticks(0, 1500, 5);
  EXPECT_DOUBLE_EQ(t.step, 500);
  EXPECT_EQ(t.values, (std::vector<double>{0, 500, 1000, 1500}));
  EXPECT_EQ(format_tick(1000, 500), "1000");
  Ticks n = nice_ticks(-3, 7, 5);
  EXPECT_DOUBLE_EQ(n.step, 2);
  EXPECT_DOUBLE_EQ(n.values.front(), -4);
  EXPECT_DOUBLE_EQ(n.values.back(), 8);
}

TEST(SvgTicks, StepsAreOneTwoOrFiveTimesAPowerOfTen) {
  for (double hi : {0.37, 3.3, 17.0, 123.0, 9e5, 4.2e-6}) {
    Ticks t = nice_ticks(0, hi, 5);
    double mant = t.step / std::pow(10.0, std::floor(std::log10(t.step) + 1e-12));
    EXPECT_TRUE(std::fabs(mant - 1) < 1e-9 || std::fabs(mant - 2) < 1e-9 ||
                std::fabs(mant - 5) < 1e-9)
        << "hi=" << hi << " step=" << t.step;
    EXPECT_LE(t.values.front(), 0);
    EXPECT_GE(t.values.back(), hi);
    EXPECT_GE(t.values.size(), 3u);
    EXPECT_LE(t.values.size(), 12u);
  }
}

TEST(SvgTicks, ConstantAndNonFiniteRangesAreWidened) {
  for (double v : {0.0, 5.0, -2.5, 1e-7}) {
    Ticks t = nice_ticks(v, v, 5);
    EXPECT_GT(t.step, 0);
    EXPECT_TRUE(std::isfinite(t.step));
    EXPECT_LT(t.values.front(), v);
    EXPECT_GT(t.values.back(), v);
  }
  Ticks t = nice_ticks(kNaN, kNaN, 5);
  EXPECT_DOUBLE_EQ(t.values.front(), 0);
  EXPECT_DOUBLE_EQ(t.values.back(), 1);
}

TEST(SvgTicks, LogTicksAreDecades) {
  Ticks t = log_ticks(1e-4, 3e-2);
  ASSERT_EQ(t.values.size(), 4u);
  EXPECT_NEAR(t.values[0], 1e-4, 1e-18);
  EXPECT_NEAR(t.values[3], 1e-1, 1e-15);
  Ticks c = log_ticks(0.001, 0.001);  // constant learning rate
  EXPECT_LT(c.values.front(), 0.001);
  EXPECT_GT(c.values.back(), 0.001);
  EXPECT_THROW(log_ticks(0, 1), mox::Error);
}

TEST(SvgLineChart, OnePolylinePerSeriesWithAllPoints) {
  std::vector<Series> s = {{"loss", {0, 1, 2, 3, 4}, {1.0, 0.7, 0.5, 0.4, 0.35}},
                           {"val_loss", {0, 1, 2, 3, 4}, {1.1, 0.8, 0.6, 0.55, 0.5}}};
  std::string svg = line_chart("Loss", "epoch", "loss", s);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(polyline_points(svg), (std::vector<size_t>{5, 5}));
  EXPECT_NE(svg.find("viewBox=\"0 0 640 400\""), std::string::npos);
  EXPECT_NE(svg.find("font-family=\"sans-serif\""), std::string::npos);
  EXPECT_NE(svg.find(">val_loss</text>"), std::string::npos);  // legend
  EXPECT_NE(svg.find("#1f77b4"), std::string::npos);          // distinct colours
  EXPECT_NE(svg.find("#ff7f0e"), std::string::npos);
  EXPECT_NE(svg.find(">0.2</text>"), std::string::npos);  // y tick label
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(SvgLineChart, NaNBreaksTheLine) {
  std::vector<Series> s = {{"a", {0, 1, 2, 3, 4}, {1, 2, kNaN, 4, 5}},
                           {"b", {0, 1, 2, 3}, {1, kNaN, 3, 4}}};
  std::string svg = line_chart("t", "x", "y", s);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(polyline_points(svg), (std::vector<size_t>{2, 2, 2}));
  EXPECT_EQ(count(svg, "<circle"), 1u);  // the lone first point of "b"
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(SvgLineChart, ConstantSeriesAndEmptyInputStayFinite) {
  std::string svg = line_chart("c", "x", "y", {{"flat", {0, 1, 2}, {0.5, 0.5, 0.5}}});
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(polyline_points(svg), (std::vector<size_t>{3}));
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
  std::string one = line_chart("c", "x", "y", {{"one", {0}, {3}}});
  EXPECT_EQ(xml_error(one), "");
  EXPECT_EQ(one.find("nan"), std::string::npos);
  std::string empty = line_chart("c", "x", "y", {});
  EXPECT_EQ(xml_error(empty), "");
  EXPECT_EQ(count(empty, "<polyline"), 0u);
}

TEST(SvgLineChart, LogScaleForLearningRate) {
  ChartOptions o;
  o.log_y = true;
  std::string svg =
      line_chart("Learning rate", "epoch", "lr", {{"lr", {0, 1, 2, 3}, {1e-3, 5e-4, 1e-4, 0}}}, o);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(polyline_points(svg), (std::vector<size_t>{3}));  // lr 0 is left out on a log axis
  EXPECT_NE(svg.find(">0.001</text>"), std::string::npos);
  EXPECT_NE(svg.find(">0.0001</text>"), std::string::npos);
}

TEST(SvgLineChart, EscapesAllText) {
  std::string svg = line_chart("a<b & c", "x\"", "y>", {{"s<1>", {0, 1}, {0, 1}}});
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_NE(svg.find("a&lt;b &amp; c"), std::string::npos);
  EXPECT_EQ(svg.find("a<b"), std::string::npos);
  EXPECT_NE(svg.find("s&lt;1&gt;"), std::string::npos);
  EXPECT_NE(svg.find("x&quot;"), std::string::npos);
}

TEST(SvgLineChart, RejectsBadInput) {
  EXPECT_THROW(line_chart("t", "x", "y", {{"s", {0, 1, 2}, {0, 1}}}), mox::Error);
  ChartOptions tiny;
  tiny.width = 50;
  EXPECT_THROW(line_chart("t", "x", "y", {}, tiny), mox::Error);
}

TEST(SvgHeatmap, CellsNumbersAndShading) {
  std::vector<int64_t> m = {50, 2, 0, 3, 41, 6, 1, 12, 37};
  std::string svg = heatmap("Confusion matrix", {"cat", "dog", "a<b"}, {"cat", "dog", "a<b"}, m,
                            "True", "Predicted");
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(count(svg, "class=\"cell\""), 9u);
  for (const char* n : {">50</text>", ">41</text>", ">37</text>", ">12</text>", ">0</text>"})
    EXPECT_NE(svg.find(n), std::string::npos) << n;
  EXPECT_NE(svg.find("fill=\"rgb(8,48,107)\""), std::string::npos);     // the maximum
  EXPECT_NE(svg.find("fill=\"rgb(255,255,255)\""), std::string::npos);  // the zero
  EXPECT_EQ(count(svg, "fill=\"#ffffff\">"), 3u);  // white numbers on the dark diagonal
  EXPECT_NE(svg.find(">Predicted</text>"), std::string::npos);
  EXPECT_NE(svg.find("a&lt;b"), std::string::npos);
}

TEST(SvgHeatmap, DoublesAndErrors) {
  std::string svg = heatmap("h", {"r0", "r1"}, {"c0", "c1", "c2"},
                            std::vector<double>{0.5, 0.25, 0.0, 1.0, kNaN, 0.125},
                            "rows", "cols");
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(count(svg, "class=\"cell\""), 6u);
  EXPECT_NE(svg.find(">0.125</text>"), std::string::npos);
  EXPECT_NE(svg.find(">nan</text>"), std::string::npos);
  EXPECT_THROW(heatmap("h", {"r"}, {"c"}, std::vector<double>{1, 2}, "r", "c"), mox::Error);
  EXPECT_THROW(heatmap("h", {}, {}, std::vector<int64_t>{}, "r", "c"), mox::Error);
  // Constant matrix: no division by zero in the shading.
  std::string flat = heatmap("h", {"a", "b"}, {"a", "b"}, std::vector<int64_t>{3, 3, 3, 3}, "r", "c");
  EXPECT_EQ(xml_error(flat), "");
  EXPECT_EQ(flat.find("nan"), std::string::npos);
}

TEST(SvgRoc, SquarePlotWithChanceLine) {
  std::vector<Series> c = {{"class 0 (AUC = 0.912)", {0, 0.1, 0.3, 1}, {0, 0.6, 0.9, 1}},
                           {"class 1 (AUC = 0.850)", {0, 0.2, 1}, {0, 0.7, 1}}};
  std::string svg = roc_chart("ROC", c);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(polyline_points(svg), (std::vector<size_t>{4, 3}));
  EXPECT_EQ(count(svg, "class=\"chance\""), 1u);
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
  EXPECT_NE(svg.find("(AUC = 0.912)"), std::string::npos);
  std::smatch m;
  std::regex frame("<rect x=\"[^\"]*\" y=\"[^\"]*\" width=\"([^\"]*)\" height=\"([^\"]*)\" "
                   "fill=\"none\" stroke=\"#333333\"");
  ASSERT_TRUE(std::regex_search(svg, m, frame));
  EXPECT_EQ(m[1].str(), m[2].str());
  EXPECT_NE(svg.find(">0.2</text>"), std::string::npos);
  EXPECT_NE(svg.find(">1.0</text>"), std::string::npos);
}

TEST(SvgBarChart, GroupedBarsPerClass) {
  std::vector<BarSeries> s = {{"precision", {0.9, 0.8, 0.7}},
                              {"recall", {0.85, kNaN, 0.6}},
                              {"f1", {0.87, 0.8, 0.65}}};
  std::string svg = bar_chart("Per-class metrics", {"cat", "dog", "bird"}, "score", s);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(count(svg, "class=\"bar\""), 8u);  // 9 minus the NaN
  EXPECT_NE(svg.find(">bird</text>"), std::string::npos);
  EXPECT_NE(svg.find(">recall</text>"), std::string::npos);
  EXPECT_NE(svg.find(">1.0</text>"), std::string::npos);  // scores keep the 0..1 axis
  std::string neg = bar_chart("n", {"a", "b"}, "v", {{"s", {-2, 3}}});
  EXPECT_EQ(xml_error(neg), "");
  EXPECT_EQ(count(neg, "class=\"bar\""), 2u);
  // Many long labels are rotated and still well-formed.
  std::vector<std::string> cats;
  for (int i = 0; i < 20; ++i) cats.push_back("category number " + std::to_string(i));
  std::string rot = bar_chart("r", cats, "v", {{"s", std::vector<double>(20, 0.5)}});
  EXPECT_EQ(xml_error(rot), "");
  EXPECT_EQ(count(rot, "rotate(-40)"), 20u);
  EXPECT_THROW(bar_chart("b", {"a", "b"}, "v", {{"s", {1}}}), mox::Error);
  EXPECT_THROW(bar_chart("b", {}, "v", {}), mox::Error);
}

}  // namespace
}  // namespace mox::train
