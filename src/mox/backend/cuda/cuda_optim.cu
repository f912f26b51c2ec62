// Fused optimiser updates over contiguous f32/f64 parameters, in place: the formulas of
// cpu_optim.cpp operation by operation (scalars computed in double on the host and cast to
// the parameter type, like PyTorch's Scalar arguments; element math in the parameter's
// type). Gradients may be f32/f64 like the parameter, or bf16/f16 with f32 parameters
// (mixed-precision training); they are read and widened per element.
//
// adam_update_multi updates every parameter in one launch: a table of {param, grad, m, v,
// numel, first chunk} records is staged in pinned host memory, copied to the device
// workspace on the stream, and each block of the grid takes one chunk of kChunk elements of
// the concatenated index space (the record found by binary search over the chunk starts).
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/cuda/cuda_common.cuh"

namespace mox {

namespace {

__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }

// How a gradient is stored: like the parameter, bf16 or f16.
enum GradKind : int { kGradSame = 0, kGradBF16 = 1, kGradF16 = 2 };

template <typename P>
__device__ __forceinline__ P load_grad(const void* g, int kind, int64_t i) {
  if (kind == kGradBF16) return P(__bfloat162float(static_cast<const __nv_bfloat16*>(g)[i]));
  if (kind == kGradF16) return P(__half2float(static_cast<const __half*>(g)[i]));
  return static_cast<const P*>(g)[i];
}

// Checks param (f32/f64, contiguous) and returns the kind of grad.
int grad_kind(const char* op, const Tensor& param, const Tensor& grad) {
  if (!grad.defined()) throw Error(op, "missing gradient for parameter " + param.desc());
  if (!grad.is_contiguous() || grad.numel() != param.numel())
    throw Error(op, "grad must be contiguous and match parameter " + param.desc() + ", got " +
                        grad.desc());
  if (grad.dtype() == param.dtype()) return kGradSame;
  if (param.dtype() == DType::F32 && grad.dtype() == DType::BF16) return kGradBF16;
  if (param.dtype() == DType::F32 && grad.dtype() == DType::F16) return kGradF16;
  throw Error(op, "grad " + grad.desc() + " must have the parameter's dtype (or bf16/f16 for f32 "
                  "parameters), parameter " + param.desc());
}

void check_param(const char* op, const Tensor& param) {
  if (!param.defined()) throw Error(op, "undefined parameter");
  if (param.dtype() != DType::F32 && param.dtype() != DType::F64)
    throw Error(op, "parameters must be f32 or f64, got " + param.desc());
  if (!param.is_contiguous()) throw Error(op, "parameter must be contiguous, got " + param.desc());
}

// State tensors: defined, contiguous, like the parameter.
void check_state(const char* op, const Tensor& param, std::initializer_list<const Tensor*> ts,
                 const char* needs) {
  for (const Tensor* t : ts) {
    if (!t->defined())
      throw Error(op, std::string("missing state tensor (") + needs + ") for parameter " +
                          param.desc());
    if (t->dtype() != param.dtype() || t->numel() != param.numel() || !t->is_contiguous())
      throw Error(op, "grad and state must be contiguous and match parameter " + param.desc() +
                          ", got " + t->desc());
  }
}

template <typename T> T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

// ---------------------------------------------------------------------------------------
// Adam / AdamW

template <typename P> struct AdamK {
  P b1, b2, c1, c2, l2, decay, step, bc, eps;
};

template <typename P> AdamK<P> adam_scalars(const AdamParams& p) {
  const double bc1 = 1.0 - std::pow(p.beta1, double(p.step));
  const double bc2 = 1.0 - std::pow(p.beta2, double(p.step));
  AdamK<P> s;
  s.b1 = P(p.beta1), s.b2 = P(p.beta2);
  s.c1 = P(1.0 - p.beta1), s.c2 = P(1.0 - p.beta2);
  s.l2 = P(p.decoupled ? 0.0 : p.weight_decay);
  s.decay = P(p.decoupled ? 1.0 - p.lr * p.weight_decay : 1.0);
  s.step = P(p.lr / bc1);
  s.bc = P(std::sqrt(bc2));
  s.eps = P(p.eps);
  return s;
}

template <typename P>
__device__ __forceinline__ void adam_elem(P* __restrict__ w, P graw, P* __restrict__ m,
                                          P* __restrict__ v, P* __restrict__ vmax, int64_t i,
                                          const AdamK<P>& s) {
  const P wi0 = w[i];
  const P gi = graw + s.l2 * wi0;
  const P wi = wi0 * s.decay;
  const P mi = s.b1 * m[i] + s.c1 * gi;
  const P vi = s.b2 * v[i] + s.c2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  P vd = vi;
  if (vmax) {
    vd = vmax[i] > vi ? vmax[i] : vi;
    vmax[i] = vd;
  }
  w[i] = wi - s.step * mi / (d_sqrt(vd) / s.bc + s.eps);
}

template <typename P>
__global__ void adam_kernel(P* __restrict__ w, const void* __restrict__ g, int gkind,
                            P* __restrict__ m, P* __restrict__ v, P* __restrict__ vmax, int64_t n,
                            AdamK<P> s) {
  MOX_GRID_STRIDE(i, n) { adam_elem(w, load_grad<P>(g, gkind, i), m, v, vmax, i, s); }
}

// One parameter of adam_update_multi; chunk0: index of its first chunk in the grid; k: its
// own step scalars (parameter groups differ in lr and weight decay, parameters in step),
// computed in double on the host as for adam_update and narrowed in the kernel.
struct AdamRec {
  void* w;
  const void* g;
  void* m;
  void* v;
  int64_t n;
  int64_t chunk0;
  int gkind;
  AdamK<double> k;
};
constexpr int64_t kChunk = 8192;  // elements per block (32 per thread)

template <typename P>
__global__ void adam_multi_kernel(const AdamRec* __restrict__ recs, int nrec, int64_t chunks) {
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    // Last record whose first chunk is <= c (records with no elements have no chunks and are
    // skipped by this search: their chunk0 equals the next record's).
    int lo = 0, hi = nrec - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (recs[mid].chunk0 <= c)
        lo = mid;
      else
        hi = mid - 1;
    }
    const AdamRec r = recs[lo];
    AdamK<P> s;
    s.b1 = P(r.k.b1), s.b2 = P(r.k.b2), s.c1 = P(r.k.c1), s.c2 = P(r.k.c2), s.l2 = P(r.k.l2);
    s.decay = P(r.k.decay), s.step = P(r.k.step), s.bc = P(r.k.bc), s.eps = P(r.k.eps);
    const int64_t begin = (c - r.chunk0) * kChunk;
    const int64_t end = min(r.n, begin + kChunk);
    P* w = static_cast<P*>(r.w);
    P* m = static_cast<P*>(r.m);
    P* v = static_cast<P*>(r.v);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
      adam_elem<P>(w, load_grad<P>(r.g, r.gkind, i), m, v, nullptr, i, s);
  }
}

