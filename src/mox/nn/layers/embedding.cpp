#include "mox/nn/layers/embedding.h"

#include "mox/autograd/node.h"
#include "mox/nn/init.h"
#include "mox/ops/ops.h"

namespace mox::nn {

Embedding::Embedding(int64_t num, int64_t dim, std::optional<int64_t> pad)
    : num_embeddings(num), embedding_dim(dim) {
  MOX_CHECK(num > 0 && dim > 0, "Embedding",
            "num_embeddings and embedding_dim must be positive, got " + std::to_string(num) +
                " and " + std::to_string(dim));
  if (pad) {
    MOX_CHECK(*pad >= -num && *pad < num, "Embedding",
              "padding_idx " + std::to_string(*pad) + " is outside [" + std::to_string(-num) +
                  ", " + std::to_string(num) + ")");
    padding_idx = *pad < 0 ? *pad + num : *pad;
  }
  weight = register_parameter("weight", empty({num, dim}));
  reset_parameters();
}

void Embedding::reset_parameters(Generator* gen) {
  init::normal_(weight, 0.0, 1.0, gen);
  if (padding_idx) {
    NoGradGuard ng;
    weight.select(0, *padding_idx).fill_(0.0);
  }
}

Tensor Embedding::forward(const Tensor& indices) {
  MOX_CHECK(is_integral(indices.dtype()), "Embedding",
            "indices must be an integer tensor, got " + indices.desc());
  // Token ids are made on the host; they follow the table to its device.
  const Tensor idx = indices.device() == weight.device() ? indices : indices.to(weight.device());
  return embedding(weight, idx, padding_idx.value_or(-1));
}

Shape Embedding::output_shape(const Shape& in) const {
  Shape out = in;
  out.push_back(embedding_dim);
  return out;
}

std::string Embedding::extra_repr() const {
  std::string s = std::to_string(num_embeddings) + ", " + std::to_string(embedding_dim);
  if (padding_idx) s += ", padding_idx=" + std::to_string(*padding_idx);
  return s;
}

}  // namespace mox::nn
