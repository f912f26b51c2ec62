// matmul (torch.matmul semantics), bmm and linear, all on the backend's GEMM.
#include "mox/autograd/node.h"
#include "mox/ops/autocast.h"
#include "mox/ops/half.h"
#include "mox/ops/ops.h"

namespace mox {

namespace {

// out [B,M,N] = a [B,M,K] @ b [B,K,N] (batch stride may be 0).
Tensor gemm3(const Tensor& a, const Tensor& b) {
  Tensor out = empty({std::max(a.size(0), b.size(0)), a.size(1), b.size(2)},
                     TensorOptions(a.dtype(), a.device()));
  backend_for(a).gemm(a, b, out, false, false, 1.0, 0.0);
  return out;
}

void check_mm(const Tensor& a, const Tensor& b, const char* op) {
  MOX_CHECK(a.defined() && b.defined(), op, "input is undefined");
  MOX_CHECK(a.dim() >= 1 && b.dim() >= 1, op, "needs at least 1-D tensors, got " + a.desc() + " and " + b.desc());
  MOX_CHECK(a.dtype() == b.dtype(), op, "dtype mismatch " + a.desc() + " @ " + b.desc());
  MOX_CHECK(a.dtype() == DType::F32 || a.dtype() == DType::F64 || a.dtype() == DType::BF16 ||
                a.dtype() == DType::F16,
            op, "needs floating-point tensors, got " + a.desc());
  int64_t ka = a.size(-1), kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  if (ka != kb)
    throw Error(op, "shapes " + shape_str(a.shape()) + " and " + shape_str(b.shape()) +
                        " cannot be multiplied (" + std::to_string(ka) + " != " + std::to_string(kb) + ")");
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  if (autocast_enabled()) {
    Tensor a = detail::autocast_half(a_in), b = detail::autocast_half(b_in);
    if (!a.same(a_in) || !b.same(b_in)) return matmul(a, b);
  }
  check_mm(a_in, b_in, "matmul");
  // bf16 goes to the backend as is (bf16 GEMM, f32 accumulation); f16 is computed in f32.
  if (a_in.dtype() == DType::F16 && !backend_for(a_in).native_half()) {
    AutocastGuard off(DType::F16, false);  // the f32 computation must not be rounded again
    return matmul(a_in.to(DType::F32), b_in.to(DType::F32)).to(a_in.dtype());
  }
  // Promote 1-D operands as torch.matmul does, and strip the added dims at the end.
  Tensor a = a_in.dim() == 1 ? a_in.unsqueeze(0) : a_in;
  Tensor b = b_in.dim() == 1 ? b_in.unsqueeze(1) : b_in;
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  int64_t B = shape_numel(batch);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);

  Tensor out;
  {
    NoGradGuard ng;
    Tensor a3, b3;
    // [batch..., M, K] -> [B, M, K]; a broadcast batch becomes stride 0 where possible.
    auto to3 = [&](const Tensor& t, const Shape& tb, int64_t r, int64_t c) {
      if (shape_numel(tb) == 1 || tb == batch) {
        Tensor v = t.detach();
        Shape s3{shape_numel(tb), r, c};
        Tensor m = v.dim() == 3 ? v : v.reshape(s3);
        if (m.size(0) == 1 && B > 1) m = m.expand({B, r, c});
        return m;
      }
      Shape full = batch;
      full.push_back(r);
      full.push_back(c);
      return t.detach().expand(full).reshape({B, r, c});
    };
    a3 = to3(a, ba, M, K);
    b3 = to3(b, bb, K, N);
    out = gemm3(a3, b3).reshape(out_shape);
  }
  if (a_in.dim() == 1) out = out.squeeze(-2);
  if (b_in.dim() == 1) out = out.squeeze(-1);

