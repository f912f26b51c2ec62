#include "mox/data/transforms/text.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "mox/tensor/error.h"

namespace mox::data {

namespace {

void check_probability(double p, const char* where) {
  MOX_CHECK(p >= 0.0 && p <= 1.0, where,
            "probability p must be in [0, 1], got " + std::to_string(p));
}

std::string format_p(double p) {
  std::ostringstream s;
  s << p;
  return s.str();
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

SynonymTable load_synonyms(const std::string& path) {
  std::ifstream in(path);
  MOX_CHECK(in, path, "cannot open synonym file");
  SynonymTable table;
  std::map<std::string, int64_t> first_line;  // for the duplicate-entry message
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    std::istringstream words(line);
    std::string word;
    if (!(words >> word) || word[0] == '#') continue;
    const std::string where = path + ":" + std::to_string(number);
    std::vector<std::string> synonyms;
    for (std::string s; words >> s;) synonyms.push_back(std::move(s));
    MOX_CHECK(!synonyms.empty(), where, "'" + word + "' has no synonyms");
    auto [it, fresh] = first_line.emplace(word, number);
    MOX_CHECK(fresh, where,
              "'" + word + "' is already listed on line " + std::to_string(it->second));
    table.emplace(std::move(word), std::move(synonyms));
  }
  return table;
}

TextCompose::TextCompose(std::vector<TextTransformPtr> transforms)
    : transforms_(std::move(transforms)) {
  for (const auto& t : transforms_) MOX_CHECK(t != nullptr, "TextCompose", "null transform");
}

Tokens TextCompose::apply(const Tokens& tokens, Generator& g) const {
  Tokens out = tokens;
  for (const auto& t : transforms_) out = t->apply(out, g);
  return out;
}

std::string TextCompose::describe() const {
  std::string s = "TextCompose([";
  for (size_t i = 0; i < transforms_.size(); ++i) {
    if (i) s += ", ";
    s += transforms_[i]->describe();
  }
  return s + "])";
}

RandomWordReplacement::RandomWordReplacement(double p, const Vocab& vocab) : p_(p) {
  check_probability(p, "RandomWordReplacement");
  // Ids 0 and 1 are <pad> and <oov>; only real tokens are useful replacements.
  const auto& all = vocab.tokens();
  MOX_CHECK(all.size() > 2, "RandomWordReplacement",
            "vocabulary has no tokens besides <pad> and <oov>");
  candidates_.assign(all.begin() + 2, all.end());
}

RandomWordReplacement::RandomWordReplacement(double p, SynonymTable synonyms)
    : p_(p), synonyms_(std::move(synonyms)) {
  check_probability(p, "RandomWordReplacement");
}

Tokens RandomWordReplacement::apply(const Tokens& tokens, Generator& g) const {
  Tokens out = tokens;
  for (auto& token : out) {
    if (!(g.uniform() < p_)) continue;
    if (!candidates_.empty()) {
      token = candidates_[g.below(candidates_.size())];
      continue;
    }
    auto it = synonyms_.find(token);
    if (it == synonyms_.end() || it->second.empty()) continue;
    token = it->second[g.below(it->second.size())];
  }
  return out;
}

std::string RandomWordReplacement::describe() const {
  if (!candidates_.empty())
    return "RandomWordReplacement(p=" + format_p(p_) +
           ", vocab=" + std::to_string(candidates_.size()) + ")";
  return "RandomWordReplacement(p=" + format_p(p_) +
         ", synonyms=" + std::to_string(synonyms_.size()) + ")";
}

RandomDeletion::RandomDeletion(double p) : p_(p) { check_probability(p, "RandomDeletion"); }

Tokens RandomDeletion::apply(const Tokens& tokens, Generator& g) const {
  Tokens out;
  out.reserve(tokens.size());
  for (const auto& token : tokens)
    if (!(g.uniform() < p_)) out.push_back(token);
  if (out.empty() && !tokens.empty()) out.push_back(tokens[g.below(tokens.size())]);
  return out;
}

std::string RandomDeletion::describe() const { return "RandomDeletion(p=" + format_p(p_) + ")"; }

RandomSwap::RandomSwap(int64_t n) : n_(n) {
  MOX_CHECK(n >= 0, "RandomSwap", "number of swaps must be >= 0, got " + std::to_string(n));
}

Tokens RandomSwap::apply(const Tokens& tokens, Generator& g) const {
  Tokens out = tokens;
  const uint64_t size = out.size();
  if (size < 2) return out;
  for (int64_t i = 0; i < n_; ++i) {
    // Draw b from the size-1 other positions so that every swap moves two tokens.
    uint64_t a = g.below(size);
    uint64_t b = g.below(size - 1);
    if (b >= a) ++b;
    std::swap(out[a], out[b]);
  }
  return out;
}

std::string RandomSwap::describe() const { return "RandomSwap(n=" + std::to_string(n_) + ")"; }

std::vector<std::string> SentenceReordering::split(std::string_view text) {
  std::vector<std::string> sentences;
  auto push = [&](size_t begin, size_t end) {
    while (begin < end && is_space(text[begin])) ++begin;
    while (end > begin && is_space(text[end - 1])) --end;
    if (end > begin) sentences.emplace_back(text.substr(begin, end - begin));
  };
  size_t start = 0;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    const char c = text[i];
    if ((c == '.' || c == '!' || c == '?') && is_space(text[i + 1])) {
      push(start, i + 1);
      start = i + 1;
    }
  }
  push(start, text.size());
  return sentences;
}

std::string SentenceReordering::apply(std::string_view text, Generator& g) const {
  std::vector<std::string> sentences = split(text);
  for (size_t i = sentences.size(); i > 1; --i) std::swap(sentences[i - 1], sentences[g.below(i)]);
  std::string out;
  for (size_t i = 0; i < sentences.size(); ++i) {
    if (i) out += ' ';
    out += sentences[i];
  }
  return out;
}

}  // namespace mox::data
