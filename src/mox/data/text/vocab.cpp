#include "mox/data/text/vocab.h"

#include <algorithm>
#include <map>

#include "mox/io/file_util.h"
#include "mox/tensor/error.h"

namespace mox::data {

Vocab::Vocab() {
  add(kPadToken);
  add(kOovToken);
}

void Vocab::add(std::string token) {
  ids_.emplace(token, int64_t(tokens_.size()));
  tokens_.push_back(std::move(token));
}

Vocab Vocab::build(const std::vector<std::vector<std::string>>& token_lists,
                   const VocabOptions& options) {
  MOX_CHECK(options.min_frequency >= 1, "Vocab::build",
            "min_frequency must be >= 1, got " + std::to_string(options.min_frequency));
  MOX_CHECK(options.max_size == 0 || options.max_size >= 2, "Vocab::build",
            "max_size must be 0 (no limit) or >= 2 (the specials), got " +
                std::to_string(options.max_size));
  std::unordered_map<std::string, int64_t> counts;
  for (const auto& list : token_lists)
    for (const auto& t : list) counts[t]++;
  std::vector<std::pair<std::string, int64_t>> sorted;
  sorted.reserve(counts.size());
  for (auto& [t, c] : counts)
    if (c >= options.min_frequency && t != kPadToken && t != kOovToken) sorted.emplace_back(t, c);
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  Vocab v;
  for (auto& [t, c] : sorted) {
    if (options.max_size > 0 && v.size() >= options.max_size) break;
    v.add(t);
  }
  return v;
}

int64_t Vocab::id(std::string_view token) const {
  auto it = ids_.find(std::string(token));
  return it == ids_.end() ? kOov : it->second;
}

const std::string& Vocab::token(int64_t id) const {
  MOX_CHECK(id >= 0 && id < size(), "Vocab::token",
            "id " + std::to_string(id) + " out of range [0, " + std::to_string(size()) + ")");
  return tokens_[size_t(id)];
}

std::vector<int64_t> Vocab::encode(const std::vector<std::string>& tokens, int64_t length,
                                   Padding padding) const {
  const size_t n = length > 0 ? size_t(length) : tokens.size();
  const size_t k = std::min(n, tokens.size());  // tokens kept
  std::vector<int64_t> ids(n, kPad);
  if (padding == Padding::Post) {
    for (size_t i = 0; i < k; ++i) ids[i] = id(tokens[i]);
  } else {
    const size_t skip = tokens.size() - k;  // the first tokens are cut
    for (size_t i = 0; i < k; ++i) ids[n - k + i] = id(tokens[skip + i]);
  }
  return ids;
}

std::vector<std::string> Vocab::decode(const std::vector<int64_t>& ids) const {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int64_t i : ids)
    if (i != kPad) out.push_back(token(i));
  return out;
}

void Vocab::save(const std::string& path) const {
  std::string text;
  for (const auto& t : tokens_) {
    // One token per line: a token that load() could not read back is refused here.
    MOX_CHECK(!t.empty() && t.find_first_of(" \t\r\n") == std::string::npos, path,
              "cannot save token '" + t + "': empty or holds whitespace");
    text += t;
    text += '\n';
  }
  io::write_file_atomic(path, text);
}

Vocab Vocab::load(const std::string& path) {
  const std::string text = io::read_file(path);
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    start = end + 1;
  }
  auto where = [&](size_t i) { return path + ":" + std::to_string(i + 1); };
  MOX_CHECK(lines.size() >= 2 && lines[0] == kPadToken && lines[1] == kOovToken, path,
            "not a vocabulary file: the first two lines must be <pad> and <oov>");
  Vocab v;
  for (size_t i = 2; i < lines.size(); ++i) {
    const std::string& t = lines[i];
    MOX_CHECK(!t.empty(), where(i), "empty token");
    MOX_CHECK(t.find_first_of(" \t") == std::string::npos, where(i),
              "token '" + t + "' holds whitespace");
    MOX_CHECK(!v.ids_.count(t), where(i),
              "duplicate token '" + t + "' (first at line " + std::to_string(v.ids_.at(t) + 1) + ")");
    v.add(t);
  }
  return v;
}

}  // namespace mox::data
