// bf16 matrix products (oneDNN when built with it, else f32 through OpenBLAS): results
// against an f64 product of the same bf16 values, for odd shapes, transposed, strided and
// broadcast operands, alpha/beta, bias, result dtypes, and gradients through linear/matmul.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <thread>

#include "mox/backend/cpu/dnnl_gemm.h"
#include "mox/mox.h"

using namespace mox;

namespace {

Tensor rnd_bf16(const Shape& s, Generator& g) { return randn(s, &g).to(DType::BF16); }

// f64 reference of out = alpha * a @ b + beta * c0 for [B?, M, K] @ [B?, K, N] (a batch
// of 1 broadcasts), plus each element's sum |alpha a_ik b_kj| + |beta c0| for tolerances.
struct Ref {
  Shape shape;
  std::vector<double> val, mag;
};

Ref ref_mm(const Tensor& a, const Tensor& b, double alpha = 1, double beta = 0,
           const std::vector<double>& c0 = {}) {
  Tensor a3 = a.dim() == 2 ? a.unsqueeze(0) : a, b3 = b.dim() == 2 ? b.unsqueeze(0) : b;
  const int64_t B = std::max(a3.size(0), b3.size(0)), M = a3.size(1), K = a3.size(2), N = b3.size(2);
  auto av = a3.contiguous().to_vector<double>(), bv = b3.contiguous().to_vector<double>();
  Ref r;
  r.shape = a.dim() == 2 && b.dim() == 2 ? Shape{M, N} : Shape{B, M, N};
  r.val.assign(B * M * N, 0);
  r.mag.assign(B * M * N, 0);
  for (int64_t i = 0; i < B; i++) {
    const double* A = av.data() + (a3.size(0) == 1 ? 0 : i * M * K);
    const double* Bm = bv.data() + (b3.size(0) == 1 ? 0 : i * K * N);
    for (int64_t m = 0; m < M; m++)
      for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++) {
          double p = alpha * A[m * K + k] * Bm[k * N + n];
          r.val[(i * M + m) * N + n] += p;
          r.mag[(i * M + m) * N + n] += std::abs(p);
        }
  }
  if (beta != 0)
    for (size_t i = 0; i < r.val.size(); i++) {
      r.val[i] += beta * c0[i];
      r.mag[i] += std::abs(beta * c0[i]);
    }
  return r;
}

// f32 accumulation: |error| <= 1e-5 * sum|terms|; a bf16 result adds its own rounding
// (round to nearest: half a unit in the last place, at most 2^-8 relative).
::testing::AssertionResult close_to(const Tensor& got, const Ref& r, DType want_dtype) {
  if (got.dtype() != want_dtype)
    return ::testing::AssertionFailure() << "dtype " << dtype_name(got.dtype()) << ", expected "
                                         << dtype_name(want_dtype);
  if (got.shape() != r.shape)
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << ", expected "
                                         << shape_str(r.shape);
  auto g = got.to_vector<double>();
  const double round = want_dtype == DType::BF16 ? std::ldexp(1.0, -8) : 0.0;
  for (size_t i = 0; i < g.size(); i++) {
    double tol = (1e-5 * r.mag[i] + round * std::abs(r.val[i])) * 1.01 + 1e-30;
    if (!(std::abs(g[i] - r.val[i]) <= tol))
      return ::testing::AssertionFailure() << "element " << i << ": got " << g[i] << ", expected "
                                           << r.val[i] << " (tolerance " << tol << ")";
  }
  return ::testing::AssertionSuccess();
}

// oneDNN has fast bf16 kernels on CPUs with AVX512-BF16 (and AMX-BF16): there the products
// must really go through it.
bool expect_dnnl() {
#ifdef MOX_HAVE_DNNL
  return cpu::dnnl_gemm_enabled() && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

// Each test runs with oneDNN on and with it switched off (the f32 path of builds without it).
class Bf16Gemm : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    was_ = cpu::dnnl_gemm_enabled();
    cpu::dnnl_gemm_enable(GetParam());
  }
  void TearDown() override { cpu::dnnl_gemm_enable(was_); }
  bool was_ = false;
};

}  // namespace

