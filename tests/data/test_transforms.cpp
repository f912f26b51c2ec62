// Image batch augmentation: seeded determinism, exact geometry of flip / rotation / crop /
// translation / cutout against hand-built expectations, value ranges of brightness and
// contrast, Normalize and channel statistics by hand, and the errors for bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "mox/data/transforms/image.h"

namespace mox::data {
namespace {

// Uniform [0, 1) images [n, c, h, w] from a fixed seed.
Tensor images(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed = 7) {
  Generator g(seed);
  return rand({n, c, h, w}, &g);
}

float at(const Tensor& t, int64_t n, int64_t c, int64_t y, int64_t x) {
  return t.contiguous().data<float>()[((n * t.size(1) + c) * t.size(2) + y) * t.size(3) + x];
}

std::shared_ptr<Compose> all_random() {
  return std::make_shared<Compose>(std::vector<TransformPtr>{
      std::make_shared<RandomCrop>(8, 2), std::make_shared<RandomHorizontalFlip>(0.5),
      std::make_shared<RandomRotation>(15.0), std::make_shared<RandomTranslation>(0.2, 0.2),
      std::make_shared<RandomBrightnessContrast>(0.3, 0.3), std::make_shared<Cutout>(3, 0.7)});
}

TEST(Transforms, SameSeedSameOutputDifferentSeedDiffers) {
  const Tensor x = images(6, 3, 8, 8);
  const auto t = all_random();
  Generator a(11), b(11), c(12);
  const auto ya = t->apply(x, a).to_vector<float>();
  const auto yb = t->apply(x, b).to_vector<float>();
  const auto yc = t->apply(x, c).to_vector<float>();
  EXPECT_EQ(ya, yb);
  EXPECT_NE(ya, yc);
  // The input is never modified.
  EXPECT_EQ(x.to_vector<float>(), images(6, 3, 8, 8).to_vector<float>());
}

TEST(Transforms, NonContiguousInputMatchesContiguous) {
  const Tensor x = images(4, 2, 6, 6);
  const Tensor nc = x.permute({0, 1, 3, 2}).contiguous().permute({0, 1, 3, 2});  // same values
  ASSERT_FALSE(nc.is_contiguous());
  const auto t = all_random();
  Generator a(3), b(3);
  EXPECT_EQ(t->apply(x, a).to_vector<float>(), t->apply(nc, b).to_vector<float>());
}

TEST(Transforms, FlipWithPOneMirrorsAndPZeroKeeps) {
  const Tensor x = images(3, 2, 4, 5);
  Generator g(1);
  const Tensor y = RandomHorizontalFlip(1.0).apply(x, g);
  for (int64_t n = 0; n < 3; n++)
    for (int64_t c = 0; c < 2; c++)
      for (int64_t r = 0; r < 4; r++)
        for (int64_t q = 0; q < 5; q++) EXPECT_EQ(at(y, n, c, r, q), at(x, n, c, r, 4 - q));
  EXPECT_EQ(RandomHorizontalFlip(0.0).apply(x, g).to_vector<float>(), x.to_vector<float>());
}

TEST(Transforms, FlipHalfFlipsSomeImages) {
  const Tensor x = images(64, 1, 2, 3);
  Generator g(5);
  const Tensor y = RandomHorizontalFlip(0.5).apply(x, g);
  int flipped = 0;
  for (int64_t n = 0; n < 64; n++) flipped += at(y, n, 0, 0, 0) != at(x, n, 0, 0, 0);
  EXPECT_GT(flipped, 10);
  EXPECT_LT(flipped, 54);
}

TEST(Transforms, RotationByNinetyIsTorchRot90) {
  // torchvision rotate(img, 90) == torch.rot90(img, 1, [-2, -1]): out[i][j] = in[j][W-1-i].
  const Tensor x = images(2, 2, 5, 5);
  Generator g(2);
  const Tensor y = RandomRotation(90.0, 90.0).apply(x, g);
  for (int64_t n = 0; n < 2; n++)
    for (int64_t c = 0; c < 2; c++)
      for (int64_t i = 0; i < 5; i++)
        for (int64_t j = 0; j < 5; j++) EXPECT_NEAR(at(y, n, c, i, j), at(x, n, c, j, 4 - i), 1e-6);
  // A known 2x2 image: [[1, 2], [3, 4]] turned anticlockwise is [[2, 4], [1, 3]].
  const Tensor k = from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2});
  EXPECT_EQ(RandomRotation(90.0, 90.0).apply(k, g).to_vector<float>(),
            (std::vector<float>{2, 4, 1, 3}));
}

