// mox keys and mox usage through the built CLI: a key is printed once and never listed,
// revoke by prefix, usage and invoices as table / CSV / JSON over rows written through the
// Store API, and bad input (month, database, customer) gets one line and a non-zero exit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli/run_cli.h"
#include "mox/serve/store.h"

namespace fs = std::filesystem;
using mox::testing::lines_of;
using mox::testing::run_cli;
using nlohmann::json;

namespace {

class KeysCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("mox_keys_cli." + std::to_string(::getpid()) + "." +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = dir_ + "/usage.sqlite";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_, db_;
};

std::string prices() { return std::string(MOX_SOURCE_DIR) + "/examples/prices.toml"; }

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) n++;
  return n;
}

}  // namespace

TEST_F(KeysCli, CreatePrintsTheKeyOnceAndListNeverShowsIt) {
  auto c = run_cli({"keys", "create", "--db", db_, "--customer", "acme", "--rpm", "60", "--monthly-tokens", "100000"});
  ASSERT_EQ(c.code, 0) << c.err;
  std::string key;
  for (const std::string& line : lines_of(c.out))
    if (line.rfind("key:", 0) == 0) key = line.substr(line.find("mox-"));
  ASSERT_EQ(key.size(), 47u) << c.out;
  EXPECT_EQ(count(c.out, key), 1u) << c.out;
  EXPECT_NE(c.out.find("60"), std::string::npos);
  EXPECT_NE(c.err.find("not shown again"), std::string::npos) << c.err;

  auto j = run_cli({"keys", "create", "--db", db_, "--customer", "globex", "--tpm", "5000", "--format", "json"});
  ASSERT_EQ(j.code, 0) << j.err;
  json k2 = json::parse(j.out);
  const std::string key2 = k2["key"];
  EXPECT_EQ(key2.substr(0, 4), "mox-");
  EXPECT_EQ(k2["prefix"], key2.substr(0, 12));
  EXPECT_EQ(k2["limits"]["tpm"], 5000);
  EXPECT_EQ(k2["customer"], "globex");

  // The store knows both keys by their secret.
  {
    mox::serve::Store s(db_);
    ASSERT_TRUE(s.find_key(key));
    EXPECT_EQ(s.find_key(key)->customer, "acme");
    EXPECT_EQ(s.find_key(key)->limits.monthly_tokens, 100000);
    ASSERT_TRUE(s.find_key(key2));
  }

  auto l = run_cli({"keys", "list", "--db", db_});
  ASSERT_EQ(l.code, 0) << l.err;
  EXPECT_EQ(l.out.find(key), std::string::npos) << l.out;
  EXPECT_EQ(l.out.find(key.substr(12)), std::string::npos) << l.out;
  EXPECT_EQ(l.out.find(key2), std::string::npos) << l.out;
  EXPECT_NE(l.out.find(key.substr(0, 12)), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("globex"), std::string::npos) << l.out;
  EXPECT_EQ(lines_of(l.out).size(), 3u) << l.out;  // header + two keys

  auto lj = run_cli({"keys", "list", "--db", db_, "--customer", "acme", "--format", "json"});
  ASSERT_EQ(lj.code, 0) << lj.err;
  json arr = json::parse(lj.out);
  ASSERT_EQ(arr.size(), 1u);
  EXPECT_EQ(arr[0]["prefix"], key.substr(0, 12));
  EXPECT_FALSE(arr[0].contains("key"));
  EXPECT_EQ(arr[0]["limits"]["rpm"], 60);
  EXPECT_EQ(arr[0]["tokens_this_month"], 0);
  EXPECT_TRUE(arr[0]["revoked_at"].is_null());
}

