#include "mox/optim/rmsprop.h"

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
  Tensor d = g.weight_decay != 0 ? detail::axpy(grad, p, g.weight_decay) : grad;
  const double alpha = opt_.alpha();
  Tensor& square_avg = st.buffers.at("square_avg");
  detail::scale_(square_avg, alpha);
  detail::addcmul_(square_avg, d, d, 1.0 - alpha);
  Tensor avg;
  if (opt_.centered()) {
    Tensor& grad_avg = st.buffers.at("grad_avg");
    detail::scale_(grad_avg, alpha);
    detail::axpy_(grad_avg, d, 1.0 - alpha);
    avg = square_avg.clone();
    detail::addcmul_(avg, grad_avg, grad_avg, -1.0);
    detail::sqrt_(avg);
  } else {
    avg = detail::sqrt(square_avg);
  }
  detail::add_scalar_(avg, opt_.eps());
  if (opt_.momentum() > 0) {
    Tensor& buf = st.buffers.at("momentum_buffer");
    detail::scale_(buf, opt_.momentum());
    detail::addcdiv_(buf, d, avg, 1.0);
    detail::axpy_(p, buf, -g.lr);
  } else {
    detail::addcdiv_(p, d, avg, -g.lr);
  }
}

}  // namespace mox::optim
