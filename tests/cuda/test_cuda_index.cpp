// CUDA vs CPU parity for cuda_index.cu: index_select / index_add along every dim (repeated
// indices, every dtype), gather / scatter_add with strided index, source and destination,
// and the bounds checks (a bad index throws mox::Error and leaves the destination as it was).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "mox/tensor/generator.h"

namespace mox::testing {
namespace {

Backend& cpu_be() { return backend_for(kCPU); }
Backend& gpu_be() { return backend_for(kCUDA); }
Tensor dev_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt, kCUDA)); }
Tensor cpu_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt)); }

// Random values of dtype dt: small integers for the integer types.
Tensor values(const Shape& s, DType dt, Generator& g) {
  if (is_floating(dt)) return randn(s, &g).to(dt);
  return randint(dt == DType::U8 ? 0 : -20, 20, s, &g, TensorOptions(DType::I64)).to(dt);
}

void expect_same(const Tensor& dev, const Tensor& ref) {
  EXPECT_EQ(dev.to(kCPU).contiguous().to_vector<double>(), ref.contiguous().to_vector<double>());
}

// Sums: atomics add in any order, so floating results match within the dtype's tolerance.
// bf16/f16 are compared with an f32 CPU result of the same rounded inputs.
void expect_sum_parity(const Tensor& dev, const Tensor& ref, DType dt) {
  if (is_floating(dt)) {
    EXPECT_PARITY(dev, ref, dt);
  } else {
    expect_same(dev, ref);
  }
}

DType ref_dtype(DType dt) { return dt == DType::BF16 || dt == DType::F16 ? DType::F32 : dt; }

const DType kAll[] = {DType::F32, DType::BF16, DType::F64, DType::F16, DType::I64, DType::I32, DType::I8, DType::U8};

TEST(CudaIndex, IndexSelect) {
  MOX_REQUIRE_CUDA();
  Generator g(1);
  for (DType dt : kAll)
    for (int64_t dim : {0, 1, 2}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " dim " + std::to_string(dim));
      const Shape s{7, 13, 5};
      Tensor src = values(s, dt, g);
      Tensor idx = randint(0, s[size_t(dim)], {23}, &g, TensorOptions(DType::I64));  // repeats
      Shape os = s;
      os[size_t(dim)] = 23;
      Tensor ref = cpu_empty(os, dt), out = dev_empty(os, dt);
      cpu_be().index_select(src, dim, idx, ref);
      gpu_be().index_select(src.to(kCUDA), dim, idx.to(kCUDA), out);
      expect_same(out, ref);
    }
  // Embedding-like rows of many widths (16-byte, 8-byte and narrower units).
  for (int64_t width : {1, 3, 8, 64, 768, 1001}) {
    Tensor w = randn({500, width}, &g);
    Tensor idx = randint(0, 500, {1000}, &g, TensorOptions(DType::I64));
    Tensor ref = cpu_empty({1000, width}, DType::F32), out = dev_empty({1000, width}, DType::F32);
    cpu_be().index_select(w, 0, idx, ref);
    gpu_be().index_select(w.to(kCUDA), 0, idx.to(kCUDA), out);
    expect_same(out, ref);
  }
}

TEST(CudaIndex, IndexAdd) {
  MOX_REQUIRE_CUDA();
  Generator g(2);
  for (DType dt : kAll)
    for (int64_t dim : {0, 1, 2}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " dim " + std::to_string(dim));
      const Shape s{6, 11, 9};
      Tensor dst = values(s, dt, g);
      Tensor idx = randint(0, s[size_t(dim)], {31}, &g, TensorOptions(DType::I64));  // repeats
      Shape ss = s;
      ss[size_t(dim)] = 31;
      Tensor src = values(ss, dt, g);
      Tensor ref = dst.to(ref_dtype(dt)).clone();
      cpu_be().index_add(ref, dim, idx, src.to(ref_dtype(dt)));
      Tensor out = dst.to(kCUDA).clone();
      gpu_be().index_add(out, dim, idx.to(kCUDA), src.to(kCUDA));
      expect_sum_parity(out, ref, dt);
    }
  // Embedding backward shape: many rows into few, wide.
  Tensor gw = zeros({50, 256});
  Tensor idx = randint(0, 50, {4096}, &g, TensorOptions(DType::I64));
  Tensor gsrc = randn({4096, 256}, &g);
  Tensor ref = gw.clone();
  cpu_be().index_add(ref, 0, idx, gsrc);
  Tensor out = gw.to(kCUDA);
  gpu_be().index_add(out, 0, idx.to(kCUDA), gsrc.to(kCUDA));
  EXPECT_PARITY(out, ref, DType::F32);
}

TEST(CudaIndex, GatherScatterAdd) {
  MOX_REQUIRE_CUDA();
  Generator g(3);
  for (DType dt : kAll)
    for (int64_t dim : {0, 1, 2}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " dim " + std::to_string(dim));
      const Shape s{8, 9, 10};
      Shape is{5, 6, 7};
      is[size_t(dim)] = 12;  // longer than the source along dim: repeats
      Tensor src = values(s, dt, g);
      Tensor idx = randint(0, s[size_t(dim)], is, &g, TensorOptions(DType::I64));
      // gather
      Tensor ref = cpu_empty(is, dt), out = dev_empty(is, dt);
      cpu_be().gather(src, dim, idx, ref);
      gpu_be().gather(src.to(kCUDA), dim, idx.to(kCUDA), out);
      expect_same(out, ref);
      // scatter_add of values shaped like the index into a copy of src
      Tensor upd = values(is, dt, g);
      Tensor sref = src.to(ref_dtype(dt)).clone();
      cpu_be().scatter_add(sref, dim, idx, upd.to(ref_dtype(dt)));
      Tensor sout = src.to(kCUDA).clone();
      gpu_be().scatter_add(sout, dim, idx.to(kCUDA), upd.to(kCUDA));
      expect_sum_parity(sout, sref, dt);
    }
}

