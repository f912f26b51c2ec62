// Sparse safetensors files (compress/sparse.h): exact round trips at 0/50/80/100% sparsity
// and odd sizes, the layout of the pair (values, LSB-first bitmap, shape metadata) checked
// by decoding the file by hand, mixed modules (integer buffers kept), the size at 80%
// sparsity, and corrupt files rejected naming the file and the key.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "../error_of.h"
#include "io/test_util.h"
#include "mox/compress/sparse.h"
#include "mox/io/safetensors.h"
#include "mox/mox.h"
#include "mox/nn/nn.h"
#include "mox/nn/prune.h"
#include "mox/nn/serialize.h"

using namespace mox;

namespace {

// n values, exactly `zeros` of them zero (every k-th position), the others nonzero and of
// both signs.
std::vector<float> with_zeros(int64_t n, int64_t zeros, uint64_t seed) {
  Generator g(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) {
    float x = float(g.uniform() * 2.0 - 1.0);
    if (x == 0.0f) x = 0.5f;
    v[size_t(i)] = x;
  }
  // zero `zeros` distinct positions chosen by a shuffled index list
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) idx[size_t(i)] = i;
  for (int64_t i = n - 1; i > 0; i--) std::swap(idx[size_t(i)], idx[size_t(g.below(uint64_t(i + 1)))]);
  for (int64_t k = 0; k < zeros; k++) v[size_t(idx[size_t(k)])] = (k % 2) ? -0.0f : 0.0f;
  return v;
}

void expect_same_values(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  std::vector<double> x = a.to(DType::F64).to_vector<double>(), y = b.to(DType::F64).to_vector<double>();
  for (size_t i = 0; i < x.size(); i++) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(y[i])) << what << "[" << i << "]";
      continue;
    }
    EXPECT_EQ(x[i], y[i]) << what << "[" << i << "]";
  }
}

}  // namespace

TEST(Sparse, RoundTripIsExactAtEverySparsityAndOddSize) {
  mox::testing::TempDir tmp;
  nn::Module m;
  struct Case {
    std::string name;
    Shape shape;
    int64_t zeros;
  };
  const std::vector<Case> cases = {
      {"dense", {3, 5}, 0},          {"half", {7, 3}, 11},       // 52% zeros, numel 21
      {"eighty", {10, 101}, 808},    {"all", {9}, 9},            // 80%; 100%
      {"one", {1}, 0},               {"one_zero", {1}, 1},       // single element
      {"odd8", {3, 3, 3}, 26},       {"scalar", {}, 1},          // 27 elements; 0-d
      {"exact8", {2, 8}, 10},
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    const int64_t n = shape_numel(c.shape);
    m.register_parameter(c.name, from_vector(with_zeros(n, c.zeros, seed++), c.shape));
  }
  // f64 and bf16 tensors, and special values (NaN, inf are nonzeros).
  Tensor d = from_vector(std::vector<double>{0.0, -1.5, 0.0, 0.0, 1e-300, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0}, {11});
  m.register_parameter("f64", d);
  m.register_parameter("bf16", from_vector(std::vector<float>{0, 0, 1.25f, 0, -3, 0, 0}, {7}).to(DType::BF16));
  m.register_parameter("special", from_vector(std::vector<float>{0, NAN, 0, INFINITY, 0, 0, -INFINITY, 0, 0}, {9}));
  m.register_buffer("count", from_vector(std::vector<int64_t>{0, 0, 0, 7}, {4}));  // integer: kept dense

  const std::string path = tmp.file("sparse.safetensors");
  compress::save_sparse_state_dict(m, path, {{"format", "pt"}}, 0.5);

  // The file, read as plain safetensors: which tensors went sparse, and their layout.
  io::SafetensorsFile f = io::load_safetensors(path);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  for (const std::string dense : {"dense", "one", "count"}) {
    EXPECT_TRUE(f.contains(dense)) << dense;
    EXPECT_FALSE(f.contains(dense + ".sparse_values")) << dense;
  }
  EXPECT_EQ(f.at("count").dtype(), DType::I64);
  for (const std::string sp : {"half", "eighty", "all", "one_zero", "odd8", "scalar", "exact8", "f64", "bf16", "special"}) {
    EXPECT_FALSE(f.contains(sp)) << sp;
    EXPECT_TRUE(f.contains(sp + ".sparse_values")) << sp;
    EXPECT_TRUE(f.contains(sp + ".sparse_mask")) << sp;
  }
  EXPECT_EQ(f.metadata.at("sparse.half"), "[7,3]");
  EXPECT_EQ(f.metadata.at("sparse.odd8"), "[3,3,3]");
  EXPECT_EQ(f.metadata.at("sparse.scalar"), "[]");
  EXPECT_EQ(f.at("bf16.sparse_values").dtype(), DType::BF16);
  EXPECT_EQ(f.at("f64.sparse_values").dtype(), DType::F64);
  // Decode pairs by hand from the documented layout: bit i of byte i/8 (LSB first), values
  // in row-major order.
  for (const std::string key : {"odd8", "half", "eighty", "exact8"}) {
    const std::vector<float> orig = m.state_dict().at(key).to_vector<float>();
    const Tensor mask = f.at(key + ".sparse_mask");
    ASSERT_EQ(mask.dtype(), DType::U8);
    ASSERT_EQ(mask.numel(), int64_t((orig.size() + 7) / 8)) << key;
    const std::vector<uint8_t> bits = mask.to_vector<uint8_t>();
    const std::vector<float> vals = f.at(key + ".sparse_values").to_vector<float>();
    size_t k = 0;
    for (size_t i = 0; i < orig.size(); i++) {
      const bool set = (bits[i / 8] >> (i % 8)) & 1;
      EXPECT_EQ(set, orig[i] != 0.0f) << key << " " << i;
      if (set) {
        ASSERT_LT(k, vals.size()) << key;
        EXPECT_EQ(vals[k++], orig[i]) << key << " " << i;
      }
    }
    EXPECT_EQ(k, vals.size()) << key;
    if (orig.size() % 8) {
      EXPECT_EQ(bits.back() >> (orig.size() % 8), 0) << key << ": bits past numel are clear";
    }
  }
  EXPECT_EQ(f.at("all.sparse_values").numel(), 0);
  EXPECT_EQ(f.at("eighty.sparse_values").numel(), 1010 - 808);

  // Reading it back gives the dense state dict exactly, in state-dict order.
  nn::StateDict back = compress::read_state_dict_any(path);
  const nn::StateDict orig = m.state_dict();
  ASSERT_EQ(back.size(), orig.size());
  EXPECT_EQ(back.keys(), orig.keys());
  for (const auto& [k, t] : orig) expect_same_values(back.at(k), t, k);

  // And into a module with the same names.
  nn::Module fresh;
  for (const auto& [k, t] : orig) {
    if (k == "count") fresh.register_buffer(k, zeros_like(t));
    else fresh.register_parameter(k, zeros_like(t));
  }
  compress::load_state_dict_any(fresh, path);
  for (const auto& [k, t] : orig) expect_same_values(fresh.state_dict().at(k), t, k);
}

