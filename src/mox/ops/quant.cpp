// Post-training int8 inference ops (formulas in ops/quant.h): argument checks, activation
// quantisation into reused per-thread buffers (rows dense for oneDNN or padded to the packed
// K for the own kernel), then the int8 product with its epilogue (backend/quant.h).
// Static mode first tries the fused kernels: qlinear through oneDNN's matmul with constant
// attributes (above the size threshold, else the own kernel), qconv2d through oneDNN's
// convolution with constant attributes (or, without oneDNN, mox's direct kernel for few
// taps), channels-last in and out for u8 results. Otherwise (dynamic modes, fallbacks):
// qlinear as one GEMM; qconv2d through oneDNN's int8 convolution + our epilogue, else
// im2col + the GEMM writing NCHW directly. No autograd: results never require grad.
#include "mox/ops/quant.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "mox/backend/quant.h"

namespace mox {

namespace {

void check_cpu(const Tensor& t, const char* op) {
  MOX_CHECK(t.device().type == DeviceType::CPU, op,
            std::string("int8 kernels run on the CPU; got a tensor on ") + t.device().str());
}

void check_params(QParams p, const char* op, const char* what) {
  MOX_CHECK(std::isfinite(p.scale) && p.scale > 0, op,
            std::string(what) + " scale must be positive and finite, got " + std::to_string(p.scale));
  MOX_CHECK(p.zero_point >= 0 && p.zero_point <= 255, op,
            std::string(what) + " zero point must be in [0, 255] for u8, got " + std::to_string(p.zero_point));
}

std::shared_ptr<cpu::QGemmWeights> prepared_of(const QWeight& w) {
  if (w.prepared) return std::static_pointer_cast<cpu::QGemmWeights>(w.prepared);
  const Tensor q = w.q.contiguous();
  const int64_t N = q.size(0);
  return cpu::qgemm_pack_weights(q.data<int8_t>(), N, q.numel() / N, q.numel() / N);
}

void check_qweight(const QWeight& w, const char* op, int64_t dims) {
  MOX_CHECK(w.q.defined() && w.scale.defined(), op, "the QWeight is empty (use make_qweight)");
  check_cpu(w.q, op);
  MOX_CHECK(w.q.dtype() == DType::I8 && w.q.dim() == dims, op,
            "weights must be i8 with " + std::to_string(dims) + " dims, got " + w.q.desc());
  const int64_t N = w.q.size(0);
  MOX_CHECK(w.scale.dtype() == DType::F32 && w.scale.dim() == 1 && w.scale.size(0) == N &&
                w.scale.is_contiguous(),
            op, "weight scales must be contiguous f32 [" + std::to_string(N) + "], got " + w.scale.desc());
  if (w.bias.defined())
    MOX_CHECK(w.bias.dtype() == DType::F32 && w.bias.dim() == 1 && w.bias.size(0) == N &&
                  w.bias.is_contiguous(),
              op, "bias must be contiguous f32 [" + std::to_string(N) + "], got " + w.bias.desc());
}

// A 4-D tensor whose memory is dense channels-last: shape [N, C, H, W], strides
// [H*W*C, 1, W*C, C] (size-1 dims may have any stride). Such tensors come out of
// qconv2d's static oneDNN path (u8 outputs) and are consumed without a layout change.
bool channels_last_dense(const Tensor& t) {
  if (t.dim() != 4) return false;
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  const int64_t expect[4] = {H * W * C, 1, W * C, C};
  for (int d = 0; d < 4; d++)
    if (t.size(d) > 1 && t.stride(d) != expect[d]) return false;
  return true;
}

// Channels-last u8 results of static convolutions (default on; MOX_QCONV_CL=0 turns it off).
std::atomic<bool> g_qconv_cl{[] {
  const char* e = std::getenv("MOX_QCONV_CL");
  return !(e && std::string(e) == "0");
}()};
bool qconv_channels_last_enabled() { return g_qconv_cl.load(std::memory_order_relaxed); }

cpu::QStaticEpilogue static_epilogue(const QWeight& w, const QInput& in, const QOutput& out) {
  cpu::QStaticEpilogue ep;
  ep.a_scale = in.params.scale;
  ep.a_zp = in.params.zero_point;
  ep.w_scale = w.scale.data<float>();
  ep.bias = w.bias.defined() ? w.bias.data<float>() : nullptr;
  ep.relu = out.relu;
  ep.requantize = out.requantize;
  ep.out_scale = out.params.scale;
  ep.out_zp = out.params.zero_point;
  return ep;
}

// Per-thread buffers reused across calls (grown, never shrunk).
struct Buffers {
  std::vector<uint8_t> a, x;
  std::vector<float> scales, scales_img;
  std::vector<uint8_t> pads;
};
Buffers& buffers() {
  thread_local Buffers b;
  return b;
}

// The u8 codes of x, dense in memory (contiguous or channels-last): its own data when it is
// already u8, else x quantised with p element by element in memory order into buf.
const uint8_t* u8_codes(const Tensor& x, const QParams& p, std::vector<uint8_t>& buf) {
  if (x.dtype() == DType::U8) return x.data<uint8_t>();
  const int64_t n = x.numel();
  buf.resize(size_t(n));
  cpu::quantize_rows_u8(x.data<float>(), 1, n, n, p.scale, p.zero_point, buf.data(), n, 0);
  return buf.data();
}

// Quantises F32 rows x [rows, K] into buf [rows, ld] per `in`; fills scale/zp.
// Token mode: per-row scales into `scales` and zero point 128.
void quantize_input(const float* x, int64_t rows, int64_t K, int64_t ld, const QInput& in,
                    uint8_t* buf, std::vector<float>& scales, int32_t& zp, const char* op) {
  if (in.mode == QActMode::DynamicToken) {
    scales.resize(size_t(std::max<int64_t>(rows, 1)));
    cpu::quantize_rows_sym_u8(x, rows, K, K, scales.data(), buf, ld);
    zp = 128;
    return;
  }
  QParams p = in.params;
  if (in.mode == QActMode::DynamicTensor) {
    float mn, mx;
    cpu::minmax_f32(x, rows * K, mn, mx);
    p = choose_qparams_u8(mn, mx);
  } else {
    check_params(p, op, "input");
  }
  scales.assign(1, p.scale);
  zp = p.zero_point;
  cpu::quantize_rows_u8(x, rows, K, K, p.scale, p.zero_point, buf, ld, uint8_t(p.zero_point));
}

}  // namespace

void set_qconv2d_channels_last(bool on) { g_qconv_cl = on; }
bool qconv2d_channels_last() { return g_qconv_cl.load(); }

QParams choose_qparams_u8(float min, float max) {
  MOX_CHECK(!std::isnan(min) && !std::isnan(max), "choose_qparams_u8", "range contains NaN");
  MOX_CHECK(min <= max, "choose_qparams_u8",
            "min " + std::to_string(min) + " is greater than max " + std::to_string(max));
  min = std::min(min, 0.0f);
  max = std::max(max, 0.0f);
  QParams p;
  if (min == 0.0f && max == 0.0f) return p;  // scale 1, zero point 0
  float scale = float((double(max) - double(min)) / 255.0);
  scale = std::max(scale, FLT_EPSILON);
  p.scale = scale;
  const double z = std::nearbyint(-double(min) / double(scale));
  p.zero_point = int32_t(std::clamp(z, 0.0, 255.0));
  return p;
}

Tensor quantize_u8(const Tensor& x, QParams p) {
  check_cpu(x, "quantize_u8");
  check_params(p, "quantize_u8", "");
  MOX_CHECK(x.dtype() == DType::F32, "quantize_u8", "expects f32 input, got " + x.desc());
  const Tensor xc = x.contiguous();
  Tensor q = empty(x.shape(), DType::U8);
  cpu::quantize_rows_u8(xc.data<float>(), 1, xc.numel(), xc.numel(), p.scale, p.zero_point,
                        q.data<uint8_t>(), xc.numel(), 0);
  return q;
}

Tensor dequantize_u8(const Tensor& q, QParams p) {
  check_cpu(q, "dequantize_u8");
  check_params(p, "dequantize_u8", "");
  MOX_CHECK(q.dtype() == DType::U8, "dequantize_u8", "expects u8 input, got " + q.desc());
  const Tensor qc = q.contiguous();
  Tensor y = empty(q.shape(), DType::F32);
  const uint8_t* s = qc.data<uint8_t>();
  float* d = y.data<float>();
  const int64_t n = qc.numel();
  for (int64_t i = 0; i < n; i++) d[i] = float(int32_t(s[i]) - p.zero_point) * p.scale;
  return y;
}

QWeight make_qweight(const Tensor& w_in, const Tensor& bias) {
  const char* op = "make_qweight";
  MOX_CHECK(w_in.defined(), op, "weight is undefined");
  check_cpu(w_in, op);
  MOX_CHECK(is_floating(w_in.dtype()), op, "expects float weights, got " + w_in.desc());
  MOX_CHECK(w_in.dim() == 2 || w_in.dim() == 4, op,
            "expects weights [N, K] or [OC, IC, kh, kw], got " + w_in.desc());
  const Tensor w = w_in.detach().to(DType::F32).contiguous();
  const int64_t N = w.size(0), K = w.numel() / std::max<int64_t>(N, 1);
  MOX_CHECK(N > 0 && K > 0, op, "weights must not be empty, got " + w.desc());
  Tensor q = empty(w.shape(), DType::I8);
  Tensor scale = empty({N}, DType::F32);
  const float* src = w.data<float>();
  int8_t* qd = q.data<int8_t>();
  float* sd = scale.data<float>();
  for (int64_t n = 0; n < N; n++) {
    float am = 0;
    for (int64_t k = 0; k < K; k++) am = std::max(am, std::fabs(src[n * K + k]));
    const float s = am > 0 ? am / 127.0f : 1.0f;
    sd[n] = s;
    for (int64_t k = 0; k < K; k++) {
      const float v = std::nearbyint(src[n * K + k] / s);
      qd[n * K + k] = int8_t(std::clamp(v, -127.0f, 127.0f));
    }
  }
  Tensor b;
  if (bias.defined()) {
    check_cpu(bias, op);
    MOX_CHECK(is_floating(bias.dtype()) && bias.dim() == 1 && bias.size(0) == N, op,
              "bias must be float [" + std::to_string(N) + "], got " + bias.desc());
    b = bias.detach().to(DType::F32).contiguous();
  }
  return make_qweight_from_int8(q, scale, b);
}

QWeight make_qweight_from_int8(const Tensor& q, const Tensor& scale, const Tensor& bias) {
  const char* op = "make_qweight_from_int8";
  MOX_CHECK(q.defined() && scale.defined(), op, "weights and scales must be defined");
  check_cpu(q, op);
  check_cpu(scale, op);
  MOX_CHECK(q.dtype() == DType::I8, op, "weights must be i8, got " + q.desc());
  MOX_CHECK(q.dim() == 2 || q.dim() == 4, op, "weights must be [N, K] or [OC, IC, kh, kw], got " + q.desc());
  const int64_t N = q.size(0);
  MOX_CHECK(N > 0 && q.numel() > 0, op, "weights must not be empty, got " + q.desc());
  MOX_CHECK(scale.dtype() == DType::F32 && scale.dim() == 1 && scale.size(0) == N, op,
            "scales must be f32 [" + std::to_string(N) + "] for weights " + q.desc() + ", got " + scale.desc());
  QWeight w;
  w.q = q.contiguous();
  w.scale = scale.contiguous();
  {
    const float* s = w.scale.data<float>();
    for (int64_t n = 0; n < N; n++)
      MOX_CHECK(std::isfinite(s[n]) && s[n] > 0, op,
                "scale " + std::to_string(n) + " is " + std::to_string(s[n]) + " (must be positive)");
  }
  if (bias.defined()) {
    check_cpu(bias, op);
    MOX_CHECK(bias.dtype() == DType::F32 && bias.dim() == 1 && bias.size(0) == N, op,
              "bias must be f32 [" + std::to_string(N) + "] for weights " + q.desc() + ", got " + bias.desc());
    w.bias = bias.contiguous();
  }
  const int64_t K = w.q.numel() / N;
  w.prepared = cpu::qgemm_pack_weights(w.q.data<int8_t>(), N, K, K);
  return w;
}

Tensor qlinear(const Tensor& x, const QWeight& w, const QInput& in, const QOutput& out) {
  const char* op = "qlinear";
  MOX_CHECK(x.defined(), op, "input is undefined");
  check_cpu(x, op);
  check_qweight(w, op, 2);
  const int64_t N = w.q.size(0), K = w.q.size(1);
  MOX_CHECK(x.dim() >= 1 && x.size(-1) == K, op,
            "input " + x.desc() + " does not match weights " + w.q.desc() + " (last dim must be " +
                std::to_string(K) + ")");
  MOX_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::U8, op,
            "input must be f32 or u8, got " + x.desc());
  if (x.dtype() == DType::U8) {
    MOX_CHECK(in.mode == QActMode::Static, op, "a u8 input needs QActMode::Static with its (scale, zero_point)");
    check_params(in.params, op, "input");
  }
  if (out.requantize) check_params(out.params, op, "output");
  const auto pw = prepared_of(w);
  MOX_CHECK(pw->N == N && pw->K == K, op, "the QWeight's prepared data does not match its weights");

