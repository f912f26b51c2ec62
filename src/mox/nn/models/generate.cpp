#include "mox/nn/models/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mox/autograd/node.h"
#include "mox/ops/ops.h"

namespace mox::nn {

void SamplingOptions::validate() const {
  MOX_CHECK(std::isfinite(temperature) && temperature >= 0, "sampling",
            "temperature must be >= 0, got " + std::to_string(temperature));
  MOX_CHECK(top_k >= 0, "sampling", "top_k must be >= 0, got " + std::to_string(top_k));
  MOX_CHECK(std::isfinite(top_p) && top_p > 0 && top_p <= 1, "sampling",
            "top_p must be in (0, 1], got " + std::to_string(top_p));
  MOX_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0, "sampling",
            "repetition_penalty must be > 0, got " + std::to_string(repetition_penalty));
}

int32_t sample_next(std::span<const float> logits, const std::vector<int32_t>& context,
                    const SamplingOptions& opt, Generator& gen) {
  const char* where = "sample_next";
  const size_t V = logits.size();
  MOX_CHECK(V > 0, where, "no logits");
  std::vector<double> z(logits.begin(), logits.end());
  if (opt.repetition_penalty != 1.0) {
    std::vector<uint8_t> seen(V, 0);
    for (int32_t id : context) {
      if (id < 0 || size_t(id) >= V || seen[size_t(id)]) continue;
      seen[size_t(id)] = 1;
      double& l = z[size_t(id)];
      l = l > 0 ? l / opt.repetition_penalty : l * opt.repetition_penalty;
    }
  }
  for (double l : z)
    MOX_CHECK(!std::isnan(l), where, "the logits hold NaN");
  const size_t best = size_t(std::max_element(z.begin(), z.end()) - z.begin());  // first max
  MOX_CHECK(std::isfinite(z[best]), where, "the largest logit is not finite");
  if (opt.temperature == 0 || opt.top_k == 1) return int32_t(best);

  // The candidate ids, in id order unless a filter sorted them.
  std::vector<int32_t> ids(V);
  std::iota(ids.begin(), ids.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) {
    return z[size_t(a)] > z[size_t(b)] || (z[size_t(a)] == z[size_t(b)] && a < b);
  };
  if (opt.top_k > 0 && size_t(opt.top_k) < V) {
    std::nth_element(ids.begin(), ids.begin() + opt.top_k, ids.end(), by_logit);
    ids.resize(size_t(opt.top_k));
  }
  // Softmax of logit / temperature over the candidates (unnormalised: the draw scales).
  const double m = z[best];
  std::vector<double> p(ids.size());
  for (size_t i = 0; i < ids.size(); i++) p[i] = std::exp((z[size_t(ids[i])] - m) / opt.temperature);
  if (opt.top_p < 1.0) {
    std::vector<size_t> order(ids.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return p[a] > p[b] || (p[a] == p[b] && ids[a] < ids[b]);
    });
    const double total = std::accumulate(p.begin(), p.end(), 0.0);
    double mass = 0;
    size_t n = 0;
    while (n < order.size()) {
      mass += p[order[n++]];
      if (mass >= opt.top_p * total) break;
    }
    std::vector<int32_t> kept_ids(n);
    std::vector<double> kept_p(n);
    for (size_t i = 0; i < n; i++) {
      kept_ids[i] = ids[order[i]];
      kept_p[i] = p[order[i]];
    }
    ids.swap(kept_ids);
    p.swap(kept_p);
  }
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  const double u = gen.uniform() * total;
  double acc = 0;
  for (size_t i = 0; i < p.size(); i++) {
    acc += p[i];
    if (u < acc) return ids[i];
  }
  // Rounding left u at the very top: the last candidate with any mass.
  for (size_t i = p.size(); i-- > 0;)
    if (p[i] > 0) return ids[i];
  return ids.front();
}

StopStrings::StopStrings(const std::vector<std::string>& stops, Decode decode) : decode_(std::move(decode)) {
  for (const std::string& s : stops)
    if (!s.empty()) stops_.push_back(s);
  MOX_CHECK(stops_.empty() || bool(decode_), "generate", "stop strings need a decode function");
}

