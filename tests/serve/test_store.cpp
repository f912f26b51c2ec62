// serve::Store: API keys (random, shown once, stored as SHA-256), the schema and its
// migrations, metering (one row per request id, the monthly counter kept in the same
// transaction, also under many threads and two connections), monthly usage and the
// dashboard's latency buckets.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "mox/serve/store.h"
#include "mox/tensor/error.h"

namespace fs = std::filesystem;
using namespace mox::serve;

namespace {

// A fresh folder per test, removed afterwards.
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mox_store_test." + std::to_string(::getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string sha256_hex(const std::string& s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
  std::string out;
  char buf[3];
  for (unsigned i = 0; i < n; i++) {
    std::snprintf(buf, sizeof buf, "%02x", md[i]);
    out += buf;
  }
  return out;
}

// Runs SQL on a database file through its own connection (what another program would do).
void sql(const std::string& path, const std::string& statements) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, statements.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

std::string sql_text(const std::string& path, const std::string& query) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, query.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const mox::Error& e) {
    return e.what();
  }
  return "(no error)";
}

UsageRow row(const std::string& id, int64_t key, const std::string& model, int64_t prompt, int64_t completion,
             const std::string& at = "", double latency = 10, int status = 200) {
  UsageRow r;
  r.request_id = id;
  r.key_id = key;
  r.model = model;
  r.endpoint = "/v1/completions";
  r.prompt_tokens = prompt;
  r.completion_tokens = completion;
  r.latency_ms = latency;
  r.status = status;
  r.created_at = at;
  return r;
}

}  // namespace

TEST_F(StoreTest, KeysAreRandomBase64urlAndOnlyTheirHashIsStored) {
  const std::string path = file("usage.sqlite");
  std::vector<NewKey> keys;
  {
    Store s(path);
    for (int i = 0; i < 20; i++) keys.push_back(s.create_key(i % 2 ? "acme" : "globex", {60, 1000, 50000}));
  }
  std::set<std::string> secrets;
  for (const NewKey& k : keys) {
    ASSERT_EQ(k.secret.size(), 47u) << k.secret;  // "mox-" + 43 characters of 32 bytes
    EXPECT_EQ(k.secret.substr(0, 4), "mox-");
    for (char c : k.secret.substr(4)) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << k.secret;
    EXPECT_EQ(k.info.prefix, k.secret.substr(0, 12));
    EXPECT_GT(k.info.id, 0);
    secrets.insert(k.secret);
  }
  EXPECT_EQ(secrets.size(), keys.size());

  // The file (after close: no WAL left) holds every key's SHA-256 and none of the secrets.
  const std::string bytes = slurp(path) + slurp(path + "-wal");
  for (const NewKey& k : keys) {
    EXPECT_EQ(bytes.find(k.secret), std::string::npos);
    EXPECT_EQ(bytes.find(k.secret.substr(12)), std::string::npos);  // not even the part after the prefix
    EXPECT_NE(bytes.find(sha256_hex(k.secret)), std::string::npos);
  }

  Store s(path);
  std::optional<KeyInfo> f = s.find_key(keys[3].secret);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->id, keys[3].info.id);
  EXPECT_EQ(f->customer, "acme");
  EXPECT_EQ(f->prefix, keys[3].info.prefix);
  EXPECT_EQ(f->limits.rpm, 60);
  EXPECT_EQ(f->limits.tpm, 1000);
  EXPECT_EQ(f->limits.monthly_tokens, 50000);
  EXPECT_FALSE(f->revoked());
  std::string wrong = keys[3].secret;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(s.find_key(wrong));
  EXPECT_FALSE(s.find_key(keys[3].info.prefix));
  EXPECT_FALSE(s.find_key(""));
}

