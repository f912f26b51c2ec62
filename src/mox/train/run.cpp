#include "mox/train/run.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mox/backend/backend.h"
#include "mox/compress/quantize.h"
#include "mox/compress/sparse.h"
#include "mox/data/split.h"
#include "mox/io/file_util.h"
#include "mox/nn/models/build_model.h"
#include "mox/nn/models/keras_init.h"
#include "mox/nn/models/summary.h"
#include "mox/nn/serialize.h"
#include "mox/ops/ops.h"
#include "mox/optim/optim.h"
#include "mox/tensor/generator.h"
#include "mox/train/compress.h"
#include "mox/train/metrics.h"
#include "mox/train/pretrain.h"
#include "mox/train/report.h"

namespace mox::train {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

json metrics_json(const MetricValues& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = std::isfinite(v) ? json(v) : json(nullptr);
  return j;
}

void log_line(std::ostream* log, const std::string& s) {
  if (log) *log << s << "\n" << std::flush;
}

std::string task_name(data::Task t) { return t == data::Task::Regression ? "regression" : "classification"; }

// ---- [optimizer]
std::shared_ptr<optim::Optimizer> make_optimizer(const io::ConfigTable& t, std::vector<Tensor> params) {
  std::string type = t.get_string("type", "adam");
  for (auto& c : type) c = char(std::tolower(static_cast<unsigned char>(c)));
  const double lr = t.get_float("lr", type == "sgd" ? 0.01 : 1e-3);
  if (lr <= 0) throw t.error("lr", "must be > 0");
  std::shared_ptr<optim::Optimizer> opt;
  if (type == "adam" || type == "adamw") {
    optim::AdamOptions o = type == "adamw" ? optim::AdamOptions(optim::AdamWOptions(lr)) : optim::AdamOptions(lr);
    if (t.has("betas")) {
      const io::ConfigValue* v = t.find("betas");
      if (!v->is_array() || std::get<io::ConfigArray>(v->v).size() != 2)
        throw t.value_error(*v, "expected [beta1, beta2], got " + v->describe());
      auto& a = std::get<io::ConfigArray>(v->v);
      auto num = [&](const io::ConfigValue& x) {
        if (!x.is_number()) throw t.value_error(x, "expected a number, got " + x.describe());
        return x.is_int() ? double(std::get<int64_t>(x.v)) : std::get<double>(x.v);
      };
      o.betas(num(a[0]), num(a[1]));
    }
    o.eps(t.get_float("eps", 1e-8));
    o.weight_decay(t.get_float("weight_decay", o.weight_decay()));
    o.amsgrad(t.get_bool("amsgrad", false));
    if (type == "adamw") opt = std::make_shared<optim::AdamW>(std::move(params), o);
    else opt = std::make_shared<optim::Adam>(std::move(params), o);
  } else if (type == "sgd") {
    optim::SGDOptions o(lr);
    o.momentum(t.get_float("momentum", 0)).dampening(t.get_float("dampening", 0));
    o.weight_decay(t.get_float("weight_decay", 0)).nesterov(t.get_bool("nesterov", false));
    opt = std::make_shared<optim::SGD>(std::move(params), o);
  } else if (type == "rmsprop") {
    optim::RMSpropOptions o(lr);
    o.alpha(t.get_float("alpha", 0.99)).eps(t.get_float("eps", 1e-8));
    o.weight_decay(t.get_float("weight_decay", 0)).momentum(t.get_float("momentum", 0));
    o.centered(t.get_bool("centered", false));
    opt = std::make_shared<optim::RMSprop>(std::move(params), o);
  } else if (type == "adagrad") {
    optim::AdagradOptions o(lr);
    o.lr_decay(t.get_float("lr_decay", 0)).weight_decay(t.get_float("weight_decay", 0));
    o.initial_accumulator_value(t.get_float("initial_accumulator_value", 0)).eps(t.get_float("eps", 1e-10));
    opt = std::make_shared<optim::Adagrad>(std::move(params), o);
  } else {
    throw t.error("type", "unknown optimizer \"" + type + "\" (known: adam, adamw, sgd, rmsprop, adagrad)");
  }
  t.check_no_unknown_keys("[optimizer] " + type);
  return opt;
}

// ---- [scheduler]
CallbackPtr make_scheduler(const io::ConfigTable& t, optim::Optimizer& opt, int64_t epochs, int64_t steps_per_epoch) {
  std::string type = t.get_string("type");
  std::string per = t.get_string("per", type == "cosine" ? "step" : "epoch");
  if (per != "epoch" && per != "step") throw t.error("per", "expected \"epoch\" or \"step\", got \"" + per + "\"");
  const bool per_step = per == "step";
  // The optimizer outlives the scheduler: both live as long as the experiment.
  CallbackPtr cb;
  if (type == "step") {
    auto s = std::make_shared<optim::StepLR>(opt, t.get_int("step_size"), t.get_float("gamma", 0.1));
    cb = std::make_shared<LearningRateScheduler>(s, per_step);
  } else if (type == "exponential") {
    auto s = std::make_shared<optim::ExponentialLR>(opt, t.get_float("gamma"));
    cb = std::make_shared<LearningRateScheduler>(s, per_step);
  } else if (type == "cosine") {
    int64_t total = t.get_int("total_steps", per_step ? epochs * steps_per_epoch : epochs);
    auto s = std::make_shared<optim::CosineAnnealingLR>(opt, total, t.get_int("warmup_steps", 0),
                                                        t.get_float("min_lr", 0.0));
    cb = std::make_shared<LearningRateScheduler>(s, per_step);
  } else if (type == "plateau") {
    if (per_step) throw t.error("per", "plateau schedules step once per epoch");
    optim::ReduceLROnPlateauOptions o;
    o.mode(t.get_string("mode", "min")).factor(t.get_float("factor", 0.1)).patience(t.get_int("patience", 10));
    o.threshold(t.get_float("threshold", 1e-4)).cooldown(t.get_int("cooldown", 0)).min_lr(t.get_float("min_lr", 0));
    auto s = std::make_shared<optim::ReduceLROnPlateau>(opt, o);
    cb = std::make_shared<LearningRateScheduler>(s, t.get_string("monitor", "val_loss"));
  } else {
    throw t.error("type", "unknown scheduler \"" + type + "\" (known: step, exponential, cosine, plateau)");
  }
  t.check_no_unknown_keys("[scheduler] " + type);
  return cb;
}

// [callbacks] sub-table by name, or null.
const io::ConfigTable* sub_table(const io::ConfigTable& t, const std::string& key) {
  const io::ConfigValue* v = t.find(key);
  if (!v) return nullptr;
  if (!v->is_table()) throw t.value_error(*v, "expected a table, got " + v->describe());
  return std::get<std::shared_ptr<io::ConfigTable>>(v->v).get();
}

std::string now_string() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

}  // namespace

