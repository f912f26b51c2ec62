#include "mox/serve/scheduler.h"

#include <algorithm>
#include <span>

#include "mox/autograd/node.h"
#include "mox/ops/ops.h"
#include "mox/tensor/generator.h"
#include "mox/tensor/error.h"

namespace mox::serve {

struct GenerationScheduler::Row {
  std::shared_ptr<Sequence> seq;
  std::vector<int32_t> ctx;  // prompt, then the generated ids (for the repetition penalty)
  std::vector<int32_t> out;  // generated ids
  size_t reported = 0;       // ids handed to on_token
  int64_t pad = 0;           // leading slots of this row in the batch cache that are padding
  std::vector<float> logits; // the next token's logits
  Generator gen;
  nn::StopStrings stops;
  bool done = false;

  explicit Row(std::shared_ptr<Sequence> s)
      : seq(std::move(s)), ctx(seq->prompt), gen(seq->sampling.seed), stops(seq->stop, seq->decode) {}
  void report(size_t upto) {
    for (; reported < upto; reported++)
      if (seq->on_token) seq->on_token(out[reported]);
  }
};

GenerationScheduler::GenerationScheduler(std::shared_ptr<nn::GPT> model, SchedulerOptions options)
    : model_(std::move(model)), options_(options) {
  MOX_CHECK(model_ != nullptr, "GenerationScheduler", "no model");
  MOX_CHECK(options_.max_batch >= 1, "GenerationScheduler",
            "max_batch must be >= 1, got " + std::to_string(options_.max_batch));
  model_->eval();
  thread_ = std::thread([this] { loop(); });
}

GenerationScheduler::~GenerationScheduler() { stop(true); }

void GenerationScheduler::submit(std::shared_ptr<Sequence> seq) {
  const char* where = "generation";
  MOX_CHECK(seq != nullptr, where, "no sequence");
  const nn::GPTConfig& c = model_->config();
  MOX_CHECK(!seq->prompt.empty(), where, "the prompt is empty");
  for (int32_t id : seq->prompt)
    MOX_CHECK(id >= 0 && id < c.vocab_size, where,
              "token id " + std::to_string(id) + " is outside the vocabulary (" + std::to_string(c.vocab_size) + " ids)");
  MOX_CHECK(seq->max_tokens >= 1, where, "max_tokens must be >= 1, got " + std::to_string(seq->max_tokens));
  MOX_CHECK(int64_t(seq->prompt.size()) + seq->max_tokens <= c.block_size, where,
            "the prompt (" + std::to_string(seq->prompt.size()) + " tokens) and max_tokens (" +
                std::to_string(seq->max_tokens) + ") exceed the context of " + std::to_string(c.block_size) +
                " tokens");
  seq->sampling.validate();
  MOX_CHECK(seq->stop.empty() || bool(seq->decode), where, "stop strings need a decode function");
  {
    std::lock_guard<std::mutex> lock(mu_);
    MOX_CHECK(!stopping_, where, "the scheduler is stopping");
    waiting_.push_back(std::move(seq));
  }
  cv_.notify_one();
}

void GenerationScheduler::stop(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      drain_ = drain;
    } else if (!drain) {
      drain_ = false;
    }
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

SchedulerStats GenerationScheduler::stats() const {
  SchedulerStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.waiting = int64_t(waiting_.size());
  }
  s.running = running_.load();
  s.steps = steps_.load();
  s.tokens = tokens_.load();
  s.rebuilds = rebuilds_.load();
  return s;
}

