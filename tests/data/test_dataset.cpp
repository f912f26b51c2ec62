#include <gtest/gtest.h>

#include "mox/data/dataset.h"
#include "mox/mox.h"

using namespace mox;

TEST(TensorDataset, ExamplesAndBatches) {
  Tensor x = arange(0, 24, 1).reshape({6, 2, 2});
  Tensor y = arange(6);
  data::TensorDataset ds(x, y);
  EXPECT_EQ(ds.size(), 6);
  data::Example e = ds.get(4);
  EXPECT_EQ(e.input.to_vector<float>(), (std::vector<float>{16, 17, 18, 19}));
  EXPECT_EQ(e.target.item<int64_t>(), 4);
  data::Batch b = ds.get_batch({5, 0, 5});
  EXPECT_EQ(b.input.shape(), (Shape{3, 2, 2}));
  EXPECT_EQ(b.target.to_vector<int64_t>(), (std::vector<int64_t>{5, 0, 5}));
  // The generic path (stack of get(i)) agrees with the gather override.
  data::Batch g = ds.data::Dataset::get_batch({5, 0, 5});
  EXPECT_TRUE(allclose(g.input, b.input, 0, 0));
  EXPECT_THROW(ds.get(6), Error);
  EXPECT_THROW(ds.get_batch({0, -1}), Error);
  EXPECT_THROW(data::TensorDataset(x, arange(5)), Error);
}
