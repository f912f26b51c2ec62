// Weight-only block quantisation (ops/blockq.h): Q8/Q4 quantise and dequantise against
// hand-computed blocks and the documented rules, and block_linear against a reference written
// here from the documented formula (activations quantised per block of 32 in f32 as llama.cpp's
// q8_0: d = amax / 127, q = roundf(x * (1 / d)); exact integer dots per block; scales applied in
// double), for every kernel this CPU runs (scalar, AVX2, AVX-512 VNNI).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "mox/backend/blockq.h"
#include "mox/mox.h"
#include "mox/ops/blockq.h"

using namespace mox;

namespace {

float f16r(float v) { return float(f16(v)); }

std::vector<float> scales_of(const BlockQuantWeight& w) {
  std::vector<float> s;
  for (float v : w.scale.to_vector<float>()) s.push_back(v);
  return s;
}

// q[n][k] decoded from the stored data as the header documents it.
std::vector<int> ints_of(const BlockQuantWeight& w) {
  const int64_t N = w.rows, K = w.cols;
  std::vector<int> q(size_t(N * K));
  if (w.format == BlockFormat::Q8) {
    const int8_t* d = w.data.data<int8_t>();
    for (int64_t i = 0; i < N * K; ++i) q[i] = d[i];
  } else {
    const uint8_t* d = w.data.data<uint8_t>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < K / 32; ++b)
        for (int j = 0; j < 16; ++j) {
          const uint8_t byte = d[n * (K / 2) + b * 16 + j];
          q[n * K + b * 32 + j] = int(byte & 15) - 8;
          q[n * K + b * 32 + j + 16] = int(byte >> 4) - 8;
        }
  }
  return q;
}

// Reference y and the magnitude sum(|terms|) it is compared at.
void reference(const std::vector<float>& x, int64_t M, int64_t K, const BlockQuantWeight& w,
               const std::vector<float>& bias, std::vector<double>& y, std::vector<double>& mag) {
  const int64_t N = w.rows, nb = K / 32;
  const std::vector<int> qw = ints_of(w);
  const std::vector<float> dw = scales_of(w);
  std::vector<int> qx(size_t(M * K));
  std::vector<double> dx(size_t(M * nb));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < nb; ++b) {
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[m * K + b * 32 + i]));
      const float d = amax / 127.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
      dx[m * nb + b] = d;
      for (int i = 0; i < 32; ++i) {
        const float v = x[m * K + b * 32 + i];
        qx[m * K + b * 32 + i] = int(std::clamp(std::roundf(v * id), -127.0f, 127.0f));
      }
    }
  y.assign(size_t(M * N), 0.0);
  mag.assign(size_t(M * N), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = bias.empty() ? 0.0 : bias[n], a = bias.empty() ? 0.0 : std::fabs(bias[n]);
      for (int64_t b = 0; b < nb; ++b) {
        int64_t isum = 0;
        for (int i = 0; i < 32; ++i) isum += int64_t(qx[m * K + b * 32 + i]) * qw[n * K + b * 32 + i];
        const double t = dx[m * nb + b] * double(dw[n * nb + b]) * double(isum);
        acc += t;
        a += std::fabs(t);
      }
      y[m * N + n] = acc;
      mag[m * N + n] = a;
    }
}

std::vector<float> random_vec(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& e : v) e = nd(rng);
  return v;
}

// Forces each kernel in turn; restores the default afterwards.
struct IsaGuard {
  ~IsaGuard() { cpu::reset_blockq_isa(); }
};

std::vector<cpu::BlockqIsa> isas_here() {
  std::vector<cpu::BlockqIsa> v;
  for (auto isa : {cpu::BlockqIsa::Scalar, cpu::BlockqIsa::Avx2, cpu::BlockqIsa::Avx512Vnni})
    if (cpu::blockq_isa_supported(isa)) v.push_back(isa);
  return v;
}

double sq_err(const std::vector<float>& a, const std::vector<float>& b, size_t off, size_t n) {
  double e = 0;
  for (size_t i = off; i < off + n; ++i) e += double(a[i] - b[i]) * double(a[i] - b[i]);
  return e;
}

}  // namespace

