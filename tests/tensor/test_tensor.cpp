#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "mox/mox.h"

using namespace mox;

TEST(Tensor, FactoriesShapeStrides) {
  Tensor t = zeros({2, 3, 4});
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.numel(), 24);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.dtype(), DType::F32);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);  // aligned
  Tensor f = full({3}, 2.5, DType::F64);
  EXPECT_EQ(f.to_vector<double>(), (std::vector<double>{2.5, 2.5, 2.5}));
  EXPECT_EQ(arange(5).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(1.0, 2.0, 0.25).to_vector<float>(), (std::vector<float>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(linspace(0, 1, 3).to_vector<float>(), (std::vector<float>{0, 0.5f, 1}));
  EXPECT_EQ(eye(2).to_vector<float>(), (std::vector<float>{1, 0, 0, 1}));
  EXPECT_THROW(empty({2, -1}), Error);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = arange(0, 12, 1).reshape({3, 4});
  Tensor tt = t.t();
  EXPECT_EQ(tt.shape(), (Shape{4, 3}));
  EXPECT_EQ(tt.strides(), (Shape{1, 4}));
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.storage().get(), t.storage().get());
  EXPECT_EQ(tt.contiguous().to_vector<float>(),
            (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  Tensor s = t.slice(1, 1, 4, 2);  // columns 1 and 3
  EXPECT_EQ(s.shape(), (Shape{3, 2}));
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{1, 3, 5, 7, 9, 11}));
  EXPECT_EQ(t[1].to_vector<float>(), (std::vector<float>{4, 5, 6, 7}));
  EXPECT_EQ(t.select(1, -1).to_vector<float>(), (std::vector<float>{3, 7, 11}));
  Tensor e = from_vector<float>({1, 2, 3}).unsqueeze(0).expand({2, 3});
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  Tensor p = arange(0, 24, 1).reshape({2, 3, 4}).permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.contiguous()[1][1].to_vector<float>(), (std::vector<float>{13, 17, 21}));
  // writes through a view reach the base
  {
    NoGradGuard ng;
    t.slice(0, 0, 1).fill_(-1);
  }
  EXPECT_EQ(t[0].to_vector<float>(), (std::vector<float>{-1, -1, -1, -1}));
  EXPECT_EQ(t.flatten().shape(), (Shape{12}));
  EXPECT_EQ(t.reshape({-1, 6}).shape(), (Shape{2, 6}));
  EXPECT_THROW(t.reshape({5, -1}), Error);
  EXPECT_THROW(t.t().view({12}), Error);  // not viewable: must copy
  EXPECT_EQ(t.t().reshape({12}).numel(), 12);
  EXPECT_EQ(zeros({2, 1, 3}).squeeze().shape(), (Shape{2, 3}));
}

TEST(Tensor, DtypeConversions) {
  Tensor x = from_vector<float>({-1.5f, 0.0f, 2.25f, 65504.0f, 1e-6f});
  for (DType d : {DType::F64, DType::BF16, DType::F16, DType::I64, DType::I32, DType::I8, DType::U8}) {
    Tensor y = x.to(d);
    EXPECT_EQ(y.dtype(), d);
    EXPECT_EQ(y.shape(), x.shape());
  }
  auto f16v = x.to(DType::F16).to_vector<float>();
  EXPECT_EQ(f16v[0], -1.5f);
  EXPECT_EQ(f16v[2], 2.25f);
  EXPECT_EQ(f16v[3], 65504.0f);
  EXPECT_NEAR(f16v[4], 1e-6f, 1e-7);  // subnormal in f16
  auto bf = x.to(DType::BF16).to_vector<float>();
  EXPECT_EQ(bf[0], -1.5f);
  EXPECT_EQ(x.to(DType::I64).to_vector<int64_t>()[2], 2);
  // bf16 round-to-nearest-even and f16 overflow to inf
  EXPECT_EQ(float(bf16(1.00390625f)), 1.0f);  // halfway between 1 and 1+2^-7 -> even (1.0)
  EXPECT_TRUE(std::isinf(float(f16(70000.0f))));
  EXPECT_TRUE(std::isnan(float(f16(NAN))));
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_THROW(dtype_from_name("F8"), Error);
}

TEST(Tensor, HalfPrecisionOpsComputeInF32) {
  Tensor a = from_vector<float>({1, 2, 3}).to(DType::BF16);
  Tensor b = add(a, a);
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{2, 4, 6}));
  EXPECT_EQ(sum(a).to_vector<float>()[0], 6.0f);
  EXPECT_EQ(relu(a.to(DType::F16)).dtype(), DType::F16);
}

