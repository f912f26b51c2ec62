// History: key order, missing values, last/best, the CSV round trip (bit-exact values,
// NaN and missing cells kept apart), read errors naming file:line, and the JSON form.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "error_of.h"
#include "mox/io/file_util.h"
#include "mox/tensor/error.h"
#include "mox/train/history.h"

namespace mox::train {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("mox_history_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

History sample() {
  History h;
  h.add_epoch({{"loss", 0.9}, {"accuracy", 0.6}, {"val_loss", 1.0}, {"val_accuracy", 0.55}});
  h.add_epoch({{"loss", 0.5}, {"accuracy", 0.8}});  // no validation this epoch
  h.add_epoch({{"loss", 0.4}, {"accuracy", 0.8}, {"val_loss", 0.7}, {"val_accuracy", 0.7},
               {"lr", 1e-3}});
  return h;
}

TEST(History, KeysKeepFirstAppearanceOrderAndMissingValuesAreNaN) {
  History h = sample();
  EXPECT_EQ(h.epochs(), 3);
  EXPECT_EQ(h.keys(), (std::vector<std::string>{"loss", "accuracy", "val_loss",
                                                "val_accuracy", "lr"}));
  auto val = h.values("val_loss");
  ASSERT_EQ(val.size(), 3u);
  EXPECT_EQ(val[0], 1.0);
  EXPECT_TRUE(std::isnan(val[1]));
  EXPECT_EQ(val[2], 0.7);
  EXPECT_FALSE(h.value(1, "val_loss").has_value());
  EXPECT_FALSE(h.value(0, "lr").has_value());
  EXPECT_EQ(*h.value(2, "lr"), 1e-3);
  EXPECT_EQ(h.last("loss"), 0.4);
  EXPECT_EQ(h.last("lr"), 1e-3);
  EXPECT_TRUE(h.has("accuracy"));
  EXPECT_FALSE(h.has("auc"));
}

TEST(History, MapRecordsAreAccepted) {
  History h;
  h.add_epoch(std::map<std::string, double>{{"val_loss", 2.0}, {"loss", 1.0}});
  EXPECT_EQ(h.keys(), (std::vector<std::string>{"loss", "val_loss"}));  // map order
  EXPECT_EQ(h.last("val_loss"), 2.0);
}

TEST(History, BestMinMaxFirstOnTiesSkippingMissingAndNaN) {
  History h;
  h.add_epoch({{"loss", 0.9}, {"val_accuracy", 0.5}});
  h.add_epoch({{"loss", NAN}});
  h.add_epoch({{"loss", 0.3}, {"val_accuracy", 0.75}});
  h.add_epoch({{"loss", 0.3}, {"val_accuracy", 0.75}});
  h.add_epoch({{"loss", 0.6}, {"val_accuracy", 0.6}});
  auto lo = h.best("loss", History::Mode::Min);
  EXPECT_EQ(lo.epoch, 2);
  EXPECT_EQ(lo.value, 0.3);
  auto hi = h.best("loss", History::Mode::Max);
  EXPECT_EQ(hi.epoch, 0);
  EXPECT_EQ(hi.value, 0.9);
  auto acc = h.best("val_accuracy", History::Mode::Max);
  EXPECT_EQ(acc.epoch, 2);
  EXPECT_EQ(acc.value, 0.75);
  EXPECT_EQ(h.best("val_accuracy", History::Mode::Min).epoch, 0);
  EXPECT_TRUE(std::isnan(h.values("loss")[1]));  // NaN kept as a value
  EXPECT_TRUE(h.value(1, "loss").has_value());
}

TEST(History, DefaultModeFollowsKerasAuto) {
  EXPECT_EQ(History::default_mode("loss"), History::Mode::Min);
  EXPECT_EQ(History::default_mode("val_loss"), History::Mode::Min);
  EXPECT_EQ(History::default_mode("val_mae"), History::Mode::Min);
  EXPECT_EQ(History::default_mode("accuracy"), History::Mode::Max);
  EXPECT_EQ(History::default_mode("val_accuracy"), History::Mode::Max);
  EXPECT_EQ(History::default_mode("val_auc"), History::Mode::Max);
}

TEST(History, QueryErrors) {
  History h = sample();
  expect_error([&] { h.values("auc"); }, {"History", "auc"});
  expect_error([&] { h.value(3, "loss"); }, {"epoch 3", "[0, 3)"});
  History nan_only;
  nan_only.add_epoch({{"loss", NAN}});
  expect_error([&] { nan_only.best("loss", History::Mode::Min); }, {"non-NaN", "loss"});
  expect_error([&] { h.add_epoch({{"loss", 1.0}, {"loss", 2.0}}); }, {"'loss' given twice"});
  expect_error([&] { h.add_epoch({{"a,b", 1.0}}); }, {"a,b"});
  expect_error([&] { h.add_epoch({{"epoch", 1.0}}); }, {"reserved"});
  expect_error([&] { h.add_epoch({{"", 1.0}}); }, {"empty"});
  EXPECT_EQ(h.epochs(), 3);  // failed adds leave the history unchanged
}

TEST(History, CsvLayoutAndRoundTripIsExact) {
  TempDir dir;
  History h;
  // Doubles and f32 values (what a float32 model reports) must read back bit-exactly.
  const float loss1 = 0.412345678f, lr = 3e-4f, tiny = 1.17549435e-38f;
  const double third = 1.0 / 3.0;
  h.add_epoch({{"loss", 0.1}, {"lr", 0.25}});
  h.add_epoch({{"loss", loss1}, {"val_loss", tiny}, {"lr", lr}});
  h.add_epoch({{"loss", NAN}, {"val_loss", -INFINITY}, {"lr", third}});
  const std::string path = dir.file("history.csv");
  h.write_csv(path);

  const std::string text = io::read_file(path);
  EXPECT_EQ(text.substr(0, text.find('\n')), "epoch,loss,lr,val_loss");
  EXPECT_NE(text.find("\n0,0.1,0.25,\n"), std::string::npos) << text;  // shortest form
  EXPECT_NE(text.find("\n1,0.41234567761421204,"), std::string::npos) << text;
  EXPECT_NE(text.find("\n2,nan,0.3333333333333333,-inf\n"), std::string::npos) << text;
  // Atomic write: no temporary file is left beside the target.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);

  History r = History::read_csv(path);
  EXPECT_EQ(r.keys(), h.keys());
  ASSERT_EQ(r.epochs(), 3);
  for (int64_t e = 0; e < 3; e++)
    for (const auto& k : h.keys()) {
      auto want = h.value(e, k), got = r.value(e, k);
      ASSERT_EQ(want.has_value(), got.has_value()) << "epoch " << e << " " << k;
      if (!want) continue;
      if (std::isnan(*want))
        EXPECT_TRUE(std::isnan(*got));
      else
        EXPECT_EQ(*got, *want) << "epoch " << e << " " << k;  // bit-exact
    }
  EXPECT_EQ(*r.value(1, "loss"), static_cast<double>(loss1));
  EXPECT_EQ(*r.value(1, "lr"), static_cast<double>(lr));
  EXPECT_EQ(*r.value(1, "val_loss"), static_cast<double>(tiny));
  EXPECT_EQ(*r.value(2, "lr"), third);
  EXPECT_FALSE(r.value(0, "val_loss").has_value());
  EXPECT_TRUE(std::isnan(*r.value(2, "loss")));
  EXPECT_EQ(*r.value(2, "val_loss"), -INFINITY);

  // Resume: append to what was read and rewrite; the old rows are unchanged.
  r.add_epoch({{"loss", 0.25}, {"accuracy", 0.5}});
  r.write_csv(path);
  const std::string text2 = io::read_file(path);
  EXPECT_EQ(text2.substr(0, text2.find('\n')), "epoch,loss,lr,val_loss,accuracy");
  EXPECT_NE(text2.find("\n3,0.25,,,0.5\n"), std::string::npos) << text2;
  EXPECT_EQ(History::read_csv(path).epochs(), 4);
}

TEST(History, ReadsHeaderOnlyFilesAndCrlf) {
  TempDir dir;
  const std::string p = dir.file("h.csv");
  write_text(p, "epoch,loss,val_loss\n");
  History h = History::read_csv(p);
  EXPECT_EQ(h.epochs(), 0);
  EXPECT_EQ(h.keys(), (std::vector<std::string>{"loss", "val_loss"}));
  write_text(p, "epoch,loss,val_loss\r\n0,,0.5\r\n1,0.25,\r\n");
  h = History::read_csv(p);
  ASSERT_EQ(h.epochs(), 2);
  EXPECT_EQ(h.keys(), (std::vector<std::string>{"loss", "val_loss"}));  // file order kept
  EXPECT_EQ(h.last("loss"), 0.25);
  EXPECT_EQ(h.last("val_loss"), 0.5);
}

TEST(History, ReadErrorsNameFileAndLine) {
  TempDir dir;
  const std::string p = dir.file("bad.csv");
  write_text(p, "");
  expect_error([&] { History::read_csv(p); }, {p, "empty"});
  write_text(p, "step,loss\n0,1\n");
  expect_error([&] { History::read_csv(p); }, {p + ":1", "'epoch'"});
  write_text(p, "epoch,loss,loss\n");
  expect_error([&] { History::read_csv(p); }, {p + ":1", "twice"});
  write_text(p, "epoch,loss\n0,1\n1,0.5,7\n");
  expect_error([&] { History::read_csv(p); }, {p + ":3", "expected 2 fields, got 3"});
  write_text(p, "epoch,loss\n0,1\n2,0.5\n");
  expect_error([&] { History::read_csv(p); }, {p + ":3", "expected epoch 1"});
  write_text(p, "epoch,loss\n0,abc\n");
  expect_error([&] { History::read_csv(p); }, {p + ":2", "'abc' is not a number"});
  write_text(p, "epoch,loss\n0,1.5x\n");
  expect_error([&] { History::read_csv(p); }, {p + ":2", "'1.5x'"});
  write_text(p, "epoch,loss\n0,1e999\n");
  expect_error([&] { History::read_csv(p); }, {p + ":2", "1e999"});
  expect_error([&] { History::read_csv(dir.file("missing.csv")); }, {"missing.csv"});
}

TEST(History, WriteIntoMissingDirectoryThrows) {
  TempDir dir;
  History h = sample();
  expect_error([&] { h.write_csv(dir.file("no/such/dir/h.csv")); }, {"h.csv"});
}

TEST(History, JsonListsPerKeyWithNullForMissing) {
  History h = sample();
  h.add_epoch({{"loss", NAN}});
  auto j = nlohmann::ordered_json::parse(h.to_json());
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"epoch", "loss", "accuracy", "val_loss",
                                            "val_accuracy", "lr"}));
  EXPECT_EQ(j["epoch"], nlohmann::json::parse("[0,1,2,3]"));
  EXPECT_EQ(j["loss"][0].get<double>(), 0.9);
  EXPECT_TRUE(j["loss"][3].is_null());  // NaN has no JSON form
  EXPECT_TRUE(j["val_loss"][1].is_null());
  EXPECT_EQ(j["val_loss"][2].get<double>(), 0.7);
  EXPECT_EQ(j["lr"].size(), 4u);
  EXPECT_TRUE(j["lr"][0].is_null());
}

}  // namespace
}  // namespace mox::train