void GenerationScheduler::loop() {
  NoGradGuard no_grad;
  for (;;) {
    std::vector<std::shared_ptr<Sequence>> joiners;
    bool cancel_all = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !rows_.empty(); });
      if (stopping_ && !drain_) {
        cancel_all = true;
        joiners.assign(waiting_.begin(), waiting_.end());
        waiting_.clear();
      } else {
        if (stopping_ && waiting_.empty() && rows_.empty()) break;
        const int64_t room = options_.batching ? options_.max_batch - int64_t(rows_.size())
                                               : (rows_.empty() ? 1 : 0);
        for (int64_t i = 0; i < room && !waiting_.empty(); i++) {
          joiners.push_back(std::move(waiting_.front()));
          waiting_.pop_front();
        }
      }
    }
    if (cancel_all) {
      for (auto& s : joiners)
        if (s->on_done) s->on_done({}, "cancelled", "");
      for (size_t i = 0; i < rows_.size(); i++) finish(i, "cancelled");
      rows_.clear();
      running_ = 0;
      break;
    }
    try {
      if (!joiners.empty()) admit(joiners);
      if (!rows_.empty()) step();
    } catch (const std::exception& e) {
      // A failing forward ends every sequence of the batch with the error; the scheduler
      // goes on with an empty batch.
      for (auto& s : joiners)
        if (s.use_count() > 0 && s->on_done) s->on_done({}, "error", e.what());
      for (size_t i = 0; i < rows_.size(); i++)
        if (!rows_[i]->done) finish(i, "error", e.what());
      rows_.clear();
      cache_ = nn::KVCache();
      length_ = 0;
      running_ = 0;
    }
  }
}

// The joiners' prompts are read together (left-padded to the longest) into a cache of their
// own, then copied with the running rows into a new batch cache.
void GenerationScheduler::admit(std::vector<std::shared_ptr<Sequence>>& joiners) {
  const int64_t J = int64_t(joiners.size()), V = model_->config().vocab_size;
  int64_t P = 0;
  for (const auto& s : joiners) P = std::max(P, int64_t(s->prompt.size()));
  std::vector<int64_t> ids(static_cast<size_t>(J * P)), pad(static_cast<size_t>(J));
  for (int64_t j = 0; j < J; j++) {
    const auto& p = joiners[size_t(j)]->prompt;
    pad[size_t(j)] = P - int64_t(p.size());
    for (int64_t t = 0; t < P; t++)
      ids[size_t(j * P + t)] = t < pad[size_t(j)] ? p[0] : p[size_t(t - pad[size_t(j)])];
  }
  nn::KVCache jc = model_->make_cache(J);
  if (std::any_of(pad.begin(), pad.end(), [](int64_t v) { return v > 0; })) jc.pad = from_vector(pad, {J});
  Tensor logits = model_->forward_cached(from_vector(ids, {J, P}), jc, /*last_only=*/true);
  logits = logits.to(kCPU).to(DType::F32).contiguous();
  const float* lp = logits.data<float>();

  std::vector<size_t> keep;
  for (size_t i = 0; i < rows_.size(); i++)
    if (!rows_[i]->done) keep.push_back(i);
  std::vector<int64_t> lens;
  for (int64_t j = 0; j < J; j++) {
    auto row = std::make_unique<Row>(std::move(joiners[size_t(j)]));
    row->logits.assign(lp + j * V, lp + (j + 1) * V);
    lens.push_back(int64_t(row->seq->prompt.size()));
    rows_.push_back(std::move(row));
    keep.push_back(rows_.size() - 1);
  }
  joiners.clear();
  rebuild(keep, &jc, lens);
}

