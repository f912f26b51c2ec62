// mox pretrain CONFIG [--set key=value]... [--out DIR] [--resume DIR] [--steps N] [--seed N]
//                     [--stop-after N] [--threads N] [--overwrite] [--quiet]
// Language-model pre-training described by one TOML config (train/pretrain.h).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "mox/tensor/error.h"
#include "mox/train/pretrain.h"
#include "mox/train/progress.h"

namespace mox::cli {

namespace {

struct PretrainArgs {
  std::string config, out, resume, device, precision;
  std::vector<std::string> sets;
  int64_t seed = -1, steps = 0, threads = 0, stop_after = 0;
  bool overwrite = false, quiet = false;
};

}  // namespace

Command add_pretrain_command(CLI::App& parent) {
  auto a = std::make_shared<PretrainArgs>();
  CLI::App* app = parent.add_subcommand("pretrain", "Pre-train a GPT (next token) language model on a text corpus");
  app->add_option("CONFIG", a->config, "TOML config ([model] type = \"gpt\", [corpus], [train], [optimizer], [scheduler])");
  app->add_option("--set", a->sets, "Override a config value: key=value (e.g. train.steps=100); repeatable")
      ->allow_extra_args(false);
  app->add_option("--out", a->out, "Run folder (default runs/<config name>)");
  app->add_option("--resume", a->resume, "Continue the run in this folder from its last checkpoint");
  app->add_option("--steps", a->steps, "Total optimizer steps (same as --set train.steps=N)")->check(CLI::PositiveNumber);
  app->add_option("--stop-after", a->stop_after, "Stop after N steps of this call; the run stays resumable")
      ->check(CLI::PositiveNumber);
  app->add_option("--seed", a->seed, "Seed for initialisation, batches and dropout")->check(CLI::NonNegativeNumber);
  add_device_option(app, a->device);
  add_precision_option(app, a->precision, "Training precision: f32, or bf16/f16 autocast with f32 master weights");
  app->add_option("--threads", a->threads, "CPU threads (default: MOX_NUM_THREADS or all cores)")
      ->check(CLI::PositiveNumber);
  app->add_flag("--overwrite", a->overwrite, "Reuse a run folder that already holds a run");
  app->add_flag("-q,--quiet", a->quiet, "No progress output");
  app->footer("Example: mox pretrain examples/gpt_fortunes.toml --out runs/gpt\n"
              "         mox pretrain --resume runs/gpt --steps 1000");
  return {app, [a] {
            if (a->config.empty() && a->resume.empty())
              throw Error("pretrain", "give a CONFIG, or --resume DIR (see mox pretrain --help)");
            if (!a->config.empty() && !a->resume.empty())
              throw Error("pretrain", "give either a CONFIG or --resume DIR, not both (a resumed run uses its own config.toml)");
            train::PretrainOptions o;
            o.overrides = a->sets;
            o.out = a->resume.empty() ? a->out : a->resume;
            o.resume = !a->resume.empty();
            o.overwrite = a->overwrite;
            if (a->steps > 0) o.steps = a->steps;
            if (a->seed >= 0) o.seed = uint64_t(a->seed);
            if (a->stop_after > 0) o.stop_after = a->stop_after;
            o.threads = int(a->threads);
            o.device = a->device;
            o.precision = a->precision;
            o.log = a->quiet ? nullptr : &std::cout;
            o.interactive = train::ProgressBar::stdout_is_terminal();
            train::run_pretrain(a->config, o);
            return 0;
          }};
}

}  // namespace mox::cli
