// safetensors writer/reader: round trips, byte-exact agreement with a file written by
// Python (tools/fixtures_optim.py), atomic saves, and one test per kind of corruption.
#include "mox/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "io/test_util.h"
#include "mox/io/file_util.h"
#include "mox/mox.h"

namespace mox {
namespace {

using io::load_safetensors;
using io::Metadata;
using io::NamedTensors;
using io::save_safetensors;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

const std::string kFixtures = std::string(MOX_SOURCE_DIR) + "/tests/fixtures/optim/";

// The [2, 3] tensor of `dtype` that tools/fixtures_optim.py writes into io_reference.
Tensor reference_tensor(DType dtype) {
  std::vector<double> v;
  for (int i = 0; i < 6; i++) {
    switch (dtype) {
      case DType::I64: case DType::I32: v.push_back((i - 3) * 1000003.0); break;
      case DType::I8: v.push_back((i - 3) * 41.0); break;
      case DType::U8: v.push_back(i * 51.0); break;
      default: v.push_back((i - 3) * 0.75);
    }
  }
  return from_vector(v, {2, 3}).to(dtype);
}

std::string bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), size_t(c.numel()) * c.element_size());
}

// u64 length + header + data, with the length optionally overridden.
std::string raw_file(const std::string& header, const std::string& data, int64_t len = -1) {
  uint64_t n = len < 0 ? header.size() : uint64_t(len);
  std::string out(8, '\0');
  for (int i = 0; i < 8; i++) out[i] = char(uint8_t(n >> (8 * i)));
  return out + header + data;
}

// Loading `path` throws mox::Error whose message names the file and contains `phrase`.
void expect_load_error(const std::string& path, const std::string& phrase) {
  try {
    load_safetensors(path);
    ADD_FAILURE() << "loading " << path << " did not throw (expected: " << phrase << ")";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(phrase), std::string::npos) << "expected '" << phrase << "' in: " << msg;
  }
}

const std::vector<DType> kAllDtypes = {DType::F32, DType::F64, DType::BF16, DType::F16,
                                       DType::I64, DType::I32, DType::I8,  DType::U8};

TEST(Safetensors, RoundTripEveryDtype) {
  TempDir dir;
  NamedTensors ts;
  Generator g(7);
  for (DType dt : kAllDtypes) {
    Tensor t = is_floating(dt) ? randn({3, 5}, &g).to(dt) : randint(-100, 100, {3, 5}, &g).to(dt);
    if (dt == DType::U8) t = randint(0, 256, {3, 5}, &g).to(dt);
    ts.emplace_back(std::string("t_") + dtype_name(dt), t);
  }
  save_safetensors(dir.file("a.safetensors"), ts, {{"format", "pt"}, {"epoch", "3"}});
  io::SafetensorsFile f = load_safetensors(dir.file("a.safetensors"));
  ASSERT_EQ(f.tensors.size(), ts.size());
  EXPECT_EQ(f.metadata, (Metadata{{"format", "pt"}, {"epoch", "3"}}));
  for (size_t i = 0; i < ts.size(); i++) {
    EXPECT_EQ(f.names[i], ts[i].first);  // data in the order given
    const Tensor& t = f.at(ts[i].first);
    EXPECT_EQ(t.dtype(), ts[i].second.dtype()) << ts[i].first;
    EXPECT_EQ(t.shape(), ts[i].second.shape()) << ts[i].first;
    EXPECT_EQ(bytes_of(t), bytes_of(ts[i].second)) << ts[i].first;
  }
}

