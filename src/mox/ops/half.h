#pragma once
// How ops/ treats bf16/f16 data: a backend whose kernels read them directly (native_half:
// CUDA) gets them as they are; otherwise (the CPU) the op computes in f32 and converts back.
#include "mox/backend/backend.h"

namespace mox::detail {

inline bool is_half(DType t) { return t == DType::BF16 || t == DType::F16; }
// True when x is bf16/f16 and its device's kernels do not read half types.
inline bool via_f32(const Tensor& x) { return is_half(x.dtype()) && !backend_for(x).native_half(); }
// The dtype of statistics kept next to data of dtype t (norm mean/rstd, attention lse,
// per-row losses): f32 for half data.
inline DType stats_dtype(DType t) { return is_half(t) ? DType::F32 : t; }

}  // namespace mox::detail
