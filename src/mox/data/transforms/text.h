#pragma once
// Text augmentation (EDA-style: replacement, deletion, swap) on token lists, plus sentence
// reordering on raw text. Every random transform draws from a Generator in a fixed order
// (token by token, left to right), so one seed gives one output on every platform.
// The token transforms never touch their input; they return a fresh list.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mox/data/text/vocab.h"
#include "mox/tensor/generator.h"

namespace mox::data {

using Tokens = std::vector<std::string>;
// word -> the words it may be replaced by.
using SynonymTable = std::map<std::string, std::vector<std::string>>;

// Reads a synonym table: one entry per line, "word syn1 syn2 ...", separated by spaces or
// tabs; blank lines and lines starting with '#' are skipped. A word without synonyms or
// listed twice is an error naming "file:line".
SynonymTable load_synonyms(const std::string& path);

class TextTransform {
 public:
  virtual ~TextTransform() = default;
  virtual Tokens apply(const Tokens& tokens, Generator& g) const = 0;
  // Name and parameters, e.g. "RandomDeletion(p=0.1)", for logs.
  virtual std::string describe() const = 0;
};

using TextTransformPtr = std::shared_ptr<const TextTransform>;

// Applies its transforms in order; an empty list copies the tokens.
class TextCompose : public TextTransform {
 public:
  explicit TextCompose(std::vector<TextTransformPtr> transforms);
  Tokens apply(const Tokens& tokens, Generator& g) const override;
  std::string describe() const override;
  const std::vector<TextTransformPtr>& transforms() const { return transforms_; }

 private:
  std::vector<TextTransformPtr> transforms_;
};

// Replaces each token with probability p. With a vocabulary: by a uniformly drawn
// vocabulary token (never <pad> or <oov>, which would teach the model nothing). With a
// synonym table: by a uniformly drawn synonym of that token; tokens without synonyms stay.
// Draws per token: uniform() always, then below(k) only when the token is replaced.
class RandomWordReplacement : public TextTransform {
 public:
  RandomWordReplacement(double p, const Vocab& vocab);
  RandomWordReplacement(double p, SynonymTable synonyms);
  Tokens apply(const Tokens& tokens, Generator& g) const override;
  std::string describe() const override;

 private:
  double p_;
  std::vector<std::string> candidates_;  // vocabulary mode: the non-special tokens
  SynonymTable synonyms_;                // synonym mode when candidates_ is empty
};

// Drops each token with probability p (one uniform() per token). If every token would go,
// one of them, drawn with below(n), is kept, so a non-empty input never becomes empty.
class RandomDeletion : public TextTransform {
 public:
  explicit RandomDeletion(double p);
  Tokens apply(const Tokens& tokens, Generator& g) const override;
  std::string describe() const override;

 private:
  double p_;
};

// Swaps n random pairs of distinct positions (two below() draws per swap); lists shorter
// than two tokens are returned unchanged without drawing.
class RandomSwap : public TextTransform {
 public:
  explicit RandomSwap(int64_t n);
  Tokens apply(const Tokens& tokens, Generator& g) const override;
  std::string describe() const override;

 private:
  int64_t n_;
};

// Shuffles the sentences of a raw text. A sentence ends at '.', '!' or '?' followed by
// whitespace (or at the end of the text); sentences are trimmed, shuffled (Fisher-Yates,
// from the back) and rejoined with single spaces. Works on text, not tokens, because
// tokenizing drops the punctuation that marks sentence ends.
class SentenceReordering {
 public:
  std::string apply(std::string_view text, Generator& g) const;
  std::string describe() const { return "SentenceReordering()"; }
  // The trimmed, non-empty sentences of text, in order.
  static std::vector<std::string> split(std::string_view text);
};

}  // namespace mox::data
