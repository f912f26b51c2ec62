// report.html in a real browser: Debian's Chromium renders the reports of a 10-class run, a
// binary run and a regression run headless; the screenshots must not be blank and must show
// the chart colours (tab10 blue and orange curves, dark-blue confusion cells, the
// translucent scatter points), and the DOM that Chromium parsed must hold every chart <svg>
// inside its section. Chromium is part of the project's setup, so its absence is a failure.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "mox/data/datasets/image_file.h"
#include "mox/train/report.h"
#include "test_report_util.h"
#include "../pixels.h"

namespace mox::train {
namespace {

namespace fs = std::filesystem;

const char* kChromium = "/usr/bin/chromium";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "mox_report_browser_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Runs headless Chromium on `html` with `action` (--screenshot=... or --dump-dom), stdout
// to `out`; a private profile and HOME under the temp dir, killed after 60 s.
int chromium(const TempDir& dir, const std::string& name, const std::string& action, const std::string& html,
             const std::string& out) {
  const std::string home = dir.file("home-" + name);
  fs::create_directories(home);
  const std::string cmd = "cd '" + home + "' && HOME='" + home + "' XDG_CONFIG_HOME='" + home + "' XDG_CACHE_HOME='" + home +
                          "' timeout 60 " + kChromium +
                          " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars"
                          " --no-first-run --disable-extensions --disable-background-networking --disable-sync"
                          " --window-size=1280,2400 --user-data-dir='" +
                          dir.file("profile-" + name) + "' " + action + " 'file://" + html + "' > '" + out + "' 2> '" +
                          dir.file(name + ".log") + "'";
  return std::system(cmd.c_str());
}

using mox::testing::Colour;
using mox::testing::count_near;

// The chart svg `id` lies between the opening of <section id="section"> and its end.
bool chart_in_section(const std::string& dom, const std::string& section, const std::string& id) {
  const size_t s = dom.find("<section id=\"" + section + "\"");
  if (s == std::string::npos) return false;
  const size_t e = dom.find("</section>", s);
  const size_t c = dom.find("<svg id=\"" + id + "\"", s);
  return c != std::string::npos && c < e;
}

struct Case {
  std::string name;
  ReportInput input;
  std::vector<std::pair<std::string, std::string>> charts;  // (section, chart id)
};

TEST(ReportBrowser, ChromiumRendersTheCharts) {
  ASSERT_TRUE(fs::exists(kChromium)) << kChromium
                                     << " is missing: run scripts/setup (it installs Debian's chromium package); "
                                        "the report's browser test needs it";
  const auto start = std::chrono::steady_clock::now();
  TempDir dir;
  std::vector<Case> cases = {
      {"multiclass",
       testing::cifar_like(),
       {{"curves", "chart-loss"},
        {"curves", "chart-accuracy"},
        {"curves", "chart-lr"},
        {"confusion", "chart-confusion"},
        {"roc", "chart-roc"},
        {"per-class", "chart-per-class"},
        {"timings", "chart-timings"}}},
      {"binary",
       testing::binary_run(),
       {{"curves", "chart-loss"}, {"confusion", "chart-confusion"}, {"roc", "chart-roc"}, {"per-class", "chart-per-class"}}},
      {"regression",
       testing::regression_run(),
       {{"curves", "chart-loss"}, {"curves", "chart-mae"}, {"regression", "chart-scatter"}, {"timings", "chart-timings"}}},
  };
  const Colour blue{0x1f, 0x77, 0xb4}, orange{0xff, 0x7f, 0x0e}, heat{8, 48, 107};
  // A scatter point: tab10 blue at opacity 0.55 over white.
  const Colour scatter{132, 180, 214};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string html = dir.file(c.name + ".html"), png = dir.file(c.name + ".png");
    write_report(html, c.input);

    ASSERT_EQ(chromium(dir, c.name, "--screenshot='" + png + "'", html, dir.file(c.name + ".stdout")), 0)
        << slurp(dir.file(c.name + ".log"));
    ASSERT_TRUE(fs::exists(png)) << slurp(dir.file(c.name + ".log"));
    // MOX_REPORT_BROWSER_OUT=<dir> keeps the pages and screenshots for a look by eye.
    if (const char* keep = std::getenv("MOX_REPORT_BROWSER_OUT")) {
      fs::create_directories(keep);
      fs::copy_file(html, fs::path(keep) / (c.name + ".html"), fs::copy_options::overwrite_existing);
      fs::copy_file(png, fs::path(keep) / (c.name + ".png"), fs::copy_options::overwrite_existing);
    }
    const data::Rgba8 im = data::read_png_rgba8(png);
    ASSERT_EQ(im.width, 1280);
    ASSERT_EQ(im.height, 2400);
    // Not blank: most of the page is background, but a good share differs from it, in many
    // distinct colours.
    std::set<uint32_t> colours;
    int64_t differs = 0;
    for (size_t i = 0; i < im.pixels.size(); i += 4) {
      const uint32_t v = uint32_t(im.pixels[i]) << 16 | uint32_t(im.pixels[i + 1]) << 8 | im.pixels[i + 2];
      colours.insert(v);
      differs += v != (uint32_t(im.pixels[0]) << 16 | uint32_t(im.pixels[1]) << 8 | im.pixels[2]);
    }
    const int64_t total = im.width * im.height;
    EXPECT_GT(differs, total / 5) << "the screenshot is (nearly) blank";
    EXPECT_GT(colours.size(), 200u);
    // Train curves in tab10 blue, validation curves in orange (2-px polylines).
    const int64_t n_blue = count_near(im, blue, 12), n_orange = count_near(im, orange, 12);
    const int64_t n_heat = count_near(im, heat, 40), n_scatter = count_near(im, scatter, 16);
    std::printf("%s: %lld blue, %lld orange, %lld dark-blue heat, %lld scatter pixels\n", c.name.c_str(),
                (long long)n_blue, (long long)n_orange, (long long)n_heat, (long long)n_scatter);
    EXPECT_GT(n_blue, 800);
    EXPECT_GT(n_orange, 600);
    if (c.input.task == "classification") {
      // The darkest cells of the confusion matrix (its diagonal): about 44x44 px each for 10
      // classes, 84x84 for 2 (enlarged), less the digits.
      EXPECT_GT(n_heat, 4000);
    } else {
      EXPECT_EQ(n_heat, 0);
      EXPECT_GT(n_scatter, 1200);
    }

    // The DOM that Chromium built holds every chart inside its section.
    const std::string dom_path = dir.file(c.name + ".dom");
    ASSERT_EQ(chromium(dir, c.name, "--dump-dom", html, dom_path), 0) << slurp(dir.file(c.name + ".log"));
    const std::string dom = slurp(dom_path);
    ASSERT_NE(dom.find("</html>"), std::string::npos) << dom.substr(0, 400);
    for (const auto& [section, id] : c.charts) EXPECT_TRUE(chart_in_section(dom, section, id)) << section << " / " << id;
    if (c.input.task == "regression")
      EXPECT_EQ(dom.find("chart-confusion"), std::string::npos);
    else
      EXPECT_EQ(dom.find("chart-scatter"), std::string::npos);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("browser test: %.1f s for %zu reports\n", seconds, cases.size());
}

}  // namespace
}  // namespace mox::train