TEST(Sparse, MinSparsityZeroStoresEveryFloatingTensorSparse) {
  mox::testing::TempDir tmp;
  nn::Module m;
  m.register_parameter("w", from_vector(with_zeros(10, 0, 3), {2, 5}));
  m.register_buffer("n", scalar_tensor(4, DType::I64));
  compress::save_sparse_state_dict(m, tmp.file("a.safetensors"), {}, 0.0);
  io::SafetensorsFile f = io::load_safetensors(tmp.file("a.safetensors"));
  EXPECT_TRUE(f.contains("w.sparse_values"));
  EXPECT_TRUE(f.contains("n"));
  expect_same_values(compress::read_state_dict_any(tmp.file("a.safetensors")).at("w"), m.state_dict().at("w"), "w");
  // min_sparsity 1: only all-zero tensors.
  compress::save_sparse_state_dict(m, tmp.file("b.safetensors"), {}, 1.0);
  EXPECT_TRUE(io::load_safetensors(tmp.file("b.safetensors")).contains("w"));
}

TEST(Sparse, PrunedModelWithBatchNormRoundTripsAndIsSmall) {
  mox::testing::TempDir tmp;
  manual_seed(7);
  auto model = std::make_shared<nn::Sequential>();
  model->push_back(std::make_shared<nn::Linear>(200, 100));
  model->push_back(std::make_shared<nn::BatchNorm1d>(100));
  model->push_back(std::make_shared<nn::ReLU>());
  model->push_back(std::make_shared<nn::Linear>(100, 10));
  // Running statistics that are not the defaults, and batches tracked.
  model->train();
  model->forward(randn({16, 200}));
  model->forward(randn({16, 200}));
  nn::PruneOptions o;
  o.sparsity = 0.8;
  nn::apply_masks(*model, nn::magnitude_prune_masks(*model, o));

  const std::string sparse = tmp.file("sparse.safetensors"), dense = tmp.file("dense.safetensors");
  compress::save_sparse_state_dict(*model, sparse);
  nn::save_state_dict(*model, dense);
  io::SafetensorsFile f = io::load_safetensors(sparse);
  EXPECT_TRUE(f.contains("0.weight.sparse_values"));
  EXPECT_TRUE(f.contains("3.weight.sparse_values"));
  EXPECT_TRUE(f.contains("1.num_batches_tracked"));
  EXPECT_EQ(f.at("1.num_batches_tracked").dtype(), DType::I64);
  EXPECT_TRUE(f.contains("1.running_mean"));  // dense statistics stay dense

  const auto sparse_size = std::filesystem::file_size(sparse), dense_size = std::filesystem::file_size(dense);
  EXPECT_LT(double(sparse_size), 0.3 * double(dense_size)) << sparse_size << " vs " << dense_size;

  manual_seed(8);
  auto copy = std::make_shared<nn::Sequential>();
  copy->push_back(std::make_shared<nn::Linear>(200, 100));
  copy->push_back(std::make_shared<nn::BatchNorm1d>(100));
  copy->push_back(std::make_shared<nn::ReLU>());
  copy->push_back(std::make_shared<nn::Linear>(100, 10));
  nn::LoadResult r = compress::load_state_dict_any(*copy, sparse);
  EXPECT_TRUE(r.missing_keys.empty());
  for (const auto& [k, t] : model->state_dict()) expect_same_values(copy->state_dict().at(k), t, k);
  EXPECT_EQ(copy->state_dict().at("1.num_batches_tracked").item<int64_t>(), 2);

  // A plain file reads through the same function.
  nn::StateDict plain = compress::read_state_dict_any(dense);
  for (const auto& [k, t] : model->state_dict()) expect_same_values(plain.at(k), t, k);
}

