#pragma once
// Seeded random numbers (xoshiro256**): the same seed gives the same stream on every
// platform and thread count. Kernels draw from it sequentially, never from threads.
#include <cstdint>

namespace mox {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { manual_seed(seed); }
  void manual_seed(uint64_t seed);
  uint64_t seed() const { return seed_; }
  uint64_t next_u64();
  double uniform();   // [0, 1)
  double normal();    // N(0, 1), Box-Muller
  uint64_t below(uint64_t n);  // uniform integer in [0, n)

  struct State {
    uint64_t s[4];
    uint64_t seed;
    double spare;
    bool has_spare;
  };
  State state() const { return {{s_[0], s_[1], s_[2], s_[3]}, seed_, spare_, has_spare_}; }
  void set_state(const State& st);

 private:
  uint64_t s_[4];
  uint64_t seed_ = 0;
  double spare_ = 0;
  bool has_spare_ = false;
};

// The process-wide default generator (used when an op is given none).
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace mox
