// Generation with a GPT: the KV cache against full forwards (with and without left padding),
// sampling filters against their renormalised distributions, repetition penalty, seeds, stop
// strings, batching, the context window, and errors.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "../error_of.h"
#include "mox/mox.h"
#include "mox/io/safetensors.h"
#include "mox/nn/models/generate.h"
#include "mox/nn/models/gpt.h"
#include "mox/nn/models/gpt_io.h"

using namespace mox;

namespace {

nn::GPTConfig tiny(int64_t block = 12) {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.block_size = block;
  c.vocab_size = 11;
  return c;
}

// A model whose greedy continuations vary: GPT-2's N(0, 0.02) initialisation gives nearly
// uniform logits, so the weights are scaled up.
std::shared_ptr<nn::GPT> model(uint64_t seed, int64_t block = 12) {
  manual_seed(seed);
  auto m = std::make_shared<nn::GPT>(tiny(block));
  NoGradGuard ng;
  for (auto& [name, p] : m->named_parameters())
    if (name.find(".ln_") == std::string::npos) p.mul_(25.0);
  m->eval();
  return m;
}

std::vector<int32_t> random_ids(size_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = int32_t(g.below(11));
  return ids;
}

Tensor as_tensor(const std::vector<int32_t>& ids) {
  std::vector<int64_t> v(ids.begin(), ids.end());
  return from_vector(v, {1, int64_t(v.size())});
}

std::string letters(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += char('a' + id);
  return s;
}

// The greedy continuation written out with full forwards: the model sees at most block_size
// tokens; once the window would pass it, the window restarts at the last block_size / 2.
std::vector<int32_t> greedy_reference(nn::GPT& m, std::vector<int32_t> ctx, int64_t n) {
  NoGradGuard ng;
  const size_t S = size_t(m.config().block_size);
  size_t start = ctx.size() > S ? ctx.size() - S : 0;
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; i++) {
    std::vector<int32_t> window(ctx.begin() + std::ptrdiff_t(start), ctx.end());
    Tensor l = m.forward(as_tensor(window));  // [1, T, V]
    Tensor last = l.select(0, 0).select(0, l.size(1) - 1);
    const int32_t id = int32_t(argmax(last, 0).item<int64_t>());
    ctx.push_back(id);
    out.push_back(id);
    if (ctx.size() - start > S) start = ctx.size() - S / 2;
  }
  return out;
}

// Pearson's chi-square of observed counts against expected probabilities (ids with p = 0 must
// never be drawn).
double chi_square(const std::vector<int64_t>& counts, const std::vector<double>& p, int64_t n) {
  double chi = 0;
  for (size_t i = 0; i < p.size(); i++) {
    if (p[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "id " << i << " is outside the kept set";
      continue;
    }
    const double e = p[i] * double(n);
    chi += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
  }
  return chi;
}

std::vector<int64_t> draw(const std::vector<float>& logits, const nn::SamplingOptions& o, int64_t n,
                          const std::vector<int32_t>& context = {}) {
  Generator g(o.seed);
  std::vector<int64_t> counts(logits.size(), 0);
  for (int64_t i = 0; i < n; i++) counts[size_t(nn::sample_next(logits, context, o, g))]++;
  return counts;
}

// softmax(z / T) restricted to `keep`, renormalised.
std::vector<double> renormalised(const std::vector<double>& z, double T, const std::vector<int>& keep) {
  std::vector<double> p(z.size(), 0.0);
  double total = 0;
  for (int i : keep) total += (p[size_t(i)] = std::exp(z[size_t(i)] / T));
  for (double& x : p) x /= total;
  return p;
}

// The 99.99% point of chi-square with df degrees of freedom is below this (df <= 10).
double chi_limit(size_t df) { return 15.0 + 3.2 * double(df); }

}  // namespace

