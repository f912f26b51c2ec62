// The device caching allocator, driven by a host "device" whose allocations are counted
// and capped, so that its reuse, splitting, merging and out-of-memory behaviour are
// checked without a GPU.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <vector>

#include "mox/backend/caching_allocator.h"
#include "mox/tensor/error.h"

using namespace mox;

namespace {

struct FakeDevice {
  size_t budget, used = 0;
  int allocs = 0, frees = 0;
  std::map<void*, size_t> live;
  explicit FakeDevice(size_t b) : budget(b) {}
  CachingAllocator make() {
    return CachingAllocator(
        "fake allocator",
        [this](size_t n) -> void* {
          if (used + n > budget) return nullptr;
          void* p = std::aligned_alloc(4096, n);
          used += n;
          live[p] = n;
          allocs++;
          return p;
        },
        [this](void* p) {
          used -= live.at(p);
          live.erase(p);
          frees++;
          std::free(p);
        });
  }
};

constexpr size_t MiB = size_t(1) << 20;

}  // namespace

TEST(CachingAllocator, TrainingLoopReachesSteadyStateWithoutDeviceAllocations) {
  FakeDevice dev(1024 * MiB);
  CachingAllocator a = dev.make();
  const std::vector<size_t> sizes{100, 3000, 70000, 800 * 1024, 3 * MiB, 12 * MiB, 40, 5 * MiB};
  for (int step = 0; step < 5; ++step) {
    std::vector<std::pair<void*, size_t>> held;
    for (size_t s : sizes) held.emplace_back(a.allocate(s), s);
    for (auto& [p, s] : held) a.deallocate(p, s);
    if (step == 0) EXPECT_GT(dev.allocs, 0);
  }
  const int after_first = dev.allocs;
  for (int step = 0; step < 20; ++step) {
    std::vector<std::pair<void*, size_t>> held;
    for (size_t s : sizes) held.emplace_back(a.allocate(s), s);
    for (auto it = held.rbegin(); it != held.rend(); ++it) a.deallocate(it->first, it->second);
  }
  EXPECT_EQ(dev.allocs, after_first) << "steady state must not reach the device";
  Allocator::Stats st = a.stats();
  EXPECT_EQ(st.in_use_bytes, 0u);
  EXPECT_GT(st.cache_hits, 0u);
  EXPECT_GE(st.peak_bytes, 12 * MiB);
}

TEST(CachingAllocator, SmallBlocksShareOneSegmentAndMergeBack) {
  FakeDevice dev(64 * MiB);
  CachingAllocator a = dev.make();
  void* x = a.allocate(1000);
  void* y = a.allocate(1000);
  void* z = a.allocate(1000);
  EXPECT_EQ(dev.allocs, 1);
  EXPECT_EQ(a.segments(), 1u);
  // 512-byte granularity: 1000 bytes take 1024
  std::set<char*> ps{static_cast<char*>(x), static_cast<char*>(y), static_cast<char*>(z)};
  EXPECT_EQ(ps.size(), 3u);
  for (char* p : ps) EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % CachingAllocator::kRound, 0u);
  EXPECT_EQ(std::abs(static_cast<char*>(y) - static_cast<char*>(x)), 1024);
  a.deallocate(y, 1000);
  // The freed middle block is reused for a request that fits.
  void* w = a.allocate(600);
  EXPECT_EQ(w, y);
  a.deallocate(w, 600);
  a.deallocate(x, 1000);
  a.deallocate(z, 1000);
  // Everything merged back into one free segment, which empty_cache returns.
  EXPECT_EQ(a.stats().in_use_bytes, 0u);
  a.empty_cache();
  EXPECT_EQ(a.segments(), 0u);
  EXPECT_EQ(dev.frees, 1);
  EXPECT_EQ(dev.used, 0u);
}

TEST(CachingAllocator, SegmentStaysWhileAnyBlockIsInUse) {
  FakeDevice dev(64 * MiB);
  CachingAllocator a = dev.make();
  void* x = a.allocate(4096);
  void* y = a.allocate(4096);
  a.deallocate(x, 4096);
  a.empty_cache();
  EXPECT_EQ(dev.frees, 0) << "a segment with a live block must not be released";
  a.deallocate(y, 4096);
  a.empty_cache();
  EXPECT_EQ(dev.frees, 1);
}

TEST(CachingAllocator, LargeRequestsGetSegmentsRoundedToTwoMiB) {
  FakeDevice dev(256 * MiB);
  CachingAllocator a = dev.make();
  void* p = a.allocate(33 * MiB + 5);
  EXPECT_EQ(dev.live.begin()->second, 34 * MiB);
  a.deallocate(p, 33 * MiB + 5);
  // A smaller large request reuses (splits) that block rather than asking the device.
  void* q = a.allocate(20 * MiB);
  EXPECT_EQ(dev.allocs, 1);
  EXPECT_EQ(q, p);
  a.deallocate(q, 20 * MiB);
}

TEST(CachingAllocator, OutOfMemoryReleasesTheCacheThenNamesTheRequest) {
  FakeDevice dev(40 * MiB);
  CachingAllocator a = dev.make();
  void* p = a.allocate(30 * MiB);  // a 30 MiB segment
  a.deallocate(p, 30 * MiB);       // cached, not returned
  // 36 MiB does not fit next to the cached 30: the cache is released and the retry works.
  void* q = a.allocate(36 * MiB);
  EXPECT_NE(q, nullptr);
  EXPECT_EQ(dev.frees, 1);
  try {
    a.allocate(10 * MiB);
    FAIL() << "expected out of memory";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("fake allocator"), std::string::npos) << m;
    EXPECT_NE(m.find("out of memory allocating 10.0 MiB"), std::string::npos) << m;
    EXPECT_NE(m.find("36.0 MiB in use"), std::string::npos) << m;
  }
  a.deallocate(q, 36 * MiB);
}
