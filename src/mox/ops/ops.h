#pragma once
// The op set. Each op checks shapes and dtypes, broadcasts (NumPy rules), allocates its
// output, calls the tensor's backend, and records its backward for autograd.
// Files: elementwise.cpp, reduce.cpp, linalg.cpp, shape.cpp (views, cat/stack/split),
// index.cpp (gather/scatter/embedding/one_hot), nn.cpp (conv, pool, softmax, norms,
// dropout, losses' fused kernels).
#include <optional>
#include <vector>

#include "mox/backend/backend.h"
#include "mox/tensor/generator.h"
#include "mox/tensor/tensor.h"

namespace mox {

// ---------- broadcasting helpers ----------
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Sums g over broadcast dims so that it has `shape` (backward of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);

// ---------- elementwise ----------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor rsub(const Tensor& a, double s);  // s - a
Tensor rdiv(const Tensor& a, double s);  // s / a
Tensor pow(const Tensor& a, double p);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor log1p(const Tensor& a);
Tensor expm1(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor sign(const Tensor& a);
Tensor square(const Tensor& a);
Tensor reciprocal(const Tensor& a);
Tensor sin(const Tensor& a);
Tensor cos(const Tensor& a);
Tensor floor(const Tensor& a);
Tensor ceil(const Tensor& a);
Tensor round(const Tensor& a);
Tensor clamp(const Tensor& a, double lo, double hi);
Tensor clamp_min(const Tensor& a, double lo);
Tensor clamp_max(const Tensor& a, double hi);
// comparisons give u8 tensors holding 0/1
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, double b);
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

// ---------- activations ----------
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor elu(const Tensor& x, double alpha = 1.0);
Tensor selu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0);
Tensor silu(const Tensor& x);

// ---------- reductions (dims may be negative; empty dims = all) ----------
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor prod(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// max/min over dims (gradient split evenly among ties, like torch.amax)
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
struct ValuesIndices {
  Tensor values, indices;
};
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
// correction=1 is the unbiased (Bessel) estimate, 0 the population variance
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1,
           bool keepdim = false);
// (named std_dev, not std, so that `using namespace mox` cannot clash with namespace std)
Tensor std_dev(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1,
           bool keepdim = false);
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor norm(const Tensor& x);  // Frobenius / L2 of all elements

// ---------- linear algebra ----------
// 1-D/2-D/N-D like torch.matmul (batch dims broadcast)
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);
// x [..., in] @ w[out, in]^T + b[out]
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
// gelu(linear(x, w, b), tanh_approximation = true) as one GEMM whose epilogue adds the bias
// and applies the GELU (cuBLASLt on a GPU); the same values and gradients as the two ops.
Tensor linear_gelu(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
// residual + linear(x, w, b) as one GEMM that adds the bias and the residual in its
// epilogue (a Transformer's projection back into the residual stream). Under autocast the
// product runs in the half type and the result keeps the residual's dtype (f32).
Tensor linear_residual(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& residual);

// ---------- shape ----------
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor broadcast_to(const Tensor& x, const Shape& shape);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor cast(const Tensor& x, DType dtype);  // differentiable between float types
Tensor cat(const std::vector<Tensor>& xs, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split_sizes(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
// The slices of x along dim, each without that dim (torch.unbind). Like split/chunk, the
// pieces share one backward node, so unbinding T time steps costs O(size), not O(T*size).
std::vector<Tensor> unbind(const Tensor& x, int64_t dim = 0);
Tensor pad2d(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right,
             double value = 0.0);  // zero-pads the last two dims

// ---------- indexing ----------
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx = -1);
Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype = DType::F32);

// ---------- neural-network ops ----------
// p.relu: relu(conv2d(...)) in one op (the ReLU applied by the kernel, its backward folded
// into the convolution's), as nn::Sequential runs a Conv2d followed by a ReLU.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p);
// max_pool2d(relu(conv2d(x, w, bias, p)), 2x2 windows, stride 2): one fused kernel where the
// backend has one (a CNN's first layer: few input channels, no padding, x not requiring
// grad), which never stores the full-size activation; otherwise the three ops.
Tensor conv2d_relu_maxpool2(const Tensor& x, const Tensor& w, const Tensor& bias,
                            const Conv2dParams& p);
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p);
ValuesIndices max_pool2d_with_indices(const Tensor& x, const Pool2dParams& p);
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& w,
                  const Tensor& b, double eps = 1e-5);