TEST(Generate, CachedLogitsMatchFullForward) {
  auto m = model(1);
  NoGradGuard ng;
  const std::vector<int32_t> seq = random_ids(12, 5);
  Tensor full = m->forward(as_tensor(seq)).select(0, 0);  // [12, V]
  // Prefill 5 tokens (all positions' logits), then 3, then one at a time.
  nn::KVCache cache = m->make_cache(1);
  std::vector<Tensor> parts;
  parts.push_back(m->forward_cached(as_tensor({seq.begin(), seq.begin() + 5}), cache, false).select(0, 0));
  parts.push_back(m->forward_cached(as_tensor({seq.begin() + 5, seq.begin() + 8}), cache, false).select(0, 0));
  for (size_t i = 8; i < 12; i++) {
    Tensor last = m->forward_cached(as_tensor({seq[i]}), cache, true);  // [1, V]
    parts.push_back(last);
  }
  EXPECT_EQ(cache.length, 12);
  Tensor cached = cat(parts, 0);
  ASSERT_EQ(cached.shape(), full.shape());
  EXPECT_TRUE(allclose(cached, full, 1e-4, 1e-4)) << (cached - full).str();
  // Full: one more token does not fit.
  EXPECT_NE(error_of([&] { m->forward_cached(as_tensor({1}), cache); }).find("exceed block_size 12"),
            std::string::npos);
}

TEST(Generate, CachedLogitsWithLeftPaddingMatchEachRowAlone) {
  auto m = model(2);
  NoGradGuard ng;
  const std::vector<int32_t> a = random_ids(7, 1), b = random_ids(3, 2);
  // Row 1 is left-padded by 4 slots (padding ids are arbitrary: they are masked).
  std::vector<int64_t> ids(14);
  for (size_t j = 0; j < 7; j++) ids[j] = a[j];
  for (size_t j = 0; j < 7; j++) ids[7 + j] = j < 4 ? 9 : b[j - 4];
  nn::KVCache cache = m->make_cache(2);
  cache.pad = from_vector(std::vector<int64_t>{0, 4}, {2});
  Tensor l = m->forward_cached(from_vector(ids, {2, 7}), cache, false);  // [2, 7, V]
  Tensor ra = m->forward(as_tensor(a)).select(0, 0), rb = m->forward(as_tensor(b)).select(0, 0);
  EXPECT_TRUE(allclose(l.select(0, 0), ra, 1e-4, 1e-4));
  EXPECT_TRUE(allclose(l.select(0, 1).narrow(0, 4, 3), rb, 1e-4, 1e-4));
  // Two more steps: each row continues with its own positions.
  std::vector<int32_t> a2 = a, b2 = b;
  for (int32_t next : {3, 8}) {
    a2.push_back(next);
    b2.push_back(next);
    Tensor step = m->forward_cached(from_vector(std::vector<int64_t>{next, next}, {2, 1}), cache, true);
    Tensor fa = m->forward(as_tensor(a2)).select(0, 0).select(0, int64_t(a2.size()) - 1);
    Tensor fb = m->forward(as_tensor(b2)).select(0, 0).select(0, int64_t(b2.size()) - 1);
    EXPECT_TRUE(allclose(step.select(0, 0), fa, 1e-4, 1e-4));
    EXPECT_TRUE(allclose(step.select(0, 1), fb, 1e-4, 1e-4));
  }
}

