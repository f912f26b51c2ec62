#include "mox/serve/server.h"

#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <ctime>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "mox/serve/dashboard.h"
#include "mox/serve/limits.h"
#include "mox/serve/metrics.h"
#include "mox/serve/models.h"
#include "mox/serve/openai.h"
#include "mox/serve/prices.h"
#include "mox/serve/store.h"
#include "mox/tensor/error.h"

namespace mox::serve {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The text of one generated choice, as the client has seen it so far (streaming).
struct Choice {
  std::vector<int32_t> ids;      // final ids (StopStrings-filtered), in order
  std::string reason, error;
  bool done = false;
  size_t streamed_ids = 0;       // ids whose text has been sent
  size_t sent_bytes = 0;         // bytes of decode(ids) sent
  bool finish_sent = false;
  bool role_sent = false;        // chat: the first delta carries the role
};

// One generation request: its sequences (prompts x n) and what came back.
struct GenJob {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Choice> choices;
  std::vector<std::shared_ptr<Sequence>> seqs;
  size_t remaining = 0;
  Clock::time_point first_token{};
  bool got_first = false;
  void cancel() {
    for (auto& s : seqs) s->cancel = true;
  }
};

}  // namespace

struct Server::Impl {
  ServerOptions opt;
  std::unique_ptr<Store> store;
  std::unique_ptr<PriceList> prices;
  Metrics metrics;
  std::unique_ptr<KeyLimiter> limiter;
  std::vector<std::unique_ptr<ServedModel>> models;
  httplib::Server http;
  std::thread thread;
  std::atomic<int64_t> inflight{0};  // model requests admitted
  std::atomic<bool> stopping{false};
  std::mutex id_mu;
  std::mt19937_64 id_rng{std::random_device{}()};
  std::mutex log_mu;
  Clock::time_point started = Clock::now();

