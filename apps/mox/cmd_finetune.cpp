// mox finetune CONFIG [--set key=value]... [--out DIR] [--threads N] [--overwrite] [--quiet]
// A BERT text classifier on fortune categories, from a pre-trained encoder or from scratch
// (train/finetune.h).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "mox/backend/backend.h"
#include "mox/train/finetune.h"

namespace mox::cli {

Command add_finetune_command(CLI::App& parent) {
  struct Args {
    std::string config, out, device, precision;
    std::vector<std::string> sets;
    int64_t threads = 0;
    bool overwrite = false, quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand("finetune", "Fine-tune a (pre-trained) BERT encoder into a text classifier");
  app->add_option("CONFIG", a->config, "TOML config ([model] pretrained = RUN, [data] categories, [train])")->required();
  app->add_option("--set", a->sets, "Override a config value: key=value; repeatable")->allow_extra_args(false);
  app->add_option("--out", a->out, "Run folder (default runs/<config name>)");
  app->add_option("--threads", a->threads, "CPU threads")->check(CLI::PositiveNumber);
  add_device_option(app, a->device);
  add_precision_option(app, a->precision, "Training precision: f32, or bf16/f16 autocast");
  app->add_flag("--overwrite", a->overwrite, "Replace an existing run folder");
  app->add_flag("-q,--quiet", a->quiet, "No progress output");
  app->footer("Example: mox finetune examples/bert_finetune.toml --out runs/bert_cls\n"
              "         mox finetune examples/bert_finetune.toml --set model.pretrained=\"\" --out runs/bert_scratch");
  return {app, [a] {
            if (a->threads > 0) set_num_threads(int(a->threads));
            train::FinetuneOptions o;
            o.overrides = a->sets;
            o.out = a->out;
            o.overwrite = a->overwrite;
            o.device = a->device;
            o.precision = a->precision;
            o.log = a->quiet ? nullptr : &std::cout;
            train::run_finetune(a->config, o);
            return 0;
          }};
}

}  // namespace mox::cli
