#include "mox/nn/layers/rnn_base.h"

#include <cmath>

#include "mox/nn/init.h"
#include "mox/nn/layers/layer_util.h"
#include "mox/ops/ops.h"

namespace mox::nn {

RNNBase::RNNBase(const RNNOptions& o, int64_t gates, bool has_cell, const char* name)
    : options(o), has_cell_(has_cell) {
  MOX_CHECK(o.input_size() > 0 && o.hidden_size() > 0 && o.num_layers() > 0, name,
            "input_size, hidden_size and num_layers must be positive, got " +
                std::to_string(o.input_size()) + ", " + std::to_string(o.hidden_size()) + ", " +
                std::to_string(o.num_layers()));
  MOX_CHECK(o.dropout() >= 0.0 && o.dropout() <= 1.0, name,
            "dropout must be in [0, 1], got " + repr_float(o.dropout()));
  int64_t H = o.hidden_size(), D = o.bidirectional() ? 2 : 1;
  for (int64_t l = 0; l < o.num_layers(); l++) {
    for (int64_t d = 0; d < D; d++) {
      std::string sfx = "_l" + std::to_string(l) + (d == 1 ? "_reverse" : "");
      int64_t in = l == 0 ? o.input_size() : D * H;
      LayerWeights w;
      w.w_ih = register_parameter("weight_ih" + sfx, empty({gates * H, in}));
      w.w_hh = register_parameter("weight_hh" + sfx, empty({gates * H, H}));
      if (o.bias()) {
        w.b_ih = register_parameter("bias_ih" + sfx, empty({gates * H}));
        w.b_hh = register_parameter("bias_hh" + sfx, empty({gates * H}));
      }
      weights.push_back(w);
    }
  }
  reset_parameters();
}

void RNNBase::reset_parameters(Generator* gen) {
  double bound = 1.0 / std::sqrt(double(options.hidden_size()));
  for (Tensor& p : parameters()) init::uniform_(p, -bound, bound, gen);
}

Tensor RNNBase::input_bias(const LayerWeights& w) const {
  return w.b_ih.defined() ? add(w.b_ih, w.b_hh) : Tensor();
}

// x [T, N, in] (tdim 0) or [N, T, in] (tdim 1) -> outputs [.., T, .., H]; h, c end as the
// final states (of time 0 when reverse).
Tensor RNNBase::run_direction(const Tensor& x, const LayerWeights& w, int64_t tdim, bool reverse,
                              Tensor& h, Tensor& c) const {
  int64_t T = x.size(tdim);
  Tensor xp = linear(x, w.w_ih, input_bias(w));  // [.., T, .., G*H], all steps at once
  std::vector<Tensor> xs = unbind(xp, tdim);  // [N, G*H] per step
  std::vector<Tensor> ys(static_cast<size_t>(T));
  for (int64_t s = 0; s < T; s++) {
    int64_t t = reverse ? T - 1 - s : s;
    step(w, xs[size_t(t)], h, c);
    ys[size_t(t)] = h;
  }
  return stack(ys, tdim);
}

RNNState RNNBase::forward_with_state(const Tensor& input, const Tensor& h0, const Tensor& c0) {
  const std::string where = type_name();
  output_shape(input.shape());
  MOX_CHECK(is_floating(input.dtype()), where, "input must be floating point, got " + input.desc());
  MOX_CHECK(has_cell_ || !c0.defined(), where, "c0 is only an input of LSTM");
  // Unbatched [T, C] runs as a batch of one, time-major (as in PyTorch).
  bool batched = input.dim() == 3;
  int64_t tdim = batched && options.batch_first() ? 1 : 0;
  Tensor x = batched ? input : input.unsqueeze(1);
  int64_t T = x.size(tdim), N = x.size(1 - tdim);
  MOX_CHECK(T > 0, where, "input has no time steps: " + input.desc());
  int64_t L = options.num_layers(), D = options.bidirectional() ? 2 : 1;
  int64_t H = options.hidden_size();

  auto prepare_state = [&](const Tensor& s, const char* name) -> Tensor {
    if (!s.defined()) return s;
    Shape want = batched ? Shape{L * D, N, H} : Shape{L * D, H};
    MOX_CHECK(s.shape() == want, where,
              std::string(name) + " must have shape " + shape_str(want) + ", got " + s.desc());
    return batched ? s : s.unsqueeze(1);
  };
  Tensor hb = prepare_state(h0, "h0"), cb = prepare_state(c0, "c0");
  TensorOptions opts(x.dtype(), x.device());

  Tensor layer_in = x;
  std::vector<Tensor> hs, cs;
  for (int64_t l = 0; l < L; l++) {
    std::vector<Tensor> outs;
    for (int64_t d = 0; d < D; d++) {
      int64_t k = l * D + d;
      Tensor h = hb.defined() ? hb.select(0, k) : zeros({N, H}, opts);
      Tensor c;
      if (has_cell_) c = cb.defined() ? cb.select(0, k) : zeros({N, H}, opts);
      outs.push_back(run_direction(layer_in, weights[size_t(k)], tdim, d == 1, h, c));
      hs.push_back(h);
      if (has_cell_) cs.push_back(c);
    }
    layer_in = D == 1 ? outs[0] : cat(outs, 2);
    if (options.dropout() > 0 && is_training() && l + 1 < L)
      layer_in = dropout(layer_in, options.dropout(), true);
  }

  RNNState st;
  st.output = batched ? layer_in : layer_in.squeeze(1);
  st.h_n = stack(hs, 0);
  if (has_cell_) st.c_n = stack(cs, 0);
  if (!batched) {
    st.h_n = st.h_n.squeeze(1);
    if (has_cell_) st.c_n = st.c_n.squeeze(1);
  }
  return st;
}

Shape RNNBase::output_shape(const Shape& in) const {
  const std::string where = type_name();
  check_rank(in, 2, 3, where,
             options.batch_first() ? "[N, T, C] or [T, C]" : "[T, N, C] or [T, C]");
  check_size(in, int64_t(in.size()) - 1, options.input_size(), where, "input_size (last dim)");
  Shape out = in;
  out.back() = options.hidden_size() * (options.bidirectional() ? 2 : 1);
  return out;
}

std::string RNNBase::extra_repr() const {
  const RNNOptions& o = options;
  std::string s = std::to_string(o.input_size()) + ", " + std::to_string(o.hidden_size());
  if (o.num_layers() != 1) s += ", num_layers=" + std::to_string(o.num_layers());
  if (o.nonlinearity() != "tanh") s += ", nonlinearity='" + o.nonlinearity() + "'";
  if (!o.bias()) s += ", bias=False";
  if (o.batch_first()) s += ", batch_first=True";
  if (o.dropout() != 0) s += ", dropout=" + repr_float(o.dropout());
  if (o.bidirectional()) s += ", bidirectional=True";
  return s;
}

}  // namespace mox::nn
