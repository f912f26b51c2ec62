// mox quantize --model DIR --mode ptq-int8|dynamic-int8|w8|w4|qat [--calib N] ...
// mox prune --model DIR --sparsity 0.8 [--structured] [--finetune-epochs N] ...
// mox distill --teacher DIR --student CONFIG [--temperature T] [--alpha A] ...
// mox compress-report RUN... [--out DIR]
// Model compression over run folders (train/compress.h); each command writes a new run
// folder that mox eval / predict / generate load like any other.
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "mox/backend/backend.h"
#include "mox/io/file_util.h"
#include "mox/train/compress.h"
#include "mox/train/pretrain.h"
#include "mox/train/progress.h"
#include "mox/train/run.h"

namespace mox::cli {

namespace {

std::vector<std::string> split_commas(const std::vector<std::string>& v) {
  std::vector<std::string> out;
  for (const auto& s : v) {
    std::stringstream ss(s);
    std::string part;
    while (std::getline(ss, part, ','))
      if (!part.empty()) out.push_back(part);
  }
  return out;
}

}  // namespace

Command add_quantize_command(CLI::App& parent) {
  struct Args {
    std::string model, out, mode, calibration = "minmax", activations = "tensor";
    std::vector<std::string> keep_float;
    int64_t calib = 32, batch = 64, epochs = 1, steps = 0, threads = 0;
    double percentile = 99.99, lr = 0;
    bool overwrite = false, quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("quantize", "Quantise a trained run (int8, weight-only w8/w4, or QAT)");
  app->add_option("--model", a->model, "Run folder written by mox train or mox pretrain")->required();
  app->add_option("--mode", a->mode,
                  "ptq-int8 (static int8, calibrated), dynamic-int8 (Linear layers, activations per call), "
                  "w8 / w4 (weight-only blocks of 32, for GPT generation), qat (fake-quant fine-tuning, then int8)")
      ->required()
      ->check(CLI::IsMember({"ptq-int8", "dynamic-int8", "w8", "w4", "qat"}));
  app->add_option("--calib", a->calib, "Calibration batches of the training split (ptq-int8, qat; default 32)")
      ->check(CLI::PositiveNumber);
  app->add_option("--batch-size", a->batch, "Calibration batch size (default 64)")->check(CLI::PositiveNumber);
  app->add_option("--calibration", a->calibration, "minmax (default), percentile or entropy (KL)")
      ->check(CLI::IsMember({"minmax", "percentile", "entropy"}));
  app->add_option("--percentile", a->percentile, "Upper percentile kept by --calibration percentile (default 99.99)");
  app->add_option("--activations", a->activations, "dynamic-int8: quantise activations per tensor (default) or per token")
      ->check(CLI::IsMember({"tensor", "token"}));
  app->add_option("--keep-float", a->keep_float,
                  "Layers left in float: module names (e.g. 0,9) or first / last; comma-separated or repeated");
  app->add_option("--finetune-epochs", a->epochs, "qat: fine-tuning epochs (default 1)")->check(CLI::PositiveNumber);
  app->add_option("--steps", a->steps, "qat: at most N steps per epoch")->check(CLI::PositiveNumber);
  app->add_option("--lr", a->lr, "qat: learning rate (default: a tenth of the run's)")->check(CLI::PositiveNumber);
  app->add_option("--out", a->out, "New run folder (default <model>-<mode>)");
  app->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber);
  app->add_flag("--overwrite", a->overwrite, "Replace an existing output folder");
  app->add_flag("-q,--quiet", a->quiet, "No progress output");
  app->footer("Example: mox quantize --model runs/cnn --mode ptq-int8 --calib 32\n"
              "         mox quantize --model runs/gpt --mode w4 && mox generate --model runs/gpt-w4");
  return {app, [a] {
            if (a->threads > 0) set_num_threads(int(a->threads));
            train::QuantizeRunOptions o;
            o.model_dir = a->model;
            o.out_dir = a->out;
            o.overwrite = a->overwrite;
            o.verbose = a->quiet ? 0 : 1;
            o.config.mode = a->mode;
            o.config.activations = a->activations;
            o.config.calibration = compress::calibration_from_name(a->calibration);
            o.config.percentile = a->percentile;
            o.config.skip = split_commas(a->keep_float);
            o.calib_batches = a->calib;
            o.batch_size = a->batch;
            o.finetune_epochs = a->epochs;
            o.steps_per_epoch = a->steps;
            o.lr = a->lr;
            train::run_quantize(o);
            return 0;
          }};
}

Command add_prune_command(CLI::App& parent) {
  struct Args {
    std::string model, out;
    std::vector<std::string> skip;
    double sparsity = 0.8, lr = 0;
    int64_t epochs = 1, steps = 0, every = 0, threads = 0, gpt_steps = 0;
    bool structured = false, global = false, overwrite = false, quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("prune", "Prune a trained run (magnitude sparsity, or smaller layers) and fine-tune it");
  app->add_option("--model", a->model, "Run folder written by mox train or mox pretrain (GPT)")->required();
  app->add_option("--sparsity", a->sparsity,
                  "Fraction of weights set to zero (unstructured) or of units removed (--structured); default 0.8");
  app->add_flag("--structured", a->structured,
                "Remove whole conv filters / hidden units by L1 norm: a smaller dense model");
  app->add_flag("--global", a->global, "Unstructured: one magnitude threshold over all layers");
  app->add_option("--skip", a->skip, "Layers left alone (module names; comma-separated or repeated)");
  app->add_option("--finetune-epochs", a->epochs, "Fine-tuning epochs (0: prune only; default 1)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--finetune-steps", a->gpt_steps, "GPT runs (--structured): pre-training steps after pruning (default 0)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--steps", a->steps, "At most N steps per epoch")->check(CLI::PositiveNumber);
  app->add_option("--prune-every", a->every, "Unstructured: raise the sparsity every k steps (default: 20 increments)")
      ->check(CLI::PositiveNumber);
  app->add_option("--lr", a->lr, "Fine-tuning learning rate (default: the run's)")->check(CLI::PositiveNumber);
  app->add_option("--out", a->out, "New run folder (default <model>-sparse80 / -structured50)");
  app->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber);
  app->add_flag("--overwrite", a->overwrite, "Replace an existing output folder");
  app->add_flag("-q,--quiet", a->quiet, "No progress output");
  app->footer("Example: mox prune --model runs/mlp --sparsity 0.8 --finetune-epochs 2\n"
              "         mox prune --model runs/cnn --sparsity 0.5 --structured --finetune-epochs 2\n"
              "         mox prune --model runs/gpt --sparsity 0.25 --structured --finetune-steps 200  (heads and MLP units)");
  return {app, [a] {
            if (a->threads > 0) set_num_threads(int(a->threads));
            train::PruneRunOptions o;
            o.model_dir = a->model;
            o.out_dir = a->out;
            o.overwrite = a->overwrite;
            o.verbose = a->quiet ? 0 : 1;
            o.sparsity = a->sparsity;
            o.structured = a->structured;
            o.global = a->global;
            o.skip = split_commas(a->skip);
            o.finetune_epochs = a->epochs;
            o.finetune_steps = a->gpt_steps;
            o.steps_per_epoch = a->steps;
            o.frequency = a->every;
            o.lr = a->lr;
            train::run_prune(o);
            return 0;
          }};
}

Command add_distill_command(CLI::App& parent) {
  struct Args {
    std::string teacher, student, out;
    std::vector<std::string> sets;
    double temperature = -1, alpha = -1;
    int64_t seed = -1, epochs = 0, steps = 0, threads = 0;
    bool overwrite = false, quiet = false, cache = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("distill", "Train a student config with a trained teacher's soft targets");
  app->add_option("--teacher", a->teacher, "The teacher: a run folder (mox train, or mox pretrain for a GPT)")->required();
  app->add_option("--student", a->student, "The student's TOML config (as for mox train / mox pretrain)")->required();
  app->add_option("--temperature", a->temperature, "Softmax temperature T (default 4 for classifiers, 2 for GPT)")
      ->check(CLI::PositiveNumber);
  app->add_option("--alpha", a->alpha, "Weight of the distillation term (default 0.9 for classifiers, 0.5 for GPT)")
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--set", a->sets, "Override a student config value: key=value; repeatable")->allow_extra_args(false);
  app->add_flag("--cache-teacher", a->cache,
                "Classifiers without augmentation: compute the teacher's logits once for the training set");
  app->add_option("--epochs", a->epochs, "Classifiers: epochs (same as --set train.epochs=N)")->check(CLI::PositiveNumber);
  app->add_option("--steps", a->steps, "Classifiers: at most N steps per epoch; GPT: total steps")->check(CLI::PositiveNumber);
  app->add_option("--seed", a->seed, "Seed")->check(CLI::NonNegativeNumber);
  app->add_option("--out", a->out, "Run folder");
  app->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber);
  app->add_flag("--overwrite", a->overwrite, "Reuse a run folder that already holds a run");
  app->add_flag("-q,--quiet", a->quiet, "No progress output");
  app->footer("Example: mox distill --teacher runs/cnn --student examples/cnn_small.toml --out runs/cnn_small_kd");
  return {app, [a] {
            if (a->threads > 0) set_num_threads(int(a->threads));
            const std::string text = io::read_file(a->student);
            const bool lm = text.find("[corpus]") != std::string::npos;  // a pre-training config
            if (lm) {
              train::PretrainOptions o;
              o.overrides = a->sets;
              o.out = a->out;
              o.overwrite = a->overwrite;
              if (a->steps > 0) o.steps = a->steps;
              if (a->seed >= 0) o.seed = uint64_t(a->seed);
              o.threads = int(a->threads);
              o.log = a->quiet ? nullptr : &std::cout;
              o.interactive = train::ProgressBar::stdout_is_terminal();
              o.teacher_dir = a->teacher;
              if (a->temperature > 0) o.distill_temperature = a->temperature;
              if (a->alpha >= 0) o.distill_alpha = a->alpha;
              train::run_pretrain(a->student, o);
              return 0;
            }
            train::TrainOptions o;
            o.config_path = a->student;
            o.overrides = a->sets;
            if (a->epochs > 0) o.overrides.push_back("train.epochs=" + std::to_string(a->epochs));
            o.out_dir = a->out;
            if (a->seed >= 0) o.seed = uint64_t(a->seed);
            o.steps = a->steps;
            o.overwrite = a->overwrite;
            o.verbose = a->quiet ? 0 : 1;
            o.teacher_dir = a->teacher;
            if (a->temperature > 0) o.distill_temperature = a->temperature;
            if (a->alpha >= 0) o.distill_alpha = a->alpha;
            o.cache_teacher_logits = a->cache;
            train::run_train(o);
            return 0;
          }};
}

Command add_compress_report_command(CLI::App& parent) {
  struct Args {
    std::vector<std::string> runs;
    std::string out = ".";
    int64_t reps = 200, threads = 0, gen_tokens = 200;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand(
      "compress-report", "Measure runs (accuracy, size, latency) and write a trade-off table and chart");
  app->add_option("RUN", a->runs, "Run folders: the float baseline first, then its compressed variants")->required();
  app->add_option("--out", a->out, "Folder for compress_report.md / .json / .svg (default .)");
  app->add_option("--reps", a->reps, "Batch-1 timing repetitions (default 200)")->check(CLI::PositiveNumber);
  app->add_option("--gen-tokens", a->gen_tokens, "GPT: tokens generated per timing (default 200)")->check(CLI::PositiveNumber);
  app->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber);
  app->footer("Example: mox compress-report runs/cnn runs/cnn-ptq-int8 runs/cnn-structured50 --out reports/cnn");
  return {app, [a] {
            if (a->threads > 0) set_num_threads(int(a->threads));
            train::MeasureOptions mo;
            mo.reps_b1 = a->reps;
            mo.reps_b256 = std::max<int64_t>(5, a->reps / 10);
            mo.gen_tokens = a->gen_tokens;
            std::vector<train::RunMeasure> rows;
            for (const auto& r : a->runs) {
              std::cerr << "measuring " << r << " ...\n";
              rows.push_back(train::measure_run(r, mo));
            }
            std::cout << train::write_compress_report(rows, a->out);
            return 0;
          }};
}

}  // namespace mox::cli
