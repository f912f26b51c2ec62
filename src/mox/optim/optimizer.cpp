#include "mox/optim/optimizer.h"

#include <cmath>
#include <set>

#include "mox/autograd/node.h"
#include "mox/tensor/error.h"

namespace mox::optim {

std::vector<ParamGroup> weight_decay_groups(const std::vector<Tensor>& params, double weight_decay) {
  std::vector<ParamGroup> groups(2);
  for (const Tensor& p : params) groups[p.dim() >= 2 ? 0 : 1].params.push_back(p);
  groups[0].weight_decay = weight_decay;
  groups[1].weight_decay = 0.0;
  return groups;
}

std::vector<ParamGroup> single_group(std::vector<Tensor> params) {
  std::vector<ParamGroup> g(1);
  g[0].params = std::move(params);
  return g;
}

Optimizer::Optimizer(std::string name, std::vector<ParamGroup> groups, double default_lr,
                     double default_weight_decay)
    : name_(std::move(name)), default_lr_(default_lr),
      default_weight_decay_(default_weight_decay) {
  check_lr(default_lr);
  MOX_CHECK(default_weight_decay >= 0, name_,
            "weight_decay must be >= 0, got " + std::to_string(default_weight_decay));
  size_t total = 0;
  for (auto& g : groups) {
    total += g.params.size();
    add_param_group(std::move(g));
  }
  MOX_CHECK(total > 0, name_, "got an empty parameter list");
}

void Optimizer::check_lr(double lr) const {
  MOX_CHECK(std::isfinite(lr) && lr >= 0, name_,
            "learning rate must be finite and >= 0, got " + std::to_string(lr));
}

void Optimizer::add_param_group(ParamGroup pg) {
  std::set<const TensorImpl*> seen;
  for (const auto& g : groups_)
    for (const auto& p : g.params) seen.insert(p.impl());
  for (size_t k = 0; k < pg.params.size(); k++) {
    const Tensor& p = pg.params[k];
    std::string which = "parameter " + std::to_string(k) + " of group " +
                        std::to_string(groups_.size());
    MOX_CHECK(p.defined(), name_, which + " is undefined");
    // Updates run in f32/f64 (the backends' compute types); bf16/f16 models keep f32
    // master weights for the optimiser.
    MOX_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, name_,
              which + " is " + p.desc() + "; only f32 and f64 parameters can be optimised "
                      "(keep f32 master weights for bf16/f16 models)");
    MOX_CHECK(p.is_leaf(), name_, which + " is not a leaf tensor (it is the result of an op); "
                                          "optimise the tensor it was computed from");
    MOX_CHECK(seen.insert(p.impl()).second, name_,
              which + " appears more than once among the parameter groups");
  }
  Group g;
  g.params = std::move(pg.params);
  g.lr = pg.lr.value_or(default_lr_);
  g.weight_decay = pg.weight_decay.value_or(default_weight_decay_);
  check_lr(g.lr);
  MOX_CHECK(g.weight_decay >= 0, name_,
            "weight_decay must be >= 0, got " + std::to_string(g.weight_decay));
  state_.resize(state_.size() + g.params.size());
  groups_.push_back(std::move(g));
}

void Optimizer::step() {
  NoGradGuard no_grad;
  size_t i = 0;
  std::vector<Slot> slots;
  for (const Group& g : groups_) {
    for (const Tensor& p : g.params) {
      ParamState& st = state_[i++];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      MOX_CHECK(grad.shape() == p.shape(), name_,
                "gradient " + grad.desc() + " does not match parameter " + p.desc());
      if (grad.dtype() != p.dtype()) grad = grad.to(p.dtype());
      if (grad.device() != p.device()) grad = grad.to(p.device());
      st.step++;
      slots.push_back({p, grad, &st, &g});
    }
  }
  if (!slots.empty()) update_many(slots);
}

void Optimizer::update_many(const std::vector<Slot>& slots) {
  for (const Slot& s : slots) update(s.param, s.grad, *s.state, *s.group);
}

void Optimizer::zero_grad() {
  for (const Group& g : groups_)
    for (Tensor p : g.params) p.zero_grad();
}

double Optimizer::lr() const { return groups_.at(0).lr; }

void Optimizer::set_lr(double lr) {
  check_lr(lr);
  for (Group& g : groups_) g.lr = lr;
}

double Optimizer::group_lr(size_t g) const {
  MOX_CHECK(g < groups_.size(), name_, "no parameter group " + std::to_string(g));
  return groups_[g].lr;
}

void Optimizer::set_group_lr(size_t g, double lr) {
  MOX_CHECK(g < groups_.size(), name_, "no parameter group " + std::to_string(g));
  check_lr(lr);
  groups_[g].lr = lr;
}

