// GEMM through cuBLASLt: f32 (f32 compute; TF32 only with MOX_TF32=1), f64, and bf16/f16
// inputs with f32 accumulation writing bf16/f16 or f32. Row-major products are issued as
// the column-major product of the transposes (out^T = op(b)^T op(a)^T), so a strided
// operand with a unit stride in either dim is passed as is, transposed or not, never copied.
// Matrix layouts, the operation descriptor and the chosen algorithm are cached per shape.
#include <cublasLt.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "mox/backend/cuda/cuda_backend.h"
#include "mox/backend/cuda/cuda_common.cuh"

namespace mox {

namespace {

void lt_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error("gemm", std::string(what) + " failed: " + cublasLtGetStatusString(s));
}
#define MOX_LT(expr) lt_check((expr), #expr)

cublasLtHandle_t lt_handle() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t x;
    MOX_LT(cublasLtCreate(&x));
    return x;
  }();
  return h;
}

constexpr size_t kWorkspace = size_t(32) << 20;

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F64: return CUDA_R_64F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: throw Error("gemm", std::string("unsupported dtype ") + dtype_name(t));
  }
}

// One operand in cuBLAS's column-major terms.
struct Operand {
  cublasOperation_t op;
  int64_t rows, cols, ld;  // of the stored column-major matrix (before op)
  int64_t batch_stride;
};

// L is the logical row-major [R, C] matrix (per batch) with strides (sR, sC). cuBLAS is to
// receive L^T ([C, R] column-major) as op(stored).
Operand as_transposed(int64_t R, int64_t C, int64_t sR, int64_t sC, int64_t sB, const char* name) {
  if (C == 1) sC = 1;
  if (R == 1) sR = std::max<int64_t>(sR, C);
  if (sC == 1 && sR >= C) return {CUBLAS_OP_N, C, R, std::max<int64_t>(sR, 1), sB};  // L^T column-major, ld sR
  if (sR == 1 || R == 1) {
    int64_t ld = C == 1 ? std::max<int64_t>(R, 1) : sC;
    if (ld >= R) return {CUBLAS_OP_T, R, C, std::max<int64_t>(ld, 1), sB};  // L column-major, transposed
  }
  throw Error("gemm", std::string("operand ") + name + " needs a unit stride in one of its two dims "
                          "(strides " + std::to_string(sR) + ", " + std::to_string(sC) + ")");
}

struct Key {
  int epi;  // 0 none, 1 bias, 2 bias + GELU with the pre-activation as aux output
  int ta, tb, dta, dtc, tf32;
  int64_t m, n, k, lda, ldb, ldc, batch, sa, sb, sc;
  int align;
  bool operator<(const Key& o) const {
    return std::tie(epi, ta, tb, dta, dtc, tf32, m, n, k, lda, ldb, ldc, batch, sa, sb, sc, align) <
           std::tie(o.epi, o.ta, o.tb, o.dta, o.dtc, o.tf32, o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.batch,
                    o.sa, o.sb, o.sc, o.align);
  }
};

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

cublasLtMatrixLayout_t layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                              int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l;
  MOX_LT(cublasLtMatrixLayoutCreate(&l, t, uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    int32_t bc = int32_t(batch);
    MOX_LT(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    MOX_LT(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                            sizeof stride));
  }
  return l;
}

int alignment(const void* p) {
  uintptr_t u = reinterpret_cast<uintptr_t>(p);
  for (int a = 16; a > 1; a /= 2)
    if (u % a == 0) return a;
  return 1;
}

bool tf32_allowed() {
  static bool on = [] {
    const char* s = std::getenv("MOX_TF32");
    return s && std::strcmp(s, "0") != 0;
  }();
  return on;
}

// One cuBLASLt product; `ep` (bias / bias + GELU) only where supports_epilogue() said yes.
void lt_gemm(CudaBackend& be, const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb,
             double alpha, double beta, const GemmEpilogue* ep);

}  // namespace

void CudaBackend::gemm(const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb,
                       double alpha, double beta) {
  lt_gemm(*this, a, b, out, ta, tb, alpha, beta, nullptr);
}

