// 2-D convolution (NCHW, groups, stride, padding, dilation) through cuDNN's convolution API,
// and max/avg pooling with the backend's own kernels. Semantics as cpu_conv.cpp and
// cpu_pool.cpp.
//
// Convolutions: one cudnnHandle, created on first use and bound to cuda::stream(). An
// algorithm list per direction and shape comes once from cuDNN's heuristics
// (cudnnGet*Algorithm_v7, best predicted first, within kMaxWorkspace, deterministic ones
// first for the backward passes) and is cached in a std::map; a call runs the first that
// works (an algorithm that fails is skipped, the one that ran moves to the front).
// Workspaces come from cuda::workspace(). f32 and f64 run on FMA kernels (no TF32: results match the CPU to
// f32 rounding); bf16/f16 may use tensor cores, accumulating in f32. The bias and the fused
// ReLU of Conv2dParams::relu are applied by a small kernel after the convolution; the bias
// gradient is a deterministic per-channel block reduction; conv2d_backward with relu_out
// first masks gy into a scratch tensor.
//
// Pooling: one thread per output (forward). max_pool2d_backward scatters each output's
// gradient to its recorded argmax with atomicAdd (gx zeroed first; bf16/f16 accumulate in
// an f32 scratch buffer); avg_pool2d_backward gathers, for each input, the outputs whose
// windows hold it in the CPU's order (deterministic, no atomics).
#include <cudnn.h>

#include <climits>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/cuda/cuda_common.cuh"

