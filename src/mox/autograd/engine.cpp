// The backward engine: topological order by dependency counts, gradients summed per
// (node, output) buffer, nodes run newest-first among the ready ones, graph freed after.
#include <map>
#include <queue>
#include <unordered_map>

#include "mox/autograd/node.h"
#include "mox/ops/ops.h"

namespace mox {

namespace {

struct NodeState {
  int deps = 0;
  std::vector<Tensor> buffer;
};

void accumulate(std::vector<Tensor>& buffer, uint32_t slot, const Tensor& g) {
  if (buffer.size() <= slot) buffer.resize(slot + 1);
  if (!buffer[slot].defined())
    buffer[slot] = g;
  else
    buffer[slot] = add(buffer[slot], g);
}

// Captures for grad(): (node, slot) -> index into results.
using CaptureMap = std::map<std::pair<Node*, uint32_t>, size_t>;

void execute(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
             bool retain_graph, const CaptureMap* captures, std::vector<Tensor>* captured) {
  NoGradGuard no_grad;
  std::unordered_map<Node*, NodeState> state;
  std::vector<Node*> stack;
  std::vector<std::shared_ptr<Node>> keep;  // roots' nodes stay alive while we run

  for (size_t i = 0; i < roots.size(); i++) {
    Edge e = gradient_edge(roots[i]);
    if (!e.node) continue;
    keep.push_back(e.node);
    if (!state.count(e.node.get())) {
      state[e.node.get()];
      stack.push_back(e.node.get());
    }
  }
  // Count, for every reachable node, how many edges point at it.
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (captures && dynamic_cast<AccumulateGrad*>(n)) continue;  // grad(): leaves are not run
    for (const Edge& e : n->next) {
      if (!e.node) continue;
      auto [it, fresh] = state.try_emplace(e.node.get());
      it->second.deps++;
      if (fresh) stack.push_back(e.node.get());
    }
  }
  for (size_t i = 0; i < roots.size(); i++) {
    Edge e = gradient_edge(roots[i]);
    if (e.node) accumulate(state[e.node.get()].buffer, e.input_nr, grads[i]);
  }

  auto newer = [](Node* a, Node* b) { return a->seq < b->seq; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(newer)> ready(newer);
  for (auto& [n, st] : state)
    if (st.deps == 0) ready.push(n);

  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    NodeState& st = state[n];
    st.buffer.resize(n->num_outputs());
    if (captures) {
      bool only_capture = dynamic_cast<AccumulateGrad*>(n) != nullptr;
      for (uint32_t s = 0; s < st.buffer.size(); s++) {
        auto it = captures->find({n, s});
        if (it != captures->end() && st.buffer[s].defined()) {
          Tensor& slot = (*captured)[it->second];
          slot = slot.defined() ? add(slot, st.buffer[s]) : st.buffer[s];
        }
      }
      if (only_capture) continue;
    }
    std::vector<Tensor> in_grads = n->apply(st.buffer);
    st.buffer.clear();
    if (!retain_graph) {
      n->release();
      n->released = true;
    }
    if (in_grads.size() > n->next.size())
      throw Error(n->name(), "backward returned more gradients than the op has inputs");
    for (size_t i = 0; i < n->next.size(); i++) {
      const Edge& e = n->next[i];
      if (!e.node) continue;
      if (captures && !state.count(e.node.get())) continue;
      NodeState& dst = state[e.node.get()];
      if (i < in_grads.size() && in_grads[i].defined()) {
        Tensor g = in_grads[i];
        if (g.dtype() != e.dtype && is_floating(g.dtype()) && is_floating(e.dtype)) g = g.to(e.dtype);
        accumulate(dst.buffer, e.input_nr, g);
      }
      if (--dst.deps == 0) ready.push(e.node.get());
    }
  }
}

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
  std::vector<Tensor> gs(roots.size());
  for (size_t i = 0; i < roots.size(); i++) {
    const Tensor& r = roots[i];
    if (!r.requires_grad())
      throw Error("backward", "tensor " + r.desc() + " does not require grad and has no grad_fn");
    if (i < grads.size() && grads[i].defined()) {
      if (grads[i].shape() != r.shape())
        throw Error("backward", "gradient shape " + shape_str(grads[i].shape()) +
                                    " does not match tensor shape " + shape_str(r.shape()));
      gs[i] = grads[i];
    } else {
      if (r.numel() != 1)
        throw Error("backward", "grad can be implicitly created only for scalar outputs, got " +
                                    r.desc());
      gs[i] = ones_like(r);
    }
  }
  execute(roots, gs, retain_graph, nullptr, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph) {
  std::vector<Tensor> gs(outputs.size());
  for (size_t i = 0; i < outputs.size(); i++) {
    if (!outputs[i].requires_grad())
      throw Error("grad", "output " + std::to_string(i) + " does not require grad");
    gs[i] = i < grad_outputs.size() && grad_outputs[i].defined() ? grad_outputs[i]
                                                                 : ones_like(outputs[i]);
  }
  CaptureMap captures;
  std::vector<std::shared_ptr<Node>> keep;
  for (size_t i = 0; i < inputs.size(); i++) {
    Edge e = gradient_edge(inputs[i]);
    if (!e.node) throw Error("grad", "input " + std::to_string(i) + " does not require grad");
    keep.push_back(e.node);
    captures[{e.node.get(), e.input_nr}] = i;
  }
  std::vector<Tensor> result(inputs.size());
  execute(outputs, gs, retain_graph, &captures, &result);
  for (size_t i = 0; i < inputs.size(); i++)
    if (!result[i].defined()) result[i] = zeros_like(inputs[i]);
  return result;
}

void Tensor::backward(const Tensor& g, bool retain_graph) const {
  run_backward({*this}, {g}, retain_graph);
}

}  // namespace mox
