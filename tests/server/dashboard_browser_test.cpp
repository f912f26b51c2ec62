// The server's dashboard (GET /dashboard) in a real browser: an in-process server with an
// admin token and a price list takes a short load from two customers (completions,
// classifications, a few errors); Debian's Chromium then loads the page headless, lets its
// script fetch /dashboard/data and draw, and the DOM it dumps must show this month's
// metered totals and revenue (as the store and make_invoice count them), every chart with
// exactly the marks the usage implies, the customers (escaped), the limited key's quota
// percentage and the revoked key marked. A screenshot must not be blank and must show the
// palette's colours. With a wrong admin token the page's data fetch is refused and the
// page says so; before any request every chart says there is nothing yet. Chromium is
// part of the project's setup, so its absence is a failure.
#include <httplib.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include <nlohmann/json.hpp>

#include "../cli/run_cli.h"
#include "server_fixture.h"
#include "mox/data/datasets/image_file.h"
#include "mox/serve/dashboard.h"
#include "mox/serve/prices.h"
#include "mox/serve/server.h"
#include "mox/serve/store.h"
#include "../pixels.h"

using namespace mox;
using json = nlohmann::json;
using mox::testing::slurp;
namespace fs = std::filesystem;

namespace {

const char* kChromium = "/usr/bin/chromium";
const std::string kAdmin = "admin-s3cret";

// Headless Chromium on `url` with `action` (--screenshot=... or --dump-dom), stdout to
// `out`; a private profile and HOME under `dir`, virtual time so that the page's fetch and
// drawing complete, killed after 60 s.
int chromium(const std::string& dir, const std::string& name, const std::string& action, const std::string& url,
             const std::string& out) {
  const std::string home = dir + "/home-" + name;
  fs::create_directories(home);
  const std::string cmd = "cd '" + home + "' && HOME='" + home + "' XDG_CONFIG_HOME='" + home + "' XDG_CACHE_HOME='" + home +
                          "' timeout 60 " + kChromium +
                          " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars"
                          " --no-first-run --disable-extensions --disable-background-networking --disable-sync"
                          " --virtual-time-budget=10000 --window-size=1280,1400 --user-data-dir='" +
                          dir + "/profile-" + name + "' " + action + " '" + url + "' > '" + out + "' 2> '" + dir + "/" +
                          name + ".log'";
  return std::system(cmd.c_str());
}

// The text inside the element with id `id` (up to its first child tag).
std::string text_of(const std::string& dom, const std::string& id) {
  const size_t at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "<no element #" + id + ">";
  const size_t open = dom.find('>', at);
  return dom.substr(open + 1, dom.find('<', open) - open - 1);
}

// An attribute of the element with id `id`, or "" when absent.
std::string attr_of(const std::string& dom, const std::string& id, const std::string& attr) {
  const size_t at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  const size_t start = dom.rfind('<', at), end = dom.find('>', at);
  const std::string tag = dom.substr(start, end - start);
  const size_t a = tag.find(" " + attr + "=\"");
  if (a == std::string::npos) return "";
  const size_t v = a + attr.size() + 3;
  return tag.substr(v, tag.find('"', v) - v);
}

// The markup of chart svg `id`, from its opening tag to its </svg>.
std::string svg_of(const std::string& dom, const std::string& id) {
  const size_t at = dom.find("<svg id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  return dom.substr(at, dom.find("</svg>", at) - at);
}

size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) n++;
  return n;
}

using mox::testing::Colour;
using mox::testing::count_near;

class DashboardBrowser : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = (fs::temp_directory_path() / ("mox_dashboard_browser." + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    mox::testing::make_server_runs(dir_);
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    if (!std::getenv("MOX_DASHBOARD_BROWSER_KEEP")) fs::remove_all(dir_, ec);
  }
  void SetUp() override {
    std::ofstream(dir_ + "/prices.toml") << "currency = \"EUR\"\n"
                                            "[models.gpt]\nprompt_per_1m = 1000.0\ncompletion_per_1m = 3000.0\n"
                                            "[models.fashion]\nper_classification = 0.05\n";
    serve::ServerOptions o;
    o.models = {dir_ + "/gpt", "fashion=" + dir_ + "/mlp"};
    o.port = 0;
    o.db_path = dir_ + "/usage-" + ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".sqlite";
    o.quiet = true;
    o.admin_token = kAdmin;
    o.prices_path = dir_ + "/prices.toml";
    server_ = std::make_unique<serve::Server>(o);
    server_->start();
  }
  void TearDown() override {
    server_->stop();
    server_->wait();
  }
  int post(const std::string& path, const json& body, const std::string& key) {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(60, 0);
    auto r = c.Post(path.c_str(), httplib::Headers{{"Authorization", "Bearer " + key}}, body.dump(), "application/json");
    return r ? r->status : 0;
  }

  static std::string dir_;
  std::unique_ptr<serve::Server> server_;
};
std::string DashboardBrowser::dir_;