namespace mox {

namespace {

using cuda::compute_t;

// ---------------------------------------------------------------------------------------
// cuDNN plumbing

void check_cudnn(cudnnStatus_t s, const char* op, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS)
    throw Error(op, std::string("cuDNN ") + what + ": " + cudnnGetErrorString(s));
}
#define MOX_CUDNN(op, expr) check_cudnn((expr), (op), #expr)

std::mutex g_cudnn_mu;

cudnnHandle_t cudnn_handle() {
  static cudnnHandle_t h = [] {
    cudnnHandle_t handle = nullptr;
    MOX_CUDNN("conv2d", cudnnCreate(&handle));
    MOX_CUDNN("conv2d", cudnnSetStream(handle, cuda::stream()));
    return handle;
  }();
  return h;
}

constexpr size_t kMaxWorkspace = size_t(1) << 30;

cudnnDataType_t cudnn_dtype(DType t, const char* op) {
  switch (t) {
    case DType::F32: return CUDNN_DATA_FLOAT;
    case DType::F64: return CUDNN_DATA_DOUBLE;
    case DType::BF16: return CUDNN_DATA_BFLOAT16;
    case DType::F16: return CUDNN_DATA_HALF;
    default:
      throw Error(op, std::string("CUDA convolution supports f32, f64, bf16 and f16, got ") +
                          dtype_name(t));
  }
}

int to_int(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw Error(op, std::string(what) + " " + std::to_string(v) + " does not fit cuDNN's int");
  return int(v);
}

// Descriptors of one convolution (created per call: host-only and cheap).
struct ConvDescs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnDataType_t dt{};
  bool half = false;  // bf16/f16: tensor cores allowed
  bool f64 = false;
  ConvDescs() = default;
  ConvDescs(const ConvDescs&) = delete;
  ConvDescs& operator=(const ConvDescs&) = delete;
  ~ConvDescs() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

void make_descs(ConvDescs& d, const Tensor& x, const Tensor& w, const Shape& yshape,
                const Conv2dParams& p, const char* op) {
  if (x.dim() != 4 || w.dim() != 4 || yshape.size() != 4)
    throw Error(op, "expects 4-D x, w and output, got " + x.desc() + " and " + w.desc());
  if (w.dtype() != x.dtype())
    throw Error(op, "weight " + w.desc() + " must have the input's dtype " + x.desc());
  if (p.groups < 1 || x.size(1) % p.groups != 0 || w.size(0) % p.groups != 0 ||
      w.size(1) * p.groups != x.size(1))
    throw Error(op, "channels do not match groups=" + std::to_string(p.groups) + ": x " + x.desc() +
                        ", w " + w.desc());
  d.dt = cudnn_dtype(x.dtype(), op);
  d.half = x.dtype() == DType::BF16 || x.dtype() == DType::F16;
  d.f64 = x.dtype() == DType::F64;
  MOX_CUDNN(op, cudnnCreateTensorDescriptor(&d.x));
  MOX_CUDNN(op, cudnnCreateTensorDescriptor(&d.y));
  MOX_CUDNN(op, cudnnCreateFilterDescriptor(&d.w));
  MOX_CUDNN(op, cudnnCreateConvolutionDescriptor(&d.conv));
  MOX_CUDNN(op, cudnnSetTensor4dDescriptor(d.x, CUDNN_TENSOR_NCHW, d.dt, to_int(x.size(0), op, "N"),
                                           to_int(x.size(1), op, "C"), to_int(x.size(2), op, "H"),
                                           to_int(x.size(3), op, "W")));
  MOX_CUDNN(op, cudnnSetTensor4dDescriptor(d.y, CUDNN_TENSOR_NCHW, d.dt, to_int(yshape[0], op, "N"),
                                           to_int(yshape[1], op, "O"), to_int(yshape[2], op, "Ho"),
                                           to_int(yshape[3], op, "Wo")));
  MOX_CUDNN(op, cudnnSetFilter4dDescriptor(d.w, d.dt, CUDNN_TENSOR_NCHW, to_int(w.size(0), op, "O"),
                                           to_int(w.size(1), op, "C/groups"),
                                           to_int(w.size(2), op, "kh"), to_int(w.size(3), op, "kw")));
  // f32/f64 accumulate in their own type; bf16/f16 in f32.
  const cudnnDataType_t compute = d.f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  MOX_CUDNN(op, cudnnSetConvolution2dDescriptor(
                    d.conv, to_int(p.pad_h, op, "pad_h"), to_int(p.pad_w, op, "pad_w"),
                    to_int(p.stride_h, op, "stride_h"), to_int(p.stride_w, op, "stride_w"),
                    to_int(p.dil_h, op, "dil_h"), to_int(p.dil_w, op, "dil_w"),
                    CUDNN_CROSS_CORRELATION, compute));
  MOX_CUDNN(op, cudnnSetConvolutionGroupCount(d.conv, to_int(p.groups, op, "groups")));
  // FMA only for f32/f64: TF32 tensor cores would round the inputs to 10-bit mantissas.
  MOX_CUDNN(op, cudnnSetConvolutionMathType(d.conv, d.half ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  // cuDNN must agree with the output shape ops/ computed.
  int n = 0, c = 0, h = 0, ww = 0;
  MOX_CUDNN(op, cudnnGetConvolution2dForwardOutputDim(d.conv, d.x, d.w, &n, &c, &h, &ww));
  if (n != yshape[0] || c != yshape[1] || h != yshape[2] || ww != yshape[3])
    throw Error(op, "output shape " + shape_str(yshape) + " differs from cuDNN's [" +
                        std::to_string(n) + ", " + std::to_string(c) + ", " + std::to_string(h) +
                        ", " + std::to_string(ww) + "] for x " + x.desc() + ", w " + w.desc());
}

// Algorithm candidates per direction and problem, best first; the first that runs is moved
// to the front, so later calls start with it.
enum class Dir { Fwd, BwdData, BwdFilter };
using AlgoKey = std::tuple<int, int, std::vector<int64_t>>;  // dir, dtype, geometry
struct AlgoChoice {
  int algo;
  cudnnMathType_t math;
};
std::map<AlgoKey, std::vector<AlgoChoice>> g_algos;

AlgoKey algo_key(Dir dir, const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  return {int(dir), int(x.dtype()),
          std::vector<int64_t>{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(1),
                               w.size(2), w.size(3), p.stride_h, p.stride_w, p.pad_h, p.pad_w,
                               p.dil_h, p.dil_w, p.groups}};
}

// From cuDNN's heuristic list (best first): those that report success and fit the workspace
// cap; for the backward passes deterministic algorithms first.
template <typename Perf>
std::vector<AlgoChoice> candidates(const Perf* perf, int count, bool deterministic, bool half) {
  std::vector<AlgoChoice> out;
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < count; ++i) {
      const Perf& r = perf[i];
      if (r.status != CUDNN_STATUS_SUCCESS || r.memory > kMaxWorkspace) continue;
      const bool det = r.determinism == CUDNN_DETERMINISTIC;
      if (deterministic && (pass == 0) != det) continue;
      if (!deterministic && pass == 1) continue;
      // f32/f64 stay on FMA math whatever the heuristic reports (no TF32).
      out.push_back({int(r.algo), half ? r.mathType : CUDNN_FMA_MATH});
    }
  return out;
}

std::vector<AlgoChoice>& algo_list(Dir dir, const ConvDescs& d, const Tensor& x, const Tensor& w,
                                   const Conv2dParams& p, const char* op) {
  const AlgoKey key = algo_key(dir, x, w, p);
  auto it = g_algos.find(key);
  if (it != g_algos.end()) return it->second;
  cudnnHandle_t h = cudnn_handle();
  constexpr int kMax = 16;
  int got = 0;
  std::vector<AlgoChoice> c;
  if (dir == Dir::Fwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[kMax];
    MOX_CUDNN(op, cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, kMax, &got, perf));
    c = candidates(perf, got, false, d.half);
  } else if (dir == Dir::BwdData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
    MOX_CUDNN(op, cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, kMax, &got, perf));
    c = candidates(perf, got, true, d.half);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMax];
    MOX_CUDNN(op, cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, kMax, &got, perf));
    c = candidates(perf, got, true, d.half);
  }
  if (c.empty()) throw Error(op, "cuDNN offers no algorithm for this convolution");
  return g_algos.emplace(key, std::move(c)).first->second;
}

