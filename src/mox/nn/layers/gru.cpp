#include "mox/nn/layers/gru.h"

#include "mox/ops/ops.h"

namespace mox::nn {

static const GRUOptions& check_gru_options(const GRUOptions& o) {
  MOX_CHECK(o.nonlinearity() == "tanh", "GRU",
            "nonlinearity is an RNN option; GRU gates are fixed (got '" + o.nonlinearity() + "')");
  return o;
}

GRU::GRU(const GRUOptions& o) : RNNBase(check_gru_options(o), 3, false, "GRU") {}

// xt [N, 3H] holds x_t W_ih^T + b_ih; h [N, H].
void GRU::step(const LayerWeights& w, const Tensor& xt, Tensor& h, Tensor&) const {
  int64_t H = options.hidden_size();
  Tensor gh = linear(h, w.w_hh, w.b_hh);  // [N, 3H]: r, z, n parts of W_hh h + b_hh
  std::vector<Tensor> x_rz_n = split_sizes(xt, {2 * H, H}, 1);
  std::vector<Tensor> h_rz_n = split_sizes(gh, {2 * H, H}, 1);
  std::vector<Tensor> rz = split_sizes(sigmoid(add(x_rz_n[0], h_rz_n[0])), {H, H}, 1);
  const Tensor &r = rz[0], &z = rz[1];
  Tensor n = tanh(add(x_rz_n[1], mul(r, h_rz_n[1])));
  h = add(n, mul(z, sub(h, n)));  // (1 - z) * n + z * h
}

}  // namespace mox::nn
