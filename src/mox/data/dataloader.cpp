#include "mox/data/dataloader.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>

#include "mox/data/split.h"
#include "mox/tensor/generator.h"

namespace mox::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

// One pass over the data. Batches are made by the consumer (prefetch 0) or by a worker
// thread that keeps at most `prefetch` finished batches in a queue; a batch whose
// preparation threw travels through the queue as the exception, so the consumer sees it
// exactly where it happened, and the worker stops there.
class EpochRun {
 public:
  EpochRun(std::shared_ptr<const Dataset> ds, std::vector<int64_t> order, int64_t batch_size,
           int64_t num_batches, int64_t prefetch, int64_t epoch, int64_t first_batch,
           std::function<void(Batch&, int64_t, int64_t)> transform)
      : ds_(std::move(ds)), order_(std::move(order)), bs_(batch_size), nb_(num_batches),
        cap_(size_t(prefetch)), epoch_(epoch), next_(first_batch), produce_from_(first_batch),
        transform_(std::move(transform)) {
    if (cap_ > 0 && nb_ > 0) worker_ = std::thread([this] { produce(); });
  }
  ~EpochRun() { stop(); }
  EpochRun(const EpochRun&) = delete;
  EpochRun& operator=(const EpochRun&) = delete;

  bool done() const { return finished_; }
  const Batch& current() const {
    MOX_CHECK(!finished_, "DataLoader", "dereferencing an iterator past the last batch");
    return cur_;
  }

  // Moves to the next batch; marks the pass finished after the last one. Rethrows the
  // error raised while preparing the batch, after which the pass is finished.
  void advance() {
    if (finished_) return;
    MOX_CHECK(!stopped_, "DataLoader", "iteration continued after its DataLoader was destroyed");
    cur_ = Batch{};
    if (next_ == nb_) {
      finished_ = true;
      join();
      return;
    }
    if (cap_ == 0) {
      try {
        cur_ = make(next_++);
      } catch (...) {
        finished_ = true;
        throw;
      }
      return;
    }
    Slot s;
    {
      std::unique_lock<std::mutex> lk(mu_);
      can_take_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (stop_) {
        finished_ = true;
        throw Error("DataLoader", "iteration continued after its DataLoader was destroyed");
      }
      s = std::move(queue_.front());
      queue_.pop_front();
    }
    can_put_.notify_one();
    next_++;
    if (s.error) {
      finished_ = true;
      join();
      std::rethrow_exception(s.error);
    }
    cur_ = std::move(s.batch);
  }

  // Ends the worker (it finishes at most the batch it is preparing) and joins it.
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    stopped_ = true;
    can_put_.notify_all();
    can_take_.notify_all();
    join();
  }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  Batch make(int64_t b) const {
    int64_t lo = b * bs_, hi = std::min<int64_t>(lo + bs_, int64_t(order_.size()));
    std::vector<int64_t> idx(order_.begin() + lo, order_.begin() + hi);
    Batch batch = ds_->get_batch(idx);
    batch.indices = from_vector<int64_t>(idx, {int64_t(idx.size())});
    if (transform_) transform_(batch, epoch_, b);
    return batch;
  }

  void produce() {
    for (int64_t b = produce_from_; b < nb_; b++) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (stop_) return;
      }
      Slot s;
      try {
        s.batch = make(b);
      } catch (...) {
        s.error = std::current_exception();
      }
      bool failed = s.error != nullptr;
      {
        std::unique_lock<std::mutex> lk(mu_);
        can_put_.wait(lk, [&] { return stop_ || queue_.size() < cap_; });
        if (stop_) return;
        queue_.push_back(std::move(s));
      }
      can_take_.notify_one();
      if (failed) return;
    }
  }

  void join() {
    if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
  }

  std::shared_ptr<const Dataset> ds_;
  std::vector<int64_t> order_;
  int64_t bs_, nb_;
  size_t cap_;
  int64_t epoch_;
  // consumer side
  int64_t next_ = 0;
  int64_t produce_from_ = 0;
  std::function<void(Batch&, int64_t, int64_t)> transform_;
  Batch cur_;
  bool finished_ = false;
  bool stopped_ = false;
  // shared with the worker
  std::mutex mu_;
  std::condition_variable can_put_, can_take_;
  std::deque<Slot> queue_;
  bool stop_ = false;
  std::thread worker_;
};

DataLoader::Iterator::Iterator(std::shared_ptr<EpochRun> run) : run_(std::move(run)) {}

bool DataLoader::Iterator::at_end() const { return !run_ || run_->done(); }

const Batch& DataLoader::Iterator::operator*() const {
  MOX_CHECK(run_ != nullptr, "DataLoader", "dereferencing the end iterator");
  return run_->current();
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  MOX_CHECK(run_ != nullptr, "DataLoader", "incrementing the end iterator");
  run_->advance();
  return *this;
}

bool DataLoader::Iterator::operator==(const Iterator& o) const {
  if (at_end() || o.at_end()) return at_end() == o.at_end();
  return run_ == o.run_;
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions opt)
    : dataset_(std::move(dataset)), opt_(opt) {
  MOX_CHECK(dataset_ != nullptr, "DataLoader", "no dataset");
  MOX_CHECK(opt_.batch_size >= 1, "DataLoader",
            "batch_size must be >= 1, got " + std::to_string(opt_.batch_size));
  MOX_CHECK(opt_.prefetch >= 0, "DataLoader",
            "prefetch must be >= 0, got " + std::to_string(opt_.prefetch));
}

DataLoader::~DataLoader() {
  if (auto run = current_.lock()) run->stop();
}

int64_t DataLoader::num_batches() const {
  int64_t n = dataset_->size();
  return opt_.drop_last ? n / opt_.batch_size : (n + opt_.batch_size - 1) / opt_.batch_size;
}

void DataLoader::set_epoch(int64_t epoch, int64_t first_batch) {
  MOX_CHECK(epoch >= 0, "DataLoader", "epoch must be >= 0, got " + std::to_string(epoch));
  MOX_CHECK(first_batch >= 0 && first_batch <= num_batches(), "DataLoader",
            "first batch " + std::to_string(first_batch) + " outside 0.." +
                std::to_string(num_batches()));
  epoch_ = epoch;
  first_batch_ = first_batch;
}

uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t batch) {
  return splitmix64(splitmix64(seed ^ 0xa5a5a5a5a5a5a5a5ull) ^ splitmix64(uint64_t(epoch)) ^
                    splitmix64(splitmix64(uint64_t(batch)) + 0x632be59bd9b4e019ull));
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  int64_t n = dataset_->size();
  if (!opt_.shuffle) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t(0));
    return order;
  }
  // Hashing (seed, epoch) gives unrelated streams for neighbouring seeds and epochs.
  Generator gen(splitmix64(opt_.seed ^ splitmix64(uint64_t(epoch))));
  return permutation(n, gen);
}

DataLoader::Iterator DataLoader::begin() {
  auto run = std::make_shared<EpochRun>(dataset_, epoch_order(epoch_), opt_.batch_size,
                                        num_batches(), opt_.prefetch, epoch_, first_batch_,
                                        opt_.transform);
  epoch_++;
  first_batch_ = 0;
  current_ = run;
  run->advance();
  return Iterator(run);
}

}  // namespace mox::data
