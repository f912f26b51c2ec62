// `mox summary` on the example configs, and the CLI's exit codes and one-line errors.
// Parameter totals are PyTorch's, computed with torch 1.13 for the equivalent models:
//   sum(p.numel() for p in model.parameters())
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/run_cli.h"

namespace mox::testing {
namespace {

std::string example(const std::string& name) {
  return std::string(MOX_SOURCE_DIR) + "/examples/" + name;
}

// The summary table's line that starts with `label` ("Total params:"), or "".
std::string line_with(const std::string& out, const std::string& label) {
  for (const std::string& l : lines_of(out))
    if (l.rfind(label, 0) == 0) return l;
  return "";
}

struct ExampleCase {
  const char* file;
  const char* total;  // as the summary prints it
  std::vector<std::string> rows;  // substrings that must appear (layer rows, shapes)
};

class ExampleSummary : public ::testing::TestWithParam<ExampleCase> {};

TEST_P(ExampleSummary, PrintsPyTorchParameterCounts) {
  const ExampleCase& c = GetParam();
  CliResult r = run_cli({"summary", example(c.file)});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(line_with(r.out, "Total params:").substr(0, 14 + std::string(c.total).size()),
            std::string("Total params: ") + c.total)
      << r.out;
  EXPECT_EQ(line_with(r.out, "Trainable params:").substr(0, 18 + std::string(c.total).size()),
            std::string("Trainable params: ") + c.total);
  EXPECT_EQ(line_with(r.out, "Non-trainable params:").substr(0, 24),
            "Non-trainable params: 0 ");
  EXPECT_NE(r.out.find("Layer (type)"), std::string::npos);
  EXPECT_NE(r.out.find("Output Shape"), std::string::npos);
  EXPECT_NE(r.out.find("Param #"), std::string::npos);
  for (const std::string& row : c.rows) EXPECT_NE(r.out.find(row), std::string::npos) << row << "\n" << r.out;
}

INSTANTIATE_TEST_SUITE_P(
    Examples, ExampleSummary,
    ::testing::Values(
        // nn.Sequential(Flatten, Linear(784,128), ReLU, Dropout(0.2), Linear(128,10))
        ExampleCase{"mlp.toml", "101,770 (0.39 MB)",
                    {"Input shape: (None, 1, 28, 28)", " 0 (Flatten)                 (None, 784) ",
                     " 1 (Linear)                  (None, 128)               100480",
                     " 4 (Linear)                  (None, 10)                1290"}},
        // Conv2d(1,32,3) ReLU MaxPool2d(2) Conv2d(32,64,3) ReLU MaxPool2d(2) Conv2d(64,64,3)
        // ReLU Flatten Linear(576,64) ReLU Linear(64,10)
        ExampleCase{"cnn.toml", "93,322 (0.36 MB)",
                    {" 0 (Conv2d)                  (None, 32, 26, 26)        320",
                     "(None, 64, 3, 3)", " 8 (Flatten)                 (None, 576) ",
                     " 11 (Linear)                 (None, 10)                650"}},
        // Embedding(10000,32), RNN(32,32) (PyTorch: two bias vectors), Linear(32,1)
        ExampleCase{"rnn.toml", "322,145 (1.23 MB)",
                    {" 1 (RNN)                     (None, 64, 32)            2112",
                     " 2 (LastTimeStep)            (None, 32) ", "(Sigmoid)"}},
        // Embedding(10000,16), Linear(16,16), Linear(16,6) Softmax
        ExampleCase{"gap.toml", "160,374 (0.61 MB)",
                    {" 1 (GlobalAveragePooling1D)  (None, 16) ", "(None, 64, 16)", "(Softmax)"}}));

TEST(Cli, Version) {
  CliResult r = run_cli({"--version"});
  EXPECT_EQ(r.code, 0);
  // the first line; the build and the devices follow (device_cli_test.cpp)
  EXPECT_EQ(r.out.substr(0, r.out.find('\n') + 1), std::string("mox ") + MOX_VERSION + "\n");
}

TEST(Cli, HelpListsSummary) {
  CliResult r = run_cli({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("summary"), std::string::npos) << r.out;
  CliResult s = run_cli({"summary", "--help"});
  EXPECT_EQ(s.code, 0);
  EXPECT_NE(s.out.find("CONFIG"), std::string::npos) << s.out;
}

// A usage error: exit code 2, one line on stderr, nothing on stdout.
void expect_usage_error(const std::vector<std::string>& args, const std::string& mentions) {
  CliResult r = run_cli(args);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_EQ(lines_of(r.err).size(), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("mox: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(mentions), std::string::npos) << r.err;
}

TEST(Cli, UsageErrorsExitWith2) {
  expect_usage_error({}, "no command");
  expect_usage_error({"--bogus"}, "--bogus");
  expect_usage_error({"frobnicate"}, "frobnicate");
  expect_usage_error({"summary"}, "CONFIG");
  expect_usage_error({"summary", example("mlp.toml"), "extra"}, "extra");
}

struct BadConfig {
  const char* name;      // file name (also the test name)
  const char* text;      // nullptr: the file does not exist
  std::vector<std::string> mentions;  // substrings of the one-line error after the file name
};

class BrokenConfig : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BrokenConfig, FailsWithOneLineNamingFileAndField) {
  const BadConfig& c = GetParam();
  std::string path = c.text ? write_temp(c.name, c.text)
                            : std::string(MOX_SOURCE_DIR) + "/examples/no_such_config.toml";
  CliResult r = run_cli({"summary", path});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_EQ(lines_of(r.err).size(), 1u) << r.err;
  EXPECT_EQ(r.err.back(), '\n');
  std::string prefix = "mox: error: " + path;
  EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
  for (const std::string& m : c.mentions) EXPECT_NE(r.err.find(m), std::string::npos) << m << "\n" << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    Errors, BrokenConfig,
    ::testing::Values(
        BadConfig{"missing", nullptr, {": cannot open"}},
        BadConfig{"syntax.toml",
                  "[model]\ninput_shape = [1, 28, 28\n",
                  {":2:", "invalid TOML"}},
        BadConfig{"unknown_type.toml",
                  "[model]\ninput_shape = [784]\n"
                  "[[model.layers]]\ntype = \"Dense\"\nunits = 10\n"
                  "[[model.layers]]\ntype = \"Densee\"\nunits = 3\n",
                  {": model.layers[1].type: unknown layer type \"Densee\"", "Dense"}},
        BadConfig{"wrong_type.toml",
                  "[model]\ninput_shape = [1, 28, 28]\n"
                  "[[model.layers]]\ntype = \"Conv2d\"\nout_channels = 4\nkernel_size = 3\n"
                  "[[model.layers]]\ntype = \"MaxPool2d\"\nkernel_size = 2\n"
                  "[[model.layers]]\ntype = \"Conv2d\"\nout_channels = 4\nkernel_size = \"x\"\n",
                  {": model.layers[2].kernel_size: expected an integer", "got \"x\"", "line 13"}},
        BadConfig{"wrong_type_units.toml",
                  "[model]\ninput_shape = [784]\n[[model.layers]]\ntype = \"Dense\"\nunits = 1.5\n",
                  {": model.layers[0].units: expected an integer, got 1.5"}},
        BadConfig{"shape_mismatch.toml",
                  "[model]\ninput_shape = [1, 28, 28]\n"
                  "[[model.layers]]\ntype = \"Flatten\"\n"
                  "[[model.layers]]\ntype = \"Conv2D\"\nfilters = 8\nkernel_size = 3\n",
                  {": model.layers[1]: Conv2d expects input (None, C, H, W)", "(None, 784)"}},
        BadConfig{"kernel_too_big.toml",
                  "[model]\ninput_shape = [1, 4, 4]\n"
                  "[[model.layers]]\ntype = \"Conv2d\"\nout_channels = 2\nkernel_size = 5\n",
                  {": model.layers[0]: Conv2d:", "too small for kernel 5"}},
        BadConfig{"in_features_mismatch.toml",
                  "[model]\ninput_shape = [784]\n"
                  "[[model.layers]]\ntype = \"Linear\"\nin_features = 100\nout_features = 10\n",
                  {": model.layers[0].in_features: is 100", "784"}},
        BadConfig{"unknown_field.toml",
                  "[model]\ninput_shape = [784]\n"
                  "[[model.layers]]\ntype = \"Dense\"\nunits = 10\nkernal = 3\n",
                  {": model.layers[0].kernal: unknown field for Dense", "units"}},
        BadConfig{"unknown_model_key.toml",
                  "[model]\ninput_shape = [784]\ninput_shap = [3]\n"
                  "[[model.layers]]\ntype = \"Dense\"\nunits = 10\n",
                  {": model.input_shap: unknown field"}},
        BadConfig{"unknown_section.toml",
                  "[model]\ninput_shape = [784]\n[[model.layers]]\ntype = \"Dense\"\nunits = 10\n"
                  "[optimiser]\nlr = 0.1\n",
                  {": optimiser: unknown field", "optimizer"}},
        BadConfig{"missing_field.toml",
                  "[model]\ninput_shape = [784]\n[[model.layers]]\ntype = \"Dense\"\n",
                  {": model.layers[0].out_features: required field is missing", "units"}},
        BadConfig{"missing_model.toml", "[train]\nepochs = 3\n",
                  {": model: required table [model] is missing"}},
        BadConfig{"no_layers.toml", "[model]\ninput_shape = [784]\n",
                  {": model.layers: required field is missing"}},
        BadConfig{"bad_input_shape.toml",
                  "[model]\ninput_shape = [1, 0]\n[[model.layers]]\ntype = \"Flatten\"\n",
                  {": model.input_shape: every dim must be a positive integer"}},
        BadConfig{"bad_activation.toml",
                  "[model]\ninput_shape = [784]\n"
                  "[[model.layers]]\ntype = \"Dense\"\nunits = 10\nactivation = \"relux\"\n",
                  {": model.layers[0].activation: unknown activation \"relux\""}},
        BadConfig{"synonyms.toml",
                  "[model]\ninput_shape = [784]\n"
                  "[[model.layers]]\ntype = \"Dense\"\nunits = 10\nout_features = 10\n",
                  {": model.layers[0].units: conflicts with out_features"}},
        BadConfig{"rnn_on_flat.toml",
                  "[model]\ninput_shape = [20]\n"
                  "[[model.layers]]\ntype = \"SimpleRNN\"\nunits = 4\n",
                  {": model.layers[0]: RNN expects input (None, T, C)", "(None, 20)"}},
        BadConfig{"dropout_range.toml",
                  "[model]\ninput_shape = [20]\n[[model.layers]]\ntype = \"Dropout\"\nrate = 1.5\n",
                  {": model.layers[0].rate: must be in [0, 1]"}}),
    [](const ::testing::TestParamInfo<BadConfig>& info) {
      std::string n = info.param.name;
      return n.substr(0, n.find('.'));
    });

}  // namespace
}  // namespace mox::testing
