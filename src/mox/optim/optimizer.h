#pragma once
// Optimiser base: parameter groups, per-parameter state, save/restore.
//
// Like PyTorch: an optimiser holds parameter groups (each with its own lr and
// weight_decay); step() updates every parameter that has a .grad (parameters without one
// are skipped and their step count does not advance); zero_grad() resets the .grads.
// Options use the LibTorch builder style: Adam(params, AdamOptions(1e-3).betas(0.9, 0.98)).
//
// state_dict() holds everything that step() reads and writes (per-group lr and
// weight_decay, per-parameter step counts and buffers), so that restoring it into an
// optimiser built over the same parameters continues bit-exactly. Keys:
//   scalars  group.<g>.lr, group.<g>.weight_decay, group.<g>.num_params, state.<i>.step
//   tensors  state.<i>.<buffer>          (i: index of the parameter over all groups in order)
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mox/optim/state_dict.h"
#include "mox/util/arg.h"
#include "mox/tensor/tensor.h"

namespace mox::optim {


// A group of parameters sharing a learning rate and weight decay; an unset option takes
// the optimiser's default. ParamGroup{.params = no_decay, .weight_decay = 0.0}
struct ParamGroup {
  std::vector<Tensor> params;
  std::optional<double> lr;
  std::optional<double> weight_decay;
};

// The usual split for AdamW on Transformers: weight decay on the matrices and embeddings
// (dim >= 2), none on biases and norm weights (dim < 2). {decayed group, undecayed group}.
std::vector<ParamGroup> weight_decay_groups(const std::vector<Tensor>& params, double weight_decay);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter with a gradient. Runs without recording autograd.
  void step();
  // Resets every parameter's .grad (to undefined, so the next backward writes it fresh).
  void zero_grad();

  // Learning rate of the first group / of every group.
  double lr() const;
  void set_lr(double lr);
  size_t num_groups() const { return groups_.size(); }
  double group_lr(size_t g) const;
  void set_group_lr(size_t g, double lr);
  double group_weight_decay(size_t g) const;
  const std::vector<Tensor>& group_params(size_t g) const;
  // All parameters, in group order (the indices used by state_dict).
  std::vector<Tensor> params() const;
  // Adds a group after construction; unset options take the optimiser's defaults.
  void add_param_group(ParamGroup group);

  const std::string& name() const { return name_; }
  // Number of step() calls that updated parameter i (0 before its first gradient).
  int64_t param_step(size_t i) const;

  // The buffers are the live tensors (as in PyTorch): save them before the next step(), or
  // clone them to keep a snapshot.
  StateDict state_dict() const;
  // Restores a state_dict() taken from an optimiser of the same kind over parameters of the
  // same shapes; throws mox::Error naming the mismatch (and changes nothing) otherwise.
  void load_state_dict(const StateDict& sd);

 protected:
  struct Group {
    std::vector<Tensor> params;
    double lr = 0, weight_decay = 0;
  };
  struct ParamState {
    int64_t step = 0;                      // updates applied so far
    std::map<std::string, Tensor> buffers;  // moment buffers etc., shaped like the param
  };

  Optimizer(std::string name, std::vector<ParamGroup> groups, double default_lr,
            double default_weight_decay);

  // Updates one parameter in place. `param` is the parameter itself (grad mode is off),
  // `grad` its gradient (same shape and dtype); st.step has already been incremented.
  virtual void update(const Tensor& param, const Tensor& grad, ParamState& st,
                      const Group& group) = 0;
  // One parameter to update in a step: its gradient (shape and dtype checked), its state
  // (step already incremented) and its group.
  struct Slot {
    Tensor param, grad;
    ParamState* state;
    const Group* group;
  };
  // Updates every parameter that has a gradient, over all groups; the default calls update()
  // for each. Adam overrides it to update them all in one backend call (one launch on a GPU).
  virtual void update_many(const std::vector<Slot>& slots);
  // Buffers a parameter's state must hold once it has stepped (checked by load_state_dict).
  virtual std::vector<std::string> state_buffers() const = 0;

  void check_lr(double lr) const;

  std::string name_;
  double default_lr_, default_weight_decay_;
  std::vector<Group> groups_;
  std::vector<ParamState> state_;  // one per parameter, in group order
};

// Turns a flat parameter list into one group with the optimiser's defaults.
std::vector<ParamGroup> single_group(std::vector<Tensor> params);

}  // namespace mox::optim
