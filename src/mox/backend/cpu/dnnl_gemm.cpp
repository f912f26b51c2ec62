// bf16 GEMM through oneDNN's matmul primitive (2.x API: matmul::desc + primitive_desc).
// Primitives are costly to create (kernel generation), so they are kept in a small LRU
// keyed by everything that shapes them: dims, strides, result dtype, alpha/beta and the
// thread count (oneDNN fixes its work split when the primitive is created).
#include "mox/backend/cpu/dnnl_gemm.h"

#ifdef MOX_HAVE_DNNL

#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>

#include "mox/backend/backend.h"
#include "mox/backend/cpu/dnnl_util.h"
#include "mox/tensor/error.h"

namespace mox::cpu {

namespace {

using Key = std::array<int64_t, 18>;


struct Entry {
  bool usable = false;  // false: oneDNN has only its reference kernel here
  dnnl::matmul prim;
  size_t scratch_bytes = 0;
  std::string impl;
};

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

class PrimitiveCache {
 public:
  static constexpr size_t kCapacity = 64;

  std::shared_ptr<const Entry> find(const Key& k) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(k);
    if (it == map_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
    return it->second->second;
  }

  std::shared_ptr<const Entry> insert(const Key& k, std::shared_ptr<const Entry> e) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(k);
    if (it != map_.end()) return it->second->second;  // another thread made it meanwhile
    lru_.emplace_front(k, std::move(e));
    map_[k] = lru_.begin();
    if (lru_.size() > kCapacity) {
      map_.erase(lru_.back().first);
      lru_.pop_back();
    }
    return lru_.front().second;
  }

 private:
  std::mutex mu_;
  std::list<std::pair<Key, std::shared_ptr<const Entry>>> lru_;
  std::unordered_map<Key, std::list<std::pair<Key, std::shared_ptr<const Entry>>>::iterator, ArrayKeyHash> map_;
};

PrimitiveCache& cache() {
  static PrimitiveCache c;
  return c;
}

std::atomic<bool> g_enabled{[] {
  const char* s = std::getenv("MOX_DNNL");
  return !(s && std::string(s) == "0");
}()};
std::atomic<int64_t> g_calls{0};
std::mutex g_impl_mu;
std::string g_last_impl;


// A matrix [r, c] with strides (rs, cs), one of them 1. Size-1 dims get the stride a dense
// layout would have, so that oneDNN recognises plain row-/column-major matrices.
void normalise(int64_t r, int64_t c, int64_t& rs, int64_t& cs) {
  if (r == 1 && c == 1) {
    rs = cs = 1;
  } else if (r == 1) {
    rs = cs == 1 ? c : 1;
  } else if (c == 1) {
    cs = rs == 1 ? r : 1;
  }
}

dnnl::memory::desc md(int nd, int64_t batch, int64_t r, int64_t c, int64_t bs, int64_t rs,
                      int64_t cs, dnnl::memory::data_type dt) {
  using dims = dnnl::memory::dims;
  if (nd == 2) return dnnl::memory::desc(dims{r, c}, dt, dims{rs, cs});
  return dnnl::memory::desc(dims{batch, r, c}, dt, dims{bs, rs, cs});
}

std::shared_ptr<const Entry> make_entry(int nd, int64_t batch, int64_t ba, int64_t bb,
                                        int64_t M, int64_t N, int64_t K, int64_t abs,
                                        int64_t ars, int64_t acs, int64_t bbs, int64_t brs,
                                        int64_t bcs, DType out_dtype, float alpha, float beta) {
  using dt = dnnl::memory::data_type;
  auto e = std::make_shared<Entry>();
  try {
    auto a_md = md(nd, ba, M, K, abs, ars, acs, dt::bf16);
    auto b_md = md(nd, bb, K, N, bbs, brs, bcs, dt::bf16);
    auto c_md = md(nd, batch, M, N, M * N, N, 1, out_dtype == DType::BF16 ? dt::bf16 : dt::f32);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta != 0.0f) {
      dnnl::post_ops po;
      po.append_sum(beta);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine());
    e->impl = pd.impl_info_str();
    e->usable = e->impl.rfind("ref", 0) != 0;
    if (e->usable) {
      e->scratch_bytes = pd.scratchpad_desc().get_size();
      e->prim = dnnl::matmul(pd);
    }
  } catch (const dnnl::error& err) {
    // oneDNN has no kernel for this shape on this CPU (e.g. no AVX-512): the caller computes in f32.
    e->usable = false;
    e->impl = std::string("unavailable: ") + err.what();
  }
  return e;
}

}  // namespace

