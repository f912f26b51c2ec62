#include "mox/data/text/mlm.h"

#include <string>

namespace mox::data {

namespace {

constexpr const char* kWhere = "mask_tokens";

void check_options(const MlmOptions& opt) {
  MOX_CHECK(opt.mask_prob > 0 && opt.mask_prob <= 1, kWhere,
            "mask_prob must be in (0, 1], got " + std::to_string(opt.mask_prob));
  MOX_CHECK(opt.vocab_size >= 1, kWhere, "vocab_size must be >= 1, got " + std::to_string(opt.vocab_size));
  MOX_CHECK(opt.mask_token_id >= 0 && opt.mask_token_id < opt.vocab_size, kWhere,
            "mask_token_id " + std::to_string(opt.mask_token_id) + " is outside [0, " +
                std::to_string(opt.vocab_size) + ") (vocab_size)");
  for (int64_t s : opt.special_ids)
    MOX_CHECK(s >= 0 && s < opt.vocab_size, kWhere,
              "special_ids holds " + std::to_string(s) + ", outside [0, " + std::to_string(opt.vocab_size) +
                  ") (vocab_size)");
}

}  // namespace

MlmBatch mask_tokens(const Tensor& ids, const MlmOptions& opt, Generator& gen) {
  check_options(opt);
  MOX_CHECK(ids.defined() && (ids.dim() == 1 || ids.dim() == 2) && is_integral(ids.dtype()), kWhere,
            "expected integer token ids [B, T] or [T], got " + (ids.defined() ? ids.desc() : "undefined"));
  const int64_t T = ids.size(-1), rows = T == 0 ? 0 : ids.numel() / T;
  std::vector<int64_t> in = ids.to_vector<int64_t>();
  for (size_t i = 0; i < in.size(); i++)
    MOX_CHECK(in[i] >= 0 && in[i] < opt.vocab_size, kWhere,
              "id " + std::to_string(in[i]) + " at row " + std::to_string(int64_t(i) / T) + ", position " +
                  std::to_string(int64_t(i) % T) + " is outside [0, " + std::to_string(opt.vocab_size) +
                  ") (vocab_size)");
  std::vector<char> special(size_t(opt.vocab_size), 0);
  for (int64_t s : opt.special_ids) special[size_t(s)] = 1;

  std::vector<int64_t> out = in, labels(in.size(), -100);
  std::vector<int64_t> candidates, chosen;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t* row = in.data() + r * T;
    candidates.clear();
    chosen.clear();
    for (int64_t t = 0; t < T; t++) {
      if (special[size_t(row[t])]) continue;
      candidates.push_back(t);
      if (gen.uniform() < opt.mask_prob) chosen.push_back(t);
    }
    if (chosen.empty() && !candidates.empty()) chosen.push_back(candidates[gen.below(candidates.size())]);
    for (int64_t t : chosen) {
      const size_t i = size_t(r * T + t);
      labels[i] = in[i];
      const double u = gen.uniform();
      if (u < 0.8) out[i] = opt.mask_token_id;
      else if (u < 0.9) out[i] = int64_t(gen.below(uint64_t(opt.vocab_size)));
      // else: kept as it is (the model must still predict it)
    }
  }
  return {from_vector(out, ids.shape()), from_vector(labels, ids.shape())};
}

}  // namespace mox::data
