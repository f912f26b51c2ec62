// mox keys create --customer NAME [--rpm N] [--tpm N] [--monthly-tokens N]
// mox keys list [--customer NAME]
// mox keys revoke ID|PREFIX|KEY
// The API keys of `mox serve`, in its usage database (serve/store.h; --db, default
// usage.sqlite). A key is printed once, by create; the database keeps only its SHA-256, and
// list shows prefixes only.
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "command.h"
#include "mox/serve/prices.h"
#include "mox/serve/store.h"
#include "mox/tensor/error.h"

namespace mox::cli {

namespace {

using ojson = nlohmann::ordered_json;

// list and revoke read an existing database; only create makes one.
void require_db(const std::string& db) {
  if (!std::filesystem::exists(db))
    throw Error(db, "no such usage database (mox keys create --db " + db + " --customer NAME makes one)");
}

std::string limit_text(int64_t v) { return v > 0 ? std::to_string(v) : "unlimited"; }

ojson limits_json(const serve::KeyLimits& l) {
  return {{"rpm", l.rpm}, {"tpm", l.tpm}, {"monthly_tokens", l.monthly_tokens}};
}

// Columns padded to their widest cell.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::cout << serve::text_table(rows, std::vector<bool>(rows.empty() ? 0 : rows[0].size(), false));
}

}  // namespace

Command add_keys_command(CLI::App& parent) {
  struct Args {
    std::string db = "usage.sqlite", customer, format = "table", which;
    serve::KeyLimits limits;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("keys", "Create, list or revoke the API keys of mox serve");
  app->require_subcommand(1);
  auto add_db = [&](CLI::App* sub) {
    sub->add_option("--db", a->db, "Usage database (SQLite; default usage.sqlite in the current folder)");
  };
  auto add_format = [&](CLI::App* sub) {
    sub->add_option("--format", a->format, "table (default) or json")->check(CLI::IsMember({"table", "json"}));
  };

  CLI::App* create = app->add_subcommand("create", "Make a key for a customer (new customers are added); prints it once");
  add_db(create);
  create->add_option("--customer", a->customer, "Customer the key bills")->required();
  create->add_option("--rpm", a->limits.rpm, "Requests per minute (default 0: unlimited)")->check(CLI::NonNegativeNumber);
  create->add_option("--tpm", a->limits.tpm, "Prompt + completion tokens per minute (default 0: unlimited)")
      ->check(CLI::NonNegativeNumber);
  create->add_option("--monthly-tokens", a->limits.monthly_tokens,
                     "Prompt + completion tokens per calendar month, UTC (default 0: unlimited)")
      ->check(CLI::NonNegativeNumber);
  add_format(create);

  CLI::App* list = app->add_subcommand("list", "List keys (prefixes, never secrets) with their limits and this month's tokens");
  add_db(list);
  list->add_option("--customer", a->customer, "Only this customer's keys");
  add_format(list);

  CLI::App* revoke = app->add_subcommand("revoke", "Revoke a key: requests with it get 401 from then on");
  add_db(revoke);
  revoke->add_option("KEY", a->which, "The key's id, its prefix (mox-AbCd1234, as list shows) or the whole key")
      ->required();

  app->footer(
      "Examples:\n"
      "  mox keys create --customer acme --rpm 60 --monthly-tokens 1000000   (prints the key once)\n"
      "  mox keys list --customer acme\n"
      "  mox keys revoke mox-AbCd1234\n"
      "The keys live in --db (default usage.sqlite), the database mox serve and mox usage read.");

  return {app, [a, create, list, revoke]() -> int {
            if (create->parsed()) {
              serve::Store store(a->db);
              serve::NewKey k = store.create_key(a->customer, a->limits);
              if (a->format == "json") {
                ojson j = {{"id", k.info.id},           {"customer", k.info.customer},
                           {"prefix", k.info.prefix},   {"key", k.secret},
                           {"limits", limits_json(k.info.limits)}, {"created_at", k.info.created_at}};
                std::cout << j.dump(2) << "\n";
              } else {
                std::cout << "key:             " << k.secret << "\n"
                          << "id:              " << k.info.id << "\n"
                          << "prefix:          " << k.info.prefix << "\n"
                          << "customer:        " << k.info.customer << "\n"
                          << "rpm:             " << limit_text(k.info.limits.rpm) << "\n"
                          << "tpm:             " << limit_text(k.info.limits.tpm) << "\n"
                          << "monthly tokens:  " << limit_text(k.info.limits.monthly_tokens) << "\n";
              }
              std::cerr << "Keep the key now: it is not shown again (" << a->db << " stores only its SHA-256).\n";
              return 0;
            }
            require_db(a->db);
            serve::Store store(a->db);
            if (list->parsed()) {
              const std::string month = serve::month_of(serve::utc_now_iso());
              std::vector<serve::KeyInfo> keys = store.list_keys(a->customer);
              if (a->format == "json") {
                ojson arr = ojson::array();
                for (const serve::KeyInfo& k : keys)
                  arr.push_back({{"id", k.id},
                                 {"prefix", k.prefix},
                                 {"customer", k.customer},
                                 {"limits", limits_json(k.limits)},
                                 {"created_at", k.created_at},
                                 {"revoked_at", k.revoked() ? ojson(k.revoked_at) : ojson(nullptr)},
                                 {"month", month},
                                 {"tokens_this_month", store.tokens_used(k.id, month)}});
                std::cout << arr.dump(2) << "\n";
                return 0;
              }
              if (keys.empty()) {
                std::cout << (a->customer.empty() ? "no keys in " + a->db : "no keys for customer " + a->customer)
                          << "\n";
                return 0;
              }
              std::vector<std::vector<std::string>> rows = {{"id", "prefix", "customer", "rpm", "tpm", "monthly tokens",
                                                             "tokens " + month, "created", "revoked"}};
              for (const serve::KeyInfo& k : keys)
                rows.push_back({std::to_string(k.id), k.prefix, k.customer, limit_text(k.limits.rpm),
                                limit_text(k.limits.tpm), limit_text(k.limits.monthly_tokens),
                                std::to_string(store.tokens_used(k.id, month)), k.created_at,
                                k.revoked() ? k.revoked_at : "-"});
              print_table(rows);
              return 0;
            }
            serve::KeyInfo k = store.revoke_key(a->which);
            std::cout << "revoked key " << k.id << " (" << k.prefix << ") of " << k.customer << " at " << k.revoked_at
                      << "\n";
            return 0;
          }};
}

}  // namespace mox::cli
