#include "mox/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "mox/autograd/node.h"
#include "mox/data/dataloader.h"
#include "mox/data/split.h"
#include "mox/io/file_util.h"
#include "mox/nn/layers/sequential.h"
#include "mox/nn/serialize.h"
#include "mox/ops/ops.h"
#include "mox/optim/clip.h"
#include "mox/optim/grad_scaler.h"
#include "mox/train/compute.h"
#include "mox/train/metrics.h"

namespace mox::train {

namespace fs = std::filesystem;
using optim::format_scalar;
using optim::parse_scalar;

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct LossAlias {
  const char* alias;
  const char* name;
};
const LossAlias kLossAliases[] = {
    {"cross_entropy", "cross_entropy"},
    {"crossentropy", "cross_entropy"},
    {"sparse_categorical_crossentropy", "cross_entropy"},
    {"categorical_crossentropy", "cross_entropy"},
    {"binary_cross_entropy", "binary_cross_entropy"},
    {"binary_crossentropy", "binary_cross_entropy"},
    {"bce", "binary_cross_entropy"},
    {"mse", "mse"},
    {"mean_squared_error", "mse"},
    {"mae", "mae"},
    {"l1", "mae"},
    {"mean_absolute_error", "mae"},
    {"huber", "huber"},
};

// Best-so-far comparisons shared by EarlyStopping and ModelCheckpoint.
bool resolve_maximize(const std::string& mode, const std::string& monitor, const char* who) {
  if (mode == "min") return false;
  if (mode == "max") return true;
  MOX_CHECK(mode == "auto", who, "mode must be \"auto\", \"min\" or \"max\", got \"" + mode + "\"");
  return History::default_mode(monitor) == History::Mode::Max;
}

double monitored(const MetricValues& logs, const std::string& monitor, const char* who) {
  std::string keys;
  for (const auto& [k, v] : logs) {
    if (k == monitor) return v;
    keys += (keys.empty() ? "" : ", ") + k;
  }
  throw Error(who, "monitor \"" + monitor + "\" is not among the epoch's metrics (" + keys + ")" +
                       (monitor.rfind("val_", 0) == 0 ? ": add a validation split or monitor a training metric" : ""));
}

std::string read_text(const std::string& path) { return io::read_file(path); }

}  // namespace

// ---------------------------------------------------------------- losses

const std::vector<std::string>& known_losses() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& a : kLossAliases) v.push_back(a.alias);
    return v;
  }();
  return names;
}

LossSpec parse_loss(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& a : kLossAliases)
    if (lower == a.alias) return LossSpec{a.name};
  std::string all;
  for (const auto& n : known_losses()) all += (all.empty() ? "" : ", ") + n;
  throw Error("loss", "unknown loss \"" + name + "\" (known: " + all + ")");
}

// ---------------------------------------------------------------- Trainer

double EvalResult::value(const std::string& key) const {
  for (const auto& [k, v] : metrics)
    if (k == key) return v;
  throw Error("evaluate", "no metric \"" + key + "\"");
}

Trainer::Trainer(std::shared_ptr<nn::Module> model, std::shared_ptr<optim::Optimizer> optimizer,
                 LossSpec loss)
    : model_(std::move(model)), optimizer_(std::move(optimizer)), loss_(std::move(loss)) {
  MOX_CHECK(model_ != nullptr, "Trainer", "no model");
  MOX_CHECK(optimizer_ != nullptr, "Trainer", "no optimizer");
  parse_loss(loss_.name);  // validates the name
  if (auto seq = std::dynamic_pointer_cast<nn::Sequential>(model_); seq && seq->size() >= 2) {
    const auto& last = (*seq)[seq->size() - 1];
    if ((loss_.name == "cross_entropy" && last->type_name() == "Softmax") ||
        (loss_.name == "binary_cross_entropy" && last->type_name() == "Sigmoid")) {
      split_head_ = true;
      body_size_ = seq->size() - 1;
      head_ = last;
    }
  }
}

Tensor Trainer::forward_logits(const Tensor& x_in) {
  // A model held in bf16/f16 (inference in reduced precision) takes its inputs in that
  // dtype; its logits come back as f32 for the loss, softmax and metrics.
  // Inputs move to the model's device (batches are made on the host).
  DType model_dtype = DType::F32;
  Device dev = kCPU;
  for (const auto& p : model_->parameters())
    if (is_floating(p.dtype())) {
      model_dtype = p.dtype();
      dev = p.device();
      break;
    }
  Tensor x = is_floating(x_in.dtype()) && x_in.dtype() != model_dtype ? x_in.to(model_dtype) : x_in;
  if (x.device() != dev) x = x.to(dev);
  Tensor out = split_head_ ? static_cast<nn::Sequential&>(*model_).forward_prefix(x, body_size_) : model_->forward(x);
  return out.dtype() == DType::BF16 || out.dtype() == DType::F16 ? out.to(DType::F32) : out;
}