TEST(Generate, CachedPathMatchesPyTorchOnTheGpt2Fixture) {
  // tests/fixtures/gpt2 (tools/fixtures_gpt2.py): a tiny Hugging Face GPT-2 and its logits and
  // greedy continuation computed by PyTorch.
  const std::string dir = std::string(MOX_SOURCE_DIR) + "/tests/fixtures/gpt2";
  auto m = nn::load_gpt(dir);
  io::SafetensorsFile ref = io::load_safetensors(dir + "/reference.safetensors");
  NoGradGuard ng;
  // Logits of input_ids [2, 10]: 6 positions at once, then one at a time.
  const Tensor ids = ref.at("input_ids"), want = ref.at("logits");
  nn::KVCache cache = m->make_cache(2);
  std::vector<Tensor> parts = {m->forward_cached(ids.narrow(1, 0, 6), cache, false)};
  for (int64_t j = 6; j < 10; j++) parts.push_back(m->forward_cached(ids.narrow(1, j, 1), cache, true).unsqueeze(1));
  Tensor got = cat(parts, 1);
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_TRUE(allclose(got, want, 1e-4, 1e-4)) << abs(got - want).str();
  // Greedy continuation of the prompt, with and without the cache.
  const std::vector<int64_t> p = ref.at("prompt").to_vector<int64_t>(), g = ref.at("greedy").to_vector<int64_t>();
  nn::GenerateOptions o;
  o.max_new_tokens = int64_t(g.size());
  o.sampling.temperature = 0;
  for (bool use_cache : {true, false}) {
    o.use_cache = use_cache;
    auto out = nn::generate(*m, {std::vector<int32_t>(p.begin(), p.end())}, o, letters);
    EXPECT_EQ(out[0], std::vector<int32_t>(g.begin(), g.end())) << "use_cache " << use_cache;
  }
}

TEST(Generate, ForwardCachedErrors) {
  auto m = model(3);
  nn::KVCache cache = m->make_cache(2);
  EXPECT_NE(error_of([&] { m->forward_cached(as_tensor({1, 2}), cache); }).find("idx has 1 rows, the cache 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m->forward_cached(zeros({2, 13}, DType::I64), cache); }).find("exceed block_size"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m->forward_cached(zeros({2, 2}), cache); }).find("integer token ids"),
            std::string::npos);
  cache.pad = from_vector(std::vector<int64_t>{0, 20}, {2});
  EXPECT_NE(error_of([&] { m->forward_cached(zeros({2, 2}, DType::I64), cache); }).find("cache.pad[1] = 20"),
            std::string::npos);
}

TEST(Generate, GreedyMatchesFullRecomputationAcrossTheWindow) {
  // 5 prompt tokens + 30 new ones with block_size 12: the window is cut several times.
  auto m = model(4);
  const std::vector<int32_t> prompt = random_ids(5, 9);
  nn::GenerateOptions o;
  o.max_new_tokens = 30;
  o.sampling.temperature = 0;
  const std::vector<int32_t> ref = greedy_reference(*m, prompt, 30);
  for (bool cache : {true, false}) {
    o.use_cache = cache;
    auto out = nn::generate(*m, {prompt}, o, letters);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0], ref) << "use_cache " << cache;
  }
  // The sequence is not constant (the test would be weak otherwise).
  EXPECT_GT(std::set<int32_t>(ref.begin(), ref.end()).size(), 2u);
}

TEST(Generate, BatchOfDifferentLengthsEqualsEachPromptAlone) {
  auto m = model(5, 32);
  const std::vector<std::vector<int32_t>> prompts = {random_ids(1, 1), random_ids(6, 2), random_ids(11, 3),
                                                     random_ids(4, 4)};
  nn::GenerateOptions o;
  o.max_new_tokens = 12;  // 11 + 12 < 32: no window cut
  o.sampling.temperature = 0;
  for (bool cache : {true, false}) {
    o.use_cache = cache;
    std::vector<std::vector<int32_t>> streamed(prompts.size());
    auto batch = nn::generate(*m, prompts, o, letters, [&](size_t row, int32_t id) { streamed[row].push_back(id); });
    ASSERT_EQ(batch.size(), prompts.size());
    for (size_t i = 0; i < prompts.size(); i++) {
      auto alone = nn::generate(*m, {prompts[i]}, o, letters);
      EXPECT_EQ(batch[i], alone[0]) << "prompt " << i << " use_cache " << cache;
      EXPECT_EQ(batch[i], greedy_reference(*m, prompts[i], 12)) << "prompt " << i;
      EXPECT_EQ(streamed[i], batch[i]);
    }
  }
}

