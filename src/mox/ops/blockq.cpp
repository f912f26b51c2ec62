// Weight-only block quantisation (Q8 / Q4): quantise, load, dequantise, and the product whose
// kernel dequantises on the fly (backend/blockq.h). Formats and formulas: ops/blockq.h.
#include "mox/ops/blockq.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "mox/backend/blockq.h"

namespace mox {

namespace {

constexpr int64_t kBlock = 32;

void check_cpu(const Tensor& t, const char* where, const char* what) {
  if (t.device() != kCPU)
    throw Error(where, std::string(what) + " " + t.desc() + " is not on the CPU (block-quantised "
                                                         "kernels are CPU only)");
}

Tensor make_packed(BlockFormat f, const Tensor& data, const Tensor& scale, int64_t N, int64_t K) {
  const bool q4 = f == BlockFormat::Q4;
  Tensor packed = empty({int64_t(cpu::blockq_packed_bytes(q4, N, K))}, DType::U8);
  cpu::blockq_pack(q4, data.raw_data(), static_cast<const uint16_t*>(scale.raw_data()), N, K,
                   packed.raw_data());
  return packed;
}

float round_f16(float d) { return f16::to_float(f16::from_float(d)); }

// Q4: the nibble-value q in [-8, 7] nearest to v / d.
inline int q4_of(float v, float d) {
  return int(std::clamp(std::roundf(v / d), -8.0f, 7.0f));
}

double q4_error(const float* w, float d) {
  double e = 0;
  for (int i = 0; i < kBlock; ++i) {
    const double r = double(w[i]) - double(d) * q4_of(w[i], d);
    e += r * r;
  }
  return e;
}

// The f16-representable scale of least squared error for one Q4 block (0 for a zero block).
float best_q4_scale(const float* w, int64_t row, int64_t block) {
  float amax = 0, mx = 0;
  for (int i = 0; i < kBlock; ++i) {
    if (std::fabs(w[i]) > amax) {
      amax = std::fabs(w[i]);
      mx = w[i];
    }
  }
  if (amax == 0) return 0.0f;
  float best = round_f16(mx / -8.0f);  // llama.cpp's Q4_0 rule, the first candidate
  if (!std::isfinite(best))
    throw Error("block_quantize", "row " + std::to_string(row) + " block " + std::to_string(block) +
                                      ": max |w| = " + std::to_string(amax) +
                                      " does not fit an f16 scale");
  double best_err = best == 0.0f ? 0.0 : q4_error(w, best);
  if (best == 0.0f) {  // the scale underflows f16: the block dequantises to zero
    for (int i = 0; i < kBlock; ++i) best_err += double(w[i]) * w[i];
  }
  auto consider = [&](float d) {
    d = round_f16(d);
    if (!(d != 0.0f) || !std::isfinite(d)) return;
    const double e = q4_error(w, d);
    if (e < best_err) {
      best_err = e;
      best = d;
    }
  };
  for (int i = 1; i <= 8; ++i) consider(mx / (-8.0f + float(i) / 8.0f));  // -7.875 .. -7
  for (int i = 0; i <= 8; ++i) consider(mx / (7.0f + float(i) / 16.0f));  // 7 .. 7.5
  if (best != 0.0f) {  // least-squares refit of the best candidate's integers
    double wq = 0, qq = 0;
    for (int i = 0; i < kBlock; ++i) {
      const int q = q4_of(w[i], best);
      wq += double(w[i]) * q;
      qq += double(q) * q;
    }
    if (qq > 0) consider(float(wq / qq));
  }
  return best;
}

}  // namespace

const char* block_format_name(BlockFormat f) { return f == BlockFormat::Q4 ? "q4" : "q8"; }

BlockFormat block_format_from_name(std::string_view s) {
  if (s == "q8" || s == "Q8") return BlockFormat::Q8;
  if (s == "q4" || s == "Q4") return BlockFormat::Q4;
  throw Error("block_format", "unknown block format '" + std::string(s) + "' (expected q8 or q4)");
}

BlockQuantWeight block_quantize(const Tensor& w_in, BlockFormat f) {
  const char* where = "block_quantize";
  MOX_CHECK(w_in.defined(), where, "weight is undefined");
  check_cpu(w_in, where, "weight");
  MOX_CHECK(w_in.dim() == 2, where, "weight must be 2-D [N, K], got " + w_in.desc());
  MOX_CHECK(w_in.dtype() == DType::F32 || w_in.dtype() == DType::BF16 || w_in.dtype() == DType::F16,
            where, "weight must be f32, bf16 or f16, got " + w_in.desc());
  const int64_t N = w_in.size(0), K = w_in.size(1);
  MOX_CHECK(K > 0 && K % kBlock == 0, where,
            "weight " + w_in.desc() + ": K = " + std::to_string(K) +
                " must be a positive multiple of 32 (the block size)");
  const Tensor w = w_in.to(DType::F32).contiguous();
  const float* wp = w.data<float>();
  const int64_t nb = K / kBlock;

  BlockQuantWeight out;
  out.format = f;
  out.rows = N;
  out.cols = K;
  out.scale = empty({N, nb}, DType::F16);
  uint16_t* sp = static_cast<uint16_t*>(out.scale.raw_data());
  if (f == BlockFormat::Q8) {
    out.data = empty({N, K}, DType::I8);
    int8_t* qp = out.data.data<int8_t>();
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t b = 0; b < nb; ++b) {
        const float* x = wp + n * K + b * kBlock;
        int8_t* q = qp + n * K + b * kBlock;
        float amax = 0;
        for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
        MOX_CHECK(std::isfinite(amax), where,
                  "weight " + w_in.desc() + " has a non-finite value in row " + std::to_string(n));
        const uint16_t bits = f16::from_float(amax / 127.0f);
        const float d = f16::to_float(bits);
        MOX_CHECK(std::isfinite(d), where,
                  "row " + std::to_string(n) + " block " + std::to_string(b) + ": max |w| = " +
                      std::to_string(amax) + " does not fit an f16 scale");
        sp[n * nb + b] = bits;
        for (int i = 0; i < kBlock; ++i)
          q[i] = d == 0.0f ? 0 : int8_t(std::clamp(std::roundf(x[i] / d), -127.0f, 127.0f));
      }
    }
  } else {
    out.data = empty({N, K / 2}, DType::U8);
    uint8_t* qp = out.data.data<uint8_t>();
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t b = 0; b < nb; ++b) {
        const float* x = wp + n * K + b * kBlock;
        uint8_t* q = qp + n * (K / 2) + b * 16;
        float amax = 0;
        for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
        MOX_CHECK(std::isfinite(amax), where,
                  "weight " + w_in.desc() + " has a non-finite value in row " + std::to_string(n));
        const float d = best_q4_scale(x, n, b);
        sp[n * nb + b] = f16::from_float(d);
        for (int j = 0; j < 16; ++j) {
          const int lo = d == 0.0f ? 0 : q4_of(x[j], d), hi = d == 0.0f ? 0 : q4_of(x[j + 16], d);
          q[j] = uint8_t((lo + 8) | ((hi + 8) << 4));
        }
      }
    }
  }
  out.packed = make_packed(f, out.data, out.scale, N, K);
  return out;
}

