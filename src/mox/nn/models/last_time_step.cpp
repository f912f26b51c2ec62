#include "mox/nn/models/last_time_step.h"

#include "mox/nn/layers/layer_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

Tensor LastTimeStep::forward(const Tensor& x) {
  output_shape(x.shape());
  int64_t T = x.size(1);
  if (!bidirectional) return x.select(1, T - 1);
  int64_t H = x.size(2) / 2;
  Tensor fwd = x.select(1, T - 1).narrow(1, 0, H);  // forward direction, after the last step
  Tensor bwd = x.select(1, 0).narrow(1, H, H);      // reverse direction, after its last step
  return cat({fwd, bwd}, 1);
}

Shape LastTimeStep::output_shape(const Shape& in) const {
  check_rank(in, 3, 3, "LastTimeStep", "[N, T, C] (a batch_first sequence)");
  MOX_CHECK(in[1] != 0, "LastTimeStep", "the sequence is empty, input shape " + shape_str(in));
  MOX_CHECK(!bidirectional || in[2] < 0 || in[2] % 2 == 0, "LastTimeStep",
            "a bidirectional output needs an even feature size, input shape " + shape_str(in));
  return {in[0], in[2]};
}

std::string LastTimeStep::extra_repr() const {
  return bidirectional ? "bidirectional=True" : "";
}

}  // namespace mox::nn
