#pragma once
// Fine-tuning a BERT encoder into a text classifier (`mox finetune CONFIG`): a classification
// head on the pooled [CLS] output (BertForSequenceClassification), trained on the Debian
// fortune categories (each file one class), starting from a `mox pretrain` BERT run
// (transfer learning) or from random weights (the same budget, for comparison).
//
//   [model]  pretrained = "runs/bert"  (a pretrain run folder: model.json type "bert",
//            model.safetensors, tokenizer/); without it: type = "bert" and the sizes
//            (num_hidden_layers, num_attention_heads, hidden_size, intermediate_size,
//            max_position_embeddings), a byte tokenizer and random weights
//            load_weights = true (false: the pre-trained run's tokenizer and architecture
//            with random weights: the no-pre-training baseline at an equal budget)
//            dropout = 0.1 (classifier and encoder)
//   [data]   categories = ["computers", ...] (fortune files), fortune_dir, max_length = 128
//            (tokens, [CLS] included; longer fortunes are cut), val_fraction = 0.1,
//            test_fraction = 0.2 (stratified, seeded)
//   [train]  epochs = 3, batch_size = 32, lr = 5e-4, weight_decay = 0.01, warmup_steps
//            = 0 (then a cosine to 0), clip_grad_norm = 1.0, seed = 0, threads = 0
//
// The run folder: config.toml, model.json + model.safetensors, tokenizer/, history.csv,
// summary.json (test accuracy, macro F1, the majority-class baseline, pretrained or not)
// and report.html.
#include <iosfwd>
#include <string>
#include <vector>

namespace mox::train {

struct FinetuneOptions {
  std::vector<std::string> overrides;
  std::string out;         // default runs/<config stem>
  bool overwrite = false;
  std::ostream* log = nullptr;
  std::string device, precision;  // override [train] device / precision when set
};

struct FinetuneResult {
  std::string run_dir;
  double test_accuracy = 0, test_macro_f1 = 0, baseline_accuracy = 0;
  bool pretrained = false;
};

FinetuneResult run_finetune(const std::string& config_path, const FinetuneOptions& options);

}  // namespace mox::train
