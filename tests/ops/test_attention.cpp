// scaled_dot_product_attention (fused kernel, online softmax over key tiles): forward against
// a naive f64 softmax(masked scores) @ V written here, f64 gradchecks of q, k and v, the
// causal (KV-cache aligned) and key-padding masks, rows that see no key, thread-count
// independence and a long sequence (T = 1024) in f32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "error_of.h"
#include "gradcheck.h"
#include "mox/mox.h"

using namespace mox;
using mox::testing::gradcheck;
using mox::testing::rnd;

namespace {

struct Cfg {
  int64_t B, H, Tq, Tk, D;
  bool causal;
  double scale;  // < 0: 1/sqrt(D)
};

// Naive reference in f64: for each row, softmax over the visible keys of scale * q.k,
// times V. A row with no visible key gives 0. mask: [B, Tk] (nonzero = padding) or empty.
std::vector<double> naive(const Tensor& q, const Tensor& k, const Tensor& v, const Cfg& c,
                          const std::vector<uint8_t>& mask) {
  std::vector<double> qv = q.to_vector<double>(), kv = k.to_vector<double>(),
                      vv = v.to_vector<double>();
  const int64_t B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, D = c.D;
  const double s = c.scale < 0 ? 1.0 / std::sqrt(double(D)) : c.scale;
  std::vector<double> out(size_t(B * H * Tq * D), 0.0);
  std::vector<double> sc(static_cast<size_t>(Tk));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < Tq; i++) {
        const double* qi = &qv[size_t(((b * H + h) * Tq + i) * D)];
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Tk; j++) {
          bool vis = !(c.causal && j > Tk - Tq + i) && (mask.empty() || !mask[size_t(b * Tk + j)]);
          if (!vis) {
            sc[size_t(j)] = -std::numeric_limits<double>::infinity();
            continue;
          }
          double d = 0;
          for (int64_t e = 0; e < D; e++) d += qi[e] * kv[size_t(((b * H + h) * Tk + j) * D + e)];
          sc[size_t(j)] = d * s;
          mx = std::max(mx, d * s);
        }
        if (mx == -std::numeric_limits<double>::infinity()) continue;  // no visible key: 0
        double sum = 0;
        for (int64_t j = 0; j < Tk; j++) sum += (sc[size_t(j)] = std::exp(sc[size_t(j)] - mx));
        double* o = &out[size_t(((b * H + h) * Tq + i) * D)];
        for (int64_t j = 0; j < Tk; j++)
          for (int64_t e = 0; e < D; e++)
            o[e] += sc[size_t(j)] / sum * vv[size_t(((b * H + h) * Tk + j) * D + e)];
      }
  return out;
}

Tensor make(const Shape& s, uint64_t seed, DType dt, double lo = -1.5, double hi = 1.5) {
  Generator g(seed);
  Tensor t = empty(s, dt);
  t.uniform_(lo, hi, &g);
  return t;
}

Tensor mask_tensor(const std::vector<uint8_t>& m, int64_t B, int64_t Tk) {
  return from_vector(m, {B, Tk}, TensorOptions(DType::U8));
}

// Largest |a - b| over the largest |b|.
double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double e = 0, m = 0;
  for (size_t i = 0; i < a.size(); i++) {
    e = std::max(e, std::abs(a[i] - b[i]));
    m = std::max(m, std::abs(b[i]));
  }
  return m > 0 ? e / m : e;
}

const std::vector<Cfg> kShapes = {
    {1, 1, 1, 1, 1, false, -1},  {1, 1, 1, 1, 1, true, -1},   {2, 3, 7, 7, 4, true, -1},
    {2, 3, 7, 7, 4, false, 0.7}, {1, 2, 33, 33, 64, true, -1}, {1, 2, 33, 33, 64, false, -1},
    {2, 2, 5, 9, 3, true, -1},   {2, 2, 5, 9, 3, false, -1},  {1, 1, 9, 5, 2, true, -1},
    {1, 2, 70, 70, 8, true, -1}, {1, 2, 70, 130, 5, false, 2.0}, {2, 1, 1, 100, 16, true, -1},
    {1, 1, 97, 97, 1, true, 0.3}, {1, 1, 65, 129, 33, true, -1},
};

}  // namespace