TEST(BlockQ, FormatNames) {
  EXPECT_STREQ(block_format_name(BlockFormat::Q8), "q8");
  EXPECT_STREQ(block_format_name(BlockFormat::Q4), "q4");
  EXPECT_EQ(block_format_from_name("q8"), BlockFormat::Q8);
  EXPECT_EQ(block_format_from_name("q4"), BlockFormat::Q4);
  EXPECT_THROW(block_format_from_name("q5"), Error);
}

TEST(BlockQ, Q8HandComputedBlock) {
  // amax = 127 -> d = 1 exactly, so q = roundf(w) (ties away from zero).
  std::vector<float> w(64, 0.0f);
  const float vals[] = {127, -3.5f, 2.5f, 0.4f, -0.6f, 0.5f, -0.5f, 1.49f, -126.6f, 100};
  const int want[] = {127, -4, 3, 0, -1, 1, -1, 1, -127, 100};
  for (int i = 0; i < 10; ++i) w[i] = vals[i];
  // second block: all zero (w[32..63])
  BlockQuantWeight q = block_quantize(from_vector(w, {1, 64}), BlockFormat::Q8);
  EXPECT_EQ(q.data.dtype(), DType::I8);
  EXPECT_EQ(q.data.shape(), (Shape{1, 64}));
  EXPECT_EQ(q.scale.dtype(), DType::F16);
  EXPECT_EQ(q.scale.shape(), (Shape{1, 2}));
  std::vector<float> s = scales_of(q);
  EXPECT_EQ(s[0], 1.0f);
  EXPECT_EQ(s[1], 0.0f);
  std::vector<int> qi = ints_of(q);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(qi[i], want[i]) << i;
  for (int i = 10; i < 64; ++i) EXPECT_EQ(qi[i], 0) << i;
  std::vector<float> dq = block_dequantize(q).to_vector<float>();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(dq[i], float(want[i]));
  for (int i = 10; i < 64; ++i) EXPECT_EQ(dq[i], 0.0f);
  EXPECT_EQ(block_weight_bytes(q), 64 + 2 * 2);
}

TEST(BlockQ, Q8SingleLargeValueAndRandomRows) {
  std::vector<float> w(32, 1e-3f);
  w[7] = -50.0f;
  BlockQuantWeight q = block_quantize(from_vector(w, {1, 32}), BlockFormat::Q8);
  const float d = scales_of(q)[0];
  EXPECT_EQ(d, f16r(50.0f / 127.0f));
  std::vector<int> qi = ints_of(q);
  EXPECT_EQ(qi[7], -127);
  for (int i = 0; i < 32; ++i)
    if (i != 7) {
      EXPECT_EQ(qi[i], 0);
    }

  std::mt19937 rng(1);
  const int64_t N = 9, K = 96;
  std::vector<float> r = random_vec(size_t(N * K), rng);
  BlockQuantWeight qr = block_quantize(from_vector(r, {N, K}), BlockFormat::Q8);
  std::vector<float> dq = block_dequantize(qr).to_vector<float>();
  std::vector<float> sc = scales_of(qr);
  std::vector<int> qv = ints_of(qr);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < K / 32; ++b) {
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(r[n * K + b * 32 + i]));
      const float ds = f16r(amax / 127.0f);
      ASSERT_EQ(sc[n * 3 + b], ds);
      for (int i = 0; i < 32; ++i) {
        const int64_t k = n * K + b * 32 + i;
        EXPECT_EQ(qv[k], int(std::clamp(std::roundf(r[k] / ds), -127.0f, 127.0f)));
        EXPECT_EQ(dq[k], ds * float(qv[k]));
        EXPECT_LE(std::fabs(dq[k] - r[k]), 0.5 * ds * (1 + 1e-6) + 1e-7 * amax);
      }
    }
}