TEST_F(DashboardBrowser, ChromiumDrawsTheMeteredUsage) {
  ASSERT_TRUE(fs::exists(kChromium)) << kChromium
                                     << " is missing: run scripts/setup (it installs Debian's chromium package); "
                                        "the dashboard's browser test needs it";
  const auto t0 = std::chrono::steady_clock::now();
  // Two customers; the second's name needs escaping and its key has a monthly quota.
  const std::string acme = server_->store().create_key("acme", {}).secret;
  serve::KeyLimits lim;
  lim.monthly_tokens = 3000;
  const serve::NewKey beta = server_->store().create_key("beta <b>&co</b>", lim);
  serve::KeyLimits old_lim;
  old_lim.monthly_tokens = 100;
  server_->store().revoke_key(server_->store().create_key("acme", old_lim).info.prefix);

  for (int i = 0; i < 6; i++)
    for (const std::string& key : {acme, beta.secret}) {
      const json req = {{"model", "gpt"}, {"prompt", "User: what is " + std::to_string(i) + "?\nAssistant:"},
                        {"max_tokens", 4 + i}, {"temperature", 0}};
      ASSERT_EQ(post("/v1/completions", req, key), 200);
    }
  for (int i = 0; i < 3; i++)
    for (const std::string& key : {acme, beta.secret}) {
      const json rows = json::array({std::vector<double>(784, 0.1 * i), std::vector<double>(784, 0.5)});
      ASSERT_EQ(post("/v1/classify", {{"model", "fashion"}, {"input", rows}}, key), 200);
    }
  EXPECT_EQ(post("/v1/completions", {{"model", "nope"}, {"prompt", "x"}}, acme), 404);
  EXPECT_EQ(post("/v1/completions", {{"model", "gpt"}, {"prompt", "User:"}, {"max_tokens", 500}}, beta.secret), 400);

  // What the store metered this month, and what the price list bills for it.
  const std::string month = serve::month_of(serve::utc_now_iso());
  const std::vector<serve::UsageTotal> usage = server_->store().usage(month);
  int64_t requests = 0, errors = 0, prompt = 0, completion = 0, classified = 0;
  for (const auto& u : usage) {
    requests += u.requests;
    errors += u.errors;
    prompt += u.prompt_tokens;
    completion += u.completion_tokens;
    classified += u.classifications;
  }
  ASSERT_EQ(requests, 20);
  ASSERT_EQ(errors, 2);
  ASSERT_EQ(classified, 12);
  const serve::PriceList prices = serve::load_prices(dir_ + "/prices.toml");
  const double revenue = serve::revenue(usage, prices);
  ASSERT_GT(revenue, 0.5);
  // The marks each chart must draw, from the same rows bucketed as the page asks (15 s).
  std::set<std::pair<std::string, std::string>> with_requests, with_tokens;
  for (const auto& b : server_->store().buckets("2000-01-01T00:00:00Z", 15)) {
    if (b.requests > 0) with_requests.insert({b.start, b.model});
    if (b.prompt_tokens + b.completion_tokens > 0) with_tokens.insert({b.start, b.model});
  }
  const int64_t beta_used = server_->store().tokens_used(beta.info.id, month);
  ASSERT_GT(beta_used, 0);
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.1f%% of 3000", double(beta_used) / 3000 * 100);

  // The page itself needs the admin token.
  httplib::Client c("127.0.0.1", server_->port());
  auto bare = c.Get("/dashboard");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->status, 401);
  EXPECT_EQ(json::parse(bare->body)["error"]["code"], "invalid_admin_token") << bare->body;
  auto page = c.Get(("/dashboard?token=" + kAdmin).c_str());
  ASSERT_TRUE(page);
  ASSERT_EQ(page->status, 200);
  EXPECT_EQ(page->body, serve::dashboard_html());
  EXPECT_LT(page->body.size(), 25000u);
  // Self-contained: the only URL in it is the SVG namespace.
  EXPECT_EQ(count_of(page->body, "http"), count_of(page->body, "'http://www.w3.org/2000/svg'"));

  const std::string url =
      "http://127.0.0.1:" + std::to_string(server_->port()) + "/dashboard?token=" + kAdmin + "&minutes=5&bucket=15";
  const std::string dom_path = dir_ + "/page.dom";
  ASSERT_EQ(chromium(dir_, "dom", "--dump-dom", url, dom_path), 0) << slurp(dir_ + "/dom.log");
  const std::string dom = slurp(dom_path);
  ASSERT_NE(dom.find("</html>"), std::string::npos) << dom.substr(0, 400);
  EXPECT_EQ(text_of(dom, "error"), "");
  EXPECT_NE(text_of(dom, "status").find("updated " + month), std::string::npos) << text_of(dom, "status");
  EXPECT_NE(dom.find("(last 5 min, 15 s buckets)"), std::string::npos) << "minutes and bucket are passed on";

  // This month's totals, as metered.
  EXPECT_EQ(text_of(dom, "month"), month);
  EXPECT_EQ(text_of(dom, "total-requests"), std::to_string(requests));
  EXPECT_EQ(text_of(dom, "total-errors"), std::to_string(errors));
  EXPECT_EQ(text_of(dom, "total-prompt-tokens"), std::to_string(prompt));
  EXPECT_EQ(text_of(dom, "total-completion-tokens"), std::to_string(completion));
  EXPECT_EQ(text_of(dom, "total-tokens"), std::to_string(prompt + completion));
  EXPECT_EQ(text_of(dom, "total-classifications"), std::to_string(classified));
  // Revenue: the exact amount in data-value, shown to the cent with the currency.
  EXPECT_NEAR(std::stod(attr_of(dom, "revenue", "data-value")), revenue, 1e-9 * revenue);
  const std::string shown = text_of(dom, "revenue");
  ASSERT_EQ(shown.size() > 4 ? shown.substr(shown.size() - 4) : shown, " EUR") << shown;
  EXPECT_NEAR(std::stod(shown), revenue, 0.005 + 1e-9) << shown;

  // Every chart drew exactly the marks the usage implies.
  const std::map<std::string, size_t> expected = {
      {"chart-requests", with_requests.size()},    // a bar per bucket and model
      {"chart-tokens", with_tokens.size()},        // gpt only: the classifier has no tokens
      {"chart-latency", 3 * with_requests.size()}, // p50, p95, p99 per bucket and model
      {"chart-customers", 4},                      // requests and tokens of two customers
      {"chart-quota", 3},                          // three keys, one revoked
  };
  for (const auto& [id, n] : expected) {
    SCOPED_TRACE(id);
    const std::string svg = svg_of(dom, id);
    ASSERT_FALSE(svg.empty());
    EXPECT_EQ(attr_of(dom, id, "data-points"), std::to_string(n));
    EXPECT_GE(count_of(svg, "<rect") + count_of(svg, "<path"), n);
    EXPECT_NE(svg.find("<text"), std::string::npos);
  }
  EXPECT_EQ(count_of(svg_of(dom, "chart-latency"), "<circle"), 3 * with_requests.size());
  EXPECT_GE(with_requests.size(), 3u);  // gpt, fashion and the unknown model "nope"
  // Axis ticks with numbers: the requests axis starts at 0.
  EXPECT_NE(svg_of(dom, "chart-requests").find(">0</text>"), std::string::npos);

  // Customers, escaped (never parsed as markup), and the quotas.
  EXPECT_NE(dom.find(">acme<"), std::string::npos);
  EXPECT_NE(dom.find("beta &lt;b&gt;&amp;co&lt;/b&gt;"), std::string::npos);
  EXPECT_EQ(dom.find("<b>&co</b>"), std::string::npos);
  EXPECT_EQ(dom.find("&amp;co</b>"), std::string::npos);
  const std::string quota = svg_of(dom, "chart-quota");
  EXPECT_NE(quota.find(pct), std::string::npos) << pct << " not in\n" << quota;
  EXPECT_NE(quota.find("unlimited"), std::string::npos);
  EXPECT_EQ(count_of(quota, "revoked"), 1u);
  EXPECT_NE(quota.find("0.0% of 100 \u00b7 revoked"), std::string::npos) << quota;
  // The table: a row per customer and model, then the totals.
  const size_t table = dom.find("<table id=\"usage-table\"");
  ASSERT_NE(table, std::string::npos);
  const std::string rows = dom.substr(table, dom.find("</table>", table) - table);
  EXPECT_EQ(count_of(rows, "<tr>"), 1 + usage.size() + 1);
  EXPECT_NE(rows.find("<td>nope</td>"), std::string::npos);

  // The screenshot: not blank, in the palette's colours (tab10 blue bars for acme and gpt,
  // orange for the second customer and fashion, green for the quota under 80 %).
  const std::string png = dir_ + "/page.png";
  ASSERT_EQ(chromium(dir_, "png", "--screenshot='" + png + "'", url, dir_ + "/png.stdout"), 0) << slurp(dir_ + "/png.log");
  const data::Rgba8 im = data::read_png_rgba8(png);
  ASSERT_EQ(im.width, 1280);
  ASSERT_EQ(im.height, 1400);
  std::set<uint32_t> colours;
  int64_t differs = 0;
  const uint32_t bg = uint32_t(im.pixels[0]) << 16 | uint32_t(im.pixels[1]) << 8 | im.pixels[2];
  for (size_t i = 0; i < im.pixels.size(); i += 4) {
    const uint32_t v = uint32_t(im.pixels[i]) << 16 | uint32_t(im.pixels[i + 1]) << 8 | im.pixels[i + 2];
    colours.insert(v);
    differs += v != bg;
  }
  EXPECT_GT(differs, int64_t(im.width) * im.height / 5) << "the screenshot is (nearly) blank";
  EXPECT_GT(colours.size(), 100u);
  const int64_t blue = count_near(im, {0x1f, 0x77, 0xb4}, 10), orange = count_near(im, {0xff, 0x7f, 0x0e}, 10),
                green = count_near(im, {0x2c, 0xa0, 0x2c}, 10);
  std::printf("dashboard screenshot: %lld blue, %lld orange, %lld green pixels\n", (long long)blue, (long long)orange,
              (long long)green);
  EXPECT_GT(blue, 2000);
  EXPECT_GT(orange, 1000);
  EXPECT_GT(green, 20);
  std::printf("dashboard browser test: %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

// The page loads but its data fetch is refused (wrong admin token): the page says why. The
// page comes from a small proxy that serves it without a token and passes /dashboard/data
// on to the real server, which answers 401.
TEST_F(DashboardBrowser, AWrongTokenShowsTheError) {
  ASSERT_TRUE(fs::exists(kChromium)) << kChromium << " is missing: run scripts/setup";
  const int port = server_->port();
  // The data endpoint itself refuses the wrong token.
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/dashboard/data?token=wrong");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);

  httplib::Server proxy;
  proxy.Get("/dashboard", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(serve::dashboard_html(), "text/html; charset=utf-8");
  });
  proxy.Get("/dashboard/data", [port](const httplib::Request& req, httplib::Response& res) {
    httplib::Client upstream("127.0.0.1", port);
    auto answer = upstream.Get("/dashboard/data", req.params, httplib::Headers{});
    res.status = answer ? answer->status : 502;
    if (answer) res.set_content(answer->body, "application/json");
  });
  const int proxy_port = proxy.bind_to_any_port("127.0.0.1");
  ASSERT_GT(proxy_port, 0);
  std::thread t([&] { proxy.listen_after_bind(); });
  while (!proxy.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));

  const std::string url = "http://127.0.0.1:" + std::to_string(proxy_port) + "/dashboard?token=wrong";
  const std::string dom_path = dir_ + "/refused.dom";
  const int rc = chromium(dir_, "refused", "--dump-dom", url, dom_path);
  proxy.stop();
  t.join();
  ASSERT_EQ(rc, 0) << slurp(dir_ + "/refused.log");
  const std::string dom = slurp(dom_path);
  ASSERT_NE(dom.find("</html>"), std::string::npos) << dom.substr(0, 400);
  EXPECT_NE(text_of(dom, "error").find("admin token missing or wrong"), std::string::npos) << text_of(dom, "error");
  EXPECT_EQ(text_of(dom, "status"), "no data yet");
  EXPECT_EQ(attr_of(dom, "chart-requests", "data-points"), "");
}