  std::string new_id(const char* prefix) {
    std::lock_guard<std::mutex> lock(id_mu);
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)id_rng(), (unsigned long long)id_rng());
    return std::string(prefix) + buf;
  }
  uint64_t random_seed() {
    std::lock_guard<std::mutex> lock(id_mu);
    return id_rng();
  }

  ServedModel* find_model(const std::string& name) {
    for (auto& m : models)
      if (m->name() == name) return m.get();
    return nullptr;
  }
  ServedModel& model_or_404(const std::string& name) {
    if (ServedModel* m = find_model(name)) return *m;
    throw ApiError(404, "invalid_request_error", "The model '" + name + "' does not exist.", "model", "model_not_found");
  }

  // The key a request presents (Authorization: Bearer KEY).
  KeyInfo authenticate(const httplib::Request& req) {
    std::string auth = req.get_header_value("Authorization");
    std::string key;
    if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
    while (!key.empty() && key.back() == ' ') key.pop_back();
    if (key.empty())
      throw ApiError(401, "invalid_request_error",
                     "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer "
                     "YOUR_KEY); create one with mox keys create.",
                     "", "missing_api_key");
    std::optional<KeyInfo> k = store->find_key(key);
    if (!k) throw ApiError(401, "invalid_request_error", "Incorrect API key provided.", "", "invalid_api_key");
    if (k->revoked())
      throw ApiError(401, "invalid_request_error", "The API key " + k->prefix + "... was revoked on " + k->revoked_at + ".",
                     "", "invalid_api_key");
    return *k;
  }

  bool admin_ok(const httplib::Request& req) {
    if (opt.admin_token.empty()) return true;
    const std::string auth = req.get_header_value("Authorization");
    if (auth == "Bearer " + opt.admin_token) return true;
    return req.has_param("token") && req.get_param_value("token") == opt.admin_token;
  }

  void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(int64_t(e.retry_after_s)));
    res.set_content(dump(error_json(e)), "application/json");
  }

  void log(const httplib::Request& req, int status, double seconds, const std::string& extra = "") {
    if (opt.quiet) return;
    std::lock_guard<std::mutex> lock(log_mu);
    std::fprintf(stderr, "%s %s %s %d %.1f ms%s\n", utc_now_iso().c_str(), req.method.c_str(), req.path.c_str(), status,
                 seconds * 1000, extra.c_str());
  }

  // A model request's slot in the bounded queue.
  struct Slot {
    std::atomic<int64_t>& n;
    explicit Slot(std::atomic<int64_t>& c) : n(c) { n++; }
    ~Slot() { n--; }
  };
  void check_capacity() {
    if (stopping) {
      ApiError e(503, "server_error", "The server is shutting down; retry on another replica.", "", "shutting_down");
      e.retry_after_s = 1;
      throw e;
    }
    if (inflight.load() >= opt.max_queue) {
      ApiError e(429, "rate_limit_error",
                 "The server is at capacity (" + std::to_string(opt.max_queue) + " requests in progress); retry shortly.", "",
                 "server_overloaded");
      e.retry_after_s = 1;
      throw e;
    }
  }

  // Writes the request's usage row (the only place rows are written). Throws ApiError 500
  // when it cannot, so that nothing is served unmetered.
  void meter(const std::string& request_id, const KeyInfo& key, const std::string& model, const std::string& endpoint,
             int64_t prompt, int64_t completion, int64_t classified, double latency_s, int status) {
    UsageRow row;
    row.request_id = request_id;
    row.key_id = key.id;
    row.model = model;
    row.endpoint = endpoint;
    row.prompt_tokens = prompt;
    row.completion_tokens = completion;
    row.classifications = classified;
    row.latency_ms = latency_s * 1000;
    row.status = status;
    bool written = false;
    try {
      written = store->record(row);
    } catch (const std::exception& e) {
      throw ApiError(500, "server_error", std::string("Could not record usage: ") + e.what(), "", "metering_failed");
    }
    if (!written)
      throw ApiError(500, "server_error", "Could not record usage: request id " + request_id + " was already metered.", "",
                     "metering_failed");
  }

  // The answer to a model request that failed: its reservation released, a usage row with no
  // tokens when a valid key made it, the metrics, the JSON error.
  void fail(const httplib::Request& req, httplib::Response& res, const ApiError& e, const std::optional<KeyInfo>& key,
            Admission& admission, const std::string& request_id, const std::string& model, const std::string& endpoint,
            Clock::time_point t0) {
    if (admission.active) limiter->settle(admission, 0);
    if (key && e.status != 401) {
      try {
        meter(request_id, *key, model, endpoint, 0, 0, 0, seconds_since(t0), e.status);
      } catch (const ApiError&) {
        // The error answer goes out anyway; it carries no tokens.
      }
    }
    metrics.request(model, endpoint, e.status, seconds_since(t0));
    send_error(res, e);
    log(req, e.status, seconds_since(t0), std::string(" ") + e.what());
  }

  void setup_routes();
  void completions(const httplib::Request& req, httplib::Response& res, bool chat);
  void classify(const httplib::Request& req, httplib::Response& res);
  void list_models(const httplib::Request& req, httplib::Response& res);
  json dashboard_data(int64_t minutes, int64_t bucket_s);
};

// ---------------------------------------------------------------- dashboard

