// serve::PriceList and the invoice: the TOML format and its errors (file and key named),
// the arithmetic checked by hand, unpriced models billed 0 with a note, and the table, CSV
// and JSON renderers.
#include <gtest/gtest.h>

#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mox/serve/prices.h"
#include "mox/tensor/error.h"

using namespace mox::serve;

namespace {

const char* kPrices = R"(
currency = "EUR"
[models.gpt-char]
prompt_per_1m = 0.50
completion_per_1m = 1.5
[models.cnn]
per_classification = 0.0002
)";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const mox::Error& e) {
    return e.what();
  }
  return "(no error)";
}

UsageTotal total(const std::string& customer, const std::string& model, int64_t prompt, int64_t completion,
                 int64_t classifications = 0, int64_t requests = 1) {
  UsageTotal u;
  u.customer = customer;
  u.model = model;
  u.requests = requests;
  u.prompt_tokens = prompt;
  u.completion_tokens = completion;
  u.classifications = classifications;
  return u;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.push_back("");
  return out;
}

}  // namespace

TEST(Prices, ParsesModelsDefaultAndCurrency) {
  PriceList p = parse_prices(kPrices, "p.toml");
  EXPECT_EQ(p.currency, "EUR");
  ASSERT_EQ(p.models.size(), 2u);
  EXPECT_DOUBLE_EQ(p.models.at("gpt-char").prompt_per_1m, 0.5);
  EXPECT_DOUBLE_EQ(p.models.at("gpt-char").completion_per_1m, 1.5);
  EXPECT_DOUBLE_EQ(p.models.at("gpt-char").per_classification, 0);
  EXPECT_DOUBLE_EQ(p.models.at("cnn").per_classification, 0.0002);
  EXPECT_FALSE(p.fallback);
  EXPECT_TRUE(p.price_of("cnn"));
  EXPECT_FALSE(p.price_of("mlp"));

  PriceList d = parse_prices("[default]\nprompt_per_1m = 1\ncompletion_per_1m = 2\n", "d.toml");
  EXPECT_EQ(d.currency, "USD");
  ASSERT_TRUE(d.price_of("anything"));
  EXPECT_DOUBLE_EQ(d.price_of("anything")->completion_per_1m, 2.0);  // integers are prices too

  // The example shipped with mox parses and prices the models examples/ make.
  PriceList ex = load_prices(std::string(MOX_SOURCE_DIR) + "/examples/prices.toml");
  EXPECT_TRUE(ex.models.count("gpt-fortunes"));
  EXPECT_TRUE(ex.models.count("mlp"));
  EXPECT_TRUE(ex.models.count("cnn"));
  EXPECT_TRUE(ex.fallback);
}