TEST_P(Bf16Gemm, MatmulOddShapes) {
  Generator g(3);
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {1000, 784, 128}, {33, 100, 65},
                               {5, 31, 3}, {64, 1, 17}, {2, 300, 1}};
  for (auto& s : shapes) {
    SCOPED_TRACE(std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" + std::to_string(s[2]));
    Tensor a = rnd_bf16({s[0], s[1]}, g), b = rnd_bf16({s[1], s[2]}, g);
    int64_t calls = cpu::dnnl_gemm_calls();
    Tensor c = matmul(a, b);
    EXPECT_TRUE(close_to(c, ref_mm(a, b), DType::BF16));
    if (expect_dnnl()) {
      EXPECT_EQ(cpu::dnnl_gemm_calls(), calls + 1);
      EXPECT_NE(cpu::dnnl_gemm_last_impl().rfind("ref", 0), 0u) << cpu::dnnl_gemm_last_impl();
    } else if (!GetParam()) {
      EXPECT_EQ(cpu::dnnl_gemm_calls(), calls);  // switched off: the f32 path ran
    }
  }
}

TEST_P(Bf16Gemm, TransposedAndStridedOperands) {
  Generator g(4);
  const int64_t M = 37, K = 45, N = 19;
  Tensor a = rnd_bf16({M, K}, g), b = rnd_bf16({K, N}, g);
  Ref r = ref_mm(a, b);
  Tensor a_cm = a.t().contiguous().t(), b_cm = b.t().contiguous().t();  // column-major
  EXPECT_FALSE(a_cm.is_contiguous());
  EXPECT_TRUE(close_to(matmul(a_cm, b), r, DType::BF16));
  EXPECT_TRUE(close_to(matmul(a, b_cm), r, DType::BF16));
  EXPECT_TRUE(close_to(matmul(a_cm, b_cm), r, DType::BF16));
  // Row-major with padded rows (leading dimension > K): a column slice of a wider matrix.
  Tensor wide = rnd_bf16({M, K + 11}, g);
  Tensor a_ld = wide.slice(1, 3, 3 + K);
  EXPECT_TRUE(close_to(matmul(a_ld, b), ref_mm(a_ld, b), DType::BF16));
  Tensor wide_b = rnd_bf16({N + 6, K}, g);  // padded, transposed b
  Tensor b_ld = wide_b.slice(0, 2, 2 + N).t();
  EXPECT_TRUE(close_to(matmul(a, b_ld), ref_mm(a, b_ld), DType::BF16));
  // Neither dim has unit stride: copied first.
  Tensor big = rnd_bf16({M, 2 * K}, g);
  Tensor a_sl = big.slice(1, 0, 2 * K, 2);
  EXPECT_TRUE(close_to(matmul(a_sl, b), ref_mm(a_sl, b), DType::BF16));
  // Vector operands (torch.matmul promotion).
  Tensor v = rnd_bf16({K}, g);
  Tensor mv = matmul(a, v);
  EXPECT_EQ(mv.shape(), (Shape{M}));
  EXPECT_TRUE(close_to(mv.unsqueeze(1), ref_mm(a, v.unsqueeze(1)), DType::BF16));
}

TEST_P(Bf16Gemm, BatchedAndBroadcast) {
  Generator g(5);
  Tensor a = rnd_bf16({4, 9, 33}, g), b = rnd_bf16({4, 33, 7}, g);
  EXPECT_TRUE(close_to(matmul(a, b), ref_mm(a, b), DType::BF16));
  EXPECT_TRUE(close_to(bmm(a, b), ref_mm(a, b), DType::BF16));
  Tensor w = rnd_bf16({33, 7}, g);  // one matrix broadcast over the batch (stride 0)
  EXPECT_TRUE(close_to(matmul(a, w), ref_mm(a, w.unsqueeze(0)), DType::BF16));
  Tensor a2 = rnd_bf16({9, 33}, g);
  EXPECT_TRUE(close_to(matmul(a2, b), ref_mm(a2.unsqueeze(0), b), DType::BF16));
  // Transposed batch items: [4, 33, 9] viewed as [4, 9, 33].
  Tensor at = rnd_bf16({4, 33, 9}, g).transpose(1, 2);
  EXPECT_TRUE(close_to(matmul(at, b), ref_mm(at, b), DType::BF16));
  // Batch dims that broadcast against each other: [2,1,M,K] @ [3,K,N] -> [2,3,M,N].
  Tensor a4 = rnd_bf16({2, 1, 5, 6}, g), b4 = rnd_bf16({3, 6, 4}, g);
  Tensor c4 = matmul(a4, b4);
  ASSERT_EQ(c4.shape(), (Shape{2, 3, 5, 4}));
  EXPECT_EQ(c4.dtype(), DType::BF16);
  for (int64_t i = 0; i < 2; i++)
    for (int64_t j = 0; j < 3; j++)
      EXPECT_TRUE(close_to(c4.select(0, i).select(0, j), ref_mm(a4.select(0, i).select(0, 0), b4.select(0, j)),
                           DType::BF16));
}

