#include "mox/nn/models/build_model.h"

#include "mox/nn/models/layer_factory.h"

namespace mox::nn {

Shape model_input_shape(const io::ModelConfig& config) {
  Shape s{-1};
  s.insert(s.end(), config.input_shape.begin(), config.input_shape.end());
  return s;
}

std::string format_shape(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); i++) {
    if (i) out += ", ";
    out += s[i] < 0 ? "None" : std::to_string(s[i]);
  }
  if (s.size() == 1) out += ",";  // a 1-tuple, as Python writes it
  return out + ")";
}

const std::vector<std::string>& known_layer_types() { return layer_type_names(); }

namespace {

std::string type_list() {
  std::string s;
  for (const std::string& n : layer_type_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// Layers report problems as Error("Conv2d", ...); in a config they belong to a layer table.
[[noreturn]] void rethrow_in(const io::ConfigTable& t, const std::string& type, const Error& e) {
  if (e.where() == t.file()) throw e;  // already names the file and field
  throw t.error("", type + ": " + e.detail());
}

}  // namespace

std::shared_ptr<Sequential> build_model(const io::ModelConfig& config) {
  auto model = std::make_shared<Sequential>();
  Shape shape = model_input_shape(config);
  for (const auto& layer : config.layers) {
    const io::ConfigTable& t = *layer;
    std::string type = t.get_string("type");
    const LayerFactory* f = find_layer_factory(type);
    if (!f) throw t.error("type", "unknown layer type \"" + type + "\" (known: " + type_list() + ")");
    std::vector<std::shared_ptr<Module>> mods;
    try {
      mods = f->make(t, shape);
    } catch (const Error& e) {
      rethrow_in(t, f->name, e);
    }
    t.check_no_unknown_keys(type);
    for (const auto& m : mods) {
      try {
        shape = m->output_shape(shape);
      } catch (const Error& e) {
        rethrow_in(t, m->type_name(), e);
      }
      model->push_back(m);
    }
  }
  return model;
}

}  // namespace mox::nn
