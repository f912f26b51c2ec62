// CUDA vs CPU parity for cuda_conv.cu: cuDNN convolutions (groups, stride, padding,
// dilation, bias, fused ReLU; forward and every gradient, with and without relu_out) and
// max/avg pooling forward and backward (padding, ceil_mode, count_include_pad, overlapping
// windows). bf16/f16 inputs are compared with the CPU computed in f32 on the same rounded
// values.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "mox/tensor/generator.h"

namespace mox::testing {
namespace {

Backend& cpu_be() { return backend_for(kCPU); }
Backend& gpu_be() { return backend_for(kCUDA); }

struct Pair {
  Tensor ref, dev;
};
DType ref_dtype(DType dt) { return dt == DType::F64 ? DType::F64 : DType::F32; }
Pair pair_of(const Tensor& host, DType dt) {
  Tensor t = host.to(dt);
  return {t.to(ref_dtype(dt)).contiguous(), t.to(kCUDA).contiguous()};
}
Pair randn_pair(const Shape& s, DType dt, uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  return pair_of(randn(s, &g, TensorOptions(DType::F64)) * scale, dt);
}
Tensor dev_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt, kCUDA)); }
Tensor cpu_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt)); }

struct ConvCase {
  int64_t N, C, H, W, O, kh, kw;
  Conv2dParams p;
};

Conv2dParams cp(int64_t s, int64_t pad, int64_t dil, int64_t groups, int64_t sw = -1,
                int64_t pw = -1) {
  Conv2dParams p;
  p.stride_h = s, p.stride_w = sw < 0 ? s : sw;
  p.pad_h = pad, p.pad_w = pw < 0 ? pad : pw;
  p.dil_h = p.dil_w = dil;
  p.groups = groups;
  return p;
}

const ConvCase kConvs[] = {
    {2, 3, 17, 19, 8, 3, 3, cp(1, 1, 1, 1)},      // padded 3x3
    {3, 4, 12, 10, 6, 3, 3, cp(2, 0, 1, 1)},      // strided
    {2, 6, 15, 13, 9, 3, 3, cp(1, 2, 2, 3)},      // grouped + dilated
    {2, 8, 9, 9, 8, 3, 3, cp(1, 1, 1, 8)},        // depthwise
    {4, 16, 7, 7, 32, 1, 1, cp(1, 0, 1, 1)},      // pointwise
    {1, 5, 21, 18, 7, 5, 3, cp(2, 2, 1, 1, 1, 1)},  // rectangular kernel, mixed stride
    {2, 1, 28, 28, 6, 5, 5, cp(1, 0, 1, 1)},      // first layer of a small CNN
    {1, 4, 11, 11, 4, 2, 2, cp(3, 1, 2, 2)},
};

Shape conv_out(const ConvCase& c) {
  const Conv2dParams& p = c.p;
  int64_t Ho = (c.H + 2 * p.pad_h - p.dil_h * (c.kh - 1) - 1) / p.stride_h + 1;
  int64_t Wo = (c.W + 2 * p.pad_w - p.dil_w * (c.kw - 1) - 1) / p.stride_w + 1;
  return {c.N, c.O, Ho, Wo};
}

std::string conv_name(const ConvCase& c, DType dt) {
  return std::string(dtype_name(dt)) + " x[" + std::to_string(c.N) + "," + std::to_string(c.C) +
         "," + std::to_string(c.H) + "," + std::to_string(c.W) + "] w[" + std::to_string(c.O) +
         "," + std::to_string(c.C / c.p.groups) + "," + std::to_string(c.kh) + "," +
         std::to_string(c.kw) + "] s" + std::to_string(c.p.stride_h) + "x" +
         std::to_string(c.p.stride_w) + " p" + std::to_string(c.p.pad_h) + "x" +
         std::to_string(c.p.pad_w) + " d" + std::to_string(c.p.dil_h) + " g" +
         std::to_string(c.p.groups);
}

