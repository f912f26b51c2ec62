#include "mox/train/compute.h"
#include "mox/train/finetune.h"

#include <algorithm>
#include <filesystem>
#include <ostream>

#include <nlohmann/json.hpp>

#include "mox/data/datasets/text.h"
#include "mox/data/split.h"
#include "mox/data/text/char_tokenizer.h"
#include "mox/io/config.h"
#include "mox/io/file_util.h"
#include "mox/mox.h"
#include "mox/nn/models/bert.h"
#include "mox/nn/serialize.h"
#include "mox/optim/optim.h"
#include "mox/train/metrics.h"
#include "mox/train/pretrain.h"
#include "mox/train/report.h"
#include "mox/train/trainer.h"

namespace mox::train {

namespace fs = std::filesystem;

namespace {

// BertForSequenceClassification as a one-input module for the Trainer: the attention mask
// is read off the ids ([PAD] = padding).
class PaddedBertClassifier : public nn::Module {
 public:
  PaddedBertClassifier(std::shared_ptr<nn::BertForSequenceClassification> m, int64_t pad) : pad_(pad) {
    clf = register_module("clf", std::move(m));
  }
  Tensor forward(const Tensor& ids) override { return clf->logits(ids, Tensor(), ne(ids, double(pad_))); }
  std::string type_name() const override { return "BertClassifier"; }
  std::shared_ptr<nn::BertForSequenceClassification> clf;

 private:
  int64_t pad_;
};

struct Special {
  int64_t pad, cls, sep, mask;
};

}  // namespace

FinetuneResult run_finetune(const std::string& config_path, const FinetuneOptions& options) {
  std::ostream* log = options.log;
  std::string text = io::read_file(config_path);
  if (!options.overrides.empty()) text = io::apply_overrides(text, config_path, options.overrides);
  std::shared_ptr<io::ConfigTable> root = io::parse_config_table(text, config_path);
  const io::ConfigTable& m = root->get_table("model");
  const io::ConfigTable& d = root->get_table("data");
  io::ConfigTable empty_train(config_path, "train");
  const io::ConfigTable& t = root->has("train") ? root->get_table("train") : empty_train;

  // The encoder: pre-trained, or fresh with the sizes given.
  std::string pretrained = m.get_string("pretrained", "");
  if (!pretrained.empty() && fs::path(pretrained).is_relative() && !fs::exists(pretrained))
    pretrained = (fs::path(config_path).parent_path() / pretrained).string();
  const double dropout = m.get_float("dropout", 0.1);
  // false: the pre-trained run's tokenizer and architecture with random weights (the
  // baseline of a transfer comparison: everything equal but the pre-training)
  const bool load_weights = m.get_bool("load_weights", true);
  // The sizes of a fresh encoder (read always, used when there is no pre-trained one).
  const nn::BertConfig fresh = bert_sizes(m);
  const std::string type = m.get_string("type", "bert");
  if (type != "bert") throw m.error("type", "must be \"bert\", got \"" + type + "\"");
  nn::BertConfig bc;
  Special sp{};
  std::unique_ptr<data::TextTokenizer> tok;
  if (!pretrained.empty()) {
    const std::string mj = pretrained + "/model.json";
    MOX_CHECK(fs::exists(mj), pretrained, "not a pre-trained BERT run folder (model.json missing)");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(io::read_file(mj));
      MOX_CHECK(j.value("type", "") == "bert", mj, "type must be \"bert\" to fine-tune a classifier, got " + j.value("type", std::string("?")));
      const auto& s = j.at("special_tokens");
      sp = {s.at("pad").get<int64_t>(), s.at("cls").get<int64_t>(), s.at("sep").get<int64_t>(), s.at("mask").get<int64_t>()};
    } catch (const nlohmann::json::exception& e) {
      throw Error(mj, e.what());
    }
    bc = nn::bert_config_from_json(j, mj);
    tok = data::load_text_tokenizer(pretrained + "/tokenizer");
  } else {
    bc = fresh;
    tok = std::make_unique<data::CharTokenizer>(data::CharTokenizer::bytes());
    const int64_t V = tok->vocab_size();
    sp = {V, V + 1, V + 2, V + 3};  // as `mox pretrain` lays out BERT's vocabulary
    bc.vocab_size = V + 4;
  }
  bc.hidden_dropout_prob = bc.attention_probs_dropout_prob = dropout;
  m.check_no_unknown_keys("[model] of finetune");

