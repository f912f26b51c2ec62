// DataLoader: batch shapes, epoch orders (reproducible, independent of prefetching),
// bounded prefetching, clean shutdown on early exit, and errors surfacing in the consumer.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <set>
#include <thread>

#include "mox/data/dataloader.h"
#include "mox/data/split.h"

namespace mox::data {
namespace {

// Example i has input (i, -i) and target i, so batches say which examples they hold.
std::shared_ptr<TensorDataset> counting_dataset(int64_t n) {
  std::vector<float> x;
  for (int64_t i = 0; i < n; i++) {
    x.push_back(float(i));
    x.push_back(float(-i));
  }
  return std::make_shared<TensorDataset>(from_vector(x, {n, 2}), arange(n));
}

// Runs fn on its own thread; a hang ends the test binary with a message rather than
// blocking the suite forever.
void within_seconds(double seconds, std::function<void()> fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> fut = done->get_future();
  std::thread([fn = std::move(fn), done] {
    try {
      fn();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  }).detach();
  if (fut.wait_for(std::chrono::duration<double>(seconds)) != std::future_status::ready) {
    std::fprintf(stderr, "DataLoader test hung for %.0f s\n", seconds);
    std::_Exit(1);
  }
  fut.get();
}

// The example indices of one epoch, in the order the loader gave them.
std::vector<int64_t> one_epoch(DataLoader& loader) {
  std::vector<int64_t> seen;
  for (const Batch& b : loader)
    for (int64_t t : b.target.to_vector<int64_t>()) seen.push_back(t);
  return seen;
}

TEST(DataLoader, BatchShapesAndLastPartialBatch) {
  auto ds = counting_dataset(10);
  for (int64_t prefetch : {0, 2}) {
    DataLoader keep(ds, {.batch_size = 4, .prefetch = prefetch});
    EXPECT_EQ(keep.num_batches(), 3);
    std::vector<int64_t> sizes;
    for (const Batch& b : keep) {
      EXPECT_EQ(b.input.shape(), (Shape{b.target.size(0), 2}));
      EXPECT_EQ(b.input.dtype(), DType::F32);
      EXPECT_EQ(b.target.dtype(), DType::I64);
      sizes.push_back(b.target.size(0));
    }
    EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2}));

    DataLoader drop(ds, {.batch_size = 4, .drop_last = true, .prefetch = prefetch});
    EXPECT_EQ(drop.num_batches(), 2);
    EXPECT_EQ(one_epoch(drop), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  }
  DataLoader exact(counting_dataset(8), {.batch_size = 4, .drop_last = true});
  EXPECT_EQ(exact.num_batches(), 2);
  DataLoader tiny(counting_dataset(3), {.batch_size = 4, .drop_last = true});
  EXPECT_EQ(tiny.num_batches(), 0);
  EXPECT_TRUE(one_epoch(tiny).empty());
}

TEST(DataLoader, UnshuffledOrderAndInputsMatchTargets) {
  DataLoader loader(counting_dataset(7), {.batch_size = 3});
  std::vector<int64_t> seen;
  for (const Batch& b : loader) {
    std::vector<float> x = b.input.to_vector<float>();
    std::vector<int64_t> y = b.target.to_vector<int64_t>();
    for (size_t i = 0; i < y.size(); i++) {
      EXPECT_EQ(x[2 * i], float(y[i]));
      EXPECT_EQ(x[2 * i + 1], -float(y[i]));
    }
    seen.insert(seen.end(), y.begin(), y.end());
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(DataLoader, ShuffleCoversEveryIndexOnceAndDiffersBetweenEpochs) {
  const int64_t n = 101;
  DataLoader loader(counting_dataset(n), {.batch_size = 8, .shuffle = true, .seed = 7});
  std::vector<std::vector<int64_t>> epochs;
  for (int e = 0; e < 3; e++) {
    std::vector<int64_t> order = one_epoch(loader);
    ASSERT_EQ(int64_t(order.size()), n);
    EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), size_t(n));
    EXPECT_EQ(order, loader.epoch_order(e));
    epochs.push_back(order);
  }
  EXPECT_EQ(loader.epoch(), 3);
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  std::vector<int64_t> identity(n);
  for (int64_t i = 0; i < n; i++) identity[size_t(i)] = i;
  EXPECT_NE(epochs[0], identity);

  // Resuming from a checkpointed epoch replays that epoch's order.
  loader.set_epoch(1);
  EXPECT_EQ(one_epoch(loader), epochs[1]);
  DataLoader other_seed(counting_dataset(n), {.batch_size = 8, .shuffle = true, .seed = 8});
  EXPECT_NE(one_epoch(other_seed), epochs[0]);
}

TEST(DataLoader, SameSeedSameOrderWithAndWithoutPrefetch) {
  auto ds = counting_dataset(50);
  DataLoader sync(ds, {.batch_size = 6, .shuffle = true, .seed = 3, .prefetch = 0});
  DataLoader async(ds, {.batch_size = 6, .shuffle = true, .seed = 3, .prefetch = 2});
  DataLoader deep(ds, {.batch_size = 6, .shuffle = true, .seed = 3, .prefetch = 5});
  for (int e = 0; e < 3; e++) {
    std::vector<int64_t> a = one_epoch(sync);
    EXPECT_EQ(one_epoch(async), a);
    EXPECT_EQ(one_epoch(deep), a);
  }
}

// Counts get_batch calls; optionally throws on the batch holding example `bad`.
class ProbeDataset : public Dataset {
 public:
  ProbeDataset(int64_t n, int64_t bad) : inner_(counting_dataset(n)), bad_(bad) {}
  int64_t size() const override { return inner_->size(); }
  Example get(int64_t i) const override { return inner_->get(i); }
  Batch get_batch(const std::vector<int64_t>& indices) const override {
    calls++;
    for (int64_t i : indices)
      if (i == bad_) throw Error("ProbeDataset", "cannot read example " + std::to_string(i));
    return inner_->get_batch(indices);
  }
  mutable std::atomic<int> calls{0};

