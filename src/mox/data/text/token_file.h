#pragma once
// Language-model corpora: text read once, tokenized once, and kept as a memory-mapped file
// of token ids that training reads windows from (nanoGPT's train.bin / val.bin idea).
//
// Token file layout (little-endian): a 64-byte header
//   "MOXTOK1\0"  u32 bytes per id (2 or 4)  u32 0  u64 count  u64 vocab_size  32 bytes 0
// then `count` ids as u16 (vocab_size <= 65536) or i32. Written atomically.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mox/io/file_util.h"

namespace mox::data {

class TokenFile {
 public:
  // Writes ids (each in [0, vocab_size)) to path.
  static void write(const std::string& path, std::span<const int32_t> ids, int64_t vocab_size);
  // Maps a token file; throws mox::Error naming the file for a bad header or size.
  static TokenFile open(const std::string& path);

  int64_t size() const { return count_; }
  int64_t vocab_size() const { return vocab_; }
  int32_t operator[](int64_t i) const {
    return wide_ ? reinterpret_cast<const int32_t*>(ids_)[i]
                 : int32_t(reinterpret_cast<const uint16_t*>(ids_)[i]);
  }
  // out[j] = ids[start + j] for j < n (start + n <= size()).
  void copy(int64_t start, int64_t n, int64_t* out) const;
  const std::string& path() const { return map_->path(); }

 private:
  std::shared_ptr<io::MappedFile> map_;
  const uint8_t* ids_ = nullptr;
  int64_t count_ = 0, vocab_ = 0;
  bool wide_ = false;
};

// Where the text of a corpus comes from.
struct CorpusSource {
  // "fortunes": every English file of Debian's fortunes packages (dir/<name> without an
  // extension, excluding fortunes-zh's chinese, song100 and tang300), concatenated in name
  // order with the "%" separator lines removed; "files": the listed files (folders: their
  // regular files, recursively, in name order), concatenated.
  std::string kind = "fortunes";
  std::string fortune_dir = "/usr/share/games/fortunes";
  std::vector<std::string> exclude;  // "fortunes": file names left out (held out for fine-tuning)
  std::vector<std::string> files;
};

// The corpus text and the names of the files it was read from, in order.
struct CorpusText {
  std::string text;
  std::vector<std::string> files;
};
CorpusText read_corpus(const CorpusSource& source);

// The English fortune files in `dir`, sorted by name (full paths).
std::vector<std::string> english_fortune_files(const std::string& dir);

}  // namespace mox::data