// Runs one direction: for each candidate, sets its math type, asks its workspace size
// (ws_size(algo, &bytes)) and runs it (run(algo, ws, bytes)); the first that succeeds is
// kept at the front of the list. Throws with cuDNN's last status when none runs.
template <typename WsSize, typename Run>
void run_conv(Dir dir, const ConvDescs& d, const Tensor& x, const Tensor& w, const Conv2dParams& p,
              const char* op, WsSize&& ws_size, Run&& run) {
  std::vector<AlgoChoice>& list = algo_list(dir, d, x, w, p, op);
  cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
  for (size_t i = 0; i < list.size(); ++i) {
    const AlgoChoice c = list[i];
    MOX_CUDNN(op, cudnnSetConvolutionMathType(d.conv, c.math));
    size_t bytes = 0;
    last = ws_size(c.algo, &bytes);
    if (last != CUDNN_STATUS_SUCCESS || bytes > kMaxWorkspace) continue;
    void* ws = bytes ? cuda::workspace(bytes) : nullptr;
    last = run(c.algo, ws, bytes);
    if (last != CUDNN_STATUS_SUCCESS) continue;
    if (i != 0) {
      list.erase(list.begin() + std::ptrdiff_t(i));
      list.insert(list.begin(), c);
    }
    return;
  }
  throw Error(op, std::string("cuDNN could not run this convolution (") + cudnnGetErrorString(last) +
                      ") for x " + x.desc() + ", w " + w.desc());
}

// alpha/beta scalars: double for f64 data, float otherwise.
struct Scal {
  float f;
  double d;
  const void* ptr(bool f64) const { return f64 ? static_cast<const void*>(&d) : &f; }
};

// ---------------------------------------------------------------------------------------
// small kernels around the convolution

// y[n, o, :] = (relu?)(y + bias[o])  (bias may be null)
template <typename T>
__global__ void bias_relu_kernel(T* __restrict__ y, const T* __restrict__ bias, int64_t O,
                                 int64_t HW, int64_t total, bool relu) {
  using C = compute_t<T>;
  MOX_GRID_STRIDE(i, total) {
    C v = cuda::load(y + i);
    if (bias) v = v + cuda::load(bias + (i / HW) % O);
    if (relu) v = v > C(0) ? v : C(0);
    cuda::store(y + i, v);
  }
}