  // The data: fortune categories, encoded as [CLS] + ids, cut and padded to max_length.
  std::vector<std::string> cats;
  {
    const io::ConfigValue* v = d.find("categories");
    if (!v) throw d.error("categories", "missing: the fortune files to classify, e.g. [\"computers\", \"politics\"]");
    if (!v->is_array()) throw d.value_error(*v, "expected an array of names, got " + v->describe());
    for (const auto& c : std::get<io::ConfigArray>(v->v)) {
      if (!c.is_string()) throw d.value_error(c, "expected a category name, got " + c.describe());
      cats.push_back(std::get<std::string>(c.v));
    }
    if (cats.size() < 2) throw d.error("categories", "needs at least two categories");
  }
  const std::string fdir = d.get_string("fortune_dir", "/usr/share/games/fortunes");
  const int64_t L = d.get_int("max_length", std::min<int64_t>(128, bc.max_position_embeddings));
  if (L < 2 || L > bc.max_position_embeddings)
    throw d.error("max_length", "must be in [2, " + std::to_string(bc.max_position_embeddings) + "] (the encoder's positions)");
  data::SplitOptions so;
  so.val_fraction = d.get_float("val_fraction", 0.1);
  so.test_fraction = d.get_float("test_fraction", 0.2);
  so.stratified = true;
  d.check_no_unknown_keys("[data] of finetune");

  const int64_t epochs = t.get_int("epochs", 3), batch = t.get_int("batch_size", 32);
  const double lr = t.get_float("lr", 5e-4), wd = t.get_float("weight_decay", 0.01);
  const int64_t warmup = t.get_int("warmup_steps", 0), threads = t.get_int("threads", 0);
  const double clip = t.get_float("clip_grad_norm", 1.0);
  const uint64_t seed = uint64_t(t.get_int("seed", 0));
  if (epochs < 1) throw t.error("epochs", "must be >= 1");
  if (batch < 1) throw t.error("batch_size", "must be >= 1");
  if (!(lr > 0)) throw t.error("lr", "must be > 0");
  Compute compute = parse_compute(t);
  t.check_no_unknown_keys("[train] of finetune");
  override_compute(compute, options.device, options.precision);
  root->check_no_unknown_keys("a finetune config (sections: model, data, train)");
  if (threads > 0) set_num_threads(int(threads));
  so.seed = seed;

  data::TextCorpus corpus = data::load_fortunes(fdir, cats);
  const int64_t N = int64_t(corpus.texts.size()), K = int64_t(corpus.class_names.size());
  Tensor ids = full({N, L}, double(sp.pad), TensorOptions(DType::I64));
  int64_t* ip = ids.data<int64_t>();
  for (int64_t i = 0; i < N; i++) {
    std::vector<int32_t> e = tok->encode(corpus.texts[size_t(i)]);
    ip[i * L] = sp.cls;
    for (int64_t j = 0; j < std::min<int64_t>(int64_t(e.size()), L - 1); j++) ip[i * L + 1 + j] = e[size_t(j)];
  }
  Tensor labels = from_vector(corpus.labels, {N}, TensorOptions(DType::I64));
  data::Split split = data::train_val_test_split(labels, N, so);
  auto all = std::make_shared<data::TensorDataset>(ids, labels);
  auto subset = [&](const std::vector<int64_t>& idx) { return std::make_shared<data::Subset>(all, idx); };
  auto train_set = subset(split.train), val_set = subset(split.val), test_set = subset(split.test);

  manual_seed(seed);
  auto clf = std::make_shared<nn::BertForSequenceClassification>(bc, K);
  if (!pretrained.empty() && load_weights) {
    // The MLM run's encoder (bert.*) goes in; the pooler and the classifier start fresh.
    auto mlm = std::make_shared<nn::BertForMaskedLM>(bc);
    nn::load_state_dict(*mlm, pretrained + "/model.safetensors");
    nn::LoadResult lr_ = clf->bert->load_state_dict(mlm->bert->state_dict(), /*strict=*/false);
    for (const auto& k : lr_.missing_keys)
      MOX_CHECK(k.rfind("pooler.", 0) == 0, pretrained, "the pre-trained encoder lacks " + k);
  }
  auto model = std::make_shared<PaddedBertClassifier>(clf, sp.pad);
  model->to(compute.device);