TEST_F(KeysCli, RevokeByPrefix) {
  auto c = run_cli({"keys", "create", "--db", db_, "--customer", "acme", "--format", "json"});
  ASSERT_EQ(c.code, 0) << c.err;
  const std::string key = json::parse(c.out)["key"];
  const std::string prefix = key.substr(0, 12);
  auto r = run_cli({"keys", "revoke", "--db", db_, prefix});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("revoked key 1 (" + prefix + ") of acme"), std::string::npos) << r.out;
  {
    mox::serve::Store s(db_);
    ASSERT_TRUE(s.find_key(key));
    EXPECT_TRUE(s.find_key(key)->revoked());
  }
  auto lj = run_cli({"keys", "list", "--db", db_, "--format", "json"});
  ASSERT_EQ(lj.code, 0) << lj.err;
  EXPECT_TRUE(json::parse(lj.out)[0]["revoked_at"].is_string());

  auto bad = run_cli({"keys", "revoke", "--db", db_, "mox-nosuchkey"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_EQ(lines_of(bad.err).size(), 1u) << bad.err;
  EXPECT_NE(bad.err.find("no API key matches"), std::string::npos) << bad.err;
}

TEST_F(KeysCli, DefaultDatabaseIsUsageSqliteInTheCurrentFolder) {
  const fs::path before = fs::current_path();
  fs::current_path(dir_);
  auto c = run_cli({"keys", "create", "--customer", "acme"});
  fs::current_path(before);
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_TRUE(fs::exists(db_));
}

TEST_F(KeysCli, UsageAndInvoiceAsTableCsvAndJson) {
  {
    mox::serve::Store s(db_);
    const int64_t acme = s.create_key("acme", {}).info.id;
    const int64_t globex = s.create_key("globex", {}).info.id;
    auto rec = [&](const std::string& id, int64_t key, const std::string& model, int64_t p, int64_t c, int64_t cls,
                   const std::string& at) {
      mox::serve::UsageRow r;
      r.request_id = id;
      r.key_id = key;
      r.model = model;
      r.endpoint = cls ? "/v1/classify" : "/v1/completions";
      r.prompt_tokens = p;
      r.completion_tokens = c;
      r.classifications = cls;
      r.created_at = at;
      ASSERT_TRUE(s.record(r));
    };
    // examples/prices.toml: gpt-fortunes 0.50 / 1.50 per 1M, cnn 0.0002 per input.
    rec("r1", acme, "gpt-fortunes", 1000000, 100000, 0, "2026-11-02T10:00:00Z");
    rec("r2", acme, "gpt-fortunes", 500000, 100000, 0, "2026-11-03T10:00:00Z");
    rec("r3", acme, "cnn", 0, 0, 1000, "2026-11-04T10:00:00Z");
    rec("r4", acme, "gpt-fortunes", 999, 999, 0, "2026-10-31T23:00:00Z");  // another month
    rec("r5", globex, "cnn", 0, 0, 5000, "2026-11-05T10:00:00Z");
  }
  // acme, 2026-11: 1.5M prompt = 0.75, 200k completion = 0.30, 1000 classifications = 0.20.
  auto t = run_cli({"usage", "--db", db_, "--customer", "acme", "--month", "2026-11", "--prices", prices()});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("1500000"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("0.75"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("0.30"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("1.25"), std::string::npos) << t.out;
  EXPECT_EQ(t.out.find("globex"), std::string::npos) << t.out;

  auto c = run_cli({"usage", "--db", db_, "--customer", "acme", "--month", "2026-11", "--prices", prices(),
                    "--format", "csv"});
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_NE(c.out.find("acme,gpt-fortunes,prompt tokens,1500000,0.5,1M tokens,0.75,USD,\n"), std::string::npos)
      << c.out;
  EXPECT_NE(c.out.find(",,grand total,,,,1.25,USD,\n"), std::string::npos) << c.out;

  auto j = run_cli({"usage", "--db", db_, "--month", "2026-11", "--prices", prices(), "--format", "json"});
  ASSERT_EQ(j.code, 0) << j.err;
  json inv = json::parse(j.out);
  ASSERT_EQ(inv["totals"].size(), 2u);
  EXPECT_NEAR(inv["totals"][0]["amount"].get<double>(), 1.25, 1e-9);
  EXPECT_NEAR(inv["totals"][1]["amount"].get<double>(), 1.0, 1e-9);  // 5000 x 0.0002
  EXPECT_NEAR(inv["total"].get<double>(), 2.25, 1e-9);

  // Without prices: the usage alone.
  auto u = run_cli({"usage", "--db", db_, "--month", "2026-10", "--format", "json"});
  ASSERT_EQ(u.code, 0) << u.err;
  json uj = json::parse(u.out);
  ASSERT_EQ(uj["usage"].size(), 1u);
  EXPECT_EQ(uj["usage"][0]["prompt_tokens"], 999);
  EXPECT_FALSE(uj.contains("lines"));
}

TEST_F(KeysCli, BadInputGetsOneLine) {
  { mox::serve::Store s(db_); s.create_key("acme", {}); }
  for (const char* month : {"2026-13", "11-2026", "2026/11", "2026-1"}) {
    auto r = run_cli({"usage", "--db", db_, "--month", month});
    EXPECT_NE(r.code, 0) << month;
    ASSERT_EQ(lines_of(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find("--month"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(month), std::string::npos) << r.err;
  }
  const std::string missing = dir_ + "/none.sqlite";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"keys", "list", "--db", missing}, {"keys", "revoke", "--db", missing, "1"},
        {"usage", "--db", missing, "--month", "2026-11"}}) {
    auto r = run_cli(args);
    EXPECT_EQ(r.code, 1) << args[1];
    ASSERT_EQ(lines_of(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find(missing + ": no such usage database"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(missing));  // not created by a read
  }
  auto who = run_cli({"usage", "--db", db_, "--customer", "acne", "--month", "2026-11"});
  EXPECT_EQ(who.code, 1);
  EXPECT_NE(who.err.find("no customer \"acne\""), std::string::npos) << who.err;
  EXPECT_NE(who.err.find("customers: acme"), std::string::npos) << who.err;

  const std::string bad_prices = dir_ + "/prices.toml";
  std::ofstream(bad_prices) << "[models.cnn]\nper_classification = -1\n";
  auto bp = run_cli({"usage", "--db", db_, "--month", "2026-11", "--prices", bad_prices});
  EXPECT_EQ(bp.code, 1);
  EXPECT_NE(bp.err.find(bad_prices + ": models.cnn.per_classification"), std::string::npos) << bp.err;

  auto neg = run_cli({"keys", "create", "--db", db_, "--customer", "acme", "--rpm", "-3"});
  EXPECT_EQ(neg.code, 2) << neg.err;
  auto empty = run_cli({"keys", "create", "--db", db_, "--customer", ""});
  EXPECT_EQ(empty.code, 1);
  EXPECT_NE(empty.err.find("customer"), std::string::npos) << empty.err;
  auto notdb = run_cli({"keys", "list", "--db", bad_prices});
  EXPECT_EQ(notdb.code, 1);
  EXPECT_NE(notdb.err.find(bad_prices + ": not a mox usage database"), std::string::npos) << notdb.err;
}

TEST_F(KeysCli, HelpHasExamples) {
  for (const char* cmd : {"keys", "usage"}) {
    auto h = run_cli({cmd, "--help"});
    EXPECT_EQ(h.code, 0) << cmd;
    EXPECT_NE(h.out.find("Example"), std::string::npos) << h.out;
    EXPECT_NE(h.out.find("--db"), std::string::npos) << h.out;
  }
}
