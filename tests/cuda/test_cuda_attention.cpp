// CUDA fused attention (cuda_attention.cu) against the CPU backend: forward out and lse,
// backward gq/gk/gv, for f32 (SIMT kernels, 1e-5), bf16/f16 (tensor-core kernels for D = 64
// and 128, SIMT for other D; 1e-2 against the CPU in f32 on the same rounded inputs) and
// f64. Operands are laid out as the ops layer passes them: q, k, v column blocks of one
// [B, T, 3C] projection (or of [B, Tq, C] and [B, Tk, 2C] buffers for Tq != Tk), out and
// the gradients [B, T, H, D] buffers viewed as [B, H, T, D]. Cases: causal or not, Tq == Tk
// and Tq < Tk (decode, Tq = 1), a key padding mask with fully masked rows, T = 1 .. 1024.
// Also attention_qkv through the ops on the GPU, forward and backward.
#include <cmath>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "mox/mox.h"

using namespace mox;
using mox::testing::kCUDA;

namespace {

struct Case {
  int64_t B, H, Tq, Tk, D;
  bool causal, pad;
  std::string str() const {
    return "B=" + std::to_string(B) + " H=" + std::to_string(H) + " Tq=" + std::to_string(Tq) +
           " Tk=" + std::to_string(Tk) + " D=" + std::to_string(D) + (causal ? " causal" : "") +
           (pad ? " pad" : "");
  }
};

// Block i of a packed [B, T, n*H*D] tensor as a [B, H, T, D] view (unit stride in D, stride
// n*H*D in T, D in H).
Tensor block(const Tensor& packed, int64_t i, int64_t H, int64_t D) {
  const int64_t B = packed.size(0), T = packed.size(1), C = H * D;
  return packed.narrow(2, i * C, C).view({B, T, H, D}).transpose(1, 2);
}

// An uninitialised [B, H, T, D] view of a [B, T, H, D] buffer.
Tensor heads_last(int64_t B, int64_t H, int64_t T, int64_t D, TensorOptions opt) {
  return empty({B, T, H, D}, opt).transpose(1, 2);
}

// The padding mask of the tests: batch 0 hides keys j % 5 == 3, batch 1 keys 0..2 (so under
// the causal mask the first rows see nothing), batch 2 (and on) every key (fully masked rows).
Tensor make_mask(int64_t B, int64_t Tk) {
  std::vector<uint8_t> m(size_t(B * Tk));
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < Tk; j++)
      m[size_t(b * Tk + j)] = b == 0 ? (j % 5 == 3) : b == 1 ? (j < 3) : 1;
  return from_vector(m, {B, Tk}, TensorOptions(DType::U8));
}

