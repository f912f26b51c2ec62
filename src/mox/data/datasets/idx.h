#pragma once
// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed:
//   magic: 0x00 0x00 <type> <ndim>, then ndim big-endian u32 sizes, then the data, big-endian.
// Type codes: 0x08 u8, 0x09 i8, 0x0B i16 (read as i32: mox has no i16), 0x0C i32,
// 0x0D f32, 0x0E f64.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mox/data/dataset.h"
#include "mox/tensor/tensor.h"

namespace mox::data {

// The whole content of a file; gzip files are decompressed (zlib reads plain files as they
// are). Throws mox::Error(path, ...) when the file cannot be opened or read.
std::vector<uint8_t> read_file_bytes(const std::string& path);

// One IDX file as a tensor of its stored shape (dtype: u8, i8, i32, f32 or f64).
Tensor read_idx(const std::string& path);

// An image file (u8 [N, H, W]) and a label file (integer [N]) as a classification set:
// inputs f32 [N, 1, H, W] scaled to [0, 1], targets i64 [N].
std::shared_ptr<TensorDataset> load_idx_classification(const std::string& images_path,
                                                       const std::string& labels_path);

// Fashion-MNIST (or MNIST: same file names) from `dir`: the train-* (60k) or t10k-* (10k)
// images and labels, each found with or without a .gz suffix.
std::shared_ptr<TensorDataset> load_fashion_mnist(
    const std::string& dir = "/usr/share/datasets/fashion-mnist", bool train = true);

}  // namespace mox::data
