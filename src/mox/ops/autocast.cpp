#include "mox/ops/autocast.h"

#include <unordered_map>

#include "mox/autograd/node.h"
#include "mox/tensor/error.h"

namespace mox {

namespace {
struct AutocastState {
  bool enabled = false;
  DType dtype = DType::BF16;
  int depth = 0;  // guards alive (the cache lives as long as the outermost one)
  // Rounded copies of leaves, keyed by the leaf; the leaf handle is kept so that the key
  // cannot be reused by another tensor while the entry lives.
  // One map per grad mode: a copy made without grad has no graph back to its leaf.
  std::unordered_map<const TensorImpl*, std::pair<Tensor, Tensor>> cache[2];
};
thread_local AutocastState g_state;
void clear_cache() {
  g_state.cache[0].clear();
  g_state.cache[1].clear();
}
}  // namespace

AutocastGuard::AutocastGuard(DType dtype, bool enabled)
    : prev_dtype_(g_state.dtype), prev_enabled_(g_state.enabled) {
  MOX_CHECK(dtype == DType::BF16 || dtype == DType::F16, "autocast",
            std::string("dtype must be bf16 or f16, got ") + dtype_name(dtype));
  if (enabled && g_state.enabled && g_state.dtype != dtype) clear_cache();
  g_state.enabled = enabled;
  g_state.dtype = dtype;
  g_state.depth++;
}

AutocastGuard::~AutocastGuard() {
  g_state.enabled = prev_enabled_;
  g_state.dtype = prev_dtype_;
  if (--g_state.depth == 0) clear_cache();
}

bool autocast_enabled() { return g_state.enabled; }
DType autocast_dtype() { return g_state.dtype; }

namespace detail {

Tensor autocast_half(const Tensor& t) {
  if (!g_state.enabled || !t.defined() || t.dtype() != DType::F32) return t;
  // A parameter (a leaf that requires grad) is rounded once per guard; activations every
  // time (they change).
  const bool cacheable = t.requires_grad() && !t.grad_fn();
  auto& cache = g_state.cache[grad_enabled() ? 1 : 0];
  if (cacheable) {
    auto it = cache.find(t.impl());
    if (it != cache.end()) return it->second.second;
  }
  Tensor h = t.to(g_state.dtype);
  if (cacheable) cache.emplace(t.impl(), std::make_pair(t, h));
  return h;
}

Tensor autocast_f32(const Tensor& t) {
  if (!g_state.enabled || !t.defined()) return t;
  if (t.dtype() == DType::BF16 || t.dtype() == DType::F16) return t.to(DType::F32);
  return t;
}

}  // namespace detail
}  // namespace mox
