#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "error_of.h"
#include "mox/data/text/vocab.h"
#include "mox/data/transforms/text.h"
#include "mox/tensor/error.h"
#include "mox/tensor/generator.h"

using namespace mox;
using namespace mox::data;

namespace {

Tokens sentence() {
  return {"the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "today",
          "and", "the", "cat", "sleeps", "in", "the", "warm", "sun", "all", "afternoon"};
}

std::string tmp(const std::string& name) { return ::testing::TempDir() + "mox_textaug_" + name; }

void write_text(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

Tokens sorted(Tokens t) {
  std::sort(t.begin(), t.end());
  return t;
}

Vocab small_vocab() { return Vocab::build({{"alpha", "beta", "gamma", "delta", "alpha"}}); }

// Each transform under test, built fresh, for the seed/identity checks that apply to all.
std::vector<TextTransformPtr> random_transforms() {
  return {std::make_shared<RandomWordReplacement>(0.5, small_vocab()),
          std::make_shared<RandomWordReplacement>(
              0.5, SynonymTable{{"the", {"a", "this", "that"}}, {"fox", {"wolf", "dog"}},
                                {"cat", {"kitten", "feline"}}, {"sun", {"light", "star"}}}),
          std::make_shared<RandomDeletion>(0.3), std::make_shared<RandomSwap>(3)};
}

}  // namespace

TEST(TextAugment, SameSeedSameOutputDifferentSeedsDiffer) {
  const Tokens in = sentence();
  for (const auto& t : random_transforms()) {
    Generator g1(7), g2(7);
    EXPECT_EQ(t->apply(in, g1), t->apply(in, g2)) << t->describe();
    // Across several seed pairs at least one output must differ (a single pair could
    // collide by chance for a weak transform; twenty cannot all collide).
    bool differs = false;
    for (uint64_t s = 1; s <= 20 && !differs; ++s) {
      Generator a(s), b(s + 1000);
      differs = t->apply(in, a) != t->apply(in, b);
    }
    EXPECT_TRUE(differs) << t->describe();
  }
}

TEST(TextAugment, ProbabilityZeroAndNoSwapsAreIdentity) {
  const Tokens in = sentence();
  Generator g(3);
  EXPECT_EQ(RandomWordReplacement(0.0, small_vocab()).apply(in, g), in);
  EXPECT_EQ(RandomWordReplacement(0.0, SynonymTable{{"the", {"a"}}}).apply(in, g), in);
  EXPECT_EQ(RandomDeletion(0.0).apply(in, g), in);
  EXPECT_EQ(RandomSwap(0).apply(in, g), in);
  EXPECT_EQ(TextCompose({}).apply(in, g), in);
}

TEST(TextAugment, FullDeletionKeepsExactlyOneToken) {
  const Tokens in = sentence();
  std::set<std::string> kept;
  for (uint64_t s = 0; s < 30; ++s) {
    Generator g(s);
    Tokens out = RandomDeletion(1.0).apply(in, g);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_NE(std::find(in.begin(), in.end(), out[0]), in.end());
    kept.insert(out[0]);
  }
  EXPECT_GT(kept.size(), 1u);  // the survivor is drawn, not always the first token
  Generator g(0);
  EXPECT_EQ(RandomDeletion(1.0).apply({}, g), Tokens{});
  EXPECT_EQ(RandomDeletion(1.0).apply({"solo"}, g), Tokens{"solo"});
}

TEST(TextAugment, DeletionKeepsOrderOfSurvivors) {
  const Tokens in = {"a", "b", "c", "d", "e", "f", "g", "h"};
  Generator g(11);
  Tokens out = RandomDeletion(0.5).apply(in, g);
  EXPECT_TRUE(std::includes(in.begin(), in.end(), out.begin(), out.end()));
  EXPECT_LT(out.size(), in.size());
}

TEST(TextAugment, SwapPreservesMultiset) {
  const Tokens in = sentence();
  for (uint64_t s = 0; s < 10; ++s) {
    Generator g(s);
    Tokens out = RandomSwap(5).apply(in, g);
    EXPECT_EQ(sorted(out), sorted(in));
    EXPECT_NE(out, in);  // at these seeds the five swaps do not cancel out
  }
  // One swap on two distinct tokens always exchanges them.
  Generator g(4);
  EXPECT_EQ(RandomSwap(1).apply({"x", "y"}, g), (Tokens{"y", "x"}));
  EXPECT_EQ(RandomSwap(3).apply({"x"}, g), Tokens{"x"});
  EXPECT_NE(error_of([] { RandomSwap(-1); }), "(no error)");
}

TEST(TextAugment, VocabularyReplacementNeverUsesSpecials) {
  const Vocab vocab = small_vocab();
  const Tokens in = sentence();
  Generator g(5);
  Tokens out = RandomWordReplacement(1.0, vocab).apply(in, g);
  ASSERT_EQ(out.size(), in.size());
  std::set<std::string> seen;
  for (const auto& t : out) {
    EXPECT_NE(t, Vocab::kPadToken);
    EXPECT_NE(t, Vocab::kOovToken);
    EXPECT_GE(vocab.id(t), 2) << t;
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 4u);  // 20 draws from 4 words hit them all at this seed
  EXPECT_NE(error_of([] { RandomWordReplacement(0.5, Vocab()); }), "(no error)");
  EXPECT_NE(error_of([&] { RandomWordReplacement(1.5, vocab); }), "(no error)");
  EXPECT_NE(error_of([] { RandomDeletion(-0.1); }), "(no error)");
}

TEST(TextAugment, SynonymReplacementOnlyUsesTableEntries) {
  const SynonymTable table = {{"the", {"a", "this"}}, {"fox", {"wolf"}}, {"cat", {"kitten"}}};
  const Tokens in = sentence();
  for (uint64_t s = 0; s < 10; ++s) {
    Generator g(s);
    Tokens out = RandomWordReplacement(1.0, table).apply(in, g);
    ASSERT_EQ(out.size(), in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      auto it = table.find(in[i]);
      if (it == table.end()) {
        EXPECT_EQ(out[i], in[i]);  // no synonyms: unchanged
      } else {
        const auto& syn = it->second;
        EXPECT_NE(std::find(syn.begin(), syn.end(), out[i]), syn.end()) << out[i];
      }
    }
  }
}

TEST(TextAugment, ComposeAppliesInOrder) {
  const Tokens in = sentence();
  auto del = std::make_shared<RandomDeletion>(0.3);
  auto swap = std::make_shared<RandomSwap>(2);
  TextCompose compose({del, swap});
  Generator g1(9), g2(9);
  Tokens expected = swap->apply(del->apply(in, g2), g2);
  EXPECT_EQ(compose.apply(in, g1), expected);
  EXPECT_EQ(compose.describe(), "TextCompose([RandomDeletion(p=0.3), RandomSwap(n=2)])");
}

TEST(TextAugment, SentenceSplitting) {
  EXPECT_EQ(SentenceReordering::split("  One. Two!  Three?\nFour"),
            (Tokens{"One.", "Two!", "Three?", "Four"}));
  // No whitespace after the mark: not a sentence end (decimals, abbreviations like "e.g.").
  EXPECT_EQ(SentenceReordering::split("Pi is 3.14 e.g.x ok. Yes?! Sure."),
            (Tokens{"Pi is 3.14 e.g.x ok.", "Yes?!", "Sure."}));
  EXPECT_EQ(SentenceReordering::split("   "), Tokens{});
}

TEST(TextAugment, SentenceReorderingPreservesSentences) {
  const std::string text = "One fish. Two fish!  Red fish?\nBlue fish. Old fish. New fish.";
  const Tokens original = SentenceReordering::split(text);
  SentenceReordering reorder;
  bool moved = false;
  for (uint64_t s = 0; s < 10; ++s) {
    Generator g(s);
    std::string out = reorder.apply(text, g);
    EXPECT_EQ(out.find("  "), std::string::npos);  // single spaces between sentences
    EXPECT_EQ(sorted(SentenceReordering::split(out)), sorted(original));
    Generator g2(s);
    EXPECT_EQ(reorder.apply(text, g2), out);
    moved = moved || SentenceReordering::split(out) != original;
  }
  EXPECT_TRUE(moved);
  Generator g(0);
  EXPECT_EQ(reorder.apply("Only one.", g), "Only one.");
  EXPECT_EQ(reorder.apply("", g), "");
}

TEST(TextAugment, LoadSynonyms) {
  const std::string path = tmp("syn.txt");
  write_text(path, "# comment line\nhappy glad joyful\n\n  big\tlarge huge  \n");
  SynonymTable table = load_synonyms(path);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table["happy"], (Tokens{"glad", "joyful"}));
  EXPECT_EQ(table["big"], (Tokens{"large", "huge"}));
  std::remove(path.c_str());
}

TEST(TextAugment, SynonymFileErrorsNameFileAndLine) {
  const std::string path = tmp("bad.txt");
  write_text(path, "happy glad\nlonely\n");
  EXPECT_NE(error_of([&] { load_synonyms(path); }).find(path + ":2"), std::string::npos);
  write_text(path, "happy glad\nsad blue\nhappy merry\n");
  std::string dup = error_of([&] { load_synonyms(path); });
  EXPECT_NE(dup.find(path + ":3"), std::string::npos) << dup;
  EXPECT_NE(dup.find("line 1"), std::string::npos) << dup;
  std::remove(path.c_str());
  EXPECT_NE(error_of([&] { load_synonyms(path); }).find(path), std::string::npos);
  EXPECT_EQ(error_of([&] { load_synonyms(path); }).find("(no error)"), std::string::npos);
}
