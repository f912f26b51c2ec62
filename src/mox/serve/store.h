#pragma once
// Customers, API keys and metered usage, kept in one SQLite database (WAL mode, one schema
// advanced by numbered migrations). The inference server (serve/server.h) authenticates every
// request here, admits it against the key's quotas, and writes one usage row per request in
// the same transaction that counts it against the key's monthly total; `mox keys` and
// `mox usage` read and edit the same file.
//
// Keys are "mox-" + 43 characters of base64url (32 random bytes from OpenSSL's RAND_bytes):
// shown once by create_key and stored only as their SHA-256 (hex) with a short prefix
// ("mox-AbCd1234") that lists them. Thread-safe: one connection guarded by a mutex (SQLite
// serialises writers anyway); several processes may open the same file (busy timeout).
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace mox::serve {

// A key's limits; 0 = unlimited.
struct KeyLimits {
  int64_t rpm = 0;             // requests per minute (token bucket, in the server)
  int64_t tpm = 0;             // tokens per minute (token bucket, in the server)
  int64_t monthly_tokens = 0;  // prompt + completion tokens per calendar month (UTC), in the store
};

struct KeyInfo {
  int64_t id = 0;
  std::string customer;
  std::string prefix;          // "mox-AbCd1234": what lists and logs show
  KeyLimits limits;
  std::string created_at;      // ISO 8601 UTC, "2026-11-23T10:00:00Z"
  std::string revoked_at;      // empty while the key is valid
  bool revoked() const { return !revoked_at.empty(); }
};

struct NewKey {
  KeyInfo info;
  std::string secret;          // the whole key: shown once, never stored
};

// One served (or refused after authentication) request.
struct UsageRow {
  std::string request_id;      // unique: a second row with the same id is refused
  int64_t key_id = 0;
  std::string model;
  std::string endpoint;        // "/v1/completions", "/v1/chat/completions", "/v1/classify"
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t classifications = 0; // inputs classified
  double latency_ms = 0;
  int status = 200;            // HTTP status sent
  std::string created_at;      // ISO 8601 UTC; empty = now
};

// Usage summed per (customer, model) over a month: what an invoice bills.
struct UsageTotal {
  std::string customer, model;
  int64_t requests = 0, errors = 0;  // errors: status >= 400
  int64_t prompt_tokens = 0, completion_tokens = 0, classifications = 0;
};

// A time bucket of usage for the dashboard.
struct UsageBucket {
  std::string start;           // ISO 8601 UTC of the bucket's start
  std::string model, customer;
  int64_t requests = 0, errors = 0, prompt_tokens = 0, completion_tokens = 0, classifications = 0;
  double latency_p50_ms = 0, latency_p95_ms = 0, latency_p99_ms = 0;
};

class Store {
 public:
  // Opens (creating when absent) the database at `path` and applies the migrations it lacks.
  // Throws mox::Error naming the file when it cannot be opened, is not a mox database, or
  // holds a newer schema than this build knows.
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  int schema_version() const;
  const std::string& path() const { return path_; }

  // Creates the customer when new. Throws mox::Error for an empty customer name or negative
  // limits.
  NewKey create_key(const std::string& customer, const KeyLimits& limits);
  // Every key (valid and revoked), oldest first; only `customer`'s when not empty.
  std::vector<KeyInfo> list_keys(const std::string& customer = "") const;
  // Revokes by id, by prefix ("mox-AbCd1234") or by the whole secret. Returns the key
  // revoked; throws mox::Error when none matches (or a prefix matches several).
  KeyInfo revoke_key(const std::string& id_prefix_or_secret);
  // The key a request presents (the whole secret), or nullopt when unknown. A revoked key is
  // returned with revoked_at set (the caller answers 401 either way, with its own message).
  std::optional<KeyInfo> find_key(const std::string& secret) const;

  // prompt + completion tokens a key has used in `month` ("2026-11"), from the counter
  // table that record() maintains.
  int64_t tokens_used(int64_t key_id, const std::string& month) const;
  // Writes the row and adds its tokens to the key's monthly counter in one transaction.
  // Returns false (writing nothing) when a row with the same request_id exists.
  bool record(const UsageRow& row);

  // Usage summed per customer and model over `month` ("2026-11"); only `customer`'s when
  // not empty. Sorted by customer, then model.
  std::vector<UsageTotal> usage(const std::string& month, const std::string& customer = "") const;
  // Usage rows from `since` (ISO 8601 UTC) on, bucketed by `bucket_seconds`, per model and
  // customer, with latency percentiles per bucket.
  std::vector<UsageBucket> buckets(const std::string& since, int64_t bucket_seconds) const;
  // Rows in the usage table (all, or one key's).
  int64_t row_count(int64_t key_id = 0) const;

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  mutable std::mutex mu_;
};

// Nearest-rank percentile (p in [0, 100]) of ascending values: the smallest value with at
// least p% of the values at or below it; 0 for none. (Dashboard buckets, mox bench-serve.)
double nearest_rank(const std::vector<double>& sorted, double p);

// "2026-11-23T10:00:00Z" for now (UTC), and its month "2026-11".
std::string utc_now_iso();
std::string month_of(const std::string& iso);

}  // namespace mox::serve
