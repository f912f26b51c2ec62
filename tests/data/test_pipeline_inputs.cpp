// Preprocessor (apply, save/load) and read_inputs / preprocess_inputs for every input kind.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <sstream>

#include "error_of.h"
#include "mox/data/datasets/image_file.h"
#include "mox/data/pipeline.h"
#include "mox/io/file_util.h"
#include "test_pipeline_util.h"

using namespace mox;
using namespace mox::data;
using namespace pipeline_test;

namespace {

Preprocessor image_pre(Shape shape) {
  Preprocessor p;
  p.kind = Preprocessor::Kind::Image;
  p.input_shape = std::move(shape);
  return p;
}

Preprocessor table_pre() {
  Preprocessor p;
  p.kind = Preprocessor::Kind::Table;
  p.input_shape = {2};
  p.feature_names = {"a", "b"};
  p.label_name = "species";
  p.class_names = {"setosa", "versicolor"};
  return p;
}

Preprocessor text_pre() {
  Preprocessor p;
  p.kind = Preprocessor::Kind::Text;
  p.vocab = std::make_shared<Vocab>(Vocab::build({{"hello", "world", "hello"}, {"second"}}));
  p.sequence_length = 4;
  p.padding = Vocab::Padding::Post;
  p.input_shape = {4};
  p.class_names = {"neg", "pos"};
  return p;
}

}  // namespace

TEST(Preprocessor, AppliesNormalisationPerChannelAndFeature) {
  Preprocessor p = image_pre({2, 1, 2});
  p.mean = {0.5, 0.25};
  p.std = {0.5, 2.0};
  Tensor raw = from_vector(std::vector<float>{1.0f, 0.0f, 0.25f, 0.75f}, {1, 2, 1, 2});
  EXPECT_EQ(p.images(raw).to_vector<float>(), (std::vector<float>{1.0f, -1.0f, 0.0f, 0.25f}));
  expect_error([&] { p.images(zeros({1, 1, 1, 2})); }, {"[1, 1, 2]", "[2, 1, 2]"});
  Preprocessor t = table_pre();
  t.mean = {1, 10};
  t.std = {2, 5};
  EXPECT_EQ(t.table(from_vector(std::vector<float>{3, 20, 1, 0}, {2, 2})).to_vector<float>(),
            (std::vector<float>{1, 2, 0, -2}));
  Preprocessor x = text_pre();
  const Vocab& v = *x.vocab;
  EXPECT_EQ(x.texts({"Hello, WORLD! unknown", ""}).to_vector<int64_t>(),
            (std::vector<int64_t>{v.id("hello"), v.id("world"), Vocab::kOov, 0, 0, 0, 0, 0}));
}

TEST(Preprocessor, SaveLoadRoundTrip) {
  const std::string dir = fresh_dir("pre_save");
  Preprocessor p = image_pre({3, 32, 32});
  p.mean = {0.1234567890123, 0.2, 1.0 / 3.0};
  p.std = {0.25, 0.5, 0.7};
  p.class_names = {"airplane", "auto mobile", "bird"};
  p.save(dir);
  Preprocessor q = Preprocessor::load(dir);
  EXPECT_EQ(q.kind, Preprocessor::Kind::Image);
  EXPECT_EQ(q.input_shape, p.input_shape);
  EXPECT_EQ(q.mean, p.mean);  // bit-exact through JSON
  EXPECT_EQ(q.std, p.std);
  EXPECT_EQ(q.class_names, p.class_names);
  EXPECT_EQ(q.task, Task::Classification);

  const std::string tdir = fresh_dir("pre_save_table");
  Preprocessor t = table_pre();
  t.task = Task::Regression;
  t.class_names.clear();
  t.save(tdir);
  Preprocessor t2 = Preprocessor::load(tdir);
  EXPECT_EQ(t2.kind, Preprocessor::Kind::Table);
  EXPECT_EQ(t2.feature_names, t.feature_names);
  EXPECT_EQ(t2.label_name, "species");
  EXPECT_EQ(t2.task, Task::Regression);
  EXPECT_TRUE(t2.mean.empty());

  const std::string xdir = fresh_dir("pre_save_text");
  Preprocessor x = text_pre();
  x.save(xdir);
  EXPECT_TRUE(fs::exists(xdir + "/vocab.txt"));
  Preprocessor x2 = Preprocessor::load(xdir);
  EXPECT_EQ(x2.kind, Preprocessor::Kind::Text);
  EXPECT_EQ(x2.sequence_length, 4);
  ASSERT_NE(x2.vocab, nullptr);
  EXPECT_EQ(x2.vocab->tokens(), x.vocab->tokens());
  EXPECT_EQ(x2.texts({"second hello"}).to_vector<int64_t>(), x.texts({"second hello"}).to_vector<int64_t>());
}

