#pragma once
// CPU kernels of weight-only block quantisation (ops/blockq.h has the user-facing API and the
// format). Free functions, not Backend virtuals: only the CPU runs them.
//
// Formats (K % 32 == 0, blocks of 32 consecutive weights along K in each of the N rows):
//   Q8: data int8 [N, K] (q in [-127, 127]); scale f16 [N, K/32]; w = d * q.
//   Q4: data uint8 [N, K/2]: block b of row n is bytes [16b, 16b + 16) of the row; byte j
//       holds element j in its low nibble and element j + 16 in its high nibble; w = d * (nib - 8).
//
// Packed kernel layout (built once per weight by blockq_pack, used by the SIMD kernels; the
// scalar kernel reads data/scale directly): rows are grouped into panels of 16 (the last one
// padded with zero-scale rows). Per panel p, block b:
//   Q8: 8 chunks of 64 bytes; chunk c, byte 4r + t = uint8(q[16p + r, 32b + 4c + t] + 128)
//   Q4: 4 chunks of 64 bytes; chunk c, byte 4r + t = data byte 4c + t of block b of row 16p + r
//       (low nibble: element 4c + t, high nibble: element 16 + 4c + t)
// followed (after all panels) by the scales as f32 [panel][block][16]. So one 64-byte load
// is 4 consecutive k for 16 output rows: the layout of vpdpbusd with a broadcast activation.
//
// Activations: each row of x is quantised per block of 32 as llama.cpp's quantize_row_q8_0:
// d = amax / 127 and q = clamp(roundf(x * (1 / d)), -127, 127), all in f32 (roundf: ties away
// from zero; d = 0: all q = 0).
// y[m, n] = sum_b (d_x[m, b] * d_w[n, b]) * isum[m, n, b] + bias[n], isum the exact int32 dot
// of the block (accumulated over blocks in f32).
#include <cstddef>
#include <cstdint>

namespace mox::cpu {

enum class BlockqIsa { Scalar, Avx2, Avx512Vnni };

const char* blockq_isa_name(BlockqIsa isa);  // "scalar", "avx2", "avx512_vnni"
bool blockq_isa_supported(BlockqIsa isa);    // whether this CPU runs it
BlockqIsa blockq_best_isa();                  // the fastest supported one
BlockqIsa blockq_isa();                       // the one block_linear uses now
// Forces a kernel (tests); throws mox::Error when this CPU cannot run it.
void set_blockq_isa(BlockqIsa isa);
// Back to blockq_best_isa().
void reset_blockq_isa();

// Bytes of the packed layout for an [N, K] weight.
size_t blockq_packed_bytes(bool q4, int64_t N, int64_t K);
// Packs data (int8 [N, K] or uint8 [N, K/2]) and f16 scale bits [N, K/32] into `packed`
// (blockq_packed_bytes of them, 64-byte aligned).
void blockq_pack(bool q4, const void* data, const uint16_t* scale, int64_t N, int64_t K,
                 void* packed);

// y[M, N] (row stride N) = block-quantised product of x[M, K] (row stride K, f32) with the
// weight, + bias[N] (nullable). `packed` may be null: then a temporary is packed (slow path).
void blockq_linear(bool q4, const float* x, int64_t M, int64_t K, const void* data,
                   const uint16_t* scale, const void* packed, int64_t N, const float* bias,
                   float* y);

}  // namespace mox::cpu
