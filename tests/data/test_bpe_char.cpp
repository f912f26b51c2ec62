// Char/byte-level tokenizers: UTF-8 aware (one token per Chinese character), round trips,
// unknown characters, save/load and the folder loader.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "error_of.h"
#include "mox/data/text/bpe.h"
#include "mox/data/text/char_tokenizer.h"

using namespace mox;
using namespace mox::data;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST(CharTokenizer, ChineseIsOneTokenPerCharacter) {
  const std::string text = "你好，世界！Hi 😀";  // 6 CJK/punct + 'H' 'i' ' ' + 1 emoji
  const CharTokenizer tok = CharTokenizer::train({text});
  EXPECT_EQ(tok.kind(), "char");
  const std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(ids.size(), 10u);
  EXPECT_EQ(tok.vocab_size(), 11);  // 10 distinct + unknown
  EXPECT_EQ(tok.decode(ids), text);
  // sorted by code point: ' ' < 'H' < 'i' < '世' ..., id 0 = unknown
  EXPECT_EQ(tok.encode(" Hi"), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(tok.encode("好x"), (std::vector<int32_t>{tok.encode("好")[0], CharTokenizer::kUnknown}));
  EXPECT_EQ(tok.decode(tok.encode("x")), "\xef\xbf\xbd");  // U+FFFD
  const std::vector<int32_t> bad = {11};
  expect_error([&] { tok.decode(bad); }, {"decode", "11"});
}

TEST(CharTokenizer, FortunesZhWhenInstalled) {
  // fortunes-zh installs chinese, song100 and tang300 next to the English fortunes.
  std::vector<std::string> texts;
  for (const char* name : {"chinese", "song100", "tang300"}) {
    const fs::path p = fs::path("/usr/share/games/fortunes") / name;
    if (fs::exists(p)) texts.push_back(slurp(p));
  }
  if (texts.empty()) GTEST_SKIP() << "fortunes-zh not installed (scripts/setup)";
  const CharTokenizer tok = CharTokenizer::train(texts);
  size_t cjk = 0;
  for (const std::string& t : texts) {
    const std::vector<int32_t> ids = tok.encode(t);
    const std::vector<uint32_t> cps = utf8_codepoints(t);
    ASSERT_EQ(ids.size(), cps.size());
    size_t file_cjk = 0;
    for (uint32_t cp : cps) file_cjk += (cp >= 0x4E00 && cp <= 0x9FFF);
    ASSERT_LE(ids.size() + 2 * file_cjk, t.size());  // one token per 3-byte CJK character
    cjk += file_cjk;
    EXPECT_EQ(tok.decode(ids), t);
  }
  std::printf("[ zh     ] %zu files, %zu CJK characters, vocab %lld\n", texts.size(), cjk,
              (long long)tok.vocab_size());
  EXPECT_GT(cjk, 100000u);
}

TEST(CharTokenizer, BytesRoundTripAnything) {
  const CharTokenizer tok = CharTokenizer::bytes();
  EXPECT_EQ(tok.vocab_size(), 256);
  const std::string text = std::string("a\0\xff\xe4\xbd\xa0", 6);
  EXPECT_EQ(tok.encode(text), (std::vector<int32_t>{97, 0, 255, 0xe4, 0xbd, 0xa0}));
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  const std::vector<int32_t> bad = {256};
  expect_error([&] { tok.decode(bad); }, {"256"});
}

TEST(CharTokenizer, Utf8CodepointsMarksInvalidBytes) {
  EXPECT_EQ(utf8_codepoints("a\xc3\xa9\xf0\x9f\x98\x80"),
            (std::vector<uint32_t>{'a', 0xE9, 0x1F600}));
  EXPECT_EQ(utf8_codepoints("\xc0\xaf\xe4"),  // overlong, truncated
            (std::vector<uint32_t>{0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}));
}

TEST(CharTokenizer, SaveLoadAndFolderLoader) {
  const fs::path dir = fs::path(::testing::TempDir()) / "mox_char_tok";
  fs::remove_all(dir);
  const CharTokenizer tok = CharTokenizer::train({"中文 text"});
  tok.save(dir.string());
  auto loaded = load_text_tokenizer(dir.string());
  EXPECT_EQ(loaded->kind(), "char");
  EXPECT_EQ(loaded->encode("文 t"), tok.encode("文 t"));
  CharTokenizer::bytes().save(dir.string());
  EXPECT_EQ(load_text_tokenizer(dir.string())->kind(), "byte");
  std::ofstream(dir / "tokenizer.json") << "{\"type\": \"words\"}";
  expect_error([&] { load_text_tokenizer(dir.string()); }, {"tokenizer.json", "type", "words"});
  std::ofstream(dir / "tokenizer.json") << "{\"type\": \"char\", \"chars\": [65, 65]}";
  expect_error([&] { load_text_tokenizer(dir.string()); }, {"tokenizer.json", "chars", "twice"});
  fs::remove_all(dir);
  fs::create_directories(dir);
  expect_error([&] { load_text_tokenizer(dir.string()); }, {dir.string(), "no tokenizer"});
  fs::remove_all(dir);
}
