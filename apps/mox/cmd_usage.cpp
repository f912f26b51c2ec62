// mox usage [--customer NAME] [--month 2026-11] [--prices prices.toml] [--format table|csv|json]
// A month of metered usage from the database mox serve writes (serve/store.h), summed per
// customer and model; with a price list (serve/prices.h), the invoice: lines and totals.
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "command.h"
#include "mox/serve/prices.h"
#include "mox/serve/store.h"
#include "mox/tensor/error.h"

namespace mox::cli {

namespace {

// "2026-11": four digits, a dash, a month 01..12.
bool valid_month(const std::string& m) {
  if (m.size() != 7 || m[4] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6})
    if (m[i] < '0' || m[i] > '9') return false;
  const int mm = (m[5] - '0') * 10 + (m[6] - '0');
  return mm >= 1 && mm <= 12;
}

}  // namespace

Command add_usage_command(CLI::App& parent) {
  struct Args {
    std::string db = "usage.sqlite", customer, month, prices, format = "table";
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("usage", "A month of metered usage per customer and model, and its invoice");
  app->add_option("--db", a->db, "Usage database written by mox serve (default usage.sqlite in the current folder)");
  app->add_option("--customer", a->customer, "Only this customer (default: every customer)");
  app->add_option("--month", a->month, "Calendar month, UTC, as YYYY-MM (default: the current month)");
  app->add_option("--prices", a->prices, "Price list (TOML, see examples/prices.toml): adds the invoice");
  app->add_option("--format", a->format, "table (default), csv or json")
      ->check(CLI::IsMember({"table", "csv", "json"}));
  app->footer(
      "Examples:\n"
      "  mox usage --month 2026-11\n"
      "  mox usage --customer acme --month 2026-11 --prices examples/prices.toml\n"
      "  mox usage --customer acme --month 2026-11 --prices examples/prices.toml --format csv > acme-2026-11.csv");
  return {app, [a] {
            const std::string month = a->month.empty() ? serve::month_of(serve::utc_now_iso()) : a->month;
            if (!valid_month(month))
              throw Error("--month", "expected a month as YYYY-MM (e.g. 2026-11), got \"" + month + "\"");
            // The price list first: a typo there is reported before any database work.
            std::optional<serve::PriceList> prices;
            if (!a->prices.empty()) prices = serve::load_prices(a->prices);
            if (!std::filesystem::exists(a->db))
              throw Error(a->db, "no such usage database (mox serve and mox keys create write one; see --db)");
            serve::Store store(a->db);
            if (!a->customer.empty() && store.list_keys(a->customer).empty()) {
              std::set<std::string> names;
              for (const serve::KeyInfo& k : store.list_keys()) names.insert(k.customer);
              std::string known;
              for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
              throw Error("--customer", "no customer \"" + a->customer + "\" in " + a->db +
                                            (known.empty() ? " (it has no customers)" : " (customers: " + known + ")"));
            }
            const std::vector<serve::UsageTotal> usage = store.usage(month, a->customer);
            if (prices) {
              const serve::Invoice inv = serve::make_invoice(usage, *prices, a->customer, month);
              std::cout << (a->format == "json"  ? serve::invoice_json(inv)
                            : a->format == "csv" ? serve::invoice_csv(inv)
                                                 : serve::invoice_table(inv));
            } else {
              std::cout << (a->format == "json"  ? serve::usage_json(usage, a->customer, month)
                            : a->format == "csv" ? serve::usage_csv(usage)
                                                 : serve::usage_table(usage, a->customer, month));
            }
            return 0;
          }};
}

}  // namespace mox::cli
