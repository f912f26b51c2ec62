#include "mox/nn/layers/dropout.h"

#include "mox/nn/layers/layer_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

Dropout::Dropout(double p_, Generator* gen) : p(p_), generator(gen) {
  MOX_CHECK(p >= 0.0 && p <= 1.0, "Dropout",
            "probability must be in [0, 1], got " + repr_float(p));
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training(), generator); }

std::string Dropout::extra_repr() const { return "p=" + repr_float(p) + ", inplace=False"; }

}  // namespace mox::nn
