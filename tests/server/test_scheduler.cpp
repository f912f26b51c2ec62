// Continuous batching (serve/scheduler.h): sequences that join a running batch at different
// steps, with prompts of different lengths, get the tokens nn::generate gives each of them
// alone; the cache is compacted when the shared length reaches the block size; stop strings,
// sampling seeds, cancellation, the batch limit and errors.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "../error_of.h"
#include "mox/mox.h"
#include "mox/nn/models/generate.h"
#include "mox/nn/models/gpt.h"
#include "mox/serve/scheduler.h"

using namespace mox;

namespace {

// A GPT whose greedy continuations vary (GPT-2's initialisation gives nearly uniform logits,
// so the weights are scaled up).
std::shared_ptr<nn::GPT> model(uint64_t seed, int64_t block = 32, int64_t vocab = 13) {
  manual_seed(seed);
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.block_size = block;
  c.vocab_size = vocab;
  auto m = std::make_shared<nn::GPT>(c);
  NoGradGuard ng;
  for (auto& [name, p] : m->named_parameters())
    if (name.find(".ln_") == std::string::npos) p.mul_(25.0);
  m->eval();
  return m;
}

std::vector<int32_t> ids_of(size_t n, uint64_t seed, int64_t vocab = 13) {
  Generator g(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = int32_t(g.below(uint64_t(vocab)));
  return ids;
}

std::string letters(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += char('a' + id);
  return s;
}

// What a sequence produced, filled by the callbacks.
struct Outcome {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> streamed, ids;
  std::string reason, error;
  bool done = false;
  void wait() {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; })) << "sequence never finished";
  }
  size_t streamed_count() {
    std::lock_guard<std::mutex> lock(mu);
    return streamed.size();
  }
};

std::shared_ptr<serve::Sequence> sequence(const std::vector<int32_t>& prompt, int64_t max_tokens,
                                          std::shared_ptr<Outcome> out, double temperature = 0,
                                          uint64_t seed = 0) {
  auto s = std::make_shared<serve::Sequence>();
  s->prompt = prompt;
  s->max_tokens = max_tokens;
  s->sampling.temperature = temperature;
  s->sampling.seed = seed;
  s->on_token = [out](int32_t id) {
    std::lock_guard<std::mutex> lock(out->mu);
    out->streamed.push_back(id);
  };
  s->on_done = [out](const std::vector<int32_t>& ids, const std::string& reason, const std::string& error) {
    {
      std::lock_guard<std::mutex> lock(out->mu);
      out->ids = ids;
      out->reason = reason;
      out->error = error;
      out->done = true;
    }
    out->cv.notify_all();
  };
  return s;
}

std::vector<int32_t> alone(nn::GPT& m, const std::vector<int32_t>& prompt, int64_t max_tokens,
                           double temperature = 0, uint64_t seed = 0) {
  nn::GenerateOptions o;
  o.max_new_tokens = max_tokens;
  o.sampling.temperature = temperature;
  o.sampling.seed = seed;
  return nn::generate(m, {prompt}, o, letters)[0];
}