TEST_F(StoreTest, ListAndRevokeByIdPrefixOrSecret) {
  Store s(file("usage.sqlite"));
  NewKey a1 = s.create_key("acme", {});
  NewKey g1 = s.create_key("globex", {10, 0, 0});
  NewKey a2 = s.create_key("acme", {0, 0, 1000});
  NewKey a3 = s.create_key("acme", {});

  std::vector<KeyInfo> all = s.list_keys();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].id, a1.info.id);  // oldest first
  EXPECT_EQ(all[1].customer, "globex");
  EXPECT_EQ(all[1].limits.rpm, 10);
  EXPECT_EQ(all[3].id, a3.info.id);
  std::vector<KeyInfo> acme = s.list_keys("acme");
  ASSERT_EQ(acme.size(), 3u);
  for (const KeyInfo& k : acme) EXPECT_EQ(k.customer, "acme");
  EXPECT_TRUE(s.list_keys("nobody").empty());
  EXPECT_EQ(all[2].created_at.size(), 20u);
  EXPECT_EQ(all[2].limits.monthly_tokens, 1000);

  KeyInfo r1 = s.revoke_key(std::to_string(a1.info.id));
  EXPECT_EQ(r1.id, a1.info.id);
  EXPECT_TRUE(r1.revoked());
  KeyInfo r2 = s.revoke_key(a2.info.prefix);
  EXPECT_EQ(r2.id, a2.info.id);
  KeyInfo r3 = s.revoke_key(a3.secret);
  EXPECT_EQ(r3.id, a3.info.id);

  // A revoked key is still found (the server answers 401 with its own message).
  ASSERT_TRUE(s.find_key(a1.secret));
  EXPECT_TRUE(s.find_key(a1.secret)->revoked());
  EXPECT_EQ(s.find_key(a1.secret)->revoked_at, r1.revoked_at);
  EXPECT_FALSE(s.find_key(g1.secret)->revoked());
  int revoked = 0;
  for (const KeyInfo& k : s.list_keys()) revoked += k.revoked();
  EXPECT_EQ(revoked, 3);
  // Revoking again keeps the first time.
  EXPECT_EQ(s.revoke_key(a2.info.prefix).revoked_at, r2.revoked_at);

  EXPECT_NE(error_of([&] { s.revoke_key("mox-nosuchkey"); }).find("no API key matches"), std::string::npos);
  EXPECT_NE(error_of([&] { s.revoke_key("999"); }).find("id 999"), std::string::npos);
  EXPECT_NE(error_of([&] { s.create_key("  ", {}); }).find("customer"), std::string::npos);
  EXPECT_NE(error_of([&] { s.create_key("x", {-1, 0, 0}); }).find("rpm"), std::string::npos);
  EXPECT_NE(error_of([&] { s.create_key("x", {0, 0, -5}); }).find("monthly"), std::string::npos);
  EXPECT_EQ(s.list_keys().size(), 4u);  // the refused creates wrote nothing
}

TEST_F(StoreTest, AmbiguousPrefixIsRefused) {
  const std::string path = file("usage.sqlite");
  NewKey a, b;
  {
    Store s(path);
    a = s.create_key("acme", {});
    b = s.create_key("acme", {});
  }
  sql(path, "UPDATE api_keys SET prefix = 'mox-SAMESAME'");
  Store s(path);
  EXPECT_NE(error_of([&] { s.revoke_key("mox-SAMESAME"); }).find("matches 2 keys"), std::string::npos);
  EXPECT_EQ(s.revoke_key(b.secret).id, b.info.id);  // the whole key still tells them apart
  EXPECT_FALSE(s.find_key(a.secret)->revoked());
}

