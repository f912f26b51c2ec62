#pragma once
// The kernel interface one device implements. ops/ decides shapes, dtypes, broadcasting
// and gradients, allocates outputs, and calls these; a backend only computes.
// Conventions: `out` tensors are allocated by the caller with the final shape (contiguous
// unless stated); inputs may be strided views unless a kernel says "contiguous".
// Floating kernels support f32 and f64 (f64 is for gradient tests); ops/ converts bf16/f16
// unless native_half() says the backend reads them directly (CUDA).
#include <cstdint>
#include <vector>

#include "mox/tensor/storage.h"
#include "mox/tensor/tensor.h"

namespace mox {

enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Sign, Reciprocal, Square, Sin, Cos, Log1p, Expm1,
  Floor, Ceil, Round,
  Relu, LeakyRelu /*a=slope*/, Elu /*a=alpha*/, Selu, Gelu, GeluTanh, Sigmoid, Tanh,
  Softplus /*a=beta b=threshold*/, Silu,
  AddScalar /*x+a*/, MulScalar /*x*a*/, RSubScalar /*a-x*/, RDivScalar /*a/x*/,
  PowScalar /*x^a*/, RPowScalar /*a^x*/, Clamp /*[a,b]*/,
};
struct UnaryParams {
  double a = 0, b = 0;
};

enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum, Atan2,
  Eq, Ne, Lt, Le, Gt, Ge,  // write u8 (0/1) outputs
};
bool is_comparison(BinaryOp op);

enum class ReduceOp : uint8_t { Sum, Mean, Max, Min, Prod };

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1, groups = 1;
  // Forward only: the output is relu(conv + bias), applied while it is in cache (the op
  // passes that output to conv2d_backward, which masks the incoming gradient with it).
  bool relu = false;
};
struct Pool2dParams {
  int64_t kh = 2, kw = 2, stride_h = 2, stride_w = 2, pad_h = 0, pad_w = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg pool
};

struct AdamParams {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;
  bool decoupled;  // AdamW: decay applied to the weight directly
  bool amsgrad;
};
// SGD (momentum, dampening, Nesterov, L2 decay). first_step: the momentum buffer holds no
// history yet and is set to the (decayed) gradient, as PyTorch does when it is None.
struct SgdParams {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  bool first_step;
};
// RMSprop; momentum_buf is used when momentum > 0, grad_avg when centered.
struct RmspropParams {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered;
};
// Adagrad; step counts from 1 and drives the learning-rate decay lr / (1 + (step-1)*lr_decay).
struct AdagradParams {
  double lr, lr_decay, weight_decay, eps;
  int64_t step;
};

// What a GEMM applies to its result before writing it (Backend::gemm_epilogue): a bias [N]
// added to every row, then GELU (tanh approximation) when `gelu`, in which case `pre`
// (shaped like out, contiguous) receives the biased product for the backward; or (without
// gelu) a residual shaped like out added last: out = residual + (product + bias). The
// output may then be f32 while the operands are bf16/f16 (a Transformer's residual stream).
struct GemmEpilogue {
  Tensor bias;
  bool gelu = false;
  Tensor pre;
  Tensor residual;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual Allocator& allocator() = 0;
  // Waits until every kernel launched on this device has finished (a no-op on the CPU,
  // whose kernels are synchronous). Timers call it; copies to the host imply it.
  virtual void synchronize() {}
  // True when the elementwise, reduction, normalisation, softmax, cross-entropy, attention
  // and GEMM kernels read and write bf16/f16 directly (computing in f32): ops/ then skips
  // its conversions to f32 around them. The CPU converts.
  virtual bool native_half() const { return false; }

  // ---- memory and simple fills ----
  // dst and src have the same shape (any strides, any dtypes); converts element types.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void copy_from_host(const void* src, const Tensor& dst) = 0;  // dst contiguous
  virtual void copy_to_host(const Tensor& src, void* dst) = 0;          // src contiguous
  virtual void fill(const Tensor& dst, double value) = 0;
  virtual void arange(const Tensor& dst, double start, double step) = 0;  // contiguous 1-D
  virtual void uniform(const Tensor& dst, double lo, double hi, Generator& g) = 0;
  virtual void normal(const Tensor& dst, double mean, double std, Generator& g) = 0;
  virtual void bernoulli(const Tensor& dst, double p, Generator& g) = 0;  // 1 with prob p
  virtual void randint(const Tensor& dst, int64_t lo, int64_t hi, Generator& g) = 0;

