#pragma once
// A stand-in GPU for machines without one: a backend registered as cuda:0 whose memory
// comes from its own allocator and whose kernels are the CPU's, run on host aliases of
// the device tensors. Every kernel checks that each tensor it is handed lives on the
// device, so a CPU tensor reaching a device kernel (a missing .to(device) in a model, the
// Trainer, the pre-training loop, generation...) fails with a mox::Error here exactly where
// a real GPU would read a host pointer. Installed by a test binary's main-time setup; the
// CUDA parity tests live in another binary (tests/cuda) and never see it.
#include <atomic>
#include <cstdlib>

#include "mox/backend/backend.h"

namespace mox::testing {

class LoopbackBackend final : public Backend {
 public:
  static constexpr Device kDevice{DeviceType::CUDA, 0};
  // Registers one process-wide instance as the cuda backend (idempotent).
  static LoopbackBackend& install() {
    static LoopbackBackend* b = [] {
      auto* x = new LoopbackBackend();
      register_backend(DeviceType::CUDA, x);
      return x;
    }();
    return *b;
  }
  int64_t kernels() const { return kernels_; }

  Device device() const override { return kDevice; }
  Allocator& allocator() override { return alloc_; }

  void copy(const Tensor& src, const Tensor& dst) override { k(); cpu().copy(h(src), h(dst)); }
  void copy_from_host(const void* src, const Tensor& dst) override {
    k();
    cpu().copy_from_host(src, h(dst));
  }
  void copy_to_host(const Tensor& src, void* dst) override { k(); cpu().copy_to_host(h(src), dst); }
  void fill(const Tensor& dst, double v) override { k(); cpu().fill(h(dst), v); }
  void arange(const Tensor& dst, double a, double s) override { k(); cpu().arange(h(dst), a, s); }
  void uniform(const Tensor& d, double lo, double hi, Generator& g) override { k(); cpu().uniform(h(d), lo, hi, g); }
  void normal(const Tensor& d, double m, double s, Generator& g) override { k(); cpu().normal(h(d), m, s, g); }
  void bernoulli(const Tensor& d, double p, Generator& g) override { k(); cpu().bernoulli(h(d), p, g); }
  void randint(const Tensor& d, int64_t lo, int64_t hi, Generator& g) override { k(); cpu().randint(h(d), lo, hi, g); }
  void unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams p) override {
    k();
    cpu().unary(op, h(x), h(out), p);
  }
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                      const Tensor& gx, UnaryParams p) override {
    k();
    cpu().unary_backward(op, h(x), h(y), h(gy), h(gx), p);
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override {
    k();
    cpu().binary(op, h(a), h(b), h(out));
  }
  void where(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor& out) override {
    k();
    cpu().where(h(c), h(a), h(b), h(out));
  }
  void reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, const Tensor& out) override {
    k();
    cpu().reduce(op, h(x), axes, h(out));
  }
  void reduce_arg(ReduceOp op, const Tensor& x, int64_t dim, const Tensor& out, const Tensor& idx) override {
    k();
    cpu().reduce_arg(op, h(x), dim, h(out), h(idx));
  }
  void gemm(const Tensor& a, const Tensor& b, const Tensor& out, bool ta, bool tb, double al,
            double be) override {
    k();
    cpu().gemm(h(a), h(b), h(out), ta, tb, al, be);
  }
  void conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& out,
              const Conv2dParams& p) override {
    k();
    cpu().conv2d(h(x), h(w), h(b), h(out), p);
  }
  void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy, const Tensor& gx,
                       const Tensor& gw, const Tensor& gb, const Conv2dParams& p,
                       const Tensor& relu_out) override {
    k();
    cpu().conv2d_backward(h(x), h(w), h(gy), h(gx), h(gw), h(gb), p, h(relu_out));
  }
  void max_pool2d(const Tensor& x, const Tensor& out, const Tensor& idx, const Pool2dParams& p) override {
    k();
    cpu().max_pool2d(h(x), h(out), h(idx), p);
  }
  void max_pool2d_backward(const Tensor& gy, const Tensor& idx, const Tensor& gx) override {
    k();
    cpu().max_pool2d_backward(h(gy), h(idx), h(gx));
  }
  void avg_pool2d(const Tensor& x, const Tensor& out, const Pool2dParams& p) override {
    k();
    cpu().avg_pool2d(h(x), h(out), p);
  }
  void avg_pool2d_backward(const Tensor& gy, const Tensor& gx, const Pool2dParams& p) override {
    k();
    cpu().avg_pool2d_backward(h(gy), h(gx), p);
  }
  void softmax(const Tensor& x, const Tensor& out, bool log) override { k(); cpu().softmax(h(x), h(out), log); }
  void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) override {
    k();
    cpu().softmax_backward(h(y), h(gy), h(gx), log);
  }
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& out,
                  const Tensor& mean, const Tensor& rstd) override {
    k();
    cpu().layer_norm(h(x), h(w), h(b), eps, h(out), h(mean), h(rstd));
  }
  void layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, const Tensor& gx, const Tensor& gw,
                           const Tensor& gb) override {
    k();
    cpu().layer_norm_backward(h(gy), h(x), h(w), h(mean), h(rstd), h(gx), h(gw), h(gb));
  }
  void cross_entropy(const Tensor& z, const Tensor& t, double s, const Tensor& losses,
                     const Tensor& grad, double gs) override {
    k();
    cpu().cross_entropy(h(z), h(t), s, h(losses), h(grad), gs);
  }
  void index_select(const Tensor& src, int64_t dim, const Tensor& idx, const Tensor& out) override {
    k();
    cpu().index_select(h(src), dim, h(idx), h(out));
  }
  void index_add(const Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src) override {
    k();
    cpu().index_add(h(dst), dim, h(idx), h(src));
  }
  void gather(const Tensor& src, int64_t dim, const Tensor& idx, const Tensor& out) override {
    k();
    cpu().gather(h(src), dim, h(idx), h(out));
  }
  void scatter_add(const Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src) override {
    k();
    cpu().scatter_add(h(dst), dim, h(idx), h(src));
  }
  void adam_update(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                   const Tensor& vmax, const AdamParams& ap) override {
    k();
    cpu().adam_update(h(p), h(g), h(m), h(v), h(vmax), ap);
  }
  void adam_update_multi(const std::vector<Tensor>& ps, const std::vector<Tensor>& gs,
                         const std::vector<Tensor>& ms, const std::vector<Tensor>& vs,
                         const std::vector<AdamParams>& ap) override {
    k();
    multi_calls_++;
    cpu().adam_update_multi(hs(ps), hs(gs), hs(ms), hs(vs), ap);
  }
  void sgd_update(const Tensor& p, const Tensor& g, const Tensor& mb, const SgdParams& sp) override {
    k();
    cpu().sgd_update(h(p), h(g), h(mb), sp);
  }
  void rmsprop_update(const Tensor& p, const Tensor& g, const Tensor& sa, const Tensor& mb,
                      const Tensor& ga, const RmspropParams& rp) override {
    k();
    cpu().rmsprop_update(h(p), h(g), h(sa), h(mb), h(ga), rp);
  }
  void adagrad_update(const Tensor& p, const Tensor& g, const Tensor& ss, const AdagradParams& ap) override {
    k();
    cpu().adagrad_update(h(p), h(g), h(ss), ap);
  }
  void attention(const Tensor& q, const Tensor& kk, const Tensor& v, const Tensor& mask, bool causal,
                 double scale, const Tensor& out, const Tensor& lse) override {
    k();
    cpu().attention(h(q), h(kk), h(v), h(mask), causal, scale, h(out), h(lse));
  }
  void attention_backward(const Tensor& q, const Tensor& kk, const Tensor& v, const Tensor& mask,
                          bool causal, double scale, const Tensor& out, const Tensor& lse,
                          const Tensor& gout, const Tensor& gq, const Tensor& gk,
                          const Tensor& gv) override {
    k();
    cpu().attention_backward(h(q), h(kk), h(v), h(mask), causal, scale, h(out), h(lse), h(gout),
                             h(gq), h(gk), h(gv));
  }
  int64_t multi_calls() const { return multi_calls_; }

 private:
  struct HostAlloc final : Allocator {
    void* allocate(size_t n) override { return std::aligned_alloc(64, (n + 63) / 64 * 64); }
    void deallocate(void* p, size_t) override { std::free(p); }
  };
  static Backend& cpu() { return backend_for(kCPU); }
  void k() { kernels_++; }
  // The CPU view of a device tensor; throws when t is not on the device.
  static Tensor h(const Tensor& t) {
    if (!t.defined()) return t;
    if (t.device() != kDevice)
      throw Error("loopback cuda", "a kernel was handed " + t.desc() + " on " + t.device().str() +
                                       " (missing .to(device))");
    auto impl = std::make_shared<TensorImpl>(*t.impl());
    impl->grad.reset();
    impl->grad_fn.reset();
    impl->storage = std::make_shared<Storage>(t.storage()->data(), t.storage()->nbytes(), kCPU,
                                              std::shared_ptr<void>(t.storage(), nullptr));
    return Tensor(impl);
  }
  static std::vector<Tensor> hs(const std::vector<Tensor>& v) {
    std::vector<Tensor> r;
    for (const Tensor& t : v) r.push_back(h(t));
    return r;
  }
  HostAlloc alloc_;
  std::atomic<int64_t> kernels_{0}, multi_calls_{0};
};

}  // namespace mox::testing