size_t StopStrings::update(std::vector<int32_t>& out, size_t final_ids, bool* stopped) const {
  if (stops_.empty()) return out.size();
  auto decoded_size = [&](size_t n) {
    return decode_(std::vector<int32_t>(out.begin(), out.begin() + std::ptrdiff_t(n))).size();
  };
  const std::string text = decode_(out);
  size_t hit = std::string::npos;
  for (const std::string& s : stops_) hit = std::min(hit, text.find(s));
  if (hit != std::string::npos) {
    size_t k = final_ids;  // ids that end at or before the stop string's first byte
    while (k < out.size() && decoded_size(k + 1) <= hit) k++;
    out.resize(k);
    if (stopped) *stopped = true;
    return k;
  }
  // The earliest byte from which the text's end could still grow into a stop string.
  size_t hold = text.size();
  for (const std::string& s : stops_)
    for (size_t n = std::min(s.size() - 1, text.size()); n > 0; n--)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = std::min(hold, text.size() - n);
        break;
      }
  size_t k = final_ids;
  while (k < out.size() && decoded_size(k + 1) <= hold) k++;
  return k;
}

namespace {

// Puts a module in eval mode for its lifetime, then restores the previous mode.
struct EvalMode {
  explicit EvalMode(Module& m) : module(m), was_training(m.is_training()) { m.eval(); }
  ~EvalMode() { module.train(was_training); }
  Module& module;
  bool was_training;
};

struct Row {
  std::vector<int32_t> ctx;  // the whole prompt, then the generated ids
  size_t start = 0;          // the model's window is ctx[start..]
  size_t prompt_len = 0;
  std::vector<int32_t> out;  // generated ids
  size_t reported = 0;       // how many of out on_token has seen
  bool done = false;
  int64_t window() const { return int64_t(ctx.size() - start); }
};

}  // namespace

