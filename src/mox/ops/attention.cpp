// scaled_dot_product_attention: checks shapes, runs the backend's fused attention kernel
// (online softmax over key tiles, no Tq x Tk matrix) on f32/f64 data (bf16/f16 go through
// f32) and records the fused backward, which recomputes the scores per tile from q, k and
// the saved per-row logsumexp.
// No operand is copied when each position's D values are contiguous (the q, k, v views of a
// [B, T, 3C] projection split into heads), and the output and the gradients of q, k, v are
// [B, T, H, D] buffers returned as [B, H, T, D] views: merging the heads back into [B, T, C]
// (transpose(1, 2) then reshape) is then free in both directions.
#include <cmath>

#include "mox/autograd/node.h"
#include "mox/ops/autocast.h"
#include "mox/ops/half.h"
#include "mox/ops/ops.h"

namespace mox {

namespace {

Tensor plain(const Tensor& t) { return t.defined() ? t.detach().contiguous() : t; }

// t detached, copied only when its last dim is strided.
Tensor rows(const Tensor& t) {
  Tensor d = t.detach();
  return d.numel() == 0 || d.size(3) == 1 || d.stride(3) == 1 ? d : d.contiguous();
}

// An uninitialised [B, H, T, D] tensor laid out as [B, T, H, D].
Tensor heads_last(const Shape& bhtd, const TensorOptions& opt) {
  return empty({bhtd[0], bhtd[2], bhtd[1], bhtd[3]}, opt).transpose(1, 2);
}
}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal, double scale, const Tensor& key_padding_mask) {
  const char* op = "scaled_dot_product_attention";
  if (autocast_enabled()) {
    Tensor hq = detail::autocast_half(q), hk = detail::autocast_half(k), hv = detail::autocast_half(v);
    if (!hq.same(q) || !hk.same(k) || !hv.same(v))
      return scaled_dot_product_attention(hq, hk, hv, causal, scale, key_padding_mask);
  }
  MOX_CHECK(q.defined() && k.defined() && v.defined(), op, "q, k and v must be defined");
  for (const Tensor* t : {&q, &k, &v})
    if (!is_floating(t->dtype()))
      throw Error(op, "q, k and v must be floating-point tensors, got " + t->desc());
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype())
    throw Error(op, "q, k and v must have one dtype, got " + q.desc() + ", " + k.desc() + ", " +
                        v.desc());
  if (k.device() != q.device() || v.device() != q.device())
    throw Error(op, "q, k and v must be on one device");
  if (q.dim() != 4) throw Error(op, "expected q [B, H, Tq, D], got " + q.desc());
  if (k.dim() != 4) throw Error(op, "expected k [B, H, Tk, D], got " + k.desc());
  if (v.shape() != k.shape())
    throw Error(op, "v " + v.desc() + " must have k's shape " + k.desc());
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3), Tk = k.size(2);
  if (k.size(0) != B || k.size(1) != H || k.size(3) != D)
    throw Error(op, "k " + k.desc() + " does not match q " + q.desc() +
                        " (expected [B, H, Tk, D] with q's B, H and D)");
  if (D < 1) throw Error(op, "head size D must be >= 1, got q " + q.desc());
  if (!std::isfinite(scale)) throw Error(op, "scale must be finite, got " + std::to_string(scale));
  const double s = scale < 0 ? 1.0 / std::sqrt(double(D)) : scale;

  Tensor mask;
  if (key_padding_mask.defined()) {
    const Tensor& m = key_padding_mask;
    if (m.dim() != 2 || m.size(0) != B || m.size(1) != Tk)
      throw Error(op, "key_padding_mask must be [B, Tk] = [" + std::to_string(B) + ", " +
                          std::to_string(Tk) + "], got " + m.desc());
    if (is_floating(m.dtype()))
      throw Error(op, "key_padding_mask must be a bool (u8) or integer tensor, got " + m.desc());
    if (m.device() != q.device()) throw Error(op, "key_padding_mask must be on q's device");
    mask = m.dtype() == DType::U8 ? plain(m) : ne(m.detach(), 0.0).contiguous();
  }

  if (detail::via_f32(q)) {
    AutocastGuard off(DType::BF16, false);  // the f32 computation must not be rounded again
    return scaled_dot_product_attention(q.to(DType::F32), k.to(DType::F32), v.to(DType::F32),
                                        causal, s, mask)
        .to(q.dtype());
  }

  Tensor qc = rows(q), kc = rows(k), vc = rows(v);
  const TensorOptions opt(q.dtype(), q.device());
  Tensor out = heads_last(q.shape(), opt);
  Tensor lse = empty({B, H, q.size(2)}, TensorOptions(detail::stats_dtype(q.dtype()), q.device()));
  backend_for(q).attention(qc, kc, vc, mask, causal, s, out, lse);
  if (any_requires_grad({&q, &k, &v})) {
    Tensor o = out.detach();
    record(out, op, {q, k, v},
           [qc, kc, vc, mask, causal, s, o, lse](const Tensor& g) -> std::vector<Tensor> {
             const TensorOptions opt(qc.dtype(), qc.device());
             Tensor gq = heads_last(qc.shape(), opt);
             Tensor gk = heads_last(kc.shape(), opt);
             Tensor gv = heads_last(vc.shape(), opt);
             backend_for(qc).attention_backward(qc, kc, vc, mask, causal, s, o, lse, rows(g),
                                                gq, gk, gv);
             return {gq, gk, gv};
           });
  }
  return out;
}

