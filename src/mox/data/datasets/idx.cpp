#include "mox/data/datasets/idx.h"

#include <zlib.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "mox/tensor/error.h"

namespace mox::data {

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  gzbuffer(f, 1 << 17);
  std::vector<uint8_t> data;
  std::vector<uint8_t> buf(1 << 20);
  int n;
  while ((n = gzread(f, buf.data(), unsigned(buf.size()))) > 0) data.insert(data.end(), buf.data(), buf.data() + n);
  if (n < 0) {
    int code = 0;
    std::string msg = gzerror(f, &code);
    gzclose(f);
    throw Error(path, "read error: " + msg);
  }
  // A stream cut short reads as a short file; only gzclose reports it (Z_BUF_ERROR).
  if (gzclose(f) != Z_OK) throw Error(path, "truncated or corrupt gzip stream");
  return data;
}

namespace {

struct IdxType {
  DType dtype;     // how mox stores it
  int file_bytes;  // bytes per element in the file
  const char* name;
};

bool idx_type(uint8_t code, IdxType* t) {
  switch (code) {
    case 0x08: *t = {DType::U8, 1, "u8"}; return true;
    case 0x09: *t = {DType::I8, 1, "i8"}; return true;
    case 0x0B: *t = {DType::I32, 2, "i16"}; return true;
    case 0x0C: *t = {DType::I32, 4, "i32"}; return true;
    case 0x0D: *t = {DType::F32, 4, "f32"}; return true;
    case 0x0E: *t = {DType::F64, 8, "f64"}; return true;
    default: return false;
  }
}

// Big-endian unsigned integer of N bytes at p.
template <int N, typename U> U load_be(const uint8_t* p) {
  U v = 0;
  for (int i = 0; i < N; i++) v = U(v << 8) | U(p[i]);
  return v;
}

char hex_digit(int v) { return "0123456789abcdef"[v & 15]; }
std::string hex_byte(uint8_t b) { return std::string("0x") + hex_digit(b >> 4) + hex_digit(b); }

}  // namespace

Tensor read_idx(const std::string& path) {
  std::vector<uint8_t> d = read_file_bytes(path);
  if (d.size() < 4)
    throw Error(path, "truncated IDX header: file has " + std::to_string(d.size()) + " bytes, the magic number needs 4");
  IdxType type;
  if (d[0] != 0 || d[1] != 0 || !idx_type(d[2], &type))
    throw Error(path, "not an IDX file: bad magic " + hex_byte(d[0]) + " " + hex_byte(d[1]) + " " + hex_byte(d[2]) +
                          " (expected 0x00 0x00 and a type code 0x08, 0x09, 0x0b, 0x0c, 0x0d or 0x0e)");
  const size_t nd = d[3];
  const size_t header = 4 + 4 * nd;
  if (d.size() < header)
    throw Error(path, "truncated IDX header: " + std::to_string(nd) + " dims need " + std::to_string(header) +
                          " bytes, file has " + std::to_string(d.size()));
  Shape shape;
  // Byte count of the data, computed with overflow checks: a corrupt header could claim
  // 2^32 in every dim.
  uint64_t expected = uint64_t(type.file_bytes);
  bool overflow = false;
  for (size_t i = 0; i < nd; i++) {
    uint32_t s = load_be<4, uint32_t>(&d[4 + 4 * i]);
    shape.push_back(int64_t(s));
    overflow = overflow || __builtin_mul_overflow(expected, uint64_t(s), &expected);
  }
  const uint64_t found = d.size() - header;
  if (overflow || expected != found)
    throw Error(path, "data size mismatch: shape " + shape_str(shape) + " of " + type.name + " needs " +
                          (overflow ? std::string("more than 2^64") : std::to_string(expected)) +
                          " bytes, found " + std::to_string(found));

  Tensor t = empty(shape, type.dtype);
  const uint8_t* src = d.data() + header;
  const int64_t n = t.numel();
  switch (d[2]) {
    case 0x08:
    case 0x09: std::memcpy(t.raw_data(), src, size_t(n)); break;
    case 0x0B: {
      int32_t* out = t.data<int32_t>();
      for (int64_t i = 0; i < n; i++) out[i] = int16_t(load_be<2, uint16_t>(src + 2 * i));
      break;
    }
    case 0x0C: {
      int32_t* out = t.data<int32_t>();
      for (int64_t i = 0; i < n; i++) out[i] = int32_t(load_be<4, uint32_t>(src + 4 * i));
      break;
    }
    case 0x0D: {
      float* out = t.data<float>();
      for (int64_t i = 0; i < n; i++) out[i] = std::bit_cast<float>(load_be<4, uint32_t>(src + 4 * i));
      break;
    }
    case 0x0E: {
      double* out = t.data<double>();
      for (int64_t i = 0; i < n; i++) out[i] = std::bit_cast<double>(load_be<8, uint64_t>(src + 8 * i));
      break;
    }
  }
  return t;
}

std::shared_ptr<TensorDataset> load_idx_classification(const std::string& images_path,
                                                       const std::string& labels_path) {
  Tensor images = read_idx(images_path);
  Tensor labels = read_idx(labels_path);
  if (images.dtype() != DType::U8 || images.dim() != 3)
    throw Error(images_path, "expected u8 images [N, H, W], found " + images.desc());
  if (!is_integral(labels.dtype()) || labels.dim() != 1)
    throw Error(labels_path, "expected integer labels [N], found " + labels.desc());
  if (images.size(0) != labels.size(0))
    throw Error(images_path, "has " + std::to_string(images.size(0)) + " images but " + labels_path + " has " +
                                 std::to_string(labels.size(0)) + " labels");
  // u8 [N, H, W] -> f32 [N, 1, H, W] in [0, 1]
  const int64_t n = images.size(0), h = images.size(1), w = images.size(2);
  Tensor inputs = empty({n, 1, h, w}, DType::F32);
  const uint8_t* src = images.data<uint8_t>();
  float* dst = inputs.data<float>();
  const int64_t total = images.numel();
  for (int64_t i = 0; i < total; i++) dst[i] = float(src[i]) * (1.0f / 255.0f);
  return std::make_shared<TensorDataset>(inputs, labels.to(DType::I64));
}

namespace {

// dir/base.gz or dir/base, whichever exists.
std::string find_idx_file(const std::string& dir, const std::string& base) {
  for (const std::string& p : {dir + "/" + base + ".gz", dir + "/" + base}) {
    if (FILE* f = std::fopen(p.c_str(), "rb")) {
      std::fclose(f);
      return p;
    }
  }
  throw Error(dir, "missing " + base + " (or " + base + ".gz)");
}

}  // namespace

std::shared_ptr<TensorDataset> load_fashion_mnist(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string images = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  return load_idx_classification(images, labels);
}

}  // namespace mox::data