// Pinned host staging for the record table: two buffers used in turn, each reused only once
// the copy that last read it has completed (its event).
struct TableStage {
  void* host = nullptr;
  size_t cap = 0;
  cudaEvent_t done = nullptr;
  bool pending = false;
};
std::mutex g_table_mu;
TableStage g_stage[2];
int g_stage_next = 0;

// Copies `bytes` of `src` to device memory (the workspace) on the stream; returns the device
// address. The host data may be reused as soon as this returns.
void* stage_table(const void* src, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_table_mu);
  TableStage& st = g_stage[g_stage_next];
  g_stage_next ^= 1;
  if (st.pending) {
    MOX_CUDA_CHECK(cudaEventSynchronize(st.done));
    st.pending = false;
  }
  if (!st.done) MOX_CUDA_CHECK(cudaEventCreateWithFlags(&st.done, cudaEventDisableTiming));
  if (bytes > st.cap) {
    if (st.host) MOX_CUDA_CHECK(cudaFreeHost(st.host));
    st.host = nullptr;
    st.cap = 0;
    size_t cap = std::max<size_t>(bytes, 16384);
    MOX_CUDA_CHECK(cudaMallocHost(&st.host, cap));
    st.cap = cap;
  }
  std::memcpy(st.host, src, bytes);
  void* dev = cuda::workspace(bytes);
  MOX_CUDA_CHECK(cudaMemcpyAsync(dev, st.host, bytes, cudaMemcpyHostToDevice, cuda::stream()));
  MOX_CUDA_CHECK(cudaEventRecord(st.done, cuda::stream()));
  st.pending = true;
  return dev;
}

// ---------------------------------------------------------------------------------------
// SGD, RMSprop, Adagrad

template <typename P> struct SgdK {
  P wd, mom, damp, neg_lr;
  bool decay, momentum, first, nesterov;
};

template <typename P>
__global__ void sgd_kernel(P* __restrict__ w, const void* __restrict__ g, int gkind,
                           P* __restrict__ buf, int64_t n, SgdK<P> s) {
  MOX_GRID_STRIDE(i, n) {
    P d = load_grad<P>(g, gkind, i);
    if (s.decay) d = d + s.wd * w[i];
    if (s.momentum) {
      P b;
      if (s.first)
        b = d;
      else
        b = buf[i] * s.mom + s.damp * d;
      buf[i] = b;
      d = s.nesterov ? d + s.mom * b : b;
    }
    w[i] = w[i] + s.neg_lr * d;
  }
}