// lse: the -inf entries must agree; the finite ones are compared by relative norm.
void expect_lse(const Tensor& got, const Tensor& ref, double tol) {
  auto a = got.to(kCPU).to(DType::F64).contiguous().to_vector<double>();
  auto b = ref.to(kCPU).to(DType::F64).contiguous().to_vector<double>();
  ASSERT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  int mismatched = 0;
  for (size_t i = 0; i < a.size(); i++) {
    const bool ia = std::isinf(a[i]) && a[i] < 0, ib = std::isinf(b[i]) && b[i] < 0;
    if (ia != ib || std::isnan(a[i])) {
      mismatched++;
      continue;
    }
    if (ib) continue;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  EXPECT_EQ(mismatched, 0) << "lse entries that disagree on -inf (or NaN)";
  const double e = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  EXPECT_LT(e, tol) << "lse";
}

// Runs one case on both backends: dt is the GPU's dtype (the CPU computes in f32 on the same
// rounded values, or f64 for f64); lse_dt the GPU's lse dtype.
void run_case(const Case& c, DType dt, DType lse_dt, uint64_t seed, bool backward = true) {
  SCOPED_TRACE(c.str() + " " + dtype_name(dt) + " lse " + dtype_name(lse_dt));
  const DType rt = dt == DType::F64 ? DType::F64 : DType::F32;
  const TensorOptions gopt(dt, kCUDA), copt(rt, kCPU);
  const int64_t B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, D = c.D, C = H * D;
  Generator gen(seed);
  // a packed [B, T, n*C] tensor rounded to dt: (CPU copy in rt, GPU copy in dt)
  auto packed = [&](int64_t T, int64_t n) {
    Tensor x = randn({B, T, n * C}, &gen).to(dt);
    return std::pair<Tensor, Tensor>{x.to(rt), x.to(kCUDA)};
  };
  const bool self = Tq == Tk;  // q, k, v from one [B, T, 3C] projection
  Tensor qc, kc, vc, qg, kg, vg;
  if (self) {
    auto [pc, pg] = packed(Tq, 3);
    qc = block(pc, 0, H, D), kc = block(pc, 1, H, D), vc = block(pc, 2, H, D);
    qg = block(pg, 0, H, D), kg = block(pg, 1, H, D), vg = block(pg, 2, H, D);
  } else {
    auto [qpc, qpg] = packed(Tq, 1);
    auto [kvc, kvg] = packed(Tk, 2);
    qc = block(qpc, 0, H, D), qg = block(qpg, 0, H, D);
    kc = block(kvc, 0, H, D), vc = block(kvc, 1, H, D);
    kg = block(kvg, 0, H, D), vg = block(kvg, 1, H, D);
  }
  Tensor mc, mg;
  if (c.pad) {
    mc = make_mask(B, Tk);
    mg = mc.to(kCUDA);
  }
  const double scale = 1.0 / std::sqrt(double(D));
  Backend& cpu = backend_for(kCPU);
  Backend& gpu = backend_for(kCUDA);

  Tensor oc = heads_last(B, H, Tq, D, copt), lc = empty({B, H, Tq}, copt);
  cpu.attention(qc, kc, vc, mc, c.causal, scale, oc, lc);
  Tensor og = heads_last(B, H, Tq, D, gopt), lg = empty({B, H, Tq}, TensorOptions(lse_dt, kCUDA));
  gpu.attention(qg, kg, vg, mg, c.causal, scale, og, lg);
  gpu.synchronize();
  EXPECT_PARITY(og, oc, dt);
  expect_lse(
      lg, lc,
      mox::testing::tolerance(lse_dt == DType::F32 && dt != DType::F32 ? DType::BF16 : lse_dt));
  if (!backward) return;

  auto [gpc, gpg] = packed(Tq, 1);
  Tensor goc = block(gpc, 0, H, D), gog = block(gpg, 0, H, D);
  Tensor gqc = heads_last(B, H, Tq, D, copt), gkc = heads_last(B, H, Tk, D, copt),
         gvc = heads_last(B, H, Tk, D, copt);
  cpu.attention_backward(qc, kc, vc, mc, c.causal, scale, oc, lc, goc, gqc, gkc, gvc);
  Tensor gqg, gkg, gvg;
  if (self) {  // the gradients as column blocks of one [B, T, 3C] tensor (attention_qkv's form)
    Tensor g3 = empty({B, Tq, 3 * C}, gopt);
    gqg = block(g3, 0, H, D), gkg = block(g3, 1, H, D), gvg = block(g3, 2, H, D);
  } else {
    gqg = heads_last(B, H, Tq, D, gopt), gkg = heads_last(B, H, Tk, D, gopt),
    gvg = heads_last(B, H, Tk, D, gopt);
  }
  // poison the outputs: the kernels must overwrite every element
  gqg.fill_(std::nan("")), gkg.fill_(std::nan("")), gvg.fill_(std::nan(""));
  gpu.attention_backward(qg, kg, vg, mg, c.causal, scale, og, lg, gog, gqg, gkg, gvg);
  gpu.synchronize();
  EXPECT_PARITY(gqg, gqc, dt);
  EXPECT_PARITY(gkg, gkc, dt);
  EXPECT_PARITY(gvg, gvc, dt);
}

// The sweep: D 32/80 (SIMT) and 64/128 (tensor cores for bf16/f16), T 1/17/128, decode
// (Tq = 1) and chunked (Tq = 17 < Tk), causal or not, with and without the padding mask.
std::vector<Case> sweep() {
  std::vector<Case> cs;
  const std::vector<std::pair<int64_t, int64_t>> ts = {{1, 1},  {17, 17}, {128, 128},
                                                       {1, 17}, {1, 128}, {17, 128}};
  for (int64_t D : {32, 64, 80, 128})
    for (auto [tq, tk] : ts)
      for (bool causal : {false, true})
        for (bool pad : {false, true}) cs.push_back({pad ? 3 : 2, 2, tq, tk, D, causal, pad});
  return cs;
}

}  // namespace