// x [N, C] or [N, C, *]; in training mode updates running stats in place (no grad)
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& w, const Tensor& b, bool training, double momentum = 0.1,
                  double eps = 1e-5);
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

// ---------- losses (reduction: "mean", "sum" or "none") ----------
// logits [N, C] or [N, C, d...]; target i64 class indices [N] / [N, d...] (ignore_index
// skipped) or float probabilities shaped like logits.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0,
                     const std::string& reduction = "mean", int64_t ignore_index = -100);
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const std::string& reduction = "mean",
                int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& x, const Tensor& y, const std::string& reduction = "mean");
Tensor l1_loss(const Tensor& x, const Tensor& y, const std::string& reduction = "mean");
Tensor huber_loss(const Tensor& x, const Tensor& y, double delta = 1.0,
                  const std::string& reduction = "mean");
Tensor binary_cross_entropy(const Tensor& p, const Tensor& y, const std::string& reduction = "mean");
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& y,
                                        const std::string& reduction = "mean",
                                        const Tensor& pos_weight = Tensor());
// input holds log-probabilities, target probabilities (or log-probabilities if log_target)
Tensor kl_div(const Tensor& input, const Tensor& target, const std::string& reduction = "mean",
              bool log_target = false);
Tensor apply_reduction(const Tensor& losses, const std::string& reduction, const char* op);
// Fake quantisation for quantisation-aware training (PyTorch's fake_quantize_per_tensor_affine
// / _per_channel_affine): q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax),
// out = (q - zero_point) * scale; the straight-through estimator passes the gradient where
// the rounded value fell inside [qmin, qmax] and blocks it where it was clamped.
Tensor fake_quantize(const Tensor& x, double scale, int64_t zero_point, int64_t qmin, int64_t qmax);
// Per channel along `axis`: scale (floating) and zero_point (integer) have x.size(axis) entries.
Tensor fake_quantize_per_channel(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                 int64_t axis, int64_t qmin, int64_t qmax);
// Knowledge distillation (Hinton et al.): alpha * T^2 * KL(softmax(teacher / T) ||
// softmax(student / T)) (batch mean) + (1 - alpha) * cross_entropy(student, target), the
// teacher's logits treated as constants. Student and teacher logits [N, classes]; target
// class indices [N] (unused when alpha = 1).
Tensor distillation_loss(const Tensor& student_logits, const Tensor& teacher_logits, const Tensor& target,
                         double temperature, double alpha);

// ---------- attention (attention.cpp) ----------
// softmax(q k^T * scale + mask) v in one fused kernel with its own backward, never forming
// the Tq x Tk score matrix. q [B,H,Tq,D], k and v [B,H,Tk,D] (same float dtype) -> [B,H,Tq,D].
// scale < 0 means 1/sqrt(D). causal: query i (0-based among the Tq) attends keys
// 0 .. Tk - Tq + i, i.e. the queries are the last Tq positions of the key sequence (the
// KV-cache convention; with Tq == Tk this is the usual lower-triangular mask).
// key_padding_mask: optional [B,Tk] u8 (or integer) tensor, nonzero = padding key, hidden
// from every query. A query that sees no key at all (every key padded, or Tq > Tk with
// causal) gets output 0 and contributes zero gradient (PyTorch would give NaN).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal, double scale = -1.0,
                                    const Tensor& key_padding_mask = Tensor());
// Multi-head self-attention of one [B, T, 3C] projection (q, k, v column blocks, n_head heads
// of C / n_head) -> [B, T, C] with the heads merged: the same kernel as above, with the
// gradient written straight into one [B, T, 3C] tensor (no split, no head copies either way).
Tensor attention_qkv(const Tensor& qkv, int64_t n_head, bool causal, double scale = -1.0);

}  // namespace mox
