#include "mox/serve/store.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <tuple>

#include "mox/tensor/error.h"

namespace mox::serve {

namespace {

// The schema, one migration per version: migration i (1-based) takes user_version i-1 to i.
// Never edit a migration that has shipped; append a new one instead.
const char* const kMigrations[] = {
    // 1: customers, their keys, one row per request, and the per-key monthly counter that
    // quota checks read (one indexed row instead of a sum over the month's requests).
    R"sql(
CREATE TABLE customers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
CREATE TABLE api_keys (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  prefix TEXT NOT NULL,
  sha256 TEXT NOT NULL UNIQUE,
  rpm INTEGER NOT NULL DEFAULT 0,
  tpm INTEGER NOT NULL DEFAULT 0,
  monthly_tokens INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
CREATE INDEX api_keys_prefix ON api_keys(prefix);
CREATE TABLE usage (
  id INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL UNIQUE,
  key_id INTEGER NOT NULL REFERENCES api_keys(id),
  model TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  classifications INTEGER NOT NULL,
  latency_ms REAL NOT NULL,
  status INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  month TEXT NOT NULL
);
CREATE INDEX usage_key_month ON usage(key_id, month);
CREATE INDEX usage_created_at ON usage(created_at);
CREATE TABLE monthly_usage (
  key_id INTEGER NOT NULL REFERENCES api_keys(id),
  month TEXT NOT NULL,
  requests INTEGER NOT NULL DEFAULT 0,
  tokens INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (key_id, month)
);
)sql",
};
constexpr int kSchemaVersion = int(sizeof(kMigrations) / sizeof(kMigrations[0]));

// The tables the migrations create (a new migration that adds one adds it here): a database
// whose tables are all among these (or that has none) is ours.
bool is_our_table(const std::string& name) {
  return name == "customers" || name == "api_keys" || name == "usage" || name == "monthly_usage" ||
         name.rfind("sqlite_", 0) == 0;
}

// One prepared statement with bound parameters; finalized on scope exit. Every error
// becomes mox::Error naming the database file.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& file, const char* sql) : db_(db), file_(file) {
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK) fail("prepare");
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v) {
    check(sqlite3_bind_int64(st_, i, v));
    return *this;
  }
  Stmt& bind(int i, int v) { return bind(i, int64_t(v)); }
  Stmt& bind(int i, double v) {
    check(sqlite3_bind_double(st_, i, v));
    return *this;
  }
  Stmt& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(st_, i, v.data(), int(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& bind_null(int i) {
    check(sqlite3_bind_null(st_, i));
    return *this;
  }
  // True while a row is available; false when done.
  bool step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail("query");
  }
  void run() {
    while (step()) {
    }
  }
  int64_t i64(int col) const { return sqlite3_column_int64(st_, col); }
  double f64(int col) const { return sqlite3_column_double(st_, col); }
  std::string text(int col) const {
    const unsigned char* p = sqlite3_column_text(st_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), size_t(sqlite3_column_bytes(st_, col)))
             : std::string();
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) fail("bind");
  }
  [[noreturn]] void fail(const char* what) {
    throw Error(file_, std::string("SQLite ") + what + ": " + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  const std::string& file_;
  sqlite3_stmt* st_ = nullptr;
};

// SQL without user data (pragmas, BEGIN/COMMIT, migrations).
void exec(sqlite3* db, const std::string& file, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw Error(file, "SQLite: " + msg);
  }
}

// BEGIN IMMEDIATE ... COMMIT; rolls back unless commit() ran. IMMEDIATE takes the write
// lock up front, so that the busy timeout applies (a deferred transaction that later
// writes can fail at once with SQLITE_BUSY under WAL).
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& file) : db_(db), file_(file) {
    exec(db, file, "BEGIN IMMEDIATE");
  }
  ~Transaction() {
    if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    exec(db_, file_, "COMMIT");
    open_ = false;
  }
  void rollback() {
    exec(db_, file_, "ROLLBACK");
    open_ = false;
  }

 private:
  sqlite3* db_;
  const std::string& file_;
  bool open_ = true;
};

