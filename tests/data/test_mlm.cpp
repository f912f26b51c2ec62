// Masked-language-model masking (src/mox/data/text/mlm.h): the 15% / 80-10-10 proportions
// over many tokens (within binomial tolerances), special ids never chosen, labels, the
// at-least-one-per-row rule, determinism per seed, and errors.
#include <gtest/gtest.h>

#include <cmath>

#include "../error_of.h"
#include "mox/data/text/mlm.h"
#include "mox/mox.h"

using namespace mox;

namespace {

constexpr int64_t kPad = 0, kCls = 1, kSep = 2, kMask = 3, kVocab = 1000;

data::MlmOptions options() {
  data::MlmOptions o;
  o.mask_token_id = kMask;
  o.vocab_size = kVocab;
  o.special_ids = {kPad, kCls, kSep, kMask};
  return o;
}

// [CLS] w ... w [SEP] [PAD]..., words in [4, kVocab), row r has r % 9 padding positions.
Tensor corpus(int64_t rows, int64_t T, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> ids(size_t(rows * T));
  for (int64_t r = 0; r < rows; r++) {
    const int64_t len = T - r % 9;
    for (int64_t t = 0; t < T; t++) {
      int64_t& v = ids[size_t(r * T + t)];
      v = t == 0 ? kCls : t == len - 1 ? kSep : t >= len ? kPad : 4 + int64_t(g.below(kVocab - 4));
    }
  }
  return from_vector(ids, {rows, T});
}

// |count - n p| within 5 standard deviations of a binomial(n, p).
void expect_binomial(int64_t count, int64_t n, double p, const char* what) {
  const double sd = std::sqrt(double(n) * p * (1 - p));
  EXPECT_NEAR(double(count), double(n) * p, 5 * sd) << what << ": " << count << " of " << n;
}

}  // namespace

TEST(Mlm, ProportionsSpecialsAndLabels) {
  Tensor ids = corpus(400, 64, 1);
  Generator gen(2);
  data::MlmBatch b = data::mask_tokens(ids, options(), gen);
  ASSERT_EQ(b.input_ids.shape(), ids.shape());
  ASSERT_EQ(b.labels.shape(), ids.shape());
  EXPECT_EQ(b.input_ids.dtype(), DType::I64);
  EXPECT_EQ(b.labels.dtype(), DType::I64);
  std::vector<int64_t> in = ids.to_vector<int64_t>(), out = b.input_ids.to_vector<int64_t>(),
                       lab = b.labels.to_vector<int64_t>();
  int64_t candidates = 0, chosen = 0, masked = 0, random = 0, kept = 0;
  double random_sum = 0;
  for (size_t i = 0; i < in.size(); i++) {
    const bool special = in[i] < 4;
    if (special) {
      EXPECT_EQ(lab[i], -100) << "special id chosen at " << i;
      EXPECT_EQ(out[i], in[i]) << "special id changed at " << i;
      continue;
    }
    candidates++;
    if (lab[i] == -100) {
      EXPECT_EQ(out[i], in[i]) << "unchosen token changed at " << i;
      continue;
    }
    EXPECT_EQ(lab[i], in[i]) << "label is not the original id at " << i;
    chosen++;
    ASSERT_GE(out[i], 0);
    ASSERT_LT(out[i], kVocab);
    if (out[i] == kMask) masked++;
    else if (out[i] == in[i]) kept++;
    else random++, random_sum += double(out[i]);
  }
  expect_binomial(chosen, candidates, 0.15, "chosen");
  // A random replacement hits [MASK] or the original id with probability 1 / vocab each.
  const double q = 1.0 / double(kVocab);
  expect_binomial(masked, chosen, 0.8 + 0.1 * q, "[MASK]");
  expect_binomial(random, chosen, 0.1 * (1 - 2 * q), "random");
  expect_binomial(kept, chosen, 0.1 + 0.1 * q, "kept");
  // Random ids are uniform over [0, vocab): their mean is (vocab - 1) / 2.
  const double sd = kVocab / std::sqrt(12.0 * double(random));
  EXPECT_NEAR(random_sum / double(random), (kVocab - 1) / 2.0, 5 * sd);
}