template <typename P> struct RmsK {
  P wd, alpha, c, eps, mom, neg_lr;
  bool decay, centered, momentum;
};

template <typename P>
__global__ void rmsprop_kernel(P* __restrict__ w, const void* __restrict__ g, int gkind,
                               P* __restrict__ sq, P* __restrict__ buf, P* __restrict__ ga,
                               int64_t n, RmsK<P> s) {
  MOX_GRID_STRIDE(i, n) {
    P d = load_grad<P>(g, gkind, i);
    if (s.decay) d = d + s.wd * w[i];
    const P sqi = sq[i] * s.alpha + s.c * d * d;
    sq[i] = sqi;
    P avg;
    if (s.centered) {
      const P gai = ga[i] * s.alpha + s.c * d;
      ga[i] = gai;
      avg = d_sqrt(sqi - gai * gai);
    } else {
      avg = d_sqrt(sqi);
    }
    avg = avg + s.eps;
    if (s.momentum) {
      const P b = buf[i] * s.mom + d / avg;
      buf[i] = b;
      w[i] = w[i] + s.neg_lr * b;
    } else {
      w[i] = w[i] + s.neg_lr * d / avg;
    }
  }
}

template <typename P> struct AdagradK {
  P wd, eps, neg_clr;
  bool decay;
};

template <typename P>
__global__ void adagrad_kernel(P* __restrict__ w, const void* __restrict__ g, int gkind,
                               P* __restrict__ sum, int64_t n, AdagradK<P> s) {
  MOX_GRID_STRIDE(i, n) {
    P d = load_grad<P>(g, gkind, i);
    if (s.decay) d = d + s.wd * w[i];
    const P si = sum[i] + d * d;
    sum[i] = si;
    w[i] = w[i] + s.neg_clr * d / (d_sqrt(si) + s.eps);
  }
}

}  // namespace

void CudaBackend::adam_update(const Tensor& param, const Tensor& grad, const Tensor& m,
                              const Tensor& v, const Tensor& vmax, const AdamParams& p) {
  const char* op = "adam_update";
  check_param(op, param);
  const int gk = grad_kind(op, param, grad);
  if (p.amsgrad)
    check_state(op, param, {&m, &v, &vmax}, "amsgrad needs vmax");
  else
    check_state(op, param, {&m, &v}, "m and v");
  if (p.step < 1) throw Error(op, "step must be >= 1, got " + std::to_string(p.step));
  const int64_t n = param.numel();
  if (n == 0) return;
  auto run = [&](auto tag) {
    using P = decltype(tag);
    adam_kernel<P><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        ptr<P>(param), grad.raw_data(), gk, ptr<P>(m), ptr<P>(v), p.amsgrad ? ptr<P>(vmax) : nullptr,
        n, adam_scalars<P>(p));
  };
  if (param.dtype() == DType::F32)
    run(float());
  else
    run(double());
  MOX_CUDA_LAUNCHED(op);
}

void CudaBackend::adam_update_multi(const std::vector<Tensor>& params,
                                    const std::vector<Tensor>& grads, const std::vector<Tensor>& m,
                                    const std::vector<Tensor>& v, const std::vector<AdamParams>& ps) {
  const char* op = "adam_update_multi";
  if (grads.size() != params.size() || m.size() != params.size() || v.size() != params.size() ||
      ps.size() != params.size())
    throw Error(op, "parameter, gradient and state lists differ in length (" +
                        std::to_string(params.size()) + ", " + std::to_string(grads.size()) +
                        ", " + std::to_string(m.size()) + ", " + std::to_string(v.size()) + ", " +
                        std::to_string(ps.size()) + " parameter sets)");
  for (const AdamParams& p : ps) {
    if (p.amsgrad) throw Error(op, "amsgrad is not supported by the multi-tensor update");
    if (p.step < 1) throw Error(op, "step must be >= 1, got " + std::to_string(p.step));
  }
  if (params.empty()) return;
  const DType dt = params[0].dtype();
  std::vector<AdamRec> recs;
  recs.reserve(params.size());
  int64_t chunks = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& w = params[k];
    check_param(op, w);
    if (w.dtype() != dt)
      throw Error(op, "every parameter must have the same dtype: " + params[0].desc() + " and " +
                          w.desc());
    const int gk = grad_kind(op, w, grads[k]);
    check_state(op, w, {&m[k], &v[k]}, "m and v");
    if (w.numel() == 0) continue;
    AdamRec r;
    r.w = w.raw_data();
    r.g = grads[k].raw_data();
    r.m = m[k].raw_data();
    r.v = v[k].raw_data();
    r.n = w.numel();
    r.chunk0 = chunks;
    r.gkind = gk;
    r.k = adam_scalars<double>(ps[k]);
    recs.push_back(r);
    chunks += (r.n + kChunk - 1) / kChunk;
  }
  if (recs.empty()) return;
  const AdamRec* table =
      static_cast<const AdamRec*>(stage_table(recs.data(), recs.size() * sizeof(AdamRec)));
  const int64_t cap = int64_t(cuda::props().multiProcessorCount) * 64;
  const unsigned grid = unsigned(chunks < cap ? chunks : cap);
  if (dt == DType::F32)
    adam_multi_kernel<float><<<grid, cuda::kThreads, 0, cuda::stream()>>>(table, int(recs.size()), chunks);
  else
    adam_multi_kernel<double><<<grid, cuda::kThreads, 0, cuda::stream()>>>(table, int(recs.size()), chunks);
  MOX_CUDA_LAUNCHED(op);
}

