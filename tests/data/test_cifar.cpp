#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "error_of.h"
#include "mox/data/datasets/cifar.h"
#include "mox/mox.h"

using namespace mox;

namespace {

std::string tmp(const std::string& name) { return ::testing::TempDir() + "mox_cifar_" + name; }

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

// One record: label, then pixel (c, h, w) = (label + 3c + 5h + 7w) mod 256.
void add_record(std::vector<uint8_t>& out, uint8_t label) {
  out.push_back(label);
  for (int c = 0; c < 3; c++)
    for (int h = 0; h < 32; h++)
      for (int w = 0; w < 32; w++) out.push_back(uint8_t(label + 3 * c + 5 * h + 7 * w));
}

}  // namespace

TEST(Cifar10, ReadsRecordsInChwOrderAcrossFiles) {
  std::vector<uint8_t> a, b;
  add_record(a, 3);
  add_record(a, 9);
  add_record(b, 0);
  write_bytes(tmp("a.bin"), a);
  write_bytes(tmp("b.bin"), b);
  auto ds = data::load_cifar10({tmp("a.bin"), tmp("b.bin")});
  ASSERT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->inputs().shape(), (Shape{3, 3, 32, 32}));
  EXPECT_EQ(ds->inputs().dtype(), DType::F32);
  EXPECT_EQ(ds->targets().dtype(), DType::I64);
  EXPECT_EQ(ds->targets().to_vector<int64_t>(), (std::vector<int64_t>{3, 9, 0}));
  std::vector<float> x = ds->inputs().to_vector<float>();
  const uint8_t labels[3] = {3, 9, 0};
  for (int n = 0; n < 3; n++)
    for (int c = 0; c < 3; c++)
      for (int h = 0; h < 32; h++)
        for (int w = 0; w < 32; w++) {
          float want = uint8_t(labels[n] + 3 * c + 5 * h + 7 * w) / 255.0f;
          ASSERT_FLOAT_EQ(x[((n * 3 + c) * 32 + h) * 32 + w], want) << n << " " << c << " " << h << " " << w;
        }
}

TEST(Cifar10, Errors) {
  std::vector<uint8_t> rec;
  add_record(rec, 1);
  rec.push_back(0);  // one byte too many
  std::string p = tmp("bad.bin");
  write_bytes(p, rec);
  std::string msg = error_of([&] { data::load_cifar10({p}); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("3074"), std::string::npos) << msg;  // the file's size
  EXPECT_NE(msg.find("3073"), std::string::npos) << msg;

  write_bytes(p, {});
  EXPECT_NE(error_of([&] { data::load_cifar10({p}); }).find(p + ": size 0"), std::string::npos);

  rec.clear();
  add_record(rec, 2);
  add_record(rec, 10);
  write_bytes(p, rec);
  msg = error_of([&] { data::load_cifar10({p}); });
  EXPECT_NE(msg.find(p + ": record 1: label 10"), std::string::npos) << msg;

  std::string missing = tmp("missing.bin");
  EXPECT_NE(error_of([&] { data::load_cifar10({missing}); }).find(missing), std::string::npos);
  EXPECT_THROW(data::load_cifar10({}), Error);
}
