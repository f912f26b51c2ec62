#include <omp.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "mox/backend/backend.h"
#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/info.h"

extern "C" void openblas_set_num_threads(int);

namespace mox {

#ifdef MOX_HAVE_CUDA
Backend* create_cuda_backend(std::string* why);  // backend/cuda/cuda_backend.cu
std::string cuda_device_summary();               // backend/cuda/cuda_backend.cu
#endif

namespace {
Backend* g_backends[2] = {nullptr, nullptr};

int initial_threads() {
  if (const char* s = std::getenv("MOX_NUM_THREADS")) {
    int n = std::atoi(s);
    if (n > 0) return n;
  }
  return omp_get_max_threads();
}

struct Init {
  Init() {
    static CpuBackend cpu;
    g_backends[int(DeviceType::CPU)] = &cpu;
    set_num_threads(initial_threads());
  }
};
}  // namespace

Backend& backend_for(Device d) {
  static Init init;
  Backend* b = g_backends[int(d.type)];
  if (b) return *b;
  if (d.type == DeviceType::CUDA) {
    if (d.index != 0) throw Error("device", d.str() + ": mox drives one GPU per process (cuda:0)");
#ifdef MOX_HAVE_CUDA
    static std::mutex mu;
    std::lock_guard<std::mutex> lk(mu);
    if (!g_backends[int(d.type)]) {
      std::string why;
      g_backends[int(d.type)] = create_cuda_backend(&why);
      if (!g_backends[int(d.type)]) throw Error("device", why);
    }
    return *g_backends[int(d.type)];
#else
    throw Error("device", "cuda is not available: this mox was built without the CUDA backend "
                          "(configure with -DMOX_CUDA=ON, or scripts/build --cuda)");
#endif
  }
  throw Error("device", d.str() + " is not available");
}

void register_backend(DeviceType type, Backend* b) {
  backend_for(kCPU);  // make sure the CPU one is set up first
  g_backends[int(type)] = b;
}

bool device_available(Device d) {
  try {
    backend_for(d);
    return true;
  } catch (const Error&) {
    return false;
  }
}

bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

std::string build_summary() {
  std::string s = "CPU GEMM: OpenBLAS (f32/f64)";
#ifdef MOX_HAVE_DNNL
  s += ", oneDNN (bf16, large f32)";
#endif
#ifdef MOX_HAVE_CUDA
  s += "\nCUDA backend: built for sm_" MOX_CUDA_ARCHS " (cuBLASLt, cuDNN)";
#else
  s += "\nCUDA backend: not built (configure with -DMOX_CUDA=ON)";
#endif
  return s;
}

std::string devices_summary() {
  std::string s = "cpu: " + std::to_string(get_num_threads()) + " threads";
#ifdef MOX_HAVE_CUDA
  try {
    backend_for(Device{DeviceType::CUDA, 0});
    s += "\ncuda:0: " + cuda_device_summary();
  } catch (const Error& e) {
    s += "\n" + e.detail();  // "cuda: no usable CUDA device (...)"
  }
#endif
  return s;
}

void Backend::gemm_epilogue(const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb,
                            const GemmEpilogue& e) {
  MOX_CHECK(!(e.gelu && e.residual.defined()), "gemm_epilogue", "GELU and a residual cannot be combined");
  // With a residual the product goes to a scratch buffer first: residual + (product + bias),
  // the order (and rounding) of linear followed by add.
  const Tensor dst = e.gelu ? e.pre : e.residual.defined() ? empty(out.shape(), TensorOptions(out.dtype(), out.device())) : out;
  MOX_CHECK(dst.defined() && dst.shape() == out.shape(), "gemm_epilogue",
            "the pre-activation buffer must be shaped like the output " + out.desc());
  double beta = 0.0;
  if (e.bias.defined()) {  // the bias broadcast into the output, the product accumulated onto it
    const int64_t n = out.size(-1);
    MOX_CHECK(e.bias.numel() == n, "gemm_epilogue", "bias " + e.bias.desc() + " does not match " + out.desc());
    copy(e.bias.reshape({1, 1, n}).expand(dst.shape()), dst);
    beta = 1.0;
  }
  gemm(a, b, dst, ta, tb, 1.0, beta);
  if (e.gelu) unary(UnaryOp::GeluTanh, e.pre, out, {});
  if (e.residual.defined()) {
    MOX_CHECK(e.residual.shape() == out.shape() && e.residual.dtype() == out.dtype(), "gemm_epilogue",
              "residual " + e.residual.desc() + " must match the output " + out.desc());
    binary(BinaryOp::Add, e.residual, dst, out);
  }
}

static int g_threads = 0;

void set_num_threads(int n) {
  if (n < 1) throw Error("set_num_threads", "thread count must be >= 1, got " + std::to_string(n));
  g_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int get_num_threads() {
  backend_for(kCPU);
  return g_threads;
}

}  // namespace mox