  if (any_requires_grad({&a_in, &b_in})) {
    Tensor ad = a_in.detach(), bd = b_in.detach();
    bool na = a_in.requires_grad(), nb = b_in.requires_grad();
    record(out, "matmul", {a_in, b_in}, [ad, bd, na, nb](const Tensor& g_in) -> std::vector<Tensor> {
      // Work in the promoted (>= 2-D) forms, then sum broadcast batch dims away.
      Tensor a = ad.dim() == 1 ? ad.unsqueeze(0) : ad;
      Tensor b = bd.dim() == 1 ? bd.unsqueeze(1) : bd;
      Shape gs = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                  Shape(b.shape().begin(), b.shape().end() - 2), "matmul");
      gs.push_back(a.size(-2));
      gs.push_back(b.size(-1));
      Tensor g = g_in.reshape(gs);
      Tensor ga, gb;
      if (na) ga = sum_to(matmul(g, b.transpose(-1, -2)), a.shape()).reshape(ad.shape());
      if (nb) gb = sum_to(matmul(a.transpose(-1, -2), g), b.shape()).reshape(bd.shape());
      return {ga, gb};
    });
  }
  return out;
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  MOX_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0), "bmm",
            "expects [B,M,K] @ [B,K,N], got " + a.desc() + " and " + b.desc());
  return matmul(a, b);
}

namespace {

// linear, and with gelu = true GELU-tanh(linear) through one GEMM whose epilogue adds the
// bias and applies the activation (Backend::gemm_epilogue); both record one node.
Tensor linear_impl(const Tensor& x, const Tensor& w, const Tensor& b, bool gelu) {
  const char* op = gelu ? "linear_gelu" : "linear";
  if (autocast_enabled()) {
    Tensor hx = detail::autocast_half(x), hw = detail::autocast_half(w), hb = detail::autocast_half(b);
    if (!hx.same(x) || !hw.same(w) || (b.defined() && !hb.same(b))) return linear_impl(hx, hw, hb, gelu);
  }
  MOX_CHECK(x.defined() && w.defined(), op, "input is undefined");
  MOX_CHECK(w.dim() == 2, op, "weight must be [out, in], got " + w.desc());
  MOX_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), op,
            "input " + x.desc() + " does not match weight " + w.desc() + " (in_features " +
                std::to_string(w.size(1)) + ")");
  MOX_CHECK(x.dtype() == w.dtype(), op, "dtype mismatch " + x.desc() + " vs " + w.desc());
  if (b.defined())
    MOX_CHECK(b.dim() == 1 && b.size(0) == w.size(0), op,
              "bias " + b.desc() + " does not match weight " + w.desc());
  // Half data on a device whose elementwise kernels convert: the two ops, with their f32
  // round trips (same values).
  if (gelu && detail::via_f32(x)) return mox::gelu(linear_impl(x, w, b, false), true);
  if (x.dtype() == DType::F16 && !backend_for(x).native_half()) {
    AutocastGuard off(DType::F16, false);
    return linear_impl(x.to(DType::F32), w.to(DType::F32), b.defined() ? b.to(DType::F32) : b, gelu).to(x.dtype());
  }
  const int64_t in = w.size(1), outf = w.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = outf;
  Tensor x2 = x.detach().reshape({-1, in});
  const int64_t N = x2.size(0);
  const TensorOptions o(x.dtype(), x.device());
  Tensor out = empty({1, N, outf}, o);
  GemmEpilogue ep;
  if (b.defined()) ep.bias = b.detach();
  ep.gelu = gelu;
  if (gelu) ep.pre = empty({1, N, outf}, o);
  backend_for(x).gemm_epilogue(x2.unsqueeze(0), w.detach().t().unsqueeze(0), out, false, false, ep);
  out = out.view(out_shape);
  if (any_requires_grad({&x, &w, &b})) {
    Tensor xd = x2, wd = w.detach(), pre = gelu ? ep.pre.view({N, outf}) : Tensor();
    bool nx = x.requires_grad(), nw = w.requires_grad(), nb = b.defined() && b.requires_grad();
    Shape xs = x.shape();
    std::vector<Tensor> inputs{x, w};
    if (b.defined()) inputs.push_back(b);
    bool has_b = b.defined();
    record(out, op, inputs, [xd, wd, pre, nx, nw, nb, has_b, xs, in, outf](const Tensor& g) -> std::vector<Tensor> {
      Tensor g2 = g.reshape({-1, outf});
      Tensor gx, gw, gb;
      Backend& be = backend_for(g);
      if (pre.defined()) {  // through the GELU first: d/dpre = gelu'(pre) * g
        Tensor gp = empty(pre.shape(), TensorOptions(g.dtype(), g.device()));
        be.unary_backward(UnaryOp::GeluTanh, pre, Tensor(), g2, gp, {});
        g2 = gp;
      }
      if (nx) {  // gx [N,in] = g [N,out] @ w [out,in]
        gx = empty({1, g2.size(0), in}, TensorOptions(g.dtype(), g.device()));
        be.gemm(g2.unsqueeze(0), wd.unsqueeze(0), gx, false, false, 1.0, 0.0);
        gx = gx.view(xs);
      }
      if (nw) {  // gw [out,in] = g^T [out,N] @ x [N,in]
        gw = empty({1, outf, in}, TensorOptions(g.dtype(), g.device()));
        be.gemm(g2.t().unsqueeze(0), xd.unsqueeze(0), gw, false, false, 1.0, 0.0);
        gw = gw.view({outf, in});
      }
      if (nb) gb = sum(g2, {0});
      std::vector<Tensor> r{gx, gw};
      if (has_b) r.push_back(gb);
      return r;
    });
  }
  return out;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) { return linear_impl(x, w, b, false); }