TEST(Generate, LeftPaddedBatchAcrossTheWindowMatchesNoCache) {
  // The window cut happens for the whole batch at once; both paths must agree on it.
  auto m = model(6);
  const std::vector<std::vector<int32_t>> prompts = {random_ids(2, 7), random_ids(9, 8)};
  nn::GenerateOptions o;
  o.max_new_tokens = 25;
  o.sampling.temperature = 0;
  auto with = nn::generate(*m, prompts, o, letters);
  o.use_cache = false;
  auto without = nn::generate(*m, prompts, o, letters);
  EXPECT_EQ(with, without);
}

TEST(Generate, GreedyTemperatureAndTopKOne) {
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.99f, 2.0f};
  Generator g(1);
  nn::SamplingOptions o;
  o.temperature = 0;
  EXPECT_EQ(nn::sample_next(logits, {}, o, g), 1);  // first of the tied maxima
  o.temperature = 1.0;
  o.top_k = 1;
  EXPECT_EQ(nn::sample_next(logits, {}, o, g), 1);
  // Temperature -> 0 concentrates on the argmax.
  o.top_k = 0;
  o.temperature = 1e-3;
  auto counts = draw({0.1f, 2.0f, -1.0f, 1.9f}, o, 2000);
  EXPECT_EQ(counts[1], 2000);
}

TEST(Generate, TemperatureSamplesTheSoftmax) {
  const std::vector<double> z = {1.0, 0.2, -0.5, 1.5, 0.0, -2.0};
  const std::vector<float> logits(z.begin(), z.end());
  nn::SamplingOptions o;
  o.temperature = 0.7;
  o.seed = 11;
  const int64_t n = 60000;
  auto counts = draw(logits, o, n);
  auto p = renormalised(z, 0.7, {0, 1, 2, 3, 4, 5});
  EXPECT_LT(chi_square(counts, p, n), chi_limit(5));
  // The test can fail: the distribution at temperature 1 is rejected.
  EXPECT_GT(chi_square(counts, renormalised(z, 1.0, {0, 1, 2, 3, 4, 5}), n), 100.0);
}

TEST(Generate, TopKKeepsTheKLargest) {
  const std::vector<double> z = {0.5, 2.0, -1.0, 1.2, 1.9, 0.0, 1.0};
  const std::vector<float> logits(z.begin(), z.end());
  nn::SamplingOptions o;
  o.top_k = 3;
  o.temperature = 1.3;
  o.seed = 3;
  const int64_t n = 40000;
  auto counts = draw(logits, o, n);
  EXPECT_LT(chi_square(counts, renormalised(z, 1.3, {1, 3, 4}), n), chi_limit(2));
}

TEST(Generate, TopPKeepsTheSmallestNucleus) {
  // Probabilities 0.4, 0.1, 0.3, 0.15, 0.05: sorted 0.4, 0.3, 0.15, ...; top_p 0.6 keeps
  // {0.4, 0.3} (0.7 >= 0.6), top_p 0.8 adds 0.15 (0.85).
  const std::vector<double> probs = {0.4, 0.1, 0.3, 0.15, 0.05};
  std::vector<double> z;
  for (double q : probs) z.push_back(std::log(q));
  const std::vector<float> logits(z.begin(), z.end());
  nn::SamplingOptions o;
  o.seed = 5;
  const int64_t n = 40000;
  o.top_p = 0.6;
  EXPECT_LT(chi_square(draw(logits, o, n), renormalised(z, 1.0, {0, 2}), n), chi_limit(1));
  o.top_p = 0.8;
  EXPECT_LT(chi_square(draw(logits, o, n), renormalised(z, 1.0, {0, 2, 3}), n), chi_limit(2));
  o.top_p = 0.3;  // the most likely token alone
  EXPECT_EQ(draw(logits, o, 500)[0], 500);
  // With top-k 4 first (drops 0.05) and temperature 2: probabilities become
  // sqrt(p) renormalised over 4 ids: 0.632, 0.316, 0.548, 0.387 -> sorted mass 0.336,
  // 0.627, 0.833, 1: top_p 0.7 keeps the first three.
  o.top_k = 4;
  o.temperature = 2.0;
  o.top_p = 0.7;
  EXPECT_LT(chi_square(draw(logits, o, n), renormalised(z, 2.0, {0, 2, 3}), n), chi_limit(2));
}

