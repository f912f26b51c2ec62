// mox cost train / serve / hardware through the CLI: the table holds the hand-computed
// numbers, --format json parses, --html is self-contained with charts, and bad input gets
// one line naming the file or option and exit code 1.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli/run_cli.h"

namespace fs = std::filesystem;
using mox::testing::run_cli;
using mox::testing::slurp;
using nlohmann::json;

namespace {

class CostCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = (fs::temp_directory_path() / ("mox_cost_cli." + std::to_string(::getpid()))).string();
    fs::remove_all(base_);
    fs::create_directories(base_ + "/gpt");
    // 1e11 f32 FLOP/s, 360 W, 3.6 an hour: round numbers to check by hand.
    write("hw.toml",
          "[hardware.round]\nwatts = 360\nprice_per_hour = 3.6\n[hardware.round.peak_flops]\nf32 = 1e11\nbf16 = 1e15\n");
    // A GPT run: N = 1e6, 1e6 tokens at 1e4 tokens/s, L = 4, T = 128, d = 128.
    write("gpt/summary.json",
          R"({"parameters": 1000000, "tokens": 1000000, "tokens_per_second": 10000.0, "train_seconds": 100.0,
              "block_size": 128, "device": "cpu", "precision": "f32",
              "model": {"type": "gpt", "n_layer": 4, "n_embd": 128, "block_size": 128}})");
    write("prices.toml", "currency = \"EUR\"\n[models.gpt-char]\nprompt_per_1m = 10.0\ncompletion_per_1m = 20.0\n");
    write("bench.json", R"({"model": "gpt-char", "endpoint": "/v1/completions", "hardware": "round",
      "replica_threads": 2, "results": [
      {"concurrency": 1, "batching": true, "requests": 100, "errors": 0, "duration_s": 10.0, "requests_per_s": 10.0,
       "prompt_tokens": 5000, "completion_tokens": 20000, "tokens_per_s": 2500.0, "completion_tokens_per_s": 2000.0,
       "latency_ms": {"p50": 90.0, "p90": 95.0, "p99": 100.0}},
      {"concurrency": 16, "batching": true, "requests": 400, "errors": 0, "duration_s": 10.0, "requests_per_s": 40.0,
       "prompt_tokens": 20000, "completion_tokens": 80000, "tokens_per_s": 10000.0, "completion_tokens_per_s": 8000.0,
       "latency_ms": {"p50": 400.0, "p90": 700.0, "p99": 900.0}}]})");
  }
  static void TearDownTestSuite() { fs::remove_all(base_); }
  static void write(const std::string& rel, const std::string& text) {
    std::ofstream(base_ + "/" + rel, std::ios::binary) << text;
  }
  static std::string at(const std::string& rel) { return base_ + "/" + rel; }
  // The forecast of the tests: 1M requests a month of 50 + 200 tokens: revenue 4500 EUR
  // (50 x 10 + 200 x 20 per 1M), one replica 730 h x 3.6 = 2628 + 372 fixed = 3000 cost,
  // margin 1500; training 4000: cumulative -2500, -1000, +500 -> break-even in month 3.
  static std::vector<std::string> serve_args() {
    return {"cost", "serve", "--bench", at("bench.json"), "--prices", at("prices.toml"), "--hardware", at("hw.toml"),
            "--requests-per-month", "1000000", "--prompt-tokens", "50", "--completion-tokens", "200",
            "--months", "6", "--fixed-monthly", "372", "--training-cost", "4000"};
  }
  static std::string base_;
};
std::string CostCli::base_;

}  // namespace