// A new batch cache holding rows_[keep] (in that order; the joiners, last in rows_, come from
// `joined`, whose row j holds its prompt in the last joined_len[j] slots of its window).
// The kept running rows are shifted left by their smallest pad, then all rows are aligned to
// end at the new shared length.
void GenerationScheduler::rebuild(std::vector<size_t> keep, const nn::KVCache* joined,
                                  const std::vector<int64_t>& joined_len) {
  const size_t J = joined_len.size();
  const size_t old_rows = keep.size() - J;  // kept rows that were already running
  int64_t min_pad = length_;
  for (size_t i = 0; i < old_rows; i++) min_pad = std::min(min_pad, rows_[keep[i]]->pad);
  const int64_t base = old_rows > 0 ? length_ - min_pad : 0;
  int64_t L = base;
  for (int64_t p : joined_len) L = std::max(L, p);
  const int64_t B = int64_t(keep.size());
  std::vector<std::unique_ptr<Row>> rows;
  nn::KVCache cache;
  if (B > 0) {
    cache = model_->make_cache(B);
    const int64_t joined_width = joined != nullptr && !joined->k.empty() ? joined->length : 0;
    for (int64_t b = 0; b < B; b++) {
      Row& r = *rows_[keep[size_t(b)]];
      const bool is_joiner = size_t(b) >= old_rows;
      const nn::KVCache& src = is_joiner ? *joined : cache_;
      const int64_t src_row = is_joiner ? int64_t(size_t(b) - old_rows) : int64_t(keep[size_t(b)]);
      const int64_t n = is_joiner ? joined_len[size_t(b) - old_rows] : length_ - r.pad;
      const int64_t src_slot = is_joiner ? joined_width - n : r.pad;
      const int64_t dst_slot = L - n;
      for (size_t l = 0; l < cache.k.size(); l++) {
        cache.k[l].narrow(0, b, 1).narrow(2, dst_slot, n).copy_(src.k[l].narrow(0, src_row, 1).narrow(2, src_slot, n));
        cache.v[l].narrow(0, b, 1).narrow(2, dst_slot, n).copy_(src.v[l].narrow(0, src_row, 1).narrow(2, src_slot, n));
      }
      r.pad = dst_slot;
    }
    for (size_t i : keep) rows.push_back(std::move(rows_[i]));
    std::vector<int64_t> pads;
    for (const auto& r : rows) pads.push_back(r->pad);
    cache.length = L;
    if (std::any_of(pads.begin(), pads.end(), [](int64_t v) { return v > 0; })) cache.pad = from_vector(pads, {B});
  }
  rows_ = std::move(rows);
  cache_ = std::move(cache);
  length_ = B > 0 ? L : 0;
  running_ = B;
  rebuilds_++;
}

void GenerationScheduler::finish(size_t i, const std::string& reason, const std::string& error) {
  Row& r = *rows_[i];
  if (r.done) return;
  r.done = true;
  if (r.seq->on_done) r.seq->on_done(std::vector<int32_t>(r.out.begin(), r.out.begin() + std::ptrdiff_t(r.reported)),
                                     reason, error);
}

void GenerationScheduler::step() {
  const int64_t S = model_->config().block_size, V = model_->config().vocab_size;
  bool any_done = false;
  for (size_t i = 0; i < rows_.size(); i++) {
    Row& r = *rows_[i];
    if (r.done) continue;
    if (r.seq->cancel.load()) {
      finish(i, "cancelled");
      any_done = true;
      continue;
    }
    const int32_t id = nn::sample_next(std::span<const float>(r.logits), r.ctx, r.seq->sampling, r.gen);
    r.ctx.push_back(id);
    r.out.push_back(id);
    tokens_++;
    bool stopped = false;
    const size_t final_ids = r.stops.update(r.out, r.reported, &stopped);
    r.report(final_ids);
    if (stopped) {
      finish(i, "stop");
    } else if (int64_t(r.out.size()) >= r.seq->max_tokens) {
      r.report(r.out.size());
      finish(i, "length");
    }
    any_done = any_done || r.done;
  }
  steps_++;
  if (any_done || length_ >= S) {
    // Drop the finished rows and shift the rest left by their smallest pad (a live row has
    // pad > 0 when the cache is full: prompt + max_tokens <= block_size).
    std::vector<size_t> keep;
    for (size_t i = 0; i < rows_.size(); i++)
      if (!rows_[i]->done) keep.push_back(i);
    rebuild(keep, nullptr, {});
  }
  if (rows_.empty()) return;
  MOX_CHECK(length_ < S, "generation", "internal: the batch cache is full");
  const int64_t B = int64_t(rows_.size());
  std::vector<int64_t> ids(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; b++) ids[size_t(b)] = rows_[size_t(b)]->ctx.back();
  Tensor logits = model_->forward_cached(from_vector(ids, {B, 1}), cache_, /*last_only=*/true);
  length_ = cache_.length;
  logits = logits.to(kCPU).to(DType::F32).contiguous();
  const float* lp = logits.data<float>();
  for (int64_t b = 0; b < B; b++) rows_[size_t(b)]->logits.assign(lp + b * V, lp + (b + 1) * V);
}

}  // namespace mox::serve
