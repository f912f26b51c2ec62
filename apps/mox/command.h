#pragma once
// A subcommand of `mox`: add_*_command registers its options with the parser and returns
// the function that does the work. main runs that function after parsing succeeded, outside
// CLI11, so that every failure reaches main's single error handler (one line, exit 1).
#include <CLI/CLI.hpp>

#include <functional>

namespace mox::cli {

struct Command {
  CLI::App* app;             // the subcommand's parser (parsed() tells whether it was chosen)
  std::function<int()> run;  // returns the exit code
};

Command add_summary_command(CLI::App& parent);
Command add_train_command(CLI::App& parent);
Command add_cv_command(CLI::App& parent);
Command add_eval_command(CLI::App& parent);
Command add_predict_command(CLI::App& parent);
Command add_tokenizer_command(CLI::App& parent);
Command add_pretrain_command(CLI::App& parent);
Command add_finetune_command(CLI::App& parent);
Command add_generate_command(CLI::App& parent);
Command add_export_command(CLI::App& parent);

}  // namespace mox::cli