bool dnnl_gemm_bf16(int64_t batch, int64_t M, int64_t N, int64_t K, const DnnlMat& a,
                    const DnnlMat& b, void* out, DType out_dtype, float alpha, float beta) {
  MOX_CHECK(out_dtype == DType::BF16 || out_dtype == DType::F32, "gemm",
            std::string("bf16 product into unsupported dtype ") + dtype_name(out_dtype));
  if (!g_enabled.load(std::memory_order_relaxed)) return false;
  if (batch <= 0 || M <= 0 || N <= 0 || K <= 0) return false;
  int64_t ars = a.rs, acs = a.cs, brs = b.rs, bcs = b.cs;
  normalise(M, K, ars, acs);
  normalise(K, N, brs, bcs);
  // A broadcast operand (batch stride 0) is a batch of one, which oneDNN broadcasts; when
  // both are broadcast, the single product is run once per output matrix.
  int64_t ba = (a.bs == 0 || batch == 1) ? 1 : batch;
  int64_t bb = (b.bs == 0 || batch == 1) ? 1 : batch;
  const bool loop = batch > 1 && ba == 1 && bb == 1;
  const int nd = (batch == 1 || loop) ? 2 : 3;
  const int64_t prim_batch = loop ? 1 : batch;
  const int64_t abs = ba == 1 ? std::max(ars * M, acs * K) : a.bs;
  const int64_t bbs = bb == 1 ? std::max(brs * K, bcs * N) : b.bs;

  // oneDNN's OpenMP runtime sizes its parallel regions with omp_get_max_threads() of the
  // calling thread: make that mox's setting on threads that never called set_num_threads.
  const int nt = get_num_threads();
  if (omp_get_max_threads() != nt) omp_set_num_threads(nt);

  Key key{nd,  prim_batch, ba,  bb,  M,   N,   K,  abs, ars, acs, bbs, brs, bcs,
          int64_t(out_dtype), int64_t(std::bit_cast<uint32_t>(alpha)),
          int64_t(std::bit_cast<uint32_t>(beta)), nt, 0};
  std::shared_ptr<const Entry> e = cache().find(key);
  if (!e)
    e = cache().insert(key, make_entry(nd, prim_batch, ba, bb, M, N, K, abs, ars, acs, bbs,
                                       brs, bcs, out_dtype, alpha, beta));
  if (!e->usable) return false;

  thread_local DnnlScratch scratch;
  thread_local std::unique_ptr<dnnl::stream> stream;
  try {
    if (!stream) stream = std::make_unique<dnnl::stream>(engine());
    using dt = dnnl::memory::data_type;
    auto a_md = md(nd, ba, M, K, abs, ars, acs, dt::bf16);
    auto b_md = md(nd, bb, K, N, bbs, brs, bcs, dt::bf16);
    auto c_md = md(nd, prim_batch, M, N, M * N, N, 1, out_dtype == DType::BF16 ? dt::bf16 : dt::f32);
    const size_t out_elem = out_dtype == DType::BF16 ? 2 : 4;
    dnnl::memory am(a_md, engine(), const_cast<void*>(a.data));
    dnnl::memory bm(b_md, engine(), const_cast<void*>(b.data));
    dnnl::memory cm(c_md, engine(), out);
    dnnl::memory sm(dnnl::memory::desc(dnnl::memory::dims{int64_t(e->scratch_bytes)},
                                       dt::u8, dnnl::memory::dims{1}),
                    engine(), e->scratch_bytes ? scratch.get(e->scratch_bytes, "gemm") : nullptr);
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, am},
                                               {DNNL_ARG_WEIGHTS, bm},
                                               {DNNL_ARG_DST, cm},
                                               {DNNL_ARG_SCRATCHPAD, sm}};
    const int64_t reps = loop ? batch : 1;
    for (int64_t i = 0; i < reps; i++) {
      if (i > 0) cm.set_data_handle(static_cast<char*>(out) + size_t(i * M * N) * out_elem);
      e->prim.execute(*stream, args);
    }
    stream->wait();
  } catch (const dnnl::error& err) {
    throw Error("gemm", std::string("oneDNN bf16 matmul failed: ") + err.what());
  }
  g_calls.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(g_impl_mu);
    if (g_last_impl != e->impl) g_last_impl = e->impl;
  }
  return true;
}

bool dnnl_sgemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                    float* C, int64_t ldc) {
  static const bool has_jit = [] {
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa != dnnl_cpu_isa_all && (isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2;
  }();
  // Small products (a decoding step's rows) stay with OpenBLAS, which runs them on the
  // calling thread: oneDNN would start a parallel region for each, and on a busy machine
  // waking the threads costs more than the product (measured: 3-30x slower decoding).
  if (!g_enabled || !has_jit || M * N * K < (int64_t(1) << 18)) return false;
  const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B,
                                      ldb, beta, C, ldc);
  if (st != dnnl_success) return false;
  g_calls.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void dnnl_gemm_enable(bool on) { g_enabled = on; }
bool dnnl_gemm_enabled() { return g_enabled; }
int64_t dnnl_gemm_calls() { return g_calls.load(); }

std::string dnnl_gemm_last_impl() {
  std::lock_guard<std::mutex> lock(g_impl_mu);
  return g_last_impl;
}

}  // namespace mox::cpu

#else  // built without oneDNN: every bf16 product takes cpu_gemm.cpp's f32 path

namespace mox::cpu {

bool dnnl_gemm_bf16(int64_t, int64_t, int64_t, int64_t, const DnnlMat&, const DnnlMat&, void*,
                    DType, float, float) {
  return false;
}
bool dnnl_sgemm_f32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                    const float*, int64_t, float, float*, int64_t) {
  return false;
}
void dnnl_gemm_enable(bool) {}
bool dnnl_gemm_enabled() { return false; }
int64_t dnnl_gemm_calls() { return 0; }
std::string dnnl_gemm_last_impl() { return ""; }

}  // namespace mox::cpu

#endif