Tensor teacher_logits(nn::Module& teacher, const Tensor& x_in, Device device) {
  NoGradGuard ng;
  const bool was_training = teacher.is_training();
  teacher.eval();
  Device td = kCPU;
  for (const auto& p : teacher.parameters()) {
    td = p.device();
    break;
  }
  const Tensor x = x_in.device() == td ? x_in : x_in.to(td);
  Tensor out;
  auto* seq = dynamic_cast<nn::Sequential*>(&teacher);
  if (seq && seq->size() > 0 && (*seq)[seq->size() - 1]->type_name() == "Softmax")
    out = seq->forward_prefix(x, seq->size() - 1);
  else
    out = teacher.forward(x);
  teacher.train(was_training);
  if (out.dtype() != DType::F32 && out.dtype() != DType::F64) out = out.to(DType::F32);
  return out.device() == device ? out : out.to(device);
}

Tensor Trainer::outputs_from_logits(const Tensor& logits) const {
  if (loss_.name == "cross_entropy") return softmax(logits, 1);
  if (loss_.name == "binary_cross_entropy") {
    Tensor p = sigmoid(logits);
    if (p.dim() == 2 && p.size(1) == 1) p = p.reshape({p.size(0)});
    return p;
  }
  return logits;
}

Tensor Trainer::loss(const Tensor& logits, const Tensor& target_in) const {
  const std::string& n = loss_.name;
  const Tensor target = target_in.device() == logits.device() ? target_in : target_in.to(logits.device());
  if (n == "cross_entropy") return cross_entropy(logits, target, loss_.label_smoothing);
  // The other losses compare element-wise: a target [N] against outputs [N, 1] (binary
  // labels, one regression output) is reshaped; integer labels become floats.
  Tensor t = target;
  if (!is_floating(t.dtype())) t = t.to(logits.dtype());
  if (t.shape() != logits.shape()) {
    MOX_CHECK(t.numel() == logits.numel(), "loss",
              n + ": the model's output " + shape_str(logits.shape()) + " does not match the targets " +
                  shape_str(target.shape()));
    t = t.reshape(logits.shape());
  }
  if (n == "binary_cross_entropy") return binary_cross_entropy_with_logits(logits, t);
  if (n == "mse") return mse_loss(logits, t);
  if (n == "mae") return l1_loss(logits, t);
  return huber_loss(logits, t, loss_.huber_delta);
}

void Trainer::accumulate(Running& r, const Tensor& logits, const Tensor& target, const Tensor& l) {
  const int64_t n = logits.size(0);
  r.loss_sum += double(l.item<float>()) * double(n);
  r.samples += n;
  Tensor lg = logits.to(kCPU).contiguous();  // metrics are counted on the host
  if (lg.dtype() != DType::F32) lg = lg.to(DType::F32);
  const float* p = lg.data<float>();
  const int64_t w = lg.numel() / std::max<int64_t>(n, 1);
  if (loss_.name == "cross_entropy") {
    std::vector<int64_t> labels;
    if (is_floating(target.dtype())) {  // one-hot / probability targets: their argmax
      labels = argmax(target, 1).to_vector<int64_t>();
    } else {
      labels = target.to_vector<int64_t>();
    }
    for (int64_t i = 0; i < n; i++) {
      const float* row = p + i * w;
      int64_t best = int64_t(std::max_element(row, row + w) - row);
      r.correct += best == labels[size_t(i)];
    }
  } else if (loss_.name == "binary_cross_entropy") {
    std::vector<double> y = target.to_vector<double>();
    for (int64_t i = 0; i < n; i++) r.correct += (p[i * w] > 0.0f) == (y[size_t(i * w)] > 0.5);
  } else {
    std::vector<double> y = target.to_vector<double>();
    for (int64_t i = 0; i < n * w; i++) {
      double d = double(p[i]) - y[size_t(i)];
      r.abs_err += std::fabs(d) / double(w);
      r.sq_err += d * d / double(w);
    }
  }
}

MetricValues Trainer::running_metrics(const Running& r) const {
  MetricValues m;
  double n = double(std::max<int64_t>(r.samples, 1));
  m.emplace_back("loss", r.loss_sum / n);
  if (loss_.classification()) {
    m.emplace_back("accuracy", r.correct / n);
  } else {
    m.emplace_back("mae", r.abs_err / n);
    if (loss_.name != "mse") m.emplace_back("mse", r.sq_err / n);
  }
  return m;
}

