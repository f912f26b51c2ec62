#include "mox/backend/caching_allocator.h"

#include <vector>

#include "mox/tensor/error.h"

namespace mox {

namespace {
size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }
std::string mib(size_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(b) / double(1 << 20));
  return buf;
}
}  // namespace

CachingAllocator::CachingAllocator(std::string name, std::function<void*(size_t)> raw_alloc,
                                   std::function<void(void*)> raw_free)
    : name_(std::move(name)), raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)) {}

CachingAllocator::~CachingAllocator() {
  // Only free segments are returned: a block still in use belongs to a tensor that
  // outlives the allocator (static destruction order), and freeing under it would be wrong.
  std::lock_guard<std::mutex> lk(mu_);
  release_free_segments();
}

CachingAllocator::Block* CachingAllocator::take(Pool& pool, size_t size) {
  Block key{nullptr, size, false};
  auto it = pool.lower_bound(&key);
  if (it == pool.end()) return nullptr;
  Block* b = *it;
  // A large block is not cut for a much smaller request: it would pin the segment.
  if (!b->small && size < kMediumRequest && b->size >= size + kMediumSegment) return nullptr;
  pool.erase(it);
  return b;
}

CachingAllocator::Block* CachingAllocator::new_segment(size_t size, bool small) {
  void* p = raw_alloc_(size);
  if (!p) {
    release_free_segments();
    p = raw_alloc_(size);
    if (!p) return nullptr;
  }
  ++segments_;
  ++device_allocations_;
  stats_.cached_bytes += size;
  return new Block{static_cast<char*>(p), size, small};
}

void* CachingAllocator::allocate(size_t nbytes) {
  const size_t size = round_up(nbytes == 0 ? 1 : nbytes, kRound);
  std::lock_guard<std::mutex> lk(mu_);
  const bool small = size <= kSmallRequest;
  Pool& pool = small ? small_ : large_;
  Block* b = take(pool, size);
  if (b) {
    stats_.cache_hits++;
  } else {
    size_t seg = small ? kSmallSegment
                       : size <= kMediumRequest ? kMediumSegment : round_up(size, kSmallSegment);
    b = new_segment(seg, small);
    if (!b)
      throw Error(name_, "out of memory allocating " + mib(size) + " (" + state() + ")");
  }
  // Split off the remainder when it is worth keeping as a block of its own.
  const size_t rest = b->size - size;
  if ((small && rest >= kRound) || (!small && rest > kSmallRequest)) {
    Block* r = new Block{b->ptr + size, rest, b->small, true, b, b->next};
    if (b->next) b->next->prev = r;
    b->next = r;
    b->size = size;
    pool.insert(r);
  }
  b->free = false;
  live_[b->ptr] = b;
  stats_.cached_bytes -= b->size;
  stats_.in_use_bytes += b->size;
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.in_use_bytes);
  stats_.allocations++;
  return b->ptr;
}

void CachingAllocator::deallocate(void* p, size_t) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return;  // not ours (cannot happen through Storage)
  Block* b = it->second;
  live_.erase(it);
  stats_.in_use_bytes -= b->size;
  stats_.cached_bytes += b->size;
  Pool& pool = b->small ? small_ : large_;
  b->free = true;
  // Merge with free neighbours of the same segment.
  if (b->prev && b->prev->free) {
    Block* a = b->prev;
    pool.erase(a);
    a->size += b->size;
    a->next = b->next;
    if (b->next) b->next->prev = a;
    delete b;
    b = a;
  }
  if (b->next && b->next->free) {
    Block* c = b->next;
    pool.erase(c);
    b->size += c->size;
    b->next = c->next;
    if (c->next) c->next->prev = b;
    delete c;
  }
  pool.insert(b);
}

void CachingAllocator::release_free_segments() {
  for (Pool* pool : {&small_, &large_}) {
    std::vector<Block*> whole;
    for (Block* b : *pool)
      if (!b->prev && !b->next) whole.push_back(b);  // a segment with nothing in use
    for (Block* b : whole) {
      pool->erase(b);
      raw_free_(b->ptr);
      stats_.cached_bytes -= b->size;
      --segments_;
      delete b;
    }
  }
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lk(mu_);
  release_free_segments();
}

Allocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

size_t CachingAllocator::segments() const {
  std::lock_guard<std::mutex> lk(mu_);
  return segments_;
}

size_t CachingAllocator::device_allocations() const {
  std::lock_guard<std::mutex> lk(mu_);
  return device_allocations_;
}

std::string CachingAllocator::state() const {
  return mib(stats_.in_use_bytes) + " in use, " + mib(stats_.cached_bytes) + " cached in " +
         std::to_string(segments_) + " segments";
}

}  // namespace mox