// out = relu_out > 0 ? gy : 0
template <typename T>
__global__ void relu_mask_kernel(const T* __restrict__ gy, const T* __restrict__ relu_out,
                                 T* __restrict__ out, int64_t total) {
  using C = compute_t<T>;
  MOX_GRID_STRIDE(i, total) {
    const C r = cuda::load(relu_out + i);
    cuda::store(out + i, r > C(0) ? cuda::load(gy + i) : C(0));
  }
}

// gb[o] = sum over n and the plane of gy[n, o, :]; one block per channel, fixed order.
template <typename T>
__global__ void bias_grad_kernel(const T* __restrict__ gy, T* __restrict__ gb, int64_t N,
                                 int64_t O, int64_t HW) {
  using C = compute_t<T>;
  __shared__ C sh[32];
  const int64_t o = blockIdx.x;
  C s = 0;
  for (int64_t n = 0; n < N; ++n) {
    const T* p = gy + (n * O + o) * HW;
    for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) s += cuda::load(p + i);
  }
  s = cuda::block_sum(s, sh);
  if (threadIdx.x == 0) cuda::store(gb + o, s);
}

// ---------------------------------------------------------------------------------------
// pooling

struct PoolGeom {
  int64_t planes, H, W, Ho, Wo;
};
PoolGeom pool_geometry(const Tensor& x, const Tensor& y, const char* op) {
  if (x.dim() < 2 || y.dim() != x.dim())
    throw Error(op, "expects [..., H, W] input and output, got " + x.desc() + " and " + y.desc());
  const int64_t nd = x.dim();
  PoolGeom g;
  g.H = x.size(nd - 2), g.W = x.size(nd - 1);
  g.Ho = y.size(nd - 2), g.Wo = y.size(nd - 1);
  g.planes = g.H * g.W == 0 ? 0 : x.numel() / (g.H * g.W);
  if (g.planes * g.Ho * g.Wo != y.numel())
    throw Error(op, "input " + x.desc() + " and output " + y.desc() + " differ in planes");
  return g;
}

struct PoolK {
  int64_t kh, kw, sh, sw, ph, pw;
  bool count_include_pad;
};
PoolK pool_k(const Pool2dParams& p) {
  return {p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.count_include_pad};
}

// Larger, or NaN (the first NaN stays), as cpu_pool.cpp's pool_take.
template <typename C> __device__ __forceinline__ bool pool_take(C v, C best) {
  return ((v > best) || (v != v)) && (best == best);
}

template <typename T>
__global__ void max_pool_kernel(const T* __restrict__ x, T* __restrict__ y,
                                int64_t* __restrict__ idx, PoolGeom g, PoolK k) {
  using C = compute_t<T>;
  const int64_t total = g.planes * g.Ho * g.Wo;
  MOX_GRID_STRIDE(i, total) {
    const int64_t ow = i % g.Wo, oh = (i / g.Wo) % g.Ho, pl = i / (g.Wo * g.Ho);
    const int64_t h0 = oh * k.sh - k.ph, w0 = ow * k.sw - k.pw;
    const int64_t hs = max(h0, int64_t(0)), he = min(h0 + k.kh, g.H);
    const int64_t ws = max(w0, int64_t(0)), we = min(w0 + k.kw, g.W);
    const T* xp = x + pl * g.H * g.W;
    C best = C(-INFINITY);
    int64_t arg = hs * g.W + ws;
    for (int64_t h = hs; h < he; ++h)
      for (int64_t w = ws; w < we; ++w) {
        const C v = cuda::load(xp + h * g.W + w);
        if (pool_take(v, best)) {
          best = v;
          arg = h * g.W + w;
        }
      }
    cuda::store(y + i, best);
    if (idx) idx[i] = arg;
  }
}

__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }

// acc[plane*HW + idx] += gy (acc: gx for f32/f64, an f32 scratch for bf16/f16)
template <typename T, typename A>
__global__ void max_pool_backward_kernel(const T* __restrict__ gy, const int64_t* __restrict__ idx,
                                         A* __restrict__ acc, int64_t planes, int64_t P,
                                         int64_t HW) {
  MOX_GRID_STRIDE(i, planes * P) {
    const int64_t pl = i / P;
    const int64_t j = idx[i];
    if (j >= 0 && j < HW) atomic_add(acc + pl * HW + j, A(cuda::load(gy + i)));
  }
}

template <typename T>
__global__ void f32_to_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  MOX_GRID_STRIDE(i, n) { cuda::store(dst + i, src[i]); }
}

// The window of output (oh, ow) clipped to the image and its divisor (cpu_pool.cpp).
struct AvgWindow {
  int64_t hs, he, ws, we, div;
};
__device__ __forceinline__ AvgWindow avg_window(int64_t oh, int64_t ow, const PoolGeom& g,
                                                const PoolK& k) {
  int64_t hs = oh * k.sh - k.ph, ws = ow * k.sw - k.pw;
  int64_t he = min(hs + k.kh, g.H + k.ph), we = min(ws + k.kw, g.W + k.pw);
  const int64_t pool = (he - hs) * (we - ws);  // includes padding, not the ceil_mode overhang
  hs = max(hs, int64_t(0)), ws = max(ws, int64_t(0));
  he = min(he, g.H), we = min(we, g.W);
  const int64_t div = k.count_include_pad ? pool : (he - hs) * (we - ws);
  return {hs, he, ws, we, div};
}

template <typename T>
__global__ void avg_pool_kernel(const T* __restrict__ x, T* __restrict__ y, PoolGeom g, PoolK k) {
  using C = compute_t<T>;
  const int64_t total = g.planes * g.Ho * g.Wo;
  MOX_GRID_STRIDE(i, total) {
    const int64_t ow = i % g.Wo, oh = (i / g.Wo) % g.Ho, pl = i / (g.Wo * g.Ho);
    const AvgWindow a = avg_window(oh, ow, g, k);
    const T* xp = x + pl * g.H * g.W;
    C s = 0;
    for (int64_t h = a.hs; h < a.he; ++h)
      for (int64_t w = a.ws; w < a.we; ++w) s += cuda::load(xp + h * g.W + w);
    cuda::store(y + i, a.hs >= a.he || a.ws >= a.we ? C(0) : s / C(a.div));
  }
}

// First output index whose window (start o*s - pad, k taps) can reach input position v.
__device__ __forceinline__ int64_t first_out(int64_t v, int64_t k, int64_t s, int64_t pad) {
  const int64_t num = v + pad - k + 1;  // o*s >= num
  return num <= 0 ? 0 : (num + s - 1) / s;
}

// gx[pl, h, w] = sum over outputs (oh, ow ascending) whose window holds (h, w) of gy / div
template <typename T>
__global__ void avg_pool_backward_kernel(const T* __restrict__ gy, T* __restrict__ gx, PoolGeom g,
                                         PoolK k) {
  using C = compute_t<T>;
  const int64_t total = g.planes * g.H * g.W;
  MOX_GRID_STRIDE(i, total) {
    const int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
    const int64_t oh0 = first_out(h, k.kh, k.sh, k.ph), oh1 = min(g.Ho - 1, (h + k.ph) / k.sh);
    const int64_t ow0 = first_out(w, k.kw, k.sw, k.pw), ow1 = min(g.Wo - 1, (w + k.pw) / k.sw);
    const T* gp = gy + pl * g.Ho * g.Wo;
    C s = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const AvgWindow a = avg_window(oh, ow, g, k);
        if (a.hs >= a.he || a.ws >= a.we) continue;
        if (h < a.hs || h >= a.he || w < a.ws || w >= a.we) continue;
        s += cuda::load(gp + oh * g.Wo + ow) / C(a.div);
      }
    cuda::store(gx + i, s);
  }
}

