#include "mox/optim/sgd.h"

#include "mox/optim/inplace.h"
#include "mox/tensor/error.h"

namespace mox::optim {

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : SGD(single_group(std::move(params)), options) {}

SGD::SGD(std::vector<ParamGroup> groups, SGDOptions options)
    : Optimizer("SGD", std::move(groups), options.lr(), options.weight_decay()), opt_(options) {
  MOX_CHECK(opt_.momentum() >= 0, name_, "momentum must be >= 0");
  MOX_CHECK(!opt_.nesterov() || (opt_.momentum() > 0 && opt_.dampening() == 0), name_,
            "nesterov momentum requires momentum > 0 and dampening = 0");
}

std::vector<std::string> SGD::state_buffers() const {
  if (opt_.momentum() != 0) return {"momentum_buffer"};
  return {};
}

void SGD::update(const Tensor& p, const Tensor& grad, ParamState& st, const Group& g) {
  Tensor d = g.weight_decay != 0 ? detail::axpy(grad, p, g.weight_decay) : grad;
  if (opt_.momentum() != 0) {
    auto it = st.buffers.find("momentum_buffer");
    if (it == st.buffers.end()) {
      it = st.buffers.emplace("momentum_buffer", d.detach().clone()).first;
    } else {
      detail::scale_(it->second, opt_.momentum());
      detail::axpy_(it->second, d, 1.0 - opt_.dampening());
    }
    const Tensor& buf = it->second;
    d = opt_.nesterov() ? detail::axpy(d, buf, opt_.momentum()) : buf;
  }
  detail::axpy_(p, d, -g.lr);
}

}  // namespace mox::optim