void wait_until(const std::function<bool()>& cond) {
  for (int i = 0; i < 6000 && !cond(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(cond());
}

}  // namespace

// Sequences join a running batch at different steps with prompts of different lengths; the
// first prompt is shorter than the batch's length when the second joins (left padding) and
// the third is longer (the running rows shift right). Greedy tokens equal generate()'s alone.
TEST(Scheduler, JoinersGetTheirOwnGreedyTokens) {
  auto m = model(1);
  const std::vector<std::vector<int32_t>> prompts = {ids_of(3, 10), ids_of(2, 11), ids_of(12, 12), ids_of(5, 13)};
  const std::vector<int64_t> max_tokens = {20, 15, 10, 25};
  std::vector<std::vector<int32_t>> expected;
  for (size_t i = 0; i < prompts.size(); i++) expected.push_back(alone(*m, prompts[i], max_tokens[i]));

  serve::GenerationScheduler sched(m);
  std::vector<std::shared_ptr<Outcome>> out;
  for (size_t i = 0; i < prompts.size(); i++) out.push_back(std::make_shared<Outcome>());
  sched.submit(sequence(prompts[0], max_tokens[0], out[0]));
  wait_until([&] { return out[0]->streamed_count() >= 4; });
  sched.submit(sequence(prompts[1], max_tokens[1], out[1]));
  wait_until([&] { return out[1]->streamed_count() >= 2; });
  sched.submit(sequence(prompts[2], max_tokens[2], out[2]));
  sched.submit(sequence(prompts[3], max_tokens[3], out[3]));
  for (size_t i = 0; i < prompts.size(); i++) {
    out[i]->wait();
    EXPECT_EQ(out[i]->reason, "length") << i;
    EXPECT_EQ(letters(out[i]->ids), letters(expected[i])) << "sequence " << i;
    EXPECT_EQ(out[i]->streamed, out[i]->ids) << "sequence " << i;
  }
  wait_until([&] { return sched.stats().running == 0; });  // on_done runs before the row leaves
  const serve::SchedulerStats st = sched.stats();
  EXPECT_EQ(st.tokens, 20 + 15 + 10 + 25);
  EXPECT_GE(st.shifts, 1);  // the 12-token prompt joined a shorter batch: the rows moved right
  // Fewer steps than one sequence after another: the rows were decoded together.
  EXPECT_LT(st.steps, 20 + 15 + 10 + 25);
}

// Rows that join late need slots past the block size: the cache is compacted (every row
// shifted left by the smallest pad) instead of cutting anything.
TEST(Scheduler, CompactsTheCacheWhenItIsFull) {
  auto m = model(2, /*block=*/24);
  const auto a = ids_of(2, 20), b = ids_of(10, 21), c = ids_of(4, 22);
  const auto ea = alone(*m, a, 22), eb = alone(*m, b, 14), ec = alone(*m, c, 20);
  serve::GenerationScheduler sched(m);
  auto oa = std::make_shared<Outcome>(), ob = std::make_shared<Outcome>(), oc = std::make_shared<Outcome>();
  sched.submit(sequence(a, 22, oa));
  wait_until([&] { return oa->streamed_count() >= 12; });
  sched.submit(sequence(b, 14, ob));
  wait_until([&] { return ob->streamed_count() >= 5; });
  sched.submit(sequence(c, 20, oc));
  oa->wait();
  ob->wait();
  oc->wait();
  EXPECT_EQ(letters(oa->ids), letters(ea));
  EXPECT_EQ(letters(ob->ids), letters(eb));
  EXPECT_EQ(letters(oc->ids), letters(ec));
}

// Sampled sequences draw from their own generator: the same seed gives the same tokens
// whatever else is in the batch, and as generate() with that seed alone.
TEST(Scheduler, SeededSamplingIsIndependentOfTheBatch) {
  auto m = model(3);
  const auto p = ids_of(4, 30);
  const auto expected = alone(*m, p, 16, 1.0, 77);
  serve::GenerationScheduler sched(m);
  std::vector<std::shared_ptr<Outcome>> out;
  for (int i = 0; i < 6; i++) {
    out.push_back(std::make_shared<Outcome>());
    // Sequences 0, 2 and 4 share the seed; the others use other seeds and prompts.
    if (i % 2 == 0) sched.submit(sequence(p, 16, out.back(), 1.0, 77));
    else sched.submit(sequence(ids_of(size_t(3 + i), 31 + i), 16, out.back(), 1.0, 100 + i));
  }
  for (auto& o : out) o->wait();
  EXPECT_EQ(letters(out[0]->ids), letters(expected));
  EXPECT_EQ(out[2]->ids, out[0]->ids);
  EXPECT_EQ(out[4]->ids, out[0]->ids);
  EXPECT_NE(out[1]->ids, out[0]->ids);
}

TEST(Scheduler, StopStringsEndASequenceBeforeTheStop) {
  auto m = model(4);
  const auto p = ids_of(3, 40);
  const auto full = alone(*m, p, 20);
  const std::string text = letters(full);
  // A stop string made of generated text from the middle: the sequence ends before it.
  const std::string stop = text.substr(6, 2);
  const size_t cut = text.find(stop);
  serve::GenerationScheduler sched(m);
  auto o = std::make_shared<Outcome>();
  auto s = sequence(p, 20, o);
  s->stop = {stop};
  s->decode = letters;
  sched.submit(s);
  o->wait();
  EXPECT_EQ(o->reason, "stop");
  EXPECT_EQ(letters(o->ids), text.substr(0, cut));
  EXPECT_EQ(o->streamed, o->ids);
}

TEST(Scheduler, CancelEndsASequenceAndLeavesTheOthers) {
  auto m = model(5, /*block=*/64);
  const auto p = ids_of(3, 50), q = ids_of(4, 51);
  const auto eq = alone(*m, q, 30);
  serve::GenerationScheduler sched(m);
  auto op = std::make_shared<Outcome>(), oq = std::make_shared<Outcome>();
  auto sp = sequence(p, 60, op);
  sched.submit(sp);
  sched.submit(sequence(q, 30, oq));
  wait_until([&] { return op->streamed_count() >= 3; });
  sp->cancel = true;
  op->wait();
  oq->wait();
  EXPECT_EQ(op->reason, "cancelled");
  EXPECT_LT(op->ids.size(), 60u);
  EXPECT_EQ(letters(oq->ids), letters(eq));
}

// max_batch bounds the rows decoded together; unbatched mode runs one at a time.
TEST(Scheduler, BatchLimitAndUnbatchedMode) {
  for (bool batching : {true, false}) {
    auto m = model(6);
    serve::SchedulerOptions opt;
    opt.max_batch = 3;
    opt.batching = batching;
    serve::GenerationScheduler sched(m, opt);
    std::vector<std::shared_ptr<Outcome>> out;
    std::atomic<int64_t> max_running{0};
    std::atomic<bool> watching{true};
    std::thread watcher([&] {
      while (watching) {
        max_running = std::max(max_running.load(), sched.stats().running);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
    for (int i = 0; i < 7; i++) {
      out.push_back(std::make_shared<Outcome>());
      sched.submit(sequence(ids_of(3, 60 + i), 12, out.back()));
    }
    for (auto& o : out) o->wait();
    watching = false;
    watcher.join();
    for (int i = 0; i < 7; i++) EXPECT_EQ(letters(out[size_t(i)]->ids), letters(alone(*m, ids_of(3, 60 + i), 12)));
    EXPECT_LE(max_running.load(), batching ? 3 : 1);
    if (batching) EXPECT_LT(sched.stats().steps, 7 * 12);
    else EXPECT_EQ(sched.stats().steps, 7 * 12);
  }
}

TEST(Scheduler, RefusesSequencesThatCannotRun) {
  auto m = model(7, /*block=*/16);
  serve::GenerationScheduler sched(m);
  auto o = std::make_shared<Outcome>();
  EXPECT_NE(error_of([&] { sched.submit(sequence(ids_of(10, 1), 7, o)); }).find("exceed the context of 16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { sched.submit(sequence({}, 3, o)); }).find("empty"), std::string::npos);
  EXPECT_NE(error_of([&] { sched.submit(sequence({1, 99}, 3, o)); }).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(error_of([&] { sched.submit(sequence({1}, 0, o)); }).find("max_tokens"), std::string::npos);
  // Stopping without draining cancels what waits.
  auto o2 = std::make_shared<Outcome>();
  sched.submit(sequence(ids_of(4, 2), 12, o2));
  sched.stop(/*drain=*/false);
  o2->wait();
  EXPECT_TRUE(o2->reason == "cancelled" || o2->reason == "length");
  EXPECT_NE(error_of([&] { sched.submit(sequence({1}, 1, o)); }).find("stopping"), std::string::npos);
}