TEST(BlockQ, Q4NibbleLayoutOnExactBlock) {
  // Values (q) * 0.5 with q in [-8, 7] and the largest magnitude -4 = -8 * 0.5: llama.cpp's rule
  // gives d = 0.5 and zero error, so that is the stored scale and the nibbles are q + 8.
  std::vector<int> qs(32);
  for (int i = 0; i < 32; ++i) qs[i] = (i * 5 + 3) % 16 - 8;
  qs[0] = -8;
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[i] = 0.5f * float(qs[i]);
  BlockQuantWeight q = block_quantize(from_vector(w, {1, 32}), BlockFormat::Q4);
  EXPECT_EQ(q.data.dtype(), DType::U8);
  EXPECT_EQ(q.data.shape(), (Shape{1, 16}));
  EXPECT_EQ(scales_of(q)[0], 0.5f);
  const uint8_t* bytes = q.data.data<uint8_t>();
  for (int j = 0; j < 16; ++j)
    EXPECT_EQ(int(bytes[j]), (qs[j] + 8) | ((qs[j + 16] + 8) << 4)) << j;
  std::vector<float> dq = block_dequantize(q).to_vector<float>();
  for (int i = 0; i < 32; ++i) EXPECT_EQ(dq[i], w[i]) << i;
  EXPECT_EQ(block_weight_bytes(q), 16 + 2);
}

TEST(BlockQ, Q4ZeroSingleLargeAndNegativeDominantBlocks) {
  std::vector<float> w(4 * 32, 0.0f);  // row 0: all zero
  for (int i = 0; i < 32; ++i) w[32 + i] = 0.01f * float(i % 3);  // row 1: one large value
  w[32 + 5] = 9.0f;
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int i = 0; i < 32; ++i) w[64 + i] = u(rng);  // row 2: negative-dominant
  w[64 + 20] = -3.0f;
  for (int i = 0; i < 32; ++i) w[96 + i] = -u(rng) * 0.2f + 0.1f;  // row 3: positive max
  w[96 + 31] = 2.0f;
  BlockQuantWeight q = block_quantize(from_vector(w, {4, 32}), BlockFormat::Q4);
  std::vector<float> dq = block_dequantize(q).to_vector<float>();
  std::vector<float> s = scales_of(q);
  std::vector<int> qi = ints_of(q);
  EXPECT_EQ(s[0], 0.0f);
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(qi[i], 0);
    EXPECT_EQ(dq[i], 0.0f);
  }
  // the large value keeps the extreme integer and is reconstructed within d / 2
  EXPECT_EQ(std::abs(qi[32 + 5]), qi[32 + 5] < 0 ? 8 : 7);
  EXPECT_LE(std::fabs(dq[32 + 5] - 9.0f), 0.5f * std::fabs(s[1]) + 1e-6f);
  EXPECT_LE(std::fabs(dq[64 + 20] + 3.0f), 0.5f * std::fabs(s[2]) + 1e-6f);
  EXPECT_LE(std::fabs(dq[96 + 31] - 2.0f), 0.5f * std::fabs(s[3]) + 1e-6f);
  // dequantised values are exactly d * (nibble - 8)
  for (int64_t n = 0; n < 4; ++n)
    for (int i = 0; i < 32; ++i) EXPECT_EQ(dq[n * 32 + i], s[n] * float(qi[n * 32 + i]));
}

