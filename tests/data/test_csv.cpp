#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "error_of.h"
#include "mox/data/datasets/csv.h"
#include "mox/mox.h"

using namespace mox;
using data::CsvOptions;

namespace {

std::string tmp(const std::string& name) { return ::testing::TempDir() + "mox_csv_" + name; }

std::string write_text(const std::string& name, const std::string& text) {
  std::string path = tmp(name);
  FILE* f = std::fopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr) << path;
  if (f) {
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  return path;
}

}  // namespace

TEST(Csv, ClassificationWithHeaderQuotesAndCrlf) {
  // Quoted label with a comma, a quoted feature, CRLF line ends, a trailing empty line.
  std::string p = write_text("iris.csv",
                             "sepal,\"petal, width\",species\r\n"
                             "5.1,0.2,setosa\r\n"
                             "7.0,\"1.4\",\"versi, \"\"color\"\"\"\r\n"
                             "6.3, -2.5e0 ,virginica\r\n"
                             "4.9,0.1,setosa\r\n"
                             "\r\n");
  data::CsvTable t = data::load_csv(p);
  EXPECT_EQ(t.columns, (std::vector<std::string>{"sepal", "petal, width", "species"}));
  EXPECT_EQ(t.feature_names, (std::vector<std::string>{"sepal", "petal, width"}));
  EXPECT_EQ(t.label_name, "species");
  EXPECT_EQ(t.class_names, (std::vector<std::string>{"setosa", "versi, \"color\"", "virginica"}));
  ASSERT_EQ(t.dataset->size(), 4);
  EXPECT_EQ(t.dataset->inputs().shape(), (Shape{4, 2}));
  EXPECT_EQ(t.dataset->inputs().to_vector<float>(), (std::vector<float>{5.1f, 0.2f, 7.0f, 1.4f, 6.3f, -2.5f, 4.9f, 0.1f}));
  EXPECT_EQ(t.dataset->targets().dtype(), DType::I64);
  EXPECT_EQ(t.dataset->targets().to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 0}));
}

