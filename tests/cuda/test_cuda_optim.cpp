// CUDA vs CPU parity for the fused optimiser updates of cuda_optim.cu over several steps:
// Adam/AdamW (L2 or decoupled decay, AMSGrad), the multi-tensor Adam over parameters of odd
// sizes against per-parameter CPU updates, SGD, RMSprop and Adagrad in every mode, with
// f32/f64 gradients and bf16/f16 gradients for f32 parameters.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "mox/tensor/generator.h"

namespace mox::testing {
namespace {

Backend& cpu_be() { return backend_for(kCPU); }
Backend& gpu_be() { return backend_for(kCUDA); }

// A parameter with its state on both devices; grads are drawn per step.
struct State {
  Tensor p_cpu, p_dev;
  std::vector<Tensor> s_cpu, s_dev;  // state buffers
};

State make_state(int64_t n, DType dt, int nstate, uint64_t seed, bool positive_state = false) {
  Generator g(seed);
  State s;
  s.p_cpu = randn({n}, &g, TensorOptions(dt));
  s.p_dev = s.p_cpu.to(kCUDA);
  for (int k = 0; k < nstate; k++) {
    Tensor t = positive_state ? rand({n}, &g, TensorOptions(dt)) : zeros({n}, TensorOptions(dt));
    s.s_cpu.push_back(t);
    s.s_dev.push_back(t.to(kCUDA));
  }
  return s;
}

// A gradient of dtype gdt: the CPU gets the same (rounded) values in the parameter's dtype.
struct Grad {
  Tensor cpu, dev;
};
Grad make_grad(int64_t n, DType pdt, DType gdt, uint64_t seed) {
  Generator g(seed);
  Tensor t = randn({n}, &g, TensorOptions(DType::F64)).to(gdt);
  return {t.to(pdt), t.to(kCUDA)};
}

void expect_state(const State& s, DType dt, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_PARITY(s.p_dev, s.p_cpu, dt);
  for (size_t k = 0; k < s.s_cpu.size(); k++) EXPECT_PARITY(s.s_dev[k], s.s_cpu[k], dt);
}

struct DtPair {
  DType param, grad;
};
const DtPair kDtypes[] = {{DType::F32, DType::F32},
                          {DType::F64, DType::F64},
                          {DType::F32, DType::BF16},
                          {DType::F32, DType::F16}};

std::string name(const DtPair& d) {
  return std::string(dtype_name(d.param)) + "/" + dtype_name(d.grad);
}

TEST(CudaOptim, Adam) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 1;
  for (const DtPair& d : kDtypes)
    for (bool decoupled : {false, true})
      for (bool amsgrad : {false, true})
        for (double wd : {0.0, 0.05})
          for (int64_t n : {int64_t(1), int64_t(1037), int64_t(70001)}) {
            std::string what = name(d) + (decoupled ? " AdamW" : " Adam") +
                               (amsgrad ? " amsgrad" : "") + " wd " + std::to_string(wd) +
                               " n " + std::to_string(n);
            SCOPED_TRACE(what);
            State s = make_state(n, d.param, amsgrad ? 3 : 2, seed++);
            for (int64_t step = 1; step <= 3; step++) {
              AdamParams p{1e-2, 0.9, 0.999, 1e-8, wd, step, decoupled, amsgrad};
              Grad g = make_grad(n, d.param, d.grad, seed++);
              cpu_be().adam_update(s.p_cpu, g.cpu, s.s_cpu[0], s.s_cpu[1],
                                   amsgrad ? s.s_cpu[2] : Tensor(), p);
              gpu_be().adam_update(s.p_dev, g.dev, s.s_dev[0], s.s_dev[1],
                                   amsgrad ? s.s_dev[2] : Tensor(), p);
            }
            expect_state(s, d.param, what);
          }
}

TEST(CudaOptim, AdamMulti) {
  MOX_REQUIRE_CUDA();
  const std::vector<int64_t> sizes = {1, 7, 100, 8191, 8192, 8193, 20000, 3, 12345, 0, 65537};
  uint64_t seed = 1000;
  for (const DtPair& d : kDtypes)
    for (bool decoupled : {false, true}) {
      std::string what = name(d) + (decoupled ? " AdamW" : " Adam");
      SCOPED_TRACE(what);
      std::vector<State> st;
      for (int64_t n : sizes) st.push_back(make_state(n, d.param, 2, seed++));
      for (int64_t step = 1; step <= 3; step++) {
        std::vector<Tensor> ps, gs, ms, vs;
        std::vector<AdamParams> aps;
        for (size_t k = 0; k < st.size(); k++) {
          // Two parameter groups in one call: every third parameter has its own lr and no decay.
          AdamParams p{3e-3, 0.9, 0.95, 1e-8, 0.1, step, decoupled, false};
          if (k % 3 == 0) p.lr = 1e-2, p.weight_decay = 0.0;
          aps.push_back(p);
          // Mixed gradient dtypes in one call for f32 params: odd k get f32 gradients.
          DType gdt = d.grad;
          if (d.param == DType::F32 && d.grad != DType::F32 && k % 2 == 1) gdt = DType::F32;
          Grad g = make_grad(sizes[k], d.param, gdt, seed++);
          cpu_be().adam_update(st[k].p_cpu, g.cpu, st[k].s_cpu[0], st[k].s_cpu[1], Tensor(), p);
          ps.push_back(st[k].p_dev);
          gs.push_back(g.dev);
          ms.push_back(st[k].s_dev[0]);
          vs.push_back(st[k].s_dev[1]);
        }
        gpu_be().adam_update_multi(ps, gs, ms, vs, aps);
      }
      for (size_t k = 0; k < st.size(); k++)
        if (sizes[k] > 0) expect_state(st[k], d.param, what + " param " + std::to_string(k));
    }
}

TEST(CudaOptim, AdamMultiManyCalls) {
  MOX_REQUIRE_CUDA();
  // Many consecutive calls (the pinned table buffers are reused) with growing tables.
  uint64_t seed = 5000;
  std::vector<State> st;
  std::vector<int64_t> sizes;
  for (int step = 1; step <= 12; step++) {
    for (int k = 0; k < step * 10; k++) {
      sizes.push_back(1 + (seed * 7919) % 3001);
      st.push_back(make_state(sizes.back(), DType::F32, 2, seed++));
    }
    std::vector<Tensor> ps, gs, ms, vs;
    std::vector<AdamParams> aps;
    for (size_t k = 0; k < st.size(); k++) {
      // Step counts differ between parameters of one call (bias corrections per record).
      AdamParams p{1e-3, 0.9, 0.999, 1e-8, 0.0, 1 + (int64_t(k) + step) % 5, true, false};
      aps.push_back(p);
      Grad g = make_grad(sizes[k], DType::F32, DType::F32, seed++);
      cpu_be().adam_update(st[k].p_cpu, g.cpu, st[k].s_cpu[0], st[k].s_cpu[1], Tensor(), p);
      ps.push_back(st[k].p_dev);
      gs.push_back(g.dev);
      ms.push_back(st[k].s_dev[0]);
      vs.push_back(st[k].s_dev[1]);
    }
    gpu_be().adam_update_multi(ps, gs, ms, vs, aps);
  }
  // Parameters added at later calls saw fewer steps on both backends alike.
  for (size_t k = 0; k < st.size(); k += 37) expect_state(st[k], DType::F32, "param " + std::to_string(k));
}

TEST(CudaOptim, Sgd) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 2000;
  for (const DtPair& d : kDtypes)
    for (double momentum : {0.0, 0.9})
      for (double dampening : {0.0, 0.3})
        for (bool nesterov : {false, true})
          for (double wd : {0.0, 1e-2}) {
            if (nesterov && (momentum == 0 || dampening != 0)) continue;
            std::string what = name(d) + " momentum " + std::to_string(momentum) +
                               " dampening " + std::to_string(dampening) +
                               (nesterov ? " nesterov" : "") + " wd " + std::to_string(wd);
            SCOPED_TRACE(what);
            const int64_t n = 5003;
            State s = make_state(n, d.param, momentum != 0 ? 1 : 0, seed++);
            for (int step = 1; step <= 3; step++) {
              SgdParams p{0.05, momentum, dampening, wd, nesterov, step == 1};
              Grad g = make_grad(n, d.param, d.grad, seed++);
              Tensor bc = momentum != 0 ? s.s_cpu[0] : Tensor();
              Tensor bd = momentum != 0 ? s.s_dev[0] : Tensor();
              cpu_be().sgd_update(s.p_cpu, g.cpu, bc, p);
              gpu_be().sgd_update(s.p_dev, g.dev, bd, p);
            }
            expect_state(s, d.param, what);
          }
}

