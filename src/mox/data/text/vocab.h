#pragma once
// Vocabulary: maps tokens to i64 ids for embedding layers. Id 0 is "<pad>" (fills short
// sequences) and id 1 is "<oov>" (tokens not in the vocabulary); the rest are the corpus
// tokens, most frequent first, ties in byte order, so that the same corpus always gives the
// same ids. Saved as plain text, one token per line in id order.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mox::data {

struct VocabOptions {
  int64_t min_frequency = 1;  // tokens seen fewer times are left out (they encode as <oov>)
  int64_t max_size = 0;       // at most this many ids in all, specials included; 0: no limit
};

class Vocab {
 public:
  static constexpr int64_t kPad = 0;
  static constexpr int64_t kOov = 1;
  static constexpr const char* kPadToken = "<pad>";
  static constexpr const char* kOovToken = "<oov>";

  Vocab();  // only the two special tokens
  static Vocab build(const std::vector<std::vector<std::string>>& token_lists,
                     const VocabOptions& options = {});
  // Ids in file order; the first two lines must be <pad> and <oov>.
  static Vocab load(const std::string& path);
  void save(const std::string& path) const;

  int64_t size() const { return int64_t(tokens_.size()); }
  int64_t id(std::string_view token) const;  // kOov when absent
  const std::string& token(int64_t id) const;
  const std::vector<std::string>& tokens() const { return tokens_; }
  // Where a fixed-length encoding pads and cuts: Post keeps the first `length` tokens and
  // pads at the end; Pre keeps the last `length` tokens and pads at the front (Keras's
  // pad_sequences default, which lets a recurrent layer end on the text, not on padding).
  enum class Padding { Post, Pre };
  // Ids of the tokens cut or padded with kPad to `length`; length <= 0 encodes them all.
  std::vector<int64_t> encode(const std::vector<std::string>& tokens, int64_t length = 0,
                              Padding padding = Padding::Post) const;
  // Tokens of the ids, padding skipped.
  std::vector<std::string> decode(const std::vector<int64_t>& ids) const;

 private:
  void add(std::string token);
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
};

}  // namespace mox::data