TEST(Safetensors, RoundTripZeroDimEmptyAndMapOverload) {
  TempDir dir;
  std::map<std::string, Tensor> ts{{"b_scalar", scalar_tensor(-3.5, DType::F64)},
                                   {"a_empty", zeros({0, 7}, DType::I32)},
                                   {"c", arange(5)}};
  save_safetensors(dir.file("m.safetensors"), ts);
  io::SafetensorsFile f = load_safetensors(dir.file("m.safetensors"));
  EXPECT_TRUE(f.metadata.empty());
  EXPECT_EQ(f.names, (std::vector<std::string>{"a_empty", "b_scalar", "c"}));
  EXPECT_EQ(f.at("b_scalar").shape(), Shape{});
  EXPECT_EQ(f.at("b_scalar").item<double>(), -3.5);
  EXPECT_EQ(f.at("a_empty").shape(), (Shape{0, 7}));
  EXPECT_EQ(f.at("a_empty").dtype(), DType::I32);
  EXPECT_EQ(f.at("c").to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  // the header has no __metadata__ entry when there is none
  EXPECT_EQ(read_bytes(dir.file("m.safetensors")).find("__metadata__"), std::string::npos);
}

TEST(Safetensors, NonContiguousTensorsAreSavedInLogicalOrder) {
  TempDir dir;
  Tensor base = arange(0, 24, 1, DType::F32).view({2, 3, 4});
  NamedTensors ts{{"transposed", base.transpose(0, 2)},
                  {"strided", base.slice(2, 0, 4, 2)},
                  {"expanded", arange(0, 3, 1, DType::F64).view({3, 1}).expand({3, 4})},
                  {"selected", base.select(1, 1)},
                  {"permuted_bf16", base.to(DType::BF16).permute({1, 2, 0})}};
  save_safetensors(dir.file("nc.safetensors"), ts);
  io::SafetensorsFile f = load_safetensors(dir.file("nc.safetensors"));
  for (const auto& [name, t] : ts) {
    ASSERT_FALSE(t.is_contiguous()) << name;
    EXPECT_EQ(f.at(name).shape(), t.shape()) << name;
    EXPECT_EQ(f.at(name).to_vector<double>(), t.to_vector<double>()) << name;
  }
  // transposed [4, 3, 2]: element [i][j][k] = base[k][j][i] = 12k + 4j + i
  EXPECT_EQ(f.at("transposed").to_vector<float>()[1], 12.0f);
}

TEST(Safetensors, MatchesPythonWriterByteForByte) {
  // io_reference.safetensors was written by Python's struct + json (tools/fixtures_optim.py).
  const std::string ref = kFixtures + "io_reference.safetensors";
  NamedTensors ts;
  for (DType dt : kAllDtypes) ts.emplace_back(dtype_name(dt), reference_tensor(dt));
  ts.emplace_back("scalar", scalar_tensor(2.5));
  ts.emplace_back("empty", zeros({0, 4}));
  Metadata meta{{"format", "pt"}, {"note", "caf\xc3\xa9 \"quoted\""}};
  TempDir dir;
  save_safetensors(dir.file("mine.safetensors"), ts, meta);
  std::string mine = read_bytes(dir.file("mine.safetensors")), theirs = read_bytes(ref);
  ASSERT_FALSE(theirs.empty()) << "missing fixture " << ref;
  EXPECT_EQ(mine.size(), theirs.size());
  EXPECT_TRUE(mine == theirs) << "first 200 bytes:\nmine:   " << mine.substr(0, 200)
                              << "\ntheirs: " << theirs.substr(0, 200);

  io::SafetensorsFile f = load_safetensors(ref);
  EXPECT_EQ(f.metadata, meta);
  for (DType dt : kAllDtypes) {
    const Tensor& t = f.at(dtype_name(dt));
    EXPECT_EQ(t.dtype(), dt);
    EXPECT_EQ(bytes_of(t), bytes_of(reference_tensor(dt))) << dtype_name(dt);
  }
  EXPECT_EQ(f.at("scalar").item<float>(), 2.5f);
  EXPECT_EQ(f.at("empty").shape(), (Shape{0, 4}));
}

TEST(Safetensors, HandAssembledHeader) {
  TempDir dir;
  NamedTensors ts{{"w", from_vector<float>({1.0f, -2.0f}, {1, 2})},
                  {"idx", from_vector<int64_t>({7}, {1})}};
  save_safetensors(dir.file("h.safetensors"), ts, {{"k", "v"}});
  std::string header =
      R"({"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},)"
      R"("idx":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  EXPECT_EQ(io::safetensors_header(ts, {{"k", "v"}}), header);
  float w[2] = {1.0f, -2.0f};
  int64_t idx = 7;
  std::string data(reinterpret_cast<const char*>(w), 8);
  data.append(reinterpret_cast<const char*>(&idx), 8);
  EXPECT_TRUE(read_bytes(dir.file("h.safetensors")) == raw_file(header, data));
  EXPECT_EQ(header.size() % 8, 0u);
}

