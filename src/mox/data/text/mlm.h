#pragma once
// Masked-language-model inputs (BERT's pre-training recipe, as in Hugging Face's
// DataCollatorForLanguageModeling): a random 15% of the tokens are chosen as prediction
// targets; of those, 80% are replaced by the [MASK] id, 10% by a random id and 10% kept.
// The labels hold the original id at the chosen positions and -100 (cross_entropy's
// ignore_index) elsewhere, so the loss is cross_entropy(logits.reshape({N, V}),
// labels.reshape({N})).
#include <cstdint>
#include <vector>

#include "mox/tensor/generator.h"
#include "mox/tensor/tensor.h"

namespace mox::data {

struct MlmOptions {
  double mask_prob = 0.15;          // chance that a non-special token is chosen, in (0, 1]
  int64_t mask_token_id = -1;       // [MASK]; must be set, in [0, vocab_size)
  int64_t vocab_size = 0;           // ids are in [0, vocab_size); random replacements too
  std::vector<int64_t> special_ids;  // never chosen (pad, cls, sep, ...), each in [0, vocab_size)
};

struct MlmBatch {
  Tensor input_ids;  // i64, the shape of ids: ids with the chosen tokens replaced
  Tensor labels;     // i64, same shape: the original id where chosen, -100 elsewhere
};

// ids: integer token ids [B, T] (or [T], one row), each in [0, vocab_size). Each non-special
// token is chosen with probability mask_prob, independently; a row that has a non-special
// token but drew none gets one chosen uniformly among them (so every row contributes to the
// loss). A chosen token becomes mask_token_id with probability 0.8, a uniformly random id in
// [0, vocab_size) with probability 0.1, and stays as it is otherwise. The draws come from gen
// in a fixed order (row by row), so the result depends only on the ids, the options and the
// generator's state. Bad options or ids throw mox::Error naming the field or position.
MlmBatch mask_tokens(const Tensor& ids, const MlmOptions& opt, Generator& gen);

}  // namespace mox::data
