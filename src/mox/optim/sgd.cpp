#include "mox/optim/sgd.h"

#include "mox/backend/backend.h"
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
  SgdParams sp;
  sp.lr = g.lr;
  sp.momentum = opt_.momentum();
  sp.dampening = opt_.dampening();
  sp.weight_decay = g.weight_decay;
  sp.nesterov = opt_.nesterov();
  sp.first_step = false;
  Tensor buf;
  if (opt_.momentum() != 0) {
    auto it = st.buffers.find("momentum_buffer");
    // No buffer yet: the kernel sets it to the gradient (PyTorch's buf = None case). It
    // enters the state only once written, so a failed step leaves no garbage behind.
    sp.first_step = it == st.buffers.end();
    buf = sp.first_step ? empty(p.shape(), TensorOptions(p.dtype(), p.device())) : it->second;
  }
  detail::update_contiguous(p, grad, [&](const Tensor& pc, const Tensor& gc) {
    backend_for(p).sgd_update(pc, gc, buf, sp);
  });
  if (buf.defined()) {
    buf.bump_version();
    if (sp.first_step) st.buffers.emplace("momentum_buffer", buf);
  }
}

}  // namespace mox::optim