TEST(CudaAttention, F32Sweep) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 1;
  for (const Case& c : sweep()) run_case(c, DType::F32, DType::F32, seed++);
}

TEST(CudaAttention, Bf16Sweep) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 100;
  for (const Case& c : sweep()) run_case(c, DType::BF16, DType::F32, seed++);
}

TEST(CudaAttention, F16Sweep) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 200;
  for (const Case& c : sweep())
    if (c.D == 64 || c.D == 80) run_case(c, DType::F16, DType::F32, seed++);
}

TEST(CudaAttention, F64) {
  MOX_REQUIRE_CUDA();
  run_case({2, 2, 17, 17, 32, true, false}, DType::F64, DType::F64, 300);
  run_case({3, 2, 1, 40, 64, true, true}, DType::F64, DType::F64, 301);
  run_case({3, 2, 33, 33, 64, false, true}, DType::F64, DType::F64, 302);
}

// Odd head sizes (SIMT path, every dtype).
TEST(CudaAttention, OddHeadSizes) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 400;
  for (int64_t D : {1, 7, 200, 256}) {
    run_case({2, 2, 19, 19, D, true, false}, DType::F32, DType::F32, seed++);
    run_case({3, 1, 5, 37, D, false, true}, DType::BF16, DType::F32, seed++);
  }
}

// GPT-2 124M's shape (D = 64, T = 1024), one layer's worth of heads at B = 1.
TEST(CudaAttention, Long1024) {
  MOX_REQUIRE_CUDA();
  run_case({1, 2, 1024, 1024, 64, true, false}, DType::F32, DType::F32, 500);
  run_case({1, 2, 1024, 1024, 64, true, false}, DType::BF16, DType::F32, 501);
  run_case({1, 2, 1024, 1024, 64, false, false}, DType::BF16, DType::F32, 502);
  run_case({1, 2, 1024, 1024, 128, true, false}, DType::BF16, DType::F32, 503);
  run_case({1, 2, 1, 1024, 64, true, false}, DType::BF16, DType::F32, 504);
}

// lse in q's own dtype (bf16): the forward must agree (the lse itself to bf16's precision).
TEST(CudaAttention, LseInQDtype) {
  MOX_REQUIRE_CUDA();
  run_case({3, 2, 17, 17, 64, true, true}, DType::BF16, DType::BF16, 600, /*backward=*/false);
  run_case({3, 2, 17, 17, 80, true, true}, DType::BF16, DType::BF16, 601, /*backward=*/false);
}

