#pragma once
// Byte-level BPE exactly compatible with GPT-2 (and with the npm package `gpt-3-encoder`'s
// Encoder.js, the reference its tests compare against): the text is split by GPT-2's
// pre-tokenizer pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (matched by hand on UTF-8 code points, with JavaScript's \s and Unicode L/N tables from
// unicode_tables.cpp), each piece's bytes are merged by rank, and the merged symbols are
// looked up in encoder.json. Like Encoder.js, a pair's rank is looked up under the key
// "<first>,<second>", later merges winning for equal keys, and among pairs of equal rank the
// last in the word is merged. Invalid UTF-8 bytes are "other" characters (kept, so that
// decode(encode(s)) == s for any bytes).
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mox/data/text/text_tokenizer.h"

namespace mox::data {

// GPT-2's byte <-> printable code point mapping (bytes_to_unicode in the reference).
uint32_t gpt2_byte_to_codepoint(uint8_t byte);

// Splits `text` into GPT-2 pre-tokenizer pieces (views into `text`, covering all of it).
std::vector<std::string_view> gpt2_pretokenize(std::string_view text);

class BpeTokenizer : public TextTokenizer {
 public:
  // encoder: symbol bytes -> id; merges in rank order (each a pair of symbol bytes).
  BpeTokenizer(std::unordered_map<std::string, int32_t> encoder,
               std::vector<std::pair<std::string, std::string>> merges);

  // Reads <dir>/encoder.json and <dir>/vocab.bpe (GPT-2's format). Throws mox::Error naming
  // the file: missing, invalid JSON, a non-integer id, a malformed merge line.
  static BpeTokenizer load(const std::string& dir);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int64_t vocab_size() const override { return int64_t(decoder_.size()); }
  void save(const std::string& dir) const override;
  std::string kind() const override { return "bpe"; }

  // The id of a symbol's bytes (e.g. "<|endoftext|>"), -1 when absent.
  int32_t token_id(std::string_view symbol) const;
  const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }

 private:
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Map = std::unordered_map<std::string, int32_t, Hash, std::equal_to<>>;
  Map encoder_;
  std::vector<std::string> decoder_;  // id -> bytes
  Map ranks_;                         // "first,second" (bytes) -> rank
  std::vector<std::pair<std::string, std::string>> merges_;
  // piece -> ids, guarded by its mutex (encode holds it for the whole call); behind a
  // pointer so that the tokenizer can be moved.
  struct Cache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> map;
  };
  std::unique_ptr<Cache> cache_;
};

struct BpeTrainOptions {
  int64_t vocab_size = 1000;  // 256 bytes + merges + "<|endoftext|>" (the last id); >= 257
};

// Trains a byte-level BPE on `texts`, pre-tokenized like GPT-2: the most frequent adjacent
// pair is merged first, ties going to the pair whose symbol bytes are smallest, so the result
// is deterministic. Ids: the 256 bytes in GPT-2's order, then the merges, then
// "<|endoftext|>". Pairs with a ',' in a symbol are never merged (Encoder.js keys ranks by
// "first,second", which would make such merges ambiguous). When no pair is left, the
// vocabulary is smaller than asked. Throws mox::Error for vocab_size < 257.
BpeTokenizer train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options);

}  // namespace mox::data