// Before any request: zero totals, and every chart says there is nothing to draw yet.
TEST_F(DashboardBrowser, AnEmptyServerSaysSo) {
  ASSERT_TRUE(fs::exists(kChromium)) << kChromium << " is missing: run scripts/setup";
  const std::string url = "http://127.0.0.1:" + std::to_string(server_->port()) + "/dashboard?token=" + kAdmin;
  const std::string dom_path = dir_ + "/empty.dom";
  ASSERT_EQ(chromium(dir_, "empty", "--dump-dom", url, dom_path), 0) << slurp(dir_ + "/empty.log");
  const std::string dom = slurp(dom_path);
  ASSERT_NE(dom.find("</html>"), std::string::npos) << dom.substr(0, 400);
  EXPECT_EQ(text_of(dom, "error"), "");
  EXPECT_EQ(text_of(dom, "total-requests"), "0");
  EXPECT_EQ(text_of(dom, "total-tokens"), "0");
  EXPECT_EQ(text_of(dom, "revenue"), "0.00 EUR");
  for (const char* id : {"chart-requests", "chart-tokens", "chart-latency", "chart-customers", "chart-quota"})
    EXPECT_EQ(attr_of(dom, id, "data-points"), "0") << id;
  EXPECT_NE(svg_of(dom, "chart-requests").find("no requests in the last 60 minutes"), std::string::npos);
  EXPECT_NE(svg_of(dom, "chart-quota").find("no API keys yet"), std::string::npos);
  EXPECT_NE(dom.find("no usage this month yet"), std::string::npos);
}

}  // namespace