double Trainer::samples_per_second() const {
  double secs = 0;
  for (double s : seconds_per_epoch_) secs += s;
  return secs > 0 ? double(samples_seen_ - running_.samples) / secs : 0.0;
}

EvalResult Trainer::evaluate(const data::Dataset& data, int64_t batch_size) {
  MOX_CHECK(data.size() > 0, "evaluate", "the data set is empty");
  MOX_CHECK(batch_size >= 1, "evaluate", "batch_size must be >= 1");
  const bool was_training = model_->is_training();
  model_->eval();
  NoGradGuard ng;
  double t0 = now_seconds();
  std::vector<Tensor> logits, targets;
  for (int64_t s = 0; s < data.size(); s += batch_size) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(s + batch_size, data.size()); i++) idx.push_back(i);
    data::Batch b = data.get_batch(idx);
    logits.push_back(forward_logits(b.input));
    targets.push_back(b.target);
  }
  // Outputs, loss and metrics on the host: callers read them.
  Tensor lg = (logits.size() == 1 ? logits[0] : cat(logits, 0)).to(kCPU);
  EvalResult r;
  r.targets = targets.size() == 1 ? targets[0] : cat(targets, 0);
  r.outputs = outputs_from_logits(lg);
  r.metrics.emplace_back("loss", double(loss(lg, r.targets).item<float>()));
  if (loss_.classification()) {
    Tensor labels = r.targets;
    if (is_floating(labels.dtype())) {
      labels = loss_.name == "cross_entropy" ? argmax(labels, 1) : gt(labels, 0.5).to(DType::I64);
      if (labels.dim() == 2) labels = labels.reshape({labels.size(0)});
    }
    const int64_t C = loss_.name == "cross_entropy" ? r.outputs.size(1) : 2;
    r.metrics.emplace_back("accuracy", accuracy(r.outputs, labels));
    if (C > 5) r.metrics.emplace_back("top_5_accuracy", top_k_accuracy(r.outputs, labels, 5));
    ClassificationReport rep = classification_report(r.outputs, labels, C);
    r.metrics.emplace_back("macro_precision", rep.macro.precision);
    r.metrics.emplace_back("macro_recall", rep.macro.recall);
    r.metrics.emplace_back("macro_f1", rep.macro.f1);
    r.metrics.emplace_back("weighted_f1", rep.weighted.f1);
    // AUC is undefined when a class is absent from the labels: leave it out then.
    std::vector<int64_t> support = rep.support;
    if (std::all_of(support.begin(), support.end(), [](int64_t s) { return s > 0; }))
      r.metrics.emplace_back("auc", roc_auc(r.outputs, labels));
    r.metrics.emplace_back("log_loss", log_loss(r.outputs, labels));
  } else {
    Tensor t = r.targets;
    if (!is_floating(t.dtype())) t = t.to(DType::F32);
    if (t.shape() != r.outputs.shape() && t.numel() == r.outputs.numel()) t = t.reshape(r.outputs.shape());
    r.metrics.emplace_back("mse", mse(r.outputs, t));
    r.metrics.emplace_back("mae", mae(r.outputs, t));
    r.metrics.emplace_back("r2", r2(r.outputs, t));
  }
  r.seconds = now_seconds() - t0;
  model_->train(was_training);
  return r;
}

Tensor Trainer::predict(const Tensor& inputs, int64_t batch_size) {
  MOX_CHECK(inputs.dim() >= 1 && inputs.size(0) > 0, "predict", "no inputs");
  const bool was_training = model_->is_training();
  model_->eval();
  NoGradGuard ng;
  std::vector<Tensor> outs;
  for (int64_t s = 0; s < inputs.size(0); s += batch_size)
    outs.push_back(outputs_from_logits(forward_logits(inputs.slice(0, s, std::min(s + batch_size, inputs.size(0))))));
  model_->train(was_training);
  return (outs.size() == 1 ? outs[0] : cat(outs, 0)).to(kCPU);
}