Experiment build_experiment(const io::Config& config, const ExperimentOptions& o) {
  const io::ConfigTable& tr = config.train;
  uint64_t seed = o.seed ? *o.seed : uint64_t(tr.get_int("seed", 0));
  data::PipelineOptions po;
  po.seed = seed;
  po.need_splits = o.need_splits;
  log_line(o.log, "loading data ...");
  auto t0 = std::chrono::steady_clock::now();
  data::DataBundle bundle = data::load_data(config.data, po);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char buf[64];
  std::snprintf(buf, sizeof buf, " (%.2f s)", secs);
  log_line(o.log, bundle.description + buf);
  return build_experiment(config, std::move(bundle), o);
}

Experiment build_experiment(const io::Config& config, data::DataBundle bundle, const ExperimentOptions& o) {
  Experiment e;
  e.config = config;
  e.data = std::move(bundle);
  const io::ConfigTable& tr = config.train;
  e.seed = o.seed ? *o.seed : uint64_t(tr.get_int("seed", 0));
  if (int64_t threads = tr.get_int("threads", 0); threads > 0) set_num_threads(int(threads));

  // Model: the data decides the input shape it must accept.
  Shape want = e.data.preprocess.input_shape;
  if (!want.empty() && Shape(config.model.input_shape.begin(), config.model.input_shape.end()) != want)
    throw Error(config.path, "model.input_shape " + shape_str(Shape(config.model.input_shape.begin(),
                                                                    config.model.input_shape.end())) +
                                 " does not match the data's example shape " + shape_str(want));
  manual_seed(e.seed);
  e.model = nn::build_model(config.model);
  e.init = tr.get_string("init", "pytorch");
  if (e.init == "keras") nn::keras_initialize(*e.model);
  else if (e.init != "pytorch") throw tr.error("init", "expected \"pytorch\" or \"keras\", got \"" + e.init + "\"");
  if (!o.init_weights.empty()) nn::load_state_dict(*e.model, o.init_weights);
  // Dropout draws from the default generator: start it from the seed too.
  manual_seed(e.seed ^ 0x9e3779b97f4a7c15ull);

  Shape out = e.model->output_shape(nn::model_input_shape(config.model));
  const int64_t width = out.size() >= 2 ? out.back() : 1;

  // Loss: named, or the usual one for the task and the output width.
  std::string loss = tr.get_string("loss", "");
  if (loss.empty()) {
    if (e.data.task == data::Task::Regression) loss = "mse";
    else loss = width == 1 ? "binary_cross_entropy" : "cross_entropy";
  }
  LossSpec spec;
  try {
    spec = parse_loss(loss);
  } catch (const Error& err) {
    throw tr.error("loss", err.what());
  }
  spec.label_smoothing = tr.get_float("label_smoothing", 0.0);
  e.loss_name = spec.name;
  if (e.data.task == data::Task::Classification) {
    if (!spec.classification()) throw tr.error("loss", "\"" + loss + "\" is a regression loss but the data set is labelled with classes");
    if (spec.name == "cross_entropy" && width != e.data.num_classes)
      throw Error(config.path, "the model's last layer has " + std::to_string(width) + " outputs but the data has " +
                                   std::to_string(e.data.num_classes) + " classes");
    if (spec.name == "binary_cross_entropy" && (width != 1 || e.data.num_classes != 2))
      throw Error(config.path, "binary_cross_entropy needs one output and two classes (the model has " +
                                   std::to_string(width) + " outputs, the data " + std::to_string(e.data.num_classes) +
                                   " classes)");
  } else if (spec.classification()) {
    throw tr.error("loss", "\"" + loss + "\" is a classification loss but the data set is a regression set");
  }

  e.compute = parse_compute(tr);
  override_compute(e.compute, o.device, o.precision);
  e.model->to(e.compute.device);  // before the optimiser, whose state lives beside the weights
  e.optimizer = make_optimizer(config.optimizer, e.model->parameters());
  e.trainer = std::make_shared<Trainer>(e.model, e.optimizer, spec);

  FitOptions& f = e.fit;
  f.epochs = tr.get_int("epochs", 1);
  f.batch_size = tr.get_int("batch_size", 32);
  if (f.epochs < 1) throw tr.error("epochs", "must be >= 1");
  if (f.batch_size < 1) throw tr.error("batch_size", "must be >= 1");
  f.shuffle = tr.get_bool("shuffle", true);
  f.seed = e.seed;
  f.steps_per_epoch = tr.get_int("steps_per_epoch", 0);
  f.clip_grad_norm = tr.get_float("clip_grad_norm", 0.0);
  f.precision = e.compute.precision;
  f.eval_batch_size = tr.get_int("eval_batch_size", 1000);
  f.prefetch = tr.get_int("prefetch", -1);
  if (f.prefetch < -1) throw tr.error("prefetch", "must be >= 0 (or -1: automatic)");
  // Validation: the held-out split, or (as the Keras tutorials' validation_data) the test set.
  const std::string validate_on = tr.get_string("validate_on", "val");
  if (validate_on == "val") f.validation_data = e.data.val;
  else if (validate_on == "test") f.validation_data = e.data.test;
  else if (validate_on != "none") throw tr.error("validate_on", "expected \"val\", \"test\" or \"none\", got \"" + validate_on + "\"");
  if (validate_on == "test" && !e.data.test) throw tr.error("validate_on", "the data has no test split");
  f.augment = e.data.augment;
  tr.get_int("seed", 0);  // marks the key read when --seed overrides it
  tr.check_no_unknown_keys("[train]");

  int64_t steps = (e.data.train->size() + f.batch_size - 1) / f.batch_size;
  if (f.steps_per_epoch > 0) steps = std::min(steps, f.steps_per_epoch);
  if (config.has_scheduler) f.callbacks.push_back(make_scheduler(config.scheduler, *e.optimizer, f.epochs, steps));

  const io::ConfigTable& cb = config.callbacks;
  if (const io::ConfigTable* t = sub_table(cb, "early_stopping")) {
    EarlyStoppingOptions eo;
    eo.monitor = t->get_string("monitor", "val_loss");
    eo.patience = t->get_int("patience", 0);
    eo.min_delta = t->get_float("min_delta", 0.0);
    eo.mode = t->get_string("mode", "auto");
    eo.restore_best_weights = t->get_bool("restore_best_weights", false);
    t->check_no_unknown_keys("[callbacks.early_stopping]");
    e.early_stopping = std::make_shared<EarlyStopping>(eo);
    f.callbacks.push_back(e.early_stopping);
  }
  if (const io::ConfigTable* t = sub_table(cb, "model_checkpoint")) {
    ModelCheckpointOptions mo;
    mo.monitor = t->get_string("monitor", "val_loss");
    mo.mode = t->get_string("mode", "auto");
    mo.save_best_only = t->get_bool("save_best_only", true);
    t->check_no_unknown_keys("[callbacks.model_checkpoint]");
    if (!o.run_dir.empty()) {
      mo.path = (fs::path(o.run_dir) / "best.safetensors").string();
      f.callbacks.push_back(std::make_shared<ModelCheckpoint>(mo));
    }
  }
  cb.check_no_unknown_keys("[callbacks]");
  return e;
}