TEST(Safetensors, LoadedTensorsAreCopyOnWrite) {
  TempDir dir;
  const std::string p = dir.file("cow.safetensors");
  save_safetensors(p, NamedTensors{{"x", ones({4})}});
  std::string before = read_bytes(p);
  {
    io::SafetensorsFile f = load_safetensors(p);
    Tensor x = f.at("x");
    x.fill_(5.0);  // writes to the private mapping, not to the file
    EXPECT_EQ(x.to_vector<float>(), std::vector<float>(4, 5.0f));
  }
  EXPECT_TRUE(read_bytes(p) == before);
  EXPECT_EQ(load_safetensors(p).at("x").to_vector<float>(), std::vector<float>(4, 1.0f));
}

TEST(Safetensors, TensorsOutliveTheFileAndItsReplacement) {
  TempDir dir;
  const std::string p = dir.file("r.safetensors");
  save_safetensors(p, NamedTensors{{"x", full({3}, 1.0)}});
  Tensor old = load_safetensors(p).at("x");  // the SafetensorsFile is gone; the mapping lives on
  save_safetensors(p, NamedTensors{{"x", full({3}, 2.0)}});
  EXPECT_EQ(old.to_vector<float>(), std::vector<float>(3, 1.0f));
  EXPECT_EQ(load_safetensors(p).at("x").to_vector<float>(), std::vector<float>(3, 2.0f));
  std::filesystem::remove(p);
  EXPECT_EQ(old.to_vector<float>(), std::vector<float>(3, 1.0f));
}

TEST(Safetensors, MisalignedTensorsAreCopied) {
  // A writer that does not order tensors by alignment: the f64 starts 4 bytes into the data.
  TempDir dir;
  std::string header =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"F64","shape":[2],"data_offsets":[4,20]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  float a = 1.5f;
  double b[2] = {-2.25, 1e300};
  std::string data(reinterpret_cast<const char*>(&a), 4);
  data.append(reinterpret_cast<const char*>(b), 16);
  write_bytes(dir.file("mis.safetensors"), raw_file(header, data));
  io::SafetensorsFile f = load_safetensors(dir.file("mis.safetensors"));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.at("b").raw_data()) % 8, 0u);
  EXPECT_EQ(f.at("b").to_vector<double>(), (std::vector<double>{-2.25, 1e300}));
  EXPECT_EQ(f.at("a").item<float>(), 1.5f);
}

TEST(Safetensors, SaveRejectsBadInputAndNamesTheFile) {
  TempDir dir;
  const std::string p = dir.file("bad.safetensors");
  auto expect_save_error = [&](const NamedTensors& ts, const std::string& path,
                               const std::string& phrase) {
    try {
      save_safetensors(path, ts);
      ADD_FAILURE() << "no error, expected: " << phrase;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(phrase), std::string::npos) << msg;
    }
  };
  expect_save_error({{"a", ones({1})}, {"a", ones({2})}}, p, "duplicate tensor name 'a'");
  expect_save_error({{"__metadata__", ones({1})}}, p, "__metadata__");
  expect_save_error({{"u", Tensor()}}, p, "undefined");
  expect_save_error({{"a", ones({1})}}, dir.file("no/such/dir/x.safetensors"), "cannot create");
  EXPECT_FALSE(std::filesystem::exists(p));
}

