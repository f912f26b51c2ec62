#pragma once
// Element types. The CPU computes in f32 (f64 for gradient tests); bf16/f16 are storage
// types converted at the edges; integer types carry indices, labels and quantised data.
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace mox {

enum class DType : uint8_t { F32, F64, BF16, F16, I64, I32, I8, U8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);            // "f32", "bf16", ...
const char* safetensors_dtype_name(DType t);  // "F32", "BF16", ...
DType dtype_from_name(std::string_view name);  // accepts both spellings; throws mox::Error
bool is_floating(DType t);
bool is_integral(DType t);
// Result dtype of a binary op between a and b (f64 > f32 > bf16/f16 > i64 > i32 > i8 > u8;
// bf16 with f16 gives f32).
DType promote(DType a, DType b);

// bfloat16: upper half of an IEEE f32, round-to-nearest-even on conversion.
struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float f) { bits = from_float(f); }
  operator float() const { return std::bit_cast<float>(uint32_t(bits) << 16); }
  static uint16_t from_float(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
  }
};

// IEEE binary16 with round-to-nearest-even; handles subnormals, inf and NaN.
struct f16 {
  uint16_t bits = 0;
  f16() = default;
  explicit f16(float f) { bits = from_float(f); }
  operator float() const { return to_float(bits); }
  static uint16_t from_float(float f);
  static float to_float(uint16_t h);
};

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }
template <> constexpr DType dtype_of<f16>() { return DType::F16; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int8_t>() { return DType::I8; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }

// MOX_DISPATCH_ALL(dtype, T, ...) runs the body with T bound to the C++ type of dtype.
#define MOX_DISPATCH_ALL(DT, T, ...)                                   \
  switch (DT) {                                                        \
    case ::mox::DType::F32: { using T = float; __VA_ARGS__; break; }    \
    case ::mox::DType::F64: { using T = double; __VA_ARGS__; break; }   \
    case ::mox::DType::BF16: { using T = ::mox::bf16; __VA_ARGS__; break; } \
    case ::mox::DType::F16: { using T = ::mox::f16; __VA_ARGS__; break; } \
    case ::mox::DType::I64: { using T = int64_t; __VA_ARGS__; break; }  \
    case ::mox::DType::I32: { using T = int32_t; __VA_ARGS__; break; }  \
    case ::mox::DType::I8: { using T = int8_t; __VA_ARGS__; break; }    \
    case ::mox::DType::U8: { using T = uint8_t; __VA_ARGS__; break; }   \
  }

// Like MOX_DISPATCH_ALL for the types kernels compute in (no bf16/f16: ops convert those
// to f32 first); a half type reaching a kernel throws mox::Error naming `where`.
#define MOX_DISPATCH_COMPUTE(DT, T, where, ...)                         \
  switch (DT) {                                                        \
    case ::mox::DType::F32: { using T = float; __VA_ARGS__; break; }    \
    case ::mox::DType::F64: { using T = double; __VA_ARGS__; break; }   \
    case ::mox::DType::I64: { using T = int64_t; __VA_ARGS__; break; }  \
    case ::mox::DType::I32: { using T = int32_t; __VA_ARGS__; break; }  \
    case ::mox::DType::I8: { using T = int8_t; __VA_ARGS__; break; }    \
    case ::mox::DType::U8: { using T = uint8_t; __VA_ARGS__; break; }   \
    default:                                                           \
      throw ::mox::Error(where, std::string("kernel does not take ") + ::mox::dtype_name(DT)); \
  }

}  // namespace mox