TEST(Transforms, RotationBy180OnNonSquareAndZeroIsIdentity) {
  const Tensor x = images(1, 3, 4, 7);
  Generator g(4);
  const Tensor y = RandomRotation(180.0, 180.0).apply(x, g);
  for (int64_t c = 0; c < 3; c++)
    for (int64_t i = 0; i < 4; i++)
      for (int64_t j = 0; j < 7; j++) EXPECT_NEAR(at(y, 0, c, i, j), at(x, 0, c, 3 - i, 6 - j), 1e-6);
  EXPECT_EQ(RandomRotation(0.0).apply(x, g).to_vector<float>(), x.to_vector<float>());
}

TEST(Transforms, RotationInterpolatesAndFillsZero) {
  // 45 degrees of a constant image: the centre stays 1, the corners fall outside (0), and
  // every value stays within [0, 1] (bilinear weights are convex).
  const Tensor x = ones({1, 1, 9, 9});
  Generator g(0);
  const Tensor y = RandomRotation(45.0, 45.0).apply(x, g);
  EXPECT_NEAR(at(y, 0, 0, 4, 4), 1.0f, 1e-6);
  EXPECT_NEAR(at(y, 0, 0, 0, 0), 0.0f, 1e-6);
  for (float v : y.to_vector<float>()) {
    EXPECT_GE(v, -1e-6f);
    EXPECT_LE(v, 1 + 1e-6f);
  }
  // Along the rotated border, bilinear sampling blends the image with the zero fill.
  bool some_fraction = false;
  for (float v : y.to_vector<float>()) some_fraction |= v > 0.01f && v < 0.99f;
  EXPECT_TRUE(some_fraction);
}

TEST(Transforms, FullSizeCropWithoutPaddingIsIdentity) {
  const Tensor x = images(3, 2, 6, 5);
  Generator g(9);
  EXPECT_EQ(RandomCrop(6, 5, 0).apply(x, g).to_vector<float>(), x.to_vector<float>());
}

TEST(Transforms, PaddedCropTakesTheDrawnWindow) {
  const Tensor x = images(5, 2, 6, 6);
  const RandomCrop crop(4, 3);  // 4x4 crop from a 12x12 padded image
  Generator g(21), h(21);
  const auto offs = crop.draw(5, 6, 6, h);
  const Tensor y = crop.apply(x, g);
  ASSERT_EQ(y.shape(), (Shape{5, 2, 4, 4}));
  for (int64_t n = 0; n < 5; n++)
    for (int64_t c = 0; c < 2; c++)
      for (int64_t r = 0; r < 4; r++)
        for (int64_t q = 0; q < 4; q++) {
          const int64_t sy = r + offs[size_t(n)].top - 3, sx = q + offs[size_t(n)].left - 3;
          const float want = (sy >= 0 && sy < 6 && sx >= 0 && sx < 6) ? at(x, n, c, sy, sx) : 0.0f;
          EXPECT_EQ(at(y, n, c, r, q), want);
        }
}

TEST(Transforms, TranslationMovesABrightPixelByTheDrawnShift) {
  const int64_t N = 16;
  Tensor x = zeros({N, 1, 9, 9});
  for (int64_t n = 0; n < N; n++) x.contiguous().data<float>()[n * 81 + 4 * 9 + 4] = 1.0f;
  const RandomTranslation tr(0.3, 0.3);  // up to 2.7 -> shifts in [-3, 3]
  for (uint64_t seed = 0; seed < 5; seed++) {
    Generator g(seed), h(seed);
    const auto shifts = tr.draw(N, 9, 9, h);
    const Tensor y = tr.apply(x, g);
    bool moved = false;
    for (int64_t n = 0; n < N; n++) {
      const auto s = shifts[size_t(n)];
      EXPECT_LE(std::abs(s.dx), 3);
      EXPECT_LE(std::abs(s.dy), 3);
      moved |= s.dx != 0 || s.dy != 0;
      EXPECT_EQ(at(y, n, 0, 4 + s.dy, 4 + s.dx), 1.0f);
      float total = 0;
      for (int64_t i = 0; i < 81; i++) total += y.data<float>()[n * 81 + i];
      EXPECT_EQ(total, 1.0f);
    }
    EXPECT_TRUE(moved);
  }
}

