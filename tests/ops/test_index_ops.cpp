// index_select, index_add, gather, scatter_add, embedding, one_hot: values, gradients,
// bounds errors, deterministic accumulation of repeated indices, PyTorch parity.
#include <gtest/gtest.h>

#include "gradcheck.h"
#include "ops/ops_fixtures.h"

using namespace mox;
using mox::testing::gradcheck;
using mox::testing::rnd;
using mox::testing::rnd_noncontig;

namespace {

Tensor idx(std::vector<int64_t> v, Shape s) { return from_vector(v, s); }
Tensor idx(std::vector<int64_t> v) { return from_vector(v); }

// Expects an Error from `op` whose message names the op, the bad value and the size.
template <typename Fn>
void expect_index_error(Fn&& fn, const std::string& op, const std::string& value,
                        const std::string& size) {
  try {
    fn();
    ADD_FAILURE() << "expected an index error from " << op;
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(op), std::string::npos) << m;
    EXPECT_NE(m.find(value), std::string::npos) << m;
    EXPECT_NE(m.find(size), std::string::npos) << m;
  }
}

}  // namespace

TEST(IndexSelect, ValuesAlongEachDim) {
  Tensor x = arange(0, 12, 1, DType::F64).reshape({3, 4});
  EXPECT_EQ(index_select(x, 0, idx({2, 0})).to_vector<double>(),
            (std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3}));
  Tensor c = index_select(x, 1, idx({3, 3, 1}));
  EXPECT_EQ(c.shape(), (Shape{3, 3}));
  EXPECT_EQ(c.to_vector<double>(), (std::vector<double>{3, 3, 1, 7, 7, 5, 11, 11, 9}));
  // any dtype, non-contiguous source
  Tensor xi = arange(12).reshape({3, 4}).t();
  EXPECT_EQ(index_select(xi, -1, idx({1})).to_vector<int64_t>(), (std::vector<int64_t>{4, 5, 6, 7}));
}

TEST(IndexSelect, Gradcheck) {
  for (int64_t d : {0, 1, 2}) {
    Tensor x = rnd({3, 4, 5}, 1 + d);
    Tensor i = idx({2, 0, 2, 1});  // repeated index: gradients add up
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], d, i); }, {x}));
  }
  Tensor xn = rnd_noncontig({4, 3}, 9);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return index_select(in[0], 1, idx({2, 2, 0})); }, {xn}));
}

TEST(IndexSelect, BoundsErrors) {
  Tensor x = zeros({3, 4});
  expect_index_error([&] { index_select(x, 1, idx({0, 4})); }, "index_select", "4", "4");
  expect_index_error([&] { index_select(x, 0, idx({-1})); }, "index_select", "-1", "3");
  EXPECT_THROW(index_select(x, 0, from_vector<float>({0.f})), Error);  // float index
  EXPECT_THROW(index_select(x, 2, idx({0})), Error);                    // bad dim
}

TEST(IndexAdd, RepeatedIndicesSumDeterministically) {
  Tensor x = zeros({3, 2}, DType::F64);
  Tensor src = from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8}, {4, 2});
  Tensor y = index_add(x, 0, idx({2, 0, 2, 2}), src);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{3, 4, 0, 0, 1 + 5 + 7, 2 + 6 + 8}));
  EXPECT_EQ(x.to_vector<double>(), (std::vector<double>(6, 0.0)));  // out of place
  // Large f32 case over threads: same bits every time.
  Generator g(3);
  Tensor big_src = randn({20000, 64}, &g);
  Tensor big_idx = randint(0, 50, {20000}, &g);
  Tensor a = index_add(zeros({50, 64}), 0, big_idx, big_src);
  Tensor b = index_add(zeros({50, 64}), 0, big_idx, big_src);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  // and equal to a sequential double-precision sum within f32 rounding
  std::vector<float> s = big_src.to_vector<float>();
  std::vector<int64_t> ii = big_idx.to_vector<int64_t>();
  std::vector<double> want(50 * 64, 0.0);
  for (size_t r = 0; r < ii.size(); r++)
    for (int c = 0; c < 64; c++) want[ii[r] * 64 + c] += s[r * 64 + c];
  std::vector<float> got = a.to_vector<float>();
  for (size_t i = 0; i < want.size(); i++) EXPECT_NEAR(got[i], want[i], 1e-3) << i;
}

TEST(IndexAdd, Gradcheck) {
  Tensor x = rnd({4, 3, 2}, 11), src = rnd({4, 5, 2}, 12);
  Tensor i = idx({0, 2, 2, 1, 0});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return index_add(in[0], 1, i, in[1]); },
                        {x, src}));
  Tensor xn = rnd_noncontig({3, 4}, 13), sn = rnd_noncontig({2, 4}, 14);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return index_add(in[0], 0, idx({1, 1}), in[1]); }, {xn, sn}));
}

TEST(IndexAdd, Errors) {
  expect_index_error([&] { index_add(zeros({3, 2}), 0, idx({3}), zeros({1, 2})); }, "index_add", "3", "3");
  EXPECT_THROW(index_add(zeros({3, 2}), 0, idx({0, 1}), zeros({3, 2})), Error);  // src shape
  EXPECT_THROW(index_add(zeros({3, 2}), 0, idx({0}), zeros({1, 2}, DType::F64)), Error);  // dtype
}

TEST(Gather, ValuesPyTorchSemantics) {
  Tensor x = from_vector<double>({1, 2, 3, 4}, {2, 2});
  Tensor g = gather(x, 1, idx({0, 0, 1, 0}, {2, 2}));
  EXPECT_EQ(g.to_vector<double>(), (std::vector<double>{1, 1, 4, 3}));
  Tensor g0 = gather(x, 0, idx({1, 0}, {1, 2}));
  EXPECT_EQ(g0.to_vector<double>(), (std::vector<double>{3, 2}));
  // index may be smaller than the source in the other dims
  Tensor x3 = arange(0, 24, 1, DType::F64).reshape({2, 3, 4});
  Tensor g3 = gather(x3, 2, idx({3, 0}, {1, 1, 2}));
  EXPECT_EQ(g3.to_vector<double>(), (std::vector<double>{3, 0}));
}

