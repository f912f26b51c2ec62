#pragma once
// The autograd graph: each differentiable op's result points to a Node that knows its
// inputs' nodes (edges) and how to turn output gradients into input gradients.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mox/tensor/tensor.h"

namespace mox {

struct Edge {
  std::shared_ptr<Node> node;  // null: that input needs no gradient
  uint32_t input_nr = 0;       // which output of `node` this edge feeds
  // The input's dtype: a gradient flows back in it (as in PyTorch), so that an op that
  // promoted bf16 to f32 hands its bf16 input a bf16 gradient.
  DType dtype = DType::F32;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  virtual ~Node() = default;
  virtual std::string name() const = 0;
  // Gradients with respect to each input (one per edge; undefined where not needed).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) = 0;
  // Drops saved tensors once backward has run (the graph is freed after backward).
  virtual void release() {}
  virtual uint32_t num_outputs() const { return 1; }

  std::vector<Edge> next;
  bool released = false;
  uint64_t seq = 0;  // creation order, for a deterministic traversal
};

// Gradients flow into a leaf tensor here (adds into .grad).
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::string name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override;
  const std::shared_ptr<TensorImpl>& leaf() const { return leaf_; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// A node whose backward is a closure; most ops use this.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
class FunctionNode : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::string name() const override { return name_; }
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override;
  void release() override { fn_ = nullptr; }

 private:
  std::string name_;
  BackwardFn fn_;
};

// ---- grad mode ----
bool grad_enabled();
class NoGradGuard {  // like torch.no_grad(): ops inside record no graph
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// ---- helpers for op authors ----
// True when grad mode is on and any input requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);
// The edge that a gradient for tensor t should follow (its grad_fn, or its leaf accumulator).
Edge gradient_edge(const Tensor& t);
// Connects `out` to a FunctionNode computing input gradients with `fn`, if needed.
// `fn` must not capture `out` itself (use out.detach()), or the graph would never be freed.
void record(const Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn);
// Same for an op with several differentiable outputs sharing one node.
void record_multi(const std::vector<Tensor>& outs, std::shared_ptr<Node> node,
                  const std::vector<Tensor>& inputs);

// Runs backward from roots with the given gradients (engine.cpp).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph);

// Gradients of outputs w.r.t. inputs without touching .grad (like torch.autograd.grad).
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false);

}  // namespace mox