// ---------------------------------------------------------------- mox train

namespace {

std::string read_config_text(const TrainOptions& o, std::string& file) {
  if (!o.resume_dir.empty()) {
    file = (fs::path(o.resume_dir) / "config.toml").string();
    MOX_CHECK(fs::exists(file), o.resume_dir, "not a run folder (config.toml missing)");
  } else {
    file = o.config_path;
  }
  return io::read_file(file);
}

// The outputs on a split, for summary.json and the report.
SplitOutputs split_outputs(const std::string& name, const EvalResult& r) {
  SplitOutputs s;
  s.name = name;
  s.outputs = r.outputs;
  s.targets = r.targets;
  s.metrics = r.metrics;
  return s;
}

}  // namespace

TrainResult run_train(const TrainOptions& o) {
  std::ostream& out = o.out ? *o.out : std::cout;
  std::ostream* log = o.verbose > 0 ? &out : nullptr;
  MOX_CHECK(!o.config_path.empty() || !o.resume_dir.empty(), "train", "no config given");
  std::string file;
  std::string text = read_config_text(o, file);
  std::vector<std::string> overrides = o.overrides;
  if (o.seed) overrides.push_back("train.seed=" + std::to_string(*o.seed));
  if (o.steps > 0) overrides.push_back("train.steps_per_epoch=" + std::to_string(o.steps));
  text = io::apply_overrides(text, file, overrides);
  // With overrides, line numbers refer to the effective config (saved as config.toml).
  io::Config config = io::parse_config(text, overrides.empty() ? file : file + " (with --set)");

  std::string run_dir = o.resume_dir;
  if (run_dir.empty()) run_dir = o.out_dir.empty() ? (fs::path("runs") / config.model.name).string() : o.out_dir;
  const std::string ckpt = (fs::path(run_dir) / "checkpoint").string();
  if (o.resume_dir.empty()) {
    MOX_CHECK(o.overwrite || !Trainer::has_checkpoint(ckpt), run_dir,
              "already holds a run: continue it with --resume " + run_dir + ", or pass --overwrite or another --out");
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    MOX_CHECK(!ec, run_dir, "cannot create the run folder: " + ec.message());
  } else {
    MOX_CHECK(Trainer::has_checkpoint(ckpt), run_dir, "no checkpoint to resume (checkpoint/ missing)");
  }

  ExperimentOptions eo;
  eo.init_weights = o.init_weights;
  eo.run_dir = run_dir;
  eo.log = log;
  eo.device = o.device;
  eo.precision = o.precision;
  Experiment e = build_experiment(config, eo);
  e.fit.verbose = o.verbose;
  e.fit.out = o.out;
  nn::ModelSummary summary = nn::summarize(*e.model, nn::model_input_shape(config.model), config.model.name);

  // The effective config and the preprocessing go into the run folder first: a crashed
  // run can still be resumed and its checkpoint evaluated.
  io::write_file_atomic((fs::path(run_dir) / "config.toml").string(), text);
  e.data.preprocess.save(run_dir);
  if (!o.resume_dir.empty()) {
    e.trainer->load_checkpoint(ckpt);
    log_line(log, "resuming " + run_dir + " at epoch " + std::to_string(e.trainer->epoch() + 1) + ", step " +
                      std::to_string(e.trainer->batch_in_epoch()));
  }
  if (!o.teacher_dir.empty()) {
    LoadedRun teacher = load_run(o.teacher_dir, "f32", o.device);
    e.fit.teacher = teacher.model;
    e.fit.distill_temperature = o.distill_temperature;
    e.fit.distill_alpha = o.distill_alpha;
    e.fit.cache_teacher_logits = o.cache_teacher_logits;
    log_line(log, "distilling from " + o.teacher_dir + " (" + nn::group_thousands(teacher.model->num_parameters()) +
                      " parameters), temperature " + std::to_string(o.distill_temperature) + ", alpha " +
                      std::to_string(o.distill_alpha));
  }
  e.fit.callbacks.push_back(std::make_shared<CSVLogger>((fs::path(run_dir) / "history.csv").string()));
  e.fit.callbacks.push_back(std::make_shared<Checkpointer>(ckpt, o.save_every));
  log_line(log, "model " + config.model.name + ": " + nn::group_thousands(summary.total_params) + " parameters, " +
                    std::to_string(get_num_threads()) + " threads; training " + std::to_string(e.fit.epochs) +
                    " epochs, batch " + std::to_string(e.fit.batch_size) +
                    (e.data.augment ? ", augmentation " + e.data.augment_description : ""));

  History history = e.trainer->fit(e.data.train, e.fit);
  nn::save_state_dict(*e.model, (fs::path(run_dir) / "model.safetensors").string(),
                      {{"format", "pt"}, {"mox_config", "config.toml"}});

  // Final evaluation.
  std::vector<SplitOutputs> splits;
  json sj;
  sj["name"] = config.model.name;
  sj["task"] = task_name(e.data.task);
  sj["data"] = e.data.description;
  double infer_rate = 0;
  if (e.data.test) {
    EvalResult r = e.trainer->evaluate(*e.data.test, e.fit.eval_batch_size);
    infer_rate = r.seconds > 0 ? double(e.data.test->size()) / r.seconds : 0;
    sj["test"] = metrics_json(r.metrics);
    splits.push_back(split_outputs("test", r));
  }
  if (e.data.val) {
    EvalResult r = e.trainer->evaluate(*e.data.val, e.fit.eval_batch_size);
    sj["val"] = metrics_json(r.metrics);
    splits.push_back(split_outputs("val", r));
  }
  // The majority-class baseline on the test split (what a model must clearly beat).
  if (e.data.task == data::Task::Classification && e.data.test && e.data.num_classes >= 2) {
    auto labels_of = [](const data::Dataset& d) {
      std::vector<int64_t> idx(static_cast<size_t>(d.size()));
      for (int64_t i = 0; i < d.size(); i++) idx[size_t(i)] = i;
      Tensor t = d.get_batch(idx).target;
      if (is_floating(t.dtype())) t = argmax(t, 1);
      return t.reshape({t.numel()}).to(DType::I64);
    };
    std::vector<int64_t> counts(size_t(e.data.num_classes), 0);
    for (int64_t y : labels_of(*e.data.train).to_vector<int64_t>()) counts[size_t(y)]++;
    int64_t major = int64_t(std::max_element(counts.begin(), counts.end()) - counts.begin());
    Tensor test_labels = labels_of(*e.data.test);
    Tensor constant = full({test_labels.numel()}, double(major), DType::I64);
    ClassificationReport rep = classification_report(constant, test_labels, e.data.num_classes);
    sj["baseline"] = {{"majority_class", e.data.class_names.empty() ? std::to_string(major) : e.data.class_names[size_t(major)]},
                      {"accuracy", rep.accuracy},
                      {"macro_f1", rep.macro.f1}};
  }
  json trj = json::object();
  for (const auto& k : history.keys())
    if (k.rfind("val_", 0) != 0 && k != "lr" && history.epochs() > 0) trj[k] = history.last(k);
  sj["train"] = trj;
  sj["epochs"] = history.epochs();
  sj["steps"] = e.trainer->global_step();
  sj["seconds_per_epoch"] = e.trainer->seconds_per_epoch();
  sj["samples_per_second"] = e.trainer->samples_per_second();
  sj["inference_samples_per_second"] = infer_rate;
  sj["parameters"] = summary.total_params;
  sj["threads"] = get_num_threads();
  sj["device"] = e.compute.device.str();
  sj["precision"] = dtype_name(e.compute.precision);
  sj["seed"] = e.seed;
  sj["init"] = e.init;
  sj["loss"] = e.loss_name;
  sj["batch_size"] = e.fit.batch_size;
  if (!e.data.class_names.empty()) sj["classes"] = e.data.class_names;
  if (e.early_stopping) {
    sj["early_stopping"] = {{"stopped_epoch", e.early_stopping->stopped_epoch()},
                            {"best_epoch", e.early_stopping->best_epoch()}};
  }
  if (!o.teacher_dir.empty())
    sj["distillation"] = {{"teacher", o.teacher_dir}, {"temperature", o.distill_temperature}, {"alpha", o.distill_alpha}};
  sj["mox_version"] = MOX_VERSION;
  sj["finished"] = now_string();
  std::string summary_json = sj.dump(2) + "\n";
  io::write_file_atomic((fs::path(run_dir) / "summary.json").string(), summary_json);

  ReportInput ri;
  ri.title = config.model.name;
  ri.task = task_name(e.data.task);
  ri.class_names = e.data.class_names;
  ri.history = history;
  ri.splits = splits;
  ri.config_toml = text;
  ri.model_summary = summary.str();
  ri.data_description = e.data.description;
  ri.seconds_per_epoch = e.trainer->seconds_per_epoch();
  ri.samples_per_second = e.trainer->samples_per_second();
  ri.parameters = summary.total_params;
  ri.facts = {{"finished", now_string()},
              {"threads", std::to_string(get_num_threads())},
              {"device", e.compute.device.str() + ", " + dtype_name(e.compute.precision)},
              {"seed", std::to_string(e.seed)},
              {"initialisation", e.init},
              {"loss", e.loss_name},
              {"optimizer", e.optimizer->name()},
              {"batch size", std::to_string(e.fit.batch_size)},
              {"steps", std::to_string(e.trainer->global_step())},
              {"mox", MOX_VERSION}};
  if (e.data.augment) ri.facts.emplace_back("augmentation", e.data.augment_description);
  if (sj.contains("baseline")) {
    char b[160];
    std::snprintf(b, sizeof b, "always \"%s\": accuracy %.4f, macro-F1 %.4f",
                  sj["baseline"]["majority_class"].get<std::string>().c_str(),
                  sj["baseline"]["accuracy"].get<double>(), sj["baseline"]["macro_f1"].get<double>());
    ri.facts.emplace_back("majority baseline (test)", b);
  }
  write_report((fs::path(run_dir) / "report.html").string(), ri);

  if (log) {
    std::ostringstream line;
    line << "wrote " << run_dir << "/ (model.safetensors, history.csv, summary.json, report.html)";
    if (sj.contains("test")) {
      line << "; test";
      for (const auto& [k, v] : splits.front().metrics)
        if (k == "loss" || k == "accuracy" || k == "macro_f1" || k == "mae" || k == "r2")
          line << " " << k << " " << ProgressBar::format_metric(v);
    }
    log_line(log, line.str());
  }
  return TrainResult{run_dir, history, summary_json};
}