// What GET /dashboard/data returns (the page polls it): usage over the last `minutes` in
// buckets of `bucket_s` seconds per model and customer (with latency percentiles), every
// key's quota use this month, this month's totals and revenue (with --prices).
json Server::Impl::dashboard_data(int64_t minutes, int64_t bucket_s) {
  const std::string now = utc_now_iso();
  const std::string month = month_of(now);
  const auto since_tp = std::chrono::system_clock::now() - std::chrono::minutes(minutes);
  const std::time_t since_t = std::chrono::system_clock::to_time_t(since_tp);
  std::tm tm{};
  gmtime_r(&since_t, &tm);
  char since[32];
  std::strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json buckets = json::array();
  for (const UsageBucket& b : store->buckets(since, bucket_s))
    buckets.push_back({{"start", b.start}, {"model", b.model}, {"customer", b.customer}, {"requests", b.requests},
                       {"errors", b.errors}, {"prompt_tokens", b.prompt_tokens}, {"completion_tokens", b.completion_tokens},
                       {"classifications", b.classifications}, {"latency_p50_ms", b.latency_p50_ms},
                       {"latency_p95_ms", b.latency_p95_ms}, {"latency_p99_ms", b.latency_p99_ms}});
  json keys = json::array();
  for (const KeyInfo& k : store->list_keys())
    keys.push_back({{"prefix", k.prefix}, {"customer", k.customer}, {"monthly_tokens", k.limits.monthly_tokens},
                    {"rpm", k.limits.rpm}, {"tpm", k.limits.tpm}, {"used_tokens", store->tokens_used(k.id, month)},
                    {"revoked", k.revoked()}});
  const std::vector<UsageTotal> usage = store->usage(month);
  json totals = {{"requests", 0}, {"errors", 0}, {"prompt_tokens", 0}, {"completion_tokens", 0}, {"classifications", 0}};
  json per = json::array();
  for (const UsageTotal& u : usage) {
    totals["requests"] = totals["requests"].get<int64_t>() + u.requests;
    totals["errors"] = totals["errors"].get<int64_t>() + u.errors;
    totals["prompt_tokens"] = totals["prompt_tokens"].get<int64_t>() + u.prompt_tokens;
    totals["completion_tokens"] = totals["completion_tokens"].get<int64_t>() + u.completion_tokens;
    totals["classifications"] = totals["classifications"].get<int64_t>() + u.classifications;
    per.push_back({{"customer", u.customer}, {"model", u.model}, {"requests", u.requests}, {"errors", u.errors},
                   {"prompt_tokens", u.prompt_tokens}, {"completion_tokens", u.completion_tokens},
                   {"classifications", u.classifications}});
  }
  json revenue = nullptr;
  if (prices) {
    const Invoice inv = make_invoice(usage, *prices, "", month);
    json by = json::object();
    for (const CustomerTotal& t : inv.totals) by[t.customer] = t.amount;
    revenue = {{"currency", inv.currency}, {"total", inv.total}, {"by_customer", by}};
  }
  json model_names = json::array();
  for (const auto& m : models) model_names.push_back({{"id", m->name()}, {"kind", m->is_gpt() ? "gpt" : "classifier"}});
  return {{"generated_at", now}, {"month", month}, {"since", since}, {"bucket_seconds", bucket_s},
          {"models", model_names}, {"buckets", buckets}, {"keys", keys}, {"month_usage", per}, {"totals", totals},
          {"revenue", revenue}, {"inflight", inflight.load()}, {"uptime_s", seconds_since(started)}};
}

// ---------------------------------------------------------------- generation