TEST(Csv, IntegerClassesSortNumerically) {
  std::string p = write_text("ints.csv", "y,a\n10,1\n9,2\n-1,3\n09,4");  // no final newline; 09 is 9
  CsvOptions opt;
  opt.label_column = "y";
  data::CsvTable t = data::load_csv(p, opt);
  EXPECT_EQ(t.class_names, (std::vector<std::string>{"-1", "9", "10"}));
  EXPECT_EQ(t.feature_names, (std::vector<std::string>{"a"}));
  EXPECT_EQ(t.dataset->targets().to_vector<int64_t>(), (std::vector<int64_t>{2, 1, 0, 1}));
  EXPECT_EQ(t.dataset->inputs().to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
}

TEST(Csv, TsvRegressionWithoutHeader) {
  // Auto-detected tab delimiter; label by index; a quoted field spanning two lines.
  std::string p = write_text("reg.tsv", "1.5\t2\t0.25\n\"3\"\t4\t-1\n\n5\t6\t8\n");
  CsvOptions opt;
  opt.header = false;
  opt.label_index = 0;
  opt.task = CsvOptions::Task::Regression;
  data::CsvTable t = data::load_csv(p, opt);
  EXPECT_EQ(t.columns, (std::vector<std::string>{"col0", "col1", "col2"}));
  EXPECT_EQ(t.label_name, "col0");
  EXPECT_TRUE(t.class_names.empty());
  EXPECT_EQ(t.dataset->inputs().to_vector<float>(), (std::vector<float>{2, 0.25f, 4, -1, 6, 8}));
  EXPECT_EQ(t.dataset->targets().dtype(), DType::F32);
  EXPECT_EQ(t.dataset->targets().shape(), (Shape{3, 1}));
  EXPECT_EQ(t.dataset->targets().to_vector<float>(), (std::vector<float>{1.5f, 3, 5}));
}

TEST(Csv, GivenDelimiterAndMultilineQuotedLabel) {
  std::string p = write_text("semi.txt", "a;b;label\n1;2;\"two\nlines\"\n3;4;x\n5;x6;y\n");
  CsvOptions opt;
  opt.delimiter = ';';
  // Line numbers count physical lines: the bad row starts on line 5.
  std::string msg = error_of([&] { data::load_csv(p, opt); });
  EXPECT_NE(msg.find(p + ":5: column 'b': non-numeric feature value 'x6'"), std::string::npos) << msg;
  p = write_text("semi.txt", "a;b;label\n1;2;\"two\nlines\"\n3;4;x\n");
  data::CsvTable t = data::load_csv(p, opt);
  EXPECT_EQ(t.class_names, (std::vector<std::string>{"two\nlines", "x"}));
}

TEST(Csv, Errors) {
  std::string p = write_text("bad1.csv", "a,b,c\n1,2,x\n3,4\n");
  std::string msg = error_of([&] { data::load_csv(p); });
  EXPECT_NE(msg.find(p + ":3: expected 3 fields"), std::string::npos) << msg;
  EXPECT_NE(msg.find("found 2"), std::string::npos) << msg;

  p = write_text("bad2.csv", "a,b,c\n1,2,x\n3,oops,y\n");
  msg = error_of([&] { data::load_csv(p); });
  EXPECT_NE(msg.find(p + ":3: column 'b': non-numeric feature value 'oops'"), std::string::npos) << msg;

  p = write_text("bad3.csv", "a,b,c\n1,,x\n");
  msg = error_of([&] { data::load_csv(p); });
  EXPECT_NE(msg.find(p + ":2: column 'b': empty feature value"), std::string::npos) << msg;

  p = write_text("bad4.csv", "a,b,c\n1,2,cat\n");
  CsvOptions reg;
  reg.task = CsvOptions::Task::Regression;
  msg = error_of([&] { data::load_csv(p, reg); });
  EXPECT_NE(msg.find(p + ":2: column 'c': non-numeric regression target 'cat'"), std::string::npos) << msg;

  CsvOptions named;
  named.label_column = "nope";
  msg = error_of([&] { data::load_csv(p, named); });
  EXPECT_NE(msg.find(p + ": no column named 'nope' (columns: a, b, c)"), std::string::npos) << msg;
  CsvOptions idx;
  idx.label_index = 3;
  EXPECT_NE(error_of([&] { data::load_csv(p, idx); }).find(p + ": label column index 3"), std::string::npos);

  p = write_text("bad5.csv", "a,b\n1,\"2\n");
  msg = error_of([&] { data::load_csv(p); });
  EXPECT_NE(msg.find(p + ":2: unterminated quoted field"), std::string::npos) << msg;
  p = write_text("bad6.csv", "a,b\n1,\"2\"x\n");
  EXPECT_NE(error_of([&] { data::load_csv(p); }).find(p + ":2: field 2: unexpected character"), std::string::npos);

  p = write_text("empty.csv", "\n\n");
  EXPECT_NE(error_of([&] { data::load_csv(p); }).find(p + ": empty table"), std::string::npos);
  p = write_text("header_only.csv", "a,b\r\n");
  EXPECT_NE(error_of([&] { data::load_csv(p); }).find(p + ": no data rows"), std::string::npos);
  std::string missing = tmp("missing.csv");
  EXPECT_NE(error_of([&] { data::load_csv(missing); }).find(missing + ": cannot open"), std::string::npos);
}

TEST(Csv, SelectedFeatureColumnsSkipTextColumns) {
  std::string path = write_text("weather.csv",
                                "date,precipitation,temp_max,temp_min,wind,weather\n"
                                "2012/01/01,0.0,12.8,5.0,4.7,drizzle\n"
                                "2012/01/02,10.9,10.6,2.8,4.5,rain\n");
  mox::data::CsvOptions o;
  o.label_column = "temp_max";
  o.task = mox::data::CsvOptions::Task::Regression;
  o.features = {"temp_min", "precipitation", "wind"};
  auto t = mox::data::load_csv(path, o);
  EXPECT_EQ(t.feature_names, (std::vector<std::string>{"temp_min", "precipitation", "wind"}));
  EXPECT_EQ(t.dataset->inputs().to_vector<float>(), (std::vector<float>{5.0f, 0.0f, 4.7f, 2.8f, 10.9f, 4.5f}));
  EXPECT_EQ(t.dataset->targets().to_vector<float>(), (std::vector<float>{12.8f, 10.6f}));
  o.features = {"temp_min", "humidity"};
  expect_error([&] { mox::data::load_csv(path, o); }, {"weather.csv", "no feature column named 'humidity'"});
  o.features = {"temp_max"};
  expect_error([&] { mox::data::load_csv(path, o); }, {"is the label"});
}
