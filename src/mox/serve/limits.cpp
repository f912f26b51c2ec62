#include "mox/serve/limits.h"

#include <algorithm>
#include <cmath>

namespace mox::serve {

TokenBucket::TokenBucket(double capacity, double per_second, Clock::time_point now)
    : capacity_(capacity), per_second_(per_second), level_(capacity), last_(now) {}

void TokenBucket::refill(Clock::time_point now) {
  const double dt = std::chrono::duration<double>(now - last_).count();
  if (dt > 0) {
    level_ = std::min(capacity_, level_ + dt * per_second_);
    last_ = now;
  }
}

bool TokenBucket::take(double amount, Clock::time_point now, double* wait_s) {
  refill(now);
  const double need = std::min(amount, capacity_);  // a larger request needs a full bucket
  if (level_ >= need) {
    level_ -= amount;  // may go below zero: the excess is paid back by refilling
    return true;
  }
  if (wait_s) *wait_s = per_second_ > 0 ? (need - level_) / per_second_ : 60.0;
  return false;
}

void TokenBucket::give_back(double amount, Clock::time_point now) {
  refill(now);
  level_ = std::min(capacity_, level_ + amount);
}

double TokenBucket::level(Clock::time_point now) {
  refill(now);
  return level_;
}

KeyLimiter::KeyLimiter(std::function<int64_t(int64_t, const std::string&)> tokens_used)
    : tokens_used_(std::move(tokens_used)) {}

namespace {
ApiError too_many(const std::string& message, const std::string& code, double retry_after_s) {
  ApiError e(429, code == "insufficient_quota" ? "insufficient_quota" : "rate_limit_error", message, "", code);
  e.retry_after_s = std::max(1.0, std::ceil(retry_after_s));
  return e;
}
}  // namespace

Admission KeyLimiter::admit(const KeyInfo& key, int64_t estimate) {
  const auto now = TokenBucket::Clock::now();
  const KeyLimits& lim = key.limits;
  Admission a;
  a.key_id = key.id;
  a.estimate = estimate;
  a.month = month_of(utc_now_iso());
  std::lock_guard<std::mutex> lock(mu_);
  State& s = state_[key.id];
  if (!s.init) {
    if (lim.rpm > 0) s.rpm = TokenBucket(double(lim.rpm), double(lim.rpm) / 60.0, now);
    if (lim.tpm > 0) s.tpm = TokenBucket(double(lim.tpm), double(lim.tpm) / 60.0, now);
    s.init = true;
  }
  if (lim.monthly_tokens > 0) {
    const int64_t used = tokens_used_(key.id, a.month);
    if (used + s.reserved + estimate > lim.monthly_tokens) {
      const int64_t left = std::max<int64_t>(0, lim.monthly_tokens - used - s.reserved);
      throw too_many("You exceeded your monthly_tokens quota of " + std::to_string(lim.monthly_tokens) + " tokens (" +
                         std::to_string(used) + " used in " + a.month + ", " + std::to_string(s.reserved) +
                         " reserved by requests in flight); this request may need " + std::to_string(estimate) +
                         " tokens and " + std::to_string(left) + " are left. Lower max_tokens or wait for next month.",
                     "insufficient_quota", 3600);
    }
  }
  double wait = 0;
  if (lim.rpm > 0 && !s.rpm.take(1, now, &wait))
    throw too_many("Rate limit reached: rpm limit of " + std::to_string(lim.rpm) +
                       " requests per minute for this key. Retry after " + std::to_string(int(std::ceil(wait))) + " s.",
                   "rate_limit_exceeded", wait);
  if (lim.tpm > 0 && !s.tpm.take(double(estimate), now, &wait)) {
    if (lim.rpm > 0) s.rpm.give_back(1, now);
    throw too_many("Rate limit reached: tpm limit of " + std::to_string(lim.tpm) +
                       " tokens per minute for this key (this request may need " + std::to_string(estimate) +
                       "). Retry after " + std::to_string(int(std::ceil(wait))) + " s.",
                   "rate_limit_exceeded", wait);
  }
  s.reserved += estimate;
  a.active = true;
  return a;
}

void KeyLimiter::settle(Admission& a, int64_t used) {
  if (!a.active) return;
  a.active = false;
  const auto now = TokenBucket::Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  State& s = state_[a.key_id];
  s.reserved -= a.estimate;
  if (used < a.estimate) s.tpm.give_back(double(a.estimate - used), now);
}

}  // namespace mox::serve