TEST(Mlm, EveryRowWithAWordGetsATarget) {
  data::MlmOptions o = options();
  o.mask_prob = 0.01;
  Tensor ids = corpus(50, 12, 3);  // every row but the last has 2 to 10 words
  // The last row holds only specials: it has nothing to choose.
  for (int64_t t = 0; t < 12; t++) ids.data<int64_t>()[49 * 12 + t] = t < 2 ? kCls : kPad;
  Generator gen(4);
  std::vector<int64_t> lab = data::mask_tokens(ids, o, gen).labels.to_vector<int64_t>();
  int64_t total = 0;
  for (int64_t r = 0; r < 50; r++) {
    int64_t n = 0;
    for (int64_t t = 0; t < 12; t++) n += lab[size_t(r * 12 + t)] != -100;
    if (r < 49) EXPECT_GE(n, 1) << "row " << r;
    else EXPECT_EQ(n, 0);
    total += n;
  }
  EXPECT_LT(total, 60);  // mostly the one forced target per row at 1%

  // mask_prob = 1 chooses every word; a 1-D input is one row.
  o.mask_prob = 1.0;
  Tensor row = from_vector(std::vector<int64_t>{kCls, 10, 11, 12, kSep});
  std::vector<int64_t> l1 = data::mask_tokens(row, o, gen).labels.to_vector<int64_t>();
  EXPECT_EQ(l1, (std::vector<int64_t>{-100, 10, 11, 12, -100}));
}

TEST(Mlm, DeterministicPerSeed) {
  Tensor ids = corpus(20, 32, 5);
  Generator a(7), b(7), c(8);
  data::MlmBatch x = data::mask_tokens(ids, options(), a), y = data::mask_tokens(ids, options(), b);
  data::MlmBatch z = data::mask_tokens(ids, options(), c);
  EXPECT_EQ(x.input_ids.to_vector<int64_t>(), y.input_ids.to_vector<int64_t>());
  EXPECT_EQ(x.labels.to_vector<int64_t>(), y.labels.to_vector<int64_t>());
  EXPECT_NE(x.labels.to_vector<int64_t>(), z.labels.to_vector<int64_t>());
  // The generator advances: the next batch is masked differently.
  data::MlmBatch next = data::mask_tokens(ids, options(), a);
  EXPECT_NE(x.labels.to_vector<int64_t>(), next.labels.to_vector<int64_t>());
  // i32 ids give the same result as i64.
  Generator d(7);
  data::MlmBatch w = data::mask_tokens(ids.to(DType::I32), options(), d);
  EXPECT_EQ(w.input_ids.to_vector<int64_t>(), x.input_ids.to_vector<int64_t>());
}

TEST(Mlm, Errors) {
  Tensor ids = corpus(2, 8, 9);
  Generator g(1);
  auto with = [&](auto change) {
    data::MlmOptions o = options();
    change(o);
    return [&ids, &g, o] { data::mask_tokens(ids, o, g); };
  };
  expect_error(with([](data::MlmOptions& o) { o.mask_prob = 0; }), {"mask_tokens", "mask_prob"});
  expect_error(with([](data::MlmOptions& o) { o.mask_prob = 1.5; }), {"mask_prob", "(0, 1]"});
  expect_error(with([](data::MlmOptions& o) { o.mask_token_id = -1; }), {"mask_token_id -1", "vocab_size"});
  expect_error(with([](data::MlmOptions& o) { o.mask_token_id = kVocab; }), {"mask_token_id 1000"});
  expect_error(with([](data::MlmOptions& o) { o.vocab_size = 0; }), {"vocab_size must be >= 1"});
  expect_error(with([](data::MlmOptions& o) { o.special_ids.push_back(-2); }), {"special_ids", "-2"});
  expect_error([&] { data::mask_tokens(randn({2, 8}), options(), g); }, {"mask_tokens", "integer token ids"});
  expect_error([&] { data::mask_tokens(zeros({2, 2, 2}, DType::I64), options(), g); }, {"[B, T]"});
  Tensor bad = ids.clone();
  bad.data<int64_t>()[8 + 3] = kVocab;
  expect_error([&] { data::mask_tokens(bad, options(), g); }, {"id 1000", "row 1, position 3", "vocab_size"});
}
