// Matrix products through oneDNN's sgemm (f32, when built with it and the CPU has AVX2)
// or OpenBLAS (cblas_sgemm / cblas_dgemm). Strided views whose matrices are row- or
// column-major are passed as transposes, never copied.
// bf16 @ bf16 (into bf16 or f32) goes to oneDNN (dnnl_gemm.h: AMX / AVX512-BF16 kernels,
// f32 accumulation) when the build has it and the CPU has a fast kernel; otherwise the
// operands are converted to f32 and multiplied by OpenBLAS.
#include <cblas.h>

#include "mox/backend/cpu/cpu_backend.h"
#include "mox/backend/cpu/dnnl_gemm.h"
#include "mox/backend/cpu/loops.h"

namespace mox {

namespace {

// For matrix dims (r, c) with strides (sr, sc): is it usable by BLAS, as which layout?
struct MatLayout {
  bool ok = false;
  bool transposed = false;  // column-major storage
  int64_t ld = 0;
};

MatLayout layout_of(int64_t rows, int64_t cols, int64_t sr, int64_t sc) {
  MatLayout L;
  if ((sc == 1 || cols == 1) && sr >= std::max<int64_t>(cols, 1)) {
    L = {true, false, std::max<int64_t>(sr, std::max<int64_t>(cols, 1))};
  } else if ((sr == 1 || rows == 1) && sc >= std::max<int64_t>(rows, 1)) {
    L = {true, true, std::max<int64_t>(sc, std::max<int64_t>(rows, 1))};
  }
  if (L.ok && rows == 1 && cols == 1) L.ld = 1;
  return L;
}

}  // namespace

void CpuBackend::gemm(const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb,
                      double alpha, double beta) {
  MOX_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3, "gemm", "expects 3-D operands");
  MOX_CHECK(out.is_contiguous(), "gemm", "output must be contiguous");
  const bool bf16 = a.dtype() == DType::BF16 && b.dtype() == DType::BF16;
  if (bf16)
    MOX_CHECK(out.dtype() == DType::BF16 || out.dtype() == DType::F32, "gemm",
              "bf16 product into " + out.desc() + " (needs bf16 or f32)");
  else
    MOX_CHECK(a.dtype() == b.dtype() && a.dtype() == out.dtype(), "gemm",
              "dtype mismatch: " + a.desc() + " @ " + b.desc() + " -> " + out.desc());
  const int64_t batch = out.size(0), M = out.size(1), N = out.size(2);
  const int64_t K = ta ? a.size(1) : a.size(2);
  // Logical op(a) is [M,K]: strides of op(a)'s rows/cols.
  int64_t a_sr = ta ? a.stride(2) : a.stride(1), a_sc = ta ? a.stride(1) : a.stride(2);
  int64_t b_sr = tb ? b.stride(2) : b.stride(1), b_sc = tb ? b.stride(1) : b.stride(2);
  MatLayout La = layout_of(M, K, a_sr, a_sc), Lb = layout_of(K, N, b_sr, b_sc);
  Tensor ac = a, bc = b;
  if (!La.ok) {
    ac = (ta ? a.detach().transpose(1, 2) : a.detach()).contiguous();
    a_sr = ac.stride(1);
    a_sc = ac.stride(2);
    La = layout_of(M, K, a_sr, a_sc);
    ta = false;
  }
  if (!Lb.ok) {
    bc = (tb ? b.detach().transpose(1, 2) : b.detach()).contiguous();
    b_sr = bc.stride(1);
    b_sc = bc.stride(2);
    Lb = layout_of(K, N, b_sr, b_sc);
    tb = false;
  }
  const int64_t sa = ac.size(0) == 1 ? 0 : ac.stride(0);
  const int64_t sb = bc.size(0) == 1 ? 0 : bc.stride(0);
  const CBLAS_TRANSPOSE TA = La.transposed ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE TB = Lb.transposed ? CblasTrans : CblasNoTrans;
  const int64_t ldc = std::max<int64_t>(N, 1);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (beta == 0.0) {
      fill(out, 0.0);
    } else if (out.dtype() == DType::BF16) {  // the kernels take f32
      Tensor o32 = empty(out.shape(), DType::F32);
      copy(out, o32);
      unary(UnaryOp::MulScalar, o32, o32, {beta, 0});
      copy(o32, out);
    } else {
      unary(UnaryOp::MulScalar, out, out, {beta, 0});
    }
    return;
  }

  if (bf16) {
    const cpu::DnnlMat A{ac.raw_data(), sa, a_sr, a_sc}, B{bc.raw_data(), sb, b_sr, b_sc};
    if (cpu::dnnl_gemm_bf16(batch, M, N, K, A, B, out.raw_data(), out.dtype(), float(alpha),
                            float(beta)))
      return;
    // No oneDNN (or no fast kernel for this CPU): compute in f32.
    Tensor a32 = ac.detach().to(DType::F32), b32 = bc.detach().to(DType::F32);
    Tensor o32 = out;
    if (out.dtype() != DType::F32) {
      o32 = empty(out.shape(), DType::F32);
      if (beta != 0.0) copy(out, o32);
    }
    gemm(a32, b32, o32, ta, tb, alpha, beta);
    if (o32.dtype() != out.dtype()) copy(o32, out);
    return;
  }

  auto run = [&](auto* A, auto* B, auto* C) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(A)>>;
    auto call = [&](int64_t i) {
      const T* Ai = A + i * sa;
      const T* Bi = B + i * sb;
      T* Ci = C + i * M * N;
      if constexpr (std::is_same_v<T, float>) {
        if (cpu::dnnl_sgemm_f32(La.transposed, Lb.transposed, M, N, K, float(alpha), Ai, La.ld,
                                Bi, Lb.ld, float(beta), Ci, ldc))
          return;
        cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, float(alpha), Ai, La.ld, Bi, Lb.ld, float(beta), Ci, ldc);
      } else
        cblas_dgemm(CblasRowMajor, TA, TB, M, N, K, alpha, Ai, La.ld, Bi, Lb.ld, beta, Ci, ldc);
    };
    // Small matrices in a big batch: parallelise over the batch with single-threaded BLAS
    // calls; otherwise let BLAS use the threads.
    int64_t flops = M * N * K;
    if (batch > 1 && flops < (int64_t(1) << 18)) {
      int nt = cpu::threads_for(batch * flops, int64_t(1) << 18);
      if (nt > 1) {
        openblas_set_num_threads(1);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t i = 0; i < batch; i++) call(i);
        openblas_set_num_threads(get_num_threads());
        return;
      }
    }
    for (int64_t i = 0; i < batch; i++) call(i);
  };
  if (out.dtype() == DType::F32)
    run(static_cast<const float*>(ac.raw_data()), static_cast<const float*>(bc.raw_data()),
        static_cast<float*>(out.raw_data()));
  else if (out.dtype() == DType::F64)
    run(static_cast<const double*>(ac.raw_data()), static_cast<const double*>(bc.raw_data()),
        static_cast<double*>(out.raw_data()));
  else
    throw Error("gemm", std::string("unsupported dtype ") + dtype_name(out.dtype()));
}

}  // namespace mox
