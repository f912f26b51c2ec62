#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "error_of.h"
#include "mox/data/datasets/idx.h"
#include "mox/mox.h"

using namespace mox;

namespace {

std::string tmp(const std::string& name) { return ::testing::TempDir() + "mox_idx_" + name; }

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
  gzclose(f);
}

void put_be(std::vector<uint8_t>& out, uint64_t v, int nbytes) {
  for (int i = nbytes - 1; i >= 0; i--) out.push_back(uint8_t(v >> (8 * i)));
}

// An IDX file: magic, dims, then `payload` (already big-endian).
std::vector<uint8_t> idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> b = {0, 0, type, uint8_t(dims.size())};
  for (uint32_t d : dims) put_be(b, d, 4);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

}  // namespace

TEST(Idx, ReadsU8AndI8) {
  std::string p = tmp("u8.idx");
  write_bytes(p, idx_bytes(0x08, {2, 3}, {0, 1, 2, 253, 254, 255}));
  Tensor t = data::read_idx(p);
  EXPECT_EQ(t.dtype(), DType::U8);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 253, 254, 255}));

  write_bytes(p, idx_bytes(0x09, {3}, {0x80, 0xff, 0x7f}));
  t = data::read_idx(p);
  EXPECT_EQ(t.dtype(), DType::I8);
  EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{-128, -1, 127}));
}

TEST(Idx, ReadsBigEndianIntegers) {
  std::string p = tmp("int.idx");
  std::vector<uint8_t> payload;
  for (int16_t v : {int16_t(-2), int16_t(300), int16_t(-32768)}) put_be(payload, uint16_t(v), 2);
  write_bytes(p, idx_bytes(0x0B, {3}, payload));
  Tensor t = data::read_idx(p);
  EXPECT_EQ(t.dtype(), DType::I32);  // i16 widens: mox has no i16
  EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{-2, 300, -32768}));

  payload.clear();
  for (int32_t v : {-70000, 1, 2000000000, 0}) put_be(payload, uint32_t(v), 4);
  write_bytes(p, idx_bytes(0x0C, {2, 1, 2}, payload));
  t = data::read_idx(p);
  EXPECT_EQ(t.dtype(), DType::I32);
  EXPECT_EQ(t.shape(), (Shape{2, 1, 2}));
  EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{-70000, 1, 2000000000, 0}));
}

TEST(Idx, ReadsBigEndianFloats) {
  std::string p = tmp("float.idx");
  std::vector<uint8_t> payload;
  for (float v : {1.5f, -0.25f, 3e-8f}) put_be(payload, std::bit_cast<uint32_t>(v), 4);
  write_bytes(p, idx_bytes(0x0D, {3}, payload));
  Tensor t = data::read_idx(p);
  EXPECT_EQ(t.dtype(), DType::F32);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1.5f, -0.25f, 3e-8f}));

  payload.clear();
  for (double v : {0.1, -1e300}) put_be(payload, std::bit_cast<uint64_t>(v), 8);
  write_bytes(p, idx_bytes(0x0E, {1, 2}, payload));
  t = data::read_idx(p);
  EXPECT_EQ(t.dtype(), DType::F64);
  EXPECT_EQ(t.to_vector<double>(), (std::vector<double>{0.1, -1e300}));
}

TEST(Idx, ReadsGzip) {
  std::string p = tmp("gz.idx.gz");
  std::vector<uint8_t> payload(4 * 5 * 6);
  for (size_t i = 0; i < payload.size(); i++) payload[i] = uint8_t(i * 7);
  write_gz(p, idx_bytes(0x08, {4, 5, 6}, payload));
  Tensor t = data::read_idx(p);
  EXPECT_EQ(t.shape(), (Shape{4, 5, 6}));
  std::vector<int64_t> got = t.to_vector<int64_t>();
  for (size_t i = 0; i < payload.size(); i++) ASSERT_EQ(got[i], payload[i]) << i;
}

