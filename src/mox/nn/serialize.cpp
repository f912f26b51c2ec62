#include "mox/nn/serialize.h"

namespace mox::nn {

void save_state_dict(const Module& m, const std::string& path, const io::Metadata& metadata) {
  StateDict sd = m.state_dict();
  io::save_safetensors(path, io::NamedTensors(sd.items().begin(), sd.items().end()), metadata);
}

LoadResult load_state_dict(Module& m, const std::string& path, bool strict) {
  io::SafetensorsFile f = io::load_safetensors(path);
  StateDict sd;
  for (const std::string& name : f.names) sd.insert(name, f.tensors.at(name));
  try {
    return m.load_state_dict(sd, strict);
  } catch (const Error& e) {
    throw Error(path, e.what());
  }
}

}  // namespace mox::nn
