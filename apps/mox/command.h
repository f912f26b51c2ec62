#pragma once
// A subcommand of `mox`: add_*_command registers its options with the parser and returns
// the function that does the work. main runs that function after parsing succeeded, outside
// CLI11, so that every failure reaches main's single error handler (one line, exit 1).
#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace mox::cli {

struct Command {
  CLI::App* app;             // the subcommand's parser (parsed() tells whether it was chosen)
  std::function<int()> run;  // returns the exit code
};

// --device and (for commands that train or run models) --precision, the same on every
// command that computes.
inline void add_device_option(CLI::App* app, std::string& device) {
  app->add_option("--device", device, "Where to compute: cpu, cuda (cuda:0); default: the config's or cpu");
}
inline void add_precision_option(CLI::App* app, std::string& precision, const char* what) {
  app->add_option("--precision", precision, what)->check(CLI::IsMember({"f32", "bf16", "f16"}));
}

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
Command add_quantize_command(CLI::App& parent);
Command add_prune_command(CLI::App& parent);
Command add_distill_command(CLI::App& parent);
Command add_compress_report_command(CLI::App& parent);
Command add_keys_command(CLI::App& parent);
Command add_usage_command(CLI::App& parent);
Command add_serve_command(CLI::App& parent);
Command add_bench_serve_command(CLI::App& parent);
Command add_cost_command(CLI::App& parent);

}  // namespace mox::cli