// ---------------------------------------------------------------- load / eval

LoadedRun load_run(const std::string& run_dir, const std::string& precision, const std::string& device) {
  MOX_CHECK(precision == "f32" || precision == "bf16", "precision",
            "expected f32 or bf16, got \"" + precision + "\"");
  const std::string cfg = (fs::path(run_dir) / "config.toml").string();
  MOX_CHECK(fs::exists(cfg), run_dir, "not a run folder (config.toml missing)");
  const std::string weights = (fs::path(run_dir) / "model.safetensors").string();
  LoadedRun r;
  r.config = io::load_config(cfg);
  r.preprocess = data::Preprocessor::load(run_dir);
  r.model = nn::build_model(r.config.model);
  // A quantised run (mox quantize): its int8 / block layers replace the float ones first.
  const fs::path qjson = fs::path(run_dir) / "quantization.json";
  if (fs::exists(qjson)) {
    MOX_CHECK(precision == "f32", run_dir, "is quantised: it runs as saved (--precision f32)");
    json layout;
    try {
      layout = json::parse(io::read_file(qjson.string()));
    } catch (const json::exception& e) {
      throw Error(qjson.string(), e.what());
    }
    compress::apply_quantization_layout(*r.model, layout, qjson.string());
  }
  if (fs::exists(weights)) {
    compress::load_state_dict_any(*r.model, weights);  // dense, or sparse (mox prune)
  } else {
    // A run that has not finished: its last checkpoint.
    const std::string ck = (fs::path(run_dir) / "checkpoint" / "model.safetensors").string();
    MOX_CHECK(fs::exists(ck), run_dir, "no model.safetensors (and no checkpoint) in the run folder");
    nn::load_state_dict(*r.model, ck);
  }
  std::string loss = r.config.train.get_string("loss", "");
  Shape out = r.model->output_shape(nn::model_input_shape(r.config.model));
  const int64_t width = out.size() >= 2 ? out.back() : 1;
  if (loss.empty())
    loss = r.preprocess.task == data::Task::Regression ? "mse" : width == 1 ? "binary_cross_entropy" : "cross_entropy";
  LossSpec spec = parse_loss(loss);
  r.task = spec.classification() ? "classification" : "regression";
  // The Trainer serves evaluate / predict here; it wants an optimiser. A fully quantised model
  // has no float parameters: it gets a one-element stand-in that is never stepped.
  std::vector<Tensor> params = r.model->parameters();
  if (params.empty()) params.push_back(zeros({1}).requires_grad_(true));
  auto opt = std::make_shared<optim::SGD>(params, optim::SGDOptions(1.0));
  r.trainer = std::make_shared<Trainer>(r.model, opt, spec);
  r.class_names = r.preprocess.class_names;
  // bf16: the dense layers' weights (their products run on bf16 matrix units); convolutions
  // stay in f32, as autocast leaves them where the CPU has no faster bf16 kernel for them.
  if (precision == "bf16")
    for (auto& [name, m] : r.model->named_modules())
      if (m->type_name() == "Linear") m->to(DType::BF16);
  if (!device.empty()) {
    Compute c;
    override_compute(c, device, "");
    r.model->to(c.device);
  }
  return r;
}