// Throws unless the database at `file` (user_version `version`) is a mox usage database
// this build can use: not newer, and holding our tables (version > 0) or no foreign ones
// (version 0: empty, about to be migrated).
void check_schema(sqlite3* db, const std::string& file, int version) {
  if (version > kSchemaVersion)
    throw Error(file, "schema " + std::to_string(version) + " is newer than this mox (" +
                          std::to_string(kSchemaVersion) + ")");
  Stmt s(db, file, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
  std::string foreign;
  int ours = 0;
  while (s.step()) {
    if (is_our_table(s.text(0))) {
      ours += s.text(0).rfind("sqlite_", 0) != 0;
    } else {
      foreign += (foreign.empty() ? "" : ", ") + s.text(0);
    }
  }
  if (!foreign.empty()) throw Error(file, "not a mox usage database (it holds other tables: " + foreign + ")");
  if (version > 0 && ours != 4)
    throw Error(file, "not a mox usage database (schema " + std::to_string(version) +
                          " without the customers, api_keys, usage and monthly_usage tables)");
}

int read_user_version(sqlite3* db, const std::string& file) {
  Stmt s(db, file, "PRAGMA user_version");
  return s.step() ? int(s.i64(0)) : 0;
}

// ---------------------------------------------------------------- keys

std::string base64url(const unsigned char* p, size_t n) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = (acc << 8) | p[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += a[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += a[(acc << (6 - bits)) & 63];
  return out;
}

std::string sha256_hex(const std::string& s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw Error("api key", "OpenSSL SHA-256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; i++) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

constexpr size_t kKeyBytes = 32;
constexpr size_t kPrefixChars = 12;  // "mox-" + 8 characters: 48 bits, enough to tell keys apart

std::string new_secret() {
  unsigned char buf[kKeyBytes];
  if (RAND_bytes(buf, int(kKeyBytes)) != 1) throw Error("api key", "OpenSSL RAND_bytes failed");
  return "mox-" + base64url(buf, kKeyBytes);
}

bool looks_like_secret(const std::string& s) {
  return s.size() == 4 + (kKeyBytes * 8 + 5) / 6 && s.rfind("mox-", 0) == 0;
}

// ---------------------------------------------------------------- time

// Seconds since the epoch of "YYYY-MM-DDTHH:MM:SSZ"; throws naming `what` otherwise.
int64_t parse_iso(const std::string& s, const std::string& what) {
  std::tm tm{};
  char z = 0;
  int n = 0;
  bool ok = s.size() == 20 &&
            std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                        &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z, &n) == 7 &&
            n == 20 && z == 'Z' && tm.tm_mon >= 1 && tm.tm_mon <= 12 && tm.tm_mday >= 1 &&
            tm.tm_mday <= 31 && tm.tm_hour < 24 && tm.tm_min < 60 && tm.tm_sec < 61;
  for (size_t i : {4, 7}) ok = ok && s[i] == '-';
  ok = ok && s[10] == 'T' && s[13] == ':' && s[16] == ':';
  if (!ok) throw Error(what, "expected an ISO 8601 UTC time like 2026-11-23T10:00:00Z, got \"" + s + "\"");
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return int64_t(timegm(&tm));
}

std::string format_iso(int64_t t) {
  std::time_t tt = std::time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool is_month(const std::string& m) {
  if (m.size() != 7 || m[4] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6})
    if (m[i] < '0' || m[i] > '9') return false;
  int mm = (m[5] - '0') * 10 + (m[6] - '0');
  return mm >= 1 && mm <= 12;
}

const char* kKeyColumns =
    "SELECT k.id, c.name, k.prefix, k.rpm, k.tpm, k.monthly_tokens, k.created_at, "
    "coalesce(k.revoked_at, '') FROM api_keys k JOIN customers c ON c.id = k.customer_id ";

KeyInfo key_from(const Stmt& s) {
  KeyInfo k;
  k.id = s.i64(0);
  k.customer = s.text(1);
  k.prefix = s.text(2);
  k.limits.rpm = s.i64(3);
  k.limits.tpm = s.i64(4);
  k.limits.monthly_tokens = s.i64(5);
  k.created_at = s.text(6);
  k.revoked_at = s.text(7);
  return k;
}

}  // namespace

// Nearest-rank percentile of sorted values: the smallest value with at least p% of the
// values at or below it.
double nearest_rank(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = size_t(std::ceil(p / 100.0 * double(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

// ---------------------------------------------------------------- Store

Store::Store(const std::string& path) : path_(path) {
  int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw Error(path, "cannot open the usage database: " + msg);
  }
  try {
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 5000);
    // The first read tells a file that is not SQLite at all ("file is not a database") from
    // one that cannot be opened (a missing folder, no permission).
    {
      char* err = nullptr;
      if (sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errmsg(db_);
        sqlite3_free(err);
        if ((sqlite3_extended_errcode(db_) & 0xff) == SQLITE_NOTADB)
          throw Error(path, "not a mox usage database (" + msg + ")");
        throw Error(path, "cannot open the usage database: " + msg);
      }
    }
    // Whose file is it? Checked before anything is written to it (WAL mode included).
    check_schema(db_, path, read_user_version(db_, path));

    // WAL: readers (the dashboard, `mox usage`) never block the server's writes.
    // synchronous=NORMAL is safe with WAL (never corrupts; an OS crash or power loss may
    // lose the last commits, an application crash loses nothing).
    exec(db_, path, "PRAGMA journal_mode=WAL");
    exec(db_, path, "PRAGMA synchronous=NORMAL");
    exec(db_, path, "PRAGMA foreign_keys=ON");

    // Migrate under the write lock, reading the version again: another process may have
    // migrated the file meanwhile.
    if (read_user_version(db_, path) < kSchemaVersion) {
      Transaction tx(db_, path);
      const int version = read_user_version(db_, path);
      check_schema(db_, path, version);
      for (int v = version; v < kSchemaVersion; v++) exec(db_, path, kMigrations[v]);
      // PRAGMA takes no bound parameters; the value is our own constant.
      exec(db_, path, ("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str());
      tx.commit();
    }
  } catch (...) {
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw;
  }
}

Store::~Store() {
  if (db_) sqlite3_close_v2(db_);
}

int Store::schema_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return read_user_version(db_, path_);
}

NewKey Store::create_key(const std::string& customer, const KeyLimits& limits) {
  if (customer.find_first_not_of(" \t\r\n") == std::string::npos)
    throw Error("customer", "the customer name must not be empty");
  for (char c : customer)
    if (static_cast<unsigned char>(c) < 0x20) throw Error("customer", "the customer name holds a control character");
  MOX_CHECK(limits.rpm >= 0, "rpm", "must be >= 0 (0 = unlimited), got " + std::to_string(limits.rpm));
  MOX_CHECK(limits.tpm >= 0, "tpm", "must be >= 0 (0 = unlimited), got " + std::to_string(limits.tpm));
  MOX_CHECK(limits.monthly_tokens >= 0, "monthly tokens",
            "must be >= 0 (0 = unlimited), got " + std::to_string(limits.monthly_tokens));

  NewKey out;
  out.secret = new_secret();
  out.info.customer = customer;
  out.info.prefix = out.secret.substr(0, kPrefixChars);
  out.info.limits = limits;
  out.info.created_at = utc_now_iso();

  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_, path_);
  Stmt(db_, path_, "INSERT INTO customers (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
      .bind(1, customer)
      .bind(2, out.info.created_at)
      .run();
  Stmt cid(db_, path_, "SELECT id FROM customers WHERE name = ?1");
  cid.bind(1, customer);
  MOX_CHECK(cid.step(), path_, "customer \"" + customer + "\" vanished while creating its key");
  Stmt ins(db_, path_,
           "INSERT INTO api_keys (customer_id, prefix, sha256, rpm, tpm, monthly_tokens, created_at) "
           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  ins.bind(1, cid.i64(0))
      .bind(2, out.info.prefix)
      .bind(3, sha256_hex(out.secret))
      .bind(4, limits.rpm)
      .bind(5, limits.tpm)
      .bind(6, limits.monthly_tokens)
      .bind(7, out.info.created_at)
      .run();
  out.info.id = sqlite3_last_insert_rowid(db_);
  tx.commit();
  return out;
}

std::vector<KeyInfo> Store::list_keys(const std::string& customer) const {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, path_, (std::string(kKeyColumns) + "WHERE ?1 = '' OR c.name = ?1 ORDER BY k.id").c_str());
  s.bind(1, customer);
  std::vector<KeyInfo> out;
  while (s.step()) out.push_back(key_from(s));
  return out;
}

KeyInfo Store::revoke_key(const std::string& which) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_, path_);
  std::vector<KeyInfo> found;
  const bool is_id = !which.empty() && which.size() < 19 &&
                     std::all_of(which.begin(), which.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (is_id) {
    Stmt s(db_, path_, (std::string(kKeyColumns) + "WHERE k.id = ?1").c_str());
    s.bind(1, int64_t(std::stoll(which)));
    while (s.step()) found.push_back(key_from(s));
  } else if (looks_like_secret(which)) {
    Stmt s(db_, path_, (std::string(kKeyColumns) + "WHERE k.sha256 = ?1").c_str());
    s.bind(1, sha256_hex(which));
    while (s.step()) found.push_back(key_from(s));
  } else {
    Stmt s(db_, path_, (std::string(kKeyColumns) + "WHERE k.prefix = ?1 ORDER BY k.id").c_str());
    s.bind(1, which);
    while (s.step()) found.push_back(key_from(s));
  }
  // Never echo what may be (part of) a secret: name the kind of argument instead.
  const std::string what = is_id ? "id " + which : looks_like_secret(which) ? "the key given" : "prefix \"" + which + "\"";
  if (found.empty())
    throw Error(path_, "no API key matches " + what + " (give an id, a prefix like mox-AbCd1234 or the whole key)");
  if (found.size() > 1)
    throw Error(path_, what + " matches " + std::to_string(found.size()) + " keys; revoke by id");
  KeyInfo k = found[0];
  if (!k.revoked()) {
    k.revoked_at = utc_now_iso();
    Stmt(db_, path_, "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL")
        .bind(1, k.revoked_at)
        .bind(2, k.id)
        .run();
  }
  tx.commit();
  return k;
}

std::optional<KeyInfo> Store::find_key(const std::string& secret) const {
  if (!looks_like_secret(secret)) return std::nullopt;
  const std::string hash = sha256_hex(secret);
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, path_, (std::string(kKeyColumns) + "WHERE k.sha256 = ?1").c_str());
  s.bind(1, hash);
  if (!s.step()) return std::nullopt;
  return key_from(s);
}

int64_t Store::tokens_used(int64_t key_id, const std::string& month) const {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, path_, "SELECT tokens FROM monthly_usage WHERE key_id = ?1 AND month = ?2");
  s.bind(1, key_id).bind(2, month);
  return s.step() ? s.i64(0) : 0;
}

bool Store::record(const UsageRow& row) {
  MOX_CHECK(!row.request_id.empty(), "usage", "request_id must not be empty");
  MOX_CHECK(row.prompt_tokens >= 0 && row.completion_tokens >= 0 && row.classifications >= 0, "usage",
            "token and classification counts must be >= 0 (request " + row.request_id + ")");
  const std::string created = row.created_at.empty() ? utc_now_iso() : row.created_at;
  parse_iso(created, "usage created_at");
  const std::string month = month_of(created);

  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_, path_);
  Stmt ins(db_, path_,
           "INSERT INTO usage (request_id, key_id, model, endpoint, prompt_tokens, completion_tokens, "
           "classifications, latency_ms, status, created_at, month) "
           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (request_id) DO NOTHING");
  ins.bind(1, row.request_id)
      .bind(2, row.key_id)
      .bind(3, row.model)
      .bind(4, row.endpoint)
      .bind(5, row.prompt_tokens)
      .bind(6, row.completion_tokens)
      .bind(7, row.classifications)
      .bind(8, row.latency_ms)
      .bind(9, row.status)
      .bind(10, created)
      .bind(11, month)
      .run();
  if (sqlite3_changes(db_) == 0) {  // the request was metered before
    tx.rollback();
    return false;
  }
  Stmt(db_, path_,
       "INSERT INTO monthly_usage (key_id, month, requests, tokens) VALUES (?1, ?2, 1, ?3) "
       "ON CONFLICT (key_id, month) DO UPDATE SET requests = requests + 1, tokens = tokens + excluded.tokens")
      .bind(1, row.key_id)
      .bind(2, month)
      .bind(3, row.prompt_tokens + row.completion_tokens)
      .run();
  tx.commit();
  return true;
}

std::vector<UsageTotal> Store::usage(const std::string& month, const std::string& customer) const {
  MOX_CHECK(is_month(month), "month", "expected YYYY-MM (e.g. 2026-11), got \"" + month + "\"");
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, path_,
         "SELECT c.name, u.model, count(*), sum(u.status >= 400), sum(u.prompt_tokens), "
         "sum(u.completion_tokens), sum(u.classifications) "
         "FROM usage u JOIN api_keys k ON k.id = u.key_id JOIN customers c ON c.id = k.customer_id "
         "WHERE u.month = ?1 AND (?2 = '' OR c.name = ?2) GROUP BY c.name, u.model ORDER BY c.name, u.model");
  s.bind(1, month).bind(2, customer);
  std::vector<UsageTotal> out;
  while (s.step()) {
    UsageTotal t;
    t.customer = s.text(0);
    t.model = s.text(1);
    t.requests = s.i64(2);
    t.errors = s.i64(3);
    t.prompt_tokens = s.i64(4);
    t.completion_tokens = s.i64(5);
    t.classifications = s.i64(6);
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<UsageBucket> Store::buckets(const std::string& since, int64_t bucket_seconds) const {
  MOX_CHECK(bucket_seconds > 0, "buckets", "bucket_seconds must be > 0, got " + std::to_string(bucket_seconds));
  parse_iso(since, "buckets since");
  struct Acc {
    UsageBucket b;
    std::vector<double> latencies;
  };
  std::map<std::tuple<int64_t, std::string, std::string>, Acc> acc;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // created_at strings have one fixed format, so text order is time order.
    Stmt s(db_, path_,
           "SELECT u.created_at, u.model, c.name, u.status, u.prompt_tokens, u.completion_tokens, "
           "u.classifications, u.latency_ms "
           "FROM usage u JOIN api_keys k ON k.id = u.key_id JOIN customers c ON c.id = k.customer_id "
           "WHERE u.created_at >= ?1");
    s.bind(1, since);
    while (s.step()) {
      const int64_t t = parse_iso(s.text(0), path_ + ": usage created_at");
      const int64_t start = t - ((t % bucket_seconds) + bucket_seconds) % bucket_seconds;
      Acc& a = acc[{start, s.text(1), s.text(2)}];
      a.b.requests += 1;
      a.b.errors += s.i64(3) >= 400 ? 1 : 0;
      a.b.prompt_tokens += s.i64(4);
      a.b.completion_tokens += s.i64(5);
      a.b.classifications += s.i64(6);
      a.latencies.push_back(s.f64(7));
    }
  }
  std::vector<UsageBucket> out;
  out.reserve(acc.size());
  for (auto& [key, a] : acc) {
    a.b.start = format_iso(std::get<0>(key));
    a.b.model = std::get<1>(key);
    a.b.customer = std::get<2>(key);
    std::sort(a.latencies.begin(), a.latencies.end());
    a.b.latency_p50_ms = nearest_rank(a.latencies, 50);
    a.b.latency_p95_ms = nearest_rank(a.latencies, 95);
    a.b.latency_p99_ms = nearest_rank(a.latencies, 99);
    out.push_back(std::move(a.b));
  }
  return out;
}

int64_t Store::row_count(int64_t key_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, path_, "SELECT count(*) FROM usage WHERE ?1 = 0 OR key_id = ?1");
  s.bind(1, key_id);
  return s.step() ? s.i64(0) : 0;
}

// ---------------------------------------------------------------- time

std::string utc_now_iso() { return format_iso(int64_t(std::time(nullptr))); }

std::string month_of(const std::string& iso) {
  const std::string m = iso.substr(0, 7);
  MOX_CHECK(iso.size() >= 7 && is_month(m), "time",
            "expected an ISO 8601 time starting YYYY-MM (e.g. 2026-11-23T10:00:00Z), got \"" + iso + "\"");
  return m;
}

}  // namespace mox::serve
