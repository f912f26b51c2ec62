// mox summary CONFIG: builds the model a config describes and prints its layers, output
// shapes and parameter counts (Keras's model.summary()).
#include <iostream>
#include <memory>
#include <string>

#include "command.h"
#include "mox/io/config.h"
#include "mox/nn/models/build_model.h"
#include "mox/nn/models/summary.h"

namespace mox::cli {

Command add_summary_command(CLI::App& parent) {
  auto config_path = std::make_shared<std::string>();
  CLI::App* app = parent.add_subcommand(
      "summary", "Print a model's layers, output shapes and parameter counts");
  app->add_option("CONFIG", *config_path, "TOML config with a [model] table")->required();
  app->footer("Example: mox summary examples/mlp.toml");
  return {app, [config_path] {
            io::Config config = io::load_config(*config_path);
            auto model = nn::build_model(config.model);
            std::cout << nn::summarize(*model, nn::model_input_shape(config.model),
                                       config.model.name)
                             .str();
            return 0;
          }};
}

}  // namespace mox::cli