TEST(Transforms, TranslationFillsZeroAtTheBorder) {
  const Tensor x = ones({8, 1, 4, 4});
  const RandomTranslation tr(0.5, 0.5);
  Generator g(3), h(3);
  const auto shifts = tr.draw(8, 4, 4, h);
  const Tensor y = tr.apply(x, g);
  for (int64_t n = 0; n < 8; n++) {
    float total = 0;
    for (int64_t i = 0; i < 16; i++) total += y.data<float>()[n * 16 + i];
    const auto s = shifts[size_t(n)];
    EXPECT_EQ(total, float((4 - std::abs(s.dx)) * (4 - std::abs(s.dy))));
  }
}

TEST(Transforms, BrightnessContrastStayInRangeAndScale) {
  const Tensor x = images(20, 3, 5, 5);
  Generator g(8);
  for (float v : RandomBrightnessContrast(0.9, 0.9).apply(x, g).to_vector<float>()) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LE(v, 1.0f);
  }
  EXPECT_EQ(RandomBrightnessContrast(0, 0).apply(x, g).to_vector<float>(), x.to_vector<float>());
  // Brightness only, on values in [0, 0.5) so that factors in [0.5, 1.5] never clamp: each
  // image is the input times one factor in that range.
  const Tensor half = x * 0.5;
  const Tensor y = RandomBrightnessContrast(0.5, 0).apply(half, g);
  for (int64_t n = 0; n < 20; n++) {
    const double f = at(y, n, 0, 0, 0) / at(half, n, 0, 0, 0);
    EXPECT_GE(f, 0.5 - 1e-5);
    EXPECT_LE(f, 1.5 + 1e-5);
    for (int64_t c = 0; c < 3; c++)
      for (int64_t i = 0; i < 5; i++)
        EXPECT_NEAR(at(y, n, c, i, 2), f * at(half, n, c, i, 2), 1e-5);
  }
}

TEST(Transforms, ContrastKeepsTheMeanOfUnclampedImages) {
  // Values in [0.4, 0.6] with contrast factors in [0.5, 1.5] never clamp, so the blend
  // towards the mean keeps each image's mean.
  const Tensor x = images(10, 2, 4, 4) * 0.2 + 0.4;
  Generator g(6);
  const Tensor y = RandomBrightnessContrast(0, 0.5).apply(x, g);
  for (int64_t n = 0; n < 10; n++) {
    double mx = 0, my = 0;
    for (int64_t i = 0; i < 32; i++) {
      mx += x.contiguous().data<float>()[n * 32 + i];
      my += y.data<float>()[n * 32 + i];
    }
    EXPECT_NEAR(mx, my, 1e-4);
  }
}

TEST(Transforms, CutoutZeroesExactlyTheDrawnSquare) {
  const int64_t N = 32, S = 3;
  const Tensor x = ones({N, 2, 10, 10});
  const Cutout cut(S, 1.0);
  Generator g(13), h(13);
  const auto sq = cut.draw(N, 10, 10, h);
  const Tensor y = cut.apply(x, g);
  int inside = 0;
  for (int64_t n = 0; n < N; n++) {
    const auto s = sq[size_t(n)];
    ASSERT_TRUE(s.applied);
    int zeros_seen = 0;
    for (int64_t c = 0; c < 2; c++)
      for (int64_t r = 0; r < 10; r++)
        for (int64_t q = 0; q < 10; q++) {
          const bool in_sq = r >= s.top && r < s.top + S && q >= s.left && q < s.left + S;
          EXPECT_EQ(at(y, n, c, r, q), in_sq ? 0.0f : 1.0f);
          zeros_seen += at(y, n, c, r, q) == 0.0f;
        }
    if (s.top >= 0 && s.left >= 0 && s.top + S <= 10 && s.left + S <= 10) {
      inside++;
      EXPECT_EQ(zeros_seen, 2 * S * S);
    }
  }
  EXPECT_GT(inside, 0);
  EXPECT_EQ(Cutout(S, 0.0).apply(x, g).to_vector<float>(), x.to_vector<float>());
}

TEST(Transforms, NormalizeByHand) {
  const Tensor x = from_vector<float>({0, 0.5f, 1, 0.25f, 0.2f, 0.4f, 0.6f, 0.8f}, {1, 2, 2, 2});
  const Normalize norm({0.5, 0.5}, {0.25, 0.1});
  const auto y = norm.apply(x).to_vector<float>();
  const std::vector<float> want = {-2, 0, 2, -1, -3, -1, 1, 3};
  ASSERT_EQ(y.size(), want.size());
  for (size_t i = 0; i < y.size(); i++) EXPECT_NEAR(y[i], want[i], 1e-5);
  Generator g(0);
  EXPECT_EQ(norm.apply(x, g).to_vector<float>(), y);
}