History Trainer::fit(std::shared_ptr<const data::Dataset> train, const FitOptions& o) {
  MOX_CHECK(train != nullptr && train->size() > 0, "fit", "the training set is empty");
  MOX_CHECK(o.epochs >= 1, "fit", "epochs must be >= 1, got " + std::to_string(o.epochs));
  MOX_CHECK(o.batch_size >= 1, "fit", "batch_size must be >= 1, got " + std::to_string(o.batch_size));
  MOX_CHECK(o.validation_split >= 0 && o.validation_split < 1, "fit",
            "validation_split must be in [0, 1), got " + format_scalar(o.validation_split));

  // Validation data: given, or the last fraction of the training set (Keras).
  std::shared_ptr<const data::Dataset> val = o.validation_data;
  if (!val && o.validation_split > 0) {
    int64_t n = train->size();
    int64_t nval = int64_t(std::llround(double(n) * o.validation_split));
    MOX_CHECK(nval >= 1 && nval < n, "fit",
              "validation_split " + format_scalar(o.validation_split) + " of " + std::to_string(n) +
                  " examples leaves no validation or no training example");
    std::vector<int64_t> tr(static_cast<size_t>(n - nval));
    std::vector<int64_t> va(static_cast<size_t>(nval));
    for (int64_t i = 0; i < n - nval; i++) tr[size_t(i)] = i;
    for (int64_t i = 0; i < nval; i++) va[size_t(i)] = n - nval + i;
    val = std::make_shared<data::Subset>(train, va);
    train = std::make_shared<data::Subset>(train, tr);
  }

  data::DataLoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.shuffle = o.shuffle;
  lo.seed = o.seed;
  lo.drop_last = o.drop_last;
  lo.prefetch = o.prefetch;
  if (lo.prefetch < 0) {
    const data::Dataset* base = train.get();
    while (auto* sub = dynamic_cast<const data::Subset*>(base)) base = sub->parent().get();
    const bool in_memory = dynamic_cast<const data::TensorDataset*>(base) != nullptr;
    lo.prefetch = (in_memory && !o.augment) ? 0 : 2;
  }
  if (o.augment) {
    auto aug = o.augment;
    uint64_t seed = o.seed;
    lo.transform = [aug, seed](data::Batch& b, int64_t epoch, int64_t batch) {
      Generator g(data::batch_seed(seed, epoch, batch));
      aug(b, g);
    };
  }
  data::DataLoader loader(train, lo);
  int64_t steps = loader.num_batches();
  if (o.steps_per_epoch > 0) steps = std::min(steps, o.steps_per_epoch);
  MOX_CHECK(steps >= 1, "fit", "no complete batch: " + std::to_string(train->size()) +
                                   " examples with batch_size " + std::to_string(o.batch_size) + " and drop_last");

  // Callbacks: the progress display first, the given ones in order.
  std::vector<CallbackPtr> cbs;
  std::ostream& out = o.out ? *o.out : std::cout;
  if (o.verbose > 0) {
    auto p = std::make_shared<ProgressCallback>(out, o.verbose == 1 && !o.out && ProgressBar::stdout_is_terminal(),
                                                o.epochs);
    p->set_steps(steps);
    cbs.push_back(p);
  }
  for (const auto& c : o.callbacks) {
    MOX_CHECK(c != nullptr, "fit", "null callback");
    cbs.push_back(c);
  }
  std::set<std::string> names;
  for (const auto& c : cbs)
    MOX_CHECK(names.insert(c->name()).second, "fit", "two callbacks named \"" + c->name() + "\"");
  callbacks_ = &cbs;
  // f16 scales the loss (its scale continues across a resume); bf16 and f32 do not.
  MOX_CHECK(o.precision == DType::F32 || o.precision == DType::BF16 || o.precision == DType::F16, "fit",
            std::string("precision must be f32, bf16 or f16, got ") + dtype_name(o.precision));
  optim::GradScaler scaler(optim::GradScalerOptions{.enabled = o.precision == DType::F16});
  Tensor cached_teacher;  // [N, classes] when cache_teacher_logits
  if (o.teacher) {
    MOX_CHECK(loss_.name == "cross_entropy", "fit", "distillation needs the cross_entropy loss, not " + loss_.name);
    MOX_CHECK(!o.cache_teacher_logits || !o.augment, "fit",
              "cached teacher logits need un-augmented batches (the teacher must see each augmented batch)");
    if (o.cache_teacher_logits) {
      std::vector<Tensor> parts;
      const int64_t n = train->size(), bs = std::max<int64_t>(o.eval_batch_size, 1);
      for (int64_t lo = 0; lo < n; lo += bs) {
        std::vector<int64_t> idx;
        for (int64_t i = lo; i < std::min(n, lo + bs); i++) idx.push_back(i);
        parts.push_back(teacher_logits(*o.teacher, train->get_batch(idx).input, kCPU));
      }
      cached_teacher = cat(parts, 0);
    }
    MOX_CHECK(o.distill_temperature > 0 && o.distill_alpha >= 0 && o.distill_alpha <= 1, "fit",
              "distillation needs temperature > 0 and alpha in [0, 1]");
  }
  if (o.precision == DType::F16 && !loss_scale_.scalars.empty()) scaler.load_state_dict(loss_scale_);
  struct Reset {
    const std::vector<CallbackPtr>** p;
    ~Reset() { *p = nullptr; }
  } reset{&callbacks_};

  for (const auto& c : cbs) {
    c->on_train_begin(*this);
    auto it = pending_callback_state_.find(c->name());
    if (it != pending_callback_state_.end()) c->load_state(it->second);
  }
  pending_callback_state_.clear();

  while (epoch_ < o.epochs && !stop_) {
    if (batch_ == 0) epoch_lr_ = optimizer_->lr();
    for (const auto& c : cbs) c->on_epoch_begin(*this, epoch_);
    model_->train();
    loader.set_epoch(epoch_, std::min(batch_, loader.num_batches()));
    double t_start = now_seconds(), callback_time = 0, base = epoch_seconds_;
    for (auto it = loader.begin(); it != loader.end() && batch_ < steps; ++it) {
      const data::Batch& b = *it;
      Tensor logits, l;
      {
        StepAutocast ac(o.precision);  // bf16/f16: autocast over the forward pass and loss
        logits = forward_logits(b.input);
        if (o.teacher) {
          const Tensor target = b.target.device() == logits.device() ? b.target : b.target.to(logits.device());
          Tensor t = cached_teacher.defined() && b.indices.defined()
                         ? index_select(cached_teacher, 0, b.indices).to(logits.device())
                         : teacher_logits(*o.teacher, b.input, logits.device());
          l = distillation_loss(logits, t, target, o.distill_temperature, o.distill_alpha);
        } else {
          l = loss(logits, b.target);
        }
      }
      optimizer_->zero_grad();
      scaler.scale(l).backward();
      if (o.clip_grad_norm > 0) {
        scaler.unscale_(*optimizer_);
        optim::clip_grad_norm_(optimizer_->params(), o.clip_grad_norm);
      }
      scaler.step(*optimizer_);
      scaler.update();
      loss_scale_ = scaler.state_dict();
      accumulate(running_, logits.detach(), b.target, l);
      batch_++;
      global_step_++;
      samples_seen_ += b.input.size(0);
      double t_cb = now_seconds();
      epoch_seconds_ = base + (t_cb - t_start) - callback_time;
      MetricValues running = running_metrics(running_);
      for (const auto& c : cbs) c->on_batch_end(*this, batch_ - 1, running);
      callback_time += now_seconds() - t_cb;
    }
    MetricValues logs = running_metrics(running_);
    if (val) {
      EvalResult ev = evaluate(*val, o.eval_batch_size);
      MetricValues train_keys = logs;
      for (const auto& [k, v] : train_keys) logs.emplace_back("val_" + k, ev.value(k));
    }
    logs.emplace_back("lr", epoch_lr_);
    history_.add_epoch(logs);
    seconds_per_epoch_.push_back(epoch_seconds_);
    epoch_++;
    batch_ = 0;
    running_ = Running{};
    epoch_seconds_ = 0;
    for (const auto& c : cbs) c->on_epoch_end(*this, epoch_ - 1, logs);
  }
  for (const auto& c : cbs) c->on_train_end(*this);
  return history_;
}