TEST_F(StoreTest, MigrationsSchemaVersionAndForeignFiles) {
  const std::string path = file("usage.sqlite");
  int64_t id = 0;
  {
    Store s(path);
    EXPECT_EQ(s.schema_version(), 1);
    id = s.create_key("acme", {}).info.id;
    EXPECT_EQ(sql_text(path, "PRAGMA journal_mode"), "wal");
  }
  EXPECT_EQ(sql_text(path, "PRAGMA user_version"), "1");
  {
    Store s(path);  // opening again applies nothing and keeps the data
    EXPECT_EQ(s.schema_version(), 1);
    ASSERT_EQ(s.list_keys().size(), 1u);
    EXPECT_EQ(s.list_keys()[0].id, id);
  }
  for (const char* t : {"customers", "api_keys", "usage", "monthly_usage"})
    EXPECT_EQ(sql_text(path, std::string("SELECT count(*) FROM sqlite_master WHERE name = '") + t + "'"), "1") << t;
  EXPECT_EQ(sql_text(path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"),
            "3");

  // A newer schema is refused, naming both versions and the file.
  sql(path, "PRAGMA user_version = 7");
  std::string e = error_of([&] { Store s(path); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("schema 7 is newer than this mox (1)"), std::string::npos) << e;

  // A file that is not SQLite.
  const std::string text = file("notes.sqlite");
  std::ofstream(text) << std::string(4096, 'x');
  e = error_of([&] { Store s(text); });
  EXPECT_NE(e.find(text), std::string::npos) << e;
  EXPECT_NE(e.find("not a mox usage database"), std::string::npos) << e;
  EXPECT_EQ(slurp(text), std::string(4096, 'x'));  // left as it was

  // Another program's database.
  const std::string other = file("other.sqlite");
  sql(other, "CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES ('x')");
  e = error_of([&] { Store s(other); });
  EXPECT_NE(e.find(other), std::string::npos) << e;
  EXPECT_NE(e.find("songs"), std::string::npos) << e;
  EXPECT_EQ(sql_text(other, "SELECT count(*) FROM sqlite_master"), "1");  // nothing added

  // One numbered like ours but without our tables.
  const std::string numbered = file("numbered.sqlite");
  sql(numbered, "PRAGMA user_version = 1");
  e = error_of([&] { Store s(numbered); });
  EXPECT_NE(e.find("not a mox usage database"), std::string::npos) << e;

  // A folder that does not exist.
  e = error_of([&] { Store s(file("no/such/dir/usage.sqlite")); });
  EXPECT_NE(e.find("no/such/dir/usage.sqlite"), std::string::npos) << e;
}

TEST_F(StoreTest, RecordWritesOneRowPerRequestId) {
  Store s(file("usage.sqlite"));
  const int64_t k = s.create_key("acme", {}).info.id;
  const int64_t other = s.create_key("acme", {}).info.id;
  EXPECT_TRUE(s.record(row("req-1", k, "gpt", 100, 20, "2026-11-23T10:00:00Z")));
  EXPECT_FALSE(s.record(row("req-1", k, "gpt", 999, 999, "2026-11-23T10:00:05Z")));
  EXPECT_FALSE(s.record(row("req-1", other, "gpt", 5, 5)));
  EXPECT_EQ(s.row_count(), 1);
  EXPECT_EQ(s.row_count(k), 1);
  EXPECT_EQ(s.row_count(other), 0);
  EXPECT_EQ(s.tokens_used(k, "2026-11"), 120);
  EXPECT_EQ(s.tokens_used(other, "2026-11"), 0);
  std::vector<UsageTotal> u = s.usage("2026-11");
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].requests, 1);
  EXPECT_EQ(u[0].prompt_tokens, 100);

  // Bad rows are refused and write nothing.
  EXPECT_THROW(s.record(row("req-2", 12345, "gpt", 1, 1)), mox::Error);  // no such key
  EXPECT_THROW(s.record(row("req-3", k, "gpt", -1, 1)), mox::Error);
  EXPECT_THROW(s.record(row("", k, "gpt", 1, 1)), mox::Error);
  EXPECT_NE(error_of([&] { s.record(row("req-4", k, "gpt", 1, 1, "23/11/2026")); }).find("23/11/2026"),
            std::string::npos);
  EXPECT_EQ(s.row_count(), 1);
  EXPECT_EQ(s.tokens_used(k, "2026-11"), 120);

  // An empty created_at is now.
  EXPECT_TRUE(s.record(row("req-5", k, "gpt", 1, 2)));
  EXPECT_EQ(s.tokens_used(k, month_of(utc_now_iso())), month_of(utc_now_iso()) == "2026-11" ? 123 : 3);
}

// Many writers at once: every accepted record is counted once, each request id is metered
// exactly once (duplicates race on purpose), and the counter matches the rows.
TEST_F(StoreTest, ConcurrentRecordsAreCountedExactlyOnce) {
  const std::string path = file("usage.sqlite");
  Store s1(path), s2(path);  // two connections on one file, as two processes would have
  std::vector<int64_t> keys;
  for (int i = 0; i < 4; i++) keys.push_back(s1.create_key(i % 2 ? "c1" : "c0", {}).info.id);

  constexpr int kThreads = 16, kEach = 50;
  std::vector<std::map<int64_t, int64_t>> accepted(kThreads);  // per thread: key -> tokens accepted
  std::vector<int64_t> accepted_rows(kThreads, 0), refused(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++)
    threads.emplace_back([&, t] {
      Store& s = t % 4 == 3 ? s2 : s1;  // a quarter of the threads on the second connection
      std::mt19937 rng(uint32_t(t + 1));
      for (int i = 0; i < kEach; i++) {
        // Even i: an id of this thread only; odd i: an id every thread tries (one wins).
        char id[32];
        if (i % 2 == 0)
          std::snprintf(id, sizeof id, "t%d-%d", t, i);
        else
          std::snprintf(id, sizeof id, "shared-%d", i);
        const int64_t key = keys[size_t((t + i) % 4)];
        const int64_t p = int64_t(rng() % 500), c = int64_t(rng() % 200);
        if (s.record(row(id, key, i % 3 ? "gpt" : "cnn", p, c, "2026-11-23T10:00:00Z"))) {
          accepted[size_t(t)][key] += p + c;
          accepted_rows[size_t(t)]++;
        } else {
          refused[size_t(t)]++;
        }
      }
    });
  for (std::thread& th : threads) th.join();

  std::map<int64_t, int64_t> want;
  int64_t rows = 0, total_refused = 0;
  for (int t = 0; t < kThreads; t++) {
    for (auto [k, v] : accepted[size_t(t)]) want[k] += v;
    rows += accepted_rows[size_t(t)];
    total_refused += refused[size_t(t)];
  }
  const int64_t distinct = kThreads * (kEach / 2) + kEach / 2;
  EXPECT_EQ(rows, distinct);
  EXPECT_EQ(total_refused, kThreads * kEach - distinct);
  EXPECT_EQ(s1.row_count(), distinct);
  EXPECT_EQ(s2.row_count(), distinct);
  int64_t all_tokens = 0, usage_tokens = 0;
  for (int64_t k : keys) {
    EXPECT_EQ(s1.tokens_used(k, "2026-11"), want[k]) << "key " << k;
    all_tokens += want[k];
  }
  for (const UsageTotal& u : s2.usage("2026-11")) usage_tokens += u.prompt_tokens + u.completion_tokens;
  EXPECT_EQ(usage_tokens, all_tokens);
  EXPECT_EQ(sql_text(path, "SELECT sum(requests) FROM monthly_usage"), std::to_string(distinct));
}

