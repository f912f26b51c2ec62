#pragma once
// CIFAR-10 in its binary distribution (data_batch_1.bin ... data_batch_5.bin, test_batch.bin):
// each record is 1 label byte (0..9) then 3072 pixel bytes: 1024 R, 1024 G, 1024 B, each a
// row-major 32x32 plane, i.e. already CHW.
#include <memory>
#include <string>
#include <vector>

#include "mox/data/dataset.h"

namespace mox::data {

// The records of all `batch_files` in order: inputs f32 [N, 3, 32, 32] in [0, 1],
// targets i64 [N]. Files may be gzip-compressed.
std::shared_ptr<TensorDataset> load_cifar10(const std::vector<std::string>& batch_files);

}  // namespace mox::data
