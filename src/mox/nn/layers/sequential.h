#pragma once
// Sequential: runs its children in order, each one's output feeding the next. Children are
// named "0", "1", ... as in PyTorch, so parameters are "0.weight", "2.bias", ...
#include <initializer_list>
#include <memory>

#include "mox/nn/module.h"

namespace mox::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);

  void push_back(std::shared_ptr<Module> m);  // named by its position
  void push_back(const std::string& name, std::shared_ptr<Module> m);
  size_t size() const { return named_children().size(); }
  bool empty() const { return size() == 0; }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  // The i-th child as a concrete layer type; throws when it is another type.
  template <typename M>
  std::shared_ptr<M> at(size_t i) const {
    auto p = std::dynamic_pointer_cast<M>((*this)[i]);
    MOX_CHECK(p != nullptr, "Sequential",
              "child " + std::to_string(i) + " is a " + (*this)[i]->type_name() +
                  ", not the requested type");
    return p;
  }

  Tensor forward(const Tensor& x) override;
  // The first `end` children only (a model without its output activation), with the same
  // fusions as forward().
  Tensor forward_prefix(const Tensor& x, size_t end);
  Shape output_shape(const Shape& input) const override;
  std::string type_name() const override { return "Sequential"; }
};

}  // namespace mox::nn
