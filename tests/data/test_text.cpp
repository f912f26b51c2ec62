#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "error_of.h"
#include "mox/data/datasets/text.h"
#include "mox/data/text/tokenizer.h"
#include "mox/data/text/vocab.h"
#include "mox/tensor/error.h"

using namespace mox;
using namespace mox::data;
namespace fs = std::filesystem;

namespace {

using Tokens = std::vector<std::string>;

std::string tmp(const std::string& name) { return ::testing::TempDir() + "mox_text_" + name; }

void write_text(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

}  // namespace

TEST(Tokenizer, LowerCasesAndDropsPunctuation) {
  EXPECT_EQ(tokenize("Hello, World! It's 42."), (Tokens{"hello", "world", "it's", "42"}));
  EXPECT_EQ(tokenize("a--b...c/d(e)"), (Tokens{"a", "b", "c", "d", "e"}));
  EXPECT_EQ(tokenize("  \t\n "), Tokens{});
  EXPECT_EQ(tokenize(""), Tokens{});
  EXPECT_EQ(tokenize("<br />Great movie"), (Tokens{"br", "great", "movie"}));
}

TEST(Tokenizer, KeepsApostrophesInsideWordsOnly) {
  EXPECT_EQ(tokenize("Don't say 'no' o'clock"), (Tokens{"don't", "say", "no", "o'clock"}));
  EXPECT_EQ(tokenize("dogs' tails ''x'' 'tis"), (Tokens{"dogs", "tails", "x", "tis"}));
}

TEST(Tokenizer, PassesUtf8Through) {
  // "Café Über naïve": é/Ü/ï are letters, kept byte for byte (no Unicode case folding:
  // only ASCII is lower-cased).
  EXPECT_EQ(tokenize("Caf\xC3\xA9 \xC3\x9C" "ber na\xC3\xAFve"),
            (Tokens{"caf\xC3\xA9", "\xC3\x9C" "ber", "na\xC3\xAFve"}));
}

TEST(Vocab, FrequencyOrderTiesAndSpecials) {
  std::vector<Tokens> docs = {{"b", "a", "c", "a"}, {"c", "d", "a"}, {"e", "b"}};
  Vocab v = Vocab::build(docs);
  // a:3, b:2, c:2 (tie -> alphabetical), d:1, e:1.
  EXPECT_EQ(v.tokens(), (Tokens{"<pad>", "<oov>", "a", "b", "c", "d", "e"}));
  EXPECT_EQ(v.id("a"), 2);
  EXPECT_EQ(v.id("zzz"), Vocab::kOov);
  EXPECT_EQ(v.token(0), "<pad>");
  EXPECT_NE(error_of([&] { v.token(7); }), "(no error)");
}

TEST(Vocab, MinFrequencyAndMaxSize) {
  std::vector<Tokens> docs = {{"b", "a", "c", "a"}, {"c", "d", "a"}, {"e", "b"}};
  Vocab v = Vocab::build(docs, {.min_frequency = 2});
  EXPECT_EQ(v.tokens(), (Tokens{"<pad>", "<oov>", "a", "b", "c"}));
  Vocab w = Vocab::build(docs, {.min_frequency = 1, .max_size = 4});
  EXPECT_EQ(w.tokens(), (Tokens{"<pad>", "<oov>", "a", "b"}));
  EXPECT_EQ(w.id("c"), Vocab::kOov);
  EXPECT_NE(error_of([&] { Vocab::build(docs, {.min_frequency = 0}); }), "(no error)");
}

TEST(Vocab, EncodePadsTruncatesAndDecodes) {
  Vocab v = Vocab::build({{"the", "cat", "the"}});
  // the=2, cat=3
  EXPECT_EQ(v.encode({"the", "dog", "cat"}, 5), (std::vector<int64_t>{2, 1, 3, 0, 0}));
  EXPECT_EQ(v.encode({"the", "dog", "cat"}, 2), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(v.encode({"cat"}), (std::vector<int64_t>{3}));
  EXPECT_EQ(v.decode({2, 1, 3, 0, 0}), (Tokens{"the", "<oov>", "cat"}));
}

TEST(Vocab, SaveLoadRoundTripAndCorruptFile) {
  Vocab v = Vocab::build({tokenize("Don't panic, caf\xC3\xA9 is open; don't"), {"x"}});
  const std::string path = tmp("vocab.txt");
  v.save(path);
  Vocab u = Vocab::load(path);
  EXPECT_EQ(u.tokens(), v.tokens());
  EXPECT_EQ(u.id("don't"), v.id("don't"));

  write_text(path, "<pad>\n<oov>\nfoo\nbar\nfoo\n");
  std::string err = error_of([&] { Vocab::load(path); });
  EXPECT_NE(err.find(path + ":5"), std::string::npos) << err;
  EXPECT_NE(err.find("duplicate"), std::string::npos) << err;

  write_text(path, "foo\nbar\n");
  err = error_of([&] { Vocab::load(path); });
  EXPECT_NE(err.find(path), std::string::npos) << err;

  write_text(path, "<pad>\n<oov>\nfoo\n\nbar\n");
  err = error_of([&] { Vocab::load(path); });
  EXPECT_NE(err.find(path + ":4"), std::string::npos) << err;

  Vocab spaced = Vocab::build({{"new york"}});
  err = error_of([&] { spaced.save(path); });
  EXPECT_NE(err.find("new york"), std::string::npos) << err;

  err = error_of([&] { Vocab::load(tmp("missing_vocab.txt")); });
  EXPECT_NE(err.find("missing_vocab.txt"), std::string::npos) << err;
}

TEST(TextData, ImdbFolderLayout) {
  const fs::path root = tmp("imdb");
  fs::remove_all(root);
  fs::create_directories(root / "train" / "pos");
  fs::create_directories(root / "train" / "neg");
  write_text((root / "train" / "pos" / "0_9.txt").string(), "Great film!");
  write_text((root / "train" / "pos" / "1_8.txt").string(), "Loved it.");
  write_text((root / "train" / "neg" / "0_2.txt").string(), "Awful.<br />Boring");
  write_text((root / "train" / "neg" / "notes.md").string(), "not an example");
  TextCorpus c = load_text_folder((root / "train").string());
  EXPECT_EQ(c.class_names, (Tokens{"neg", "pos"}));
  EXPECT_EQ(c.texts, (Tokens{"Awful.<br />Boring", "Great film!", "Loved it."}));
  EXPECT_EQ(c.labels, (std::vector<int64_t>{0, 1, 1}));

  std::vector<Tokens> toks;
  for (const auto& t : c.texts) toks.push_back(tokenize(t));
  Vocab v = Vocab::build(toks);
  auto ds = make_text_dataset(c.texts, c.labels, v, 4);
  ASSERT_EQ(ds->inputs().shape(), (Shape{3, 4}));
  ASSERT_EQ(ds->inputs().dtype(), DType::I64);
  EXPECT_EQ(ds->targets().shape(), (Shape{3}));
  const int64_t* ids = ds->inputs().data<int64_t>();
  EXPECT_EQ(ids[0], v.id("awful"));
  EXPECT_EQ(ids[1], v.id("br"));
  EXPECT_EQ(ids[2], v.id("boring"));
  EXPECT_EQ(ids[3], Vocab::kPad);
  EXPECT_EQ(ds->targets().data<int64_t>()[2], 1);

  EXPECT_NE(error_of([&] { load_text_folder((root / "nope").string()); }).find("nope"),
            std::string::npos);
  EXPECT_NE(error_of([&] { make_text_dataset(c.texts, {0}, v, 4); }), "(no error)");
}

TEST(TextData, TsvColumnsByName) {
  const std::string path = tmp("reviews.tsv");
  write_text(path, "id\tsentence\tlabel\r\n1\tNice one\tpositive\r\n\r\n2\tBad\tnegative\n3\tok\tpositive");
  TextCorpus c = load_text_tsv(path, "sentence", "label");
  EXPECT_EQ(c.texts, (Tokens{"Nice one", "Bad", "ok"}));
  EXPECT_EQ(c.class_names, (Tokens{"negative", "positive"}));
  EXPECT_EQ(c.labels, (std::vector<int64_t>{1, 0, 1}));

  std::string err = error_of([&] { load_text_tsv(path, "text", "label"); });
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("'text'"), std::string::npos) << err;

  write_text(path, "sentence\tlabel\nfine\tpos\nshort\n");
  err = error_of([&] { load_text_tsv(path, "sentence", "label"); });
  EXPECT_NE(err.find(path + ":3"), std::string::npos) << err;
}

TEST(TextData, FortunesFormat) {
  const fs::path dir = tmp("fortunes");
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_text((dir / "zen").string(), "First fortune\nover two lines\n%\n%\n  \n%\nSecond\n%\n");
  write_text((dir / "art").string(), "A % sign inside is fine\n%\nLast, no trailing marker");
  write_text((dir / "zen.dat").string(), "\x01\x02 binary index");
  TextCorpus c = load_fortunes(dir.string(), {"zen", "art"});
  EXPECT_EQ(c.class_names, (Tokens{"art", "zen"}));
  EXPECT_EQ(c.texts, (Tokens{"A % sign inside is fine", "Last, no trailing marker",
                             "First fortune\nover two lines", "Second"}));
  EXPECT_EQ(c.labels, (std::vector<int64_t>{0, 0, 1, 1}));

  std::string err = error_of([&] { load_fortunes(dir.string(), {"zen", "nope"}); });
  EXPECT_NE(err.find("nope"), std::string::npos) << err;
  write_text((dir / "empty").string(), "%\n\n%\n");
  err = error_of([&] { load_fortunes(dir.string(), {"empty"}); });
  EXPECT_NE(err.find("empty"), std::string::npos) << err;
}

TEST(TextData, RealDebianFortunes) {
  const std::string dir = "/usr/share/games/fortunes";
  if (!fs::exists(dir + "/computers") || !fs::exists(dir + "/science"))
    GTEST_SKIP() << "fortunes computers/science not installed";
  TextCorpus c = load_fortunes(dir, {"science", "computers"});
  EXPECT_EQ(c.class_names, (Tokens{"computers", "science"}));
  int64_t n0 = std::count(c.labels.begin(), c.labels.end(), 0);
  int64_t n1 = std::count(c.labels.begin(), c.labels.end(), 1);
  EXPECT_GT(n0, 100);
  EXPECT_GT(n1, 100);
  for (const auto& t : c.texts) {
    EXPECT_FALSE(t.empty());
    EXPECT_EQ(t.find("\n%\n"), std::string::npos);
  }
  std::vector<Tokens> toks;
  for (const auto& t : c.texts) toks.push_back(tokenize(t));
  Vocab v = Vocab::build(toks, {.min_frequency = 2, .max_size = 5000});
  EXPECT_LE(v.size(), 5000);
  EXPECT_GT(v.size(), 500);
  EXPECT_GE(v.id("computer"), 2);
  auto ds = make_text_dataset(c.texts, c.labels, v, 32);
  EXPECT_EQ(ds->size(), int64_t(c.texts.size()));
}

TEST(Vocab, PrePaddingKeepsTheEndOfTheText) {
  Vocab v = Vocab::build({{"a", "b", "c", "d"}});
  const int64_t a = v.id("a"), b = v.id("b"), c = v.id("c"), d = v.id("d");
  using P = Vocab::Padding;
  EXPECT_EQ(v.encode({"a", "b"}, 4, P::Pre), (std::vector<int64_t>{0, 0, a, b}));
  EXPECT_EQ(v.encode({"a", "b"}, 4, P::Post), (std::vector<int64_t>{a, b, 0, 0}));
  EXPECT_EQ(v.encode({"a", "b", "c", "d"}, 2, P::Pre), (std::vector<int64_t>{c, d}));
  EXPECT_EQ(v.encode({"a", "b", "c", "d"}, 2, P::Post), (std::vector<int64_t>{a, b}));
  EXPECT_EQ(v.encode({"a", "zz"}, 3, P::Pre), (std::vector<int64_t>{0, a, Vocab::kOov}));
  auto ds = make_text_dataset({"c d", "a b c d"}, {0, 1}, v, 3, P::Pre);
  EXPECT_EQ(ds->inputs().to_vector<int64_t>(), (std::vector<int64_t>{0, c, d, b, c, d}));
}