std::vector<std::vector<int32_t>> generate(
    GPT& model, const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& opt,
    const std::function<std::string(const std::vector<int32_t>&)>& decode,
    const std::function<void(size_t row, int32_t id)>& on_token) {
  const char* where = "generate";
  opt.sampling.validate();
  MOX_CHECK(opt.max_new_tokens >= 0, where,
            "max_new_tokens must be >= 0, got " + std::to_string(opt.max_new_tokens));
  const GPTConfig& cfg = model.config();
  const int64_t S = cfg.block_size, V = cfg.vocab_size, keep = std::max<int64_t>(1, S / 2);
  const int64_t B = int64_t(prompts.size());
  std::vector<Row> rows(prompts.size());
  for (size_t b = 0; b < prompts.size(); b++) {
    MOX_CHECK(!prompts[b].empty(), where, "prompt " + std::to_string(b) + " is empty");
    for (int32_t id : prompts[b])
      MOX_CHECK(id >= 0 && id < V, where,
                "prompt " + std::to_string(b) + ": token id " + std::to_string(id) +
                    " is outside the vocabulary (" + std::to_string(V) + " ids)");
    Row& r = rows[b];
    r.ctx = prompts[b];
    r.prompt_len = r.ctx.size();
    r.start = r.ctx.size() > size_t(S) ? r.ctx.size() - size_t(S) : 0;
  }
  const StopStrings stop_strings(opt.stop, decode);
  std::vector<std::vector<int32_t>> result(prompts.size());
  if (B == 0 || opt.max_new_tokens == 0) return result;

  EvalMode eval_mode(model);
  NoGradGuard no_grad;
  Generator gen(opt.sampling.seed);
  std::vector<float> logits(size_t(B * V));  // the last position's logits of every row
  auto take_logits = [&](const Tensor& l, int64_t row) {  // l: [n, V] on the host, row n-1 -> row `row`
    Tensor f = l.dtype() == DType::F32 ? l.contiguous() : l.to(DType::F32).contiguous();
    const float* src = f.data<float>() + (f.size(0) - 1) * V;
    std::copy(src, src + V, logits.begin() + row * V);
  };

  // The slots the batch's window spans (the longest row's window, as the cache holds them).
  int64_t W = 0;
  KVCache cache;
  Tensor step_ids;
  if (opt.use_cache) {
    cache = model.make_cache(B);
    step_ids = empty({B, 1}, DType::I64);
  }
  // Reads every row's window from scratch: into a fresh cache, or by full forwards.
  auto read_windows = [&] {
    W = 0;
    for (const Row& r : rows) W = std::max(W, r.window());
    if (opt.use_cache) {
      std::vector<int64_t> ids(static_cast<size_t>(B * W)), pad(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; b++) {
        const Row& r = rows[size_t(b)];
        pad[size_t(b)] = W - r.window();
        for (int64_t j = 0; j < W; j++)
          ids[size_t(b * W + j)] = j < pad[size_t(b)] ? r.ctx[r.start] : r.ctx[r.start + size_t(j - pad[size_t(b)])];
      }
      cache.length = 0;
      const bool padded = std::any_of(pad.begin(), pad.end(), [](int64_t p) { return p > 0; });
      cache.pad = padded ? from_vector(pad, {B}) : Tensor();
      Tensor l = model.forward_cached(from_vector(ids, {B, W}), cache, /*last_only=*/true).to(kCPU);
      for (int64_t b = 0; b < B; b++) take_logits(l.narrow(0, b, 1), b);
    }
  };
  // One more token per row.
  auto advance = [&] {
    W += 1;
    if (opt.use_cache) {
      int64_t* p = step_ids.data<int64_t>();
      for (int64_t b = 0; b < B; b++) p[b] = rows[size_t(b)].ctx.back();
      Tensor l = model.forward_cached(step_ids, cache, /*last_only=*/true).to(kCPU);
      for (int64_t b = 0; b < B; b++) take_logits(l.narrow(0, b, 1), b);
    }
  };
  // Without the cache: the whole window of every unfinished row, one row at a time.
  auto recompute = [&] {
    for (int64_t b = 0; b < B; b++) {
      const Row& r = rows[size_t(b)];
      if (r.done) continue;
      std::vector<int64_t> ids(r.ctx.begin() + std::ptrdiff_t(r.start), r.ctx.end());
      Tensor l = model.forward(from_vector(ids, {1, int64_t(ids.size())})).to(kCPU);  // [1, T, V]
      take_logits(l.select(0, 0), b);
    }
  };

  auto report = [&](size_t b, size_t upto) {
    Row& r = rows[b];
    for (; r.reported < upto; r.reported++)
      if (on_token) on_token(b, r.out[r.reported]);
  };
  // After a token: ends the row at a stop string, and reports what can no longer be part
  // of one.
  auto check_stops = [&](size_t b) {
    Row& r = rows[b];
    const size_t final_ids = stop_strings.update(r.out, r.reported, &r.done);
    report(b, final_ids);
  };

  if (opt.use_cache) read_windows();
  else {
    for (const Row& r : rows) W = std::max(W, r.window());
    recompute();
  }
  for (int64_t step = 0; step < opt.max_new_tokens; step++) {
    bool all_done = true;
    for (int64_t b = 0; b < B; b++) {
      Row& r = rows[size_t(b)];
      if (r.done) continue;
      const std::span<const float> row_logits(logits.data() + b * V, size_t(V));
      const int32_t id = sample_next(row_logits, r.ctx, opt.sampling, gen);
      r.ctx.push_back(id);
      r.out.push_back(id);
      check_stops(size_t(b));
      if (!r.done && int64_t(r.out.size()) >= opt.max_new_tokens) {
        r.done = true;
        report(size_t(b), r.out.size());
      }
      all_done = all_done && r.done;
    }
    if (all_done) break;
    if (W >= S) {
      // The window is full: keep the last block_size / 2 tokens of every row.
      for (Row& r : rows)
        if (r.window() > keep) r.start = r.ctx.size() - size_t(keep);
      if (opt.use_cache) read_windows();
      else {
        W = 0;
        for (const Row& r : rows) W = std::max(W, r.window());
        recompute();
      }
    } else {
      if (opt.use_cache) advance();
      else {
        W += 1;
        recompute();
      }
    }
  }
  for (size_t b = 0; b < rows.size(); b++) {
    report(b, rows[b].out.size());
    result[b] = std::move(rows[b].out);
  }
  return result;
}

}  // namespace mox::nn