TEST(Sparse, CorruptFilesNameTheFileAndKey) {
  mox::testing::TempDir tmp;
  auto u8 = [](std::vector<uint8_t> v) { return from_vector(v, {int64_t(v.size())}); };
  auto f32 = [](std::vector<float> v) { return from_vector(v, {int64_t(v.size())}); };
  auto write = [&](const std::string& name, const io::NamedTensors& t, const io::Metadata& meta) {
    const std::string p = tmp.file(name);
    io::save_safetensors(p, t, meta);
    return p;
  };
  // A valid pair: [2, 5] with elements 0 and 9 nonzero: bits 0 and 9.
  const std::string ok = write("ok", {{"w.sparse_values", f32({1, 2})}, {"w.sparse_mask", u8({1, 2})}}, {{"sparse.w", "[2,5]"}});
  EXPECT_EQ(compress::read_state_dict_any(ok).at("w").to_vector<float>(),
            (std::vector<float>{1, 0, 0, 0, 0, 0, 0, 0, 0, 2}));

  std::string p = write("size", {{"w.sparse_values", f32({1, 2})}, {"w.sparse_mask", u8({1, 2, 0})}}, {{"sparse.w", "[2,5]"}});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "u8[2]"});
  p = write("count", {{"w.sparse_values", f32({1, 2, 3})}, {"w.sparse_mask", u8({1, 2})}}, {{"sparse.w", "[2,5]"}});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "2 nonzeros but 3 values"});
  p = write("past", {{"w.sparse_values", f32({1, 2, 3})}, {"w.sparse_mask", u8({1, 6})}}, {{"sparse.w", "[2,5]"}});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "past"});
  p = write("novalues", {{"w.sparse_mask", u8({1, 2})}}, {{"sparse.w", "[2,5]"}});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "w.sparse_values"});
  p = write("nomask", {{"w.sparse_values", f32({1, 2})}}, {{"sparse.w", "[2,5]"}});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "w.sparse_mask"});
  p = write("nometa", {{"w.sparse_values", f32({1, 2})}, {"w.sparse_mask", u8({1, 2})}}, {});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "sparse.w"});
  p = write("badshape", {{"w.sparse_values", f32({1, 2})}, {"w.sparse_mask", u8({1, 2})}}, {{"sparse.w", "[2,x]"}});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "[2,x]"});
  p = write("maskdtype", {{"w.sparse_values", f32({1, 2})}, {"w.sparse_mask", f32({1, 2})}}, {{"sparse.w", "[2,5]"}});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "u8[2]"});
  p = write("intvalues", {{"w.sparse_values", from_vector(std::vector<int64_t>{1, 2})}, {"w.sparse_mask", u8({1, 2})}},
            {{"sparse.w", "[2,5]"}});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "floating"});
  p = write("both", {{"w", f32({1})}, {"w.sparse_values", f32({1, 2})}, {"w.sparse_mask", u8({1, 2})}}, {{"sparse.w", "[2,5]"}});
  expect_error([&] { compress::read_state_dict_any(p); }, {p, "\"w\"", "dense and sparse"});

  // A module whose shapes differ: the load error names the file.
  nn::Module m;
  m.register_parameter("w", zeros({3, 5}));
  expect_error([&] { compress::load_state_dict_any(m, ok); }, {ok});

  // Bad arguments when saving.
  expect_error([&] { compress::save_sparse_state_dict(m, tmp.file("x"), {}, 1.5); }, {"min_sparsity"});
  expect_error([&] { compress::save_sparse_state_dict(m, tmp.file("x"), {{"sparse.w", "[1]"}}); }, {"sparse.w", "reserved"});
  EXPECT_FALSE(std::filesystem::exists(tmp.file("x")));
}