BlockQuantWeight block_weight_from(BlockFormat f, const Tensor& data_in, const Tensor& scale_in) {
  const char* where = "block_weight_from";
  MOX_CHECK(data_in.defined() && scale_in.defined(), where, "data or scale is undefined");
  check_cpu(data_in, where, "data");
  check_cpu(scale_in, where, "scale");
  const DType want = f == BlockFormat::Q8 ? DType::I8 : DType::U8;
  const std::string fmt = block_format_name(f);
  MOX_CHECK(data_in.dtype() == want && data_in.dim() == 2, where,
            fmt + " data must be " + dtype_name(want) + " [N, " + (f == BlockFormat::Q8 ? "K" : "K/2") +
                "], got " + data_in.desc());
  MOX_CHECK(scale_in.dtype() == DType::F16 && scale_in.dim() == 2, where,
            fmt + " scale must be f16 [N, K/32], got " + scale_in.desc());
  const int64_t N = data_in.size(0);
  const int64_t K = f == BlockFormat::Q8 ? data_in.size(1) : 2 * data_in.size(1);
  MOX_CHECK(K > 0 && K % kBlock == 0, where,
            fmt + " data " + data_in.desc() + ": K = " + std::to_string(K) +
                " must be a positive multiple of 32 (the block size)");
  MOX_CHECK(scale_in.size(0) == N && scale_in.size(1) == K / kBlock, where,
            fmt + " scale " + scale_in.desc() + " does not match data " + data_in.desc() +
                " (expected [" + std::to_string(N) + ", " + std::to_string(K / kBlock) + "])");
  BlockQuantWeight out;
  out.format = f;
  out.rows = N;
  out.cols = K;
  out.data = data_in.contiguous();
  out.scale = scale_in.contiguous();
  out.packed = make_packed(f, out.data, out.scale, N, K);
  return out;
}