void CudaBackend::gemm_epilogue(const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb,
                                const GemmEpilogue& e) {
  // cuBLASLt's epilogues: one batch, bias in the output's dtype, f32 accumulation (not f64),
  // and for GELU an aux (pre-activation) buffer whose leading dim is a multiple of 8.
  const DType dt = out.dtype();
  bool ok = dt != DType::F64 && out.dim() == 3 && out.size(0) == 1 && out.is_contiguous() &&
            (!e.bias.defined() || (e.bias.dtype() == dt && e.bias.is_contiguous() && e.bias.numel() == out.size(2)));
  if (e.residual.defined())
    ok = ok && !e.gelu && e.residual.dtype() == dt && e.residual.is_contiguous() && e.residual.shape() == out.shape();
  if (e.gelu)
    ok = ok && e.pre.defined() && e.pre.dtype() == dt && e.pre.is_contiguous() &&
         e.pre.shape() == out.shape() && out.size(2) % 8 == 0 &&
         reinterpret_cast<uintptr_t>(e.pre.raw_data()) % 16 == 0;
  if (!ok) return Backend::gemm_epilogue(a, b, out, ta, tb, e);
  if (!e.bias.defined() && !e.gelu && !e.residual.defined()) return gemm(a, b, out, ta, tb, 1.0, 0.0);
  // D = product + bias (+ C = residual with beta 1): cuBLASLt reads C and writes D apart.
  lt_gemm(*this, a, b, out, ta, tb, 1.0, e.residual.defined() ? 1.0 : 0.0, &e);
}

namespace {

void lt_gemm(CudaBackend& be, const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb,
             double alpha, double beta, const GemmEpilogue* ep) {
  MOX_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3, "gemm",
            "expects 3-D operands, got " + a.desc() + ", " + b.desc() + ", " + out.desc());
  MOX_CHECK(out.is_contiguous(), "gemm", "output must be contiguous, got " + out.desc());
  MOX_CHECK(a.dtype() == b.dtype(), "gemm", "dtype mismatch " + a.desc() + " and " + b.desc());
  const DType din = a.dtype(), dout = out.dtype();
  const bool half_in = din == DType::BF16 || din == DType::F16;
  MOX_CHECK(dout == din || (half_in && dout == DType::F32), "gemm",
            "output " + out.desc() + " does not match inputs " + a.desc());
  const int64_t B = out.size(0), M = out.size(1), N = out.size(2);
  const int64_t K = ta ? a.size(1) : a.size(2);
  MOX_CHECK((ta ? a.size(2) : a.size(1)) == M && (tb ? b.size(2) : b.size(1)) == K &&
                (tb ? b.size(1) : b.size(2)) == N,
            "gemm", "shapes do not match: " + a.desc() + ", " + b.desc() + " -> " + out.desc());
  if (B == 0 || M == 0 || N == 0) return;
  if (K == 0) {  // empty sum: out = beta * out, then the epilogue
    if (ep) return be.Backend::gemm_epilogue(a, b, out, ta, tb, *ep);
    if (beta == 0) be.fill(out, 0.0);
    else if (beta != 1) be.unary(UnaryOp::MulScalar, out, out, {beta, 0});
    return;
  }
  MOX_CHECK(a.size(0) == B || a.size(0) == 1, "gemm", "batch of " + a.desc() + " vs " + out.desc());
  MOX_CHECK(b.size(0) == B || b.size(0) == 1, "gemm", "batch of " + b.desc() + " vs " + out.desc());

  // Logical row-major Al [M, K] and Bl [K, N] with their strides.
  int64_t aR = ta ? a.stride(2) : a.stride(1), aC = ta ? a.stride(1) : a.stride(2);
  int64_t bR = tb ? b.stride(2) : b.stride(1), bC = tb ? b.stride(1) : b.stride(2);
  int64_t sa = a.size(0) == 1 ? 0 : a.stride(0), sb = b.size(0) == 1 ? 0 : b.stride(0);
  // cuBLAS computes D^T [N, M] = op(X) [N, K] * op(Y) [K, M] with X ~ Bl^T, Y ~ Al^T.
  Operand X = as_transposed(K, N, bR, bC, sb, "b");
  Operand Y = as_transposed(M, K, aR, aC, sa, "a");