TEST(BlockQ, Q4NeverWorseThanPlainRule) {
  std::mt19937 rng(3);
  const int64_t N = 40, K = 128;
  std::vector<float> w(size_t(N * K));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < N * K; ++i) {
    const int64_t n = i / K;
    w[i] = n % 4 == 0 ? nd(rng) : n % 4 == 1 ? u(rng) * 0.05f : n % 4 == 2 ? nd(rng) * nd(rng) : std::exp(u(rng)) - 1.2f;
  }
  BlockQuantWeight q = block_quantize(from_vector(w, {N, K}), BlockFormat::Q4);
  std::vector<float> dq = block_dequantize(q).to_vector<float>();
  double total = 0, total_plain = 0;
  int strictly_better = 0;
  for (int64_t blk = 0; blk < N * K / 32; ++blk) {
    const float* x = w.data() + blk * 32;
    float amax = 0, mx = 0;
    for (int i = 0; i < 32; ++i)
      if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), mx = x[i];
    const double d = f16r(mx / -8.0f);  // llama.cpp Q4_0 rule, with the best integers for it
    double plain = 0;
    for (int i = 0; i < 32; ++i) {
      const double qv = std::clamp(std::round(x[i] / d), -8.0, 7.0);
      plain += (x[i] - d * qv) * (x[i] - d * qv);
    }
    std::vector<float> wv(w.begin(), w.end());
    const double got = sq_err(dq, wv, size_t(blk * 32), 32);
    EXPECT_LE(got, plain * (1 + 1e-6) + 1e-18) << "block " << blk;
    total += got;
    total_plain += plain;
    strictly_better += got < plain * (1 - 1e-6);
  }
  EXPECT_LT(total, total_plain);
  EXPECT_GT(strictly_better, 0);
}

TEST(BlockQ, LinearMatchesReferenceOnEveryKernel) {
  IsaGuard guard;
  std::mt19937 rng(4);
  const auto isas = isas_here();
  ASSERT_FALSE(isas.empty());
  for (auto isa : isas) std::printf("block_linear kernel tested: %s\n", cpu::blockq_isa_name(isa));
  const int64_t Ms[] = {1, 3, 8, 64, 300};
  const int64_t Ks[] = {32, 128, 544};
  const int64_t Ns[] = {7, 16, 33};
  for (BlockFormat f : {BlockFormat::Q8, BlockFormat::Q4})
    for (int64_t K : Ks)
      for (int64_t N : Ns) {
        std::vector<float> wv = random_vec(size_t(N * K), rng, 0.1f);
        for (int64_t k = 0; k < std::min<int64_t>(K, 32); ++k) wv[k] = 0.0f;  // a zero block
        BlockQuantWeight w = block_quantize(from_vector(wv, {N, K}), f);
        std::vector<float> bias = random_vec(size_t(N), rng);
        for (int64_t M : Ms) {
          std::vector<float> x = random_vec(size_t(M * K), rng);
          // row 0's first block: amax 127 -> d_x = 1, values at exact halves (ties)
          for (int i = 0; i < 32; ++i) x[i] = float(i % 2 ? -(i + 0.5) : i + 0.5);
          x[0] = 127.0f;
          if (M > 2)
            for (int64_t k = 0; k < K; ++k) x[2 * K + k] = 0.0f;  // an all-zero row
          for (int with_bias = 0; with_bias < 2; ++with_bias) {
            std::vector<float> bref = with_bias ? bias : std::vector<float>{};
            std::vector<double> ref, mag;
            reference(x, M, K, w, bref, ref, mag);
            for (auto isa : isas) {
              cpu::set_blockq_isa(isa);
              Tensor y = block_linear(from_vector(x, {M, K}), w,
                                      with_bias ? from_vector(bias, {N}) : Tensor());
              ASSERT_EQ(y.shape(), (Shape{M, N}));
              ASSERT_EQ(y.dtype(), DType::F32);
              std::vector<float> got = y.to_vector<float>();
              for (int64_t i = 0; i < M * N; ++i)
                ASSERT_NEAR(got[i], ref[i], 1e-5 * mag[i] + 1e-12)
                    << block_format_name(f) << " " << cpu::blockq_isa_name(isa) << " M=" << M
                    << " N=" << N << " K=" << K << " bias=" << with_bias << " at " << i;
            }
          }
        }
      }
}

