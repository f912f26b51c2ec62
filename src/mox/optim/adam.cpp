#include "mox/optim/adam.h"

#include <map>

#include "mox/backend/backend.h"
#include "mox/optim/inplace.h"
#include "mox/tensor/error.h"

namespace mox::optim {

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Adam("Adam", single_group(std::move(params)), options, false) {}

Adam::Adam(std::vector<ParamGroup> groups, AdamOptions options)
    : Adam("Adam", std::move(groups), options, false) {}

Adam::Adam(std::string name, std::vector<ParamGroup> groups, AdamOptions options, bool decoupled)
    : Optimizer(std::move(name), std::move(groups), options.lr(), options.weight_decay()),
      opt_(options), decoupled_(decoupled) {
  auto [b1, b2] = opt_.betas();
  MOX_CHECK(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1, name_,
            "betas must lie in [0, 1), got (" + std::to_string(b1) + ", " + std::to_string(b2) + ")");
  MOX_CHECK(opt_.eps() >= 0, name_, "eps must be >= 0");
}

AdamW::AdamW(std::vector<Tensor> params, AdamOptions options)
    : Adam("AdamW", single_group(std::move(params)), options, true) {}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamOptions options)
    : Adam("AdamW", std::move(groups), options, true) {}

std::vector<std::string> Adam::state_buffers() const {
  if (opt_.amsgrad()) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  return {"exp_avg", "exp_avg_sq"};
}

AdamParams Adam::params_for(const Group& g, int64_t step) const {
  AdamParams ap;
  ap.lr = g.lr;
  ap.beta1 = opt_.betas().first;
  ap.beta2 = opt_.betas().second;
  ap.eps = opt_.eps();
  ap.weight_decay = g.weight_decay;
  ap.step = step;
  ap.decoupled = decoupled_;
  ap.amsgrad = opt_.amsgrad();
  return ap;
}

void Adam::update_many(const std::vector<Slot>& slots) {
  // Every parameter on one device with one dtype, contiguous, goes to the backend in one call
  // (one launch on a GPU), each with its group's lr and weight decay and its own step count;
  // anything else (amsgrad, strided views, other devices) one at a time.
  std::map<std::pair<int, int>, std::vector<const Slot*>> batches;  // (device, dtype)
  for (const Slot& s : slots) {
    ParamState& st = *s.state;
    if (st.buffers.empty())
      for (const std::string& b : state_buffers()) st.buffers[b] = zeros_like(s.param);
    const bool batchable = !opt_.amsgrad() && s.param.is_contiguous() && s.grad.is_contiguous();
    if (batchable) batches[{int(s.param.device().type), int(s.param.dtype())}].push_back(&s);
    else update(s.param, s.grad, st, *s.group);
  }
  for (const auto& [key, list] : batches) {
    std::vector<Tensor> ps, gs, ms, vs;
    std::vector<AdamParams> aps;
    for (const Slot* s : list) {
      ps.push_back(s->param);
      gs.push_back(s->grad);
      ms.push_back(s->state->buffers.at("exp_avg"));
      vs.push_back(s->state->buffers.at("exp_avg_sq"));
      aps.push_back(params_for(*s->group, s->state->step));
    }
    backend_for(ps[0]).adam_update_multi(ps, gs, ms, vs, aps);
  }
}

void Adam::update(const Tensor& p, const Tensor& grad, ParamState& st, const Group& g) {
  if (st.buffers.empty())
    for (const std::string& b : state_buffers()) st.buffers[b] = zeros_like(p);
  AdamParams ap = params_for(g, st.step);
  Tensor vmax = opt_.amsgrad() ? st.buffers.at("max_exp_avg_sq") : Tensor();
  detail::update_contiguous(p, grad, [&](const Tensor& pc, const Tensor& gc) {
    backend_for(pc).adam_update(pc, gc, st.buffers.at("exp_avg"), st.buffers.at("exp_avg_sq"), vmax, ap);
  });
}

}  // namespace mox::optim
