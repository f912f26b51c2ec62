#pragma once
// safetensors (https://github.com/huggingface/safetensors), the format PyTorch and
// Hugging Face models are shipped in:
//   u64 little-endian N | N bytes of JSON header | raw little-endian tensor data
// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3],
// "data_offsets": [begin, end]} (offsets relative to the start of the data) and may hold
// "__metadata__": {string: string}. Writers pad the header with spaces to a multiple of 8.
//
// Saving is atomic (temporary file + fsync + rename): an interrupted save never corrupts
// an existing file. Loading memory-maps the file (copy-on-write, so loaded tensors may be
// modified freely) and validates everything; any problem throws mox::Error naming the file.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "mox/tensor/tensor.h"

namespace mox::io {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  Metadata metadata;
  std::vector<std::string> names;  // tensor names in the order of their data in the file

  bool contains(const std::string& name) const { return tensors.count(name) != 0; }
  // The tensor called `name`; throws mox::Error naming the file and the tensor if absent.
  const Tensor& at(const std::string& name) const;
  std::string path;  // where it was loaded from, for error messages
};

// Writes the tensors' data in the given order (names must be unique and not
// "__metadata__"). Tensors may be strided views of any supported dtype on any device;
// they are copied to contiguous host memory as needed. An empty `metadata` writes no
// "__metadata__" entry (as the reference implementation does).
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata = {});
// Same, in name order.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const Metadata& metadata = {});

// Reads and validates a file: header length within the file, valid JSON, known dtypes,
// shapes of non-negative integers, data_offsets that match shape * dtype size and tile the
// data section exactly (no gaps, overlaps, or trailing bytes).
SafetensorsFile load_safetensors(const std::string& path);

// The header that save_safetensors writes for these tensors (without the 8-byte length),
// padded with spaces to a multiple of 8 bytes. Exposed for tests and tools.
std::string safetensors_header(const NamedTensors& tensors, const Metadata& metadata = {});

}  // namespace mox::io