void CudaBackend::sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf,
                             const SgdParams& p) {
  const char* op = "sgd_update";
  check_param(op, param);
  const int gk = grad_kind(op, param, grad);
  const bool momentum = p.momentum != 0;
  if (momentum) check_state(op, param, {&momentum_buf}, "momentum needs momentum_buf");
  const int64_t n = param.numel();
  if (n == 0) return;
  auto run = [&](auto tag) {
    using P = decltype(tag);
    SgdK<P> s;
    s.wd = P(p.weight_decay), s.mom = P(p.momentum), s.damp = P(1.0 - p.dampening);
    s.neg_lr = P(-p.lr);
    s.decay = p.weight_decay != 0, s.momentum = momentum, s.first = momentum && p.first_step;
    s.nesterov = p.nesterov;
    sgd_kernel<P><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        ptr<P>(param), grad.raw_data(), gk, momentum ? ptr<P>(momentum_buf) : nullptr, n, s);
  };
  if (param.dtype() == DType::F32)
    run(float());
  else
    run(double());
  MOX_CUDA_LAUNCHED(op);
}

void CudaBackend::rmsprop_update(const Tensor& param, const Tensor& grad, const Tensor& square_avg,
                                 const Tensor& momentum_buf, const Tensor& grad_avg,
                                 const RmspropParams& p) {
  const char* op = "rmsprop_update";
  check_param(op, param);
  const int gk = grad_kind(op, param, grad);
  check_state(op, param, {&square_avg}, "square_avg");
  const bool momentum = p.momentum > 0;
  if (momentum) check_state(op, param, {&momentum_buf}, "momentum needs momentum_buf");
  if (p.centered) check_state(op, param, {&grad_avg}, "centered needs grad_avg");
  const int64_t n = param.numel();
  if (n == 0) return;
  auto run = [&](auto tag) {
    using P = decltype(tag);
    RmsK<P> s;
    s.wd = P(p.weight_decay), s.alpha = P(p.alpha), s.c = P(1.0 - p.alpha), s.eps = P(p.eps);
    s.mom = P(p.momentum), s.neg_lr = P(-p.lr);
    s.decay = p.weight_decay != 0, s.centered = p.centered, s.momentum = momentum;
    rmsprop_kernel<P><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        ptr<P>(param), grad.raw_data(), gk, ptr<P>(square_avg),
        momentum ? ptr<P>(momentum_buf) : nullptr, p.centered ? ptr<P>(grad_avg) : nullptr, n, s);
  };
  if (param.dtype() == DType::F32)
    run(float());
  else
    run(double());
  MOX_CUDA_LAUNCHED(op);
}

void CudaBackend::adagrad_update(const Tensor& param, const Tensor& grad, const Tensor& state_sum,
                                 const AdagradParams& p) {
  const char* op = "adagrad_update";
  check_param(op, param);
  const int gk = grad_kind(op, param, grad);
  check_state(op, param, {&state_sum}, "state_sum");
  if (p.step < 1) throw Error(op, "step must be >= 1, got " + std::to_string(p.step));
  const int64_t n = param.numel();
  if (n == 0) return;
  // Learning-rate decay in double, as the CPU (PyTorch computes it in Python).
  const double clr = p.lr / (1.0 + double(p.step - 1) * p.lr_decay);
  auto run = [&](auto tag) {
    using P = decltype(tag);
    AdagradK<P> s;
    s.wd = P(p.weight_decay), s.eps = P(p.eps), s.neg_clr = P(-clr);
    s.decay = p.weight_decay != 0;
    adagrad_kernel<P><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        ptr<P>(param), grad.raw_data(), gk, ptr<P>(state_sum), n, s);
  };
  if (param.dtype() == DType::F32)
    run(float());
  else
    run(double());
  MOX_CUDA_LAUNCHED(op);
}

}  // namespace mox