void Server::Impl::completions(const httplib::Request& req, httplib::Response& res, bool chat) {
  const auto t0 = Clock::now();
  const std::string endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
  const std::string request_id = new_id(chat ? "chatcmpl-" : "cmpl-");
  std::string model_name = "-";
  std::optional<KeyInfo> key;
  Admission admission;
  try {
    key = authenticate(req);
    const json body = parse_body(req.body);
    CompletionParams p = parse_completion_request(body, chat);
    model_name = p.model;
    ServedModel& m = model_or_404(p.model);
    if (!m.is_gpt())
      throw bad_request("The model '" + p.model + "' is a classifier: use POST /v1/classify.", "model", "model_not_supported");
    // Prompts as token ids.
    std::vector<std::vector<int32_t>> prompts;
    try {
      if (chat) {
        prompts.push_back(m.encode(chat_prompt(p.messages)));
        p.stop.push_back(kChatStop);
      } else {
        for (const Prompt& pr : p.prompts) prompts.push_back(pr.is_ids ? pr.ids : m.encode(pr.text));
      }
    } catch (const Error& e) {
      throw bad_request(std::string("The ") + (chat ? "messages" : "prompt") + " cannot be tokenized: " + e.what(),
                        chat ? "messages" : "prompt");
    }
    const int64_t S = m.context();
    int64_t prompt_tokens = 0, longest = 0;
    for (size_t i = 0; i < prompts.size(); i++) {
      const auto& ids = prompts[i];
      if (ids.empty()) throw bad_request("Invalid value for 'prompt': prompt " + std::to_string(i) + " encodes to no tokens.", "prompt");
      for (int32_t id : ids)
        if (id >= m.vocab_size())
          throw bad_request("Invalid value for 'prompt': token id " + std::to_string(id) + " is outside the vocabulary (" +
                                std::to_string(m.vocab_size()) + " ids).",
                            "prompt");
      prompt_tokens += int64_t(ids.size());
      longest = std::max(longest, int64_t(ids.size()));
    }
    if (chat && !p.max_tokens_given) p.max_tokens = std::max<int64_t>(1, S - longest);
    if (longest + p.max_tokens > S)
      throw bad_request("This model's maximum context length is " + std::to_string(S) + " tokens. However, you requested " +
                            std::to_string(longest + p.max_tokens) + " tokens (" + std::to_string(longest) +
                            " in the " + (chat ? "messages" : "prompt") + ", " + std::to_string(p.max_tokens) +
                            " in the completion). Please reduce the length of the " + (chat ? "messages" : "prompt") +
                            " or completion.",
                        chat ? "messages" : "prompt", "context_length_exceeded");
    check_capacity();
    const int64_t estimate = prompt_tokens + int64_t(prompts.size()) * p.n * p.max_tokens;
    admission = limiter->admit(*key, estimate);
    Slot slot(inflight);

    auto job = std::make_shared<GenJob>();
    const size_t n_choices = prompts.size() * size_t(p.n);
    job->choices.resize(n_choices);
    job->remaining = n_choices;
    const uint64_t base_seed = p.seed ? *p.seed : random_seed();
    const std::string name = m.name();
    ServedModel* mp = &m;
    for (size_t c = 0; c < n_choices; c++) {
      auto s = std::make_shared<Sequence>();
      s->prompt = prompts[c / size_t(p.n)];
      s->max_tokens = p.max_tokens;
      s->sampling.temperature = p.temperature;
      s->sampling.top_p = p.top_p;
      s->sampling.seed = base_seed + c;  // choices of one request differ; a given seed repeats
      s->stop = p.stop;
      s->decode = [mp](const std::vector<int32_t>& ids) { return mp->decode(ids); };
      std::weak_ptr<GenJob> wj = job;
      s->on_token = [wj, c](int32_t id) {
        if (auto j = wj.lock()) {
          {
            std::lock_guard<std::mutex> lock(j->mu);
            j->choices[c].ids.push_back(id);
            if (!j->got_first) {
              j->got_first = true;
              j->first_token = Clock::now();
            }
          }
          j->cv.notify_all();
        }
      };
      s->on_done = [wj, c](const std::vector<int32_t>& ids, const std::string& reason, const std::string& error) {
        if (auto j = wj.lock()) {
          {
            std::lock_guard<std::mutex> lock(j->mu);
            Choice& ch = j->choices[c];
            ch.ids = ids;
            ch.reason = reason;
            ch.error = error;
            ch.done = true;
            j->remaining--;
          }
          j->cv.notify_all();
        }
      };
      job->seqs.push_back(s);
    }
    try {
      for (auto& s : job->seqs) m.scheduler().submit(s);
    } catch (const Error& e) {
      job->cancel();
      throw ApiError(500, "server_error", e.what());
    }
    const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.request_timeout_s));
    const int64_t created = unix_now();
    const std::string object = chat ? "chat.completion" : "text_completion";

    if (!p.stream) {
      std::unique_lock<std::mutex> lock(job->mu);
      if (!job->cv.wait_until(lock, deadline, [&] { return job->remaining == 0; })) {
        lock.unlock();
        job->cancel();
        throw ApiError(504, "timeout", "The request took longer than the server's limit of " +
                                           std::to_string(int64_t(opt.request_timeout_s)) + " s.",
                       "", "timeout");
      }
      json choices = json::array();
      int64_t completion_tokens = 0;
      for (size_t c = 0; c < n_choices; c++) {
        const Choice& ch = job->choices[c];
        if (ch.reason == "error") throw ApiError(500, "server_error", "Generation failed: " + ch.error);
        if (ch.reason == "cancelled") throw ApiError(503, "server_error", "The server is shutting down.", "", "shutting_down");
        completion_tokens += int64_t(ch.ids.size());
        const std::string text = m.decode(ch.ids);
        json choice;
        if (chat)
          choice = {{"index", c}, {"message", {{"role", "assistant"}, {"content", text}}}, {"logprobs", nullptr},
                    {"finish_reason", ch.reason}};
        else
          choice = {{"text", text}, {"index", c}, {"logprobs", nullptr}, {"finish_reason", ch.reason}};
        choices.push_back(choice);
      }
      lock.unlock();
      const json usage = {{"prompt_tokens", prompt_tokens},
                          {"completion_tokens", completion_tokens},
                          {"total_tokens", prompt_tokens + completion_tokens}};
      const json out = {{"id", request_id}, {"object", object}, {"created", created}, {"model", name},
                        {"choices", choices}, {"usage", usage}};
      meter(request_id, *key, name, endpoint, prompt_tokens, completion_tokens, 0, seconds_since(t0), 200);
      limiter->settle(admission, prompt_tokens + completion_tokens);
      metrics.tokens(name, prompt_tokens, completion_tokens);
      metrics.request(name, endpoint, 200, seconds_since(t0));
      res.status = 200;
      res.set_content(dump(out), "application/json");
      log(req, 200, seconds_since(t0), " " + name + " " + std::to_string(prompt_tokens) + "+" + std::to_string(completion_tokens) + " tokens");
      return;
    }

    // Streaming: server-sent events, one chunk per piece of text that is final; the usage row
    // is written before the closing [DONE] with the tokens actually sent.
    const bool include_usage = p.include_usage;
    const KeyInfo k = *key;
    auto adm = std::make_shared<Admission>(admission);
    admission.active = false;  // the stream settles it
    inflight++;                // the stream holds its slot until it ends
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Request-Id", request_id);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, job, mp, chat, include_usage, request_id, created, object, name, endpoint, prompt_tokens, n_choices, k, adm,
         deadline, t0, path = req.path, method = req.method](size_t, httplib::DataSink& sink) {
          auto chunk = [&](const json& choices_or_usage, bool usage_chunk) {
            json c = {{"id", request_id}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
                      {"created", created}, {"model", name}};
            if (usage_chunk) {
              c["choices"] = json::array();
              c["usage"] = choices_or_usage;
            } else {
              c["choices"] = choices_or_usage;
              if (include_usage) c["usage"] = nullptr;
            }
            const std::string line = "data: " + dump(c) + "\n\n";
            return sink.write(line.data(), line.size());
          };
          bool client_gone = false, timed_out = false;
          std::unique_lock<std::mutex> lock(job->mu);
          for (;;) {
            // Emit what is final in every choice.
            json events = json::array();
            bool all_finished = true;
            for (size_t c = 0; c < n_choices; c++) {
              Choice& ch = job->choices[c];
              if (ch.streamed_ids < ch.ids.size() || (ch.done && !ch.finish_sent)) {
                const std::string text = mp->decode(ch.ids);
                const size_t upto = ch.done ? text.size() : utf8_complete_prefix(text);
                ch.streamed_ids = ch.ids.size();
                if (upto > ch.sent_bytes || (chat && !ch.role_sent)) {
                  const std::string piece = upto > ch.sent_bytes ? text.substr(ch.sent_bytes, upto - ch.sent_bytes) : "";
                  ch.sent_bytes = std::max(ch.sent_bytes, upto);
                  json e;
                  if (chat) {
                    json delta = {{"content", piece}};
                    if (!ch.role_sent) delta["role"] = "assistant";
                    ch.role_sent = true;
                    e = {{"index", c}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
                  } else {
                    e = {{"text", piece}, {"index", c}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
                  }
                  events.push_back(e);
                }
                if (ch.done && !ch.finish_sent) {
                  ch.finish_sent = true;
                  const std::string reason = ch.reason == "stop" || ch.reason == "length" ? ch.reason : "length";
                  json e = chat ? json{{"index", c}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", reason}}
                                : json{{"text", ""}, {"index", c}, {"logprobs", nullptr}, {"finish_reason", reason}};
                  events.push_back(e);
                }
              }
              all_finished = all_finished && ch.finish_sent;
            }
            if (!events.empty()) {
              lock.unlock();
              for (const json& e : events)
                if (!client_gone && !chunk(json::array({e}), false)) client_gone = true;
              lock.lock();
            }
            if (client_gone || all_finished) break;
            if (!sink.is_writable()) {
              client_gone = true;
              break;
            }
            if (job->cv.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(500)), [&] {
                  for (const Choice& ch : job->choices)
                    if (ch.ids.size() > ch.streamed_ids || (ch.done && !ch.finish_sent)) return true;
                  return false;
                }))
              continue;
            if (Clock::now() >= deadline) {
              timed_out = true;
              break;
            }
          }
          // What was sent: the ids whose text went out (a cancelled choice stops there).
          int64_t completion_tokens = 0;
          for (const Choice& ch : job->choices) completion_tokens += int64_t(ch.streamed_ids);
          const bool got_first = job->got_first;
          const auto first_token = job->first_token;
          lock.unlock();
          if (client_gone || timed_out) job->cancel();
          const int status = client_gone ? 499 : timed_out ? 504 : 200;
          bool metered = true;
          try {
            meter(request_id, k, name, endpoint, prompt_tokens, completion_tokens, 0, seconds_since(t0), status);
          } catch (const ApiError& e) {
            metered = false;
            if (!client_gone) {
              const std::string line = "data: " + dump(error_json(e)) + "\n\n";
              sink.write(line.data(), line.size());
            }
          }
          limiter->settle(*adm, prompt_tokens + completion_tokens);
          if (got_first) metrics.first_token(name, std::chrono::duration<double>(first_token - t0).count());
          metrics.tokens(name, prompt_tokens, completion_tokens);
          metrics.request(name, endpoint, status, seconds_since(t0));
          if (!client_gone) {
            if (timed_out) {
              ApiError e(504, "timeout", "The request took longer than the server's limit.", "", "timeout");
              const std::string line = "data: " + dump(error_json(e)) + "\n\n";
              sink.write(line.data(), line.size());
            } else if (metered && include_usage) {
              chunk({{"prompt_tokens", prompt_tokens},
                     {"completion_tokens", completion_tokens},
                     {"total_tokens", prompt_tokens + completion_tokens}},
                    true);
            }
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
          }
          inflight--;
          if (!opt.quiet) {
            std::lock_guard<std::mutex> lg(log_mu);
            std::fprintf(stderr, "%s %s %s %d %.1f ms %s %lld+%lld tokens (stream)\n", utc_now_iso().c_str(), method.c_str(),
                         path.c_str(), status, seconds_since(t0) * 1000, name.c_str(), (long long)prompt_tokens,
                         (long long)completion_tokens);
          }
          // true: the stream ended normally (sink.done() wrote the last chunk) and the
          // connection may be kept alive; false: the client went away.
          return !client_gone;
        },
        [job](bool success) {
          if (!success) job->cancel();
        });
  } catch (const ApiError& e) {
    fail(req, res, e, key, admission, request_id, model_name, endpoint, t0);
  }
}

