#pragma once
// Image augmentation for whole training batches: each transform maps an f32 batch
// [N, C, H, W] (values typically in [0, 1]) to a new tensor, never touching its input.
// Random transforms draw their parameters from a Generator, image by image in batch order
// and before any pixel work, so one seed gives one output whatever the thread count.
// Pixel loops are plain single-threaded C++: at data-set image sizes they are cheap next
// to the model, and only backend/ code parallelises.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mox/data/dataset.h"
#include "mox/tensor/generator.h"
#include "mox/tensor/tensor.h"

namespace mox::data {

class Transform {
 public:
  virtual ~Transform() = default;
  // batch f32 [N, C, H, W] -> a fresh tensor (its shape depends on the transform).
  virtual Tensor apply(const Tensor& batch, Generator& g) const = 0;
  // Name and parameters, e.g. "RandomCrop(size=[32, 32], padding=4)", for logs.
  virtual std::string describe() const = 0;
};

using TransformPtr = std::shared_ptr<const Transform>;

// Applies its transforms in order; an empty list copies the batch.
class Compose : public Transform {
 public:
  explicit Compose(std::vector<TransformPtr> transforms);
  Tensor apply(const Tensor& batch, Generator& g) const override;
  std::string describe() const override;
  const std::vector<TransformPtr>& transforms() const { return transforms_; }

 private:
  std::vector<TransformPtr> transforms_;
};

// Zero-pads each side by `padding`, then crops a random size_h x size_w window
// (torchvision RandomCrop): [N, C, H, W] -> [N, C, size_h, size_w].
class RandomCrop : public Transform {
 public:
  RandomCrop(int64_t size, int64_t padding = 0) : RandomCrop(size, size, padding) {}
  RandomCrop(int64_t size_h, int64_t size_w, int64_t padding);
  struct Offset {
    int64_t top, left;  // the window's corner in padded coordinates
  };
  // The offsets apply() draws for n images of h x w (consumes g the same way).
  std::vector<Offset> draw(int64_t n, int64_t h, int64_t w, Generator& g) const;
  Tensor apply(const Tensor& batch, Generator& g) const override;
  std::string describe() const override;

 private:
  int64_t size_h_, size_w_, padding_;
};

// Mirrors each image left-right with probability p.
class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  Tensor apply(const Tensor& batch, Generator& g) const override;
  std::string describe() const override;

 private:
  double p_;
};

// Rotates each image about its centre by an angle uniform in [min_degrees, max_degrees]
// (positive = counter-clockwise, as torchvision's rotate), bilinear, zero fill outside.
class RandomRotation : public Transform {
 public:
  explicit RandomRotation(double max_degrees) : RandomRotation(-max_degrees, max_degrees) {}
  RandomRotation(double min_degrees, double max_degrees);
  Tensor apply(const Tensor& batch, Generator& g) const override;
  std::string describe() const override;

 private:
  double min_deg_, max_deg_;
};

// Shifts each image by whole pixels, dx uniform in [-max_dx_fraction * W, +...] rounded
// (torchvision RandomAffine's translate), likewise dy; zero fill.
class RandomTranslation : public Transform {
 public:
  RandomTranslation(double max_dx_fraction, double max_dy_fraction);
  struct Shift {
    int64_t dx, dy;  // out[y][x] = in[y - dy][x - dx]
  };
  std::vector<Shift> draw(int64_t n, int64_t h, int64_t w, Generator& g) const;
  Tensor apply(const Tensor& batch, Generator& g) const override;
  std::string describe() const override;

 private:
  double fx_, fy_;
};

// ColorJitter's brightness and contrast: x * b with b uniform in [1-brightness,
// 1+brightness], clamped to [0, 1]; then c * x + (1 - c) * mean(image) with c uniform in
// [1-contrast, 1+contrast], clamped again.
class RandomBrightnessContrast : public Transform {
 public:
  RandomBrightnessContrast(double brightness, double contrast);
  Tensor apply(const Tensor& batch, Generator& g) const override;
  std::string describe() const override;

 private:
  double brightness_, contrast_;
};

// With probability p zeroes a size x size square (all channels) centred on a uniformly
// random pixel; the square is clipped where it reaches past the border (DeVries & Taylor).
class Cutout : public Transform {
 public:
  Cutout(int64_t size, double p = 1.0);
  struct Square {
    bool applied;
    int64_t top, left;  // may be negative; the square is [top, top+size) x [left, left+size)
  };
  std::vector<Square> draw(int64_t n, int64_t h, int64_t w, Generator& g) const;
  Tensor apply(const Tensor& batch, Generator& g) const override;
  std::string describe() const override;

 private:
  int64_t size_;
  double p_;
};

// (x - mean[c]) / std[c] per channel; deterministic, the generator is not used.
class Normalize : public Transform {
 public:
  Normalize(std::vector<double> mean, std::vector<double> std);
  Tensor apply(const Tensor& batch, Generator& g) const override;
  Tensor apply(const Tensor& batch) const;
  std::string describe() const override;

 private:
  std::vector<double> mean_, std_;
};

struct ChannelStats {
  std::vector<double> mean, std;  // per channel; std is the population std (divides by n)
};

// Per-channel mean and std of images [N, C, ...] (f32 or f64), over every other dim:
// compute on the training split, then build Normalize(stats.mean, stats.std).
ChannelStats compute_channel_stats(const Tensor& images);

// Replaces batch.input by transform.apply(batch.input, g).
void augment(Batch& batch, const Transform& transform, Generator& g);

}  // namespace mox::data
