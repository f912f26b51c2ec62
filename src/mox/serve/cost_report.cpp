// The renderers of cost.h: aligned text tables, JSON, and the self-contained HTML page.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "mox/nn/models/summary.h"
#include "mox/serve/cost.h"
#include "mox/train/svg.h"

namespace mox::serve {

namespace {

using Rows = std::vector<std::vector<std::string>>;

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// 3 significant digits in scientific form for FLOP counts: 1.12e+13.
std::string sci(double v) { return fmt("%.3e", v); }
// Amounts: cents from 1 up, 4 significant digits below (a training run may cost 0.0018).
std::string money(double v) {
  if (!std::isfinite(v)) return "inf";
  return std::fabs(v) >= 1 || v == 0 ? fmt("%.2f", v) : fmt("%.4g", v);
}
std::string count(double v) { return nn::group_thousands(int64_t(std::llround(v))); }
std::string num(double v) { return fmt("%.4g", v); }
std::string percent(double v) { return fmt("%.2f%%", 100 * v); }

std::string duration(double s) {
  if (s < 120) return fmt("%.2f s", s);
  if (s < 2 * 86400) return fmt("%.0f s", s) + " (" + fmt("%.2f h", s / 3600) + ")";
  return fmt("%.0f s", s) + " (" + fmt("%.1f days", s / 86400) + ")";
}


// null for infinity / NaN (JSON has neither)
nlohmann::ordered_json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

std::string html_escape(const std::string& s) { return train::xml_escape(s); }

}  // namespace

// ---------------------------------------------------------------- training

std::string training_table(const TrainingCost& c) {
  const TrainingWork& w = c.work;
  const std::string unit = w.unit, units = w.unit + "s";
  std::string out = (c.measured ? "Training cost of " + w.source + " (" + w.kind + " run" +
                                      (w.device.empty() ? "" : ", " + w.device) + ")"
                                : std::string("Training cost estimate")) +
                    " on " + c.hardware.name + (c.devices > 1 ? " x " + std::to_string(c.devices) : "") + "\n";
  Rows rows;
  rows.push_back({"FLOPs formula", w.formula});
  rows.push_back({"parameters", count(double(w.parameters))});
  rows.push_back({units, count(w.units)});
  rows.push_back({"FLOPs per " + unit, sci(w.flops_per_unit)});
  rows.push_back({"total FLOPs", sci(c.total_flops)});
  if (c.measured) rows.push_back({units + "/s (measured)", num(w.units_per_second)});
  rows.push_back({std::string("achieved FLOP/s") + (c.measured ? "" : " (assumed)"), sci(c.achieved_flops)});
  rows.push_back({"peak FLOP/s (" + c.precision + ")", sci(c.peak_flops) + " per device"});
  rows.push_back({"MFU", percent(c.mfu) + (c.measured ? " (measured)" : " (assumed)")});
  rows.push_back({c.measured ? "time" : "time (estimated)", duration(c.seconds)});
  rows.push_back({"device-hours", num(c.device_hours)});
  rows.push_back({"energy", num(c.kwh) + " kWh (" + num(c.hardware.watts) + " W per device)"});
  rows.push_back({"rental cost", money(c.rental_cost) + " " + c.currency + " (" + money(c.hardware.price_per_hour) +
                                     " per device-hour)"});
  if (c.energy_cost > 0) rows.push_back({"energy cost", money(c.energy_cost) + " " + c.currency});
  rows.push_back({"total cost", money(c.total_cost) + " " + c.currency});
  out += text_table(rows, {false, false});
  out += "(hardware: " + c.hardware.description + "; prices and peaks are assumptions, override with --hardware FILE)\n";
  return out;
}

std::string training_json(const TrainingCost& c) {
  const TrainingWork& w = c.work;
  nlohmann::ordered_json j;
  j["source"] = w.source;
  j["kind"] = w.kind;
  j["measured"] = c.measured;
  j["formula"] = w.formula;
  j["unit"] = w.unit;
  j["parameters"] = w.parameters;
  j["layers"] = w.layers;
  j["context"] = w.context;
  j["width"] = w.width;
  j["units"] = w.units;
  j["flops_per_unit"] = w.flops_per_unit;
  j["units_per_second"] = w.units_per_second;
  j["total_flops"] = c.total_flops;
  j["hardware"] = c.hardware.name;
  j["devices"] = c.devices;
  j["precision"] = c.precision;
  j["peak_flops"] = c.peak_flops;
  j["achieved_flops"] = c.achieved_flops;
  j["mfu"] = c.mfu;
  j["seconds"] = c.seconds;
  j["device_hours"] = c.device_hours;
  j["watts"] = c.hardware.watts;
  j["kwh"] = c.kwh;
  j["price_per_hour"] = c.hardware.price_per_hour;
  j["rental_cost"] = c.rental_cost;
  j["energy_cost"] = c.energy_cost;
  j["total_cost"] = c.total_cost;
  j["currency"] = c.currency;
  return j.dump(2) + "\n";
}

// ---------------------------------------------------------------- serving

namespace {

std::string basis_name(const ServingReport& r) {
  return capacity_in_all_tokens(r.bench) ? "tokens/s (prompt + completion)" : "completion tokens/s";
}

Rows bench_rows(const ServingReport& r) {
  const std::string cur = r.currency;
  Rows rows = {{"", "concurrency", "batching", "requests", "errors", "requests/s", "tokens/s", "completion tok/s",
                "p50 ms", "p90 ms", "p99 ms", cur + "/1M completion", cur + "/1M tokens"}};
  for (size_t i = 0; i < r.bench.results.size(); i++) {
    const BenchResult& b = r.bench.results[i];
    rows.push_back({i == r.operating_point ? "*" : "", std::to_string(b.concurrency), b.batching ? "yes" : "no",
                    std::to_string(b.requests), std::to_string(b.errors), num(b.requests_per_s), num(b.tokens_per_s),
                    num(b.completion_tokens_per_s), num(b.latency_ms.p50), num(b.latency_ms.p90),
                    num(b.latency_ms.p99),
                    money(cost_per_1m_tokens(r.hardware.price_per_hour, b.completion_tokens_per_s)),
                    money(cost_per_1m_tokens(r.hardware.price_per_hour, b.tokens_per_s))});
  }
  return rows;
}

std::string break_even_text(const Forecast& f, int64_t months) {
  if (f.break_even_month > 0) {
    const MonthRow& m = f.months[size_t(f.break_even_month - 1)];
    return "month " + std::to_string(f.break_even_month) + " (cumulative profit " + money(m.cumulative) + ")";
  }
  return "not within " + std::to_string(months) + " months";
}

std::string price_text(const ModelPrice& p, const std::string& cur) {
  std::string s = format_price(p.prompt_per_1m) + " " + cur + " per 1M prompt tokens, " +
                  format_price(p.completion_per_1m) + " per 1M completion tokens";
  if (p.per_classification > 0) s += ", " + format_price(p.per_classification) + " per classification";
  return s;
}

Rows month_rows(const ServingReport& r) {
  Rows rows = {{"month", "requests", "prompt tokens", "completion tokens", "revenue", "peak tok/s", "replicas",
                "utilisation", "serving", "fixed", "cost", "margin", "cumulative"}};
  for (const MonthRow& m : r.forecast.months)
    rows.push_back({std::to_string(m.month) + (m.month == r.forecast.break_even_month ? " *" : ""), count(m.requests),
                    count(m.prompt_tokens), count(m.completion_tokens), money(m.revenue), num(m.peak_tokens_per_s),
                    std::to_string(m.replicas), percent(m.utilisation), money(m.serving_cost), money(m.fixed_cost),
                    money(m.cost), money(m.margin), money(m.cumulative)});
  return rows;
}

}  // namespace

std::string serving_table(const ServingReport& r) {
  const BenchResult& op = r.bench.results[r.operating_point];
  const std::string cur = r.currency;
  std::string out = "Serving " + r.model + (r.bench.endpoint.empty() ? "" : " (" + r.bench.endpoint + ")") + " on " +
                    r.hardware.name + " at " + money(r.hardware.price_per_hour) + " " + cur +
                    "/h per replica; bench " + r.bench.file + "\n";
  out += text_table(bench_rows(r), {false, true, false, true, true, true, true, true, true, true, true, true, true});
  out += "* operating point: concurrency " + std::to_string(op.concurrency) + ", the highest " + basis_name(r) +
         (r.max_p99_ms > 0 ? " with p99 <= " + num(r.max_p99_ms) + " ms" : "") + ": " +
         num(capacity_of(r.bench, op)) + " per replica\n";
  out += "cost per 1M completion tokens: " + money(r.cost_per_1m_completion) + " " + cur +
         " (prompt tokens free; replica fully used)\n";
  out += "cost per 1M tokens (prompt + completion): " + money(r.cost_per_1m_tokens) + " " + cur + "\n";
  if (r.price) out += "price of " + r.model + ": " + price_text(*r.price, cur) + "\n";
  if (!r.demand) return out;

  const Demand& d = *r.demand;
  const Forecast& f = r.forecast;
  out += "\nForecast: " + count(d.requests_per_month) + " requests in month 1, growing " + percent(d.growth) +
         " a month, " + num(d.prompt_tokens) + " prompt + " + num(d.completion_tokens) +
         " completion tokens per request; peak " + num(d.peak_factor) + "x average, replicas sized for " +
         percent(d.target_utilisation) + " of capacity at peak (min " + std::to_string(d.min_replicas) + "); " +
         money(d.fixed_monthly) + " fixed a month; training " + money(d.training_cost) + " " + cur + "\n";
  out += text_table(month_rows(r), {true, true, true, true, true, true, true, true, true, true, true, true, true});
  out += "total over " + std::to_string(d.months) + " months: revenue " + money(f.total_revenue) + ", cost " +
         money(f.total_cost) + " + training " + money(d.training_cost) + ", profit " +
         money(f.total_revenue - f.total_cost - d.training_cost) + " " + cur + "\n";
  out += "break-even: " + break_even_text(f, d.months) + "\n";
  out += "break-even price at this volume: " + money(f.break_even_price_per_1m_tokens) + " " + cur +
         " per 1M tokens (prompt + completion), or " + money(f.break_even_price_per_1m_completion) +
         " per 1M completion tokens (prompts free)\n";
  out += "serving cost per 1M tokens at this volume (idle capacity included): " +
         money(f.serving_cost_per_1m_tokens) + " " + cur + "\n";
  return out;
}

std::string serving_json(const ServingReport& r) {
  using oj = nlohmann::ordered_json;
  oj j;
  j["model"] = r.model;
  j["endpoint"] = r.bench.endpoint;
  j["bench"] = r.bench.file;
  j["hardware"] = r.hardware.name;
  j["price_per_hour"] = r.hardware.price_per_hour;
  j["currency"] = r.currency;
  j["capacity_basis"] = capacity_in_all_tokens(r.bench) ? "tokens" : "completion_tokens";
  j["max_p99_ms"] = r.max_p99_ms > 0 ? oj(r.max_p99_ms) : oj(nullptr);
  j["results"] = oj::array();
  for (size_t i = 0; i < r.bench.results.size(); i++) {
    const BenchResult& b = r.bench.results[i];
    j["results"].push_back(
        {{"concurrency", b.concurrency},
         {"batching", b.batching},
         {"requests_per_s", b.requests_per_s},
         {"tokens_per_s", b.tokens_per_s},
         {"completion_tokens_per_s", b.completion_tokens_per_s},
         {"p99_ms", b.latency_ms.p99},
         {"cost_per_1m_completion_tokens", finite_or_null(cost_per_1m_tokens(r.hardware.price_per_hour, b.completion_tokens_per_s))},
         {"cost_per_1m_tokens", finite_or_null(cost_per_1m_tokens(r.hardware.price_per_hour, b.tokens_per_s))},
         {"operating_point", i == r.operating_point}});
  }
  const BenchResult& op = r.bench.results[r.operating_point];
  j["operating_point"] = {{"index", r.operating_point},
                          {"concurrency", op.concurrency},
                          {"replica_tokens_per_s", capacity_of(r.bench, op)},
                          {"cost_per_1m_completion_tokens", finite_or_null(r.cost_per_1m_completion)},
                          {"cost_per_1m_tokens", finite_or_null(r.cost_per_1m_tokens)}};
  if (r.price)
    j["price"] = {{"prompt_per_1m", r.price->prompt_per_1m},
                  {"completion_per_1m", r.price->completion_per_1m},
                  {"per_classification", r.price->per_classification}};
  if (r.demand) {
    const Demand& d = *r.demand;
    const Forecast& f = r.forecast;
    j["demand"] = {{"requests_per_month", d.requests_per_month}, {"growth", d.growth},
                   {"months", d.months},
                   {"prompt_tokens", d.prompt_tokens},           {"completion_tokens", d.completion_tokens},
                   {"peak_factor", d.peak_factor},               {"target_utilisation", d.target_utilisation},
                   {"min_replicas", d.min_replicas},             {"fixed_monthly", d.fixed_monthly},
                   {"training_cost", d.training_cost}};
    oj months = oj::array();
    for (const MonthRow& m : f.months)
      months.push_back({{"month", m.month},
                        {"requests", m.requests},
                        {"prompt_tokens", m.prompt_tokens},
                        {"completion_tokens", m.completion_tokens},
                        {"revenue", m.revenue},
                        {"average_tokens_per_s", m.average_tokens_per_s},
                        {"peak_tokens_per_s", m.peak_tokens_per_s},
                        {"replicas", m.replicas},
                        {"utilisation", m.utilisation},
                        {"serving_cost", m.serving_cost},
                        {"fixed_cost", m.fixed_cost},
                        {"cost", m.cost},
                        {"margin", m.margin},
                        {"cumulative", m.cumulative}});
    j["months"] = months;
    j["break_even_month"] = f.break_even_month > 0 ? oj(f.break_even_month) : oj(nullptr);
    j["total_revenue"] = f.total_revenue;
    j["total_cost"] = f.total_cost;
    j["break_even_price_per_1m_tokens"] = finite_or_null(f.break_even_price_per_1m_tokens);
    j["break_even_price_per_1m_completion_tokens"] = finite_or_null(f.break_even_price_per_1m_completion);
    j["serving_cost_per_1m_tokens_at_volume"] = finite_or_null(f.serving_cost_per_1m_tokens);
  }
  return j.dump(2) + "\n";
}

std::string serving_html(const ServingReport& r) {
  const std::string cur = r.currency;
  const BenchResult& op = r.bench.results[r.operating_point];
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>Cost of serving " +
      html_escape(r.model) +
      "</title>\n<style>\n"
      "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\n"
      "table{border-collapse:collapse;margin:1em 0;font-size:0.9em;display:block;overflow-x:auto}\n"
      "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\n"
      "th{background:#f3f3f3}\ntd.l,th.l{text-align:left}\ntr.op td,tr.be td{background:#fff6d5}\n"
      ".cards{display:flex;flex-wrap:wrap;gap:1em}\n"
      ".card{border:1px solid #ddd;border-radius:6px;padding:0.6em 1em;min-width:12em}\n"
      ".card b{display:block;font-size:1.4em}\nsvg{max-width:100%;height:auto}\n</style></head><body>\n";
  h += "<h1>Cost of serving " + html_escape(r.model) + "</h1>\n";
  h += "<p>Hardware " + html_escape(r.hardware.name) + " (" + html_escape(r.hardware.description) + ") at " +
       money(r.hardware.price_per_hour) + " " + html_escape(cur) + "/h per replica; bench file " +
       html_escape(r.bench.file) + (r.bench.endpoint.empty() ? "" : ", endpoint " + html_escape(r.bench.endpoint)) +
       ".</p>\n<div class=\"cards\">\n";
  auto card = [&](const std::string& label, const std::string& value) {
    h += "<div class=\"card\">" + html_escape(label) + "<b>" + html_escape(value) + "</b></div>\n";
  };
  card("per 1M completion tokens", money(r.cost_per_1m_completion) + " " + cur);
  card("per 1M tokens (prompt + completion)", money(r.cost_per_1m_tokens) + " " + cur);
  card("replica capacity (" + basis_name(r) + ")", num(capacity_of(r.bench, op)));
  if (r.demand) {
    card("break-even", r.forecast.break_even_month > 0 ? "month " + std::to_string(r.forecast.break_even_month)
                                                        : "not within " + std::to_string(r.demand->months) + " months");
    card("break-even price per 1M tokens", money(r.forecast.break_even_price_per_1m_tokens) + " " + cur);
  }
  h += "</div>\n";

  // The bench: cost per 1M tokens against concurrency.
  h += "<h2>Throughput and cost per concurrency</h2>\n";
  // One curve per cost basis (and per batching mode when the bench has both), over concurrency.
  bool with = false, without = false;
  for (const BenchResult& b : r.bench.results) (b.batching ? with : without) = true;
  std::vector<train::Series> curves;
  for (int mode = 0; mode < 2; mode++) {
    if ((mode == 0 && !with) || (mode == 1 && !without)) continue;
    const std::string suffix = with && without ? (mode == 0 ? ", batched" : ", unbatched") : "";
    std::vector<const BenchResult*> rs;
    for (const BenchResult& b : r.bench.results)
      if (b.batching == (mode == 0)) rs.push_back(&b);
    std::sort(rs.begin(), rs.end(), [](auto* x, auto* y) { return x->concurrency < y->concurrency; });
    train::Series completion{"completion" + suffix, {}, {}}, all{"all tokens" + suffix, {}, {}};
    for (const BenchResult* b : rs) {
      completion.x.push_back(double(b->concurrency));
      completion.y.push_back(cost_per_1m_tokens(r.hardware.price_per_hour, b->completion_tokens_per_s));
      all.x.push_back(double(b->concurrency));
      all.y.push_back(cost_per_1m_tokens(r.hardware.price_per_hour, b->tokens_per_s));
    }
    curves.push_back(completion);
    curves.push_back(all);
  }
  train::ChartOptions copt;
  copt.integer_x = true;
  h += train::line_chart("Cost per 1M tokens by concurrency (replica fully used)", "concurrency", cur + " per 1M tokens",
                          curves, copt) +
       "\n";
  h += "<table><tr>";
  const Rows br = bench_rows(r);
  for (size_t c = 0; c < br[0].size(); c++) h += "<th>" + html_escape(br[0][c]) + "</th>";
  h += "</tr>\n";
  for (size_t i = 1; i < br.size(); i++) {
    h += i - 1 == r.operating_point ? "<tr class=\"op\">" : "<tr>";
    for (const std::string& cell : br[i]) h += "<td>" + html_escape(cell) + "</td>";
    h += "</tr>\n";
  }
  h += "</table>\n<p>* the operating point: the highest " + html_escape(basis_name(r)) +
       (r.max_p99_ms > 0 ? " with p99 latency &lt;= " + num(r.max_p99_ms) + " ms" : "") + ".</p>\n";

  if (r.demand) {
    const Demand& d = *r.demand;
    const Forecast& f = r.forecast;
    train::Series revenue{"revenue", {}, {}}, cost{"cost", {}, {}}, cumulative{"cumulative profit", {}, {}},
        zero{"break-even line (0)", {}, {}};
    for (const MonthRow& m : f.months) {
      revenue.x.push_back(double(m.month));
      revenue.y.push_back(m.revenue);
      cost.x.push_back(double(m.month));
      cost.y.push_back(m.cost);
      cumulative.x.push_back(double(m.month));
      cumulative.y.push_back(m.cumulative);
      zero.x.push_back(double(m.month));
      zero.y.push_back(0);
    }
    train::ChartOptions opt;
    opt.integer_x = true;
    h += "<h2>Forecast</h2>\n<p>" + html_escape(count(d.requests_per_month)) + " requests in month 1, growing " +
         html_escape(percent(d.growth)) + " a month; " + html_escape(num(d.prompt_tokens)) + " prompt + " +
         html_escape(num(d.completion_tokens)) + " completion tokens per request; peak " +
         html_escape(num(d.peak_factor)) + "x the average; fixed costs " + html_escape(money(d.fixed_monthly)) +
         " a month; training " + html_escape(money(d.training_cost)) + " " + html_escape(cur) + ".";
    if (r.price) h += " Price: " + html_escape(price_text(*r.price, cur)) + ".";
    h += "</p>\n";
    h += train::line_chart("Monthly revenue and cost", "month", cur, {revenue, cost}, opt) + "\n";
    std::vector<train::Series> cum = {cumulative, zero};
    if (f.break_even_month > 0) {
      const MonthRow& m = f.months[size_t(f.break_even_month - 1)];
      cum.push_back({"break-even: month " + std::to_string(f.break_even_month), {double(m.month)}, {m.cumulative}});
    }
    h += train::line_chart("Cumulative profit (training cost included)", "month", cur, cum, opt) + "\n";
    h += "<p>Break-even: " + html_escape(break_even_text(f, d.months)) +
         ". Break-even price at this volume: " + html_escape(money(f.break_even_price_per_1m_tokens)) + " " +
         html_escape(cur) + " per 1M tokens, or " + html_escape(money(f.break_even_price_per_1m_completion)) +
         " per 1M completion tokens.</p>\n<table><tr>";
    const Rows mr = month_rows(r);
    for (size_t c = 0; c < mr[0].size(); c++) h += "<th>" + html_escape(mr[0][c]) + "</th>";
    h += "</tr>\n";
    for (size_t i = 1; i < mr.size(); i++) {
      h += int64_t(i) == f.break_even_month ? "<tr class=\"be\">" : "<tr>";
      for (const std::string& cell : mr[i]) h += "<td>" + html_escape(cell) + "</td>";
      h += "</tr>\n";
    }
    h += "</table>\n";
  }
  h += "<p>Written by mox cost serve. Hardware prices and peaks are assumptions (see mox cost --help).</p>\n"
       "</body></html>\n";
  return h;
}

}  // namespace mox::serve