TEST_P(Bf16Gemm, BackendAlphaBetaAndResultDtypes) {
  Generator g(6);
  Backend& be = backend_for(kCPU);
  const int64_t B = 3, M = 21, K = 67, N = 10;
  Tensor a = rnd_bf16({B, M, K}, g), b = rnd_bf16({B, K, N}, g);
  for (DType od : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(od));
    // beta = 0: out's old contents (NaN here) must not leak in.
    Tensor out = full({B, M, N}, NAN, od);
    be.gemm(a, b, out, false, false, 1.0, 0.0);
    EXPECT_TRUE(close_to(out, ref_mm(a, b), od));
    // alpha and beta, with transposed flags: out = 0.5 * a @ b + 2 * c0.
    Tensor c0 = randn({B, M, N}, &g).to(od);
    Tensor out2 = c0.clone();
    be.gemm(a.transpose(1, 2).contiguous(), b.transpose(1, 2).contiguous(), out2, true, true, 0.5, 2.0);
    EXPECT_TRUE(close_to(out2, ref_mm(a, b, 0.5, 2.0, c0.to_vector<double>()), od));
  }
  // Both operands broadcast over the batch (stride 0), beta != 0: each item its own c0.
  Tensor a1 = rnd_bf16({1, M, K}, g).expand({B, M, K}), b1 = rnd_bf16({1, K, N}, g).expand({B, K, N});
  Tensor c0 = randn({B, M, N}, &g);
  Tensor out = c0.clone();
  be.gemm(a1, b1, out, false, false, 1.0, 1.0);
  EXPECT_TRUE(close_to(out, ref_mm(a1.contiguous(), b1.contiguous(), 1.0, 1.0, c0.to_vector<double>()),
                       DType::F32));
  // K = 0: out = beta * out.
  Tensor z = full({1, 2, 3}, 4.0, DType::BF16);
  be.gemm(empty({1, 2, 0}, DType::BF16), empty({1, 0, 3}, DType::BF16), z, false, false, 1.0, 0.5);
  for (double v : z.to_vector<double>()) EXPECT_EQ(v, 2.0);
  // Result dtypes a bf16 product cannot have, and mixed operands.
  EXPECT_THROW(be.gemm(a, b, empty({B, M, N}, DType::F64), false, false, 1.0, 0.0), Error);
  EXPECT_THROW(be.gemm(a, b.to(DType::F32), empty({B, M, N}, DType::F32), false, false, 1.0, 0.0), Error);
  EXPECT_THROW(matmul(a, b.to(DType::F32)), Error);
}

TEST_P(Bf16Gemm, LinearWithBias) {
  Generator g(7);
  const int64_t N = 1000, in = 784, out = 128;
  Tensor x = rnd_bf16({N, in}, g), w = rnd_bf16({out, in}, g), bias = rnd_bf16({out}, g);
  Tensor y = linear(x, w, bias);
  std::vector<double> c0;
  auto bv = bias.to_vector<double>();
  for (int64_t i = 0; i < N; i++) c0.insert(c0.end(), bv.begin(), bv.end());
  EXPECT_TRUE(close_to(y, ref_mm(x, w.t(), 1.0, 1.0, c0), DType::BF16));
  EXPECT_TRUE(close_to(linear(x, w), ref_mm(x, w.t()), DType::BF16));
  // Leading batch dims and an odd feature count.
  Tensor x3 = rnd_bf16({2, 3, 45}, g), w3 = rnd_bf16({9, 45}, g);
  Tensor y3 = linear(x3, w3);
  ASSERT_EQ(y3.shape(), (Shape{2, 3, 9}));
  EXPECT_TRUE(close_to(y3.reshape({6, 9}), ref_mm(x3.reshape({6, 45}), w3.t()), DType::BF16));
}