void check_float_contig(const Tensor& t, const char* op, const char* what) {
  if (!t.defined()) return;
  if (t.dtype() != DType::F32 && t.dtype() != DType::F64 && t.dtype() != DType::BF16 &&
      t.dtype() != DType::F16)
    throw Error(op, std::string(what) + ": CUDA kernel supports f32, f64, bf16 and f16, got " +
                        t.desc());
  if (!t.is_contiguous())
    throw Error(op, std::string(what) + " must be contiguous, got strides " +
                        shape_str(t.strides()) + " for " + t.desc());
}

void check_same(const Tensor& t, const Tensor& ref, const char* op, const char* what) {
  if (t.defined() && t.dtype() != ref.dtype())
    throw Error(op, std::string(what) + " " + t.desc() + " must have dtype " +
                        dtype_name(ref.dtype()));
}

void check_pool_params(const Pool2dParams& p, const char* op) {
  if (p.kh < 1 || p.kw < 1 || p.stride_h < 1 || p.stride_w < 1 || p.pad_h < 0 || p.pad_w < 0)
    throw Error(op, "invalid pooling parameters: kernel " + std::to_string(p.kh) + "x" +
                        std::to_string(p.kw) + ", stride " + std::to_string(p.stride_h) + "x" +
                        std::to_string(p.stride_w) + ", padding " + std::to_string(p.pad_h) +
                        "x" + std::to_string(p.pad_w));
}

}  // namespace

// ---------------------------------------------------------------------------------------

void CudaBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out,
                         const Conv2dParams& p) {
  const char* op = "conv2d";
  check_float_contig(x, op, "input");
  check_float_contig(w, op, "weight");
  check_float_contig(bias, op, "bias");
  check_float_contig(out, op, "output");
  check_same(out, x, op, "output");
  check_same(bias, x, op, "bias");
  if (bias.defined() && bias.numel() != w.size(0))
    throw Error(op, "bias " + bias.desc() + " must have " + std::to_string(w.size(0)) + " values");
  if (out.numel() == 0) return;
  std::lock_guard<std::mutex> lock(g_cudnn_mu);
  ConvDescs d;
  make_descs(d, x, w, out.shape(), p, op);
  cudnnHandle_t h = cudnn_handle();
  if (x.numel() == 0 || w.numel() == 0) {
    MOX_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.numel() * out.element_size(), cuda::stream()));
  } else {
    const Scal one{1.f, 1.0}, zero{0.f, 0.0};
    run_conv(
        Dir::Fwd, d, x, w, p, op,
        [&](int algo, size_t* bytes) {
          return cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y,
                                                         cudnnConvolutionFwdAlgo_t(algo), bytes);
        },
        [&](int algo, void* ws, size_t bytes) {
          return cudnnConvolutionForward(h, one.ptr(d.f64), d.x, x.raw_data(), d.w, w.raw_data(),
                                         d.conv, cudnnConvolutionFwdAlgo_t(algo), ws, bytes,
                                         zero.ptr(d.f64), d.y, out.raw_data());
        });
  }
  if (bias.defined() || p.relu) {
    const int64_t total = out.numel(), O = out.size(1), HW = out.size(2) * out.size(3);
    MOX_CUDA_DISPATCH_FLOAT(x.dtype(), T, op, {
      bias_relu_kernel<T><<<cuda::blocks_for(total), cuda::kThreads, 0, cuda::stream()>>>(
          static_cast<T*>(out.raw_data()),
          bias.defined() ? static_cast<const T*>(bias.raw_data()) : nullptr, O, HW, total, p.relu);
    });
    MOX_CUDA_LAUNCHED("conv2d (bias, relu)");
  }
}

