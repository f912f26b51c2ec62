#include <omp.h>

#include <cstdlib>

#include "mox/backend/backend.h"
#include "mox/backend/cpu/cpu_backend.h"

extern "C" void openblas_set_num_threads(int);

namespace mox {

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
  if (!b)
    throw Error("device", d.str() + " is not available in this build (built without CUDA?)");
  return *b;
}

void register_backend(DeviceType type, Backend* b) {
  backend_for(kCPU);  // make sure the CPU one is set up first
  g_backends[int(type)] = b;
}

bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

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
