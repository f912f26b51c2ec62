#include "mox/nn/models/keras_init.h"

#include "mox/autograd/node.h"
#include "mox/nn/init.h"

namespace mox::nn {

void keras_initialize(Module& model, Generator* gen) {
  NoGradGuard ng;
  for (auto& [name, m] : model.named_modules()) {
    const std::string type = m->type_name();
    auto params = m->named_parameters(/*recurse=*/false);
    if (type == "Linear" || type == "Conv2d" || type == "Conv1d") {
      for (auto& [k, p] : params) {
        if (k == "weight") init::xavier_uniform_(p, 1.0, gen);
        else if (k == "bias") init::zeros_(p);
      }
    } else if (type == "Embedding") {
      for (auto& [k, p] : params) init::uniform_(p, -0.05, 0.05, gen);
    } else if (type == "RNN" || type == "LSTM" || type == "GRU") {
      for (auto& [k, p] : params) {
        if (k.rfind("weight_ih", 0) == 0) {
          init::xavier_uniform_(p, 1.0, gen);
        } else if (k.rfind("weight_hh", 0) == 0) {
          // Keras draws one orthogonal (H, gates*H) matrix; per gate block is the same
          // distribution up to the mixing across gates, which orthogonal_ of the whole
          // [gates*H, H] matrix reproduces (columns orthonormal).
          init::orthogonal_(p, 1.0, gen);
        } else if (k.rfind("bias", 0) == 0) {
          init::zeros_(p);
          if (type == "LSTM" && k.rfind("bias_ih", 0) == 0) {
            int64_t H = p.size(0) / 4;  // gates i, f, g, o: the forget block is [H, 2H)
            p.slice(0, H, 2 * H).fill_(1.0);
          }
        }
      }
    } else if (type == "LayerNorm" || type.rfind("BatchNorm", 0) == 0) {
      for (auto& [k, p] : params) {
        if (k == "weight") init::ones_(p);
        else if (k == "bias") init::zeros_(p);
      }
    }
  }
}

}  // namespace mox::nn
