#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "mox/mox.h"
#include "mox/nn/nn.h"

using namespace mox;

namespace {

std::shared_ptr<nn::Sequential> mlp() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(6, 5), std::make_shared<nn::ReLU>(), std::make_shared<nn::BatchNorm1d>(5),
      std::make_shared<nn::Linear>(5, 3)});
}

std::string tmp_path(const char* name) { return ::testing::TempDir() + name; }

}  // namespace

TEST(Serialize, StateDictRoundTripThroughSafetensors) {
  manual_seed(1);
  auto a = mlp();
  a->train();
  (*a)(randn({8, 6}));  // moves BatchNorm's running statistics away from their defaults
  a->eval();
  std::string path = tmp_path("mlp.safetensors");
  nn::save_state_dict(*a, path, {{"format", "pt"}});

  io::SafetensorsFile f = io::load_safetensors(path);
  EXPECT_EQ(f.names, (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean",
                                               "2.running_var", "2.num_batches_tracked", "3.weight", "3.bias"}));
  EXPECT_EQ(f.at("2.num_batches_tracked").dtype(), DType::I64);
  EXPECT_EQ(f.metadata.at("format"), "pt");

  manual_seed(2);
  auto b = mlp();
  b->eval();
  Tensor x = randn({4, 6});
  EXPECT_FALSE(allclose((*a)(x), (*b)(x)));
  nn::load_state_dict(*b, path);
  EXPECT_TRUE(allclose((*a)(x), (*b)(x), 0, 0));
}

TEST(Serialize, BadFilesNameTheFileAndLeaveTheModelUnchanged) {
  auto m = mlp();
  Tensor before = m->state_dict().at("0.weight").clone();
  std::string missing = tmp_path("does_not_exist.safetensors");
  try {
    nn::load_state_dict(*m, missing);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  // A file for another architecture: shape mismatch, reported with the file and the key.
  auto other = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(6, 4), std::make_shared<nn::ReLU>(), std::make_shared<nn::BatchNorm1d>(4),
      std::make_shared<nn::Linear>(4, 3)});
  std::string path = tmp_path("other.safetensors");
  nn::save_state_dict(*other, path);
  try {
    nn::load_state_dict(*m, path);
    FAIL();
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("0.weight"), std::string::npos) << msg;
  }
  EXPECT_TRUE(allclose(m->state_dict().at("0.weight"), before, 0, 0));
  // Truncated file.
  {
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size() / 2));
  }
  EXPECT_THROW(nn::load_state_dict(*m, path), Error);
  EXPECT_TRUE(allclose(m->state_dict().at("0.weight"), before, 0, 0));
}