TEST_F(StoreTest, MonthlyTokensAndUsagePerCustomerAndModel) {
  Store s(file("usage.sqlite"));
  const int64_t a = s.create_key("acme", {}).info.id;
  const int64_t a2 = s.create_key("acme", {}).info.id;
  const int64_t g = s.create_key("globex", {}).info.id;
  ASSERT_TRUE(s.record(row("1", a, "gpt", 100, 10, "2026-10-31T23:59:59Z")));
  ASSERT_TRUE(s.record(row("2", a, "gpt", 200, 20, "2026-11-01T00:00:00Z")));
  ASSERT_TRUE(s.record(row("3", a2, "gpt", 300, 30, "2026-11-15T12:00:00Z")));
  ASSERT_TRUE(s.record(row("4", a, "gpt", 50, 0, "2026-11-15T12:00:01Z", 3, 429)));
  UsageRow cls = row("5", a, "cnn", 0, 0, "2026-11-20T08:00:00Z");
  cls.endpoint = "/v1/classify";
  cls.classifications = 64;
  ASSERT_TRUE(s.record(cls));
  ASSERT_TRUE(s.record(row("6", g, "gpt", 7, 3, "2026-11-02T00:00:00Z")));

  EXPECT_EQ(s.tokens_used(a, "2026-10"), 110);
  EXPECT_EQ(s.tokens_used(a, "2026-11"), 220 + 50);
  EXPECT_EQ(s.tokens_used(a2, "2026-11"), 330);
  EXPECT_EQ(s.tokens_used(g, "2026-11"), 10);
  EXPECT_EQ(s.tokens_used(g, "2026-12"), 0);

  std::vector<UsageTotal> u = s.usage("2026-11");
  ASSERT_EQ(u.size(), 3u);  // sorted by customer, then model
  EXPECT_EQ(u[0].customer, "acme");
  EXPECT_EQ(u[0].model, "cnn");
  EXPECT_EQ(u[0].requests, 1);
  EXPECT_EQ(u[0].classifications, 64);
  EXPECT_EQ(u[1].customer, "acme");
  EXPECT_EQ(u[1].model, "gpt");
  EXPECT_EQ(u[1].requests, 3);  // both acme keys
  EXPECT_EQ(u[1].errors, 1);
  EXPECT_EQ(u[1].prompt_tokens, 550);
  EXPECT_EQ(u[1].completion_tokens, 50);
  EXPECT_EQ(u[2].customer, "globex");
  EXPECT_EQ(u[2].prompt_tokens, 7);
  ASSERT_EQ(s.usage("2026-11", "globex").size(), 1u);
  EXPECT_EQ(s.usage("2026-11", "acme").size(), 2u);
  ASSERT_EQ(s.usage("2026-10").size(), 1u);
  EXPECT_EQ(s.usage("2026-10")[0].prompt_tokens, 100);
  EXPECT_TRUE(s.usage("2026-09").empty());
  EXPECT_THROW(s.usage("2026-13"), mox::Error);
  EXPECT_THROW(s.usage("Nov 2026"), mox::Error);
}