EvalOutput run_eval(const EvalOptions& o) {
  if (is_gpt_run(o.run_dir)) {
    // A language-model run (mox pretrain / quantize): next-token loss over its validation split.
    MOX_CHECK(o.split == "val" || o.split == "test", "eval", "a GPT run is evaluated on its validation split");
    const double t0 = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    const double loss = gpt_validation_loss(load_gpt_run(o.run_dir), o.run_dir, std::min<int64_t>(o.batch_size, 64));
    EvalOutput out;
    out.split = "val";
    out.result.metrics = {{"val_loss", loss}, {"val_perplexity", std::exp(loss)}};
    out.result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count() - t0;
    json j;
    j["run"] = o.run_dir;
    j["split"] = "val";
    j["metrics"] = metrics_json(out.result.metrics);
    out.json = j.dump(2) + "\n";
    return out;
  }
  LoadedRun run = load_run(o.run_dir, o.precision, o.device);
  const std::string cfg = (fs::path(o.run_dir) / "config.toml").string();
  std::vector<std::string> sets;
  for (const auto& d : o.data_overrides) sets.push_back("data." + d);
  io::Config config = io::parse_config(io::apply_overrides(run.config.text, cfg, sets), cfg);
  data::PipelineOptions po;
  po.seed = uint64_t(config.train.get_int("seed", 0));
  data::DataBundle b = data::load_data(config.data, po);
  std::shared_ptr<const data::Dataset> ds = o.split == "test" ? b.test : o.split == "val" ? b.val
                                          : o.split == "train" ? b.train : nullptr;
  MOX_CHECK(o.split == "test" || o.split == "val" || o.split == "train", "eval",
            "--split must be test, val or train, got \"" + o.split + "\"");
  MOX_CHECK(ds != nullptr, o.run_dir, "the data has no " + o.split + " split");
  EvalOutput out;
  out.split = o.split;
  out.examples = ds->size();
  out.result = run.trainer->evaluate(*ds, o.batch_size);
  out.samples_per_second = out.result.seconds > 0 ? double(ds->size()) / out.result.seconds : 0;
  json j;
  j["run"] = o.run_dir;
  j["split"] = o.split;
  j["precision"] = o.precision;
  j["examples"] = out.examples;
  j["metrics"] = metrics_json(out.result.metrics);
  j["samples_per_second"] = out.samples_per_second;
  out.json = j.dump(2) + "\n";
  return out;
}

