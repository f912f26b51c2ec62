#pragma once
// Continuous batching for one GPT: every sequence the server is generating for that model
// is a row of one running batch, decoded together one token per step over a shared KV cache
// (nn::GPT::forward_cached). The cache is allocated once for max_batch rows; the batch is its
// first B rows. New sequences join between decode steps: their prompts are read (prefilled,
// the joiners together) into a small cache and copied into rows B.., aligned so that all rows
// write the same slot next -- rows are left-padded, and row b's slot s holds position
// s - pad[b] as in nn::KVCache (a longer prompt than the shared length shifts the running
// rows right first). A finished row leaves at once: the last row moves into its place. When
// the shared length reaches the block size, every row shifts left by the smallest pad.
//
// A sequence needs prompt + max_tokens <= block_size (the server refuses longer requests
// with 400, as OpenAI's API does): no sequence is ever cut, so a row's tokens are what the
// model gives that prompt alone (up to floating-point differences of batched products).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mox/nn/models/generate.h"
#include "mox/nn/models/gpt.h"

namespace mox::serve {

// One sequence to generate. The callbacks run on the scheduler's thread: keep them short.
struct Sequence {
  std::vector<int32_t> prompt;       // token ids, not empty
  int64_t max_tokens = 16;           // >= 1; prompt.size() + max_tokens <= block_size
  nn::SamplingOptions sampling;      // temperature 0 = greedy; seed: this sequence's generator
  std::vector<std::string> stop;     // stop strings (need decode)
  nn::StopStrings::Decode decode;    // ids -> text, for stop strings
  // Called with each id once it is final (after stop-string filtering), in order.
  std::function<void(int32_t id)> on_token;
  // Called once when the sequence ends: finish_reason "stop" (a stop string), "length"
  // (max_tokens), "cancelled" (cancel() or the scheduler stopped) or "error" (message in
  // `error`). `ids` are the generated ids (what on_token reported).
  std::function<void(const std::vector<int32_t>& ids, const std::string& finish_reason,
                     const std::string& error)>
      on_done;
  // Set from any thread to end the sequence at the next step (finish_reason "cancelled").
  std::atomic<bool> cancel{false};
};

struct SchedulerOptions {
  int64_t max_batch = 32;   // rows decoded together
  bool batching = true;     // false: one sequence at a time (for comparison benchmarks)
};

struct SchedulerStats {
  int64_t running = 0, waiting = 0;  // rows in the batch; sequences not yet admitted
  int64_t steps = 0;                 // decode steps so far
  int64_t tokens = 0;                // tokens generated so far
  int64_t shifts = 0;                // whole-batch slot shifts (longer joiners, compactions)
};

class GenerationScheduler {
 public:
  // The model is shared with nothing else while the scheduler runs (it is put in eval mode).
  GenerationScheduler(std::shared_ptr<nn::GPT> model, SchedulerOptions options = {});
  ~GenerationScheduler();  // stop()
  GenerationScheduler(const GenerationScheduler&) = delete;
  GenerationScheduler& operator=(const GenerationScheduler&) = delete;

  // Queues a sequence; throws mox::Error for an empty prompt, ids outside the vocabulary,
  // max_tokens < 1, prompt + max_tokens > block_size, invalid sampling options, or after
  // stop().
  void submit(std::shared_ptr<Sequence> seq);
  // Finishes what is running and waiting (drain = true) or cancels it, then joins the thread.
  void stop(bool drain = true);
  SchedulerStats stats() const;
  const nn::GPT& model() const { return *model_; }

 private:
  struct Row;
  void loop();
  void admit(std::vector<std::shared_ptr<Sequence>>& joiners);
  void step();
  void finish(size_t row, const std::string& reason, const std::string& error = "");
  void remove_finished();
  void shift_slots(int64_t from, int64_t to, int64_t n);  // every row's slots [from, from+n) -> [to, ..)
  void refresh_view();                                    // view_ over rows 0..B-1, pads, length

  std::shared_ptr<nn::GPT> model_;
  SchedulerOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Sequence>> waiting_;
  bool stopping_ = false, drain_ = true;
  std::thread thread_;

  // The running batch (scheduler thread only).
  std::vector<std::unique_ptr<Row>> rows_;
  nn::KVCache cache_;    // max_batch rows, allocated on first use
  nn::KVCache view_;     // the first B rows of cache_, what forward_cached sees
  int64_t length_ = 0;   // slots filled (shared by all rows)
  std::atomic<int64_t> steps_{0}, tokens_{0}, shifts_{0}, running_{0};
};

}  // namespace mox::serve