TEST(CudaOptim, Rmsprop) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 3000;
  for (const DtPair& d : kDtypes)
    for (double momentum : {0.0, 0.8})
      for (bool centered : {false, true})
        for (double wd : {0.0, 1e-2}) {
          std::string what = name(d) + " momentum " + std::to_string(momentum) +
                             (centered ? " centered" : "") + " wd " + std::to_string(wd);
          SCOPED_TRACE(what);
          const int64_t n = 4099;
          // square_avg, momentum_buf, grad_avg (all allocated; unused ones passed undefined)
          State s = make_state(n, d.param, 3, seed++);
          for (int step = 1; step <= 3; step++) {
            RmspropParams p{1e-2, 0.99, 1e-8, wd, momentum, centered};
            Grad g = make_grad(n, d.param, d.grad, seed++);
            cpu_be().rmsprop_update(s.p_cpu, g.cpu, s.s_cpu[0],
                                    momentum > 0 ? s.s_cpu[1] : Tensor(),
                                    centered ? s.s_cpu[2] : Tensor(), p);
            gpu_be().rmsprop_update(s.p_dev, g.dev, s.s_dev[0],
                                    momentum > 0 ? s.s_dev[1] : Tensor(),
                                    centered ? s.s_dev[2] : Tensor(), p);
          }
          expect_state(s, d.param, what);
        }
}

