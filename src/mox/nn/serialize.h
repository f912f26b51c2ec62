#pragma once
// A module's state_dict to and from a safetensors file, with PyTorch's key names, so that
// `torch.save`-free tools (safetensors.torch.save_file(model.state_dict(), path)) and mox
// read each other's weights.
#include <string>

#include "mox/io/safetensors.h"
#include "mox/nn/module.h"

namespace mox::nn {

// Writes every parameter and persistent buffer (atomically: an interrupted save leaves an
// existing file intact).
void save_state_dict(const Module& m, const std::string& path, const io::Metadata& metadata = {});

// Reads a file written by save_state_dict or by PyTorch and loads it into m (all shapes and
// dtypes are checked before anything is written). Errors name the file.
LoadResult load_state_dict(Module& m, const std::string& path, bool strict = true);

}  // namespace mox::nn