  Shape os = x.shape();
  os.back() = N;
  Tensor y = empty(os, out.requantize ? DType::U8 : DType::F32);
  const int64_t M = x.numel() / K;
  if (M == 0) return y;
  const Tensor xc = x.contiguous();
  Buffers& B = buffers();
  if (in.mode == QActMode::Static && x.dtype() == DType::F32) check_params(in.params, op, "input");
  if (in.mode == QActMode::Static && cpu::int8_dnnl_enabled()) {
    // Static: the whole epilogue fused into oneDNN's primitive (dense u8 rows in).
    const uint8_t* ap = u8_codes(xc, in.params, B.a);
    if (cpu::qlinear_dnnl_static(M, ap, *pw, static_epilogue(w, in, out), y.raw_data())) return y;
    if (x.dtype() == DType::F32) {
      // below oneDNN's size threshold: the own kernel on the rows just quantised
      cpu::QGemmEpilogue ep;
      B.scales.assign(1, in.params.scale);
      ep.a_scale = B.scales.data();
      ep.a_zp = in.params.zero_point;
      ep.w_scale = w.scale.data<float>();
      ep.bias = w.bias.defined() ? w.bias.data<float>() : nullptr;
      ep.relu = out.relu;
      ep.requantize = out.requantize;
      ep.out_scale = out.params.scale;
      ep.out_zp = out.params.zero_point;
      cpu::qgemm_u8s8(1, M, ap, K, 0, *pw, ep, y.raw_data(), N, 1, 0);
      return y;
    }
  }
  const int64_t ld = cpu::qgemm_wants_dense(*pw, M) ? K : pw->Kp;
  B.a.resize(size_t(M * ld));
  int32_t zp = 0;
  const uint8_t* ap = B.a.data();
  if (x.dtype() == DType::U8 && ld == K) {
    ap = xc.data<uint8_t>();  // already in the layout the kernel wants
    B.scales.assign(1, in.params.scale);
    zp = in.params.zero_point;
  } else if (x.dtype() == DType::U8) {
    const uint8_t* s = xc.data<uint8_t>();
    for (int64_t m = 0; m < M; m++) {
      std::copy(s + m * K, s + (m + 1) * K, B.a.data() + m * ld);
      std::fill(B.a.data() + m * ld + K, B.a.data() + (m + 1) * ld, uint8_t(in.params.zero_point));
    }
    B.scales.assign(1, in.params.scale);
    zp = in.params.zero_point;
  } else {
    quantize_input(xc.data<float>(), M, K, ld, in, B.a.data(), B.scales, zp, op);
  }
  cpu::QGemmEpilogue ep;
  ep.a_scale = B.scales.data();
  ep.a_scale_per_row = in.mode == QActMode::DynamicToken && x.dtype() == DType::F32;
  ep.a_zp = zp;
  ep.w_scale = w.scale.data<float>();
  ep.bias = w.bias.defined() ? w.bias.data<float>() : nullptr;
  ep.relu = out.relu;
  ep.requantize = out.requantize;
  ep.out_scale = out.params.scale;
  ep.out_zp = out.params.zero_point;
  cpu::qgemm_u8s8(1, M, ap, ld, 0, *pw, ep, y.raw_data(), N, 1, 0);
  return y;
}