TEST(Safetensors, FailedSaveLeavesTheOldFileIntact) {
  TempDir dir;
  const std::string p = dir.file("ckpt.safetensors");
  save_safetensors(p, NamedTensors{{"w", full({8}, 3.0)}});
  const std::string good = read_bytes(p);
  // A save that fails before writing (bad input) ...
  EXPECT_THROW(save_safetensors(p, NamedTensors{{"w", ones({1})}, {"w", ones({1})}}), Error);
  EXPECT_TRUE(read_bytes(p) == good);
  // ... and one interrupted midway (an exception between writes) both leave it as it was,
  // with no temporary file left behind.
  try {
    io::AtomicFileWriter w(p);
    w.write("partial garbage");
    throw std::runtime_error("interrupted");
  } catch (const std::runtime_error&) {
  }
  EXPECT_TRUE(read_bytes(p) == good);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    files++;
  }
  EXPECT_EQ(files, 1u);
  EXPECT_EQ(load_safetensors(p).at("w").to_vector<float>(), std::vector<float>(8, 3.0f));
}

TEST(Safetensors, AtClearErrorForMissingTensor) {
  TempDir dir;
  const std::string p = dir.file("one.safetensors");
  save_safetensors(p, NamedTensors{{"w", ones({1})}});
  io::SafetensorsFile f = load_safetensors(p);
  EXPECT_TRUE(f.contains("w"));
  try {
    f.at("bias");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("'bias'"), std::string::npos);
  }
}

// ---------------- corruption: each must throw mox::Error naming the file ----------------

class Corrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    good_ = dir_.file("good.safetensors");
    save_safetensors(good_, NamedTensors{{"a", arange(0, 6, 1, DType::F32).view({2, 3})},
                                         {"b", from_vector<int64_t>({1, 2}, {2})}},
                     {{"format", "pt"}});
    bytes_ = read_bytes(good_);
    n_ = 0;
    for (int i = 0; i < 8; i++) n_ |= uint64_t(uint8_t(bytes_[i])) << (8 * i);
  }
  // Writes a file with this header (padded) and data.
  std::string with_header(const std::string& name, std::string header, const std::string& data) {
    header.append((8 - header.size() % 8) % 8, ' ');
    std::string p = dir_.file(name);
    write_bytes(p, raw_file(header, data));
    return p;
  }
  std::string write(const std::string& name, const std::string& bytes) {
    std::string p = dir_.file(name);
    write_bytes(p, bytes);
    return p;
  }
  TempDir dir_;
  std::string good_, bytes_;
  uint64_t n_ = 0;
  const std::string data16_ = std::string(16, '\x01');
};

TEST_F(Corrupt, GoodFileLoads) { EXPECT_EQ(load_safetensors(good_).tensors.size(), 2u); }

TEST_F(Corrupt, MissingFile) {
  expect_load_error(dir_.file("nope.safetensors"), "cannot open");
}

TEST_F(Corrupt, ShorterThanEightBytes) {
  expect_load_error(write("empty.safetensors", ""), "too short");
  expect_load_error(write("seven.safetensors", bytes_.substr(0, 7)), "too short");
}

TEST_F(Corrupt, TruncatedAtSeveralPoints) {
  const uint64_t data = bytes_.size() - 8 - n_;  // 24 + 16 bytes
  ASSERT_EQ(data, 40u);
  struct Cut {
    uint64_t at;
    const char* phrase;
  };
  for (Cut c : {Cut{3, "too short"}, Cut{8, "exceeds the file size"},
                Cut{8 + n_ / 2, "exceeds the file size"}, Cut{8 + n_ - 1, "exceeds the file size"},
                Cut{8 + n_, "beyond the end of the data"},
                Cut{8 + n_ + 20, "beyond the end of the data"},
                Cut{bytes_.size() - 1, "beyond the end of the data"}}) {
    SCOPED_TRACE("cut at " + std::to_string(c.at));
    expect_load_error(write("cut" + std::to_string(c.at) + ".safetensors", bytes_.substr(0, c.at)),
                      c.phrase);
  }
}

TEST_F(Corrupt, HeaderLengthLargerThanFile) {
  std::string b = bytes_;
  b[7] = '\x10';  // n += 2^60
  expect_load_error(write("huge.safetensors", b), "exceeds the file size");
}

