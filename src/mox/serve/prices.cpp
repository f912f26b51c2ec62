#include "mox/serve/prices.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>

#include "mox/io/config.h"
#include "mox/io/file_util.h"
#include "mox/tensor/error.h"

namespace mox::serve {

namespace {

const char* const kPriceKeys[] = {"prompt_per_1m", "completion_per_1m", "per_classification"};

// One model's (or [default]'s) table.
ModelPrice read_price(const io::ConfigTable& t) {
  ModelPrice p;
  double* fields[] = {&p.prompt_per_1m, &p.completion_per_1m, &p.per_classification};
  bool any = false;
  for (int i = 0; i < 3; i++) {
    const io::ConfigValue* v = t.find(kPriceKeys[i]);
    if (!v) continue;
    any = true;
    if (!v->is_number()) throw t.value_error(*v, "expected a price (a number >= 0), got " + v->describe());
    const double x = v->is_int() ? double(std::get<int64_t>(v->v)) : std::get<double>(v->v);
    if (!std::isfinite(x) || x < 0) throw t.value_error(*v, "must be a number >= 0, got " + v->describe());
    *fields[i] = x;
  }
  t.check_no_unknown_keys("a price");
  if (!any)
    throw Error(t.file(), t.path() + ": no price given (prompt_per_1m, completion_per_1m or per_classification)");
  return p;
}

const io::ConfigTable& as_table(const io::ConfigTable& parent, const io::ConfigValue& v, const std::string& want) {
  if (!v.is_table()) throw parent.value_error(v, "expected " + want + ", got " + v.describe());
  return *std::get<std::shared_ptr<io::ConfigTable>>(v.v);
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string money(double v) { return fixed(v, 2); }

// ---------------------------------------------------------------- text tables

std::vector<std::vector<std::string>> usage_rows(const std::vector<UsageTotal>& usage) {
  std::vector<std::vector<std::string>> rows = {
      {"customer", "model", "requests", "errors", "prompt tokens", "completion tokens", "classifications"}};
  for (const UsageTotal& u : usage)
    rows.push_back({u.customer, u.model, std::to_string(u.requests), std::to_string(u.errors),
                    std::to_string(u.prompt_tokens), std::to_string(u.completion_tokens),
                    std::to_string(u.classifications)});
  return rows;
}
const std::vector<bool> kUsageRight = {false, false, true, true, true, true, true};

std::string heading(const std::string& what, const std::string& customer, const std::string& month) {
  return what + " of " + (customer.empty() ? std::string("all customers") : customer) + ", " + month + " (UTC)\n";
}

// ---------------------------------------------------------------- CSV / JSON

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string csv_row(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); i++) out += (i ? "," : "") + csv_field(fields[i]);
  return out + "\n";
}

// Unrounded amounts in CSV, without float noise: 0.75 rather than 0.75000000000000011.
std::string exact(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

nlohmann::ordered_json usage_to_json(const std::vector<UsageTotal>& usage) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const UsageTotal& u : usage)
    a.push_back({{"customer", u.customer},
                 {"model", u.model},
                 {"requests", u.requests},
                 {"errors", u.errors},
                 {"prompt_tokens", u.prompt_tokens},
                 {"completion_tokens", u.completion_tokens},
                 {"classifications", u.classifications}});
  return a;
}

nlohmann::ordered_json customer_json(const std::string& customer) {
  return customer.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(customer);
}

}  // namespace

// Columns padded to their widest cell; numeric columns (right = true) align right.
std::string text_table(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right) {
  std::vector<size_t> width(right.size(), 0);
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size() && c < width.size(); c++) width[c] = std::max(width[c], r[c].size());
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size() && c < width.size(); c++) {
      const std::string pad(width[c] - r[c].size(), ' ');
      if (c > 0) line += "  ";
      line += right[c] ? pad + r[c] : r[c] + pad;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}


// ---------------------------------------------------------------- price list

std::optional<ModelPrice> PriceList::price_of(const std::string& model) const {
  auto it = models.find(model);
  if (it != models.end()) return it->second;
  return fallback;
}

PriceList parse_prices(const std::string& text, const std::string& file) {
  std::shared_ptr<io::ConfigTable> root = io::parse_config_table(text, file);
  PriceList p;
  p.file = file;
  if (const io::ConfigValue* c = root->find("currency")) {
    if (!c->is_string() || std::get<std::string>(c->v).empty())
      throw root->value_error(*c, "expected a currency name such as \"USD\", got " + c->describe());
    p.currency = std::get<std::string>(c->v);
  }
  if (const io::ConfigValue* m = root->find("models")) {
    const io::ConfigTable& models = as_table(*root, *m, "a table of models ([models.NAME])");
    for (const std::string& name : models.keys()) {
      const io::ConfigValue* v = models.find(name);
      p.models[name] = read_price(as_table(models, *v, "a table of prices ([models." + name + "])"));
    }
  }
  if (const io::ConfigValue* d = root->find("default"))
    p.fallback = read_price(as_table(*root, *d, "a table of prices ([default])"));
  root->check_no_unknown_keys("a price list");
  if (p.models.empty() && !p.fallback)
    throw Error(file, "no prices: give [models.NAME] tables and/or a [default] table");
  return p;
}

PriceList load_prices(const std::string& path) { return parse_prices(io::read_file(path), path); }

// ---------------------------------------------------------------- invoice