void CudaBackend::conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy,
                                  const Tensor& gx, const Tensor& gw, const Tensor& gb,
                                  const Conv2dParams& p, const Tensor& relu_out) {
  const char* op = "conv2d_backward";
  for (const Tensor* t : {&x, &w, &gy, &gx, &gw, &gb, &relu_out}) {
    check_float_contig(*t, op, "tensor");
    check_same(*t, x, op, "tensor");
  }
  if (relu_out.defined() && relu_out.shape() != gy.shape())
    throw Error(op, "relu_out " + relu_out.desc() + " must match gy " + gy.desc());
  // The gradient that reaches the convolution: gy where the fused ReLU let the value through.
  Tensor g = gy;
  if (relu_out.defined() && gy.numel() > 0) {
    g = empty(gy.shape(), TensorOptions(gy.dtype(), gy.device()));
    const int64_t total = gy.numel();
    MOX_CUDA_DISPATCH_FLOAT(gy.dtype(), T, op, {
      relu_mask_kernel<T><<<cuda::blocks_for(total), cuda::kThreads, 0, cuda::stream()>>>(
          static_cast<const T*>(gy.raw_data()), static_cast<const T*>(relu_out.raw_data()),
          static_cast<T*>(g.raw_data()), total);
    });
    MOX_CUDA_LAUNCHED("conv2d_backward (relu mask)");
  }
  if (gb.defined()) {
    const int64_t N = g.size(0), O = g.size(1), HW = g.size(2) * g.size(3);
    if (gb.numel() != O) throw Error(op, "bias gradient " + gb.desc() + " must have " + std::to_string(O) + " values");
    if (O > 0) {
      MOX_CUDA_DISPATCH_FLOAT(g.dtype(), T, op, {
        bias_grad_kernel<T><<<unsigned(O), cuda::kThreads, 0, cuda::stream()>>>(
            static_cast<const T*>(g.raw_data()), static_cast<T*>(gb.raw_data()), N, O, HW);
      });
      MOX_CUDA_LAUNCHED("conv2d_backward (bias)");
    }
  }
  if (!gx.defined() && !gw.defined()) return;
  std::lock_guard<std::mutex> lock(g_cudnn_mu);
  ConvDescs d;
  make_descs(d, x, w, g.shape(), p, op);
  cudnnHandle_t h = cudnn_handle();
  const Scal one{1.f, 1.0}, zero{0.f, 0.0};
  const bool empty_problem = g.numel() == 0 || x.numel() == 0 || w.numel() == 0;
  if (gx.defined() && gx.numel() > 0) {
    if (empty_problem) {
      MOX_CUDA_CHECK(cudaMemsetAsync(gx.raw_data(), 0, gx.numel() * gx.element_size(), cuda::stream()));
    } else {
      run_conv(
          Dir::BwdData, d, x, w, p, op,
          [&](int algo, size_t* bytes) {
            return cudnnGetConvolutionBackwardDataWorkspaceSize(
                h, d.w, d.y, d.conv, d.x, cudnnConvolutionBwdDataAlgo_t(algo), bytes);
          },
          [&](int algo, void* ws, size_t bytes) {
            return cudnnConvolutionBackwardData(h, one.ptr(d.f64), d.w, w.raw_data(), d.y,
                                                g.raw_data(), d.conv,
                                                cudnnConvolutionBwdDataAlgo_t(algo), ws, bytes,
                                                zero.ptr(d.f64), d.x, gx.raw_data());
          });
    }
  }
  if (gw.defined() && gw.numel() > 0) {
    if (empty_problem) {
      MOX_CUDA_CHECK(cudaMemsetAsync(gw.raw_data(), 0, gw.numel() * gw.element_size(), cuda::stream()));
    } else {
      run_conv(
          Dir::BwdFilter, d, x, w, p, op,
          [&](int algo, size_t* bytes) {
            return cudnnGetConvolutionBackwardFilterWorkspaceSize(
                h, d.x, d.y, d.conv, d.w, cudnnConvolutionBwdFilterAlgo_t(algo), bytes);
          },
          [&](int algo, void* ws, size_t bytes) {
            return cudnnConvolutionBackwardFilter(h, one.ptr(d.f64), d.x, x.raw_data(), d.y,
                                                  g.raw_data(), d.conv,
                                                  cudnnConvolutionBwdFilterAlgo_t(algo), ws, bytes,
                                                  zero.ptr(d.f64), d.w, gw.raw_data());
          });
    }
  }
}

