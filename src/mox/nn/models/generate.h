#pragma once
// Text generation with a GPT: sampling (temperature, top-k, top-p, repetition penalty, seeded)
// and the batched decoding loop over the KV cache (GPT::forward_cached), with stop strings
// and streaming.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "mox/nn/models/gpt.h"
#include "mox/tensor/generator.h"

namespace mox::nn {

struct SamplingOptions {
  double temperature = 1.0;  // 0 = greedy (argmax)
  int64_t top_k = 0;         // keep the k most likely tokens (0 = all)
  double top_p = 1.0;        // nucleus: the smallest most-likely set holding >= top_p (1 = all)
  // CTRL / Hugging Face rule over the ids already in the row (prompt and generated):
  // logit > 0 ? logit / p : logit * p. 1 = off.
  double repetition_penalty = 1.0;
  uint64_t seed = 0;
  // Throws mox::Error("sampling", ...) naming the field: temperature < 0, top_k < 0, top_p
  // outside (0, 1], repetition_penalty <= 0 (or any of them not finite).
  void validate() const;
};

struct GenerateOptions {
  int64_t max_new_tokens = 100;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // stop strings (empty ones are ignored)
  bool use_cache = true;          // false: recompute the whole context for every token
};

// Stop strings over one row of generated ids: after each new id, which ids are final (can
// no longer be the beginning of a stop string, so they may be shown), and where the row ends
// when a stop string appears. Shared by generate() and the server's batch scheduler.
class StopStrings {
 public:
  using Decode = std::function<std::string(const std::vector<int32_t>&)>;
  // Empty strings are ignored; `decode` (ids -> text) is needed when any stop string is left.
  StopStrings(const std::vector<std::string>& stops, Decode decode);
  bool empty() const { return stops_.empty(); }
  // `out`: the row's generated ids, the newest last; the first `final_ids` of them are known
  // final. Returns how many leading ids are final now. When a stop string appears in the
  // decoded text, `out` is cut before the id in which it starts, *stopped is set, and the
  // cut length is returned.
  size_t update(std::vector<int32_t>& out, size_t final_ids, bool* stopped) const;

 private:
  std::vector<std::string> stops_;
  Decode decode_;
};

// The next token from one row of logits: the repetition penalty over `context`, then
// temperature (0 or top_k == 1: the first argmax, no random draw), top-k (exactly k ids: the
// largest logits, lower id first among equal ones), softmax, top-p (the shortest prefix of the
// ids sorted by probability whose mass reaches top_p), and one draw from `gen` over what is
// kept, renormalised. Throws mox::Error for empty or non-finite logits.
int32_t sample_next(std::span<const float> logits, const std::vector<int32_t>& context,
                    const SamplingOptions& opt, Generator& gen);

// Continues every prompt (token ids) in one batch, left-padded to the longest, and returns
// the generated ids of each row (without the prompt). A row ends after max_new_tokens, or at
// a stop string: `decode` turns a row's generated ids into text, and when a stop string
// appears the row's ids are cut before the token in which it starts. on_token(row, id)
// reports each token as it is chosen (for streaming); with stop strings, a token is reported
// only once it cannot be the beginning of one (so reported tokens are exactly the returned
// ones).
//
// Context window: a prompt longer than block_size is cut to its last block_size tokens (the
// repetition penalty still sees the whole prompt). When the batch's window is full, each
// row's window is cut to its last block_size / 2 tokens, which are re-read into a fresh
// cache (positions restart at 0) -- the cut happens for all rows at once, when the longest
// reaches block_size. With and without the cache the model sees the same windows, so
// greedy decoding gives the same ids.
// Runs in eval mode (restoring the model's mode after) under NoGradGuard. Sampling draws
// from one Generator(seed), row after row at each step. Throws mox::Error for an empty
// prompt, an id outside the vocabulary, or invalid options.
std::vector<std::vector<int32_t>> generate(
    GPT& model, const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& opt,
    const std::function<std::string(const std::vector<int32_t>&)>& decode,
    const std::function<void(size_t row, int32_t id)>& on_token = {});

}  // namespace mox::nn