// ---------------------------------------------------------------- checkpoints

namespace {
const char* kTrainerFile = "trainer.json";
}  // namespace

bool Trainer::has_checkpoint(const std::string& dir) { return !io::complete_dir(dir, kTrainerFile).empty(); }

void Trainer::save_checkpoint(const std::string& dir, const std::map<std::string, std::string>& extra) const {
  io::write_dir_atomic(dir, [&](const std::string& tmp) { write_checkpoint_files(tmp, extra); });
}

void Trainer::write_checkpoint_files(const std::string& tmp,
                                     const std::map<std::string, std::string>& extra) const {
  nn::save_state_dict(*model_, tmp + "/model.safetensors");

  io::NamedTensors tensors;
  io::Metadata meta;
  optimizer_->state_dict().append_to(tensors, meta, "optimizer.");
  if (callbacks_)
    for (const auto& c : *callbacks_) c->state().append_to(tensors, meta, "callback." + c->name() + ".");
  meta["format"] = "mox-trainer-state";
  io::save_safetensors(tmp + "/state.safetensors", tensors, meta);

  history_.write_csv(tmp + "/history.csv");

  nlohmann::json j;
  j["format"] = "mox-checkpoint";
  j["version"] = 1;
  j["loss"] = loss_.name;
  j["epoch"] = epoch_;
  j["batch"] = batch_;
  j["global_step"] = global_step_;
  j["samples_seen"] = samples_seen_;
  j["stop"] = stop_;
  j["epoch_seconds"] = format_scalar(epoch_seconds_);
  j["epoch_lr"] = format_scalar(epoch_lr_);
  if (!loss_scale_.scalars.empty())
    j["loss_scale"] = {{"scale", format_scalar(loss_scale_.scalars.at("scale"))},
                       {"growth_tracker", format_scalar(loss_scale_.scalars.at("growth_tracker"))},
                       {"skipped_steps", format_scalar(loss_scale_.scalars.at("skipped_steps"))}};
  std::vector<std::string> spe;
  for (double s : seconds_per_epoch_) spe.push_back(format_scalar(s));
  j["seconds_per_epoch"] = spe;
  j["running"] = {{"loss_sum", format_scalar(running_.loss_sum)},
                  {"correct", format_scalar(running_.correct)},
                  {"topk_correct", format_scalar(running_.topk_correct)},
                  {"abs_err", format_scalar(running_.abs_err)},
                  {"sq_err", format_scalar(running_.sq_err)},
                  {"samples", running_.samples}};
  Generator::State g = default_generator().state();
  j["default_generator"] = {{"s", {g.s[0], g.s[1], g.s[2], g.s[3]}},
                            {"seed", g.seed},
                            {"spare", format_scalar(g.spare)},
                            {"has_spare", g.has_spare}};
  std::vector<std::string> cb_names;
  if (callbacks_)
    for (const auto& c : *callbacks_) cb_names.push_back(c->name());
  j["callbacks"] = cb_names;
  for (const auto& [name, contents] : extra) {
    MOX_CHECK(name.find('/') == std::string::npos && name != kTrainerFile, tmp, "bad extra file name " + name);
    io::write_file_atomic(tmp + "/" + name, contents);
  }
  // trainer.json last: a folder without it is not a checkpoint.
  io::write_file_atomic(tmp + "/" + kTrainerFile, j.dump(1) + "\n");
}