Tensor attention_qkv(const Tensor& qkv, int64_t n_head, bool causal, double scale) {
  const char* op = "attention_qkv";
  if (autocast_enabled() && qkv.defined() && qkv.dtype() == DType::F32)
    return attention_qkv(detail::autocast_half(qkv), n_head, causal, scale);
  MOX_CHECK(qkv.defined() && qkv.dim() == 3 && is_floating(qkv.dtype()), op,
            "expected a float [B, T, 3C] projection, got " + (qkv.defined() ? qkv.desc() : std::string("undefined")));
  MOX_CHECK(n_head >= 1 && qkv.size(2) % (3 * n_head) == 0, op,
            "last dim " + std::to_string(qkv.size(2)) + " is not 3 x C with C a multiple of n_head " +
                std::to_string(n_head));
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, H = n_head, D = C / H;
  if (detail::via_f32(qkv)) {  // bf16/f16 on a device that does not read them: compute in f32
    AutocastGuard off(DType::BF16, false);
    return attention_qkv(qkv.to(DType::F32), n_head, causal, scale).to(qkv.dtype());
  }
  MOX_CHECK(std::isfinite(scale), op, "scale must be finite, got " + std::to_string(scale));
  const double s = scale < 0 ? 1.0 / std::sqrt(double(D)) : scale;
  // [B, H, T, D] views of the three column blocks of a [B, T, 3C] tensor
  auto heads = [=](const Tensor& t, int64_t i) { return t.narrow(2, i * C, C).view({B, T, H, D}).transpose(1, 2); };
  Tensor x = qkv.detach().contiguous();
  Tensor q = heads(x, 0), k = heads(x, 1), v = heads(x, 2);
  const TensorOptions opt(qkv.dtype(), qkv.device());
  Tensor out4 = heads_last(q.shape(), opt);
  Tensor lse = empty({B, H, T}, TensorOptions(detail::stats_dtype(qkv.dtype()), qkv.device()));
  backend_for(qkv).attention(q, k, v, Tensor(), causal, s, out4, lse);
  Tensor out = out4.transpose(1, 2).view({B, T, C});  // the [B, T, H, D] buffer itself
  if (any_requires_grad({&qkv})) {
    Tensor o = out4.detach();
    record(out, op, {qkv}, [x, q, k, v, o, lse, causal, s, B, T, H, D, heads](const Tensor& g) -> std::vector<Tensor> {
      Tensor g4 = g.detach().contiguous().view({B, T, H, D}).transpose(1, 2);
      // the three gradients are written straight into the column blocks of one [B, T, 3C]
      Tensor gqkv = empty(x.shape(), TensorOptions(x.dtype(), x.device()));
      backend_for(x).attention_backward(q, k, v, Tensor(), causal, s, o, lse, g4, heads(gqkv, 0),
                                        heads(gqkv, 1), heads(gqkv, 2));
      return {gqkv};
    });
  }
  return out;
}

}  // namespace mox