// ---------------------------------------------------------------- mox cv

CvResult run_cv(const CvOptions& o) {
  std::ostream& out = o.out ? *o.out : std::cout;
  std::ostream* log = o.verbose > 0 ? &out : nullptr;
  MOX_CHECK(o.folds >= 2, "cv", "--folds must be >= 2, got " + std::to_string(o.folds));
  std::string text = io::read_file(o.config_path);
  std::vector<std::string> overrides = o.overrides;
  if (o.seed) overrides.push_back("train.seed=" + std::to_string(*o.seed));
  if (o.steps > 0) overrides.push_back("train.steps_per_epoch=" + std::to_string(o.steps));
  text = io::apply_overrides(text, o.config_path, overrides);
  io::Config config = io::parse_config(text, overrides.empty() ? o.config_path : o.config_path + " (with --set)");
  uint64_t seed = uint64_t(config.train.get_int("seed", 0));

  data::PipelineOptions po;
  po.seed = seed;
  po.need_splits = false;
  log_line(log, "loading data ...");
  data::DataBundle all = data::load_data(config.data, po);
  log_line(log, all.description);
  const int64_t n = all.train->size();
  MOX_CHECK(n >= o.folds, "cv", std::to_string(n) + " examples cannot make " + std::to_string(o.folds) + " folds");
  Tensor labels;
  if (all.task == data::Task::Classification) {
    std::vector<int64_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) idx[size_t(i)] = i;
    labels = all.train->get_batch(idx).target;
    if (is_floating(labels.dtype())) labels = argmax(labels, 1);
  }
  std::vector<data::Fold> folds = data::kfold(n, o.folds, labels, labels.defined(), seed);

  CvResult res;
  json fj = json::array();
  for (int64_t k = 0; k < o.folds; k++) {
    data::DataBundle b = all;
    b.train = std::make_shared<data::Subset>(all.train, folds[size_t(k)].train);
    b.val = std::make_shared<data::Subset>(all.train, folds[size_t(k)].val);
    b.test = nullptr;
    ExperimentOptions eo;
    eo.seed = seed;
    eo.device = o.device;
    eo.precision = o.precision;
    Experiment e = build_experiment(config, b, eo);
    e.fit.verbose = o.verbose > 0 ? 2 : 0;
    e.fit.out = o.out;
    log_line(log, "fold " + std::to_string(k + 1) + "/" + std::to_string(o.folds) + ": train " +
                      std::to_string(b.train->size()) + ", val " + std::to_string(b.val->size()));
    e.trainer->fit(b.train, e.fit);
    EvalResult r = e.trainer->evaluate(*b.val, e.fit.eval_batch_size);
    res.folds.push_back(r.metrics);
    fj.push_back(metrics_json(r.metrics));
  }
  // Mean and population std over folds of every metric all folds have.
  for (const auto& [key, v0] : res.folds.front()) {
    std::vector<double> vals;
    for (const auto& f : res.folds)
      for (const auto& [k, v] : f)
        if (k == key) vals.push_back(v);
    if (vals.size() != res.folds.size()) continue;
    double m = 0, s = 0;
    for (double v : vals) m += v;
    m /= double(vals.size());
    for (double v : vals) s += (v - m) * (v - m);
    res.mean.emplace_back(key, m);
    res.std.emplace_back(key, std::sqrt(s / double(vals.size())));
  }
  json j;
  j["config"] = o.config_path;
  j["folds"] = o.folds;
  j["seed"] = seed;
  j["per_fold"] = fj;
  j["mean"] = metrics_json(res.mean);
  j["std"] = metrics_json(res.std);
  res.json = j.dump(2) + "\n";
  if (!o.out_dir.empty()) {
    fs::create_directories(o.out_dir);
    io::write_file_atomic((fs::path(o.out_dir) / "cv.json").string(), res.json);
  }
  return res;
}

}  // namespace mox::train
