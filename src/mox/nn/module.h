#pragma once
// Module: the base of every layer and model, shaped after PyTorch's C++ frontend.
// A module owns named parameters (leaf tensors that require grad), named buffers (state
// that is not trained, such as BatchNorm's running statistics) and named child modules.
// Names compose with dots ("0.weight", "encoder.lstm.weight_ih_l0"), in registration
// order, so that state_dict() has PyTorch's keys and layouts and a checkpoint written by
// PyTorch loads into the equivalent mox model.
//
// A "Parameter" is just a Tensor with requires_grad set; layers keep the handle returned
// by register_parameter. to(DType) and load_state_dict() change the tensors in place (the
// handles stay valid), as PyTorch does with param.data.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mox/nn/ordered_dict.h"
#include "mox/tensor/tensor.h"

namespace mox::nn {

using StateDict = OrderedDict<Tensor>;

// Keys that load_state_dict(strict=false) skipped.
struct LoadResult {
  std::vector<std::string> missing_keys;     // in the module, absent from the state dict
  std::vector<std::string> unexpected_keys;  // in the state dict, absent from the module
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Modules are shared through std::shared_ptr; a copy would silently share parameters.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- registration (names: non-empty, no '.', unique within this module) ----
  // Makes t a leaf parameter (detached if it has history) and returns the handle to keep.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  // Non-persistent buffers are left out of state_dict (like PyTorch's persistent=False).
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  // Swaps the child registered as name (e.g. a Linear for a quantised Linear).
  void replace_module(const std::string& name, std::shared_ptr<Module> m);

  // ---- traversal ----
  std::vector<Tensor> parameters(bool recurse = true) const;
  OrderedDict<Tensor> named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  OrderedDict<Tensor> named_buffers(bool recurse = true) const;
  std::vector<std::shared_ptr<Module>> children() const;
  const OrderedDict<std::shared_ptr<Module>>& named_children() const { return children_; }
  // This module (name "") and every descendant, depth first, with dotted names.
  std::vector<std::pair<std::string, Module*>> named_modules();
  // Calls fn on this module and every descendant (parents before children).
  void apply(const std::function<void(Module&)>& fn);

  // ---- modes and gradients ----
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();                    // drops .grad of every parameter
  void requires_grad_(bool on = true);  // freezes (false) or unfreezes every parameter

  // ---- state ----
  // Parameters and persistent buffers with dotted names (detached handles sharing storage).
  StateDict state_dict() const;
  // Copies values into the module's tensors. Every shape and dtype is checked before any
  // tensor is written, so a failed load leaves the module unchanged. strict: missing or
  // unexpected keys are an error; otherwise they are returned.
  LoadResult load_state_dict(const StateDict& sd, bool strict = true);
  // Converts floating-point parameters, buffers and gradients (integer buffers such as
  // num_batches_tracked keep their dtype, as in PyTorch).
  Module& to(DType dtype);
  Module& to(Device device);
  int64_t num_parameters(bool trainable_only = false) const;

  // ---- computation ----
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  // Shape of forward's result for an input of this shape, computed without running the
  // layer; a batch dim may be -1 (unknown) and stays -1. Throws mox::Error on a shape the
  // layer would reject.
  virtual Shape output_shape(const Shape& input) const;

  // ---- printing ----
  virtual std::string type_name() const { return "Module"; }
  virtual std::string extra_repr() const { return ""; }
  // PyTorch-style tree: "Sequential(\n  (0): Linear(in_features=4, ...)\n)".
  std::string repr() const;

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> m);

 private:
  void check_new_name(const std::string& name, const char* what) const;
  void collect_named(std::vector<std::pair<std::string, Module*>>& out, const std::string& prefix);
  void collect_state(StateDict& out, const std::string& prefix) const;
  void collect_params(OrderedDict<Tensor>& out, const std::string& prefix, bool recurse) const;
  void collect_buffers(OrderedDict<Tensor>& out, const std::string& prefix, bool recurse,
                       bool persistent_only) const;

  OrderedDict<Tensor> params_;
  OrderedDict<Tensor> buffers_;
  std::vector<std::string> non_persistent_;
  OrderedDict<std::shared_ptr<Module>> children_;
  bool training_ = true;
};

}  // namespace mox::nn