TEST(CudaOptim, Adagrad) {
  MOX_REQUIRE_CUDA();
  uint64_t seed = 4000;
  for (const DtPair& d : kDtypes)
    for (double lr_decay : {0.0, 0.1})
      for (double wd : {0.0, 1e-2}) {
        std::string what = name(d) + " lr_decay " + std::to_string(lr_decay) + " wd " +
                           std::to_string(wd);
        SCOPED_TRACE(what);
        const int64_t n = 3001;
        State s = make_state(n, d.param, 1, seed++, /*positive_state=*/true);
        for (int64_t step = 1; step <= 3; step++) {
          AdagradParams p{0.1, lr_decay, wd, 1e-10, step};
          Grad g = make_grad(n, d.param, d.grad, seed++);
          cpu_be().adagrad_update(s.p_cpu, g.cpu, s.s_cpu[0], p);
          gpu_be().adagrad_update(s.p_dev, g.dev, s.s_dev[0], p);
        }
        expect_state(s, d.param, what);
      }
}

TEST(CudaOptim, Errors) {
  MOX_REQUIRE_CUDA();
  Tensor p = zeros({10}, TensorOptions(DType::F32, kCUDA));
  Tensor g = zeros({10}, TensorOptions(DType::F32, kCUDA));
  Tensor m = zeros({10}, TensorOptions(DType::F32, kCUDA));
  AdamParams ap{1e-3, 0.9, 0.999, 1e-8, 0.0, 1, false, true};
  EXPECT_THROW(gpu_be().adam_update(p, g, m, m, Tensor(), ap), Error);  // amsgrad needs vmax
  ap.amsgrad = false;
  ap.step = 0;
  EXPECT_THROW(gpu_be().adam_update(p, g, m, m, Tensor(), ap), Error);
  Tensor g_bad = zeros({9}, TensorOptions(DType::F32, kCUDA));
  ap.step = 1;
  EXPECT_THROW(gpu_be().adam_update(p, g_bad, m, m, Tensor(), ap), Error);
  SgdParams sp{0.1, 0.9, 0.0, 0.0, false, true};
  EXPECT_THROW(gpu_be().sgd_update(p, g, Tensor(), sp), Error);  // momentum needs a buffer
}

}  // namespace
}  // namespace mox::testing
