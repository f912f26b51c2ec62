#pragma once
// One [[model.layers]] table -> the module(s) it stands for (internal to build_model).
#include <memory>
#include <string>
#include <vector>

#include "mox/io/config.h"
#include "mox/nn/module.h"

namespace mox::nn {

struct LayerFactory {
  std::string name;  // the canonical (PyTorch) type, e.g. "Linear"
  // t: the layer's table; in: the previous layer's output shape [-1, ...].
  std::vector<std::shared_ptr<Module>> (*make)(const io::ConfigTable& t, const Shape& in);
};

// The factory for a type name or alias (case-insensitive); nullptr when unknown.
const LayerFactory* find_layer_factory(const std::string& type);

// Type names as users write them, for the "unknown layer type" message.
const std::vector<std::string>& layer_type_names();

// The activation module for a shorthand name ("relu", "gelu", ...); nullptr for "linear"
// and "none". Throws naming t's `key` field on an unknown name.
std::shared_ptr<Module> make_activation(const io::ConfigTable& t, const std::string& key,
                                        const std::string& name);

}  // namespace mox::nn
