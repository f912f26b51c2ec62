#include "mox/data/text/tokenizer.h"

namespace mox::data {

namespace {

// Letters, digits and every byte of a multi-byte UTF-8 sequence form words.
bool is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : char(c); }

}  // namespace

std::vector<std::string> tokenize(std::string_view text) {
  std::vector<std::string> tokens;
  std::string word;
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (is_word_byte(c)) {
      word += lower(c);
    } else if (c == '\'' && !word.empty() && i + 1 < n &&
               is_word_byte(static_cast<unsigned char>(text[i + 1]))) {
      // An apostrophe between two word characters belongs to the word (don't, o'clock);
      // anywhere else it is a quote mark and splits like other punctuation.
      word += '\'';
    } else if (!word.empty()) {
      tokens.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) tokens.push_back(std::move(word));
  return tokens;
}

}  // namespace mox::data