TEST(Preprocessor, LoadErrorsNameFileAndField) {
  const std::string dir = fresh_dir("pre_bad");
  expect_error([&] { Preprocessor::load(dir); }, {"preprocess.json"});
  image_pre({1, 28, 28}).save(dir);
  std::string text = io::read_file(dir + "/preprocess.json");
  std::string bad = text;
  bad.replace(bad.find("\"image\""), 7, "\"audio\"");
  write_text(dir + "/preprocess.json", bad);
  expect_error([&] { Preprocessor::load(dir); }, {"preprocess.json", "kind", "\"audio\""});
  write_text(dir + "/preprocess.json", "{\"format\": \"mox-preprocess\"");
  expect_error([&] { Preprocessor::load(dir); }, {"preprocess.json", "not valid JSON"});
  bad = text;
  bad.replace(bad.find("28"), 2, "-3");
  write_text(dir + "/preprocess.json", bad);
  expect_error([&] { Preprocessor::load(dir); }, {"preprocess.json", "input_shape"});
}

TEST(ReadInputs, IdxFiles) {
  const std::string dir = fresh_dir("in_idx");
  std::vector<uint8_t> px;
  for (int i = 0; i < 24; i++) px.push_back(uint8_t(i * 10));
  write_idx_u8(dir + "/x.idx", {2, 3, 4}, px);
  write_idx_u8(dir + "/one-ubyte", {3, 4}, std::vector<uint8_t>(px.begin(), px.begin() + 12));
  Preprocessor p = image_pre({1, 3, 4});
  RawInputs r = read_inputs({dir + "/x.idx", dir + "/one-ubyte"}, p);
  ASSERT_EQ(r.images.shape(), (Shape{3, 1, 3, 4}));
  auto v = r.images.to_vector<float>();
  for (int i = 0; i < 24; i++) EXPECT_FLOAT_EQ(v[size_t(i)], float(i * 10) / 255.0f);
  for (int i = 0; i < 12; i++) EXPECT_FLOAT_EQ(v[size_t(24 + i)], float(i * 10) / 255.0f);
  EXPECT_EQ(r.names, (std::vector<std::string>{dir + "/x.idx[0]", dir + "/x.idx[1]", dir + "/one-ubyte[0]"}));
  EXPECT_FALSE(r.table.defined());
  EXPECT_FALSE(r.targets.defined());
  EXPECT_EQ(preprocess_inputs(r, p).to_vector<float>(), v);
  expect_error([&] { read_inputs({dir + "/x.idx"}, image_pre({1, 28, 28})); },
               {dir + "/x.idx", "[1, 3, 4]", "[1, 28, 28]"});
}

