// mox train CONFIG [--set key=value]... [--out DIR] [--resume DIR] [--seed N] [--init W]
//                  [--epochs N] [--steps N] [--save-every N] [--threads N] [--overwrite]
// and mox cv CONFIG --folds K: training runs described by one TOML config (train/run.h).
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "command.h"
#include "mox/backend/backend.h"
#include "mox/train/run.h"

namespace mox::cli {

namespace {

struct TrainArgs {
  std::string config, out, resume, init, device, precision;
  std::vector<std::string> sets;
  int64_t seed = -1, epochs = 0, steps = 0, save_every = 0, threads = 0;
  bool overwrite = false, quiet = false;
};

}  // namespace

Command add_train_command(CLI::App& parent) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* app = parent.add_subcommand("train", "Train the model a config describes and write a run folder");
  app->add_option("CONFIG", a->config, "TOML config ([model], [data], [train], [optimizer], ...)");
  app->add_option("--set", a->sets, "Override a config value: key=value (e.g. train.epochs=3); repeatable")
      ->allow_extra_args(false);
  app->add_option("--out", a->out, "Run folder (default runs/<model name>)");
  app->add_option("--resume", a->resume, "Continue the run in this folder from its last checkpoint");
  app->add_option("--seed", a->seed, "Seed for initialisation, splits, shuffling, dropout and augmentation")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--init", a->init, "Start from these weights (safetensors, PyTorch state_dict names)");
  app->add_option("--epochs", a->epochs, "Number of epochs (same as --set train.epochs=N)")->check(CLI::PositiveNumber);
  app->add_option("--steps", a->steps, "At most N steps per epoch (short runs)")->check(CLI::PositiveNumber);
  app->add_option("--save-every", a->save_every, "Also checkpoint every N steps")->check(CLI::PositiveNumber);
  app->add_option("--threads", a->threads, "CPU threads (default: MOX_NUM_THREADS or all cores)")
      ->check(CLI::PositiveNumber);
  app->add_flag("--overwrite", a->overwrite, "Reuse a run folder that already holds a run");
  add_device_option(app, a->device);
  add_precision_option(app, a->precision, "Training precision: f32, or bf16/f16 autocast with f32 master weights");
  app->add_flag("-q,--quiet", a->quiet, "No progress output");
  app->footer("Example: mox train examples/mlp.toml --out runs/mlp\n"
              "         mox train --resume runs/mlp --set train.epochs=10");
  return {app, [a] {
            if (a->config.empty() && a->resume.empty())
              throw Error("train", "give a CONFIG, or --resume DIR (see mox train --help)");
            if (!a->config.empty() && !a->resume.empty())
              throw Error("train", "give either a CONFIG or --resume DIR, not both (a resumed run uses its own config.toml)");
            if (a->threads > 0) set_num_threads(int(a->threads));
            train::TrainOptions o;
            o.config_path = a->config;
            o.overrides = a->sets;
            if (a->epochs > 0) o.overrides.push_back("train.epochs=" + std::to_string(a->epochs));
            o.out_dir = a->out;
            o.resume_dir = a->resume;
            if (a->seed >= 0) o.seed = uint64_t(a->seed);
            o.init_weights = a->init;
            o.save_every = a->save_every;
            o.steps = a->steps;
            o.overwrite = a->overwrite;
            o.verbose = a->quiet ? 0 : 1;
            o.device = a->device;
            o.precision = a->precision;
            train::run_train(o);
            return 0;
          }};
}

Command add_cv_command(CLI::App& parent) {
  auto a = std::make_shared<TrainArgs>();
  auto folds = std::make_shared<int64_t>(5);
  CLI::App* app = parent.add_subcommand("cv", "k-fold cross-validation of a config on its training data");
  app->add_option("CONFIG", a->config, "TOML config")->required();
  app->add_option("--folds,-k", *folds, "Number of folds (default 5)")->check(CLI::Range(2, 1000));
  app->add_option("--set", a->sets, "Override a config value: key=value; repeatable");
  app->add_option("--seed", a->seed, "Seed")->check(CLI::NonNegativeNumber);
  app->add_option("--epochs", a->epochs, "Number of epochs per fold")->check(CLI::PositiveNumber);
  app->add_option("--steps", a->steps, "At most N steps per epoch")->check(CLI::PositiveNumber);
  app->add_option("--out", a->out, "Folder for cv.json");
  app->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber);
  app->add_flag("-q,--quiet", a->quiet, "Only the final table");
  add_device_option(app, a->device);
  add_precision_option(app, a->precision, "Training precision: f32, or bf16/f16 autocast");
  app->footer("Example: mox cv examples/regression.toml --folds 5");
  return {app, [a, folds] {
            if (a->threads > 0) set_num_threads(int(a->threads));
            train::CvOptions o;
            o.config_path = a->config;
            o.overrides = a->sets;
            if (a->epochs > 0) o.overrides.push_back("train.epochs=" + std::to_string(a->epochs));
            o.folds = *folds;
            if (a->seed >= 0) o.seed = uint64_t(a->seed);
            o.steps = a->steps;
            o.out_dir = a->out;
            o.verbose = a->quiet ? 0 : 1;
            o.device = a->device;
            o.precision = a->precision;
            train::CvResult r = train::run_cv(o);
            std::printf("%-20s", "fold");
            for (const auto& [k, v] : r.mean) std::printf(" %12s", k.c_str());
            std::printf("\n");
            for (size_t f = 0; f < r.folds.size(); f++) {
              std::printf("%-20zu", f + 1);
              for (const auto& [k, m] : r.mean)
                for (const auto& [k2, v] : r.folds[f])
                  if (k2 == k) std::printf(" %12.4f", v);
              std::printf("\n");
            }
            std::printf("%-20s", "mean");
            for (const auto& [k, v] : r.mean) std::printf(" %12.4f", v);
            std::printf("\n%-20s", "std");
            for (const auto& [k, v] : r.std) std::printf(" %12.4f", v);
            std::printf("\n");
            return 0;
          }};
}

}  // namespace mox::cli
