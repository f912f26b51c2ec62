#pragma once
// DataLoader: iterates a Dataset in batches, one pass per `for (const Batch& b : loader)`.
// Shuffled orders come from a Generator seeded by (seed, epoch), so an epoch's order does
// not depend on prefetching, thread counts or how many epochs ran in this process: resuming
// from a checkpoint means set_epoch(saved epoch). With prefetch > 0 a background thread
// prepares up to `prefetch` batches ahead; abandoning the loop (break, exception) or
// destroying the loader stops it and joins it.
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <vector>

#include "mox/data/dataset.h"

namespace mox::data {

struct DataLoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;  // drop the last batch when it is smaller than batch_size
  int64_t prefetch = 2;    // batches prepared ahead on a background thread; 0 = synchronous
  // Runs on each batch where it is prepared (the prefetch thread when prefetching), with
  // the epoch and the batch's index in it: training-time augmentation. It must not touch
  // shared state; draw randomness from Generator(batch_seed(seed, epoch, batch)).
  std::function<void(Batch&, int64_t epoch, int64_t batch)> transform;
};

// A seed for batch `batch` of epoch `epoch`, unrelated to its neighbours' seeds: per-batch
// randomness that does not depend on prefetching or on where a run was resumed.
uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t batch);

class EpochRun;  // one pass over the data (dataloader.cpp)

class DataLoader {
 public:
  // Input iterator over one epoch. Copies share the pass; dereferencing gives the current
  // batch, valid until the next increment.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = const Batch*;
    using reference = const Batch&;

    Iterator() = default;  // the end sentinel
    const Batch& operator*() const;
    const Batch* operator->() const { return &**this; }
    Iterator& operator++();  // rethrows an exception raised while preparing the next batch
    void operator++(int) { ++*this; }
    bool operator==(const Iterator& o) const;

   private:
    friend class DataLoader;
    explicit Iterator(std::shared_ptr<EpochRun> run);
    bool at_end() const;
    std::shared_ptr<EpochRun> run_;
  };

  explicit DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions opt = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts the next epoch (its number is epoch(), which then advances by one) and
  // prepares its first batch, rethrowing an error from preparing it.
  Iterator begin();
  Iterator end() const { return Iterator(); }

  int64_t num_batches() const;
  int64_t dataset_size() const { return dataset_->size(); }
  const DataLoaderOptions& options() const { return opt_; }
  const std::shared_ptr<const Dataset>& dataset() const { return dataset_; }

  // The epoch the next begin() runs: the loader's whole RNG state, for checkpoints.
  int64_t epoch() const { return epoch_; }
  // Resuming mid-epoch: the next begin() runs `epoch` from batch `first_batch` on.
  void set_epoch(int64_t epoch, int64_t first_batch = 0);
  // The example order of an epoch (identity when not shuffling).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions opt_;
  int64_t epoch_ = 0;
  int64_t first_batch_ = 0;
  std::weak_ptr<EpochRun> current_;  // stopped when the loader goes away
};

}  // namespace mox::data