double Optimizer::group_weight_decay(size_t g) const {
  MOX_CHECK(g < groups_.size(), name_, "no parameter group " + std::to_string(g));
  return groups_[g].weight_decay;
}

const std::vector<Tensor>& Optimizer::group_params(size_t g) const {
  MOX_CHECK(g < groups_.size(), name_, "no parameter group " + std::to_string(g));
  return groups_[g].params;
}

std::vector<Tensor> Optimizer::params() const {
  std::vector<Tensor> all;
  for (const Group& g : groups_) all.insert(all.end(), g.params.begin(), g.params.end());
  return all;
}

int64_t Optimizer::param_step(size_t i) const {
  MOX_CHECK(i < state_.size(), name_, "no parameter " + std::to_string(i));
  return state_[i].step;
}

StateDict Optimizer::state_dict() const {
  StateDict sd;
  for (size_t g = 0; g < groups_.size(); g++) {
    std::string k = "group." + std::to_string(g) + ".";
    sd.scalars[k + "lr"] = groups_[g].lr;
    sd.scalars[k + "weight_decay"] = groups_[g].weight_decay;
    sd.scalars[k + "num_params"] = double(groups_[g].params.size());
  }
  for (size_t i = 0; i < state_.size(); i++) {
    const ParamState& st = state_[i];
    if (st.step == 0) continue;  // never updated: nothing to save
    std::string k = "state." + std::to_string(i) + ".";
    sd.scalars[k + "step"] = double(st.step);
    for (const auto& [name, buf] : st.buffers) sd.tensors[k + name] = buf;
  }
  return sd;
}

void Optimizer::load_state_dict(const StateDict& sd) {
  const std::string where = name_ + ".load_state_dict";
  // Build everything first, then swap in, so that a bad state dict changes nothing.
  std::vector<double> lrs, wds;
  for (size_t g = 0; g < groups_.size(); g++) {
    std::string k = "group." + std::to_string(g) + ".";
    double n = sd.scalar(k + "num_params", where);
    MOX_CHECK(n == double(groups_[g].params.size()), where,
              "group " + std::to_string(g) + " has " + std::to_string(groups_[g].params.size()) +
                  " parameters but the state dict has " + format_scalar(n));
    lrs.push_back(sd.scalar(k + "lr", where));
    wds.push_back(sd.scalar(k + "weight_decay", where));
  }
  MOX_CHECK(sd.scalars.count("group." + std::to_string(groups_.size()) + ".num_params") == 0,
            where, "the state dict has more parameter groups than the " +
                       std::to_string(groups_.size()) + " of this optimiser");

  const std::vector<Tensor> ps = params();
  std::vector<ParamState> state(ps.size());
  size_t used_tensors = 0, used_steps = 0;
  for (size_t i = 0; i < ps.size(); i++) {
    std::string k = "state." + std::to_string(i) + ".";
    auto it = sd.scalars.find(k + "step");
    if (it == sd.scalars.end()) continue;
    used_steps++;
    double step = it->second;
    MOX_CHECK(step >= 1 && step == std::floor(step) && step < 9.0e15, where,
              "invalid step count " + format_scalar(step) + " for parameter " + std::to_string(i));
    state[i].step = int64_t(step);
    for (const std::string& b : state_buffers()) {
      const Tensor& t = sd.tensor(k + b, ps[i].shape(), ps[i].dtype(), where);
      // A private copy on the parameter's device (the source may view a mapped file).
      Tensor c = empty(ps[i].shape(), TensorOptions(ps[i].dtype(), ps[i].device()));
      c.copy_(t);
      state[i].buffers[b] = c;
      used_tensors++;
    }
  }
  size_t state_steps = 0;
  for (const auto& [k, v] : sd.scalars)
    if (k.rfind("state.", 0) == 0) state_steps++;
  MOX_CHECK(state_steps == used_steps, where,
            "the state dict holds state for parameters this optimiser does not have (" +
                std::to_string(state_steps) + " step entries, " + std::to_string(used_steps) +
                " used)");
  MOX_CHECK(sd.tensors.size() == used_tensors, where,
            "the state dict holds " + std::to_string(sd.tensors.size()) + " tensors but " + name_ +
                " uses " + std::to_string(used_tensors) +
                " (was it saved by a different optimiser or with different options?)");

  for (size_t g = 0; g < groups_.size(); g++) {
    groups_[g].lr = lrs[g];
    groups_[g].weight_decay = wds[g];
  }
  state_ = std::move(state);
}

}  // namespace mox::optim