TEST(Generate, RepetitionPenaltyRule) {
  Generator g(1);
  nn::SamplingOptions o;
  o.temperature = 0;
  o.repetition_penalty = 2.0;
  // Positive logits are divided: 1.5 -> 0.75 loses to 1.0.
  EXPECT_EQ(nn::sample_next(std::vector<float>{1.0f, 1.5f, -0.2f}, {1, 1, 2}, o, g), 0);
  // Negative logits are multiplied: -0.6 -> -1.2 loses to -1.0 (dividing would make it win).
  EXPECT_EQ(nn::sample_next(std::vector<float>{-1.0f, -0.6f}, {1}, o, g), 0);
  o.repetition_penalty = 1.0;
  EXPECT_EQ(nn::sample_next(std::vector<float>{1.0f, 1.5f, -0.2f}, {1}, o, g), 1);
  // Sampling sees the penalised logits: z = {0.8, 1.2 / 1.5, -0.3 * 1.5, 0.1} with ids 1 and 2
  // in the context (repeated ids are penalised once).
  o.repetition_penalty = 1.5;
  o.temperature = 1.0;
  o.seed = 8;
  const int64_t n = 40000;
  auto counts = draw({0.8f, 1.2f, -0.3f, 0.1f}, o, n, {2, 1, 2, 2});
  EXPECT_LT(chi_square(counts, renormalised({0.8, 0.8, -0.45, 0.1}, 1.0, {0, 1, 2, 3}), n), chi_limit(3));
}

TEST(Generate, SeedDeterminism) {
  auto m = model(7);
  nn::GenerateOptions o;
  o.max_new_tokens = 20;
  o.sampling.temperature = 1.0;
  o.sampling.top_k = 8;
  o.sampling.seed = 42;
  const std::vector<std::vector<int32_t>> prompts = {random_ids(3, 1), random_ids(5, 2)};
  auto a = nn::generate(*m, prompts, o, letters);
  auto b = nn::generate(*m, prompts, o, letters);
  EXPECT_EQ(a, b);
  o.use_cache = false;  // the draws do not depend on the path
  EXPECT_EQ(nn::generate(*m, prompts, o, letters), a);
  o.sampling.seed = 43;
  EXPECT_NE(nn::generate(*m, prompts, o, letters), a);
}

TEST(Generate, StopStrings) {
  auto m = model(8);
  const std::vector<int32_t> prompt = random_ids(4, 3);
  nn::GenerateOptions o;
  o.max_new_tokens = 10;
  o.sampling.temperature = 0;
  const std::vector<int32_t> full = nn::generate(*m, {prompt}, o, letters)[0];
  ASSERT_EQ(full.size(), 10u);
  const std::string text = letters(full);
  // A stop string starting at the 4th generated token (its first occurrence).
  const std::string stop = text.substr(3, 2);
  const size_t first = text.find(stop);
  o.stop = {"zz", stop};
  std::vector<int32_t> streamed;
  auto out = nn::generate(*m, {prompt}, o, letters, [&](size_t, int32_t id) { streamed.push_back(id); });
  EXPECT_EQ(out[0], std::vector<int32_t>(full.begin(), full.begin() + std::ptrdiff_t(first)));
  EXPECT_EQ(streamed, out[0]);  // nothing of the stop string was reported
  // Tokens of two characters: a stop string that starts inside a token cuts that token.
  auto two = [](const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) {
      s += char('a' + id);
      s += '.';
    }
    return s;
  };
  std::string dot_stop = ".";
  dot_stop += char('a' + full[2]);
  o.stop = {dot_stop};  // starts in token 1 (or earlier)
  const size_t hit = two(full).find(o.stop[0]);
  out = nn::generate(*m, {prompt}, o, two);
  EXPECT_EQ(out[0], std::vector<int32_t>(full.begin(), full.begin() + std::ptrdiff_t(hit / 2)));
  // A stop string that never appears changes nothing.
  o.stop = {"zz"};
  EXPECT_EQ(nn::generate(*m, {prompt}, o, letters)[0], full);
}

