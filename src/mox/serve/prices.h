#pragma once
// Prices per model, and the invoice that bills a month of usage (serve/store.h) at them.
//
// The price list is a TOML file:
//
//   currency = "USD"               # optional, default "USD"; printed next to amounts
//   [models.gpt-char]              # the model name as `mox serve` lists it (quote names
//   prompt_per_1m = 0.50           #   with dots: [models."gpt.v2"]); per 1M prompt tokens
//   completion_per_1m = 1.50       # per 1M completion tokens
//   [models.cnn]
//   per_classification = 0.0002    # per input classified
//   [default]                      # optional: the price of every model not listed
//   prompt_per_1m = 1.0
//   completion_per_1m = 2.0
//   per_classification = 0.0001
//
// A model's table is its whole price: an item it leaves out costs 0 (it does not fall back
// to [default]); a table must give at least one item. Prices are numbers >= 0. Unknown
// keys, negative or non-numeric prices are errors naming the file and the key
// ("prices.toml: models.cnn.per_classification: must be >= 0, got -1").
//
// Amounts are computed in double and rounded to cents only when printed. A model with usage
// but no price (not listed, no [default]) is billed 0 with the note "no price", never
// dropped from the invoice.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mox/serve/store.h"

namespace mox::serve {

struct ModelPrice {
  double prompt_per_1m = 0;       // per 1M prompt tokens
  double completion_per_1m = 0;   // per 1M completion tokens
  double per_classification = 0;  // per input classified
};

struct PriceList {
  std::string file;                          // where it was read from (for messages)
  std::string currency = "USD";
  std::map<std::string, ModelPrice> models;  // [models.NAME]
  std::optional<ModelPrice> fallback;        // [default]

  // The model's own price, else [default], else nullopt (no price).
  std::optional<ModelPrice> price_of(const std::string& model) const;
};

// Parses price-list TOML text (`file` names it in errors); load_prices reads the file.
PriceList parse_prices(const std::string& text, const std::string& file);
PriceList load_prices(const std::string& path);

// Columns padded to their widest cell; right[c]: right-aligned (numbers). The text tables
// of invoices, usage, costs and `mox keys list`.
std::string text_table(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right);

// One billed item of one model.
struct InvoiceLine {
  std::string customer, model;
  std::string item;        // "prompt tokens", "completion tokens" or "classifications"
  int64_t quantity = 0;
  double unit_price = 0;   // per `unit`
  std::string unit;        // "1M tokens" or "classification"
  double amount = 0;       // quantity * unit_price (tokens: / 1M), unrounded
  std::string note;        // "no price", "default price" or empty
};

struct CustomerTotal {
  std::string customer;
  double amount = 0;
};

struct Invoice {
  std::string customer;             // whose usage; empty = every customer
  std::string month;                // "2026-11"
  std::string currency;
  std::vector<UsageTotal> usage;    // the counts billed, per customer and model
  std::vector<InvoiceLine> lines;   // per customer, model and item with a quantity > 0
  std::vector<CustomerTotal> totals;  // per customer, in usage order
  double total = 0;                 // the grand total
};

// Bills `usage` (Store::usage of `month`, for `customer` or everyone) at `prices`.
Invoice make_invoice(const std::vector<UsageTotal>& usage, const PriceList& prices,
                     const std::string& customer, const std::string& month);
// The total that make_invoice bills: what the dashboard shows as revenue.
double revenue(const std::vector<UsageTotal>& usage, const PriceList& prices);

// Renderers. The table is aligned text: the usage counts, then the invoice lines with the
// amounts to the cent and the unit prices with every digit they have, then the totals.
// CSV: one row per invoice line, then a "total" row per customer and a "grand total" row
// (amounts unrounded). JSON: the invoice as an object (usage, lines, totals, total).
std::string invoice_table(const Invoice& invoice);
std::string invoice_csv(const Invoice& invoice);
std::string invoice_json(const Invoice& invoice);

// Usage alone (`mox usage` without a price list), in the same three forms.
std::string usage_table(const std::vector<UsageTotal>& usage, const std::string& customer,
                        const std::string& month);
std::string usage_csv(const std::vector<UsageTotal>& usage);
std::string usage_json(const std::vector<UsageTotal>& usage, const std::string& customer,
                       const std::string& month);

// A price with as many decimals as it needs, at least two: 0.5 -> "0.50", 0.0002 -> "0.0002".
std::string format_price(double v);

}  // namespace mox::serve