  const bool tf32 = din == DType::F32 && tf32_allowed();
  int align = std::min({alignment(a.raw_data()), alignment(b.raw_data()), alignment(out.raw_data())});
  if (ep && ep->residual.defined()) align = std::min(align, alignment(ep->residual.raw_data()));
  const int epi = !ep ? 0 : ep->gelu ? 2 : ep->bias.defined() ? 1 : 0;
  Key key{epi, int(X.op), int(Y.op), int(din), int(dout), int(tf32), N, M, K, X.ld, Y.ld, N, B,
          X.batch_stride, Y.batch_stride, M * N, align};

  static std::mutex mu;
  static std::map<Key, Plan> plans;
  std::lock_guard<std::mutex> lk(mu);
  auto it = plans.find(key);
  if (it == plans.end()) {
    Plan p;
    cublasComputeType_t ct = din == DType::F64 ? CUBLAS_COMPUTE_64F
                             : tf32            ? CUBLAS_COMPUTE_32F_FAST_TF32
                                               : CUBLAS_COMPUTE_32F;
    cudaDataType_t scale = din == DType::F64 ? CUDA_R_64F : CUDA_R_32F;
    MOX_LT(cublasLtMatmulDescCreate(&p.op, ct, scale));
    cublasOperation_t opx = X.op, opy = Y.op;
    MOX_LT(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opx, sizeof opx));
    MOX_LT(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opy, sizeof opy));
    p.a = layout(cuda_type(din), X.rows, X.cols, X.ld, B, X.batch_stride);
    p.b = layout(cuda_type(din), Y.rows, Y.cols, Y.ld, B, Y.batch_stride);
    p.c = layout(cuda_type(dout), N, M, N, B, M * N);
    if (epi) {
      // out^T is [N, M] column-major: the bias runs along its rows (the output features).
      cublasLtEpilogue_t e = epi == 2 ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_BIAS;
      MOX_LT(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e));
      int32_t bt = int32_t(cuda_type(dout));
      MOX_LT(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
      if (epi == 2) {
        int64_t ld = N;
        MOX_LT(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld));
      }
    }

    cublasLtMatmulPreference_t pref;
    MOX_LT(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = kWorkspace;
    MOX_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    uint32_t al = uint32_t(align);
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      MOX_LT(cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof al));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt_handle(), p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || found == 0)
      throw Error("gemm", "cuBLASLt has no algorithm for " + a.desc() + (ta ? "^T" : "") + " @ " +
                              b.desc() + (tb ? "^T" : "") + " -> " + out.desc());
    p.algo = res.algo;
    it = plans.emplace(key, p).first;
  }
  const Plan& p = it->second;
  if (epi) {  // the pointers change from call to call; the descriptor is ours under the lock
    const void* bias = ep->bias.defined() ? ep->bias.raw_data() : nullptr;
    MOX_LT(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (ep->gelu) {
      void* aux = ep->pre.raw_data();
      MOX_LT(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
    }
  }
  void* ws = cuda::workspace(kWorkspace);
  const void* c_ptr = ep && ep->residual.defined() ? ep->residual.raw_data() : out.raw_data();
  if (din == DType::F64) {
    double al = alpha, bt = beta;
    MOX_LT(cublasLtMatmul(lt_handle(), p.op, &al, b.raw_data(), p.a, a.raw_data(), p.b, &bt,
                          c_ptr, p.c, out.raw_data(), p.c, &p.algo, ws, kWorkspace, cuda::stream()));
  } else {
    float al = float(alpha), bt = float(beta);
    MOX_LT(cublasLtMatmul(lt_handle(), p.op, &al, b.raw_data(), p.a, a.raw_data(), p.b, &bt,
                          c_ptr, p.c, out.raw_data(), p.c, &p.algo, ws, kWorkspace, cuda::stream()));
  }
}

}  // namespace

}  // namespace mox
