#pragma once
// Character- and byte-level tokenizers for language models.
//  - byte: 256 ids, id = byte value; any text round-trips.
//  - char: UTF-8 aware, one id per code point (so Chinese text is one token per character);
//    the vocabulary is the sorted set of code points seen in a corpus, id 0 is reserved for
//    characters outside it (and for invalid UTF-8 bytes), which decode to U+FFFD.
// Saved as <dir>/tokenizer.json: {"type": "byte"} or {"type": "char", "chars": [cp, ...]}.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mox/data/text/text_tokenizer.h"

namespace mox::data {

// Splits UTF-8 text into code points; an invalid byte becomes one code point 0xFFFFFFFF.
std::vector<uint32_t> utf8_codepoints(std::string_view text);
// Appends code point cp (<= 0x10FFFF) to out as UTF-8.
void append_utf8(std::string& out, uint32_t cp);

class CharTokenizer : public TextTokenizer {
 public:
  static CharTokenizer bytes();                                       // the byte tokenizer
  static CharTokenizer train(const std::vector<std::string>& texts);  // char vocabulary
  static CharTokenizer load(const std::string& dir);  // throws mox::Error naming the file

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int64_t vocab_size() const override;
  void save(const std::string& dir) const override;
  std::string kind() const override { return byte_level_ ? "byte" : "char"; }

  static constexpr int32_t kUnknown = 0;  // char mode: id of an unseen character

 private:
  bool byte_level_ = true;
  std::vector<uint32_t> chars_;  // char mode: id - 1 -> code point
  std::unordered_map<uint32_t, int32_t> ids_;
};

}  // namespace mox::data
