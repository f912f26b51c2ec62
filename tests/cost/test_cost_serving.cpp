// Serving cost and the revenue forecast (serve/cost.h): the bench file and its errors, the
// operating point, cost per 1M tokens, replicas per month, growth, break-even by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "error_of.h"
#include "mox/serve/cost.h"

using namespace mox::serve;

namespace {

// Three concurrency levels: 2000, 5000 and 8000 completion tokens/s at p99 100, 200, 900 ms.
const char* const kBench = R"({"model": "gpt-char", "endpoint": "/v1/completions", "hardware": "cpu-2core",
  "replica_threads": 2, "results": [
  {"concurrency": 1, "batching": true, "requests": 100, "errors": 0, "duration_s": 10.0, "requests_per_s": 10.0,
   "prompt_tokens": 5000, "completion_tokens": 20000, "tokens_per_s": 2500.0, "completion_tokens_per_s": 2000.0,
   "latency_ms": {"p50": 90.0, "p90": 95.0, "p99": 100.0}},
  {"concurrency": 4, "batching": true, "requests": 250, "errors": 0, "duration_s": 10.0, "requests_per_s": 25.0,
   "prompt_tokens": 12500, "completion_tokens": 50000, "tokens_per_s": 6250.0, "completion_tokens_per_s": 5000.0,
   "latency_ms": {"p50": 150.0, "p90": 180.0, "p99": 200.0}},
  {"concurrency": 16, "batching": true, "requests": 400, "errors": 0, "duration_s": 10.0, "requests_per_s": 40.0,
   "prompt_tokens": 20000, "completion_tokens": 80000, "tokens_per_s": 10000.0, "completion_tokens_per_s": 8000.0,
   "latency_ms": {"p50": 400.0, "p90": 700.0, "p99": 900.0}}]})";

}  // namespace

TEST(CostServing, ParsesTheBenchFile) {
  BenchRun b = parse_bench(kBench, "bench.json");
  EXPECT_EQ(b.model, "gpt-char");
  EXPECT_EQ(b.endpoint, "/v1/completions");
  EXPECT_EQ(b.hardware, "cpu-2core");
  EXPECT_EQ(b.replica_threads, 2);
  ASSERT_EQ(b.results.size(), 3u);
  EXPECT_EQ(b.results[1].concurrency, 4);
  EXPECT_DOUBLE_EQ(b.results[1].completion_tokens_per_s, 5000.0);
  EXPECT_DOUBLE_EQ(b.results[2].latency_ms.p99, 900.0);
  EXPECT_TRUE(b.results[0].batching);
}

TEST(CostServing, BenchErrorsNameTheFileAndField) {
  nlohmann::json j = nlohmann::json::parse(kBench);
  j["results"][1]["latency_ms"].erase("p99");
  expect_error([&] { parse_bench(j.dump(), "b.json"); }, {"b.json", "results[1].latency_ms.p99: missing"});
  j = nlohmann::json::parse(kBench);
  j["results"][0].erase("completion_tokens_per_s");
  expect_error([&] { parse_bench(j.dump(), "b.json"); }, {"b.json", "results[0].completion_tokens_per_s: missing"});
  j = nlohmann::json::parse(kBench);
  j["results"][2]["tokens_per_s"] = "fast";
  expect_error([&] { parse_bench(j.dump(), "b.json"); }, {"b.json", "results[2].tokens_per_s", "expected a number"});
  j = nlohmann::json::parse(kBench);
  j.erase("model");
  expect_error([&] { parse_bench(j.dump(), "b.json"); }, {"b.json", "model: missing"});
  j = nlohmann::json::parse(kBench);
  j["results"] = nlohmann::json::array();
  expect_error([&] { parse_bench(j.dump(), "b.json"); }, {"b.json", "results", "non-empty"});
  expect_error([&] { parse_bench("[1, 2", "b.json"); }, {"b.json", "not valid JSON"});
}

TEST(CostServing, CostPerMillionTokens) {
  // 3.6 an hour at 1000 tokens/s: 3.6 / 3.6e6 tokens = 1.0 per 1M tokens.
  EXPECT_DOUBLE_EQ(cost_per_1m_tokens(3.6, 1000), 1.0);
  EXPECT_DOUBLE_EQ(cost_per_1m_tokens(3.6, 8000), 0.125);
  EXPECT_TRUE(std::isinf(cost_per_1m_tokens(3.6, 0)));
}

TEST(CostServing, OperatingPointRespectsTheLatencyLimit) {
  BenchRun b = parse_bench(kBench, "bench.json");
  EXPECT_EQ(pick_operating_point(b, 0), 2u);      // any latency: the fastest
  EXPECT_EQ(pick_operating_point(b, 250), 1u);    // p99 <= 250 ms: concurrency 4
  EXPECT_EQ(pick_operating_point(b, 100), 0u);    // the limit itself is allowed
  expect_error([&] { pick_operating_point(b, 50); }, {"bench.json", "50 ms", "lowest p99 is 100 ms"});
  // A point with more than 1% errors is never the operating point.
  b.results[2].errors = 50;
  EXPECT_EQ(pick_operating_point(b, 0), 1u);
  EXPECT_FALSE(capacity_in_all_tokens(b));
  EXPECT_DOUBLE_EQ(capacity_of(b, b.results[1]), 5000.0);
}

TEST(CostServing, ClassifierBenchCountsAllTokens) {
  nlohmann::json j = nlohmann::json::parse(kBench);
  for (auto& r : j["results"]) {
    r["completion_tokens"] = 0;
    r["completion_tokens_per_s"] = 0.0;
  }
  BenchRun b = parse_bench(j.dump(), "b.json");
  EXPECT_TRUE(capacity_in_all_tokens(b));
  EXPECT_DOUBLE_EQ(capacity_of(b, b.results[0]), 2500.0);
}