// ---------------------------------------------------------------- classification

void Server::Impl::classify(const httplib::Request& req, httplib::Response& res) {
  const auto t0 = Clock::now();
  const std::string endpoint = "/v1/classify";
  const std::string request_id = new_id("clf-");
  std::string model_name = "-";
  std::optional<KeyInfo> key;
  Admission admission;
  try {
    key = authenticate(req);
    const json body = parse_body(req.body);
    const ClassifyParams p = parse_classify_request(body);
    model_name = p.model;
    ServedModel& m = model_or_404(p.model);
    if (m.is_gpt())
      throw bad_request("The model '" + p.model + "' generates text: use POST /v1/completions.", "model", "model_not_supported");
    check_capacity();
    admission = limiter->admit(*key, 0);
    Slot slot(inflight);
    const Classification out = m.classify(p);
    if (seconds_since(t0) > opt.request_timeout_s)
      throw ApiError(504, "timeout", "The request took longer than the server's limit.", "", "timeout");
    json data = json::array();
    for (size_t i = 0; i < out.items.size(); i++) {
      const auto& it = out.items[i];
      json probs = json::object();
      for (const auto& [label, pr] : it.probabilities) probs[label] = pr;
      data.push_back({{"index", i}, {"label", it.label}, {"class_index", it.index}, {"probability", it.probability},
                      {"probabilities", probs}});
    }
    const int64_t n = int64_t(out.items.size());
    const json resp = {{"id", request_id}, {"object", "classification"}, {"created", unix_now()}, {"model", m.name()},
                       {"data", data}, {"usage", {{"classifications", n}}}};
    meter(request_id, *key, m.name(), endpoint, 0, 0, n, seconds_since(t0), 200);
    limiter->settle(admission, 0);
    metrics.classifications(m.name(), n);
    metrics.request(m.name(), endpoint, 200, seconds_since(t0));
    res.status = 200;
    res.set_content(dump(resp), "application/json");
    log(req, 200, seconds_since(t0), " " + m.name() + " " + std::to_string(n) + " inputs");
  } catch (const ApiError& e) {
    fail(req, res, e, key, admission, request_id, model_name, endpoint, t0);
  }
}

