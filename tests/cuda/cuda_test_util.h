#pragma once
// Shared by the CUDA parity tests: they compile in every build and skip where there is no
// CUDA device (a CPU-only build, or a CUDA build on a machine without a GPU). Each compares
// the CUDA backend against the CPU backend on the same random inputs by
// ||out - ref|| / ||ref|| (f32 under 1e-5, bf16/f16 under 1e-2, never NaN).
#include <gtest/gtest.h>

#include <cmath>

#include "mox/backend/backend.h"
#include "mox/ops/ops.h"

namespace mox::testing {

inline const Device kCUDA{DeviceType::CUDA, 0};

#define MOX_REQUIRE_CUDA()                                                 \
  do {                                                                     \
    if (!::mox::device_available(::mox::testing::kCUDA))                   \
      GTEST_SKIP() << "no CUDA device (CPU-only build or no GPU visible)"; \
  } while (0)

// ||out - ref|| / ||ref|| computed in f64 on the host (either tensor may live on any
// device and have any floating dtype); NaN when either holds a NaN; with ref == 0 the
// absolute norm of out is returned.
inline double rel_err(const Tensor& out, const Tensor& ref) {
  auto a = out.to(kCPU).to(DType::F64).contiguous().to_vector<double>();
  auto b = ref.to(kCPU).to(DType::F64).contiguous().to_vector<double>();
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return NAN;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// The tolerance the issue sets for a dtype: f32 1e-5, f64 1e-12, bf16/f16 1e-2.
inline double tolerance(DType t) {
  switch (t) {
    case DType::F64: return 1e-12;
    case DType::F32: return 1e-5;
    default: return 1e-2;
  }
}

#define EXPECT_PARITY(out, ref, dt)                                                 \
  do {                                                                              \
    double e_ = ::mox::testing::rel_err((out), (ref));                              \
    EXPECT_FALSE(std::isnan(e_)) << "NaN in " #out;                                 \
    EXPECT_LT(e_, ::mox::testing::tolerance(dt)) << #out " vs " #ref " (" << dtype_name(dt) << ")"; \
  } while (0)

}  // namespace mox::testing
