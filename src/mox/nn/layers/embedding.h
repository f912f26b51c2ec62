#pragma once
// Embedding: integer indices [...] -> rows of weight [..., embedding_dim].
// weight [num_embeddings, embedding_dim] ~ N(0, 1); the padding_idx row (if any) starts at
// zero and receives no gradient, as in PyTorch.
#include <optional>

#include "mox/nn/module.h"

namespace mox::nn {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim,
            std::optional<int64_t> padding_idx = std::nullopt);
  void reset_parameters(Generator* gen = nullptr);

  Tensor forward(const Tensor& indices) override;
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override;

  int64_t num_embeddings, embedding_dim;
  std::optional<int64_t> padding_idx;  // normalised to [0, num_embeddings)
  Tensor weight;                       // [num_embeddings, embedding_dim]
};

}  // namespace mox::nn