TEST(BlockQ, LinearLargeThreadedAnd3DInput) {
  IsaGuard guard;
  std::mt19937 rng(5);
  const int64_t N = 100, K = 544, M = 300;  // above the threading threshold
  for (BlockFormat f : {BlockFormat::Q8, BlockFormat::Q4}) {
    BlockQuantWeight w = block_quantize(from_vector(random_vec(size_t(N * K), rng), {N, K}), f);
    std::vector<float> x = random_vec(size_t(M * K), rng, 3.0f);
    std::vector<float> bias = random_vec(size_t(N), rng);
    std::vector<double> ref, mag;
    reference(x, M, K, w, bias, ref, mag);
    for (auto isa : isas_here()) {
      cpu::set_blockq_isa(isa);
      for (int threads : {1, 2}) {
        const int before = get_num_threads();
        set_num_threads(threads);
        Tensor y = block_linear(from_vector(x, {3, 100, K}), w, from_vector(bias, {N}));
        set_num_threads(before);
        ASSERT_EQ(y.shape(), (Shape{3, 100, N}));
        std::vector<float> got = y.to_vector<float>();
        for (int64_t i = 0; i < M * N; ++i)
          ASSERT_NEAR(got[i], ref[i], 1e-5 * mag[i] + 1e-12)
              << block_format_name(f) << " " << cpu::blockq_isa_name(isa) << " threads " << threads
              << " at " << i;
      }
    }
    // a non-contiguous input (transposed view) gives the same result
    Tensor xt = from_vector(x, {M, K}).t().contiguous().t();
    ASSERT_FALSE(xt.is_contiguous());
    std::vector<float> got = block_linear(xt, w, from_vector(bias, {N})).to_vector<float>();
    for (int64_t i = 0; i < M * N; ++i) ASSERT_NEAR(got[i], ref[i], 1e-5 * mag[i] + 1e-12);
  }
}

TEST(BlockQ, WeightFromStoredTensorsAndWithoutPackedLayout) {
  IsaGuard guard;
  std::mt19937 rng(6);
  const int64_t N = 21, K = 96, M = 5;
  for (BlockFormat f : {BlockFormat::Q8, BlockFormat::Q4}) {
    BlockQuantWeight w = block_quantize(from_vector(random_vec(size_t(N * K), rng), {N, K}), f);
    BlockQuantWeight w2 = block_weight_from(f, w.data.clone(), w.scale.clone());
    EXPECT_EQ(w2.rows, N);
    EXPECT_EQ(w2.cols, K);
    EXPECT_EQ(block_weight_bytes(w2), block_weight_bytes(w));
    EXPECT_EQ(block_weight_bytes(w), f == BlockFormat::Q8 ? N * K + N * 3 * 2 : N * K / 2 + N * 3 * 2);
    BlockQuantWeight bare;  // assembled by hand: no packed layout
    bare.format = f;
    bare.rows = N;
    bare.cols = K;
    bare.data = w.data;
    bare.scale = w.scale;
    std::vector<float> x = random_vec(size_t(M * K), rng);
    std::vector<double> ref, mag;
    reference(x, M, K, w, {}, ref, mag);
    for (auto isa : isas_here()) {
      cpu::set_blockq_isa(isa);
      for (const BlockQuantWeight* ww : {&w2, &bare}) {
        std::vector<float> got = block_linear(from_vector(x, {M, K}), *ww).to_vector<float>();
        for (int64_t i = 0; i < M * N; ++i) ASSERT_NEAR(got[i], ref[i], 1e-5 * mag[i] + 1e-12);
      }
    }
    EXPECT_EQ(block_dequantize(w2).to_vector<float>(), block_dequantize(w).to_vector<float>());
  }
}

TEST(BlockQ, HalfPrecisionWeightAndInput) {
  std::mt19937 rng(7);
  const int64_t N = 5, K = 64, M = 3;
  Tensor wb = from_vector(random_vec(size_t(N * K), rng), {N, K}).to(DType::BF16);
  for (BlockFormat f : {BlockFormat::Q8, BlockFormat::Q4}) {
    BlockQuantWeight a = block_quantize(wb, f), b = block_quantize(wb.to(DType::F32), f);
    EXPECT_EQ(ints_of(a), ints_of(b));
    EXPECT_EQ(scales_of(a), scales_of(b));
    Tensor xh = from_vector(random_vec(size_t(M * K), rng), {M, K}).to(DType::BF16);
    EXPECT_EQ(block_linear(xh, a).to_vector<float>(),
              block_linear(xh.to(DType::F32), a).to_vector<float>());
  }
}

