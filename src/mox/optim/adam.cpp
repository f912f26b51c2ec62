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

void Adam::update_many(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                       const std::vector<ParamState*>& states, const Group& group) {
  // Parameters on one device, contiguous, sharing a step count (bias correction) go to the
  // backend together; anything else (amsgrad, strided views) one at a time.
  std::map<std::pair<int64_t, int>, std::vector<size_t>> batches;  // (step, dtype) -> indices
  for (size_t k = 0; k < params.size(); ++k) {
    ParamState& st = *states[k];
    if (st.buffers.empty())
      for (const std::string& b : state_buffers()) st.buffers[b] = zeros_like(params[k]);
    bool batchable = !opt_.amsgrad() && params[k].is_contiguous() && grads[k].is_contiguous() &&
                     params[k].device() == params[0].device();
    if (batchable) batches[{st.step, int(params[k].dtype())}].push_back(k);
    else update(params[k], grads[k], st, group);
  }
  for (const auto& [key, idx] : batches) {
    std::vector<Tensor> ps, gs, ms, vs;
    for (size_t k : idx) {
      ps.push_back(params[k]);
      gs.push_back(grads[k]);
      ms.push_back(states[k]->buffers.at("exp_avg"));
      vs.push_back(states[k]->buffers.at("exp_avg_sq"));
    }
    backend_for(ps[0]).adam_update_multi(ps, gs, ms, vs, params_for(group, key.first));
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
