// Max and average 2-D pooling over the last two dimensions (planes, H, W), forward and
// backward, f32/f64. Threads split the planes; max pooling records the argmax of each window
// (as h*W+w) for its backward pass.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "mox/backend/cpu/conv_internal.h"
#include "mox/backend/cpu/loops.h"

namespace mox {

namespace {

struct PoolGeom {
  int64_t planes, H, W, Ho, Wo;
};
PoolGeom pool_geometry(const Tensor& x, const Tensor& y) {
  int64_t nd = x.dim();
  PoolGeom g;
  g.H = x.size(nd - 2), g.W = x.size(nd - 1);
  g.Ho = y.size(nd - 2), g.Wo = y.size(nd - 1);
  g.planes = g.H * g.W == 0 ? 0 : x.numel() / (g.H * g.W);
  return g;
}

// x (planes,H,W) -> y (planes,Ho,Wo), idx (planes,Ho,Wo) = argmax as h*W+w
template <typename T>
void max_pool_forward(const Tensor& x, const Tensor& y, const Tensor& indices,
                      const Pool2dParams& p) {
  PoolGeom g = pool_geometry(x, y);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  int64_t* id = indices.defined() ? indices.data<int64_t>() : nullptr;
  int nt = cpu::threads_for(g.planes * g.Ho * g.Wo * p.kh * p.kw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    const T* xp = xd + pl * g.H * g.W;
    for (int64_t oh = 0; oh < g.Ho; oh++) {
      int64_t h0 = oh * p.stride_h - p.pad_h;
      int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, g.H);
      for (int64_t ow = 0; ow < g.Wo; ow++) {
        int64_t w0 = ow * p.stride_w - p.pad_w;
        int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + p.kw, g.W);
        // Padding counts as -inf, so only in-image taps compete; NaN wins like in PyTorch.
        T best = -std::numeric_limits<T>::infinity();
        int64_t arg = hs * g.W + ws;
        for (int64_t h = hs; h < he; h++)
          for (int64_t w = ws; w < we; w++) {
            T v = xp[h * g.W + w];
            if (v > best || std::isnan(v)) {
              best = v;
              arg = h * g.W + w;
              if (std::isnan(v)) goto done;
            }
          }
      done:
        int64_t o = (pl * g.Ho + oh) * g.Wo + ow;
        yd[o] = best;
        if (id) id[o] = arg;
      }
    }
  }
}

template <typename T>
void max_pool_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  PoolGeom g = pool_geometry(gx, gy);
  const T* gyd = gy.data<T>();
  const int64_t* id = indices.data<int64_t>();
  T* gxd = gx.data<T>();
  const int64_t HW = g.H * g.W, P = g.Ho * g.Wo;
  int nt = cpu::threads_for(g.planes * (HW + P));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    T* gp = gxd + pl * HW;
    std::fill(gp, gp + HW, T(0));
    for (int64_t i = 0; i < P; i++) gp[id[pl * P + i]] += gyd[pl * P + i];
  }
}

// Window of output (oh, ow) clipped to the image, and the divisor PyTorch uses.
struct AvgWindow {
  int64_t hs, he, ws, we, div;
};
inline AvgWindow avg_window(int64_t oh, int64_t ow, const PoolGeom& g, const Pool2dParams& p) {
  int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
  int64_t he = std::min(hs + p.kh, g.H + p.pad_h), we = std::min(ws + p.kw, g.W + p.pad_w);
  int64_t pool = (he - hs) * (we - ws);  // includes padding, not the ceil_mode overhang
  hs = std::max<int64_t>(hs, 0), ws = std::max<int64_t>(ws, 0);
  he = std::min(he, g.H), we = std::min(we, g.W);
  int64_t div = p.count_include_pad ? pool : (he - hs) * (we - ws);
  return {hs, he, ws, we, div};
}

template <typename T>
void avg_pool_forward(const Tensor& x, const Tensor& y, const Pool2dParams& p) {
  PoolGeom g = pool_geometry(x, y);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  int nt = cpu::threads_for(g.planes * g.Ho * g.Wo * p.kh * p.kw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    const T* xp = xd + pl * g.H * g.W;
    for (int64_t oh = 0; oh < g.Ho; oh++)
      for (int64_t ow = 0; ow < g.Wo; ow++) {
        AvgWindow a = avg_window(oh, ow, g, p);
        T s = 0;
        for (int64_t h = a.hs; h < a.he; h++)
          for (int64_t w = a.ws; w < a.we; w++) s += xp[h * g.W + w];
        yd[(pl * g.Ho + oh) * g.Wo + ow] = a.hs >= a.he || a.ws >= a.we ? T(0) : s / T(a.div);
      }
  }
}

template <typename T>
void avg_pool_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) {
  PoolGeom g = pool_geometry(gx, gy);
  const T* gyd = gy.data<T>();
  T* gxd = gx.data<T>();
  int nt = cpu::threads_for(g.planes * g.Ho * g.Wo * p.kh * p.kw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t pl = 0; pl < g.planes; pl++) {
    T* gp = gxd + pl * g.H * g.W;
    std::fill(gp, gp + g.H * g.W, T(0));
    for (int64_t oh = 0; oh < g.Ho; oh++)
      for (int64_t ow = 0; ow < g.Wo; ow++) {
        AvgWindow a = avg_window(oh, ow, g, p);
        if (a.hs >= a.he || a.ws >= a.we) continue;
        T v = gyd[(pl * g.Ho + oh) * g.Wo + ow] / T(a.div);
        for (int64_t h = a.hs; h < a.he; h++)
          for (int64_t w = a.ws; w < a.we; w++) gp[h * g.W + w] += v;
      }
  }
}

}  // namespace

using cpu::conv::check_contig;
using cpu::conv::check_float;

void CpuBackend::max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices,
                            const Pool2dParams& p) {
  check_float(x, "max_pool2d");
  check_contig(x, "max_pool2d", "input");
  if (x.dtype() == DType::F32)
    max_pool_forward<float>(x, out, indices, p);
  else
    max_pool_forward<double>(x, out, indices, p);
}

void CpuBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  check_float(gy, "max_pool2d_backward");
  check_contig(gy, "max_pool2d_backward", "gradient");
  check_contig(indices, "max_pool2d_backward", "indices");
  if (gy.dtype() == DType::F32)
    max_pool_backward<float>(gy, indices, gx);
  else
    max_pool_backward<double>(gy, indices, gx);
}

void CpuBackend::avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p) {
  check_float(x, "avg_pool2d");
  check_contig(x, "avg_pool2d", "input");
  if (x.dtype() == DType::F32)
    avg_pool_forward<float>(x, out, p);
  else
    avg_pool_forward<double>(x, out, p);
}

void CpuBackend::avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) {
  check_float(gy, "avg_pool2d_backward");
  check_contig(gy, "avg_pool2d_backward", "gradient");
  if (gy.dtype() == DType::F32)
    avg_pool_backward<float>(gy, gx, p);
  else
    avg_pool_backward<double>(gy, gx, p);
}

}  // namespace mox