Invoice make_invoice(const std::vector<UsageTotal>& usage, const PriceList& prices, const std::string& customer,
                     const std::string& month) {
  Invoice inv;
  inv.customer = customer;
  inv.month = month;
  inv.currency = prices.currency;
  inv.usage = usage;
  for (const UsageTotal& u : usage) {
    const bool listed = prices.models.count(u.model) != 0;
    const std::optional<ModelPrice> price = prices.price_of(u.model);
    const ModelPrice p = price.value_or(ModelPrice{});
    const std::string note = !price ? "no price" : listed ? "" : "default price";
    auto add = [&](const char* item, int64_t quantity, double unit_price, const char* unit, double per) {
      if (quantity <= 0) return;
      InvoiceLine l;
      l.customer = u.customer;
      l.model = u.model;
      l.item = item;
      l.quantity = quantity;
      l.unit_price = unit_price;
      l.unit = unit;
      l.amount = double(quantity) / per * unit_price;
      l.note = note;
      inv.lines.push_back(l);
    };
    add("prompt tokens", u.prompt_tokens, p.prompt_per_1m, "1M tokens", 1e6);
    add("completion tokens", u.completion_tokens, p.completion_per_1m, "1M tokens", 1e6);
    add("classifications", u.classifications, p.per_classification, "classification", 1.0);
    if (inv.totals.empty() || inv.totals.back().customer != u.customer) inv.totals.push_back({u.customer, 0.0});
  }
  for (const InvoiceLine& l : inv.lines) {
    for (CustomerTotal& t : inv.totals)
      if (t.customer == l.customer) t.amount += l.amount;
    inv.total += l.amount;
  }
  return inv;
}

double revenue(const std::vector<UsageTotal>& usage, const PriceList& prices) {
  return make_invoice(usage, prices, "", "").total;
}

std::string format_price(double v) {
  for (int d = 2; d < 10; d++) {
    const std::string s = fixed(v, d);
    if (std::fabs(std::stod(s) - v) <= 1e-12 * std::max(1.0, std::fabs(v))) return s;
  }
  return fixed(v, 10);
}

// ---------------------------------------------------------------- renderers

std::string invoice_table(const Invoice& inv) {
  std::string out = usage_table(inv.usage, inv.customer, inv.month);
  out += "\n" + heading("Invoice", inv.customer, inv.month);
  std::vector<std::vector<std::string>> rows = {
      {"customer", "model", "item", "quantity", "unit price", "", "amount (" + inv.currency + ")", "note"}};
  for (const InvoiceLine& l : inv.lines)
    rows.push_back({l.customer, l.model, l.item, std::to_string(l.quantity), format_price(l.unit_price),
                    "per " + l.unit, money(l.amount), l.note});
  if (inv.totals.size() > 1) {
    for (const CustomerTotal& t : inv.totals) rows.push_back({t.customer, "", "total", "", "", "", money(t.amount), ""});
    rows.push_back({"", "", "grand total", "", "", "", money(inv.total), ""});
  } else {
    const std::string who = inv.totals.empty() ? inv.customer : inv.totals[0].customer;
    rows.push_back({who, "", "total", "", "", "", money(inv.total), ""});
  }
  out += text_table(rows, {false, false, false, true, true, false, true, false});
  return out;
}

std::string invoice_csv(const Invoice& inv) {
  std::string out = csv_row({"customer", "model", "item", "quantity", "unit_price", "unit", "amount", "currency", "note"});
  for (const InvoiceLine& l : inv.lines)
    out += csv_row({l.customer, l.model, l.item, std::to_string(l.quantity), exact(l.unit_price), l.unit,
                    exact(l.amount), inv.currency, l.note});
  for (const CustomerTotal& t : inv.totals)
    out += csv_row({t.customer, "", "total", "", "", "", exact(t.amount), inv.currency, ""});
  out += csv_row({"", "", "grand total", "", "", "", exact(inv.total), inv.currency, ""});
  return out;
}

std::string invoice_json(const Invoice& inv) {
  nlohmann::ordered_json j;
  j["customer"] = customer_json(inv.customer);
  j["month"] = inv.month;
  j["currency"] = inv.currency;
  j["usage"] = usage_to_json(inv.usage);
  j["lines"] = nlohmann::ordered_json::array();
  for (const InvoiceLine& l : inv.lines) {
    nlohmann::ordered_json o = {{"customer", l.customer}, {"model", l.model},         {"item", l.item},
                                {"quantity", l.quantity}, {"unit_price", l.unit_price}, {"unit", l.unit},
                                {"amount", l.amount}};
    if (!l.note.empty()) o["note"] = l.note;
    j["lines"].push_back(o);
  }
  j["totals"] = nlohmann::ordered_json::array();
  for (const CustomerTotal& t : inv.totals) j["totals"].push_back({{"customer", t.customer}, {"amount", t.amount}});
  j["total"] = inv.total;
  return j.dump(2) + "\n";
}

std::string usage_table(const std::vector<UsageTotal>& usage, const std::string& customer, const std::string& month) {
  std::string out = heading("Usage", customer, month);
  if (usage.empty()) return out + "(no requests)\n";
  return out + text_table(usage_rows(usage), kUsageRight);
}

std::string usage_csv(const std::vector<UsageTotal>& usage) {
  std::string out = csv_row({"customer", "model", "requests", "errors", "prompt_tokens", "completion_tokens", "classifications"});
  for (const UsageTotal& u : usage)
    out += csv_row({u.customer, u.model, std::to_string(u.requests), std::to_string(u.errors),
                    std::to_string(u.prompt_tokens), std::to_string(u.completion_tokens),
                    std::to_string(u.classifications)});
  return out;
}

std::string usage_json(const std::vector<UsageTotal>& usage, const std::string& customer, const std::string& month) {
  nlohmann::ordered_json j;
  j["customer"] = customer_json(customer);
  j["month"] = month;
  j["usage"] = usage_to_json(usage);
  return j.dump(2) + "\n";
}

}  // namespace mox::serve
