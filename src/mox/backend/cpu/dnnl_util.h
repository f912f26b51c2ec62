#pragma once
// Pieces shared by the oneDNN users of the CPU backend (dnnl_gemm.cpp: bf16 GEMM;
// cpu_qgemm.cpp: int8 matmul and convolution): a hash for the fixed-size integer keys of
// their primitive caches, and per-thread scratch memory for user-managed scratchpads (so
// primitives may run on several threads at once without sharing a buffer).
#include <array>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mox/tensor/error.h"

namespace mox::cpu {

// FNV-1a over the key's integers.
struct ArrayKeyHash {
  template <size_t N>
  size_t operator()(const std::array<int64_t, N>& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : k) h = (h ^ uint64_t(v)) * 1099511628211ull;
    return size_t(h);
  }
};

// 64-byte aligned memory that grows to the largest request (in whole pages); `what` names
// the caller in the out-of-memory error.
struct DnnlScratch {
  void* p = nullptr;
  size_t n = 0;
  DnnlScratch() = default;
  DnnlScratch(const DnnlScratch&) = delete;
  DnnlScratch& operator=(const DnnlScratch&) = delete;
  ~DnnlScratch() { std::free(p); }
  void* get(size_t bytes, const char* what) {
    if (bytes > n) {
      std::free(p);
      n = (bytes + 4095) / 4096 * 4096;
      p = std::aligned_alloc(64, n);
      if (!p) {
        n = 0;
        throw Error(what, "out of memory for oneDNN scratchpad (" + std::to_string(bytes) + " bytes)");
      }
    }
    return p;
  }
};

}  // namespace mox::cpu
