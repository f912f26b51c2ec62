#include "mox/nn/layers/sequential.h"

namespace mox::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) {
  for (const auto& m : modules) push_back(m);
}

void Sequential::push_back(std::shared_ptr<Module> m) { push_back(std::to_string(size()), m); }

void Sequential::push_back(const std::string& name, std::shared_ptr<Module> m) {
  if (m) m->train(is_training());
  add_child(name, std::move(m));
}

const std::shared_ptr<Module>& Sequential::operator[](size_t i) const {
  MOX_CHECK(i < size(), "Sequential",
            "index " + std::to_string(i) + " is out of range for " + std::to_string(size()) +
                " modules");
  return named_children().items()[i].second;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& [name, m] : named_children()) y = m->forward(y);
  return y;
}

Shape Sequential::output_shape(const Shape& input) const {
  Shape s = input;
  for (const auto& [name, m] : named_children()) {
    try {
      s = m->output_shape(s);
    } catch (const Error& e) {
      throw Error("Sequential", "layer (" + name + ") " + m->type_name() + ": " + e.detail());
    }
  }
  return s;
}

}  // namespace mox::nn
