#include "mox/autograd/node.h"

#include <atomic>

#include "mox/ops/ops.h"

namespace mox {

static thread_local bool t_grad_enabled = true;
static std::atomic<uint64_t> g_node_seq{0};

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }
EnableGradGuard::EnableGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { t_grad_enabled = prev_; }

std::vector<Tensor> AccumulateGrad::apply(const std::vector<Tensor>& grads) {
  const Tensor& g = grads[0];
  if (!g.defined()) return {};
  if (!leaf_->grad) {
    // .grad must own its memory (optimisers and clipping write into it in place): take g
    // when nothing else refers to it, else copy it.
    bool sole_owner = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 &&
                      g.is_contiguous() && g.offset() == 0 &&
                      size_t(g.numel()) * g.element_size() == g.storage()->nbytes();
    bool right_dtype = g.dtype() == leaf_->dtype;
    if (sole_owner && right_dtype)
      leaf_->grad = g.impl_ptr();
    else
      leaf_->grad = g.to(leaf_->dtype).clone().impl_ptr();
  } else {
    Tensor acc(leaf_->grad);
    acc.add_(g);
  }
  return {};
}

std::vector<Tensor> FunctionNode::apply(const std::vector<Tensor>& grads) {
  if (!fn_)
    throw Error(name_, "trying to backward through the graph a second time (its saved tensors "
                       "were freed); pass retain_graph=true to the first backward");
  return fn_(grads[0]);
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  TensorImpl* impl = t.impl();
  if (impl->grad_fn) return {impl->grad_fn, impl->output_nr, t.dtype()};
  auto acc = impl->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    acc->seq = g_node_seq++;
    impl->grad_accumulator = acc;
  }
  return {acc, 0, t.dtype()};
}

static void connect(std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs) {
  node->seq = g_node_seq++;
  node->next.reserve(inputs.size());
  for (const Tensor& in : inputs) node->next.push_back(gradient_edge(in));
}

void record(const Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (!any_requires_grad(inputs)) return;
  std::shared_ptr<Node> node = std::make_shared<FunctionNode>(name, std::move(fn));
  connect(node, inputs);
  TensorImpl* o = out.impl();
  o->grad_fn = std::move(node);
  o->output_nr = 0;
  o->requires_grad = true;
}

void record_multi(const std::vector<Tensor>& outs, std::shared_ptr<Node> node,
                  const std::vector<Tensor>& inputs) {
  if (!any_requires_grad(inputs)) return;
  connect(node, inputs);
  for (size_t i = 0; i < outs.size(); i++) {
    if (!outs[i].defined()) continue;
    outs[i].impl()->grad_fn = node;
    outs[i].impl()->output_nr = uint32_t(i);
    outs[i].impl()->requires_grad = true;
  }
}

}  // namespace mox