Tensor block_dequantize(const BlockQuantWeight& w) {
  const int64_t N = w.rows, K = w.cols, nb = K / kBlock;
  MOX_CHECK(w.data.defined() && w.scale.defined(), "block_dequantize", "weight has no data");
  Tensor out = empty({N, K}, DType::F32);
  float* o = out.data<float>();
  const Tensor data = w.data.contiguous(), scale = w.scale.contiguous();
  const uint16_t* sp = static_cast<const uint16_t*>(scale.raw_data());
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t b = 0; b < nb; ++b) {
      const float d = f16::to_float(sp[n * nb + b]);
      float* ob = o + n * K + b * kBlock;
      if (w.format == BlockFormat::Q8) {
        const int8_t* q = data.data<int8_t>() + n * K + b * kBlock;
        for (int i = 0; i < kBlock; ++i) ob[i] = d * float(q[i]);
      } else {
        const uint8_t* q = data.data<uint8_t>() + n * (K / 2) + b * 16;
        for (int j = 0; j < 16; ++j) {
          ob[j] = d * float(int(q[j] & 15) - 8);
          ob[j + 16] = d * float(int(q[j] >> 4) - 8);
        }
      }
    }
  }
  return out;
}

Tensor block_linear(const Tensor& x_in, const BlockQuantWeight& w, const Tensor& bias) {
  const char* where = "block_linear";
  MOX_CHECK(x_in.defined(), where, "input is undefined");
  MOX_CHECK(w.data.defined() && w.scale.defined(), where, "weight has no data");
  check_cpu(x_in, where, "input");
  check_cpu(w.data, where, "weight");
  const int64_t N = w.rows, K = w.cols;
  auto wdesc = [&] {  // only built for an error message
    return std::string(block_format_name(w.format)) + "[" + std::to_string(N) + ", " +
           std::to_string(K) + "]";
  };
  MOX_CHECK(x_in.dtype() == DType::F32 || x_in.dtype() == DType::BF16 || x_in.dtype() == DType::F16,
            where, "input must be f32 (or bf16/f16), got " + x_in.desc());
  MOX_CHECK(x_in.dim() >= 1 && x_in.size(-1) == K, where,
            "input " + x_in.desc() + " does not match weight " + wdesc() + " (last dim must be " +
                std::to_string(K) + ")");
  const DType dwant = w.format == BlockFormat::Q8 ? DType::I8 : DType::U8;
  MOX_CHECK(w.data.dtype() == dwant && w.scale.dtype() == DType::F16, where,
            "weight " + wdesc() + " has data " + w.data.desc() + " and scale " + w.scale.desc() +
                " (expected " + dtype_name(dwant) + " data and f16 scale)");
  MOX_CHECK(K % kBlock == 0 && w.data.numel() == N * (w.format == BlockFormat::Q8 ? K : K / 2) &&
                w.scale.numel() == N * (K / kBlock),
            where, "weight " + wdesc() + " is inconsistent: data " + w.data.desc() + ", scale " +
                       w.scale.desc());
  if (bias.defined()) {
    check_cpu(bias, where, "bias");
    MOX_CHECK(bias.dtype() == DType::F32 && bias.dim() == 1 && bias.size(0) == N, where,
              "bias must be f32 [" + std::to_string(N) + "], got " + bias.desc());
  }
  // (generation calls this per token: no copies when the operands are already in place)
  const Tensor x = x_in.dtype() != DType::F32 ? x_in.to(DType::F32).contiguous()
                   : x_in.is_contiguous()     ? x_in
                                              : x_in.contiguous();
  const Tensor data = w.data.is_contiguous() ? w.data : w.data.contiguous();
  const Tensor scale = w.scale.is_contiguous() ? w.scale : w.scale.contiguous();
  const Tensor b = !bias.defined() || bias.is_contiguous() ? bias : bias.contiguous();
  Shape oshape = x.shape();
  oshape.back() = N;
  Tensor y = empty(oshape, DType::F32);
  const int64_t M = K > 0 ? x.numel() / K : 0;
  const bool packed_ok = w.packed.defined() && w.packed.dtype() == DType::U8 &&
                         size_t(w.packed.numel()) == cpu::blockq_packed_bytes(w.format == BlockFormat::Q4, N, K) &&
                         w.packed.is_contiguous() && w.packed.device() == kCPU &&
                         reinterpret_cast<uintptr_t>(w.packed.raw_data()) % 64 == 0;
  cpu::blockq_linear(w.format == BlockFormat::Q4, x.data<float>(), M, K, data.raw_data(),
                     static_cast<const uint16_t*>(scale.raw_data()),
                     packed_ok ? w.packed.raw_data() : nullptr, N,
                     b.defined() ? b.data<float>() : nullptr, y.data<float>());
  return y;
}

int64_t block_weight_bytes(const BlockQuantWeight& w) {
  int64_t n = 0;
  if (w.data.defined()) n += w.data.numel() * int64_t(w.data.element_size());
  if (w.scale.defined()) n += w.scale.numel() * int64_t(w.scale.element_size());
  return n;
}

}  // namespace mox
