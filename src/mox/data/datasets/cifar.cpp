#include "mox/data/datasets/cifar.h"

#include <cstring>

#include "mox/data/datasets/idx.h"
#include "mox/tensor/error.h"

namespace mox::data {

namespace {
constexpr int64_t kPixels = 3 * 32 * 32;   // one image, CHW
constexpr int64_t kRecord = 1 + kPixels;  // label byte + image
}  // namespace

std::shared_ptr<TensorDataset> load_cifar10(const std::vector<std::string>& batch_files) {
  if (batch_files.empty()) throw Error("load_cifar10", "no batch files given");
  // Read every file first so that the output is allocated once with its final size.
  std::vector<std::vector<uint8_t>> files;
  int64_t n = 0;
  for (const std::string& path : batch_files) {
    files.push_back(read_file_bytes(path));
    const int64_t size = int64_t(files.back().size());
    if (size == 0 || size % kRecord != 0)
      throw Error(path, "size " + std::to_string(size) + " bytes is not a positive multiple of the CIFAR-10 record size " +
                            std::to_string(kRecord) + " (1 label byte + 3x32x32 pixels)");
    n += size / kRecord;
  }
  // records (n, 1 + 3072) u8 -> inputs (n, 3, 32, 32) f32, targets (n) i64
  Tensor inputs = empty({n, 3, 32, 32}, DType::F32);
  Tensor targets = empty({n}, DType::I64);
  float* x = inputs.data<float>();
  int64_t* y = targets.data<int64_t>();
  int64_t row = 0;
  for (size_t f = 0; f < files.size(); f++) {
    const std::vector<uint8_t>& d = files[f];
    const int64_t records = int64_t(d.size()) / kRecord;
    for (int64_t r = 0; r < records; r++, row++) {
      const uint8_t* rec = d.data() + r * kRecord;
      if (rec[0] > 9)
        throw Error(batch_files[f], "record " + std::to_string(r) + ": label " + std::to_string(rec[0]) +
                                        " is not a CIFAR-10 class (0..9)");
      y[row] = rec[0];
      float* out = x + row * kPixels;
      for (int64_t i = 0; i < kPixels; i++) out[i] = float(rec[1 + i]) * (1.0f / 255.0f);
    }
  }
  return std::make_shared<TensorDataset>(inputs, targets);
}

}  // namespace mox::data