TEST(BlockQ, Errors) {
  // K % 32 != 0, wrong rank, wrong dtype
  EXPECT_THROW(block_quantize(zeros({4, 40}), BlockFormat::Q8), Error);
  EXPECT_THROW(block_quantize(zeros({4, 40}), BlockFormat::Q4), Error);
  EXPECT_THROW(block_quantize(zeros({64}), BlockFormat::Q8), Error);
  EXPECT_THROW(block_quantize(zeros({4, 64}, DType::I64), BlockFormat::Q8), Error);
  try {
    block_quantize(zeros({4, 40}), BlockFormat::Q8);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 40]"), std::string::npos) << e.what();
  }
  // f16 scale overflow
  EXPECT_THROW(block_quantize(full({1, 32}, 1e7), BlockFormat::Q8), Error);
  EXPECT_THROW(block_quantize(full({1, 32}, 1e7), BlockFormat::Q4), Error);
  // loading: dtypes and shapes
  EXPECT_THROW(block_weight_from(BlockFormat::Q8, zeros({4, 64}, DType::U8), zeros({4, 2}, DType::F16)), Error);
  EXPECT_THROW(block_weight_from(BlockFormat::Q4, zeros({4, 32}, DType::I8), zeros({4, 2}, DType::F16)), Error);
  EXPECT_THROW(block_weight_from(BlockFormat::Q8, zeros({4, 64}, DType::I8), zeros({4, 2}, DType::F32)), Error);
  EXPECT_THROW(block_weight_from(BlockFormat::Q8, zeros({4, 64}, DType::I8), zeros({4, 3}, DType::F16)), Error);
  EXPECT_THROW(block_weight_from(BlockFormat::Q8, zeros({4, 40}, DType::I8), zeros({4, 1}, DType::F16)), Error);
  EXPECT_THROW(block_weight_from(BlockFormat::Q4, zeros({4, 20}, DType::U8), zeros({4, 1}, DType::F16)), Error);
  EXPECT_NO_THROW(block_weight_from(BlockFormat::Q4, zeros({4, 32}, DType::U8), zeros({4, 2}, DType::F16)));
  // the product: mismatched K, bad dtypes, bad bias
  BlockQuantWeight w = block_quantize(ones({8, 64}), BlockFormat::Q8);
  try {
    block_linear(zeros({2, 32}), w);
    ADD_FAILURE() << "mismatched K accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 32]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(block_linear(zeros({2, 64}, DType::I64), w), Error);
  EXPECT_THROW(block_linear(zeros({2, 64}), w, zeros({7})), Error);
  EXPECT_THROW(block_linear(zeros({2, 64}), w, zeros({8}, DType::F64)), Error);
  BlockQuantWeight bad = w;
  bad.format = BlockFormat::Q4;  // data is i8, not u8
  EXPECT_THROW(block_linear(zeros({2, 64}), bad), Error);
  EXPECT_NO_THROW(block_linear(zeros({2, 64}), w, zeros({8})));
}

TEST(BlockQ, IsaControl) {
  IsaGuard guard;
  EXPECT_TRUE(cpu::blockq_isa_supported(cpu::BlockqIsa::Scalar));
  EXPECT_EQ(cpu::blockq_isa(), cpu::blockq_best_isa());
  cpu::set_blockq_isa(cpu::BlockqIsa::Scalar);
  EXPECT_EQ(cpu::blockq_isa(), cpu::BlockqIsa::Scalar);
  for (auto isa : {cpu::BlockqIsa::Avx2, cpu::BlockqIsa::Avx512Vnni})
    if (!cpu::blockq_isa_supported(isa)) {
      EXPECT_THROW(cpu::set_blockq_isa(isa), Error);
    }
  cpu::reset_blockq_isa();
  EXPECT_EQ(cpu::blockq_isa(), cpu::blockq_best_isa());
}