void Server::Impl::list_models(const httplib::Request& req, httplib::Response& res) {
  try {
    authenticate(req);
    if (req.matches.size() > 1) {
      const std::string id = req.matches[1];
      res.set_content(dump(model_or_404(id).describe()), "application/json");
      return;
    }
    json data = json::array();
    for (const auto& m : models) data.push_back(m->describe());
    res.set_content(dump({{"object", "list"}, {"data", data}}), "application/json");
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

// ---------------------------------------------------------------- routes

void Server::Impl::setup_routes() {
  http.set_payload_max_length(opt.max_body_bytes);
  http.set_read_timeout(std::chrono::seconds(int64_t(std::max(1.0, opt.request_timeout_s))));
  http.set_write_timeout(std::chrono::seconds(int64_t(std::max(1.0, opt.request_timeout_s))));
  http.set_keep_alive_max_count(100000);
  http.set_tcp_nodelay(true);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second server on the
  // same port starts without an error and takes half the connections.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });  // small responses and SSE chunks leave at once (no Nagle delay)
  const int workers = std::max(1, opt.workers);
  http.new_task_queue = [workers] { return new httplib::ThreadPool(size_t(workers)); };

  http.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    json models_j = json::array();
    for (const auto& m : models) models_j.push_back(m->name());
    res.status = stopping ? 503 : 200;
    res.set_content(dump({{"status", stopping ? "stopping" : "ok"}, {"models", models_j},
                          {"uptime_s", seconds_since(started)}}),
                    "application/json");
  });
  http.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    if (!admin_ok(req)) return send_error(res, ApiError(401, "invalid_request_error", "The admin token is missing or wrong.", "", "invalid_admin_token"));
    res.set_content(metrics.text(), "text/plain; version=0.0.4");
  });
  http.Get("/dashboard", [this](const httplib::Request& req, httplib::Response& res) {
    if (!admin_ok(req)) return send_error(res, ApiError(401, "invalid_request_error", "The admin token is missing or wrong.", "", "invalid_admin_token"));
    res.set_content(dashboard_html(), "text/html; charset=utf-8");
  });
  http.Get("/dashboard/data", [this](const httplib::Request& req, httplib::Response& res) {
    if (!admin_ok(req)) return send_error(res, ApiError(401, "invalid_request_error", "The admin token is missing or wrong.", "", "invalid_admin_token"));
    auto int_param = [&](const char* name, int64_t def, int64_t lo, int64_t hi) {
      if (!req.has_param(name)) return def;
      try {
        const int64_t v = std::stoll(req.get_param_value(name));
        if (v >= lo && v <= hi) return v;
      } catch (...) {
      }
      throw bad_request("Invalid value for '" + std::string(name) + "': expected an integer in [" + std::to_string(lo) +
                            ", " + std::to_string(hi) + "].",
                        name);
    };
    try {
      const int64_t minutes = int_param("minutes", 60, 1, 60 * 24 * 31);
      const int64_t bucket = int_param("bucket", 60, 1, 86400);
      res.set_content(dump(dashboard_data(minutes, bucket)), "application/json");
    } catch (const ApiError& e) {
      send_error(res, e);
    }
  });
  http.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) { list_models(req, res); });
  http.Get(R"(/v1/models/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) { list_models(req, res); });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, false); });
  http.Post("/v1/chat/completions",
            [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, true); });
  http.Post("/v1/classify", [this](const httplib::Request& req, httplib::Response& res) { classify(req, res); });

  // Errors httplib answers itself (unknown route 404, body too large 413, bad request 400)
  // get OpenAI's JSON shape too.
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string msg, code;
    switch (res.status) {
      case 404: msg = "Unknown request URL: " + req.method + " " + req.path + "."; code = "unknown_url"; break;
      case 413: msg = "The request body is larger than the server's limit of " + std::to_string(opt.max_body_bytes) + " bytes."; code = "request_too_large"; break;
      case 405: msg = "Method " + req.method + " is not allowed on " + req.path + "."; code = "method_not_allowed"; break;
      default: msg = "HTTP error " + std::to_string(res.status) + " on " + req.method + " " + req.path + "."; break;
    }
    const ApiError e(res.status, res.status >= 500 ? "server_error" : "invalid_request_error", msg, "", code);
    res.set_content(dump(error_json(e)), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(dump(error_json(ApiError(500, "server_error", "Internal error: " + what))), "application/json");
  });
}