// Gradients with bf16 tensors against the same computation in f32 (on the same
// bf16-representable values): equal within bf16 rounding of the results.
TEST_P(Bf16Gemm, GradientsThroughLinearAndMatmul) {
  Generator g(8);
  const int64_t N = 50, in = 70, out = 13;
  Tensor x16 = rnd_bf16({N, in}, g), w16 = rnd_bf16({out, in}, g), b16 = rnd_bf16({out}, g);
  Tensor gy = rnd_bf16({N, out}, g);
  auto grads = [&](DType dt) {
    auto leaf = [&](const Tensor& t) { return t.to(dt).clone().requires_grad_(); };
    Tensor x = leaf(x16), w = leaf(w16), b = leaf(b16);
    Tensor y = linear(x, w, b);
    EXPECT_EQ(y.dtype(), dt);
    y.backward(gy.to(dt));
    return std::vector<Tensor>{x.grad(), w.grad(), b.grad()};
  };
  auto g16 = grads(DType::BF16), g32 = grads(DType::F32);
  const char* names[] = {"x", "w", "b"};
  for (int i = 0; i < 3; i++) {
    SCOPED_TRACE(names[i]);
    ASSERT_TRUE(g16[i].defined());
    EXPECT_EQ(g16[i].dtype(), DType::BF16);
    EXPECT_EQ(g16[i].shape(), g32[i].shape());
    auto a = g16[i].to_vector<double>(), r = g32[i].to_vector<double>();
    double scale = 0;
    for (double v : r) scale = std::max(scale, std::abs(v));
    for (size_t k = 0; k < a.size(); k++)
      ASSERT_NEAR(a[k], r[k], std::ldexp(std::abs(r[k]), -7) + 1e-4 * scale) << "element " << k;
  }
  // matmul's backward (batched, b broadcast): gradients are bf16 products too.
  Tensor a = rnd_bf16({3, 8, 21}, g), bm = rnd_bf16({21, 6}, g), gc = rnd_bf16({3, 8, 6}, g);
  Tensor a_ = a.clone().requires_grad_(), b_ = bm.clone().requires_grad_();
  matmul(a_, b_).backward(gc);
  EXPECT_EQ(a_.grad().dtype(), DType::BF16);
  EXPECT_EQ(b_.grad().dtype(), DType::BF16);
  // ga = gc @ b^T per batch item.
  EXPECT_TRUE(close_to(a_.grad(), ref_mm(gc, bm.t().unsqueeze(0)), DType::BF16));
  // gb = sum over the batch of a^T @ gc, then rounded to bf16 once more by the sum.
  Ref rb = ref_mm(a.transpose(1, 2), gc);
  std::vector<double> want(21 * 6, 0), mag(21 * 6, 0);
  for (int64_t i = 0; i < 3; i++)
    for (int64_t j = 0; j < 21 * 6; j++) {
      want[j] += rb.val[i * 21 * 6 + j];
      mag[j] += rb.mag[i * 21 * 6 + j];
    }
  auto gb = b_.grad().to_vector<double>();
  for (size_t j = 0; j < want.size(); j++)
    EXPECT_NEAR(gb[j], want[j], std::ldexp(mag[j], -6)) << "element " << j;
}

TEST_P(Bf16Gemm, RespectsThreadCount) {
  // Same results with 1 thread and with the default, and set_num_threads still holds.
  Generator g(9);
  Tensor a = rnd_bf16({300, 257}, g), b = rnd_bf16({257, 96}, g);
  const int before = get_num_threads();
  set_num_threads(1);
  Tensor c1 = matmul(a, b);
  EXPECT_EQ(get_num_threads(), 1);
  // A thread that never called set_num_threads still runs oneDNN with mox's count.
  int seen = -1;
  std::thread t([&] {
    omp_set_num_threads(before + 1);
    matmul(a, b);
    seen = omp_get_max_threads();
  });
  t.join();
  if (expect_dnnl()) {
    EXPECT_EQ(seen, 1);
  }
  set_num_threads(before);
  Tensor c2 = matmul(a, b);
  Ref r = ref_mm(a, b);
  EXPECT_TRUE(close_to(c1, r, DType::BF16));
  EXPECT_TRUE(close_to(c2, r, DType::BF16));
}

INSTANTIATE_TEST_SUITE_P(Paths, Bf16Gemm, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "oneDNN" : "f32"; });