// Empty edges: Tk = 0 gives zero output and -inf lse, Tq = 0 zero key gradients.
TEST(CudaAttention, EmptyKeysAndQueries) {
  MOX_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    const TensorOptions g(dt, kCUDA);
    Tensor q = randn({1, 2, 3, 64}).to(dt).to(kCUDA), k = empty({1, 2, 0, 64}, g),
           v = empty({1, 2, 0, 64}, g);
    Tensor o = full({1, 2, 3, 64}, 7.0, g),
           lse = full({1, 2, 3}, 7.0, TensorOptions(DType::F32, kCUDA));
    backend_for(kCUDA).attention(q, k, v, Tensor(), true, 0.125, o, lse);
    for (double x : o.to(kCPU).to(DType::F64).to_vector<double>()) EXPECT_EQ(x, 0.0);
    for (double x : lse.to(kCPU).to(DType::F64).to_vector<double>())
      EXPECT_TRUE(std::isinf(x) && x < 0);
    Tensor gq = full({1, 2, 3, 64}, 7.0, g);
    backend_for(kCUDA).attention_backward(q, k, v, Tensor(), true, 0.125, o, lse,
                                          randn({1, 2, 3, 64}).to(dt).to(kCUDA), gq,
                                          empty({1, 2, 0, 64}, g), empty({1, 2, 0, 64}, g));
    for (double x : gq.to(kCPU).to(DType::F64).to_vector<double>()) EXPECT_EQ(x, 0.0);

    Tensor q0 = empty({1, 2, 0, 64}, g), k1 = randn({1, 2, 5, 64}).to(dt).to(kCUDA);
    Tensor gk = full({1, 2, 5, 64}, 7.0, g), gv = full({1, 2, 5, 64}, 7.0, g);
    backend_for(kCUDA).attention_backward(q0, k1, k1, Tensor(), false, 0.125, q0,
                                          empty({1, 2, 0}, TensorOptions(DType::F32, kCUDA)), q0,
                                          q0, gk, gv);
    for (double x : gk.to(kCPU).to(DType::F64).to_vector<double>()) EXPECT_EQ(x, 0.0);
    for (double x : gv.to(kCPU).to(DType::F64).to_vector<double>()) EXPECT_EQ(x, 0.0);
  }
}

// attention_qkv (the GPT's form) through the ops on the GPU against the CPU, forward and
// backward, f32 and bf16.
TEST(CudaAttention, OpsAttentionQkv) {
  MOX_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::BF16})
    for (bool causal : {true, false})
      for (int64_t T : {17, 128}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " T=" + std::to_string(T) +
                     (causal ? " causal" : ""));
        const int64_t B = 2, H = 4, D = 64, C = H * D;
        Generator gen(700 + T + causal);
        Tensor x = randn({B, T, 3 * C}, &gen).to(dt);
        Tensor g = randn({B, T, C}, &gen).to(dt);
        Tensor xc = x.to(DType::F32).detach().requires_grad_();
        Tensor yc = attention_qkv(xc, H, causal);
        yc.backward(g.to(DType::F32));
        Tensor xg = x.to(kCUDA).detach().requires_grad_();
        Tensor yg = attention_qkv(xg, H, causal);
        EXPECT_EQ(yg.device(), kCUDA);
        EXPECT_EQ(yg.dtype(), dt);
        yg.backward(g.to(kCUDA));
        ASSERT_TRUE(xg.grad().defined());
        EXPECT_PARITY(yg, yc, dt);
        EXPECT_PARITY(xg.grad(), xc.grad(), dt);
      }
}

// scaled_dot_product_attention with a padding mask and a decode step through the ops.
TEST(CudaAttention, OpsSdpaMaskedDecode) {
  MOX_REQUIRE_CUDA();
  const int64_t B = 3, H = 2, Tk = 40, D = 64;
  Generator gen(800);
  Tensor q = randn({B, H, 1, D}, &gen), k = randn({B, H, Tk, D}, &gen),
         v = randn({B, H, Tk, D}, &gen);
  Tensor m = make_mask(B, Tk);
  Tensor qc = q.clone().requires_grad_(), kc = k.clone().requires_grad_(),
         vc = v.clone().requires_grad_();
  Tensor yc = scaled_dot_product_attention(qc, kc, vc, true, -1.0, m);
  Tensor g = randn(yc.shape(), &gen);
  yc.backward(g);
  Tensor qg = q.to(kCUDA).detach().requires_grad_(), kg = k.to(kCUDA).detach().requires_grad_(),
         vg = v.to(kCUDA).detach().requires_grad_();
  Tensor yg = scaled_dot_product_attention(qg, kg, vg, true, -1.0, m.to(kCUDA));
  yg.backward(g.to(kCUDA));
  EXPECT_PARITY(yg, yc, DType::F32);
  EXPECT_PARITY(qg.grad(), qc.grad(), DType::F32);
  EXPECT_PARITY(kg.grad(), kc.grad(), DType::F32);
  EXPECT_PARITY(vg.grad(), vc.grad(), DType::F32);
}
