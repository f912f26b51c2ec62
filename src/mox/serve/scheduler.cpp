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
  s.shifts = shifts_.load();
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
      view_ = nn::KVCache();
      length_ = 0;
      running_ = 0;
    }
  }
}

// The joiners' prompts are read together (left-padded to the longest) into a cache of their
// own, then copied into the rows after the running ones, ending at the shared length.
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

  if (cache_.k.empty()) cache_ = model_->make_cache(options_.batching ? options_.max_batch : 1);
  const int64_t B = int64_t(rows_.size());
  if (B == 0) length_ = 0;
  if (P > length_) {
    // The longest joiner's prompt must end at the shared length: the running rows move right.
    const int64_t d = P - length_;
    if (B > 0) shift_slots(0, d, length_);
    for (auto& r : rows_) r->pad += d;
    length_ = P;
  }
  for (int64_t j = 0; j < J; j++) {
    auto row = std::make_unique<Row>(std::move(joiners[size_t(j)]));
    row->logits.assign(lp + j * V, lp + (j + 1) * V);
    const int64_t n = int64_t(row->seq->prompt.size()), b = B + j;
    row->pad = length_ - n;
    for (size_t l = 0; l < cache_.k.size(); l++) {
      cache_.k[l].narrow(0, b, 1).narrow(2, row->pad, n).copy_(jc.k[l].narrow(0, j, 1).narrow(2, P - n, n));
      cache_.v[l].narrow(0, b, 1).narrow(2, row->pad, n).copy_(jc.v[l].narrow(0, j, 1).narrow(2, P - n, n));
    }
    rows_.push_back(std::move(row));
  }
  joiners.clear();
  refresh_view();
}

void GenerationScheduler::shift_slots(int64_t from, int64_t to, int64_t n) {
  const int64_t B = int64_t(rows_.size());
  if (n <= 0 || from == to || B == 0) return;
  for (size_t l = 0; l < cache_.k.size(); l++)
    for (Tensor* t : {&cache_.k[l], &cache_.v[l]}) {
      Tensor rows = t->narrow(0, 0, B);
      const Tensor moved = rows.narrow(2, from, n).clone();  // the ranges may overlap
      rows.narrow(2, to, n).copy_(moved);
    }
  shifts_++;
}

// Finished rows leave: the last row moves into each hole (its slots keep their places, all
// rows being aligned to the same length).
void GenerationScheduler::remove_finished() {
  for (size_t i = 0; i < rows_.size();) {
    if (!rows_[i]->done) {
      i++;
      continue;
    }
    const size_t last = rows_.size() - 1;
    if (i != last) {
      const Row& r = *rows_[last];
      const int64_t n = length_ - r.pad;
      for (size_t l = 0; l < cache_.k.size(); l++) {
        cache_.k[l].narrow(0, int64_t(i), 1).narrow(2, r.pad, n).copy_(cache_.k[l].narrow(0, int64_t(last), 1).narrow(2, r.pad, n));
        cache_.v[l].narrow(0, int64_t(i), 1).narrow(2, r.pad, n).copy_(cache_.v[l].narrow(0, int64_t(last), 1).narrow(2, r.pad, n));
      }
      rows_[i] = std::move(rows_[last]);
    }
    rows_.pop_back();
  }
  if (rows_.empty()) length_ = 0;
}

void GenerationScheduler::refresh_view() {
  const int64_t B = int64_t(rows_.size());
  running_ = B;
  view_ = nn::KVCache();
  if (B == 0) return;
  std::vector<int64_t> pads;
  for (const auto& r : rows_) pads.push_back(r->pad);
  for (size_t l = 0; l < cache_.k.size(); l++) {
    view_.k.push_back(cache_.k[l].narrow(0, 0, B));
    view_.v.push_back(cache_.v[l].narrow(0, 0, B));
  }
  view_.length = length_;
  if (std::any_of(pads.begin(), pads.end(), [](int64_t v) { return v > 0; })) view_.pad = from_vector(pads, {B});
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
  if (any_done) {
    remove_finished();
    refresh_view();
  }
  if (rows_.empty()) return;
  int64_t m = length_;
  for (const auto& r : rows_) m = std::min(m, r->pad);
  if (length_ >= S || 2 * m >= length_) {
    // Every row shifts left by the smallest pad: needed when the cache is full (a live row
    // then has pad > 0, since prompt + max_tokens <= block_size), and worth it when half
    // the slots are padding (attention reads every slot).
    MOX_CHECK(m > 0, "generation", "internal: the batch cache is full");
    shift_slots(m, 0, length_ - m);
    for (auto& r : rows_) r->pad -= m;
    length_ -= m;
    refresh_view();
  }
  const int64_t B = int64_t(rows_.size());
  std::vector<int64_t> ids(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; b++) ids[size_t(b)] = rows_[size_t(b)]->ctx.back();
  Tensor logits = model_->forward_cached(from_vector(ids, {B, 1}), view_, /*last_only=*/true);
  length_ = view_.length;
  logits = logits.to(kCPU).to(DType::F32).contiguous();
  const float* lp = logits.data<float>();
  for (int64_t b = 0; b < B; b++) rows_[size_t(b)]->logits.assign(lp + b * V, lp + (b + 1) * V);
}

}  // namespace mox::serve