void Trainer::load_checkpoint(const std::string& dir_in) {
  // dir.old when a save was interrupted after moving the last one aside
  const std::string dir = io::complete_dir(dir_in, kTrainerFile);
  MOX_CHECK(!dir.empty(), dir_in, "no checkpoint here (trainer.json missing)");
  const std::string jpath = dir + "/" + kTrainerFile;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(jpath));
  } catch (const nlohmann::json::exception& e) {
    throw Error(jpath, std::string("not valid JSON: ") + e.what());
  }
  auto field = [&](const char* key) -> const nlohmann::json& {
    MOX_CHECK(j.contains(key), jpath, std::string("missing field \"") + key + "\"");
    return j[key];
  };
  try {
    MOX_CHECK(field("format") == "mox-checkpoint", jpath, "format is not mox-checkpoint");
    MOX_CHECK(field("loss").get<std::string>() == loss_.name, jpath,
              "the checkpoint was trained with loss " + field("loss").get<std::string>() + ", not " + loss_.name);
    // Read everything before changing anything.
    int64_t epoch = field("epoch").get<int64_t>(), batch = field("batch").get<int64_t>();
    int64_t gstep = field("global_step").get<int64_t>(), seen = field("samples_seen").get<int64_t>();
    bool stop = field("stop").get<bool>();
    double eps = parse_scalar(field("epoch_seconds").get<std::string>(), jpath);
    double elr = parse_scalar(field("epoch_lr").get<std::string>(), jpath);
    optim::StateDict scale_sd;
    if (j.contains("loss_scale"))
      for (const char* k : {"scale", "growth_tracker", "skipped_steps"})
        scale_sd.scalars[k] = parse_scalar(j["loss_scale"].at(k).get<std::string>(), jpath);
    std::vector<double> spe;
    for (const auto& s : field("seconds_per_epoch")) spe.push_back(parse_scalar(s.get<std::string>(), jpath));
    const auto& rj = field("running");
    Running run;
    run.loss_sum = parse_scalar(rj.at("loss_sum").get<std::string>(), jpath);
    run.correct = parse_scalar(rj.at("correct").get<std::string>(), jpath);
    run.topk_correct = parse_scalar(rj.at("topk_correct").get<std::string>(), jpath);
    run.abs_err = parse_scalar(rj.at("abs_err").get<std::string>(), jpath);
    run.sq_err = parse_scalar(rj.at("sq_err").get<std::string>(), jpath);
    run.samples = rj.at("samples").get<int64_t>();
    const auto& gj = field("default_generator");
    Generator::State g{};
    for (int i = 0; i < 4; i++) g.s[i] = gj.at("s").at(size_t(i)).get<uint64_t>();
    g.seed = gj.at("seed").get<uint64_t>();
    g.spare = parse_scalar(gj.at("spare").get<std::string>(), jpath);
    g.has_spare = gj.at("has_spare").get<bool>();

    History hist = History::read_csv(dir + "/history.csv");
    io::SafetensorsFile st = io::load_safetensors(dir + "/state.safetensors");
    optim::StateDict opt_sd = optim::StateDict::extract(st, "optimizer.");
    std::map<std::string, optim::StateDict> cb;
    for (const auto& name : field("callbacks")) {
      std::string n = name.get<std::string>();
      cb[n] = optim::StateDict::extract(st, "callback." + n + ".");
    }

    nn::load_state_dict(*model_, dir + "/model.safetensors");
    optimizer_->load_state_dict(opt_sd);
    loss_scale_ = scale_sd;
    epoch_ = epoch;
    batch_ = batch;
    global_step_ = gstep;
    samples_seen_ = seen;
    stop_ = stop;
    epoch_seconds_ = eps;
    epoch_lr_ = elr;
    seconds_per_epoch_ = spe;
    running_ = run;
    history_ = hist;
    default_generator().set_state(g);
    pending_callback_state_ = std::move(cb);
  } catch (const nlohmann::json::exception& e) {
    throw Error(jpath, std::string("malformed checkpoint: ") + e.what());
  }
}

