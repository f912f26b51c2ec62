#include "mox/optim/adagrad.h"

#include "mox/backend/backend.h"
#include "mox/optim/inplace.h"
#include "mox/tensor/error.h"

namespace mox::optim {

Adagrad::Adagrad(std::vector<Tensor> params, AdagradOptions options)
    : Adagrad(single_group(std::move(params)), options) {}

Adagrad::Adagrad(std::vector<ParamGroup> groups, AdagradOptions options)
    : Optimizer("Adagrad", std::move(groups), options.lr(), options.weight_decay()),
      opt_(options) {
  MOX_CHECK(opt_.lr_decay() >= 0, name_, "lr_decay must be >= 0");
  MOX_CHECK(opt_.initial_accumulator_value() >= 0, name_,
            "initial_accumulator_value must be >= 0");
  MOX_CHECK(opt_.eps() >= 0, name_, "eps must be >= 0");
}

void Adagrad::update(const Tensor& p, const Tensor& grad, ParamState& st, const Group& g) {
  Tensor& sum = st.buffers["sum"];
  if (!sum.defined())
    sum = full(p.shape(), opt_.initial_accumulator_value(), TensorOptions(p.dtype(), p.device()));
  AdagradParams ap;
  ap.lr = g.lr;
  ap.lr_decay = opt_.lr_decay();
  ap.weight_decay = g.weight_decay;
  ap.eps = opt_.eps();
  ap.step = st.step;
  detail::update_contiguous(p, grad, [&](const Tensor& pc, const Tensor& gc) {
    backend_for(p).adagrad_update(pc, gc, sum, ap);
  });
  sum.bump_version();
}

}  // namespace mox::optim
