#pragma once
// Internal to the CPU convolution and pooling kernels, which are split by concept:
// cpu_conv.cpp (conv2d dispatch, im2col + GEMM and the 1x1 path), cpu_winograd.cpp
// (Winograd F(2x2, 3x3) for f32 3x3 stride-1 convolutions) and cpu_pool.cpp (max/avg
// pooling). Holds what more than one of them needs: the BLAS wrapper, the convolution
// geometry, the thread partition, the argument checks and the Winograd entry points.
#include <cblas.h>

#include <cstdint>
#include <string>

#include "mox/backend/cpu/cpu_backend.h"

namespace mox::cpu::conv {

// Row-major C[M,N] = alpha * op(A) op(B) + beta * C.
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                 int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// Geometry of one convolution, shared by forward and backward (im2col and Winograd).
struct ConvGeom {
  int64_t N, C, H, W, O, Ho, Wo, kh, kw, G, Cg, Og;
  int64_t P;   // Ho*Wo: output pixels per plane
  int64_t Kc;  // Cg*kh*kw: rows of the column matrix (GEMM depth)
  Conv2dParams p;
  bool pointwise;  // 1x1, stride 1, no padding: the input plane already is the column matrix
};

// Part t of T of [0, n).
inline int64_t part(int64_t n, int t, int T) { return n * t / T; }

// Argument checks of the conv and pooling entry points.
inline void check_float(const Tensor& t, const char* op) {
  if (t.dtype() != DType::F32 && t.dtype() != DType::F64)
    throw Error(op, std::string("CPU kernel supports f32 and f64, got ") + t.desc());
}

inline void check_contig(const Tensor& t, const char* op, const char* what) {
  if (t.defined() && !t.is_contiguous())
    throw Error(op, std::string(what) + " must be contiguous, got strides " +
                        shape_str(t.strides()) + " for " + t.desc());
}

// Winograd F(2x2, 3x3) path (cpu_winograd.cpp), f32 only.
// Whether it applies to a convolution mapping cin -> cout channels on `threads` threads.
bool wino_ok(const ConvGeom& g, int64_t cin, int64_t cout, int threads);
// x (N,C,H,W), w (O,C,3,3), bias (O) -> y (N,O,Ho,Wo), with c.p.relu applied.
void wino_forward(const float* x, const float* w, const float* bias, float* y, const ConvGeom& c,
                  int nt);
// gy (N,O,Ho,Wo), w (O,C,3,3) -> gx (N,C,H,W).
void wino_backward_data(const float* gy, const float* w, float* gx, const ConvGeom& c, int nt);
// x (N,C,H,W), gy (N,O,Ho,Wo) -> gw (O,C,3,3), gb (O) (gb may be null); overwritten.
void wino_backward_weight(const float* x, const float* gy, float* gw, float* gb,
                          const ConvGeom& c, int nt);

// Direct convolution for few input channels (cpu_conv_direct.cpp), f32 only: 1x1 stride,
// no padding, no dilation, one group, C*kh*kw <= 27. Whether it applies:
bool direct_ok(const ConvGeom& g);
// x (N,C,H,W), w (O,C,kh,kw), bias (O) -> y (N,O,Ho,Wo), with g.p.relu applied.
void direct_forward(const float* x, const float* w, const float* bias, float* y,
                    const ConvGeom& g, int nt);
// x (N,C,H,W), gy (N,O,Ho,Wo) -> gw (O,C,kh,kw), gb (O) (each may be null; overwritten).
// relu_out (N,O,Ho,Wo) or null: gy counts only where relu_out > 0 (fused ReLU backward).
void direct_backward_weight(const float* x, const float* gy, const float* relu_out, float* gw,
                            float* gb, const ConvGeom& g, int nt);

}  // namespace mox::cpu::conv