// ---------------------------------------------------------------- Server

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opt = std::move(options);
  MOX_CHECK(!s.opt.models.empty(), "serve", "no model: give --model DIR (one or more)");
  MOX_CHECK(s.opt.max_queue >= 1, "--max-queue", "must be >= 1");
  MOX_CHECK(s.opt.request_timeout_s > 0, "--timeout", "must be > 0");
  s.store = std::make_unique<Store>(s.opt.db_path);
  if (!s.opt.prices_path.empty()) s.prices = std::make_unique<PriceList>(load_prices(s.opt.prices_path));
  Store* st = s.store.get();
  s.limiter = std::make_unique<KeyLimiter>([st](int64_t key, const std::string& month) { return st->tokens_used(key, month); });
  SchedulerOptions so;
  so.max_batch = s.opt.max_batch;
  so.batching = s.opt.batching;
  for (const std::string& spec : s.opt.models) {
    auto m = std::make_unique<ServedModel>(spec, so);
    MOX_CHECK(s.find_model(m->name()) == nullptr, "--model",
              "two models are named '" + m->name() + "': name them with NAME=DIR");
    s.models.push_back(std::move(m));
  }
  Impl* ip = impl_.get();
  s.metrics.gauge("mox_queue_depth", "Generation sequences waiting to join their model's batch.", [ip] {
    std::vector<std::pair<std::string, double>> v;
    for (const auto& m : ip->models)
      if (m->is_gpt()) v.push_back({"model=\"" + prom_label(m->name()) + "\"", double(m->scheduler().stats().waiting)});
    return v;
  });
  s.metrics.gauge("mox_batch_rows", "Sequences being decoded together, per model.", [ip] {
    std::vector<std::pair<std::string, double>> v;
    for (const auto& m : ip->models)
      if (m->is_gpt()) v.push_back({"model=\"" + prom_label(m->name()) + "\"", double(m->scheduler().stats().running)});
    return v;
  });
  s.metrics.gauge("mox_inflight_requests", "Model requests admitted and not yet answered.", [ip] {
    return std::vector<std::pair<std::string, double>>{{"", double(ip->inflight.load())}};
  });
  s.setup_routes();
}