// ---------------------------------------------------------------- EarlyStopping

EarlyStopping::EarlyStopping(EarlyStoppingOptions options) : opt_(std::move(options)) {
  MOX_CHECK(opt_.patience >= 0, "EarlyStopping", "patience must be >= 0");
  MOX_CHECK(opt_.min_delta >= 0, "EarlyStopping", "min_delta must be >= 0");
  maximize_ = resolve_maximize(opt_.mode, opt_.monitor, "EarlyStopping");
}

void EarlyStopping::on_train_begin(Trainer&) {
  best_ = maximize_ ? -INFINITY : INFINITY;
  best_epoch_ = -1;
  wait_ = 0;
  stopped_epoch_ = -1;
  best_weights_.clear();
}

void EarlyStopping::on_epoch_end(Trainer& t, int64_t epoch, const MetricValues& logs) {
  double current = monitored(logs, opt_.monitor, "EarlyStopping");
  auto snapshot = [&] {
    best_weights_.clear();
    for (const auto& [k, v] : t.model().state_dict()) best_weights_[k] = v.clone();
  };
  if (opt_.restore_best_weights && best_weights_.empty()) snapshot();
  wait_++;
  bool improved = maximize_ ? current - opt_.min_delta > best_ : current + opt_.min_delta < best_;
  if (improved) {
    best_ = current;
    best_epoch_ = epoch;
    if (opt_.restore_best_weights) snapshot();
    wait_ = 0;
    return;
  }
  if (wait_ >= opt_.patience && epoch > 0) {
    stopped_epoch_ = epoch;
    t.request_stop();
    if (opt_.restore_best_weights && !best_weights_.empty()) {
      nn::StateDict sd;
      for (const auto& [k, v] : best_weights_) sd.insert(k, v);
      t.model().load_state_dict(sd);
    }
  }
}

optim::StateDict EarlyStopping::state() const {
  optim::StateDict sd;
  sd.scalars["best"] = best_;
  sd.scalars["best_epoch"] = double(best_epoch_);
  sd.scalars["wait"] = double(wait_);
  sd.scalars["stopped_epoch"] = double(stopped_epoch_);
  for (const auto& [k, v] : best_weights_) sd.tensors["weights." + k] = v;
  return sd;
}

void EarlyStopping::load_state(const optim::StateDict& sd) {
  best_ = sd.scalar("best", "EarlyStopping");
  best_epoch_ = int64_t(sd.scalar("best_epoch", "EarlyStopping"));
  wait_ = int64_t(sd.scalar("wait", "EarlyStopping"));
  stopped_epoch_ = int64_t(sd.scalar("stopped_epoch", "EarlyStopping"));
  best_weights_.clear();
  for (const auto& [k, v] : sd.tensors)
    if (k.rfind("weights.", 0) == 0) best_weights_[k.substr(8)] = v.clone();
}

// ---------------------------------------------------------------- ModelCheckpoint

