// cuBLASLt GEMMs against the CPU backend: f32, f64, bf16 and f16 inputs, transposed and
// strided operands (column blocks of a wider matrix), broadcast batches, alpha/beta, f32
// outputs from bf16 inputs, and the bias / bias + GELU epilogues.
#include <gtest/gtest.h>

#include "cuda/cuda_test_util.h"
#include "mox/ops/autocast.h"

#include <optional>

namespace mox {
namespace {

using testing::kCUDA;

// a (B,M,K) or its transpose, b (B,K,N) or its transpose, as strided column blocks.
struct Case {
  int64_t B, M, N, K;
  bool ta, tb, strided, broadcast_b;
};

void run_case(const Case& c, DType dt, double alpha, double beta, DType out_dt) {
  Generator g(uint64_t(c.M * 131 + c.N * 7 + c.K));
  auto operand = [&](int64_t r, int64_t col, int64_t batch) {
    // a wider matrix of which the first `col` columns are used when strided
    Tensor full = randn({batch, r, c.strided ? col + 5 : col}, &g).to(dt);
    return full.narrow(2, 0, col);
  };
  Tensor a = c.ta ? operand(c.K, c.M, c.B).transpose(1, 2) : operand(c.M, c.K, c.B);
  Tensor b = c.tb ? operand(c.N, c.K, c.broadcast_b ? 1 : c.B).transpose(1, 2) : operand(c.K, c.N, c.broadcast_b ? 1 : c.B);
  // gemm's ta/tb mean "a is given as [B,K,M]": pass the stored layouts with the flags
  Tensor as = c.ta ? a.transpose(1, 2) : a, bs = c.tb ? b.transpose(1, 2) : b;
  Tensor init = randn({c.B, c.M, c.N}, &g).to(out_dt);
  Tensor ref = init.clone(), out = init.to(kCUDA);
  // CPU reference in f32 (f64 for f64) on the same rounded values
  DType cdt = dt == DType::F64 ? DType::F64 : DType::F32;
  Tensor ref32 = ref.to(cdt);
  backend_for(kCPU).gemm(as.to(cdt), bs.to(cdt), ref32, c.ta, c.tb, alpha, beta);
  backend_for(kCUDA).gemm(as.to(kCUDA), bs.to(kCUDA), out, c.ta, c.tb, alpha, beta);
  SCOPED_TRACE("B" + std::to_string(c.B) + " M" + std::to_string(c.M) + " N" + std::to_string(c.N) + " K" +
               std::to_string(c.K) + " ta" + std::to_string(c.ta) + " tb" + std::to_string(c.tb) + " strided" +
               std::to_string(c.strided) + " bcast" + std::to_string(c.broadcast_b) + " " + dtype_name(dt));
  EXPECT_PARITY(out, ref32, out_dt == DType::F64 ? DType::F64 : dt);
}

TEST(CudaGemm, MatchesTheCpu) {
  MOX_REQUIRE_CUDA();
  const std::vector<Case> cases = {
      {1, 64, 48, 32, false, false, false, false}, {3, 17, 33, 65, false, false, false, false},
      {2, 31, 9, 40, true, false, false, false},   {2, 31, 9, 40, false, true, false, false},
      {2, 31, 9, 40, true, true, false, false},    {4, 16, 24, 8, false, false, true, false},
      {4, 16, 24, 8, false, true, true, true},     {1, 1, 50, 64, false, true, false, false},
      {1, 70, 1, 30, false, false, false, false},  {2, 128, 256, 768, false, true, false, false}};
  for (const Case& c : cases) {
    run_case(c, DType::F32, 1.0, 0.0, DType::F32);
    run_case(c, DType::F64, 1.0, 0.0, DType::F64);
    run_case(c, DType::BF16, 1.0, 0.0, DType::BF16);
    run_case(c, DType::F16, 1.0, 0.0, DType::F16);
  }
  run_case(cases[1], DType::F32, 0.5, 1.0, DType::F32);
  run_case(cases[4], DType::F32, -2.0, 0.25, DType::F32);
  run_case(cases[2], DType::BF16, 1.0, 1.0, DType::F32);  // bf16 inputs, f32 accumulation output
}

TEST(CudaGemm, BiasAndGeluEpilogues) {
  MOX_REQUIRE_CUDA();
  Generator g(9);
  for (DType dt : {DType::F32, DType::BF16}) {
    for (int64_t N : {64, 36}) {  // 36: no aux-aligned epilogue, the composed fallback
      Tensor x = randn({1, 50, 96}, &g).to(dt), w = randn({N, 96}, &g).to(dt), bias = randn({N}, &g).to(dt);
      for (bool gelu : {false, true}) {
        GemmEpilogue ec, eg;
        ec.bias = bias;
        eg.bias = bias.to(kCUDA);
        ec.gelu = eg.gelu = gelu;
        DType cdt = DType::F32;
        Tensor oc = empty({1, 50, N}, cdt), og = empty({1, 50, N}, TensorOptions(dt, kCUDA));
        if (gelu) {
          ec.pre = empty({1, 50, N}, cdt);
          eg.pre = empty({1, 50, N}, TensorOptions(dt, kCUDA));
        }
        ec.bias = bias.to(cdt);
        backend_for(kCPU).gemm_epilogue(x.to(cdt), w.to(cdt).t().unsqueeze(0), oc, false, false, ec);
        backend_for(kCUDA).gemm_epilogue(x.to(kCUDA), w.to(kCUDA).t().unsqueeze(0), og, false, false, eg);
        SCOPED_TRACE("N " + std::to_string(N) + " gelu " + std::to_string(gelu));
        EXPECT_PARITY(og, oc, dt);
        if (gelu) EXPECT_PARITY(eg.pre, ec.pre, dt);
      }
    }
  }
}

TEST(CudaGemm, LinearGeluThroughTheOps) {
  MOX_REQUIRE_CUDA();
  Generator g(4);
  Tensor x = randn({4, 8, 64}, &g), w = randn({128, 64}, &g), b = randn({128}, &g);
  Tensor xc = x.clone().requires_grad_(), wc = w.clone().requires_grad_(), bc = b.clone().requires_grad_();
  Tensor xg = x.to(kCUDA).requires_grad_(), wg = w.to(kCUDA).requires_grad_(), bg = b.to(kCUDA).requires_grad_();
  Tensor yc = linear_gelu(xc, wc, bc), yg = linear_gelu(xg, wg, bg);
  EXPECT_PARITY(yg, yc, DType::F32);
  Tensor gy = randn(yc.shape(), &g);
  sum(mul(yc, gy)).backward();
  sum(mul(yg, gy.to(kCUDA))).backward();
  EXPECT_PARITY(xg.grad(), xc.grad(), DType::F32);
  EXPECT_PARITY(wg.grad(), wc.grad(), DType::F32);
  EXPECT_PARITY(bg.grad(), bc.grad(), DType::F32);
}

}  // namespace
}  // namespace mox

