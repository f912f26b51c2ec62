#pragma once
// Weight-only block quantisation for language-model inference (llama.cpp's Q8_0 / Q4_0 idea
// in mox's own format), dequantised inside the matmul kernel. Inference only (no autograd),
// CPU only.
//
// Format of a weight W [N, K] (N outputs, K inputs), K % 32 == 0: each row is cut into
// K/32 blocks of 32 consecutive weights along K, each block with its own scale d.
//   Q8: data  I8  [N, K]     q in [-127, 127], w = d * q
//       scale F16 [N, K/32]  d = amax / 127 (amax = max |w| of the block; rounded to f16,
//                            then q = clamp(round(w / d), -127, 127); d = 0: all q = 0)
//   Q4: data  U8  [N, K/2]   block b of row n is bytes [16b, 16b + 16) of the row; byte j
//                            holds element j in its low nibble and element j + 16 in its
//                            high nibble; w = d * (nibble - 8), nibble in [0, 15]
//       scale F16 [N, K/32]  d chosen per block to minimise the block's squared error: the
//                            candidates are llama.cpp's Q4_0 rule d = max / -8 (max: the
//                            signed value of largest magnitude), max / c for c in -8 .. -7 and
//                            7 .. 7.5 in steps of 1/8 and 1/16, and the least-squares scale
//                            sum(w q) / sum(q q) of the best of those; each rounded to f16
//                            and applied with q = clamp(round(w / d), -8, 7). So the error is
//                            never worse than the plain max / -8 rule's.
// block_linear computes y = x W^T + bias as llama.cpp does: each row of x is quantised per
// block of 32 to int8 as llama.cpp's quantize_row_q8_0 (in f32: d_x = amax / 127,
// q = clamp(roundf(x * (1 / d_x)), -127, 127), roundf's ties away from zero; d_x = 0: q = 0)
// and
//   y[m, n] = sum_b d_x[m, b] * d_w[n, b] * (sum_{i in b} qx[m, i] * qw[n, i]) + bias[n]
// with exact int32 dot products per block and the sum over blocks in f32.
//
// In memory a BlockQuantWeight also keeps `packed`, the kernel's layout of the same numbers
// (backend/blockq.h; derived, never saved). block_quantize and block_weight_from build it;
// a weight assembled by hand without it still works (packed per call: slow).
#include <cstdint>
#include <string_view>

#include "mox/tensor/tensor.h"

namespace mox {

enum class BlockFormat { Q8, Q4 };

const char* block_format_name(BlockFormat f);           // "q8" / "q4"
BlockFormat block_format_from_name(std::string_view s);  // throws mox::Error

struct BlockQuantWeight {
  BlockFormat format = BlockFormat::Q8;
  int64_t rows = 0, cols = 0;  // N, K of the float weight [N, K]
  Tensor data, scale;          // as above
  Tensor packed;               // U8: kernel layout of data + scale (derived; not saved)
};

// w F32 (or BF16/F16) [N, K] with K % 32 == 0.
BlockQuantWeight block_quantize(const Tensor& w, BlockFormat f);
// From stored tensors (e.g. a safetensors file): checks dtypes and shapes.
BlockQuantWeight block_weight_from(BlockFormat f, const Tensor& data, const Tensor& scale);
// F32 [N, K]: d * q.
Tensor block_dequantize(const BlockQuantWeight& w);
// x F32 (BF16/F16 converted) [..., K] -> F32 [..., N]; bias F32 [N] or undefined.
Tensor block_linear(const Tensor& x, const BlockQuantWeight& w, const Tensor& bias = Tensor());
// Bytes of data + scale (the stored format; `packed` is not counted).
int64_t block_weight_bytes(const BlockQuantWeight& w);

}  // namespace mox