TEST(CostServing, RevenuePerRequest) {
  ModelPrice p{1.0, 2.0, 0.01};
  // 50 prompt tokens at 1.0/1M + 200 completion tokens at 2.0/1M
  EXPECT_DOUBLE_EQ(revenue_per_request(p, 50, 200, "/v1/completions"), 0.00045);
  EXPECT_DOUBLE_EQ(revenue_per_request(p, 50, 0, "/v1/classify"), 0.00005 + 0.01);
}

TEST(CostServing, LinearBreakEvenByHand) {
  // 1M requests a month, no growth, 450 revenue a month; one replica at 100 a month
  // (730 h at 100/730 an hour) + 50 fixed: margin 300 a month. Training 1000:
  // cumulative -700, -400, -100, +200: break-even in month 4.
  Demand d;
  d.requests_per_month = 1e6;
  d.months = 24;
  d.prompt_tokens = 50;
  d.completion_tokens = 200;
  d.fixed_monthly = 50;
  d.training_cost = 1000;
  Forecast f = forecast(d, 0.00045, 8000, false, 100.0 / 730);
  ASSERT_EQ(f.months.size(), 24u);
  const MonthRow& m1 = f.months[0];
  EXPECT_NEAR(m1.revenue, 450, 1e-9);
  EXPECT_EQ(m1.replicas, 1);
  EXPECT_NEAR(m1.serving_cost, 100, 1e-9);
  EXPECT_NEAR(m1.margin, 300, 1e-9);
  EXPECT_NEAR(m1.cumulative, -700, 1e-9);
  EXPECT_NEAR(f.months[2].cumulative, -100, 1e-9);
  EXPECT_NEAR(f.months[3].cumulative, 200, 1e-9);
  EXPECT_EQ(f.break_even_month, 4);
  // Break-even price over 24 months: (24 x 150 + 1000) / 6000 M tokens, or per 4800 M
  // completion tokens.
  EXPECT_NEAR(f.break_even_price_per_1m_tokens, 4600.0 / 6000, 1e-12);
  EXPECT_NEAR(f.break_even_price_per_1m_completion, 4600.0 / 4800, 1e-12);
  EXPECT_NEAR(f.serving_cost_per_1m_tokens, 2400.0 / 6000, 1e-12);

  // Without enough margin: never within the horizon.
  d.training_cost = 1e6;
  EXPECT_EQ(forecast(d, 0.00045, 8000, false, 100.0 / 730).break_even_month, 0);
  // Without training cost and a profitable month 1: month 1.
  d.training_cost = 0;
  EXPECT_EQ(forecast(d, 0.00045, 8000, false, 100.0 / 730).break_even_month, 1);
}

TEST(CostServing, GrowthCompoundsAndReplicasFollowThePeak) {
  // Month 1: 1000 completion tokens/s on average (2.628e9 tokens in 730 h), 3000 at peak;
  // replicas of 1000 tokens/s: exactly 3. Month 2 (+10%): 3300 -> 4.
  Demand d;
  d.requests_per_month = 2.628e9 / 200;
  d.growth = 0.1;
  d.months = 13;
  d.completion_tokens = 200;
  Forecast f = forecast(d, 0.0, 1000, false, 2.0);
  EXPECT_NEAR(f.months[0].average_tokens_per_s, 1000, 1e-9);
  EXPECT_EQ(f.months[0].replicas, 3);
  EXPECT_NEAR(f.months[0].utilisation, 1.0 / 3, 1e-12);
  EXPECT_EQ(f.months[1].replicas, 4);
  EXPECT_NEAR(f.months[12].requests, d.requests_per_month * std::pow(1.1, 12), 1e-3);
  EXPECT_EQ(f.months[12].replicas, int64_t(std::ceil(3 * std::pow(1.1, 12))));  // 3 x 3.138 -> 10
  EXPECT_NEAR(f.months[0].serving_cost, 3 * 730 * 2.0, 1e-9);
  // Half the capacity at peak doubles the replicas.
  d.target_utilisation = 0.5;
  EXPECT_EQ(forecast(d, 0.0, 1000, false, 2.0).months[0].replicas, 6);
  // No demand still keeps min_replicas running.
  d.requests_per_month = 0;
  EXPECT_EQ(forecast(d, 0.0, 1000, false, 2.0).months[0].replicas, 1);
  d.min_replicas = 0;
  EXPECT_EQ(forecast(d, 0.0, 1000, false, 2.0).months[0].replicas, 0);
}

TEST(CostServing, BadDemand) {
  Demand d;
  d.requests_per_month = -5;
  expect_error([&] { check_demand(d); }, {"--requests-per-month", ">= 0", "-5"});
  d = Demand{};
  d.growth = -1;
  expect_error([&] { check_demand(d); }, {"--growth"});
  d = Demand{};
  d.months = 0;
  expect_error([&] { check_demand(d); }, {"--months"});
  d = Demand{};
  d.peak_factor = 0.5;
  expect_error([&] { check_demand(d); }, {"--peak-factor"});
  d = Demand{};
  d.target_utilisation = 1.5;
  expect_error([&] { check_demand(d); }, {"--target-utilisation"});
  d = Demand{};
  d.completion_tokens = -1;
  expect_error([&] { forecast(d, 0.001, 1000, false, 1.0); }, {"--completion-tokens"});
}