Tensor linear_gelu(const Tensor& x, const Tensor& w, const Tensor& b) { return linear_impl(x, w, b, true); }

Tensor linear_residual(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& residual) {
  const char* op = "linear_residual";
  MOX_CHECK(x.defined() && w.defined() && residual.defined(), op, "input is undefined");
  // Under autocast the product's operands are rounded; the bias and the residual keep their
  // (f32) dtype, which the output takes: autocast's linear followed by a promoting add.
  const Tensor hx = detail::autocast_half(x), hw = detail::autocast_half(w);
  Shape out_shape = x.shape();
  out_shape.back() = w.dim() == 2 ? w.size(0) : 0;
  const DType rd = residual.dtype();
  const bool fuse = w.dim() == 2 && hx.dtype() == hw.dtype() && x.size(-1) == w.size(1) &&
                    residual.shape() == out_shape && is_floating(rd) && residual.device() == x.device() &&
                    (hx.dtype() == rd || (detail::is_half(hx.dtype()) && rd == DType::F32)) &&
                    (!b.defined() || (b.dtype() == rd && b.dim() == 1 && b.size(0) == w.size(0))) &&
                    (!detail::is_half(hx.dtype()) || backend_for(x).native_half());
  if (!fuse) return add(residual, linear(x, w, b));
  const int64_t in = w.size(1), outf = w.size(0);
  Tensor x2 = hx.detach().reshape({-1, in});
  const int64_t N = x2.size(0);
  Tensor out = empty({1, N, outf}, TensorOptions(rd, x.device()));
  GemmEpilogue ep;
  if (b.defined()) ep.bias = b.detach();
  ep.residual = residual.detach().contiguous().view({1, N, outf});
  backend_for(x).gemm_epilogue(x2.unsqueeze(0), hw.detach().t().unsqueeze(0), out, false, false, ep);
  out = out.view(out_shape);
  if (any_requires_grad({&hx, &hw, &b, &residual})) {
    Tensor xd = x2, wd = hw.detach();
    bool nx = hx.requires_grad(), nw = hw.requires_grad(), nb = b.defined() && b.requires_grad(),
         nr = residual.requires_grad();
    Shape xs = hx.shape();
    std::vector<Tensor> inputs{hx, hw, b.defined() ? b : Tensor(), residual};
    record(out, op, inputs, [xd, wd, nx, nw, nb, nr, xs, in, outf](const Tensor& g) -> std::vector<Tensor> {
      Tensor g2 = g.reshape({-1, outf});
      Tensor gh = g2.dtype() == wd.dtype() ? g2 : g2.to(wd.dtype());  // the product's gradient in its dtype
      Tensor gx, gw, gb;
      Backend& be = backend_for(g);
      if (nx) {
        gx = empty({1, gh.size(0), in}, TensorOptions(wd.dtype(), g.device()));
        be.gemm(gh.unsqueeze(0), wd.unsqueeze(0), gx, false, false, 1.0, 0.0);
        gx = gx.view(xs);
      }
      if (nw) {
        gw = empty({1, outf, in}, TensorOptions(wd.dtype(), g.device()));
        be.gemm(gh.t().unsqueeze(0), xd.unsqueeze(0), gw, false, false, 1.0, 0.0);
        gw = gw.view({outf, in});
      }
      if (nb) gb = sum(g2, {0});
      return {gx, gw, gb, nr ? g : Tensor()};
    });
  }
  return out;
}

}  // namespace mox
