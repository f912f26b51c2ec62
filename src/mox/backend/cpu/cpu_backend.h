#pragma once
// The CPU backend: OpenBLAS for GEMM, OpenMP across cores, kernels vectorised per
// instruction set at run time (see simd.h). Methods are spread over files by family:
// cpu_memory.cpp (copy, fill, random), cpu_elementwise.cpp, cpu_reduce.cpp, cpu_gemm.cpp,
// cpu_conv.cpp (conv: im2col + GEMM), cpu_winograd.cpp (3x3 conv, Winograd F(2x2,3x3)),
// cpu_pool.cpp (pooling), cpu_norm.cpp (softmax, layer norm, cross-entropy),
// cpu_index.cpp (index_select/add, gather/scatter), cpu_optim.cpp.
#include "mox/backend/backend.h"

namespace mox {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return kCPU; }
  Allocator& allocator() override;

  void copy(const Tensor& src, const Tensor& dst) override;
  void copy_from_host(const void* src, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, void* dst) override;
  void fill(const Tensor& dst, double value) override;
  void arange(const Tensor& dst, double start, double step) override;
  void uniform(const Tensor& dst, double lo, double hi, Generator& g) override;
  void normal(const Tensor& dst, double mean, double std, Generator& g) override;
  void bernoulli(const Tensor& dst, double p, Generator& g) override;
  void randint(const Tensor& dst, int64_t lo, int64_t hi, Generator& g) override;

  void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                      const Tensor& gx, UnaryParams p) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;

  void reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes,
              const Tensor& out) override;
  void reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& out,
                  const Tensor& indices) override;

  void gemm(const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb, double alpha,
            double beta) override;

  void conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out,
              const Conv2dParams& p) override;
  void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy, const Tensor& gx,
                       const Tensor& gw, const Tensor& gb, const Conv2dParams& p,
                       const Tensor& relu_out = Tensor()) override;
  bool conv2d_relu_pool2_supported(const Tensor& x, const Tensor& w,
                                   const Conv2dParams& p) override;
  void conv2d_relu_pool2(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out,
                         const Tensor& indices, const Conv2dParams& p) override;
  void conv2d_relu_pool2_backward(const Tensor& x, const Tensor& w, const Tensor& out, const Tensor& indices,
                                  const Tensor& gy, const Tensor& gw, const Tensor& gb,
                                  const Conv2dParams& p) override;
  void max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices,
                  const Pool2dParams& p) override;
  void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) override;
  void avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p) override;
  void avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) override;

  void softmax(const Tensor& x, const Tensor& out, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                  const Tensor& out, const Tensor& mean, const Tensor& rstd) override;
  void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                           const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                           const Tensor& gw, const Tensor& gb) override;
  void cross_entropy(const Tensor& logits, const Tensor& target, double smoothing,
                     const Tensor& losses, const Tensor& grad, double grad_scale) override;

  void index_select(const Tensor& src, int64_t dim, const Tensor& index,
                    const Tensor& out) override;
  void index_add(const Tensor& dst, int64_t dim, const Tensor& index, const Tensor& src) override;
  void gather(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& dst, int64_t dim, const Tensor& index,
                   const Tensor& src) override;

  void adam_update(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                   const Tensor& vmax, const AdamParams& p) override;
  void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf,
                  const SgdParams& p) override;
  void rmsprop_update(const Tensor& param, const Tensor& grad, const Tensor& square_avg,
                      const Tensor& momentum_buf, const Tensor& grad_avg,
                      const RmspropParams& p) override;
  void adagrad_update(const Tensor& param, const Tensor& grad, const Tensor& state_sum,
                      const AdagradParams& p) override;

  // cpu_attention.cpp
  void attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const Tensor& key_padding_mask, bool causal, double scale, const Tensor& out,
                 const Tensor& lse) override;
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& key_padding_mask, bool causal, double scale,
                          const Tensor& out, const Tensor& lse, const Tensor& gout,
                          const Tensor& gq, const Tensor& gk, const Tensor& gv) override;
};

}  // namespace mox
