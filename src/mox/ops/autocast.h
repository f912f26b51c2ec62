#pragma once
// Mixed precision the way PyTorch's autocast does it. Inside an AutocastGuard(bf16 or f16):
//  - matrix products (matmul, bmm, linear) and attention (scaled_dot_product_attention,
//    attention_qkv) take f32 operands rounded to the half type and return half results
//    (f32 accumulation inside the kernels);
//  - layer_norm, softmax/log_softmax and the losses take half inputs as f32 (cross-entropy
//    reads half logits directly on a device whose kernel does, computing in f32);
//  - everything else follows type promotion (f32 + bf16 = f32), so the residual stream of a
//    Transformer stays f32 while its matrix products run on the half matrix units.
// Parameters stay f32 ("master weights"): the rounded copy of a leaf tensor that requires
// grad is made once per guard and reused, and its gradient flows back to the f32 leaf.
// Wrap the forward pass (and the loss) of one step, not the backward: the copies' graph is
// freed by the first backward that runs through it.
// f64 tensors are never rounded. Guards nest; the innermost one decides.
#include "mox/tensor/tensor.h"

namespace mox {

class AutocastGuard {
 public:
  // dtype: BF16 or F16; enabled = false makes a guard that turns autocast off inside it.
  explicit AutocastGuard(DType dtype, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType prev_dtype_;
  bool prev_enabled_;
};

// Whether autocast is on in this thread, and its half dtype.
bool autocast_enabled();
DType autocast_dtype();

namespace detail {
// An operand of a matrix product under autocast: f32 -> the half dtype (cached for leaves
// that require grad); anything else unchanged. Without autocast: t itself.
Tensor autocast_half(const Tensor& t);
// An input of an op that autocast runs in f32: half -> f32; anything else unchanged.
Tensor autocast_f32(const Tensor& t);
}  // namespace detail

}  // namespace mox