const DType kDtypes[] = {DType::F32, DType::F64, DType::BF16, DType::F16};

TEST(CudaConv, Forward) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 1;
  for (DType dt : kDtypes)
    for (const ConvCase& c : kConvs)
      for (int variant = 0; variant < 3; variant++) {  // 0: no bias, 1: bias, 2: bias + relu
        SCOPED_TRACE(conv_name(c, dt) + " variant " + std::to_string(variant));
        Pair x = randn_pair({c.N, c.C, c.H, c.W}, dt, seed++);
        Pair w = randn_pair({c.O, c.C / c.p.groups, c.kh, c.kw}, dt, seed++, 0.3);
        Pair b = randn_pair({c.O}, dt, seed++);
        Conv2dParams p = c.p;
        p.relu = variant == 2;
        const Shape ys = conv_out(c);
        Tensor ref = cpu_empty(ys, x.ref.dtype());
        cpu_be().conv2d(x.ref, w.ref, variant ? b.ref : Tensor(), ref, p);
        Tensor out = dev_empty(ys, dt);
        gpu_be().conv2d(x.dev, w.dev, variant ? b.dev : Tensor(), out, p);
        EXPECT_PARITY(out, ref, dt);
      }
}

TEST(CudaConv, Backward) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 100;
  for (DType dt : kDtypes)
    for (const ConvCase& c : kConvs)
      for (bool relu : {false, true})
        for (int need = 1; need < 8; need += (relu ? 6 : 1)) {  // bits gx, gw, gb
          SCOPED_TRACE(conv_name(c, dt) + (relu ? " relu_out" : "") + " need " +
                       std::to_string(need));
          Pair x = randn_pair({c.N, c.C, c.H, c.W}, dt, seed++);
          Pair w = randn_pair({c.O, c.C / c.p.groups, c.kh, c.kw}, dt, seed++, 0.3);
          const Shape ys = conv_out(c);
          Pair gy = randn_pair(ys, dt, seed++);
          const DType rt = x.ref.dtype();
          Conv2dParams p = c.p;
          Pair yr;  // relu_out: a real fused-ReLU forward output (from the CPU, rounded)
          if (relu) {
            Pair b = randn_pair({c.O}, dt, seed++);
            Tensor y = cpu_empty(ys, rt);
            Conv2dParams pf = p;
            pf.relu = true;
            cpu_be().conv2d(x.ref, w.ref, b.ref, y, pf);
            yr = pair_of(y, dt);
          }
          Tensor gxr = need & 1 ? cpu_empty({c.N, c.C, c.H, c.W}, rt) : Tensor();
          Tensor gwr = need & 2 ? cpu_empty(w.ref.shape(), rt) : Tensor();
          Tensor gbr = need & 4 ? cpu_empty({c.O}, rt) : Tensor();
          cpu_be().conv2d_backward(x.ref, w.ref, gy.ref, gxr, gwr, gbr, p, yr.ref);
          Tensor gxd = need & 1 ? dev_empty({c.N, c.C, c.H, c.W}, dt) : Tensor();
          Tensor gwd = need & 2 ? dev_empty(w.ref.shape(), dt) : Tensor();
          Tensor gbd = need & 4 ? dev_empty({c.O}, dt) : Tensor();
          gpu_be().conv2d_backward(x.dev, w.dev, gy.dev, gxd, gwd, gbd, p, yr.dev);
          if (need & 1) EXPECT_PARITY(gxd, gxr, dt);
          if (need & 2) EXPECT_PARITY(gwd, gwr, dt);
          if (need & 4) EXPECT_PARITY(gbd, gbr, dt);
        }
}

