#pragma once
// Shared shape rules of the 2-D pooling layers.
#include <optional>

#include "mox/backend/backend.h"
#include "mox/nn/layers/layer_util.h"
#include "mox/nn/options.h"

namespace mox::nn {

// Validates the window and builds the op's parameters (stride defaults to the kernel).
inline Pool2dParams make_pool_params(const char* layer, Size2 kernel, std::optional<Size2> stride,
                                     Size2 padding, bool ceil_mode) {
  Size2 s = stride.value_or(kernel);
  MOX_CHECK(kernel.h > 0 && kernel.w > 0 && s.h > 0 && s.w > 0, layer,
            "kernel_size and stride must be positive, got kernel_size=" + kernel.str() +
                " stride=" + s.str());
  MOX_CHECK(padding.h >= 0 && padding.w >= 0 && 2 * padding.h <= kernel.h &&
                2 * padding.w <= kernel.w,
            layer,
            "padding must be between 0 and half the kernel size, got padding=" + padding.str() +
                " kernel_size=" + kernel.str());
  Pool2dParams p;
  p.kh = kernel.h;
  p.kw = kernel.w;
  p.stride_h = s.h;
  p.stride_w = s.w;
  p.pad_h = padding.h;
  p.pad_w = padding.w;
  p.ceil_mode = ceil_mode;
  return p;
}

// [N, C, H, W] or [C, H, W] -> same rank with pooled H, W.
inline Shape pool_output_shape(const char* layer, const Pool2dParams& p, const Shape& in) {
  check_rank(in, 3, 4, layer, "[N, C, H, W] or [C, H, W]");
  size_t h = in.size() - 2;
  Shape out = in;
  out[h] = window_out(in[h], p.kh, p.stride_h, p.pad_h, 1, p.ceil_mode, layer, in);
  out[h + 1] = window_out(in[h + 1], p.kw, p.stride_w, p.pad_w, 1, p.ceil_mode, layer, in);
  return out;
}

// "2" for a square window, "(2, 3)" otherwise (how PyTorch echoes the arguments).
inline std::string pool_arg_str(int64_t h, int64_t w) {
  return h == w ? std::to_string(h) : Size2(h, w).str();
}

}  // namespace mox::nn