TEST_F(StoreTest, BucketsHaveNearestRankLatencyPercentiles) {
  Store s(file("usage.sqlite"));
  const int64_t a = s.create_key("acme", {}).info.id;
  const int64_t g = s.create_key("globex", {}).info.id;
  // Minute 10:00: 20 gpt requests of acme with latencies 1..20 ms, recorded out of order.
  std::vector<int> lat(20);
  for (int i = 0; i < 20; i++) lat[size_t(i)] = i + 1;
  std::shuffle(lat.begin(), lat.end(), std::mt19937(3));
  for (int i = 0; i < 20; i++) {
    char at[32], id[16];
    std::snprintf(at, sizeof at, "2026-11-23T10:00:%02dZ", i * 3);
    std::snprintf(id, sizeof id, "a%d", i);
    ASSERT_TRUE(s.record(row(id, a, "gpt", 10, 5, at, lat[size_t(i)], i == 7 ? 500 : 200)));
  }
  // Minute 10:01: three requests, 30, 10, 20 ms; and one of globex.
  ASSERT_TRUE(s.record(row("b1", a, "gpt", 1, 1, "2026-11-23T10:01:00Z", 30)));
  ASSERT_TRUE(s.record(row("b2", a, "gpt", 1, 1, "2026-11-23T10:01:30Z", 10)));
  ASSERT_TRUE(s.record(row("b3", a, "gpt", 1, 1, "2026-11-23T10:01:59Z", 20)));
  ASSERT_TRUE(s.record(row("b4", g, "gpt", 1, 1, "2026-11-23T10:01:10Z", 99)));
  // Before `since`: left out.
  ASSERT_TRUE(s.record(row("old", a, "gpt", 1, 1, "2026-11-23T09:59:59Z", 1000)));

  std::vector<UsageBucket> b = s.buckets("2026-11-23T10:00:00Z", 60);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].start, "2026-11-23T10:00:00Z");
  EXPECT_EQ(b[0].customer, "acme");
  EXPECT_EQ(b[0].model, "gpt");
  EXPECT_EQ(b[0].requests, 20);
  EXPECT_EQ(b[0].errors, 1);
  EXPECT_EQ(b[0].prompt_tokens, 200);
  EXPECT_EQ(b[0].completion_tokens, 100);
  EXPECT_DOUBLE_EQ(b[0].latency_p50_ms, 10);  // rank ceil(0.50 * 20) = 10
  EXPECT_DOUBLE_EQ(b[0].latency_p95_ms, 19);  // rank ceil(0.95 * 20) = 19
  EXPECT_DOUBLE_EQ(b[0].latency_p99_ms, 20);  // rank ceil(0.99 * 20) = 20
  EXPECT_EQ(b[1].start, "2026-11-23T10:01:00Z");
  EXPECT_EQ(b[1].customer, "acme");
  EXPECT_EQ(b[1].requests, 3);
  EXPECT_DOUBLE_EQ(b[1].latency_p50_ms, 20);  // rank ceil(1.5) = 2 of {10, 20, 30}
  EXPECT_DOUBLE_EQ(b[1].latency_p95_ms, 30);
  EXPECT_EQ(b[2].start, "2026-11-23T10:01:00Z");
  EXPECT_EQ(b[2].customer, "globex");
  EXPECT_DOUBLE_EQ(b[2].latency_p99_ms, 99);

  // One hour-long bucket holds all 24 requests since 10:00.
  std::vector<UsageBucket> h = s.buckets("2026-11-23T10:00:00Z", 3600);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].start, "2026-11-23T10:00:00Z");
  EXPECT_EQ(h[0].requests, 23);
  EXPECT_DOUBLE_EQ(h[0].latency_p50_ms, 11);  // {1..20, 10, 20, 30}: the 12th smallest
  EXPECT_EQ(h[1].requests, 1);

  EXPECT_TRUE(s.buckets("2026-11-23T11:00:00Z", 60).empty());
  EXPECT_THROW(s.buckets("yesterday", 60), mox::Error);
  EXPECT_THROW(s.buckets("2026-11-23T10:00:00Z", 0), mox::Error);
}

TEST(StoreTime, NowAndMonth) {
  const std::string now = utc_now_iso();
  ASSERT_EQ(now.size(), 20u) << now;
  EXPECT_EQ(now[10], 'T');
  EXPECT_EQ(now.back(), 'Z');
  EXPECT_EQ(month_of(now), now.substr(0, 7));
  EXPECT_EQ(month_of("2026-11-23T10:00:00Z"), "2026-11");
  EXPECT_THROW(month_of("11/2026"), mox::Error);
  EXPECT_THROW(month_of("2026-1"), mox::Error);
}
