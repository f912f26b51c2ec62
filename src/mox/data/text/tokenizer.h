#pragma once
// Word tokenizer for text classification: lower-cases ASCII letters, splits on whitespace
// and punctuation (which is dropped) and keeps apostrophes inside words ("don't" is one
// token, "'quoted'" becomes "quoted"). Bytes >= 0x80 (UTF-8 sequences) are treated as
// letters and passed through unchanged, so accented words stay whole without needing a
// Unicode table.
#include <string>
#include <string_view>
#include <vector>

namespace mox::data {

std::vector<std::string> tokenize(std::string_view text);

}  // namespace mox::data