Server::~Server() {
  stop();
  wait();
}

void Server::start() {
  Impl& s = *impl_;
  // A client that leaves makes the next write to its socket raise SIGPIPE, which would end
  // the process: the server answers it as a failed write instead (unless the program has
  // its own handler).
  struct sigaction old{};
  if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);
  if (s.opt.port == 0) port_ = s.http.bind_to_any_port(s.opt.host);
  else port_ = s.http.bind_to_port(s.opt.host, s.opt.port) ? s.opt.port : -1;
  MOX_CHECK(port_ > 0, "--port",
            "cannot listen on " + s.opt.host + ":" + std::to_string(s.opt.port) + " (in use, or not an address of this machine)");
  running_ = true;
  s.thread = std::thread([this] { impl_->http.listen_after_bind(); });
  // httplib's stop() does nothing before its loop runs: wait for it, so that a stop() right
  // after start() is not lost.
  for (int i = 0; i < 10000 && !s.http.is_running(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void Server::stop() {
  Impl& s = *impl_;
  if (s.stopping.exchange(true)) return;
  // httplib's stop() closes the listening socket; its pool then finishes the requests it
  // holds (each writes its usage row) before listen_after_bind returns.
  if (running_) s.http.stop();
}

void Server::wait() {
  Impl& s = *impl_;
  if (s.thread.joinable()) s.thread.join();
  // Streams still draining hold their slot; give them the request time limit.
  const auto t0 = Clock::now();
  while (s.inflight.load() > 0 && seconds_since(t0) < s.opt.request_timeout_s)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (auto& m : s.models)
    if (m->is_gpt()) m->scheduler().stop(/*drain=*/true);
  running_ = false;
}

Store& Server::store() { return *impl_->store; }
Metrics& Server::metrics() { return impl_->metrics; }

}  // namespace mox::serve