void CudaBackend::max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices,
                             const Pool2dParams& p) {
  const char* op = "max_pool2d";
  check_float_contig(x, op, "input");
  check_float_contig(out, op, "output");
  check_same(out, x, op, "output");
  check_pool_params(p, op);
  if (indices.defined() &&
      (indices.dtype() != DType::I64 || !indices.is_contiguous() || indices.numel() != out.numel()))
    throw Error(op, "indices must be contiguous i64 shaped like the output " + out.desc() +
                        ", got " + indices.desc());
  const PoolGeom g = pool_geometry(x, out, op);
  const int64_t total = g.planes * g.Ho * g.Wo;
  if (total == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), T, op, {
    max_pool_kernel<T><<<cuda::blocks_for(total), cuda::kThreads, 0, cuda::stream()>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()),
        indices.defined() ? static_cast<int64_t*>(indices.raw_data()) : nullptr, g, pool_k(p));
  });
  MOX_CUDA_LAUNCHED(op);
}

void CudaBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  const char* op = "max_pool2d_backward";
  check_float_contig(gy, op, "gradient");
  check_float_contig(gx, op, "input gradient");
  check_same(gx, gy, op, "input gradient");
  if (indices.dtype() != DType::I64 || !indices.is_contiguous() || indices.numel() != gy.numel())
    throw Error(op, "indices must be contiguous i64 shaped like the gradient " + gy.desc() +
                        ", got " + indices.desc());
  const PoolGeom g = pool_geometry(gx, gy, op);
  const int64_t HW = g.H * g.W, P = g.Ho * g.Wo, n = gx.numel();
  if (n == 0) return;
  const bool half = gx.dtype() == DType::BF16 || gx.dtype() == DType::F16;
  void* acc = half ? cuda::workspace(size_t(n) * sizeof(float)) : gx.raw_data();
  MOX_CUDA_CHECK(cudaMemsetAsync(acc, 0, size_t(n) * (half ? sizeof(float) : gx.element_size()),
                                 cuda::stream()));
  if (g.planes * P > 0) {
    const int64_t* id = static_cast<const int64_t*>(indices.raw_data());
    const unsigned blocks = cuda::blocks_for(g.planes * P);
    MOX_CUDA_DISPATCH_FLOAT(gy.dtype(), T, op, {
      using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
      max_pool_backward_kernel<T, A><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(
          static_cast<const T*>(gy.raw_data()), id, static_cast<A*>(acc), g.planes, P, HW);
    });
    MOX_CUDA_LAUNCHED(op);
  }
  if (half) {
    MOX_CUDA_DISPATCH_FLOAT(gx.dtype(), T, op, {
      f32_to_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
          static_cast<const float*>(acc), static_cast<T*>(gx.raw_data()), n);
    });
    MOX_CUDA_LAUNCHED("max_pool2d_backward (convert)");
  }
}

void CudaBackend::avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p) {
  const char* op = "avg_pool2d";
  check_float_contig(x, op, "input");
  check_float_contig(out, op, "output");
  check_same(out, x, op, "output");
  check_pool_params(p, op);
  const PoolGeom g = pool_geometry(x, out, op);
  const int64_t total = g.planes * g.Ho * g.Wo;
  if (total == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), T, op, {
    avg_pool_kernel<T><<<cuda::blocks_for(total), cuda::kThreads, 0, cuda::stream()>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), g, pool_k(p));
  });
  MOX_CUDA_LAUNCHED(op);
}

void CudaBackend::avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) {
  const char* op = "avg_pool2d_backward";
  check_float_contig(gy, op, "gradient");
  check_float_contig(gx, op, "input gradient");
  check_same(gx, gy, op, "input gradient");
  check_pool_params(p, op);
  const PoolGeom g = pool_geometry(gx, gy, op);
  const int64_t total = g.planes * g.H * g.W;
  if (total == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(gy.dtype(), T, op, {
    avg_pool_backward_kernel<T><<<cuda::blocks_for(total), cuda::kThreads, 0, cuda::stream()>>>(
        static_cast<const T*>(gy.raw_data()), static_cast<T*>(gx.raw_data()), g, pool_k(p));
  });
  MOX_CUDA_LAUNCHED(op);
}

}  // namespace mox
