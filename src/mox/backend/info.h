#pragma once
// What this mox was built with and which devices it can use (`mox --version`).
#include <string>

namespace mox {

// "CUDA backend: built for sm_90" or "... not built", and the CPU GEMM libraries.
std::string build_summary();
// One line per device: the CPU (threads), and for cuda the GPU (name, multiprocessors,
// memory, compute capability) or why none can be used.
std::string devices_summary();

}  // namespace mox