TEST(Transforms, ChannelStatsByHandAndNormalizeToUnit) {
  // Channel 0 holds {1, 3, 5, 7}, channel 1 holds {2, 2, 2, 2}, split over two images.
  const Tensor x = from_vector<float>({1, 3, 2, 2, 5, 7, 2, 2}, {2, 2, 1, 2});
  const ChannelStats st = compute_channel_stats(x);
  ASSERT_EQ(st.mean.size(), 2u);
  EXPECT_NEAR(st.mean[0], 4.0, 1e-12);
  EXPECT_NEAR(st.std[0], std::sqrt(5.0), 1e-12);  // deviations 9, 1, 1, 9 over 4
  EXPECT_NEAR(st.mean[1], 2.0, 1e-12);
  EXPECT_NEAR(st.std[1], 0.0, 1e-12);
  // Normalising by the statistics of a random batch gives mean 0, std 1 per channel.
  const Tensor r = images(8, 3, 5, 5);
  const ChannelStats rs = compute_channel_stats(r);
  const ChannelStats ns = compute_channel_stats(Normalize(rs.mean, rs.std).apply(r));
  for (int c = 0; c < 3; c++) {
    EXPECT_NEAR(ns.mean[size_t(c)], 0.0, 1e-5);
    EXPECT_NEAR(ns.std[size_t(c)], 1.0, 1e-5);
  }
  // f64 input works the same.
  EXPECT_NEAR(compute_channel_stats(x.to(DType::F64)).std[0], std::sqrt(5.0), 1e-12);
}

TEST(Transforms, AugmentReplacesTheBatchInput) {
  Batch b{images(2, 1, 3, 3), zeros({2}, DType::I64)};
  const Tensor before = b.input;
  Generator g(0);
  augment(b, RandomHorizontalFlip(1.0), g);
  EXPECT_EQ(at(b.input, 1, 0, 2, 0), at(before, 1, 0, 2, 2));
  EXPECT_EQ(b.target.shape(), (Shape{2}));
}

TEST(Transforms, Describe) {
  EXPECT_EQ(RandomCrop(32, 4).describe(), "RandomCrop(size=[32, 32], padding=4)");
  EXPECT_EQ(Cutout(8, 0.5).describe(), "Cutout(size=8, p=0.5)");
  EXPECT_EQ(Normalize({0.5}, {0.25}).describe(), "Normalize(mean=[0.5], std=[0.25])");
  EXPECT_EQ(all_random()->describe().rfind("Compose(RandomCrop(", 0), 0u);
}

TEST(Transforms, Errors) {
  Generator g(0);
  const Tensor x = images(2, 3, 4, 4);
  EXPECT_THROW(RandomHorizontalFlip().apply(zeros({3, 4, 4}), g), Error);    // rank 3
  EXPECT_THROW(RandomRotation(10.0).apply(zeros({2, 3, 4, 4}, DType::F64), g), Error);
  EXPECT_THROW(RandomCrop(6, 0).apply(x, g), Error);                         // larger than image
  EXPECT_THROW(RandomCrop(0, 1), Error);
  EXPECT_THROW(RandomCrop(3, -1), Error);
  EXPECT_THROW(RandomHorizontalFlip(1.5), Error);
  EXPECT_THROW(RandomRotation(10.0, -10.0), Error);
  EXPECT_THROW(RandomTranslation(-0.1, 0.1), Error);
  EXPECT_THROW(RandomBrightnessContrast(1.5, 0.1), Error);
  EXPECT_THROW(Cutout(0, 0.5), Error);
  EXPECT_THROW(Normalize({0.5, 0.5}, {0.25}), Error);
  EXPECT_THROW(Normalize({0.5}, {0.0}), Error);
  EXPECT_THROW(Normalize({0.5, 0.5}, {0.2, 0.2}).apply(x), Error);  // 3 channels, 2 stats
  EXPECT_THROW(compute_channel_stats(zeros({5})), Error);
  EXPECT_THROW(compute_channel_stats(zeros({2, 3}, DType::I64)), Error);
  EXPECT_THROW(Compose({nullptr}), Error);
  try {
    RandomCrop(3).apply(zeros({4, 4}), g);
    FAIL() << "expected mox::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "RandomCrop");
    EXPECT_NE(std::string(e.what()).find("[4, 4]"), std::string::npos);
  }
}

}  // namespace
}  // namespace mox::data
