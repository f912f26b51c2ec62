#pragma once
// The saved state of an optimiser or LR scheduler: tensors (moment buffers) plus scalars
// (step counts, learning rates, plateau counters). It travels in checkpoints as a
// safetensors file: tensors as tensors, scalars in "__metadata__" written with the
// shortest decimal form that reads back to the same double, so a resumed run is bit-exact.
#include <map>
#include <string>

#include "mox/io/safetensors.h"
#include "mox/tensor/tensor.h"

namespace mox::optim {

struct StateDict {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, double> scalars;

  // The scalar called `key`; throws mox::Error(where, ...) when it is missing.
  double scalar(const std::string& key, const std::string& where) const;
  // The tensor called `key` with the expected shape and dtype; throws mox::Error otherwise.
  const Tensor& tensor(const std::string& key, const Shape& shape, DType dtype,
                       const std::string& where) const;

  // Merges into a checkpoint: tensors become "<prefix><key>", scalars become metadata
  // entries "<prefix><key>" holding the decimal value.
  void append_to(io::NamedTensors& tensors, io::Metadata& metadata,
                 const std::string& prefix) const;
  // The inverse: picks the tensors and metadata entries that start with `prefix`.
  static StateDict extract(const io::SafetensorsFile& file, const std::string& prefix);

  void save(const std::string& path) const;  // atomic, see io::save_safetensors
  static StateDict load(const std::string& path);
};

// Shortest round-trip decimal text of a double ("0.1", "inf", "-nan" never appears).
std::string format_scalar(double v);
// Parses format_scalar's output; throws mox::Error(where, ...) on anything else.
double parse_scalar(const std::string& s, const std::string& where);

}  // namespace mox::optim