TEST(Attention, ForwardMatchesNaiveReference) {
  for (DType dt : {DType::F64, DType::F32}) {
    uint64_t seed = 1;
    for (const Cfg& c : kShapes) {
      Tensor q = make({c.B, c.H, c.Tq, c.D}, seed++, dt);
      Tensor k = make({c.B, c.H, c.Tk, c.D}, seed++, dt);
      Tensor v = make({c.B, c.H, c.Tk, c.D}, seed++, dt);
      Tensor o = scaled_dot_product_attention(q, k, v, c.causal, c.scale);
      ASSERT_EQ(o.shape(), q.shape());
      ASSERT_EQ(o.dtype(), dt);
      std::vector<double> ref = naive(q, k, v, c, {});
      double err = rel_err(o.to_vector<double>(), ref);
      EXPECT_LT(err, dt == DType::F64 ? 1e-12 : 2e-6)
          << dtype_name(dt) << " B" << c.B << " H" << c.H << " Tq" << c.Tq << " Tk" << c.Tk
          << " D" << c.D << " causal " << c.causal << " scale " << c.scale;
    }
  }
}

TEST(Attention, CausalWithMoreQueriesThanKeysGivesZeroRows) {
  // Tq = 9 > Tk = 5: query i sees keys 0 .. i - 4, so queries 0..3 see nothing.
  Tensor q = make({1, 1, 9, 2}, 1, DType::F64), k = make({1, 1, 5, 2}, 2, DType::F64),
         v = make({1, 1, 5, 2}, 3, DType::F64, 1.0, 2.0);
  std::vector<double> o = scaled_dot_product_attention(q, k, v, true).to_vector<double>();
  for (int i = 0; i < 4 * 2; i++) EXPECT_EQ(o[size_t(i)], 0.0);
  // query 4 sees only key 0: its output is v[0]
  std::vector<double> vv = v.to_vector<double>();
  EXPECT_NEAR(o[8], vv[0], 1e-15);
  EXPECT_NEAR(o[9], vv[1], 1e-15);
}

TEST(Attention, HandComputedTwoKeys) {
  // one query q = [1, 0], keys [1, 0] and [0, 0], scale 1: weights e/(e+1), 1/(e+1)
  Tensor q = from_vector<double>({1, 0}, {1, 1, 1, 2});
  Tensor k = from_vector<double>({1, 0, 0, 0}, {1, 1, 2, 2});
  Tensor v = from_vector<double>({10, 0, 0, 20}, {1, 1, 2, 2});
  std::vector<double> o = scaled_dot_product_attention(q, k, v, false, 1.0).to_vector<double>();
  const double e = std::exp(1.0);
  EXPECT_NEAR(o[0], 10 * e / (e + 1), 1e-14);
  EXPECT_NEAR(o[1], 20 / (e + 1), 1e-14);
}

