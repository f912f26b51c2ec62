#include "mox/optim/state_dict.h"

#include <charconv>
#include <cmath>

#include "mox/tensor/error.h"

namespace mox::optim {

std::string format_scalar(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);  // shortest form that round-trips
  return std::string(buf, r.ptr);
}

double parse_scalar(const std::string& s, const std::string& where) {
  if (s == "nan") return std::nan("");
  if (s == "inf") return INFINITY;
  if (s == "-inf") return -INFINITY;
  double v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);  // locale-independent
  if (r.ec != std::errc() || r.ptr != s.data() + s.size())
    throw Error(where, "'" + s + "' is not a number");
  return v;
}

double StateDict::scalar(const std::string& key, const std::string& where) const {
  auto it = scalars.find(key);
  if (it == scalars.end()) throw Error(where, "state dict has no entry '" + key + "'");
  return it->second;
}

const Tensor& StateDict::tensor(const std::string& key, const Shape& shape, DType dtype,
                                const std::string& where) const {
  auto it = tensors.find(key);
  if (it == tensors.end()) throw Error(where, "state dict has no tensor '" + key + "'");
  const Tensor& t = it->second;
  if (t.shape() != shape || t.dtype() != dtype)
    throw Error(where, "tensor '" + key + "' is " + t.desc() + ", expected " +
                           dtype_name(dtype) + shape_str(shape));
  return t;
}

void StateDict::append_to(io::NamedTensors& out_tensors, io::Metadata& metadata,
                          const std::string& prefix) const {
  for (const auto& [k, t] : tensors) out_tensors.emplace_back(prefix + k, t);
  for (const auto& [k, v] : scalars) metadata[prefix + k] = format_scalar(v);
}

StateDict StateDict::extract(const io::SafetensorsFile& file, const std::string& prefix) {
  StateDict sd;
  auto strip = [&](const std::string& k) -> const char* {
    return k.compare(0, prefix.size(), prefix) == 0 ? k.c_str() + prefix.size() : nullptr;
  };
  for (const auto& [k, t] : file.tensors)
    if (const char* rest = strip(k)) sd.tensors[rest] = t;
  for (const auto& [k, v] : file.metadata)
    if (const char* rest = strip(k)) sd.scalars[rest] = parse_scalar(v, file.path + ": " + k);
  return sd;
}

void StateDict::save(const std::string& path) const {
  io::NamedTensors t;
  io::Metadata m;
  append_to(t, m, "");
  io::save_safetensors(path, t, m);
}

StateDict StateDict::load(const std::string& path) {
  return extract(io::load_safetensors(path), "");
}

}  // namespace mox::optim