TEST(Generate, LongPromptIsCutAndErrors) {
  auto m = model(9);
  nn::GenerateOptions o;
  o.max_new_tokens = 6;
  o.sampling.temperature = 0;
  // A prompt longer than block_size: the model sees its last block_size tokens.
  const std::vector<int32_t> longp = random_ids(20, 4);
  const std::vector<int32_t> tail(longp.end() - 12, longp.end());
  EXPECT_EQ(nn::generate(*m, {longp}, o, letters), nn::generate(*m, {tail}, o, letters));
  EXPECT_EQ(nn::generate(*m, {longp}, o, letters)[0], greedy_reference(*m, longp, 6));
  expect_error([&] { nn::generate(*m, {{1, 2}, {}}, o, letters); }, {"generate", "prompt 1 is empty"});
  expect_error([&] { nn::generate(*m, {{1, 11}}, o, letters); }, {"token id 11", "outside the vocabulary"});
  o.sampling.top_p = 0;
  expect_error([&] { nn::generate(*m, {{1}}, o, letters); }, {"sampling", "top_p must be in (0, 1]"});
  o.sampling.top_p = 1;
  o.sampling.temperature = -1;
  expect_error([&] { nn::generate(*m, {{1}}, o, letters); }, {"temperature must be >= 0"});
  o.sampling.temperature = 1;
  o.sampling.repetition_penalty = 0;
  expect_error([&] { nn::generate(*m, {{1}}, o, letters); }, {"repetition_penalty must be > 0"});
  o.sampling.repetition_penalty = 1;
  o.max_new_tokens = 0;
  EXPECT_EQ(nn::generate(*m, {{1}}, o, letters), std::vector<std::vector<int32_t>>(1));
  // The model's training mode is restored.
  m->train();
  o.max_new_tokens = 2;
  nn::generate(*m, {{1}}, o, letters);
  EXPECT_TRUE(m->is_training());
}

TEST(Generate, SpeedWithAndWithoutCache) {
  // The default model size (4 layers, 4 heads, 128 wide, block 128) at batch 1: the cache
  // must be much faster than recomputing the context (60 tokens after a 60-token prompt,
  // contexts of 60..120). Prints tokens/s for the record. One thread: on a machine shared
  // with other jobs, OpenMP regions (the prefill's GEMMs) make timings with more threads
  // erratic.
  const int threads = get_num_threads();
  set_num_threads(1);
  manual_seed(1);
  nn::GPTConfig c;
  c.vocab_size = 256;
  nn::GPT m(c);
  nn::GenerateOptions o;
  o.max_new_tokens = 60;
  o.sampling.top_k = 20;
  std::vector<int32_t> prompt(60);
  for (size_t i = 0; i < prompt.size(); i++) prompt[i] = int32_t(i * 7 % 256);
  auto rate = [&](bool cache) {
    o.use_cache = cache;
    const auto t0 = std::chrono::steady_clock::now();
    auto out = nn::generate(m, {prompt}, o, {});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(out[0].size(), 60u);
    return 60.0 / s;
  };
  rate(true);  // warm up the allocator, thread pools and GEMM kernels
  const double with = rate(true), without = rate(false);
  std::printf("generate: %.0f tokens/s with the cache, %.0f without (batch 1, 1 thread)\n", with, without);
  set_num_threads(threads);
  EXPECT_GT(with, 2.0 * without);
}
