#include "mox/nn/layers/global_average_pooling1d.h"

#include "mox/nn/layers/layer_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

Tensor GlobalAveragePooling1D::forward(const Tensor& x) {
  output_shape(x.shape());
  return mean(x, {1});
}

Shape GlobalAveragePooling1D::output_shape(const Shape& in) const {
  check_rank(in, 3, 3, "GlobalAveragePooling1D", "[N, T, C]");
  MOX_CHECK(in[1] != 0, "GlobalAveragePooling1D",
            "cannot average over an empty time axis, input shape " + shape_str(in));
  return {in[0], in[2]};
}

}  // namespace mox::nn