 private:
  std::shared_ptr<TensorDataset> inner_;
  int64_t bad_;
};

TEST(DataLoader, PrefetchIsBounded) {
  auto ds = std::make_shared<ProbeDataset>(100, -1);
  within_seconds(20, [&] {
    DataLoader loader(ds, {.batch_size = 2, .prefetch = 2});
    auto it = loader.begin();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // The batch in hand, two queued, and one made and waiting for room.
    EXPECT_LE(ds->calls.load(), 4);
    EXPECT_GE(ds->calls.load(), 3);
    ++it;
    EXPECT_EQ(it->target.to_vector<int64_t>(), (std::vector<int64_t>{2, 3}));
  });
}

TEST(DataLoader, EarlyBreakAndDestructionMidEpochDoNotHang) {
  auto ds = std::make_shared<ProbeDataset>(1000, -1);
  within_seconds(20, [&] {
    DataLoader loader(ds, {.batch_size = 4, .shuffle = true, .prefetch = 3});
    for (int e = 0; e < 5; e++) {
      int k = 0;
      for (const Batch& b : loader) {
        EXPECT_EQ(b.target.size(0), 4);
        if (++k == 2) break;
      }
    }
    // A started epoch dropped without iterating.
    { auto it = loader.begin(); }
    EXPECT_LT(ds->calls.load(), 5 * 7 + 5);
  });
  within_seconds(20, [&] {
    auto loader = std::make_unique<DataLoader>(ds, DataLoaderOptions{.batch_size = 4, .prefetch = 2});
    auto it = loader->begin();
    ++it;
    loader.reset();  // stops and joins the worker while the iterator still lives
    EXPECT_THROW(++it, Error);
  });
  within_seconds(20, [&] {
    auto loader = std::make_unique<DataLoader>(ds, DataLoaderOptions{.batch_size = 4, .prefetch = 0});
    auto it = loader->begin();
    loader.reset();
    EXPECT_THROW(++it, Error);
  });
}

TEST(DataLoader, DatasetErrorSurfacesOnItsBatch) {
  for (int64_t prefetch : {0, 1, 3}) {
    auto ds = std::make_shared<ProbeDataset>(10, 6);
    within_seconds(20, [&] {
      DataLoader loader(ds, {.batch_size = 2, .prefetch = prefetch});
      std::vector<int64_t> seen;
      try {
        for (const Batch& b : loader)
          for (int64_t t : b.target.to_vector<int64_t>()) seen.push_back(t);
        ADD_FAILURE() << "no error raised, prefetch " << prefetch;
      } catch (const Error& e) {
        EXPECT_EQ(e.where(), "ProbeDataset");
        EXPECT_NE(std::string(e.what()).find("example 6"), std::string::npos);
      }
      // Batches 0..2 arrived; batch 3 (examples 6, 7) raised.
      EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
    });
  }
  // An error on the first batch comes out of begin().
  auto first = std::make_shared<ProbeDataset>(10, 0);
  DataLoader loader(first, {.batch_size = 2, .prefetch = 2});
  EXPECT_THROW(loader.begin(), Error);
}

TEST(DataLoader, IteratesASubset) {
  auto parent = counting_dataset(20);
  auto sub = std::make_shared<Subset>(parent, std::vector<int64_t>{3, 17, 5, 9, 11});
  DataLoader loader(sub, {.batch_size = 2});
  EXPECT_EQ(loader.num_batches(), 3);
  EXPECT_EQ(one_epoch(loader), (std::vector<int64_t>{3, 17, 5, 9, 11}));
}

TEST(DataLoader, RejectsBadOptions) {
  auto ds = counting_dataset(4);
  EXPECT_THROW(DataLoader(nullptr), Error);
  EXPECT_THROW(DataLoader(ds, {.batch_size = 0}), Error);
  EXPECT_THROW(DataLoader(ds, {.prefetch = -1}), Error);
  DataLoader loader(ds);
  EXPECT_THROW(loader.set_epoch(-1), Error);
  EXPECT_THROW(*loader.end(), Error);
}

}  // namespace
}  // namespace mox::data
