#include "mox/nn/layers/sequential.h"

#include <typeinfo>

#include "mox/nn/layers/activation.h"
#include "mox/nn/layers/conv2d.h"
#include "mox/nn/layers/max_pool2d.h"

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

// A Conv2d directly followed by a ReLU runs as one fused op (Conv2d::forward_relu): the
// ReLU is applied while the convolution's output is in cache, and its backward is folded
// into the convolution's; followed also by MaxPool2d(2) (2x2, stride 2), the three run as
// conv2d_relu_maxpool2. The result and gradients are those of the separate modules.
Tensor Sequential::forward(const Tensor& x) { return forward_prefix(x, size()); }

Tensor Sequential::forward_prefix(const Tensor& x, size_t end) {
  Tensor y = x;
  const auto& items = named_children().items();
  MOX_CHECK(end <= items.size(), "Sequential",
            "prefix of " + std::to_string(end) + " modules out of " + std::to_string(items.size()));
  for (size_t i = 0; i < end; i++) {
    Module* m = items[i].second.get();
    if (auto* conv = dynamic_cast<Conv2d*>(m);
        conv && i + 1 < end && typeid(*items[i + 1].second) == typeid(ReLU)) {
      // ... and with a following 2x2 stride-2 max pooling, one op for the three
      const Module* next = i + 2 < end ? items[i + 2].second.get() : nullptr;
      if (next && typeid(*next) == typeid(MaxPool2d)) {
        const Pool2dParams& pp = static_cast<const MaxPool2d*>(next)->params;
        if (pp.kh == 2 && pp.kw == 2 && pp.stride_h == 2 && pp.stride_w == 2 && pp.pad_h == 0 &&
            pp.pad_w == 0 && !pp.ceil_mode) {
          next->output_shape(conv->output_shape(y.shape()));  // the pooling's own checks
          y = conv->forward_relu_pool2(y);
          i += 2;
          continue;
        }
      }
      y = conv->forward_relu(y);
      i++;
      continue;
    }
    y = m->forward(y);
  }
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