TEST(Idx, Errors) {
  std::string missing = tmp("does-not-exist.idx");
  std::string msg = error_of([&] { data::read_idx(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;

  std::string p = tmp("bad.idx");
  write_bytes(p, {0, 0, 0x07, 1, 0, 0, 0, 1, 5});  // unknown type code
  msg = error_of([&] { data::read_idx(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad magic"), std::string::npos) << msg;
  write_bytes(p, {1, 0, 0x08, 1, 0, 0, 0, 1, 5});  // first byte not zero
  EXPECT_NE(error_of([&] { data::read_idx(p); }).find("bad magic"), std::string::npos);

  write_bytes(p, {0, 0});
  msg = error_of([&] { data::read_idx(p); });
  EXPECT_NE(msg.find(p + ": truncated"), std::string::npos) << msg;
  write_bytes(p, {0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0});  // 3 dims need 16 header bytes
  msg = error_of([&] { data::read_idx(p); });
  EXPECT_NE(msg.find(p + ": truncated IDX header"), std::string::npos) << msg;

  write_bytes(p, idx_bytes(0x0C, {2, 2}, std::vector<uint8_t>(15)));  // needs 16 bytes
  msg = error_of([&] { data::read_idx(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs 16 bytes, found 15"), std::string::npos) << msg;
  write_bytes(p, idx_bytes(0x08, {2}, {1, 2, 3}));  // trailing byte
  EXPECT_NE(error_of([&] { data::read_idx(p); }).find("needs 2 bytes, found 3"), std::string::npos);
  // Sizes whose product overflows 64 bits are a mismatch, not a huge allocation.
  write_bytes(p, idx_bytes(0x0E, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {1, 2}));
  EXPECT_NE(error_of([&] { data::read_idx(p); }).find("data size mismatch"), std::string::npos);

  // A corrupt gzip stream is a read error, not garbage data.
  std::string gz = tmp("corrupt.idx.gz");
  std::vector<uint8_t> payload(1000, 3);
  write_gz(gz, idx_bytes(0x08, {1000}, payload));
  std::filesystem::resize_file(gz, std::filesystem::file_size(gz) / 2);
  msg = error_of([&] { data::read_idx(gz); });
  EXPECT_NE(msg.find(gz + ": truncated or corrupt gzip"), std::string::npos) << msg;
}

TEST(Idx, ClassificationDataset) {
  std::string images = tmp("images.idx"), labels = tmp("labels.idx.gz");
  std::vector<uint8_t> pix(3 * 2 * 2);
  for (size_t i = 0; i < pix.size(); i++) pix[i] = uint8_t(i * 20);
  write_bytes(images, idx_bytes(0x08, {3, 2, 2}, pix));
  write_gz(labels, idx_bytes(0x08, {3}, {7, 0, 9}));
  auto ds = data::load_idx_classification(images, labels);
  EXPECT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->inputs().dtype(), DType::F32);
  EXPECT_EQ(ds->inputs().shape(), (Shape{3, 1, 2, 2}));
  EXPECT_EQ(ds->targets().dtype(), DType::I64);
  EXPECT_EQ(ds->targets().to_vector<int64_t>(), (std::vector<int64_t>{7, 0, 9}));
  std::vector<float> x = ds->inputs().to_vector<float>();
  for (size_t i = 0; i < pix.size(); i++) EXPECT_FLOAT_EQ(x[i], pix[i] / 255.0f);

  // Counts must agree; the message names both files.
  write_bytes(labels, idx_bytes(0x08, {2}, {1, 2}));
  std::string msg = error_of([&] { data::load_idx_classification(images, labels); });
  EXPECT_NE(msg.find(images), std::string::npos) << msg;
  EXPECT_NE(msg.find(labels), std::string::npos) << msg;
  EXPECT_NE(msg.find("3 images"), std::string::npos) << msg;
  // Images must be u8 [N, H, W]; labels integers [N].
  msg = error_of([&] { data::load_idx_classification(labels, labels); });
  EXPECT_NE(msg.find(labels + ": expected u8 images"), std::string::npos) << msg;
  std::vector<uint8_t> fl;
  for (int i = 0; i < 3; i++) put_be(fl, std::bit_cast<uint32_t>(1.0f), 4);
  write_bytes(labels, idx_bytes(0x0D, {3}, fl));
  msg = error_of([&] { data::load_idx_classification(images, labels); });
  EXPECT_NE(msg.find(labels + ": expected integer labels"), std::string::npos) << msg;
}

TEST(Idx, FashionMnistFileNames) {
  // A directory in the Fashion-MNIST layout, some files plain and some gzipped.
  std::string dir = tmp("fmnist");
  std::filesystem::create_directories(dir);
  write_gz(dir + "/t10k-images-idx3-ubyte.gz", idx_bytes(0x08, {2, 28, 28}, std::vector<uint8_t>(2 * 28 * 28, 255)));
  write_bytes(dir + "/t10k-labels-idx1-ubyte", idx_bytes(0x08, {2}, {4, 5}));
  auto ds = data::load_fashion_mnist(dir, false);
  EXPECT_EQ(ds->inputs().shape(), (Shape{2, 1, 28, 28}));
  EXPECT_EQ(ds->targets().to_vector<int64_t>(), (std::vector<int64_t>{4, 5}));
  EXPECT_FLOAT_EQ(ds->inputs().to_vector<float>()[100], 1.0f);
  std::string msg = error_of([&] { data::load_fashion_mnist(dir, true); });
  EXPECT_NE(msg.find(dir + ": missing train-images-idx3-ubyte"), std::string::npos) << msg;
}

TEST(Idx, RealFashionMnistTestSet) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " not installed";
  auto ds = data::load_fashion_mnist(dir, false);
  EXPECT_EQ(ds->inputs().shape(), (Shape{10000, 1, 28, 28}));
  EXPECT_EQ(ds->targets().shape(), (Shape{10000}));
  std::vector<int64_t> count(10, 0);
  for (int64_t y : ds->targets().to_vector<int64_t>()) {
    ASSERT_GE(y, 0);
    ASSERT_LE(y, 9);
    count[size_t(y)]++;
  }
  for (int64_t c : count) EXPECT_EQ(c, 1000);
  std::vector<float> x = ds->inputs().to_vector<float>();
  auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  EXPECT_EQ(*lo, 0.0f);
  EXPECT_EQ(*hi, 1.0f);
}