  // ---- elementwise: inputs already broadcast (expanded) to out's shape ----
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) = 0;
  // d(op)/dx * gy for the activations and math functions; y is op's output.
  virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                              const Tensor& gx, UnaryParams p) = 0;
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // ---- reductions: out has x's rank with reduced dims of size 1 ----
  virtual void reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes,
                      const Tensor& out) = 0;
  // max/min over one dim with i64 indices; out and indices shaped like reduce's out.
  virtual void reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& out,
                          const Tensor& indices) = 0;

  // ---- linear algebra ----
  // out[b] = alpha * op(a[b]) @ op(b[b]) + beta * out[b], 3-D: a [B,M,K] (or [B,K,M] if ta),
  // b [B,K,N] (or [B,N,K] if tb), out [B,M,N] contiguous. Batch stride may be 0 (broadcast).
  // Each matrix must have a unit stride in one of its two dims.
  virtual void gemm(const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb,
                    double alpha, double beta) = 0;

  // out = epilogue(op(a) @ op(b)) with the operands as in gemm (alpha 1, beta 0). GPUs apply
  // it in the GEMM's own epilogue (cuBLASLt), so the product is written once; the default
  // writes the bias into the output, accumulates the product onto it and applies GELU after
  // (exactly what linear followed by gelu_tanh computes).
  virtual void gemm_epilogue(const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb,
                             const GemmEpilogue& e);

  // ---- convolution and pooling (NCHW, contiguous inputs) ----
  // x [N,C,H,W], w [O,C/groups,kh,kw], bias [O] or undefined, out [N,O,Ho,Wo]
  virtual void conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out,
                      const Conv2dParams& p) = 0;
  // Any of gx, gw, gb may be undefined (not needed). Overwrites (does not accumulate).
  // relu_out: the output of a fused-ReLU forward (Conv2dParams::relu); gy then counts only
  // where relu_out > 0 (the ReLU's backward, folded into the kernels' reads of gy).
  virtual void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy,
                               const Tensor& gx, const Tensor& gw, const Tensor& gb,
                               const Conv2dParams& p, const Tensor& relu_out = Tensor()) = 0;
  // The first layer of an image CNN in one pass: out = max_pool_2x2(relu(conv2d(x, w, bias,
  // p))) (2x2 windows, stride 2, no padding), never writing the full-size activation.
  // indices (i32, like out) hold backend-defined positions of the window maxima, for
  // conv2d_relu_pool2_backward (weight and bias gradients only: no input gradient). Only
  // where conv2d_relu_pool2_supported() holds; otherwise callers compose the three ops.
  virtual bool conv2d_relu_pool2_supported(const Tensor& x, const Tensor& w,
                                           const Conv2dParams& p) {
    return false;
  }
  virtual void conv2d_relu_pool2(const Tensor& x, const Tensor& w, const Tensor& bias,
                                 const Tensor& out, const Tensor& indices, const Conv2dParams& p) {
    throw Error("conv2d_relu_pool2", "not supported by this backend");
  }
  // gy [N,O,Ho/2,Wo/2] -> gw (w's shape), gb (either may be undefined); overwrites.
  virtual void conv2d_relu_pool2_backward(const Tensor& x, const Tensor& w, const Tensor& out,
                                          const Tensor& indices, const Tensor& gy,
                                          const Tensor& gw, const Tensor& gb,
                                          const Conv2dParams& p) {
    throw Error("conv2d_relu_pool2_backward", "not supported by this backend");
  }
  virtual void max_pool2d(const Tensor& x, const Tensor& out, const Tensor& indices,
                          const Pool2dParams& p) = 0;  // indices i64: flat h*W+w per plane
  virtual void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) = 0;
  virtual void avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p) = 0;
  virtual void avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) = 0;

  // ---- normalisation and softmax over the last dim (contiguous [rows, n]) ----
  virtual void softmax(const Tensor& x, const Tensor& out, bool log) = 0;
  virtual void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) = 0;
  // x [rows, n]; w, b [n] or undefined; mean, rstd [rows] (f32/f64 like x)
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                          const Tensor& out, const Tensor& mean, const Tensor& rstd) = 0;
  virtual void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                   const Tensor& mean, const Tensor& rstd, const Tensor& gx,
                                   const Tensor& gw, const Tensor& gb) = 0;
  // Fused softmax cross-entropy over [rows, n] logits with i64 targets [rows]
  // (target < 0 is ignored). losses [rows] gets -log p[target] smoothed by `smoothing`;
  // when grad is defined it receives softmax - onehot_smoothed scaled by grad_scale.
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, double smoothing,
                             const Tensor& losses, const Tensor& grad, double grad_scale) = 0;

  // ---- indexing (contiguous src/dst; index i64) ----
  // out = src.index_select(dim, index)
  virtual void index_select(const Tensor& src, int64_t dim, const Tensor& index,
                            const Tensor& out) = 0;
  // dst.index_add_(dim, index, src): dst[..., index[i], ...] += src[..., i, ...]
  virtual void index_add(const Tensor& dst, int64_t dim, const Tensor& index,
                         const Tensor& src) = 0;
  // out[i][j][k] = src[i][index[i][j][k]][k] (dim=1); index shaped like out
  virtual void gather(const Tensor& src, int64_t dim, const Tensor& index, const Tensor& out) = 0;
  // dst[i][index[i][j][k]][k] += src[i][j][k] (dim=1)
  virtual void scatter_add(const Tensor& dst, int64_t dim, const Tensor& index,
                           const Tensor& src) = 0;

  // ---- optimiser updates over contiguous f32/f64 parameters (in place) ----
  virtual void adam_update(const Tensor& param, const Tensor& grad, const Tensor& m,
                           const Tensor& v, const Tensor& vmax, const AdamParams& p) = 0;
  // Adam/AdamW over many parameters at once (one launch on a GPU): the lists are parallel,
  // each entry as in adam_update with its own AdamParams (parameter groups differ in lr and
  // weight decay, parameters in step count); no amsgrad. The default loops over adam_update.
  virtual void adam_update_multi(const std::vector<Tensor>& params,
                                 const std::vector<Tensor>& grads, const std::vector<Tensor>& m,
                                 const std::vector<Tensor>& v, const std::vector<AdamParams>& p) {
    for (size_t i = 0; i < params.size(); ++i) adam_update(params[i], grads[i], m[i], v[i], Tensor(), p.at(i));
  }
  // momentum_buf is undefined when momentum == 0 (no buffer).
  virtual void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf,
                          const SgdParams& p) = 0;
  // momentum_buf / grad_avg are undefined when momentum == 0 / not centered.
  virtual void rmsprop_update(const Tensor& param, const Tensor& grad, const Tensor& square_avg,
                              const Tensor& momentum_buf, const Tensor& grad_avg,
                              const RmspropParams& p) = 0;
  virtual void adagrad_update(const Tensor& param, const Tensor& grad, const Tensor& state_sum,
                              const AdagradParams& p) = 0;

  // ---- fused scaled dot-product attention (f32/f64) ----
  // The 4-D operands may be any strided views whose last dim (D) has stride 1, so q, k, v
  // can be the column blocks of one [B, T, 3C] projection and out a [B, T, H, D] buffer.
  // q [B,H,Tq,D], k and v [B,H,Tk,D]; key_padding_mask undefined or u8 [B,Tk] (nonzero =
  // padding: that key is hidden from every query of batch b). causal: query i (0-based among
  // the Tq) sees keys 0 .. Tk - Tq + i (the KV-cache convention: the queries are the last Tq
  // positions). out [B,H,Tq,D]; lse [B,H,Tq] (q's dtype) receives each row's logsumexp of its
  // visible scaled scores, -inf for a row that sees no key (its output is 0).
  // Never forms a Tq x Tk matrix: the kernels work on tiles of queries x tiles of keys.
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& key_padding_mask, bool causal, double scale,
                         const Tensor& out, const Tensor& lse) {
    throw Error("attention", "not supported by this backend");
  }
  // Gradients from gout [B,H,Tq,D], given the forward's out and lse; gq, gk, gv (shaped like
  // q, k, v, unit stride in D) are overwritten. Rows that saw no key give zero gradients.
  virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& key_padding_mask, bool causal, double scale,
                                  const Tensor& out, const Tensor& lse, const Tensor& gout,
                                  const Tensor& gq, const Tensor& gk, const Tensor& gv) {
    throw Error("attention_backward", "not supported by this backend");
  }
};

Backend& backend_for(Device d);
inline Backend& backend_for(const Tensor& t) { return backend_for(t.device()); }
void register_backend(DeviceType type, Backend* b);
// Whether backend_for(d) would succeed (a CUDA build on a machine with a GPU, for cuda).
bool device_available(Device d);

// Thread control for backends that use threads (OpenMP + BLAS on the CPU).
void set_num_threads(int n);
int get_num_threads();

}  // namespace mox