TEST(CudaConv, ThroughOps) {
  MOX_REQUIRE_CUDA();
  // conv2d + relu + max pool through the public ops, forward and backward.
  Generator g(9);
  Tensor x = randn({4, 3, 16, 16}, &g), w = randn({8, 3, 3, 3}, &g) * 0.3, b = randn({8}, &g);
  Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  Pool2dParams pp;
  auto run = [&](Device d, Tensor& gx, Tensor& gw, Tensor& gb) {
    Tensor xd = x.to(d).requires_grad_(), wd = w.to(d).requires_grad_(), bd = b.to(d).requires_grad_();
    Tensor y = max_pool2d(relu(conv2d(xd, wd, bd, p)), pp);
    sum(y * y).backward();
    gx = xd.grad(), gw = wd.grad(), gb = bd.grad();
    return y;
  };
  Tensor gxc, gwc, gbc, gxd, gwd, gbd;
  Tensor yc = run(kCPU, gxc, gwc, gbc);
  Tensor yd = run(kCUDA, gxd, gwd, gbd);
  EXPECT_PARITY(yd, yc, DType::F32);
  EXPECT_PARITY(gxd, gxc, DType::F32);
  EXPECT_PARITY(gwd, gwc, DType::F32);
  EXPECT_PARITY(gbd, gbc, DType::F32);
}

// ---- pooling ----

int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t pad, bool ceil_mode) {
  int64_t num = in + 2 * pad - (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil_mode && (out - 1) * s >= in + pad) out--;
  return out;
}

struct PoolCase {
  int64_t N, C, H, W;
  Pool2dParams p;
};
Pool2dParams pp(int64_t k, int64_t s, int64_t pad, bool ceil_mode, bool cip = true,
                int64_t kw = -1) {
  Pool2dParams p;
  p.kh = k, p.kw = kw < 0 ? k : kw;
  p.stride_h = p.stride_w = s;
  p.pad_h = p.pad_w = pad;
  p.ceil_mode = ceil_mode;
  p.count_include_pad = cip;
  return p;
}
const PoolCase kPools[] = {
    {2, 3, 8, 8, pp(2, 2, 0, false)},       {2, 3, 9, 11, pp(2, 2, 0, false)},
    {2, 3, 9, 11, pp(2, 2, 0, true)},       {1, 4, 13, 13, pp(3, 2, 1, false)},
    {1, 4, 13, 14, pp(3, 2, 1, true)},      {2, 2, 10, 7, pp(3, 1, 1, false)},  // overlapping
    {3, 2, 17, 15, pp(3, 3, 1, true, false)}, {2, 5, 7, 9, pp(2, 1, 0, false, true, 3)},
    {1, 2, 6, 6, pp(4, 3, 2, true, false)},
};

Shape pool_shape(const PoolCase& c) {
  return {c.N, c.C, pool_out(c.H, c.p.kh, c.p.stride_h, c.p.pad_h, c.p.ceil_mode),
          pool_out(c.W, c.p.kw, c.p.stride_w, c.p.pad_w, c.p.ceil_mode)};
}
std::string pool_name(const PoolCase& c, DType dt) {
  return std::string(dtype_name(dt)) + " [" + std::to_string(c.H) + "x" + std::to_string(c.W) +
         "] k" + std::to_string(c.p.kh) + "x" + std::to_string(c.p.kw) + " s" +
         std::to_string(c.p.stride_h) + " p" + std::to_string(c.p.pad_h) +
         (c.p.ceil_mode ? " ceil" : "") + (c.p.count_include_pad ? " cip" : "");
}

