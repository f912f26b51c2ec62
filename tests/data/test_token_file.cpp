// Language-model corpora: the fortune reader (the reference script's rules: files without an
// extension in name order, fortunes-zh's files left out, "%" lines dropped, a final newline
// leaving one empty line) and the memory-mapped token file (round trip, u16/i32 widths,
// errors naming the file).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "../error_of.h"
#include "mox/data/text/token_file.h"

namespace fs = std::filesystem;
using namespace mox;

namespace {

std::string temp_dir(const char* name) {
  std::string d = (fs::temp_directory_path() / (std::string(name) + "." + std::to_string(::getpid()))).string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(Corpus, FortunesAsTheReferenceReadsThem) {
  const std::string d = temp_dir("mox_corpus");
  std::ofstream(d + "/b") << "second\n%\nmore\n";
  std::ofstream(d + "/a") << "first\n  % \nx\n";  // "%" up to whitespace is a separator
  std::ofstream(d + "/chinese") << "\xe4\xb8\xad\n";
  std::ofstream(d + "/a.dat") << "index";
  fs::create_directories(d + "/folder");
  data::CorpusSource src;
  src.fortune_dir = d;
  data::CorpusText c = data::read_corpus(src);
  ASSERT_EQ(c.files.size(), 2u);
  EXPECT_EQ(fs::path(c.files[0]).filename(), "a");
  EXPECT_EQ(c.text, "first\nx\n\nsecond\nmore\n\n");
  src.exclude = {"a"};  // held out, e.g. for fine-tuning on it later
  EXPECT_EQ(data::read_corpus(src).text, "second\nmore\n\n");
  src.exclude = {"nosuch"};
  expect_error([&] { data::read_corpus(src); }, {"nosuch", "not a fortune file"});
  fs::remove_all(d);
}

TEST(Corpus, TheDebianEnglishFortunes) {
  const std::string dir = "/usr/share/games/fortunes";
  if (!fs::exists(dir + "/computers")) GTEST_SKIP() << "fortunes not installed (scripts/setup)";
  // The corpus: 43 English files; the reference script reads 2,546,285 bytes.
  std::vector<std::string> files = data::english_fortune_files(dir);
  EXPECT_EQ(files.size(), 43u);
  for (const auto& f : files) EXPECT_EQ(fs::path(f).filename().string().find('.'), std::string::npos);
  data::CorpusText c = data::read_corpus({});
  EXPECT_EQ(c.text.size(), 2546285u);
  EXPECT_EQ(c.text.find("\n%\n"), std::string::npos);
}

TEST(TokenFile, RoundTripsBothWidths) {
  const std::string d = temp_dir("mox_tokens");
  std::vector<int32_t> ids = {0, 5, 65535, 17, 3};
  data::TokenFile::write(d + "/small.tok", ids, 65536);
  data::TokenFile f = data::TokenFile::open(d + "/small.tok");
  EXPECT_EQ(f.size(), 5);
  EXPECT_EQ(f.vocab_size(), 65536);
  EXPECT_EQ(fs::file_size(d + "/small.tok"), 64u + 2 * 5);  // u16 ids
  std::vector<int64_t> out(3);
  f.copy(1, 3, out.data());
  EXPECT_EQ(out, (std::vector<int64_t>{5, 65535, 17}));
  std::vector<int32_t> wide = {70000, 1, 2};
  data::TokenFile::write(d + "/wide.tok", wide, 70001);
  data::TokenFile g = data::TokenFile::open(d + "/wide.tok");
  EXPECT_EQ(g[0], 70000);
  EXPECT_EQ(fs::file_size(d + "/wide.tok"), 64u + 4 * 3);
  // errors name the file
  expect_error([&] { data::TokenFile::write(d + "/bad.tok", std::vector<int32_t>{3, 9}, 5); },
               {"bad.tok", "token 1", "id 9"});
  expect_error([&] { f.copy(3, 3, out.data()); }, {"small.tok", "outside 5 tokens"});
  std::ofstream(d + "/junk.tok") << "not a token file at all, not a token file at all, not a token file";
  expect_error([&] { data::TokenFile::open(d + "/junk.tok"); }, {"junk.tok", "not a mox token file"});
  {
    std::ifstream in(d + "/small.tok", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(d + "/cut.tok", std::ios::binary) << bytes.substr(0, bytes.size() - 1);
  }
  expect_error([&] { data::TokenFile::open(d + "/cut.tok"); }, {"cut.tok", "does not match 5 ids"});
  fs::remove_all(d);
}
