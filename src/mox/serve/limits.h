#pragma once
// Admission of a request against its key's limits, before any work is done:
//   rpm, tpm        token buckets per key (capacity = the per-minute limit, refilled
//                   continuously at limit / 60 per second); a request takes 1 from the rpm
//                   bucket and its estimated tokens (prompt + n * max_tokens) from the tpm
//                   bucket, and gives back what it did not use when it ends.
//   monthly_tokens  tokens used this month (from the store) + tokens reserved by requests in
//                   flight + this request's estimate must fit in the quota, so that
//                   concurrent requests can never overrun it.
// A refusal is an ApiError 429 naming the limit, with the seconds after which a retry can
// succeed (Retry-After).
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "mox/serve/openai.h"
#include "mox/serve/store.h"

namespace mox::serve {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  TokenBucket() = default;
  TokenBucket(double capacity, double per_second, Clock::time_point now);
  // Takes `amount` when the bucket holds at least that much (an amount above the capacity
  // needs a full bucket); else returns false and sets *wait_s to the seconds until it would.
  bool take(double amount, Clock::time_point now, double* wait_s);
  void give_back(double amount, Clock::time_point now);
  double level(Clock::time_point now);

 private:
  void refill(Clock::time_point now);
  double capacity_ = 0, per_second_ = 0, level_ = 0;
  Clock::time_point last_{};
};

// What a request reserved; settle() returns the unused part.
struct Admission {
  int64_t key_id = 0;
  int64_t estimate = 0;
  std::string month;
  bool active = false;
};

class KeyLimiter {
 public:
  // tokens_used(key_id, month): what the store has counted (Store::tokens_used).
  explicit KeyLimiter(std::function<int64_t(int64_t, const std::string&)> tokens_used);
  // Throws ApiError 429 ("rate_limit_exceeded" for rpm/tpm, "insufficient_quota" for the
  // monthly tokens) naming the limit.
  Admission admit(const KeyInfo& key, int64_t estimate);
  // The request ended having used `used` tokens (already recorded in the store).
  void settle(Admission& a, int64_t used);

 private:
  struct State {
    TokenBucket rpm, tpm;
    int64_t reserved = 0;  // estimates of requests in flight (monthly quota)
    bool init = false;
  };
  std::function<int64_t(int64_t, const std::string&)> tokens_used_;
  std::mutex mu_;
  std::map<int64_t, State> state_;
};

}  // namespace mox::serve
