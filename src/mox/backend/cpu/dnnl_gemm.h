#pragma once
// Matrix products through oneDNN (Debian's libdnnl, 2.x API): bf16 operands, f32
// accumulation, bf16 or f32 result. On Sapphire Rapids oneDNN picks its AMX-BF16 brgemm
// kernels, on AVX512-BF16 cores the AVX512 ones. Built only when CMake found oneDNN
// (MOX_HAVE_DNNL); cpu_gemm.cpp otherwise computes bf16 products in f32 through OpenBLAS.
#include <cstdint>
#include <string>

#include "mox/tensor/dtype.h"

namespace mox::cpu {

// One operand's matrices: element (i, j) of batch item b is at data[b*bs + i*rs + j*cs]
// (in elements). bs == 0 broadcasts one matrix over the batch. One of rs, cs must be 1
// (row- or column-major), as for BLAS.
struct DnnlMat {
  const void* data = nullptr;
  int64_t bs = 0, rs = 0, cs = 0;
};

// out[b] (contiguous [batch, M, N], dtype out_dtype: BF16 or F32) =
//   alpha * A[b] [M,K] @ B[b] [K,N] + beta * out[b], A and B bf16.
// Returns false (and computes nothing) when oneDNN has no fast kernel for this CPU or
// problem (only its reference implementation), so that the caller takes the f32 path.
bool dnnl_gemm_bf16(int64_t batch, int64_t M, int64_t N, int64_t K, const DnnlMat& a,
                    const DnnlMat& b, void* out, DType out_dtype, float alpha, float beta);

// C [M,N] (row-major, ldc) = alpha * op(A) @ op(B) + beta * C in f32 through oneDNN's
// dnnl_sgemm (JIT AVX-512/AVX2 kernels; measured 1.2-2x OpenBLAS 0.3.21's sgemm on the
// shapes of the Transformer and MLP here: bench/RESULTS.md). A is [M,K] (or [K,M] when ta),
// row-major with leading dimension lda; likewise B. Returns false when oneDNN is not built
// in, is switched off, the CPU lacks AVX2, or the product is small (M*N*K < 2^18: then
// the caller uses OpenBLAS, which runs it on the calling thread).
bool dnnl_sgemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                    float* C, int64_t ldc);

// Switches oneDNN off (and on again) at run time, for comparisons and for testing the f32
// path; on by default unless the environment has MOX_DNNL=0.
void dnnl_gemm_enable(bool on);
bool dnnl_gemm_enabled();

// For tests and benchmarks: how many products oneDNN computed, and the implementation it
// chose for the latest one ("brg:avx512_core_amx_bf16", ...; "" before the first).
int64_t dnnl_gemm_calls();
std::string dnnl_gemm_last_impl();

}  // namespace mox::cpu
