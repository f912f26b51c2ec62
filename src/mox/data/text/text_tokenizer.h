#pragma once
// The interface shared by the language-model tokenizers (byte/char in char_tokenizer.h,
// GPT-2 byte-level BPE in bpe.h), and the loader that picks one from a folder.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mox::data {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // The bytes of the tokens, concatenated (not validated as UTF-8). Throws mox::Error for an
  // id outside [0, vocab_size()).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  // Writes the tokenizer's files into `dir` (created when missing).
  virtual void save(const std::string& dir) const = 0;
  virtual std::string kind() const = 0;  // "bpe", "char" or "byte"
};

// The tokenizer stored in `dir`: encoder.json + vocab.bpe -> BPE; tokenizer.json with
// {"type": "char" | "byte", ...} -> CharTokenizer. Throws mox::Error naming the folder when
// neither is there.
std::unique_ptr<TextTokenizer> load_text_tokenizer(const std::string& dir);

}  // namespace mox::data