TEST(CudaIndex, GatherScatterStrided) {
  MOX_REQUIRE_CUDA();
  Generator g(4);
  // Transposed source, transposed index, strided output / destination.
  Tensor src = randn({12, 10}, &g);          // viewed as [10, 12]
  Tensor idx = randint(0, 12, {9, 10}, &g, TensorOptions(DType::I64));  // viewed as [10, 9]
  for (int64_t dim : {1}) {
    Tensor ref = cpu_empty({10, 9}, DType::F32);
    cpu_be().gather(src.t(), dim, idx.t(), ref);
    Tensor wide = dev_empty({10, 18}, DType::F32);
    gpu_be().fill(wide, 0.0);
    Tensor out = wide.slice(1, 0, 18, 2);
    gpu_be().gather(src.to(kCUDA).t(), dim, idx.to(kCUDA).t(), out);
    expect_same(out, ref);

    Tensor upd = randn({9, 10}, &g);  // viewed as [10, 9]
    Tensor dref = zeros({10, 12});
    cpu_be().scatter_add(dref, dim, idx.t(), upd.t());
    Tensor dwide = dev_empty({10, 24}, DType::F32);
    gpu_be().fill(dwide, 0.0);
    Tensor dout = dwide.slice(1, 0, 24, 2);
    gpu_be().scatter_add(dout, dim, idx.to(kCUDA).t(), upd.to(kCUDA).t());
    EXPECT_PARITY(dout, dref, DType::F32);
  }
  // Cross-entropy style: gather one column per row.
  Tensor logits = randn({1000, 37}, &g);
  Tensor tgt = randint(0, 37, {1000, 1}, &g, TensorOptions(DType::I64));
  Tensor ref = cpu_empty({1000, 1}, DType::F32), out = dev_empty({1000, 1}, DType::F32);
  cpu_be().gather(logits, 1, tgt, ref);
  gpu_be().gather(logits.to(kCUDA), 1, tgt.to(kCUDA), out);
  expect_same(out, ref);
}

TEST(CudaIndex, OutOfBoundsThrows) {
  MOX_REQUIRE_CUDA();
  Tensor src = randn({5, 4}).to(kCUDA);
  Tensor bad = from_vector<int64_t>({0, 2, 5, 1}, {4}).to(kCUDA);
  Tensor neg = from_vector<int64_t>({0, -1}, {2}).to(kCUDA);
  Tensor out = dev_empty({4, 4}, DType::F32);
  EXPECT_THROW(gpu_be().index_select(src, 0, bad, out), Error);
  try {
    gpu_be().index_select(src, 0, bad, out);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 5 is out of bounds for dim 0 with size 5"), std::string::npos)
        << e.what();
  }
  Tensor out2 = dev_empty({2, 4}, DType::F32);
  EXPECT_THROW(gpu_be().index_select(src, 0, neg, out2), Error);
  // index_add: the destination is untouched.
  Tensor dst = zeros({5, 4}).to(kCUDA);
  Tensor add = ones({4, 4}).to(kCUDA);
  EXPECT_THROW(gpu_be().index_add(dst, 0, bad, add), Error);
  for (double v : dst.to(kCPU).to_vector<double>()) EXPECT_EQ(v, 0.0);
  // gather / scatter_add along dim 1.
  Tensor gi = from_vector<int64_t>({0, 1, 2, 3, 4, 0}, {2, 3}).to(kCUDA);  // 4 is out of [0, 4)
  Tensor gout = dev_empty({2, 3}, DType::F32);
  EXPECT_THROW(gpu_be().gather(src, 1, gi, gout), Error);
  Tensor sdst = zeros({5, 4}).to(kCUDA);
  EXPECT_THROW(gpu_be().scatter_add(sdst, 1, gi, ones({2, 3}).to(kCUDA)), Error);
  for (double v : sdst.to(kCPU).to_vector<double>()) EXPECT_EQ(v, 0.0);
  // The device still works afterwards.
  Tensor ok = from_vector<int64_t>({4, 0}, {2}).to(kCUDA);
  gpu_be().index_select(src, 0, ok, out2);
  EXPECT_EQ(out2.to(kCPU).to_vector<float>()[0], src.to(kCPU).to_vector<float>()[16]);
}

TEST(CudaIndex, ThroughOps) {
  MOX_REQUIRE_CUDA();
  Generator g(8);
  Tensor w = randn({100, 16}, &g);
  Tensor idx = randint(0, 100, {3, 7}, &g, TensorOptions(DType::I64));
  Tensor ref = index_select(w, 0, idx.reshape({21}));
  Tensor out = index_select(w.to(kCUDA), 0, idx.to(kCUDA).reshape({21}));
  EXPECT_EQ(out.to(kCPU).to_vector<float>(), ref.to_vector<float>());
  Tensor gi = randint(0, 16, {100, 4}, &g, TensorOptions(DType::I64));
  EXPECT_EQ(gather(w.to(kCUDA), 1, gi.to(kCUDA)).to(kCPU).to_vector<float>(), gather(w, 1, gi).to_vector<float>());
}

}  // namespace
}  // namespace mox::testing