TEST(Prices, ErrorsNameTheFileAndTheKey) {
  auto err = [](const std::string& text) { return error_of([&] { parse_prices(text, "prices.toml"); }); };
  std::string e = err("[models.gpt]\nprompt_per_1M = 0.5\n");  // a typo
  EXPECT_NE(e.find("prices.toml"), std::string::npos) << e;
  EXPECT_NE(e.find("models.gpt.prompt_per_1M"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown field"), std::string::npos) << e;

  e = err("[models.cnn]\nper_classification = -0.1\n");
  EXPECT_NE(e.find("prices.toml: models.cnn.per_classification: must be a number >= 0"), std::string::npos) << e;

  e = err("[models.cnn]\nper_classification = \"cheap\"\n");
  EXPECT_NE(e.find("models.cnn.per_classification"), std::string::npos) << e;
  EXPECT_NE(e.find("\"cheap\""), std::string::npos) << e;

  e = err("[modles.cnn]\nper_classification = 1\n");
  EXPECT_NE(e.find("modles"), std::string::npos) << e;

  e = err("[default]\nprompt_per_1m = inf\n");
  EXPECT_NE(e.find("default.prompt_per_1m"), std::string::npos) << e;

  e = err("[models]\ncnn = 3\n");
  EXPECT_NE(e.find("models.cnn"), std::string::npos) << e;

  e = err("[models.cnn]\n");
  EXPECT_NE(e.find("models.cnn: no price given"), std::string::npos) << e;

  e = err("currency = 3\n[default]\nprompt_per_1m = 1\n");
  EXPECT_NE(e.find("currency"), std::string::npos) << e;

  e = err("[models.cnn\nper_classification = 1\n");  // not TOML
  EXPECT_NE(e.find("prices.toml:1:"), std::string::npos) << e;

  e = error_of([] { load_prices("/no/such/prices.toml"); });
  EXPECT_NE(e.find("/no/such/prices.toml"), std::string::npos) << e;
}

TEST(Prices, InvoiceArithmeticByHand) {
  PriceList p = parse_prices(kPrices, "p.toml");
  // acme: 1.5M prompt tokens at 0.50/1M = 0.75, 200k completion at 1.50/1M = 0.30,
  // 1000 classifications at 0.0002 = 0.20, and a model without a price: 0.
  std::vector<UsageTotal> u = {total("acme", "cnn", 0, 0, 1000), total("acme", "gpt-char", 1500000, 200000),
                               total("acme", "mystery", 10, 10)};
  Invoice inv = make_invoice(u, p, "acme", "2026-11");
  EXPECT_EQ(inv.currency, "EUR");
  EXPECT_EQ(inv.month, "2026-11");
  ASSERT_EQ(inv.lines.size(), 5u);
  EXPECT_EQ(inv.lines[0].model, "cnn");
  EXPECT_EQ(inv.lines[0].item, "classifications");
  EXPECT_EQ(inv.lines[0].quantity, 1000);
  EXPECT_NEAR(inv.lines[0].amount, 0.20, 1e-12);
  EXPECT_EQ(inv.lines[1].item, "prompt tokens");
  EXPECT_EQ(inv.lines[1].quantity, 1500000);
  EXPECT_DOUBLE_EQ(inv.lines[1].unit_price, 0.5);
  EXPECT_EQ(inv.lines[1].unit, "1M tokens");
  EXPECT_NEAR(inv.lines[1].amount, 0.75, 1e-12);
  EXPECT_EQ(inv.lines[2].item, "completion tokens");
  EXPECT_NEAR(inv.lines[2].amount, 0.30, 1e-12);
  EXPECT_EQ(inv.lines[3].model, "mystery");
  EXPECT_EQ(inv.lines[3].amount, 0.0);
  EXPECT_EQ(inv.lines[3].note, "no price");
  EXPECT_EQ(inv.lines[4].note, "no price");
  ASSERT_EQ(inv.totals.size(), 1u);
  EXPECT_NEAR(inv.totals[0].amount, 1.25, 1e-12);
  EXPECT_NEAR(inv.total, 1.25, 1e-12);
  EXPECT_NEAR(revenue(u, p), 1.25, 1e-12);

  // With a default, the unlisted model is billed at it (and says so); cents are not
  // rounded away in the sum: 3 x 1 token at 1.0/1M.
  PriceList d = parse_prices(std::string(kPrices) + "[default]\nprompt_per_1m = 1.0\n", "p.toml");
  Invoice inv2 = make_invoice({total("a", "x", 1, 0), total("b", "x", 1, 0), total("b", "y", 1, 0),
                               total("b", "gpt-char", 2000000, 0)},
                              d, "", "2026-11");
  ASSERT_EQ(inv2.totals.size(), 2u);
  EXPECT_EQ(inv2.totals[0].customer, "a");
  EXPECT_NEAR(inv2.totals[0].amount, 1e-6, 1e-15);
  EXPECT_EQ(inv2.totals[1].customer, "b");
  EXPECT_NEAR(inv2.totals[1].amount, 1.0 + 2e-6, 1e-12);
  EXPECT_NEAR(inv2.total, 1.0 + 3e-6, 1e-12);
  EXPECT_EQ(inv2.lines[0].note, "default price");
  EXPECT_EQ(inv2.lines[3].note, "");

  // No usage: an empty invoice of 0.
  Invoice empty = make_invoice({}, p, "acme", "2026-11");
  EXPECT_TRUE(empty.lines.empty());
  EXPECT_EQ(empty.total, 0.0);
}

TEST(Prices, RenderersShowLinesAndTotals) {
  PriceList p = parse_prices(kPrices, "p.toml");
  std::vector<UsageTotal> u = {total("acme", "cnn", 0, 0, 1000, 3), total("acme", "gpt-char", 1500000, 200000, 0, 7),
                               total("Globex, Inc.", "mystery", 10, 0)};
  Invoice inv = make_invoice(u, p, "", "2026-11");

  const std::string t = invoice_table(inv);
  EXPECT_NE(t.find("2026-11"), std::string::npos) << t;
  EXPECT_NE(t.find("prompt tokens"), std::string::npos) << t;
  EXPECT_NE(t.find("1500000"), std::string::npos) << t;
  EXPECT_NE(t.find("0.0002"), std::string::npos) << t;  // unit prices keep their digits
  EXPECT_NE(t.find("0.75"), std::string::npos) << t;
  EXPECT_NE(t.find("0.30"), std::string::npos) << t;    // amounts to the cent
  EXPECT_NE(t.find("no price"), std::string::npos) << t;
  EXPECT_NE(t.find("grand total"), std::string::npos) << t;
  EXPECT_NE(t.find("1.25"), std::string::npos) << t;
  EXPECT_NE(t.find("EUR"), std::string::npos) << t;
  // The usage section: the gpt row with its request count.
  bool usage_row = false;
  for (const std::string& line : split(t, '\n'))
    if (line.rfind("acme", 0) == 0 && line.find("gpt-char") != std::string::npos &&
        line.find(" 7 ") != std::string::npos && line.find("200000") != std::string::npos)
      usage_row = true;
  EXPECT_TRUE(usage_row) << t;

  // CSV: a header, one row per line, a total per customer, a grand total; every row has
  // the header's columns (the comma in a name is quoted).
  const std::string csv = invoice_csv(inv);
  std::vector<std::string> rows = split(csv, '\n');
  ASSERT_FALSE(rows.empty());
  rows.pop_back();  // after the last newline
  ASSERT_EQ(rows.size(), 1 + inv.lines.size() + 2 + 1) << csv;
  EXPECT_EQ(rows[0], "customer,model,item,quantity,unit_price,unit,amount,currency,note");
  double sum = 0, grand = -1;
  for (size_t i = 1; i < rows.size(); i++) {
    std::string r = rows[i];
    if (r.rfind("\"Globex, Inc.\",", 0) == 0) r = "Globex Inc." + r.substr(14);
    std::vector<std::string> f = split(r, ',');
    ASSERT_EQ(f.size(), 9u) << rows[i];
    EXPECT_EQ(f[7], "EUR");
    if (i <= inv.lines.size()) sum += std::stod(f[6]);
    if (f[2] == "grand total") grand = std::stod(f[6]);
  }
  EXPECT_EQ(rows[2], "acme,gpt-char,prompt tokens,1500000,0.5,1M tokens,0.75,EUR,");
  EXPECT_NEAR(sum, 1.25, 1e-9);
  EXPECT_NEAR(grand, 1.25, 1e-9);

  nlohmann::json j = nlohmann::json::parse(invoice_json(inv));
  EXPECT_TRUE(j["customer"].is_null());
  EXPECT_EQ(j["month"], "2026-11");
  EXPECT_EQ(j["currency"], "EUR");
  ASSERT_EQ(j["lines"].size(), inv.lines.size());
  EXPECT_EQ(j["lines"][1]["item"], "prompt tokens");
  EXPECT_NEAR(j["lines"][1]["amount"].get<double>(), 0.75, 1e-12);
  EXPECT_EQ(j["lines"][3]["note"], "no price");
  EXPECT_EQ(j["usage"][1]["requests"], 7);
  ASSERT_EQ(j["totals"].size(), 2u);
  EXPECT_EQ(j["totals"][1]["customer"], "Globex, Inc.");
  EXPECT_NEAR(j["total"].get<double>(), 1.25, 1e-12);
}

TEST(Prices, UsageRenderersWithoutPrices) {
  std::vector<UsageTotal> u = {total("acme", "gpt", 12, 34, 0, 2)};
  const std::string t = usage_table(u, "acme", "2026-11");
  EXPECT_NE(t.find("acme"), std::string::npos);
  EXPECT_NE(t.find("34"), std::string::npos);
  EXPECT_NE(usage_table({}, "acme", "2026-11").find("no requests"), std::string::npos);
  EXPECT_EQ(usage_csv(u), "customer,model,requests,errors,prompt_tokens,completion_tokens,classifications\n"
                          "acme,gpt,2,0,12,34,0\n");
  nlohmann::json j = nlohmann::json::parse(usage_json(u, "acme", "2026-11"));
  EXPECT_EQ(j["customer"], "acme");
  EXPECT_EQ(j["usage"][0]["completion_tokens"], 34);
}

TEST(Prices, FormatPriceKeepsItsDigits) {
  EXPECT_EQ(format_price(0.5), "0.50");
  EXPECT_EQ(format_price(1.5), "1.50");
  EXPECT_EQ(format_price(0.0002), "0.0002");
  EXPECT_EQ(format_price(0.000125), "0.000125");
  EXPECT_EQ(format_price(12), "12.00");
  EXPECT_EQ(format_price(0), "0.00");
}