TEST(Gather, GradcheckEveryDimAndNonContiguous) {
  Generator g(21);
  for (int64_t d = 0; d < 3; d++) {
    Tensor x = rnd({3, 4, 5}, 30 + d);
    Shape is{3, 4, 5};
    is[d] = 6;  // more picks than entries: repeats
    Tensor i = randint(0, x.size(d), is, &g);
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], d, i); }, {x}));
  }
  Tensor xn = rnd_noncontig({4, 5}, 35);
  Tensor in_t = randint(0, 5, {5, 4}, &g).t();  // non-contiguous index too
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], 1, in_t); }, {xn}));
}

TEST(Gather, Errors) {
  Tensor x = zeros({2, 3});
  expect_index_error([&] { gather(x, 1, idx({0, 3}, {1, 2})); }, "gather", "3", "3");
  EXPECT_THROW(gather(x, 1, idx({0, 0, 0}, {3, 1})), Error);  // index larger in dim 0
  EXPECT_THROW(gather(x, 1, idx({0, 1})), Error);              // rank mismatch
}

TEST(ScatterAdd, ValuesAndGradcheck) {
  Tensor x = zeros({2, 3}, DType::F64);
  Tensor src = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = scatter_add(x, 1, idx({0, 0, 2, 1, 1, 1}, {2, 3}), src);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{3, 0, 3, 0, 15, 0}));
  Generator g(41);
  for (int64_t d = 0; d < 2; d++) {
    Tensor xs = rnd({4, 5}, 42 + d), ss = rnd({6, 7}, 44 + d);
    Shape is{3, 4};
    Tensor i = randint(0, xs.size(d), is, &g);  // index smaller than src: the rest gets no grad
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return scatter_add(in[0], d, i, in[1]); }, {xs, ss}));
  }
  Tensor xn = rnd_noncontig({3, 4}, 47), sn = rnd_noncontig({3, 4}, 48);
  Tensor i2 = randint(0, 3, {3, 4}, &g);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return scatter_add(in[0], 0, i2, in[1]); }, {xn, sn}));
}

TEST(ScatterAdd, Errors) {
  expect_index_error([&] { scatter_add(zeros({2, 3}), 0, idx({2}, {1, 1}), zeros({1, 1})); },
                     "scatter_add", "2", "2");
  EXPECT_THROW(scatter_add(zeros({2, 3}), 0, idx({0, 0}, {1, 2}), zeros({1, 1})), Error);  // src small
}

TEST(Embedding, LookupAndPaddingGradient) {
  Tensor w = arange(0, 10, 1, DType::F64).reshape({5, 2}).detach().requires_grad_();
  Tensor i = idx({1, 4, 1, 0}, {2, 2});
  Tensor e = embedding(w, i, 1);
  EXPECT_EQ(e.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(e.to_vector<double>(), (std::vector<double>{2, 3, 8, 9, 2, 3, 0, 1}));
  sum(e).backward();
  // padding row 1 gets nothing; row 0 and 4 once; rows 2, 3 unused
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{1, 1, 0, 0, 0, 0, 0, 0, 1, 1}));
  Tensor wr = rnd({6, 3}, 50);
  Tensor ir = idx({5, 0, 0, 3, 2, 5}, {3, 2});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], ir); }, {wr}));
  // padding_idx 1 is never looked up here, so every row's gradient is the true one
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], ir, 1); }, {wr}));
  expect_index_error([&] { embedding(wr, idx({6})); }, "embedding", "6", "6");
}

TEST(OneHot, ValuesAndErrors) {
  Tensor h = one_hot(idx({2, 0, 1}), 4);
  EXPECT_EQ(h.shape(), (Shape{3, 4}));
  EXPECT_EQ(h.dtype(), DType::F32);
  EXPECT_EQ(h.to_vector<float>(), (std::vector<float>{0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0}));
  EXPECT_EQ(one_hot(idx({1, 3}), -1, DType::I64).shape(), (Shape{2, 4}));  // inferred classes
  EXPECT_THROW(one_hot(idx({4}), 4), Error);
  EXPECT_THROW(one_hot(idx({-1}), 4), Error);
}

TEST(IndexOps, MatchesPyTorchFixtures) {
  using mox::testing::Inputs;
  using mox::testing::json;
  std::map<std::string, mox::testing::CaseFn> ops;
  ops["index_select"] = [](Inputs& in, const json& p, const json&) {
    return index_select(in.at("x"), p.at("dim"), in.at("index"));
  };
  ops["gather"] = [](Inputs& in, const json& p, const json&) {
    return gather(in.at("x"), p.at("dim"), in.at("index"));
  };
  ops["scatter_add"] = [](Inputs& in, const json& p, const json&) {
    return scatter_add(in.at("x"), p.at("dim"), in.at("index"), in.at("src"));
  };
  ops["index_add"] = [](Inputs& in, const json& p, const json&) {
    return index_add(in.at("x"), p.at("dim"), in.at("index"), in.at("src"));
  };
  ops["embedding"] = [](Inputs& in, const json& p, const json&) {
    return embedding(in.at("w"), in.at("index"), p.at("padding_idx"));
  };
  ops["one_hot"] = [](Inputs& in, const json& p, const json&) {
    return one_hot(in.at("index"), p.at("num_classes"));
  };
  mox::testing::run_fixture_cases("index.json", ops);
}