TEST(Attention, KeyPaddingMask) {
  for (DType dt : {DType::F64, DType::F32}) {
    for (bool causal : {false, true}) {
      Cfg c{3, 2, 11, 11, 5, causal, -1};
      // batch 0: last 4 keys padded; batch 1: none; batch 2: every key padded
      std::vector<uint8_t> m(size_t(3 * 11), 0);
      for (int j = 7; j < 11; j++) m[size_t(j)] = 1;
      for (int j = 0; j < 11; j++) m[size_t(22 + j)] = 1;
      m[size_t(11 + 3)] = 1;  // and one key in the middle of batch 1
      Tensor q = make({3, 2, 11, 5}, 10, dt), k = make({3, 2, 11, 5}, 11, dt),
             v = make({3, 2, 11, 5}, 12, dt);
      Tensor o = scaled_dot_product_attention(q, k, v, causal, -1, mask_tensor(m, 3, 11));
      std::vector<double> ref = naive(q, k, v, c, m);
      EXPECT_LT(rel_err(o.to_vector<double>(), ref), dt == DType::F64 ? 1e-12 : 2e-6);
      // fully padded batch: output exactly 0
      std::vector<double> ov = o.to_vector<double>();
      for (size_t i = size_t(2 * 2 * 11 * 5); i < ov.size(); i++) ASSERT_EQ(ov[i], 0.0);
      // an i64 mask means the same as the u8 one
      std::vector<int64_t> m64(m.begin(), m.end());
      Tensor o64 = scaled_dot_product_attention(q, k, v, causal, -1,
                                                from_vector(m64, {3, 11}, TensorOptions(DType::I64)));
      EXPECT_EQ(o64.to_vector<double>(), ov);
    }
  }
}

TEST(Attention, GradcheckQKV) {
  std::vector<Cfg> cfgs = {{1, 2, 5, 7, 3, true, -1},  {2, 1, 6, 6, 4, false, -1},
                           {1, 1, 4, 4, 1, true, 1.3}, {1, 1, 3, 1, 2, false, -1},
                           {1, 1, 6, 3, 2, true, -1},  {1, 1, 40, 70, 2, true, 0.8}};
  uint64_t seed = 100;
  for (const Cfg& c : cfgs) {
    Tensor q = rnd({c.B, c.H, c.Tq, c.D}, seed++), k = rnd({c.B, c.H, c.Tk, c.D}, seed++),
           v = rnd({c.B, c.H, c.Tk, c.D}, seed++);
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], c.causal, c.scale);
        },
        {q, k, v}))
        << "B" << c.B << " H" << c.H << " Tq" << c.Tq << " Tk" << c.Tk << " D" << c.D
        << " causal " << c.causal;
  }
}

TEST(Attention, GradcheckWithPaddingAndStridedInputs) {
  // batch 1 is fully padded: its output is 0 and its gradients must be exactly 0.
  std::vector<uint8_t> m = {0, 1, 0, 0, 1, 1, 1, 1, 1, 1};
  Tensor mask = mask_tensor(m, 2, 5);
  Tensor q = mox::testing::rnd_noncontig({2, 2, 4, 3}, 7), k = rnd({2, 2, 5, 3}, 8),
         v = rnd({2, 2, 5, 3}, 9);
  for (bool causal : {false, true})
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], causal, -1, mask);
        },
        {q, k, v}));
  Tensor q2 = rnd({2, 2, 4, 3}, 17), k2 = rnd({2, 2, 5, 3}, 18), v2 = rnd({2, 2, 5, 3}, 19);
  Tensor out = scaled_dot_product_attention(q2, k2, v2, false, -1, mask);
  sum(out).backward();
  for (const Tensor& t : {q2, k2, v2}) {
    std::vector<double> g = t.grad().select(0, 1).contiguous().to_vector<double>();
    for (double x : g) ASSERT_EQ(x, 0.0);
  }
}

TEST(Attention, HeadsOfOneProjectionNeedNoCopy) {
  // The GPT layout: q, k, v are column blocks of one [B, T, 3C] tensor, seen as [B, H, T, D]
  // views with row stride 3C (no copy). f64 gradients through split/reshape/transpose
  // against finite differences, and the f32 result equal to the one from contiguous copies.
  const int64_t B = 2, T = 9, H = 3, D = 4, C = H * D;
  auto attend = [&](const Tensor& qkv, bool copy) {
    std::vector<Tensor> p = split(qkv, C, 2);
    auto heads = [&](const Tensor& t) {
      Tensor h = t.reshape({B, T, H, D}).transpose(1, 2);
      return copy ? h.contiguous() : h;
    };
    Tensor y = scaled_dot_product_attention(heads(p[0]), heads(p[1]), heads(p[2]), true);
    return y.transpose(1, 2).reshape({B, T, C});
  };
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return attend(in[0], false); },
                        {rnd({B, T, 3 * C}, 31)}));
  Tensor x = make({B, T, 3 * C}, 32, DType::F32);
  Tensor y0 = attend(x, false), y1 = attend(x, true);
  EXPECT_EQ(y0.to_vector<float>(), y1.to_vector<float>());
  {
    std::vector<Tensor> p = split(x, C, 2);
    Tensor q = p[0].reshape({B, T, H, D}).transpose(1, 2);
    EXPECT_EQ(q.stride(2), 3 * C);  // a strided view reaches the kernel
  }
}