TEST_F(CostCli, TrainFromARunFolder) {
  auto r = run_cli({"cost", "train", "--run", at("gpt"), "--hardware", at("hw.toml"), "--hardware-name", "round"});
  ASSERT_EQ(r.code, 0) << r.err;
  // per token 6e6 + 6*4*128*128 = 6393216; x 1e4 tokens/s / 1e11 = 63.93% MFU
  EXPECT_NE(r.out.find("6.393e+06"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("63.93%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("6N + 6*L*T*d"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("0.01 kWh"), std::string::npos) << r.out;  // 360 W x 100 s
  EXPECT_NE(r.out.find("0.1 USD"), std::string::npos) << r.out;   // 100 s at 3.6/h

  auto j = run_cli({"cost", "train", "--run", at("gpt"), "--hardware", at("hw.toml"), "--hardware-name", "round",
                    "--format", "json"});
  ASSERT_EQ(j.code, 0) << j.err;
  json o = json::parse(j.out);
  EXPECT_NEAR(o["mfu"].get<double>(), 0.6393216, 1e-9);
  EXPECT_NEAR(o["total_flops"].get<double>(), 6393216.0 * 1e6, 1);
  EXPECT_EQ(o["precision"], "f32");
}

TEST_F(CostCli, TrainEstimate) {
  auto r = run_cli({"cost", "train", "--params", "1e9", "--tokens", "1e9", "--hardware", at("hw.toml"),
                    "--hardware-name", "round", "--mfu", "0.5", "--format", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json o = json::parse(r.out);
  EXPECT_NEAR(o["seconds"].get<double>(), 12000.0, 1e-6);  // 6e18 / (1e15 x 0.5)
  EXPECT_EQ(o["precision"], "bf16");
  EXPECT_NEAR(o["total_cost"].get<double>(), 12.0, 1e-9);

  auto t = run_cli({"cost", "train", "--params", "1e9", "--tokens", "1e9", "--hardware-name", "h100-sxm"});
  ASSERT_EQ(t.code, 0) << t.err;
  // 6e18 / (989e12 x 0.4) = 15166.8 s
  EXPECT_NE(t.out.find("15167 s"), std::string::npos) << t.out;
}

TEST_F(CostCli, TrainBadInput) {
  auto r = run_cli({"cost", "train", "--run", at("gpt"), "--hardware-name", "tpu-v9"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unknown hardware 'tpu-v9'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("h100-sxm"), std::string::npos) << r.err;
  EXPECT_EQ(mox::testing::lines_of(r.err).size(), 1u) << r.err;

  auto n = run_cli({"cost", "train", "--hardware-name", "h200"});
  EXPECT_EQ(n.code, 1);
  EXPECT_NE(n.err.find("--run DIR or --params"), std::string::npos) << n.err;

  auto e = run_cli({"cost", "train", "--params", "1e9", "--tokens", "1e9"});
  EXPECT_EQ(e.code, 1);
  EXPECT_NE(e.err.find("--hardware-name"), std::string::npos) << e.err;

  auto m = run_cli({"cost", "train", "--run", at("missing-run")});
  EXPECT_EQ(m.code, 1);
  EXPECT_NE(m.err.find("missing-run"), std::string::npos) << m.err;
}

TEST_F(CostCli, ServeTableForecastAndBreakEven) {
  auto r = run_cli(serve_args());
  ASSERT_EQ(r.code, 0) << r.err;
  // operating point: 8000 completion tokens/s at 3.6/h -> 0.125 per 1M completion, 0.1 per 1M tokens
  EXPECT_NE(r.out.find("cost per 1M completion tokens: 0.125 EUR"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cost per 1M tokens (prompt + completion): 0.1 EUR"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("4500.00"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3000.00"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("-2500.00"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("break-even: month 3"), std::string::npos) << r.out;

  // A latency limit moves the operating point to concurrency 1 (2000 tokens/s: 0.5 per 1M).
  auto l = run_cli({"cost", "serve", "--bench", at("bench.json"), "--hardware", at("hw.toml"), "--max-p99-ms", "150"});
  ASSERT_EQ(l.code, 0) << l.err;
  EXPECT_NE(l.out.find("cost per 1M completion tokens: 0.5 USD"), std::string::npos) << l.out;
}

TEST_F(CostCli, ServeJson) {
  auto args = serve_args();
  args.insert(args.end(), {"--format", "json"});
  auto r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  json o = json::parse(r.out);
  EXPECT_EQ(o["break_even_month"], 3);
  EXPECT_EQ(o["currency"], "EUR");
  EXPECT_EQ(o["operating_point"]["concurrency"], 16);
  ASSERT_EQ(o["months"].size(), 6u);
  EXPECT_NEAR(o["months"][0]["revenue"].get<double>(), 4500, 1e-6);
  EXPECT_NEAR(o["months"][0]["cost"].get<double>(), 3000, 1e-6);
  EXPECT_EQ(o["months"][0]["replicas"], 1);
  // (6 x 3000 + 4000) / (6 x 250 M tokens)
  EXPECT_NEAR(o["break_even_price_per_1m_tokens"].get<double>(), 22000.0 / 1500, 1e-9);

  // The training cost of a run folder: 100 s on "round" = 0.1.
  auto t = run_cli({"cost", "serve", "--bench", at("bench.json"), "--prices", at("prices.toml"), "--hardware",
                    at("hw.toml"), "--requests-per-month", "1000", "--training-run", at("gpt"),
                    "--training-hardware", "round", "--format", "json"});
  ASSERT_EQ(t.code, 0) << t.err;
  json ot = json::parse(t.out);
  EXPECT_NEAR(ot["demand"]["training_cost"].get<double>(), 0.1, 1e-12);
  // prompt/completion tokens per request default to the operating point's averages (50, 200)
  EXPECT_DOUBLE_EQ(ot["demand"]["prompt_tokens"].get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(ot["demand"]["completion_tokens"].get<double>(), 200.0);
}

TEST_F(CostCli, ServeHtmlIsSelfContained) {
  auto args = serve_args();
  const std::string html_path = at("cost.html");
  args.insert(args.end(), {"--html", html_path});
  auto r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string h = slurp(html_path);
  ASSERT_FALSE(h.empty());
  size_t svgs = 0;
  for (size_t p = h.find("<svg"); p != std::string::npos; p = h.find("<svg", p + 1)) svgs++;
  EXPECT_EQ(svgs, 3u);  // cost per concurrency, revenue vs cost, cumulative profit
  EXPECT_NE(h.find("Break-even: month 3"), std::string::npos);
  EXPECT_NE(h.find("Cumulative profit"), std::string::npos);
  // the only http:// is the SVG namespace; no scripts, no linked resources
  for (size_t p = h.find("http://"); p != std::string::npos; p = h.find("http://", p + 1))
    EXPECT_EQ(h.compare(p, 26, "http://www.w3.org/2000/svg"), 0) << h.substr(p, 60);
  EXPECT_EQ(h.find("https://"), std::string::npos);
  EXPECT_EQ(h.find("<script"), std::string::npos);
  EXPECT_EQ(h.find("<link"), std::string::npos);
}

TEST_F(CostCli, ServeBadInput) {
  write("bad-bench.json", R"({"model": "m", "results": [{"concurrency": 1}]})");
  auto b = run_cli({"cost", "serve", "--bench", at("bad-bench.json"), "--hardware-name", "cpu-2core"});
  EXPECT_EQ(b.code, 1);
  EXPECT_NE(b.err.find("bad-bench.json"), std::string::npos) << b.err;
  EXPECT_NE(b.err.find("results[0].requests: missing"), std::string::npos) << b.err;

  auto args = serve_args();
  args[9] = "-5";  // --requests-per-month
  auto n = run_cli(args);
  EXPECT_EQ(n.code, 1);
  EXPECT_NE(n.err.find("--requests-per-month"), std::string::npos) << n.err;

  auto p = run_cli({"cost", "serve", "--bench", at("bench.json"), "--hardware", at("hw.toml"), "--prices",
                    at("prices.toml"), "--model-name", "other"});
  EXPECT_EQ(p.code, 1);
  EXPECT_NE(p.err.find("no price for model 'other'"), std::string::npos) << p.err;

  auto f = run_cli({"cost", "serve", "--bench", at("bench.json"), "--hardware", at("hw.toml"),
                    "--requests-per-month", "10"});
  EXPECT_EQ(f.code, 1);
  EXPECT_NE(f.err.find("--prices"), std::string::npos) << f.err;

  auto h = run_cli({"cost", "serve", "--bench", at("bench.json")});  // bench hardware "round" is unknown here
  EXPECT_EQ(h.code, 1);
  EXPECT_NE(h.err.find("unknown hardware 'round'"), std::string::npos) << h.err;
}

TEST_F(CostCli, HardwareList) {
  auto r = run_cli({"cost", "hardware", "--hardware", at("hw.toml")});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* n : {"cpu-2core", "cpu-16core", "a100-80gb", "h100-sxm", "h200", "round"})
    EXPECT_NE(r.out.find(std::string(n) + ":"), std::string::npos) << n;
}
