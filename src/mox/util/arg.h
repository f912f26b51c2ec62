#pragma once
// MOX_ARG(type, name) = default; declares a chainable option, as LibTorch's TORCH_ARG does:
// Conv2dOptions(3, 16, 3).stride(2).padding(1) sets, .stride() reads back.
#define MOX_ARG(T, name)                    \
 public:                                    \
  auto& name(const T& new_value) {          \
    name##_ = new_value;                    \
    return *this;                           \
  }                                         \
  const T& name() const { return name##_; } \
                                            \
 private:                                   \
  T name##_