TEST(Tensor, PrintingIsReadable) {
  Tensor t = from_vector<float>({1, -2.5f, 3, 4}, {2, 2});
  std::string s = t.str();
  EXPECT_NE(s.find("[[ 1.0000, -2.5000],"), std::string::npos) << s;
  EXPECT_NE(s.find("dtype=f32"), std::string::npos);
  std::string big = zeros({100, 100}).str();
  EXPECT_NE(big.find("..."), std::string::npos);
  EXPECT_LT(big.size(), 2000u);
  EXPECT_NE(arange(3).str().find("[0, 1, 2]"), std::string::npos) << arange(3).str();
}

TEST(Tensor, RandomIsSeededAndDeterministic) {
  Generator g1(42), g2(42);
  Tensor a = randn({1000}, &g1), b = randn({1000}, &g2);
  EXPECT_TRUE(allclose(a, b, 0, 0));
  auto v = a.to_vector<float>();
  double m = 0, s = 0;
  for (float x : v) m += x;
  m /= v.size();
  for (float x : v) s += (x - m) * (x - m);
  s = std::sqrt(s / v.size());
  EXPECT_NEAR(m, 0.0, 0.1);
  EXPECT_NEAR(s, 1.0, 0.1);
  Tensor r = randint(3, 7, {500}, &g1);
  for (int64_t x : r.to_vector<int64_t>()) {
    EXPECT_GE(x, 3);
    EXPECT_LT(x, 7);
  }
  auto st = g1.state();
  double u1 = g1.uniform();
  g1.set_state(st);
  EXPECT_EQ(g1.uniform(), u1);
}

TEST(Tensor, CachingAllocatorReusesBlocks) {
  Allocator& a = backend_for(kCPU).allocator();
  { Tensor t = empty({1000, 1000}); }
  auto before = a.stats();
  { Tensor t = empty({1000, 1000}); }
  auto after = a.stats();
  EXPECT_GT(after.cache_hits, before.cache_hits);
}

TEST(Tensor, ThreadCountIsSettable) {
  int old = get_num_threads();
  set_num_threads(1);
  EXPECT_EQ(get_num_threads(), 1);
  Tensor x = randn({300, 300});
  Tensor y1 = matmul(x, x);
  set_num_threads(2);
  Tensor y2 = matmul(x, x);
  EXPECT_TRUE(allclose(y1, y2, 1e-5, 1e-4));
  set_num_threads(old);
  EXPECT_THROW(set_num_threads(0), Error);
}

TEST(Tensor, ErrorsNameOpAndShapes) {
  try {
    add(zeros({2, 3}), zeros({4}));
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("add"), std::string::npos);
    EXPECT_NE(m.find("[2, 3]"), std::string::npos);
    EXPECT_NE(m.find("[4]"), std::string::npos);
  }
  try {
    matmul(zeros({2, 3}), zeros({4, 5}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("matmul"), std::string::npos);
  }
  EXPECT_THROW(zeros({2}).item<float>(), Error);
  EXPECT_THROW(zeros({2}).data<double>(), Error);
  EXPECT_THROW(Device::parse("tpu"), Error);
}

// The vectorised contiguous f32 <-> bf16 copies round exactly as bf16::from_float does
// (nearest-even, quiet NaN), including ties, infinities, NaN and subnormals, and the strided
// path agrees with them.
TEST(Tensor, Bf16ConversionMatchesScalarRounding) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.5f, 3.14159f, 1e-40f, -1e-39f, 65504.0f, 1e38f, 3.4e38f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(),
                          std::bit_cast<float>(0x3f808000u),   // tie, even below: rounds down
                          std::bit_cast<float>(0x3f818000u),   // tie, odd below: rounds up
                          std::bit_cast<float>(0x7f7fffffu)};  // largest finite: rounds to inf
  mox::Generator g(3);
  for (int i = 0; i < 100000; i++) v.push_back(float(g.normal() * std::pow(10.0, double(i % 20) - 10)));
  mox::Tensor x = mox::from_vector(v);
  mox::Tensor b = x.to(mox::DType::BF16);
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(b.raw_data());
  for (size_t i = 0; i < v.size(); i++) ASSERT_EQ(bits[i], mox::bf16::from_float(v[i])) << i << " " << v[i];
  mox::Tensor back = b.to(mox::DType::F32);
  for (size_t i = 0; i < v.size(); i++) {
    float want = float(mox::bf16(v[i]));
    float got = back.data<float>()[i];
    if (std::isnan(want)) EXPECT_TRUE(std::isnan(got));
    else ASSERT_EQ(got, want) << i;
  }
  // A strided (transposed) source takes the general path: the same values.
  mox::Tensor m = x.slice(0, 0, 100000).reshape({1000, 100}).transpose(0, 1);
  mox::Tensor mb = m.to(mox::DType::BF16).contiguous(), mc = m.contiguous().to(mox::DType::BF16);
  EXPECT_EQ(0, std::memcmp(mb.raw_data(), mc.raw_data(), size_t(mb.numel()) * 2));
}