namespace mox {
namespace {

TEST(CudaGemm, LinearResidualF32AndAutocast) {
  MOX_REQUIRE_CUDA();
  Generator g(6);
  Tensor x = randn({4, 8, 64}, &g), w = randn({96, 64}, &g), b = randn({96}, &g), r = randn({4, 8, 96}, &g);
  for (bool mixed : {false, true}) {
    Tensor xc = x.clone().requires_grad_(), wc = w.clone().requires_grad_(), bc = b.clone().requires_grad_(),
           rc = r.clone().requires_grad_();
    Tensor xg = x.to(kCUDA).requires_grad_(), wg = w.to(kCUDA).requires_grad_(), bg = b.to(kCUDA).requires_grad_(),
           rg = r.to(kCUDA).requires_grad_();
    Tensor yc, yg;
    {
      std::optional<AutocastGuard> ac;
      if (mixed) ac.emplace(DType::BF16);
      yc = linear_residual(xc, wc, bc, rc);  // CPU: the two ops
      yg = linear_residual(xg, wg, bg, rg);  // GPU: one GEMM, bf16 operands, f32 output
    }
    EXPECT_EQ(yg.dtype(), DType::F32);
    const DType tol = mixed ? DType::BF16 : DType::F32;
    EXPECT_PARITY(yg, yc, tol);
    Tensor gy = randn(yc.shape(), &g);
    sum(mul(yc, gy)).backward();
    sum(mul(yg, gy.to(kCUDA))).backward();
    EXPECT_PARITY(xg.grad(), xc.grad(), tol);
    EXPECT_PARITY(wg.grad(), wc.grad(), tol);
    EXPECT_PARITY(bg.grad(), bc.grad(), tol);
    EXPECT_PARITY(rg.grad(), rc.grad(), DType::F32);
  }
}

}  // namespace
}  // namespace mox
