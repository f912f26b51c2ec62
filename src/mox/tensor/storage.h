#pragma once
// A block of memory on one device, shared by every tensor that views it.
#include <cstddef>
#include <memory>

#include "mox/tensor/device.h"

namespace mox {

// Hands out aligned blocks; each backend owns one (the CPU's caches freed blocks by size).
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* p, size_t nbytes) = 0;
  virtual void empty_cache() {}
  struct Stats {
    size_t in_use_bytes = 0, cached_bytes = 0, peak_bytes = 0;
    size_t allocations = 0, cache_hits = 0;
  };
  virtual Stats stats() const { return {}; }
};

class Storage {
 public:
  Storage(size_t nbytes, Device device, Allocator* alloc);
  // Wraps memory owned elsewhere (e.g. a memory-mapped file); `keep` keeps it alive.
  Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* alloc_ = nullptr;
  std::shared_ptr<void> keep_;
};

}  // namespace mox
