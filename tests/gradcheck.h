#pragma once
// Gradient checking against central finite differences in f64, for the tests.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "mox/mox.h"

namespace mox::testing {

// f64 random tensor that requires grad.
inline Tensor rnd(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator g(seed);
  Tensor t = empty(s, DType::F64);
  t.uniform_(lo, hi, &g);
  t.requires_grad_(true);
  return t;
}

// A non-contiguous f64 leaf holding the same values as rnd(s): built as the transpose of
// a tensor with the last two dims swapped (needs dim >= 2).
inline Tensor rnd_noncontig(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Shape t = s;
  std::swap(t[t.size() - 1], t[t.size() - 2]);
  Generator g(seed);
  Tensor base = empty(t, DType::F64);
  base.uniform_(lo, hi, &g);
  Tensor v = base.transpose(-1, -2);  // a leaf view: no grad_fn, strides swapped
  v.requires_grad_(true);
  return v;
}

// Checks d(sum(fn(inputs) * w))/d(inputs) from autograd against central differences, with
// a fixed random weight w so that every output element matters. Inputs must be f64 leaves
// (inputs that do not require grad are held fixed).
inline ::testing::AssertionResult gradcheck(
    const std::function<Tensor(const std::vector<Tensor>&)>& fn, std::vector<Tensor> inputs,
    double eps = 1e-6, double atol = 1e-6, double rtol = 1e-4) {
  Tensor out = fn(inputs);
  if (out.dtype() != DType::F64)
    return ::testing::AssertionFailure() << "output is " << out.desc() << ", expected f64";
  Generator g(1234);
  Tensor w = empty(out.shape(), DType::F64);
  w.uniform_(0.5, 1.5, &g);
  for (auto& in : inputs)
    if (in.defined() && in.requires_grad()) in.zero_grad();
  Tensor loss = sum(mul(out, w));
  loss.backward();
  for (size_t k = 0; k < inputs.size(); k++) {
    Tensor in = inputs[k];
    if (!in.defined() || !in.requires_grad()) continue;  // optional inputs may be undefined
    Tensor analytic = in.grad();
    if (!analytic.defined()) analytic = zeros_like(in);
    if (analytic.shape() != in.shape())
      return ::testing::AssertionFailure() << "input " << k << ": grad shape "
                                           << shape_str(analytic.shape()) << " vs "
                                           << shape_str(in.shape());
    std::vector<double> an = analytic.to_vector<double>();
    // Perturb through a contiguous copy's values, written back into the (maybe strided) leaf.
    Tensor flat = in.detach().contiguous().clone();
    double* p = flat.data<double>();
    NoGradGuard ng;
    for (int64_t i = 0; i < flat.numel(); i++) {
      double orig = p[i];
      p[i] = orig + eps;
      in.detach().copy_(flat);
      double fp = sum(mul(fn(inputs), w)).item<double>();
      p[i] = orig - eps;
      in.detach().copy_(flat);
      double fm = sum(mul(fn(inputs), w)).item<double>();
      p[i] = orig;
      in.detach().copy_(flat);
      double num = (fp - fm) / (2 * eps);
      if (std::abs(num - an[i]) > atol + rtol * std::abs(num))
        return ::testing::AssertionFailure()
               << "input " << k << " " << in.desc() << " element " << i << ": analytic " << an[i]
               << " vs numeric " << num;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace mox::testing