Tensor qconv2d(const Tensor& x, const QWeight& w, std::array<int64_t, 2> stride,
               std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation, const QInput& in,
               const QOutput& out) {
  const char* op = "qconv2d";
  MOX_CHECK(x.defined(), op, "input is undefined");
  check_cpu(x, op);
  check_qweight(w, op, 4);
  MOX_CHECK(x.dim() == 4, op, "input must be [N, C, H, W], got " + x.desc());
  MOX_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::U8, op,
            "input must be f32 or u8, got " + x.desc());
  const int64_t Nb = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OC = w.q.size(0), IC = w.q.size(1), kh = w.q.size(2), kw = w.q.size(3);
  MOX_CHECK(C == IC, op, "input " + x.desc() + " has " + std::to_string(C) + " channels, weights " +
                             w.q.desc() + " expect " + std::to_string(IC) + " (groups = 1)");
  for (int i = 0; i < 2; i++) {
    MOX_CHECK(stride[i] > 0 && dilation[i] > 0 && padding[i] >= 0, op,
              "stride and dilation must be positive and padding non-negative");
  }
  const int64_t OH = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const int64_t OW = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  MOX_CHECK(H + 2 * padding[0] - dilation[0] * (kh - 1) - 1 >= 0 &&
                W + 2 * padding[1] - dilation[1] * (kw - 1) - 1 >= 0 && OH > 0 && OW > 0,
            op, "input " + x.desc() + " is smaller than the (dilated) kernel " + w.q.desc());
  if (x.dtype() == DType::U8) {
    MOX_CHECK(in.mode == QActMode::Static, op, "a u8 input needs QActMode::Static with its (scale, zero_point)");
    check_params(in.params, op, "input");
  }
  if (out.requantize) check_params(out.params, op, "output");
  const auto pw = prepared_of(w);
  const int64_t K = IC * kh * kw;
  MOX_CHECK(pw->N == OC && pw->K == K, op, "the QWeight's prepared data does not match its weights");

  if (Nb == 0) return empty({Nb, OC, OH, OW}, out.requantize ? DType::U8 : DType::F32);
  const int64_t P = OH * OW, img = C * H * W;
  Buffers& B = buffers();
  if (in.mode == QActMode::Static && x.dtype() == DType::F32) check_params(in.params, op, "input");
  if (in.mode == QActMode::Static) {
    // Static: the epilogue fused into the kernel, channels-last in and out. A channels-last
    // input (the previous quantised conv's output, pooled or not) is used as it is; a u8
    // output is returned channels-last (a strided [N, OC, OH, OW] view, see ops/quant.h).
    // oneDNN's convolution when built in (brgconv AMX / VNNI kernels); without it (or if it
    // declines), few taps (a 1-channel first layer) go to mox's direct kernel, which
    // quantises an f32 input on the fly (measured at batch 256 for the CNN's 1->32 3x3
    // layer: 1.25 ms against oneDNN's 0.82 ms, but far ahead of im2col + the own GEMM,
    // whose K pads 9 taps to 64).
    const bool cl = channels_last_dense(x);
    const Tensor xs = cl || x.is_contiguous() ? x : x.contiguous();
    const bool cl_out = out.requantize && qconv_channels_last_enabled();
    Tensor ys = cl_out ? empty({Nb, OH, OW, OC}, DType::U8).permute({0, 3, 1, 2})
                       : empty({Nb, OC, OH, OW}, out.requantize ? DType::U8 : DType::F32);
    const cpu::QStaticEpilogue sep = static_epilogue(w, in, out);
    if (cpu::int8_dnnl_enabled()) {
      const uint8_t* xq = u8_codes(xs, in.params, B.x);  // memory order: the layout is kept
      if (cpu::qconv2d_dnnl_static(xq, cl, Nb, C, H, W, *pw, kh, kw, stride[0], stride[1], padding[0],
                                   padding[1], dilation[0], dilation[1], OH, OW, sep, cl_out, ys.raw_data()))
        return ys;
    }
    if (cpu::qconv2d_small_static(xs.raw_data(), x.dtype() == DType::F32, cl, Nb, C, H, W, *pw, kh, kw,
                                  stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
                                  OH, OW, sep, cl_out, ys.raw_data()))
      return ys;
  }
  Tensor y = empty({Nb, OC, OH, OW}, out.requantize ? DType::U8 : DType::F32);
  const int64_t ld = pw->Kp;  // the own kernel's layout (oneDNN convolves x directly)
  const Tensor xc = x.contiguous();
  int32_t zp = 0;
  const uint8_t* xq = nullptr;
  B.pads.resize(size_t(Nb));
  bool per_row = false;
  if (x.dtype() == DType::U8) {
    xq = xc.data<uint8_t>();
    zp = in.params.zero_point;
    B.scales.assign(1, in.params.scale);
  } else {
    B.x.resize(size_t(Nb * img));
    std::vector<float>& sc = B.scales;
    if (in.mode == QActMode::DynamicToken) {
      // Symmetric per image (each image one "row" of C*H*W values); every output pixel of
      // image b then has that image's scale.
      std::vector<float>& per_img = B.scales_img;
      per_img.resize(size_t(Nb));
      cpu::quantize_rows_sym_u8(xc.data<float>(), Nb, img, img, per_img.data(), B.x.data(), img);
      sc.resize(size_t(Nb * P));
      for (int64_t b = 0; b < Nb; b++) std::fill(sc.begin() + b * P, sc.begin() + (b + 1) * P, per_img[size_t(b)]);
      zp = 128;
      per_row = true;
    } else {
      quantize_input(xc.data<float>(), Nb, img, img, in, B.x.data(), sc, zp, op);
    }
    xq = B.x.data();
  }
  std::fill(B.pads.begin(), B.pads.end(), uint8_t(zp));
  cpu::QGemmEpilogue ep;
  ep.a_scale = B.scales.data();
  ep.a_scale_per_row = per_row;
  ep.a_zp = zp;
  ep.w_scale = w.scale.data<float>();
  ep.bias = w.bias.defined() ? w.bias.data<float>() : nullptr;
  ep.relu = out.relu;
  ep.requantize = out.requantize;
  ep.out_scale = out.params.scale;
  ep.out_zp = out.params.zero_point;
  {
    // oneDNN's convolution primitive; per-image scales (DynamicToken) passed one per image
    cpu::QGemmEpilogue ed = ep;
    if (per_row) ed.a_scale = B.scales_img.data();
    if (cpu::qconv2d_dnnl_direct(xq, Nb, C, H, W, *pw, kh, kw, stride[0], stride[1], padding[0],
                                 padding[1], dilation[0], dilation[1], OH, OW, ed, y.raw_data()))
      return y;
  }
  B.a.resize(size_t(Nb * P * ld));
  cpu::im2col_u8(xq, Nb, C, H, W, kh, kw, stride[0], stride[1], padding[0], padding[1], dilation[0],
                 dilation[1], OH, OW, B.pads.data(), B.a.data(), ld);
  cpu::qgemm_u8s8(Nb, P, B.a.data(), ld, P * ld, *pw, ep, y.raw_data(), 1, P, OC * P);
  return y;
}

}  // namespace mox