TEST(CudaPool, MaxPool) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 300;
  for (DType dt : kDtypes)
    for (const PoolCase& c : kPools) {
      SCOPED_TRACE(pool_name(c, dt));
      // Few distinct values (ties) as well as random ones.
      for (int ties = 0; ties < 2; ties++) {
        Generator g(seed++);
        Tensor h = randn({c.N, c.C, c.H, c.W}, &g, TensorOptions(DType::F64));
        if (ties) h = floor(h * 2.0);
        Pair x = pair_of(h, dt);
        const Shape ys = pool_shape(c);
        Tensor ref = cpu_empty(ys, x.ref.dtype()), ir = cpu_empty(ys, DType::I64);
        cpu_be().max_pool2d(x.ref, ref, ir, c.p);
        Tensor out = dev_empty(ys, dt), id = dev_empty(ys, DType::I64);
        gpu_be().max_pool2d(x.dev, out, id, c.p);
        EXPECT_PARITY(out, ref, dt);
        EXPECT_EQ(id.to(kCPU).to_vector<int64_t>(), ir.to_vector<int64_t>());
        // Backward from the same indices.
        Pair gy = randn_pair(ys, dt, seed++);
        Tensor gxr = cpu_empty({c.N, c.C, c.H, c.W}, x.ref.dtype());
        cpu_be().max_pool2d_backward(gy.ref, ir, gxr);
        Tensor gxd = dev_empty({c.N, c.C, c.H, c.W}, dt);
        gxd.fill_(123.0);  // must be overwritten
        gpu_be().max_pool2d_backward(gy.dev, id, gxd);
        EXPECT_PARITY(gxd, gxr, dt);
      }
    }
}

TEST(CudaPool, MaxPoolNaN) {
  MOX_REQUIRE_CUDA();
  std::vector<float> v(2 * 8 * 8);
  for (size_t i = 0; i < v.size(); i++) v[i] = float(int(i * 37 % 11)) - 5.0f;
  v[9] = NAN;
  v[70] = NAN;
  Tensor x = from_vector(v, {1, 2, 8, 8});
  Pool2dParams p = pp(3, 2, 1, true);
  Shape ys = {1, 2, pool_out(8, 3, 2, 1, true), pool_out(8, 3, 2, 1, true)};
  Tensor ref = cpu_empty(ys, DType::F32), ir = cpu_empty(ys, DType::I64);
  cpu_be().max_pool2d(x, ref, ir, p);
  Tensor out = dev_empty(ys, DType::F32), id = dev_empty(ys, DType::I64);
  gpu_be().max_pool2d(x.to(kCUDA), out, id, p);
  EXPECT_EQ(id.to(kCPU).to_vector<int64_t>(), ir.to_vector<int64_t>());
  auto a = out.to(kCPU).to_vector<float>(), b = ref.to_vector<float>();
  for (size_t i = 0; i < a.size(); i++) {
    EXPECT_EQ(std::isnan(a[i]), std::isnan(b[i])) << i;
    if (!std::isnan(b[i])) {
      EXPECT_EQ(a[i], b[i]) << i;
    }
  }
}

TEST(CudaPool, AvgPool) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 500;
  for (DType dt : kDtypes)
    for (const PoolCase& c : kPools)
      for (bool cip : {true, false}) {
        PoolCase cc = c;
        cc.p.count_include_pad = cip;
        SCOPED_TRACE(pool_name(cc, dt));
        Pair x = randn_pair({c.N, c.C, c.H, c.W}, dt, seed++);
        const Shape ys = pool_shape(cc);
        Tensor ref = cpu_empty(ys, x.ref.dtype());
        cpu_be().avg_pool2d(x.ref, ref, cc.p);
        Tensor out = dev_empty(ys, dt);
        gpu_be().avg_pool2d(x.dev, out, cc.p);
        EXPECT_PARITY(out, ref, dt);
        Pair gy = randn_pair(ys, dt, seed++);
        Tensor gxr = cpu_empty({c.N, c.C, c.H, c.W}, x.ref.dtype());
        cpu_be().avg_pool2d_backward(gy.ref, gxr, cc.p);
        Tensor gxd = dev_empty({c.N, c.C, c.H, c.W}, dt);
        gxd.fill_(-7.0);
        gpu_be().avg_pool2d_backward(gy.dev, gxd, cc.p);
        EXPECT_PARITY(gxd, gxr, dt);
      }
}

}  // namespace
}  // namespace mox::testing
