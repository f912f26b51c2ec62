#pragma once
// The models a server holds: GPT runs (mox pretrain / finetune, quantised or not) generate
// text through a continuous-batching scheduler; classifier runs (mox train: images, tables,
// text) classify under a lock. Each is named by its folder's name or by NAME=DIR.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mox/data/text/text_tokenizer.h"
#include "mox/serve/openai.h"
#include "mox/serve/scheduler.h"
#include "mox/train/run.h"

namespace mox::serve {

struct Classification {
  struct Item {
    int64_t index = 0;  // argmax class
    std::string label;
    double probability = 0;
    std::vector<std::pair<std::string, double>> probabilities;  // by probability, top_k or all
  };
  std::vector<Item> items;
};

class ServedModel {
 public:
  // spec: "DIR" or "NAME=DIR". Throws mox::Error naming the folder when it holds no run.
  ServedModel(const std::string& spec, const SchedulerOptions& scheduler_options);
  ~ServedModel();

  const std::string& name() const { return name_; }
  const std::string& dir() const { return dir_; }
  bool is_gpt() const { return gpt_ != nullptr; }
  int64_t created() const { return created_; }  // the folder's mtime (Unix seconds)
  nlohmann::json describe() const;              // for GET /v1/models

  // GPT
  int64_t context() const;                      // block_size
  std::vector<int32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  int64_t vocab_size() const;
  GenerationScheduler& scheduler() { return *scheduler_; }

  // Classifiers: throws ApiError 400 naming 'input' / 'image' when the inputs do not fit the
  // model (shape, kind, count).
  Classification classify(const ClassifyParams& p);
  std::string input_kind() const;               // "image", "table", "text"

 private:
  std::string name_, dir_;
  int64_t created_ = 0;
  std::shared_ptr<nn::GPT> gpt_;
  std::unique_ptr<data::TextTokenizer> tokenizer_;
  std::unique_ptr<GenerationScheduler> scheduler_;
  std::unique_ptr<train::LoadedRun> run_;
  std::mutex run_mu_;  // classifier forwards one at a time
};

// Decodes standard base64 (padding optional, whitespace ignored); throws ApiError 400 naming
// `param` for other characters.
std::string base64_decode(const std::string& text, const std::string& param);

}  // namespace mox::serve
