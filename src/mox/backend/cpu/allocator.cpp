// The CPU caching allocator: 64-byte aligned blocks, freed blocks kept in per-size lists
// and handed out again, so steady-state training allocates nothing from the system.
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "mox/backend/cpu/cpu_backend.h"

namespace mox {

namespace {

class CpuCachingAllocator final : public Allocator {
 public:
  // Sizes round up to a 64-byte multiple below 4 KiB, else to 1/8 steps of the next power of
  // two, so that slightly different sizes share blocks while waste stays under 12.5%.
  static size_t bucket(size_t n) {
    if (n <= 4096) return (n + 63) & ~size_t(63);
    size_t p = size_t(1) << (63 - __builtin_clzll(n - 1) + 1);
    size_t step = p / 8;
    return (n + step - 1) / step * step;
  }

  void* allocate(size_t nbytes) override {
    size_t b = bucket(nbytes);
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = free_.find(b);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.cached_bytes -= b;
        stats_.in_use_bytes += b;
        stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.in_use_bytes);
        stats_.cache_hits++;
        stats_.allocations++;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, b);
    if (!p) {
      empty_cache();
      p = std::aligned_alloc(64, b);
      if (!p) throw Error("allocator", "out of memory allocating " + std::to_string(b) + " bytes");
    }
    std::lock_guard<std::mutex> lk(mu_);
    stats_.in_use_bytes += b;
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.in_use_bytes);
    stats_.allocations++;
    return p;
  }

  void deallocate(void* p, size_t nbytes) override {
    size_t b = bucket(nbytes);
    std::lock_guard<std::mutex> lk(mu_);
    stats_.in_use_bytes -= b;
    // Cap the cache so that a peak (e.g. evaluation with a large batch) is not held forever.
    if (stats_.cached_bytes + b > kMaxCached) {
      std::free(p);
      return;
    }
    free_[b].push_back(p);
    stats_.cached_bytes += b;
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [b, v] : free_)
      for (void* p : v) std::free(p);
    free_.clear();
    stats_.cached_bytes = 0;
  }

  Stats stats() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return stats_;
  }

 private:
  static constexpr size_t kMaxCached = size_t(4) << 30;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  Stats stats_;
};

}  // namespace

Allocator& CpuBackend::allocator() {
  static CpuCachingAllocator* a = new CpuCachingAllocator();  // never destroyed: tensors may outlive statics
  return *a;
}

}  // namespace mox
