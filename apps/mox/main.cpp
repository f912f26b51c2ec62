// mox: the command line. Each subcommand lives in its own cmd_<name>.cpp.
// Exit codes: 0 success, 1 a failure while running (bad config, missing file, ...),
// 2 a usage error (unknown option, missing argument). Errors are one line on stderr:
// "mox: error: <file>: <field>: <what went wrong>".
#include <exception>
#include <iostream>
#include <string>
#include <functional>
#include <vector>

#include "command.h"
#include "mox/backend/info.h"

namespace {

// Keeps an error to one line whatever the message holds.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

int fail(const std::string& message, int code) {
  std::cerr << "mox: error: " << one_line(message) << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mox: train, inspect and serve neural networks (a C++ deep-learning library)",
               "mox"};
  app.set_version_flag("--version", std::function<std::string()>([] {
    return std::string("mox ") + MOX_VERSION + "\n" + mox::build_summary() + "\n" + mox::devices_summary();
  }));
  // At most one command; "none given" is reported after parsing, so that an unknown
  // option is named as such rather than hidden behind "a subcommand is required".
  app.require_subcommand(0, 1);
  std::vector<mox::cli::Command> commands = {
      mox::cli::add_train_command(app), mox::cli::add_eval_command(app),
      mox::cli::add_predict_command(app), mox::cli::add_cv_command(app),
      mox::cli::add_summary_command(app), mox::cli::add_tokenizer_command(app),
      mox::cli::add_pretrain_command(app), mox::cli::add_finetune_command(app),
      mox::cli::add_generate_command(app),
      mox::cli::add_export_command(app), mox::cli::add_quantize_command(app),
      mox::cli::add_prune_command(app), mox::cli::add_distill_command(app),
      mox::cli::add_compress_report_command(app),
      mox::cli::add_keys_command(app), mox::cli::add_usage_command(app), mox::cli::add_serve_command(app),
      mox::cli::add_bench_serve_command(app), mox::cli::add_cost_command(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(std::string(e.what()) + " (see mox --help)", 2);
  }

  try {
    for (const mox::cli::Command& c : commands)
      if (c.app->parsed()) return c.run();
    return fail("no command given (see mox --help)", 2);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  } catch (...) {
    return fail("unknown error", 1);
  }
}