  auto opt = std::make_shared<optim::AdamW>(optim::weight_decay_groups(model->parameters(), wd), optim::AdamWOptions(lr));
  Trainer trainer(model, opt, LossSpec{});
  FitOptions fo;
  fo.epochs = epochs;
  fo.batch_size = batch;
  fo.validation_data = val_set;
  fo.seed = seed;
  fo.clip_grad_norm = clip;
  fo.precision = compute.precision;
  fo.verbose = log ? 1 : 0;
  fo.out = log;
  fo.eval_batch_size = 256;
  const int64_t steps = epochs * ((int64_t(split.train.size()) + batch - 1) / batch);
  // linear warm-up, then a cosine down to 0 over the run
  auto sched = std::make_shared<optim::CosineAnnealingLR>(*opt, steps, warmup, 0.0);
  fo.callbacks.push_back(std::make_shared<LearningRateScheduler>(sched, /*per_step=*/true));
  if (log)
    *log << "fine-tuning a BERT classifier (" << (load_weights && !pretrained.empty() ? "pre-trained: " + pretrained : "random init")
         << ") on " << K << " fortune categories: " << split.train.size() << " train / " << split.val.size()
         << " val / " << split.test.size() << " test, max_length " << L << "\n"
         << std::flush;
  History hist = trainer.fit(train_set, fo);
  EvalResult test = trainer.evaluate(*test_set, 256);

  // The majority class of the training split, scored on the test split.
  std::vector<int64_t> counts(size_t(K), 0);
  for (int64_t i : split.train) counts[size_t(corpus.labels[size_t(i)])]++;
  const int64_t major = int64_t(std::max_element(counts.begin(), counts.end()) - counts.begin());
  Tensor test_labels = test.targets.reshape({test.targets.numel()}).to(DType::I64);
  ClassificationReport base = classification_report(full({test_labels.numel()}, double(major), DType::I64), test_labels, K);
  ClassificationReport rep = classification_report(argmax(test.outputs, 1), test_labels, K);

  std::string run_dir = options.out.empty() ? (fs::path("runs") / fs::path(config_path).stem()).string() : options.out;
  MOX_CHECK(options.overwrite || !fs::exists(run_dir + "/summary.json"), run_dir,
            "already holds a run: pass --overwrite or another --out");
  fs::create_directories(run_dir);
  io::write_file_atomic(run_dir + "/config.toml", text);
  nn::save_state_dict(*clf, run_dir + "/model.safetensors");
  nlohmann::json mj = nn::bert_config_to_json(bc);
  mj["type"] = "bert-classifier";
  mj["num_labels"] = K;
  mj["class_names"] = corpus.class_names;
  mj["special_tokens"] = {{"pad", sp.pad}, {"cls", sp.cls}, {"sep", sp.sep}, {"mask", sp.mask}};
  mj["max_length"] = L;
  io::write_file_atomic(run_dir + "/model.json", mj.dump(2) + "\n");
  tok->save(run_dir + "/tokenizer");
  hist.write_csv(run_dir + "/history.csv");

  FinetuneResult r;
  r.run_dir = run_dir;
  r.test_accuracy = rep.accuracy;
  r.test_macro_f1 = rep.macro.f1;
  r.baseline_accuracy = base.accuracy;
  r.pretrained = !pretrained.empty() && load_weights;
  nlohmann::json sj = {{"task", "classification"},
                       {"pretrained", r.pretrained ? pretrained : ""},
                       {"architecture_from", pretrained},
                       {"classes", corpus.class_names},
                       {"test", {{"accuracy", rep.accuracy}, {"macro_f1", rep.macro.f1}, {"loss", test.value("loss")}}},
                       {"baseline", {{"majority_class", corpus.class_names[size_t(major)]}, {"accuracy", base.accuracy}, {"macro_f1", base.macro.f1}}},
                       {"epochs", hist.epochs()},
                       {"steps", trainer.global_step()},
                       {"seconds_per_epoch", trainer.seconds_per_epoch()},
                       {"train_examples", split.train.size()},
                       {"test_examples", split.test.size()},
                       {"parameters", model->num_parameters()},
                       {"seed", seed}};
  io::write_file_atomic(run_dir + "/summary.json", sj.dump(2) + "\n");

  ReportInput ri;
  ri.title = fs::path(run_dir).filename().string();
  ri.task = "classification";
  ri.class_names = corpus.class_names;
  ri.history = hist;
  ri.splits = {SplitOutputs{"test", test.outputs, test.targets, test.metrics}};
  ri.config_toml = text;
  ri.parameters = model->num_parameters();
  ri.data_description = "fortune categories; BERT encoder " + std::string(r.pretrained ? "pre-trained in " + pretrained : "from random weights");
  ri.seconds_per_epoch = trainer.seconds_per_epoch();
  write_report(run_dir + "/report.html", ri);
  if (log) {
    char b[200];
    std::snprintf(b, sizeof b, "test accuracy %.4f, macro F1 %.4f (majority baseline %.4f)\n", rep.accuracy,
                  rep.macro.f1, base.accuracy);
    *log << b << "wrote " << run_dir << "/\n" << std::flush;
  }
  return r;
}

}  // namespace mox::train