TEST(Attention, QkvOpEqualsTheSplitHeads) {
  // attention_qkv on one [B, T, 3C] projection: the same output and the same gradient as
  // splitting it into heads for scaled_dot_product_attention (bit for bit: one kernel), and
  // f64 gradients against finite differences.
  const int64_t B = 2, T = 37, H = 2, D = 16, C = H * D;
  Tensor x = make({B, T, 3 * C}, 41, DType::F32).requires_grad_(true);
  Tensor w = make({B, T, C}, 42, DType::F32);
  Tensor y = attention_qkv(x, H, true);
  ASSERT_EQ(y.shape(), (Shape{B, T, C}));
  sum(mul(y, w)).backward();
  Tensor x2 = x.detach().clone().requires_grad_(true);
  std::vector<Tensor> p = split(x2, C, 2);
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, H, D}).transpose(1, 2); };
  Tensor y2 = scaled_dot_product_attention(heads(p[0]), heads(p[1]), heads(p[2]), true)
                  .transpose(1, 2)
                  .reshape({B, T, C});
  sum(mul(y2, w)).backward();
  EXPECT_EQ(y.to_vector<float>(), y2.to_vector<float>());
  EXPECT_EQ(x.grad().to_vector<float>(), x2.grad().to_vector<float>());
  for (bool causal : {true, false})
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return attention_qkv(in[0], 3, causal); },
                          {rnd({2, 5, 18}, 43)}));
  EXPECT_NE(error_of([&] { attention_qkv(make({2, 5, 20}, 1, DType::F32), 3, true); }).find("multiple of n_head"),
            std::string::npos);
}

TEST(Attention, SameResultOnOneAndTwoThreads) {
  const int saved = get_num_threads();
  auto run = [](int threads) {
    set_num_threads(threads);
    Tensor q = make({2, 4, 100, 32}, 1, DType::F32), k = make({2, 4, 100, 32}, 2, DType::F32),
           v = make({2, 4, 100, 32}, 3, DType::F32);
    for (Tensor* t : {&q, &k, &v}) t->requires_grad_(true);
    Tensor o = scaled_dot_product_attention(q, k, v, true);
    sum(mul(o, o)).backward();
    return std::vector<std::vector<float>>{o.to_vector<float>(), q.grad().to_vector<float>(),
                                           k.grad().to_vector<float>(),
                                           v.grad().to_vector<float>()};
  };
  auto one = run(1), two = run(2);
  set_num_threads(saved);
  for (size_t i = 0; i < one.size(); i++) EXPECT_EQ(one[i], two[i]) << "tensor " << i;
}

TEST(Attention, F32GradientsMatchF64) {
  // The f32 (vectorised, polynomial exp) backward against the f64 one, over several tiles,
  // for head sizes with a specialised kernel (16, 32, 64) and without (17).
  for (int64_t D : {16, 17, 32, 64}) {
    Tensor q = make({1, 2, 75, D}, 21, DType::F64), k = make({1, 2, 75, D}, 22, DType::F64),
           v = make({1, 2, 75, D}, 23, DType::F64), w = make({1, 2, 75, D}, 24, DType::F64);
    std::vector<std::vector<double>> grads[2];
    for (int f = 0; f < 2; f++) {
      DType dt = f ? DType::F32 : DType::F64;
      Tensor qq = q.to(dt).detach(), kk = k.to(dt).detach(), vv = v.to(dt).detach();
      for (Tensor* t : {&qq, &kk, &vv}) t->requires_grad_(true);
      sum(mul(scaled_dot_product_attention(qq, kk, vv, true), w.to(dt))).backward();
      for (Tensor* t : {&qq, &kk, &vv}) grads[f].push_back(t->grad().to_vector<double>());
    }
    for (size_t i = 0; i < 3; i++)
      EXPECT_LT(rel_err(grads[1][i], grads[0][i]), 1e-5) << "D " << D << " input " << i;
  }
}

