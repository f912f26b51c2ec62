// Image batch augmentation (see image.h). Every random transform first draws all of its
// per-image parameters in batch order, then does the pixel work, so the generator stream
// is consumed identically however the pixel loops are run.
#include "mox/data/transforms/image.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>

namespace mox::data {
namespace {

// Checks batch is f32 [N, C, H, W] and returns it contiguous.
Tensor checked_batch(const Tensor& batch, const char* where) {
  MOX_CHECK(batch.defined(), where, "undefined batch");
  MOX_CHECK(batch.dim() == 4, where,
            "expects an image batch [N, C, H, W], got " + batch.desc());
  MOX_CHECK(batch.dtype() == DType::F32, where, "expects f32 images, got " + batch.desc());
  return batch.contiguous();
}

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Uniform in [lo, hi].
double uniform_in(Generator& g, double lo, double hi) { return lo + (hi - lo) * g.uniform(); }

// dst (oh, ow) = src (h, w) shifted: dst[y][x] = src[y + sy][x + sx] where that is inside
// src; dst must already hold zeros elsewhere. Crops and translations are both this.
void copy_shifted(const float* src, int64_t h, int64_t w, float* dst, int64_t oh, int64_t ow,
                  int64_t sy, int64_t sx) {
  const int64_t x0 = std::max<int64_t>(0, -sx), x1 = std::min(ow, w - sx);
  if (x0 >= x1) return;
  for (int64_t y = std::max<int64_t>(0, -sy); y < std::min(oh, h - sy); y++)
    std::copy(src + (y + sy) * w + x0 + sx, src + (y + sy) * w + x1 + sx, dst + y * ow + x0);
}

}  // namespace

// ---- Compose ----

Compose::Compose(std::vector<TransformPtr> transforms) : transforms_(std::move(transforms)) {
  for (const auto& t : transforms_) MOX_CHECK(t != nullptr, "Compose", "null transform in list");
}

Tensor Compose::apply(const Tensor& batch, Generator& g) const {
  Tensor x = checked_batch(batch, "Compose");
  if (transforms_.empty()) return x.clone();
  for (const auto& t : transforms_) x = t->apply(x, g);
  return x;
}

std::string Compose::describe() const {
  std::string s = "Compose(";
  for (size_t i = 0; i < transforms_.size(); i++) s += (i ? ", " : "") + transforms_[i]->describe();
  return s + ")";
}

// ---- RandomCrop ----

RandomCrop::RandomCrop(int64_t size_h, int64_t size_w, int64_t padding)
    : size_h_(size_h), size_w_(size_w), padding_(padding) {
  MOX_CHECK(size_h > 0 && size_w > 0, "RandomCrop",
            "size must be positive, got " + std::to_string(size_h) + "x" + std::to_string(size_w));
  MOX_CHECK(padding >= 0, "RandomCrop", "padding must be >= 0, got " + std::to_string(padding));
}

std::vector<RandomCrop::Offset> RandomCrop::draw(int64_t n, int64_t h, int64_t w, Generator& g) const {
  const int64_t ph = h + 2 * padding_, pw = w + 2 * padding_;
  MOX_CHECK(size_h_ <= ph && size_w_ <= pw, "RandomCrop",
            "crop " + std::to_string(size_h_) + "x" + std::to_string(size_w_) +
                " larger than padded image " + std::to_string(ph) + "x" + std::to_string(pw));
  std::vector<Offset> out(static_cast<size_t>(n));
  for (auto& o : out) {
    o.top = int64_t(g.below(uint64_t(ph - size_h_ + 1)));
    o.left = int64_t(g.below(uint64_t(pw - size_w_ + 1)));
  }
  return out;
}

Tensor RandomCrop::apply(const Tensor& batch, Generator& g) const {
  Tensor x = checked_batch(batch, "RandomCrop");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const auto offs = draw(N, H, W, g);
  Tensor out = zeros({N, C, size_h_, size_w_});
  const float* in = x.data<float>();
  float* o = out.data<float>();
  // x (N,C,H,W) -> out (N,C,sh,sw); out[i, y, x] = in[y + top - pad, x + left - pad] or 0
  for (int64_t n = 0; n < N; n++) {
    const int64_t dy = offs[size_t(n)].top - padding_, dx = offs[size_t(n)].left - padding_;
    for (int64_t c = 0; c < C; c++)
      copy_shifted(in + (n * C + c) * H * W, H, W, o + (n * C + c) * size_h_ * size_w_, size_h_,
                   size_w_, dy, dx);
  }
  return out;
}

std::string RandomCrop::describe() const {
  return "RandomCrop(size=[" + std::to_string(size_h_) + ", " + std::to_string(size_w_) +
         "], padding=" + std::to_string(padding_) + ")";
}

// ---- RandomHorizontalFlip ----

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(p) {
  MOX_CHECK(p >= 0 && p <= 1, "RandomHorizontalFlip", "p must be in [0, 1], got " + num(p));
}

Tensor RandomHorizontalFlip::apply(const Tensor& batch, Generator& g) const {
  Tensor x = checked_batch(batch, "RandomHorizontalFlip");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  std::vector<char> flip(static_cast<size_t>(N));
  for (auto& f : flip) f = g.uniform() < p_;
  Tensor out = x.clone();
  float* o = out.data<float>();
  for (int64_t n = 0; n < N; n++) {
    if (!flip[size_t(n)]) continue;
    for (int64_t r = 0; r < C * H; r++) std::reverse(o + (n * C * H + r) * W, o + (n * C * H + r + 1) * W);
  }
  return out;
}

std::string RandomHorizontalFlip::describe() const { return "RandomHorizontalFlip(p=" + num(p_) + ")"; }

// ---- RandomRotation ----

RandomRotation::RandomRotation(double min_degrees, double max_degrees)
    : min_deg_(min_degrees), max_deg_(max_degrees) {
  MOX_CHECK(std::isfinite(min_degrees) && std::isfinite(max_degrees) && min_degrees <= max_degrees,
            "RandomRotation",
            "needs finite min_degrees <= max_degrees, got " + num(min_degrees) + ", " + num(max_degrees));
}

Tensor RandomRotation::apply(const Tensor& batch, Generator& g) const {
  Tensor x = checked_batch(batch, "RandomRotation");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  std::vector<double> angle(static_cast<size_t>(N));
  for (auto& a : angle) a = uniform_in(g, min_deg_, max_deg_) * std::numbers::pi / 180.0;
  Tensor out = empty({N, C, H, W});
  const float* in = x.data<float>();
  float* o = out.data<float>();
  const double cy = 0.5 * double(H - 1), cx = 0.5 * double(W - 1);
  // Coordinates within 1e-9 of a whole pixel are snapped, so that right angles (where cos
  // is ~6e-17, not 0) permute pixels exactly instead of blending in a 1e-16 neighbour.
  auto snap = [](double v) {
    const double r = std::round(v);
    return std::abs(v - r) < 1e-9 ? r : v;
  };
  for (int64_t n = 0; n < N; n++) {
    const double cs = std::cos(angle[size_t(n)]), sn = std::sin(angle[size_t(n)]);
    for (int64_t y = 0; y < H; y++)
      for (int64_t xo = 0; xo < W; xo++) {
        // Inverse map (y grows downwards, positive angle turns the picture anticlockwise):
        // the output pixel comes from the input point rotated back by -angle.
        const double ddx = double(xo) - cx, ddy = double(y) - cy;
        const double sx = snap(cx + cs * ddx - sn * ddy), sy = snap(cy + sn * ddx + cs * ddy);
        const double fx0 = std::floor(sx), fy0 = std::floor(sy);
        const int64_t ix = int64_t(fx0), iy = int64_t(fy0);
        const double wx = sx - fx0, wy = sy - fy0;
        const double w[4] = {(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx};
        const int64_t py[4] = {iy, iy, iy + 1, iy + 1}, px[4] = {ix, ix + 1, ix, ix + 1};
        for (int64_t c = 0; c < C; c++) {
          const float* src = in + (n * C + c) * H * W;
          double acc = 0;
          for (int k = 0; k < 4; k++)
            if (w[k] != 0 && py[k] >= 0 && py[k] < H && px[k] >= 0 && px[k] < W)
              acc += w[k] * double(src[py[k] * W + px[k]]);  // zero fill outside
          o[((n * C + c) * H + y) * W + xo] = float(acc);
        }
      }
  }
  return out;
}

std::string RandomRotation::describe() const {
  return "RandomRotation(degrees=[" + num(min_deg_) + ", " + num(max_deg_) + "])";
}

// ---- RandomTranslation ----

RandomTranslation::RandomTranslation(double max_dx_fraction, double max_dy_fraction)
    : fx_(max_dx_fraction), fy_(max_dy_fraction) {
  MOX_CHECK(fx_ >= 0 && fx_ <= 1 && fy_ >= 0 && fy_ <= 1, "RandomTranslation",
            "fractions must be in [0, 1], got " + num(fx_) + ", " + num(fy_));
}

std::vector<RandomTranslation::Shift> RandomTranslation::draw(int64_t n, int64_t h, int64_t w,
                                                              Generator& g) const {
  const double mx = fx_ * double(w), my = fy_ * double(h);
  std::vector<Shift> out(static_cast<size_t>(n));
  for (auto& s : out) {
    s.dx = int64_t(std::round(uniform_in(g, -mx, mx)));
    s.dy = int64_t(std::round(uniform_in(g, -my, my)));
  }
  return out;
}

Tensor RandomTranslation::apply(const Tensor& batch, Generator& g) const {
  Tensor x = checked_batch(batch, "RandomTranslation");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const auto shifts = draw(N, H, W, g);
  Tensor out = zeros({N, C, H, W});
  const float* in = x.data<float>();
  float* o = out.data<float>();
  // out[y][x] = in[y - dy][x - dx] where inside, else 0
  for (int64_t n = 0; n < N; n++) {
    const int64_t dx = shifts[size_t(n)].dx, dy = shifts[size_t(n)].dy;
    for (int64_t c = 0; c < C; c++)
      copy_shifted(in + (n * C + c) * H * W, H, W, o + (n * C + c) * H * W, H, W, -dy, -dx);
  }
  return out;
}

std::string RandomTranslation::describe() const {
  return "RandomTranslation(max_dx=" + num(fx_) + ", max_dy=" + num(fy_) + ")";
}

// ---- RandomBrightnessContrast ----

RandomBrightnessContrast::RandomBrightnessContrast(double brightness, double contrast)
    : brightness_(brightness), contrast_(contrast) {
  MOX_CHECK(brightness >= 0 && brightness <= 1 && contrast >= 0 && contrast <= 1,
            "RandomBrightnessContrast",
            "brightness and contrast must be in [0, 1], got " + num(brightness) + ", " + num(contrast));
}

Tensor RandomBrightnessContrast::apply(const Tensor& batch, Generator& g) const {
  Tensor x = checked_batch(batch, "RandomBrightnessContrast");
  const int64_t N = x.size(0), per = x.size(1) * x.size(2) * x.size(3);
  std::vector<double> bf(static_cast<size_t>(N)), cf(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) {
    bf[size_t(n)] = uniform_in(g, 1 - brightness_, 1 + brightness_);
    cf[size_t(n)] = uniform_in(g, 1 - contrast_, 1 + contrast_);
  }
  Tensor out = x.clone();
  float* o = out.data<float>();
  for (int64_t n = 0; n < N; n++) {
    float* img = o + n * per;
    const float b = float(bf[size_t(n)]), c = float(cf[size_t(n)]);
    double sum = 0;
    for (int64_t i = 0; i < per; i++) {
      img[i] = std::clamp(img[i] * b, 0.0f, 1.0f);
      sum += img[i];
    }
    // Contrast blends towards the brightness-adjusted image's mean (ColorJitter's order).
    const float shift = (1 - c) * float(per > 0 ? sum / double(per) : 0.0);
    for (int64_t i = 0; i < per; i++) img[i] = std::clamp(c * img[i] + shift, 0.0f, 1.0f);
  }
  return out;
}

std::string RandomBrightnessContrast::describe() const {
  return "RandomBrightnessContrast(brightness=" + num(brightness_) + ", contrast=" + num(contrast_) + ")";
}

// ---- Cutout ----

Cutout::Cutout(int64_t size, double p) : size_(size), p_(p) {
  MOX_CHECK(size > 0, "Cutout", "size must be positive, got " + std::to_string(size));
  MOX_CHECK(p >= 0 && p <= 1, "Cutout", "p must be in [0, 1], got " + num(p));
}

std::vector<Cutout::Square> Cutout::draw(int64_t n, int64_t h, int64_t w, Generator& g) const {
  std::vector<Square> out(static_cast<size_t>(n));
  for (auto& s : out) {
    s.applied = g.uniform() < p_;
    const int64_t cy = int64_t(g.below(uint64_t(h))), cx = int64_t(g.below(uint64_t(w)));
    s.top = cy - size_ / 2;
    s.left = cx - size_ / 2;
  }
  return out;
}

Tensor Cutout::apply(const Tensor& batch, Generator& g) const {
  Tensor x = checked_batch(batch, "Cutout");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  MOX_CHECK(H > 0 && W > 0, "Cutout", "empty images " + x.desc());
  const auto sq = draw(N, H, W, g);
  Tensor out = x.clone();
  float* o = out.data<float>();
  for (int64_t n = 0; n < N; n++) {
    const Square& s = sq[size_t(n)];
    if (!s.applied) continue;
    const int64_t y0 = std::max<int64_t>(0, s.top), y1 = std::min(H, s.top + size_);
    const int64_t x0 = std::max<int64_t>(0, s.left), x1 = std::min(W, s.left + size_);
    for (int64_t c = 0; c < C; c++)
      for (int64_t y = y0; y < y1; y++)
        for (int64_t xx = x0; xx < x1; xx++) o[((n * C + c) * H + y) * W + xx] = 0.0f;
  }
  return out;
}

std::string Cutout::describe() const {
  return "Cutout(size=" + std::to_string(size_) + ", p=" + num(p_) + ")";
}

// ---- Normalize ----

Normalize::Normalize(std::vector<double> mean, std::vector<double> std)
    : mean_(std::move(mean)), std_(std::move(std)) {
  MOX_CHECK(!mean_.empty() && mean_.size() == std_.size(), "Normalize",
            "needs one mean and one std per channel, got " + std::to_string(mean_.size()) +
                " means and " + std::to_string(std_.size()) + " stds");
  for (double s : std_) MOX_CHECK(s > 0, "Normalize", "std must be positive, got " + num(s));
}

Tensor Normalize::apply(const Tensor& batch, Generator&) const { return apply(batch); }

Tensor Normalize::apply(const Tensor& batch) const {
  Tensor x = checked_batch(batch, "Normalize");
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  MOX_CHECK(C == int64_t(mean_.size()), "Normalize",
            "has " + std::to_string(mean_.size()) + " channels, batch " + x.desc());
  Tensor out = x.clone();
  float* o = out.data<float>();
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      const float m = float(mean_[size_t(c)]), inv = float(1.0 / std_[size_t(c)]);
      float* p = o + (n * C + c) * HW;
      for (int64_t i = 0; i < HW; i++) p[i] = (p[i] - m) * inv;
    }
  return out;
}

std::string Normalize::describe() const {
  std::string s = "Normalize(mean=[";
  for (size_t i = 0; i < mean_.size(); i++) s += (i ? ", " : "") + num(mean_[i]);
  s += "], std=[";
  for (size_t i = 0; i < std_.size(); i++) s += (i ? ", " : "") + num(std_[i]);
  return s + "])";
}

// ---- statistics ----

ChannelStats compute_channel_stats(const Tensor& images) {
  const char* where = "compute_channel_stats";
  MOX_CHECK(images.defined(), where, "undefined tensor");
  MOX_CHECK(images.dim() >= 2, where, "expects images [N, C, ...], got " + images.desc());
  MOX_CHECK(images.dtype() == DType::F32 || images.dtype() == DType::F64, where,
            "expects f32 or f64 images, got " + images.desc());
  const int64_t N = images.size(0), C = images.size(1);
  const int64_t inner = N * C > 0 ? images.numel() / (N * C) : 0;
  MOX_CHECK(N * inner > 0, where, "no pixels to average in " + images.desc());
  const std::vector<double> v = images.to_vector<double>();
  ChannelStats st{std::vector<double>(size_t(C), 0.0), std::vector<double>(size_t(C), 0.0)};
  const double count = double(N * inner);
  // Two passes (mean, then squared deviations) avoid the cancellation of E[x^2] - E[x]^2.
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      const double* p = v.data() + (n * C + c) * inner;
      double s = 0;
      for (int64_t i = 0; i < inner; i++) s += p[i];
      st.mean[size_t(c)] += s;
    }
  for (auto& m : st.mean) m /= count;
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      const double* p = v.data() + (n * C + c) * inner;
      const double m = st.mean[size_t(c)];
      double s = 0;
      for (int64_t i = 0; i < inner; i++) s += (p[i] - m) * (p[i] - m);
      st.std[size_t(c)] += s;
    }
  for (auto& s : st.std) s = std::sqrt(s / count);
  return st;
}

void augment(Batch& batch, const Transform& transform, Generator& g) {
  batch.input = transform.apply(batch.input, g);
}

}  // namespace mox::data
