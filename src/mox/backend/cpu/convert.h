#pragma once
// Element conversion between any two mox dtypes (bf16/f16 go through f32).
#include <type_traits>

#include "mox/tensor/dtype.h"

namespace mox::cpu {

template <typename T>
constexpr bool is_half_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

template <typename D, typename S>
inline D convert(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (is_half_v<S>) {
    return convert<D>(float(s));
  } else if constexpr (is_half_v<D>) {
    return D(float(s));
  } else {
    return static_cast<D>(s);
  }
}

}  // namespace mox::cpu