ModelCheckpoint::ModelCheckpoint(ModelCheckpointOptions options) : opt_(std::move(options)) {
  MOX_CHECK(!opt_.path.empty(), "ModelCheckpoint", "no path");
  maximize_ = resolve_maximize(opt_.mode, opt_.monitor, "ModelCheckpoint");
}

void ModelCheckpoint::on_epoch_end(Trainer& t, int64_t epoch, const MetricValues& logs) {
  io::Metadata meta{{"epoch", std::to_string(epoch)}};
  if (opt_.save_best_only) {
    double current = monitored(logs, opt_.monitor, "ModelCheckpoint");
    bool improved = !has_best_ || (maximize_ ? current > best_ : current < best_);
    if (!improved) return;
    has_best_ = true;
    best_ = current;
    best_epoch_ = epoch;
    meta[opt_.monitor] = format_scalar(current);
  }
  nn::save_state_dict(t.model(), opt_.path, meta);
}

optim::StateDict ModelCheckpoint::state() const {
  optim::StateDict sd;
  sd.scalars["has_best"] = has_best_ ? 1 : 0;
  sd.scalars["best"] = best_;
  sd.scalars["best_epoch"] = double(best_epoch_);
  return sd;
}

void ModelCheckpoint::load_state(const optim::StateDict& sd) {
  has_best_ = sd.scalar("has_best", "ModelCheckpoint") != 0;
  best_ = sd.scalar("best", "ModelCheckpoint");
  best_epoch_ = int64_t(sd.scalar("best_epoch", "ModelCheckpoint"));
}

// ---------------------------------------------------------------- LearningRateScheduler

LearningRateScheduler::LearningRateScheduler(std::shared_ptr<optim::LRScheduler> scheduler, bool per_step)
    : scheduler_(std::move(scheduler)), per_step_(per_step) {
  MOX_CHECK(scheduler_ != nullptr, "LearningRateScheduler", "no scheduler");
}

LearningRateScheduler::LearningRateScheduler(std::shared_ptr<optim::ReduceLROnPlateau> plateau,
                                             std::string monitor)
    : plateau_(std::move(plateau)), monitor_(std::move(monitor)) {
  MOX_CHECK(plateau_ != nullptr, "LearningRateScheduler", "no scheduler");
}

void LearningRateScheduler::on_batch_end(Trainer&, int64_t, const MetricValues&) {
  if (scheduler_ && per_step_) scheduler_->step();
}

void LearningRateScheduler::on_epoch_end(Trainer&, int64_t, const MetricValues& logs) {
  if (plateau_) plateau_->step(monitored(logs, monitor_, "ReduceLROnPlateau"));
  else if (!per_step_) scheduler_->step();
}

optim::StateDict LearningRateScheduler::state() const {
  return plateau_ ? plateau_->state_dict() : scheduler_->state_dict();
}

void LearningRateScheduler::load_state(const optim::StateDict& sd) {
  if (plateau_) plateau_->load_state_dict(sd);
  else scheduler_->load_state_dict(sd);
}

// ---------------------------------------------------------------- CSVLogger, progress

void CSVLogger::on_epoch_end(Trainer& t, int64_t, const MetricValues&) { t.history().write_csv(path_); }

ProgressCallback::ProgressCallback(std::ostream& out, bool interactive, int64_t epochs)
    : out_(out), interactive_(interactive), epochs_(epochs) {}

void ProgressCallback::on_epoch_begin(Trainer&, int64_t epoch) {
  bar_ = std::make_unique<ProgressBar>(steps_, epoch + 1, epochs_, out_, interactive_);
}

void ProgressCallback::on_batch_end(Trainer&, int64_t batch, const MetricValues& running) {
  if (bar_) bar_->update(batch + 1, running);
}

void ProgressCallback::on_epoch_end(Trainer&, int64_t, const MetricValues& logs) {
  if (bar_) bar_->finish(logs);
  bar_.reset();
}

// ---------------------------------------------------------------- Checkpointer

Checkpointer::Checkpointer(std::string dir, int64_t every_steps, std::map<std::string, std::string> extra)
    : dir_(std::move(dir)), every_(every_steps), extra_(std::move(extra)) {
  MOX_CHECK(every_ >= 0, "Checkpointer", "every_steps must be >= 0");
}

void Checkpointer::on_batch_end(Trainer& t, int64_t, const MetricValues&) {
  if (every_ > 0 && t.global_step() % every_ == 0) {
    t.save_checkpoint(dir_, extra_);
    saves_++;
  }
}

void Checkpointer::on_epoch_end(Trainer& t, int64_t, const MetricValues&) {
  t.save_checkpoint(dir_, extra_);
  saves_++;
}

}  // namespace mox::train
