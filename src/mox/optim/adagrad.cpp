#include "mox/optim/adagrad.h"

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
  Tensor d = g.weight_decay != 0 ? detail::axpy(grad, p, g.weight_decay) : grad;
  double clr = g.lr / (1.0 + double(st.step - 1) * opt_.lr_decay());
  detail::addcmul_(sum, d, d, 1.0);
  Tensor std = detail::sqrt(sum);
  detail::add_scalar_(std, opt_.eps());
  detail::addcdiv_(p, d, std, -clr);
}

}  // namespace mox::optim