TEST(Attention, LongSequenceF32) {
  // T = 1024: by design the kernel holds no T x T buffer (tiles of 32 queries x 64 keys and
  // O(T) row statistics, see cpu_attention.cpp); here the numerics over 16 key tiles.
  Cfg c{1, 2, 1024, 1024, 32, true, -1};
  Tensor q = make({1, 2, 1024, 32}, 31, DType::F32), k = make({1, 2, 1024, 32}, 32, DType::F32),
         v = make({1, 2, 1024, 32}, 33, DType::F32);
  Tensor o = scaled_dot_product_attention(q, k, v, true);
  EXPECT_LT(rel_err(o.to_vector<double>(), naive(q, k, v, c, {})), 1e-5);
}

TEST(Attention, EmptyKeysAndHalfPrecision) {
  // no keys at all: every row sees nothing, output 0, gradient of q 0
  Tensor q = rnd({1, 2, 3, 4}, 41), k = rnd({1, 2, 0, 4}, 42), v = rnd({1, 2, 0, 4}, 43);
  Tensor o = scaled_dot_product_attention(q, k, v, false);
  for (double x : o.to_vector<double>()) EXPECT_EQ(x, 0.0);
  sum(o).backward();
  for (double x : q.grad().to_vector<double>()) EXPECT_EQ(x, 0.0);
  // bf16 inputs run through f32 and come back as bf16
  Tensor qf = make({2, 2, 9, 8}, 44, DType::F32), kf = make({2, 2, 9, 8}, 45, DType::F32),
         vf = make({2, 2, 9, 8}, 46, DType::F32);
  Tensor ob = scaled_dot_product_attention(qf.to(DType::BF16), kf.to(DType::BF16),
                                           vf.to(DType::BF16), true);
  EXPECT_EQ(ob.dtype(), DType::BF16);
  Cfg c{2, 2, 9, 9, 8, true, -1};
  EXPECT_LT(rel_err(ob.to_vector<double>(),
                    naive(qf.to(DType::BF16), kf.to(DType::BF16), vf.to(DType::BF16), c, {})),
            1e-2);
}

TEST(Attention, Errors) {
  Tensor q = make({1, 2, 3, 4}, 1, DType::F32), k = make({1, 2, 5, 4}, 2, DType::F32);
  expect_error([&] { scaled_dot_product_attention(q.reshape({2, 3, 4}), k, k, false); },
               {"scaled_dot_product_attention", "[2, 3, 4]"});
  expect_error([&] { scaled_dot_product_attention(q, make({1, 2, 5, 3}, 3, DType::F32), k, false); },
               {"scaled_dot_product_attention", "[1, 2, 5, 3]"});
  expect_error([&] { scaled_dot_product_attention(q, k, make({1, 2, 4, 4}, 3, DType::F32), false); },
               {"v", "[1, 2, 4, 4]"});
  expect_error([&] { scaled_dot_product_attention(q, k.to(DType::F64), k, false); },
               {"dtype"});
  expect_error([&] { scaled_dot_product_attention(q, k, k, false, -1, zeros({1, 4}, DType::U8)); },
               {"key_padding_mask", "[1, 5]", "[1, 4]"});
  expect_error([&] { scaled_dot_product_attention(q, k, k, false, -1, zeros({1, 5}, DType::F32)); },
               {"key_padding_mask", "f32"});
}
