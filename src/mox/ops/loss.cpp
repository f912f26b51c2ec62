// Loss functions with PyTorch's semantics (reductions, ignore_index, label smoothing,
// clamping). Cross-entropy with class indices runs the backend's fused softmax kernel;
// the rest are compositions of elementwise ops, with hand-written backward where the
// composition would be inaccurate (BCE's clamped logs, BCE-with-logits at 0).
#include <cmath>

#include "mox/autograd/node.h"
#include "mox/ops/autocast.h"
#include "mox/ops/half.h"
#include "mox/ops/ops.h"

namespace mox {

namespace {

using detail::is_half;
using detail::via_f32;

void check_reduction(const std::string& r, const char* op) {
  if (r != "mean" && r != "sum" && r != "none")
    throw Error(op, "reduction must be 'mean', 'sum' or 'none', got '" + r + "'");
}

void check_floating(const Tensor& x, const char* op, const char* what) {
  MOX_CHECK(x.defined(), op, std::string(what) + " is undefined");
  if (!is_floating(x.dtype()))
    throw Error(op, std::string(what) + " must be a floating-point tensor, got " + x.desc());
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  if (a.shape() != b.shape())
    throw Error(op, "input " + a.desc() + " and target " + b.desc() + " must have the same shape");
}

// Class-index targets flattened to [R] with ignored entries set to -1, plus their count.
struct ClassTargets {
  Tensor flat;        // i64 [R]
  int64_t valid = 0;  // entries not ignored
};

ClassTargets class_targets(const Tensor& target, int64_t C, int64_t ignore_index, const char* op) {
  std::vector<int64_t> t = target.to_vector<int64_t>();
  ClassTargets r;
  for (int64_t& v : t) {
    if (v == ignore_index) {
      v = -1;
      continue;
    }
    if (v < 0 || v >= C)
      throw Error(op, "target " + std::to_string(v) + " is out of bounds for " +
                          std::to_string(C) + " classes");
    r.valid++;
  }
  r.flat = from_vector(t, {int64_t(t.size())}, TensorOptions(DType::I64, target.device()));
  return r;
}

// Logits [N, C, d...] (or [C]) as rows [R, C] with classes last, and the target's expected
// shape [N, d...] (or []).
struct ClassRows {
  Tensor rows;
  Shape target_shape;
  bool moved = false;  // classes were moved from dim 1 to last
};

ClassRows class_rows(const Tensor& x, const char* op) {
  if (x.dim() < 1) throw Error(op, "input must have a class dim, got " + x.desc());
  ClassRows r;
  if (x.dim() == 1) {
    r.rows = x.reshape({1, x.size(0)});
    return r;
  }
  const int64_t C = x.size(1);
  r.target_shape = x.shape();
  r.target_shape.erase(r.target_shape.begin() + 1);
  if (x.dim() == 2) {
    r.rows = x;
    return r;
  }
  std::vector<int64_t> perm{0};
  for (int64_t d = 2; d < x.dim(); d++) perm.push_back(d);
  perm.push_back(1);
  r.rows = x.permute(perm).reshape({-1, C});
  r.moved = true;
  return r;
}

// Inverse of class_rows for a gradient laid out as [R, C].
Tensor class_rows_back(const Tensor& g, const Shape& x_shape, bool moved) {
  if (!moved) return g.reshape(x_shape);
  Shape s{x_shape[0]};
  for (size_t d = 2; d < x_shape.size(); d++) s.push_back(x_shape[d]);
  s.push_back(x_shape[1]);
  std::vector<int64_t> inv{0, int64_t(x_shape.size()) - 1};
  for (int64_t d = 1; d < int64_t(x_shape.size()) - 1; d++) inv.push_back(d);
  return g.reshape(s).permute(inv);
}

// Cross-entropy with class-index targets through the fused kernel (f32/f64 logits).
Tensor cross_entropy_indices(const Tensor& logits, const Tensor& target, double ls,
                             const std::string& reduction, int64_t ignore_index) {
  const char* op = "cross_entropy";
  ClassRows cr;
  {
    NoGradGuard ng;  // the rows are kernel input only; the node below owns the gradient
    cr = class_rows(logits.detach(), op);
  }
  if (target.shape() != cr.target_shape)
    throw Error(op, "target " + target.desc() + " must have shape " + shape_str(cr.target_shape) +
                        " for input " + logits.desc());
  const int64_t C = cr.rows.size(1);
  ClassTargets ct = class_targets(target, C, ignore_index, op);
  Tensor z = cr.rows.contiguous();
  // Per-row losses are f32 for half logits (the kernel reads them directly: native_half).
  TensorOptions o(detail::stats_dtype(z.dtype()), z.device());
  Tensor losses = empty({z.size(0)}, o);
  backend_for(z).cross_entropy(z, ct.flat, ls, losses, Tensor(), 1.0);
  Tensor out;
  double scale = 1.0;
  if (reduction == "none") {
    out = losses.reshape(cr.target_shape);
  } else {
    NoGradGuard ng;
    out = sum(losses);
    if (reduction == "mean") {
      scale = 1.0 / double(ct.valid);  // 0 valid targets: NaN, like PyTorch
      out = mul(out, scale);
    }
  }
  if (any_requires_grad({&logits})) {
    Shape xs = logits.shape();
    bool moved = cr.moved, none = reduction == "none";
    Tensor t = ct.flat;
    record(out, op, {logits}, [z, t, ls, scale, xs, moved, none](const Tensor& g) -> std::vector<Tensor> {
      Tensor gz = empty(z.shape(), TensorOptions(z.dtype(), z.device()));
      Tensor tmp = empty({z.size(0)}, TensorOptions(detail::stats_dtype(z.dtype()), z.device()));
      // Recomputes softmax rather than storing it: one pass over the logits either way.
      double s = none ? 1.0 : g.item<double>() * scale;
      backend_for(z).cross_entropy(z, t, ls, tmp, gz, s);
      if (none) gz = mul(gz, g.reshape({z.size(0), 1}));
      return {class_rows_back(gz, xs, moved)};
    });
  }
  return out;
}

}  // namespace

Tensor apply_reduction(const Tensor& losses, const std::string& reduction, const char* op) {
  check_reduction(reduction, op);
  if (reduction == "mean") return mean(losses);
  if (reduction == "sum") return sum(losses);
  return losses;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing,
                     const std::string& reduction, int64_t ignore_index) {
  const char* op = "cross_entropy";
  check_floating(logits, op, "input");
  MOX_CHECK(target.defined(), op, "target is undefined");
  check_reduction(reduction, op);
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    throw Error(op, "label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
  // bf16/f16 logits give an f32 loss (autocast's rule: losses are kept in f32); the fused
  // kernel reads half logits directly where the device allows (native_half).
  if (via_f32(logits) || (is_half(logits.dtype()) && is_floating(target.dtype())))
    return cross_entropy(logits.to(DType::F32), target, label_smoothing, reduction, ignore_index);
  if (is_floating(target.dtype())) {
    // Probability targets: -sum_c t_c log p_c per sample, smoothed towards uniform.
    check_same_shape(logits, target, op);
    const int64_t cdim = logits.dim() == 1 ? 0 : 1;
    const int64_t C = logits.size(cdim);
    Tensor t = target.to(logits.dtype());
    if (label_smoothing > 0) t = add(mul(t, 1.0 - label_smoothing), label_smoothing / double(C));
    Tensor losses = neg(sum(mul(log_softmax(logits, cdim), t), {cdim}));
    return apply_reduction(losses, reduction, op);
  }
  return cross_entropy_indices(logits, target, label_smoothing, reduction, ignore_index);
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const std::string& reduction,
                int64_t ignore_index) {
  const char* op = "nll_loss";
  if (autocast_enabled() && log_probs.defined() && is_half(log_probs.dtype()))
    return nll_loss(detail::autocast_f32(log_probs), target, reduction, ignore_index);
  check_floating(log_probs, op, "input");
  MOX_CHECK(target.defined(), op, "target is undefined");
  check_reduction(reduction, op);
  if (!is_integral(target.dtype()))
    throw Error(op, "target must hold class indices (integer dtype), got " + target.desc());
  ClassRows cr = class_rows(log_probs, op);
  if (target.shape() != cr.target_shape)
    throw Error(op, "target " + target.desc() + " must have shape " + shape_str(cr.target_shape) +
                        " for input " + log_probs.desc());
  const int64_t C = cr.rows.size(1), R = cr.rows.size(0);
  ClassTargets ct = class_targets(target, C, ignore_index, op);
  // Ignored rows pick class 0 and are then masked out.
  Tensor keep = ge(ct.flat, 0.0);
  Tensor safe = where(keep, ct.flat, zeros_like(ct.flat)).reshape({R, 1});
  Tensor picked = gather(cr.rows, 1, safe).reshape({R});
  Tensor losses = mul(neg(picked), keep.to(log_probs.dtype()));
  if (reduction == "none") return losses.reshape(cr.target_shape);
  Tensor total = sum(losses);
  return reduction == "sum" ? total : mul(total, 1.0 / double(ct.valid));
}

Tensor mse_loss(const Tensor& x, const Tensor& y, const std::string& reduction) {
  if (autocast_enabled() && x.defined() && y.defined() && (is_half(x.dtype()) || is_half(y.dtype())))
    return mse_loss(detail::autocast_f32(x), detail::autocast_f32(y), reduction);
  check_floating(x, "mse_loss", "input");
  return apply_reduction(square(sub(x, y)), reduction, "mse_loss");
}

Tensor l1_loss(const Tensor& x, const Tensor& y, const std::string& reduction) {
  check_floating(x, "l1_loss", "input");
  return apply_reduction(abs(sub(x, y)), reduction, "l1_loss");
}

// 0.5 d^2 where |d| < delta, else delta (|d| - delta/2)
Tensor huber_loss(const Tensor& x, const Tensor& y, double delta, const std::string& reduction) {
  const char* op = "huber_loss";
  check_floating(x, op, "input");
  if (!(delta > 0)) throw Error(op, "delta must be positive, got " + std::to_string(delta));
  Tensor d = sub(x, y);
  Tensor ad = abs(d);
  Tensor quad = mul(square(d), 0.5);
  Tensor lin = mul(add(ad, -0.5 * delta), delta);
  return apply_reduction(where(lt(ad, delta), quad, lin), reduction, op);
}

// -(y log p + (1-y) log(1-p)) with each log clamped at -100, like PyTorch.
Tensor binary_cross_entropy(const Tensor& p, const Tensor& y, const std::string& reduction) {
  const char* op = "binary_cross_entropy";
  if (autocast_enabled() && p.defined() && y.defined() && (is_half(p.dtype()) || is_half(y.dtype())))
    return binary_cross_entropy(detail::autocast_f32(p), detail::autocast_f32(y), reduction);
  check_floating(p, op, "input");
  check_floating(y, op, "target");
  check_same_shape(p, y, op);
  check_reduction(reduction, op);
  if (p.numel() > 0) {
    NoGradGuard ng;
    double lo = amin(p.detach()).item<double>(), hi = amax(p.detach()).item<double>();
    if (!(lo >= 0.0 && hi <= 1.0))
      throw Error(op, "all elements of input should be between 0 and 1, got values in [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  Tensor pd = p.detach(), yd = y.detach().to(p.dtype());
  Tensor losses;
  {
    NoGradGuard ng;
    Tensor lp = clamp_min(log(pd), -100.0), l1p = clamp_min(log(rsub(pd, 1.0)), -100.0);
    losses = neg(add(mul(yd, lp), mul(rsub(yd, 1.0), l1p)));
  }
  if (any_requires_grad({&p, &y})) {
    bool np = p.requires_grad(), ny = y.requires_grad();
    record(losses, op, {p, y}, [pd, yd, np, ny](const Tensor& g) -> std::vector<Tensor> {
      Tensor gp, gy;
      // d/dp = (p - y) / max(p (1 - p), 1e-12)
      if (np) gp = div(mul(g, sub(pd, yd)), clamp_min(mul(pd, rsub(pd, 1.0)), 1e-12));
      // d/dy = log(1-p) - log(p), with the same clamps as the forward
      if (ny)
        gy = mul(g, sub(clamp_min(log(rsub(pd, 1.0)), -100.0), clamp_min(log(pd), -100.0)));
      return {gp, gy};
    });
  }
  return apply_reduction(losses, reduction, op);
}

// (1 - y) z + lw * softplus(-z), lw = 1 + (pos_weight - 1) y; softplus computed stably.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& y,
                                        const std::string& reduction, const Tensor& pos_weight) {
  const char* op = "binary_cross_entropy_with_logits";
  if (autocast_enabled() && logits.defined() && y.defined() && (is_half(logits.dtype()) || is_half(y.dtype())))
    return binary_cross_entropy_with_logits(detail::autocast_f32(logits), detail::autocast_f32(y),
                                            reduction, detail::autocast_f32(pos_weight));
  check_floating(logits, op, "input");
  check_floating(y, op, "target");
  check_same_shape(logits, y, op);
  check_reduction(reduction, op);
  Tensor z = logits.detach(), t = y.detach().to(logits.dtype());
  Tensor pw = pos_weight.defined() ? pos_weight.detach().to(logits.dtype()) : Tensor();
  Tensor losses, sp;
  {
    NoGradGuard ng;
    sp = add(log1p(exp(neg(abs(z)))), relu(neg(z)));  // softplus(-z) = log(1 + e^-z)
    Tensor lw = pw.defined() ? add(mul(add(pw, -1.0), t), 1.0) : Tensor();
    Tensor lin = mul(rsub(t, 1.0), z);
    losses = add(lin, lw.defined() ? mul(lw, sp) : sp);
  }
  if (pw.defined() && losses.shape() != logits.shape())
    throw Error(op, "pos_weight " + pos_weight.desc() + " must broadcast to input " +
                        logits.desc());
  if (any_requires_grad({&logits, &y, &pos_weight})) {
    bool nz = logits.requires_grad(), ny = y.requires_grad(),
         np = pos_weight.defined() && pos_weight.requires_grad();
    Shape pws = pos_weight.defined() ? pos_weight.shape() : Shape{};
    record(losses, op, {logits, y, pos_weight},
           [z, t, pw, sp, nz, ny, np, pws](const Tensor& g) -> std::vector<Tensor> {
             Tensor gz, gy, gp;
             Tensor lw = pw.defined() ? add(mul(add(pw, -1.0), t), 1.0) : Tensor();
             Tensor sig_neg = sigmoid(neg(z));
             // d/dz = (1 - y) - lw * sigmoid(-z)
             if (nz) gz = mul(g, sub(rsub(t, 1.0), lw.defined() ? mul(lw, sig_neg) : sig_neg));
             // d/dy = -z + (pos_weight - 1) softplus(-z)
             if (ny) gy = mul(g, pw.defined() ? sub(mul(add(pw, -1.0), sp), z) : neg(z));
             // d/dpos_weight = y softplus(-z), summed over broadcast dims
             if (np) gp = sum_to(mul(g, mul(t, sp)), pws);
             return {gz, gy, gp};
           });
  }
  return apply_reduction(losses, reduction, op);
}

// Pointwise target * (log target - input) (0 where target is 0), or with log targets
// exp(t) * (t - input). 'batchmean' divides the sum by the batch size.
Tensor kl_div(const Tensor& input, const Tensor& target, const std::string& reduction,
              bool log_target) {
  const char* op = "kl_div";
  check_floating(input, op, "input");
  check_floating(target, op, "target");
  Tensor pointwise;
  if (log_target) {
    pointwise = mul(exp(target), sub(target, input));
  } else {
    // xlogy(t, t): log of 1 where t <= 0 keeps both the value and its gradient finite.
    Tensor pos = gt(target, 0.0);
    Tensor safe = where(pos, target, ones_like(target));
    pointwise = sub(mul(target, log(safe)), mul(target, input));
  }
  if (reduction == "batchmean") {
    Tensor total = sum(pointwise);
    return input.dim() == 0 ? total : mul(total, 1.0 / double(input.size(0)));
  }
  return apply_reduction(pointwise, reduction, op);
}

namespace {

// The fake-quant forward and its straight-through backward for scale/zero point tensors
// already broadcastable to x.
Tensor fake_quantize_impl(const Tensor& x, const Tensor& scale, const Tensor& zp, int64_t qmin, int64_t qmax,
                          const char* op) {
  check_floating(x, op, "input");
  MOX_CHECK(qmin < qmax, op, "qmin must be below qmax, got " + std::to_string(qmin) + " and " + std::to_string(qmax));
  Tensor out, keep;
  {
    NoGradGuard ng;
    const DType dt = x.dtype();
    Tensor s = scale.to(dt), z = zp.to(dt);
    Tensor q = add(round(div(x.detach(), s)), z);  // round: half to even, as PyTorch
    keep = mul(ge(q, double(qmin)).to(dt), le(q, double(qmax)).to(dt));
    out = mul(sub(clamp(q, double(qmin), double(qmax)), z), s);
  }
  if (any_requires_grad({&x}))
    record(out, op, {x}, [keep](const Tensor& g) -> std::vector<Tensor> { return {mul(g, keep)}; });
  return out;
}

}  // namespace

Tensor fake_quantize(const Tensor& x, double scale, int64_t zero_point, int64_t qmin, int64_t qmax) {
  const char* op = "fake_quantize";
  MOX_CHECK(x.defined(), op, "input is undefined");
  MOX_CHECK(scale > 0 && std::isfinite(scale), op, "scale must be positive, got " + std::to_string(scale));
  MOX_CHECK(zero_point >= qmin && zero_point <= qmax, op, "zero_point " + std::to_string(zero_point) +
                                                          " is outside [qmin, qmax]");
  const TensorOptions o(x.dtype(), x.device());
  return fake_quantize_impl(x, full({}, scale, o), full({}, double(zero_point), o), qmin, qmax, op);
}

Tensor fake_quantize_per_channel(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                                 int64_t qmin, int64_t qmax) {
  const char* op = "fake_quantize_per_channel";
  MOX_CHECK(x.defined() && scale.defined() && zero_point.defined(), op, "input is undefined");
  const int64_t d = axis < 0 ? axis + x.dim() : axis;
  MOX_CHECK(d >= 0 && d < x.dim(), op, "axis " + std::to_string(axis) + " is out of range for " + x.desc());
  const int64_t C = x.size(d);
  MOX_CHECK(scale.dim() == 1 && scale.size(0) == C && is_floating(scale.dtype()), op,
            "scale must be a floating [" + std::to_string(C) + "] tensor, got " + scale.desc());
  MOX_CHECK(zero_point.dim() == 1 && zero_point.size(0) == C && !is_floating(zero_point.dtype()), op,
            "zero_point must be an integer [" + std::to_string(C) + "] tensor, got " + zero_point.desc());
  MOX_CHECK(gt(amin(scale.detach()), 0.0).item<uint8_t>() != 0, op, "every scale must be positive");
  Shape bs(size_t(x.dim()), 1);
  bs[size_t(d)] = C;
  return fake_quantize_impl(x, scale.detach().to(x.device()).reshape(bs), zero_point.to(x.device()).reshape(bs),
                            qmin, qmax, op);
}

Tensor distillation_loss(const Tensor& student_logits, const Tensor& teacher_logits, const Tensor& target,
                         double temperature, double alpha) {
  const char* op = "distillation_loss";
  check_floating(student_logits, op, "student logits");
  check_floating(teacher_logits, op, "teacher logits");
  MOX_CHECK(student_logits.dim() == 2, op, "student logits must be [N, classes], got " + student_logits.desc());
  MOX_CHECK(teacher_logits.shape() == student_logits.shape(), op,
            "teacher logits " + teacher_logits.desc() + " must match the student's " + student_logits.desc());
  MOX_CHECK(temperature > 0 && std::isfinite(temperature), op,
            "temperature must be positive, got " + std::to_string(temperature));
  MOX_CHECK(alpha >= 0 && alpha <= 1, op, "alpha must be in [0, 1], got " + std::to_string(alpha));
  const double inv_t = 1.0 / temperature;
  Tensor loss;
  if (alpha > 0) {
    // The teacher is a constant: no gradient flows into it.
    Tensor soft = softmax(mul(teacher_logits.detach(), inv_t), 1);
    Tensor kl = kl_div(log_softmax(mul(student_logits, inv_t), 1), soft, "batchmean");
    loss = mul(kl, alpha * temperature * temperature);  // T^2 keeps the soft gradients' scale
  }
  if (alpha < 1) {
    Tensor hard = mul(cross_entropy(student_logits, target), 1.0 - alpha);
    loss = loss.defined() ? add(loss, hard) : hard;
  }
  return loss;
}

}  // namespace mox
