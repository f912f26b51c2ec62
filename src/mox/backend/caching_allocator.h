#pragma once
// A caching allocator for device memory (PyTorch's design, reduced to one stream): memory
// is taken from the device in segments and cut into blocks; a freed block returns to a
// pool ordered by size, merges with free neighbours of its segment, and the next request
// takes the smallest free block that fits (splitting off the rest). A training loop thus
// reaches a steady state in which no request reaches the device's allocator (cudaMalloc
// synchronises the device and costs milliseconds).
//
// Requests of up to 1 MiB are carved from 2 MiB segments ("small" pool), requests up to
// 10 MiB from 20 MiB segments, larger ones get a segment of their size rounded up to 2 MiB
// ("large" pool). Blocks are 512-byte multiples. Reuse without synchronisation is correct
// because every kernel of the device runs on one stream, in order: a block freed after a
// kernel was launched on it is only handed to kernels launched later.
// When the device refuses a segment, the cached free segments are returned and the request
// retried once; then a mox::Error names the request and the pool's state.
#include <cstddef>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "mox/tensor/storage.h"

namespace mox {

class CachingAllocator : public Allocator {
 public:
  // raw_alloc returns nullptr when the device is out of memory; raw_free releases a segment.
  CachingAllocator(std::string name, std::function<void*(size_t)> raw_alloc,
                   std::function<void(void*)> raw_free);
  ~CachingAllocator() override;

  void* allocate(size_t nbytes) override;
  void deallocate(void* p, size_t nbytes) override;
  void empty_cache() override;  // returns every segment with no block in use
  Stats stats() const override;
  size_t segments() const;       // segments currently held
  size_t device_allocations() const;  // raw_alloc calls that succeeded, ever

  static constexpr size_t kRound = 512;
  static constexpr size_t kSmallRequest = size_t(1) << 20;
  static constexpr size_t kSmallSegment = size_t(2) << 20;
  static constexpr size_t kMediumRequest = size_t(10) << 20;
  static constexpr size_t kMediumSegment = size_t(20) << 20;

 private:
  struct Block {
    char* ptr;
    size_t size;
    bool small;  // which pool
    bool free = false;
    Block* prev = nullptr;  // neighbours inside one segment
    Block* next = nullptr;
  };
  struct BySize {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
    }
  };
  using Pool = std::set<Block*, BySize>;

  Block* take(Pool& pool, size_t size);
  Block* new_segment(size_t size, bool small);
  void release_free_segments();
  std::string state() const;

  std::string name_;
  std::function<void*(size_t)> raw_alloc_;
  std::function<void(void*)> raw_free_;
  mutable std::mutex mu_;
  Pool small_, large_;
  std::unordered_map<void*, Block*> live_;  // blocks handed out, by address
  Stats stats_;
  size_t segments_ = 0, device_allocations_ = 0;
};

}  // namespace mox