TEST_F(Corrupt, InvalidJson) {
  std::string b = bytes_;
  b[8] = 'x';  // the opening brace
  expect_load_error(write("json1.safetensors", b), "invalid JSON header");
  expect_load_error(with_header("json2.safetensors", R"({"a":{"dtype":"F32",)", ""),
                    "invalid JSON header");
  expect_load_error(with_header("json3.safetensors", "[1, 2]", ""), "not a JSON object");
}

TEST_F(Corrupt, BoolReadsAsU8) {
  // transformers 4.27-4.3x store GPT-2's attn.bias mask as BOOL
  std::string data = std::string("\x01\x00\x01\x01", 4);
  auto f = load_safetensors(
      with_header("b.safetensors", R"({"m":{"dtype":"BOOL","shape":[2,2],"data_offsets":[0,4]}})", data));
  EXPECT_EQ(f.at("m").dtype(), DType::U8);
  EXPECT_EQ(f.at("m").to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 1, 1}));
}

TEST_F(Corrupt, UnknownDtype) {
  expect_load_error(
      with_header("dt.safetensors", R"({"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}})",
                  data16_),
      "unsupported dtype 'Q4'");
  // mox's own lower-case names are not part of the format
  expect_load_error(
      with_header("dt2.safetensors", R"({"a":{"dtype":"f32","shape":[4],"data_offsets":[0,16]}})",
                  data16_),
      "unsupported dtype 'f32'");
  expect_load_error(
      with_header("dt3.safetensors", R"({"a":{"shape":[4],"data_offsets":[0,16]}})", data16_),
      "missing string \"dtype\"");
}

TEST_F(Corrupt, OffsetsBeyondEndOfFile) {
  expect_load_error(
      with_header("eof.safetensors",
                  R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", data16_),
      "beyond the end of the data");
}

TEST_F(Corrupt, OverlappingOffsets) {
  expect_load_error(
      with_header("ov.safetensors",
                  R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                  data16_),
      "overlap");
}

TEST_F(Corrupt, OffsetsNotMatchingShape) {
  expect_load_error(
      with_header("sz.safetensors", R"({"a":{"dtype":"F64","shape":[3],"data_offsets":[0,16]}})",
                  data16_),
      "needs 24 bytes");
  expect_load_error(
      with_header("rev.safetensors", R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[16,0]}})",
                  data16_),
      "end before they begin");
}

TEST_F(Corrupt, GapBetweenTensors) {
  expect_load_error(
      with_header("gap.safetensors",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                  data16_),
      "leaving a gap");
}

TEST_F(Corrupt, TrailingGarbage) {
  expect_load_error(write("trail.safetensors", bytes_ + "junk"), "4 bytes of trailing data");
}

TEST_F(Corrupt, BadShapeAndOffsets) {
  expect_load_error(
      with_header("neg.safetensors", R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})",
                  data16_),
      "non-negative integers");
  expect_load_error(
      with_header("flt.safetensors", R"({"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}})",
                  data16_),
      "non-negative integers");
  expect_load_error(
      with_header("big.safetensors",
                  R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]}})",
                  data16_),
      "too large");
  expect_load_error(
      with_header("off.safetensors", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0]}})",
                  data16_),
      "data_offsets");
  expect_load_error(with_header("ent.safetensors", R"({"a":[1,2]})", ""),
                    "not a JSON object");
}

TEST_F(Corrupt, MetadataMustMapStringsToStrings) {
  expect_load_error(with_header("meta.safetensors", R"({"__metadata__":{"epoch":3}})", ""),
                    "not a string");
  expect_load_error(with_header("meta2.safetensors", R"({"__metadata__":"x"})", ""),
                    "\"__metadata__\" is not a JSON object");
}

// ---------------- file_util ----------------

TEST(FileUtil, AtomicWriteAndReadBack) {
  TempDir dir;
  const std::string p = dir.file("f.txt");
  io::write_file_atomic(p, "first");
  EXPECT_EQ(io::read_file(p), "first");
  io::write_file_atomic(p, "second, longer");
  EXPECT_EQ(io::read_file(p), "second, longer");
  try {
    io::read_file(dir.file("missing.txt"));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos);
  }
  EXPECT_THROW(io::read_file(dir.path()), Error);  // a directory
}

}  // namespace
}  // namespace mox