TEST(ReadInputs, PgmAndPngImages) {
  const std::string dir = fresh_dir("in_img");
  std::vector<uint8_t> pgm = {'P', '5', '\n', '4', ' ', '3', '\n', '2', '5', '5', '\n'};
  for (int i = 0; i < 12; i++) pgm.push_back(uint8_t(i * 20));
  write_bytes(dir + "/a.pgm", pgm);
  Tensor img = from_vector(std::vector<float>{0.0f, 1.0f, 0.2f, 0.4f, 0.6f, 0.8f, 1.0f, 0.0f, 0.2f, 0.4f, 0.6f, 0.8f},
                           {1, 3, 4});
  write_png(dir + "/b.png", img);
  Preprocessor p = image_pre({1, 3, 4});
  p.mean = {0.5};
  p.std = {0.5};
  RawInputs r = read_inputs({dir + "/a.pgm", dir + "/b.png"}, p);
  ASSERT_EQ(r.images.shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(r.names, (std::vector<std::string>{dir + "/a.pgm", dir + "/b.png"}));
  auto v = r.images.to_vector<float>();
  for (int i = 0; i < 12; i++) EXPECT_FLOAT_EQ(v[size_t(i)], float(i * 20) / 255.0f);
  auto want = img.to_vector<float>();
  for (int i = 0; i < 12; i++) EXPECT_NEAR(v[size_t(12 + i)], want[size_t(i)], 0.5 / 255.0 + 1e-6);
  auto x = preprocess_inputs(r, p).to_vector<float>();
  for (int i = 0; i < 24; i++) EXPECT_NEAR(x[size_t(i)], (v[size_t(i)] - 0.5f) / 0.5f, 1e-6);
  write_png(dir + "/rgb.png", zeros({3, 3, 4}));
  expect_error([&] { read_inputs({dir + "/rgb.png"}, p); }, {dir + "/rgb.png", "[3, 3, 4]", "[1, 3, 4]"});
}

TEST(ReadInputs, CsvByHeaderNamesOrByPosition) {
  const std::string dir = fresh_dir("in_csv");
  write_text(dir + "/h.csv", "b,species,a,extra\n2,versicolor,1,x\n4.5,setosa,3,y\n");
  write_text(dir + "/n.tsv", "7\t8\n");
  Preprocessor p = table_pre();
  p.mean = {1, 2};
  p.std = {2, 2};
  RawInputs r = read_inputs({dir + "/h.csv"}, p);
  EXPECT_EQ(r.table.to_vector<float>(), (std::vector<float>{1, 2, 3, 4.5f}));
  ASSERT_TRUE(r.targets.defined());
  EXPECT_EQ(r.targets.to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(r.names, (std::vector<std::string>{dir + "/h.csv:2", dir + "/h.csv:3"}));
  EXPECT_EQ(preprocess_inputs(r, p).to_vector<float>(), (std::vector<float>{0, 0, 1, 1.25f}));
  RawInputs both = read_inputs({dir + "/n.tsv", dir + "/h.csv"}, p);
  EXPECT_EQ(both.table.to_vector<float>(), (std::vector<float>{7, 8, 1, 2, 3, 4.5f}));
  EXPECT_FALSE(both.targets.defined());  // n.tsv has no labels
  write_text(dir + "/missing.csv", "a,c\n1,2\n");
  expect_error([&] { read_inputs({dir + "/missing.csv"}, p); }, {"missing.csv:1", "lacks", "b"});
  write_text(dir + "/wide.csv", "1,2,3\n");
  expect_error([&] { read_inputs({dir + "/wide.csv"}, p); }, {"wide.csv:1", "2 features", "found 3"});
  write_text(dir + "/badclass.csv", "a,b,species\n1,2,rose\n");
  expect_error([&] { read_inputs({dir + "/badclass.csv"}, p); }, {"badclass.csv:2", "'rose'"});
  write_text(dir + "/nan.csv", "a,b\n1,x\n");
  expect_error([&] { read_inputs({dir + "/nan.csv"}, p); }, {"nan.csv:2", "'b'", "'x'"});
}

TEST(ReadInputs, TextLinesAndKinds) {
  const std::string dir = fresh_dir("in_text");
  write_text(dir + "/r.txt", "hello world\n\n   \r\nsecond line\r\n");
  Preprocessor p = text_pre();
  RawInputs r = read_inputs({dir + "/r.txt"}, p);
  EXPECT_EQ(r.texts, (std::vector<std::string>{"hello world", "second line"}));
  EXPECT_EQ(r.names, (std::vector<std::string>{dir + "/r.txt:1", dir + "/r.txt:4"}));
  const Vocab& v = *p.vocab;
  EXPECT_EQ(preprocess_inputs(r, p).to_vector<int64_t>(),
            (std::vector<int64_t>{v.id("hello"), v.id("world"), 0, 0, v.id("second"), Vocab::kOov, 0, 0}));
  write_text(dir + "/empty.txt", "\n \n");
  expect_error([&] { read_inputs({dir + "/empty.txt"}, p); }, {"empty.txt", "no text"});
  expect_error([&] { read_inputs({dir + "/a.png", dir + "/r.txt"}, p); },
               {"mixed input kinds", "a.png", "r.txt"});
  expect_error([&] { read_inputs({dir + "/a.png"}, p); }, {"a.png", "image file", "text inputs"});
  expect_error([&] { read_inputs({dir + "/r.txt"}, image_pre({1, 3, 4})); }, {"r.txt", "image inputs"});
  expect_error([&] { read_inputs({}, p); }, {"no input files"});
  expect_error([&] { read_inputs({dir + "/nope.txt"}, p); }, {"nope.txt"});
}

TEST(ReadInputs, StdinIsText) {
  std::istringstream in("first one\n\nsecond\n");
  std::streambuf* old = std::cin.rdbuf(in.rdbuf());
  RawInputs r;
  std::string err = error_of([&] { r = read_inputs({"-"}, text_pre()); });
  std::cin.rdbuf(old);
  EXPECT_EQ(err, "(no error)");
  EXPECT_EQ(r.texts, (std::vector<std::string>{"first one", "second"}));
  EXPECT_EQ(r.names, (std::vector<std::string>{"stdin:1", "stdin:3"}));
}
