#pragma once
// The CUDA backend: one device (cuda:0), one compute stream, memory from a caching
// allocator, GEMMs through cuBLASLt (cuBLAS for f64), convolutions through cuDNN, and its
// own kernels for the rest. Kernels read and write bf16/f16 directly and compute in f32
// (native_half). Methods are spread over files by family:
//   cuda_backend.cu    device set-up, stream, allocator, host copies, descriptors
//   cuda_memory.cu     copy (strided, converting), fill, arange, random fills (Philox)
//   cuda_elementwise.cu unary (and derivatives), binary, where
//   cuda_reduce.cu     reduce, reduce_arg
//   cuda_index.cu      index_select/add, gather, scatter_add
//   cuda_gemm.cu       gemm (cuBLASLt)
//   cuda_norm.cu       softmax, layer norm, cross-entropy
//   cuda_optim.cu      Adam (one launch for all parameters), SGD, RMSprop, Adagrad
//   cuda_conv.cu       conv2d (cuDNN), pooling
//   cuda_attention.cu  flash attention forward/backward (tensor cores for bf16/f16)
// Built only with MOX_CUDA; backend_for(cuda) creates it on first use.
#include "mox/backend/backend.h"

namespace mox {

class CudaBackend final : public Backend {
 public:
  CudaBackend();
  Device device() const override { return Device{DeviceType::CUDA, 0}; }
  Allocator& allocator() override;
  void synchronize() override;
  bool native_half() const override { return true; }

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
  void gemm_epilogue(const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb,
                     const GemmEpilogue& e) override;

  void conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out,
              const Conv2dParams& p) override;
  void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy, const Tensor& gx,
                       const Tensor& gw, const Tensor& gb, const Conv2dParams& p,
                       const Tensor& relu_out = Tensor()) override;
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
  void adam_update_multi(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& m, const std::vector<Tensor>& v,
                         const std::vector<AdamParams>& p) override;
  void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf,
                  const SgdParams& p) override;
  void rmsprop_update(const Tensor& param, const Tensor& grad, const Tensor& square_avg,
                      const Tensor& momentum_buf, const Tensor& grad_avg,
                      const RmspropParams& p) override;
  void adagrad_update(const Tensor& param, const Tensor& grad, const Tensor& state_sum,
                      const AdagradParams& p) override;

  void attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const Tensor& key_padding_mask, bool causal, double scale, const Tensor& out,
                 const Tensor& lse) override;
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& key_padding_mask, bool causal, double scale,
                          const Tensor& out, const Tensor& lse, const Tensor& gout,
                          const Tensor& gq, const Tensor& gk, const Tensor& gv) override;
};

}  // namespace mox
