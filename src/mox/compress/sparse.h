#pragma once
// Sparse weights stored compactly in a safetensors file (for models pruned by nn/prune.h).
//
// Format: an ordinary safetensors file (io/safetensors.h) in which every floating tensor
// `<key>` of the state dict with at least min_sparsity zeros (zeros / numel, +0 and -0 both
// count) is replaced by two tensors:
//   <key>.sparse_values  1-D, the tensor's dtype: its nonzero elements in row-major order;
//   <key>.sparse_mask    1-D U8 of ceil(numel / 8) bytes: bit i (byte i / 8, bit i % 8, LSB
//                        first) set = element i is nonzero; bits past numel are 0;
// and the file's metadata holds "sparse.<key>" = "[d0,d1,...]" (its shape; "[]" for a
// scalar). Other tensors (integer buffers, dense floating tensors, empty tensors) are stored
// as usual, in state-dict order; a sparse pair sits where its tensor would. A zero is stored
// as +0 (-0 reads back as +0); NaN and infinities are nonzero and kept. Size per sparse
// element: (1 - sparsity) * dtype size + 1/8 byte (80% sparse f32: 0.925 B vs 4 B).
//
// Saving is atomic (io::save_safetensors: temporary file, fsync, rename). Reading expands
// each pair back to the dense tensor; a plain safetensors file (nn::save_state_dict,
// PyTorch) reads as is. A corrupt pair (mask not U8 of ceil(numel / 8) bytes, set bits past
// numel, popcount != number of values, values not 1-D floating, a missing half, a metadata
// shape that does not parse, a half without its metadata entry, a dense tensor of the same
// key) is one mox::Error naming the file and the key.
#include <string>

#include "mox/io/safetensors.h"
#include "mox/nn/module.h"

namespace mox::compress {

// min_sparsity in [0, 1]; meta's own keys must not start with "sparse.".
void save_sparse_state_dict(const nn::Module& m, const std::string& path, const io::Metadata& meta = {},
                            double min_sparsity = 0.5);

// The dense state dict of a sparse or a normal safetensors file (host tensors, file order).
nn::StateDict read_state_dict_any(const std::string& path);

// read_state_dict_any + m.load_state_dict (errors name the file).
nn::LoadResult load_state_dict_any(nn::Module& m, const std::string& path, bool strict = true);

}  // namespace mox::compress
