#include "mox/optim/rmsprop.h"

#include "mox/backend/backend.h"
#include "mox/optim/inplace.h"
#include "mox/tensor/error.h"

namespace mox::optim {

RMSprop::RMSprop(std::vector<Tensor> params, RMSpropOptions options)
    : RMSprop(single_group(std::move(params)), options) {}

RMSprop::RMSprop(std::vector<ParamGroup> groups, RMSpropOptions options)
    : Optimizer("RMSprop", std::move(groups), options.lr(), options.weight_decay()),
      opt_(options) {
  MOX_CHECK(opt_.alpha() >= 0, name_, "alpha must be >= 0");
  MOX_CHECK(opt_.eps() >= 0, name_, "eps must be >= 0");
  MOX_CHECK(opt_.momentum() >= 0, name_, "momentum must be >= 0");
}

std::vector<std::string> RMSprop::state_buffers() const {
  std::vector<std::string> b{"square_avg"};
  if (opt_.momentum() > 0) b.push_back("momentum_buffer");
  if (opt_.centered()) b.push_back("grad_avg");
  return b;
}

void RMSprop::update(const Tensor& p, const Tensor& grad, ParamState& st, const Group& g) {
  if (st.buffers.empty())
    for (const std::string& b : state_buffers()) st.buffers[b] = zeros_like(p);
  RmspropParams rp;
  rp.lr = g.lr;
  rp.alpha = opt_.alpha();
  rp.eps = opt_.eps();
  rp.weight_decay = g.weight_decay;
  rp.momentum = opt_.momentum();
  rp.centered = opt_.centered();
  Tensor square_avg = st.buffers.at("square_avg");
  Tensor buf = opt_.momentum() > 0 ? st.buffers.at("momentum_buffer") : Tensor();
  Tensor grad_avg = opt_.centered() ? st.buffers.at("grad_avg") : Tensor();
  detail::update_contiguous(p, grad, [&](const Tensor& pc, const Tensor& gc) {
    backend_for(p).rmsprop_update(pc, gc, square_avg, buf, grad_avg, rp);
  });
  for (auto& [name, t] : st.buffers) t.bump_version();
}

}  // namespace mox::optim
