#include "mox/nn/init.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "mox/autograd/node.h"

namespace mox::nn::init {

static Generator& gen_or_default(Generator* gen) { return gen ? *gen : default_generator(); }

double calculate_gain(const std::string& nl, std::optional<double> param) {
  if (nl == "linear" || nl == "conv1d" || nl == "conv2d" || nl == "conv3d" ||
      nl == "conv_transpose1d" || nl == "conv_transpose2d" || nl == "conv_transpose3d" ||
      nl == "sigmoid")
    return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") {
    double slope = param.value_or(0.01);
    return std::sqrt(2.0 / (1.0 + slope * slope));
  }
  if (nl == "selu") return 3.0 / 4.0;
  throw Error("calculate_gain", "unsupported nonlinearity '" + nl + "'");
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  MOX_CHECK(t.dim() >= 2, "calculate_fan_in_and_fan_out",
            "fan in and fan out need a tensor with at least 2 dims, got " + t.desc());
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); d++) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

static int64_t fan(const Tensor& t, FanMode mode) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return mode == FanMode::FanIn ? fan_in : fan_out;
}

Tensor uniform_(Tensor t, double a, double b, Generator* gen) {
  NoGradGuard ng;
  t.uniform_(a, b, gen);
  return t;
}

Tensor normal_(Tensor t, double mean, double std, Generator* gen) {
  NoGradGuard ng;
  t.normal_(mean, std, gen);
  return t;
}

// Fills t from host values computed in f64 (copy_ converts to t's dtype and device).
static void assign(Tensor& t, const std::vector<double>& values) {
  NoGradGuard ng;
  t.copy_(from_vector(values, t.shape()));
}

Tensor trunc_normal_(Tensor t, double mean, double std, double a, double b, Generator* gen) {
  MOX_CHECK(a < b, "trunc_normal_", "need a < b, got [" + std::to_string(a) + ", " +
                                        std::to_string(b) + "]");
  MOX_CHECK(std > 0, "trunc_normal_", "std must be positive");
  // Rejection sampling: the caller's interval must hold some probability mass.
  double za = (a - mean) / std, zb = (b - mean) / std;
  double mass = 0.5 * (std::erf(zb / std::sqrt(2.0)) - std::erf(za / std::sqrt(2.0)));
  MOX_CHECK(mass > 1e-4, "trunc_normal_", "interval [a, b] is too far from the mean");
  Generator& g = gen_or_default(gen);
  std::vector<double> v(size_t(t.numel()));
  for (double& x : v) {
    do {
      x = mean + std * g.normal();
    } while (x < a || x > b);
  }
  assign(t, v);
  return t;
}

Tensor constant_(Tensor t, double value) {
  NoGradGuard ng;
  t.fill_(value);
  return t;
}
Tensor zeros_(Tensor t) { return constant_(t, 0.0); }
Tensor ones_(Tensor t) { return constant_(t, 1.0); }

Tensor eye_(Tensor t) {
  MOX_CHECK(t.dim() == 2, "eye_", "needs a 2-D tensor, got " + t.desc());
  int64_t r = t.size(0), c = t.size(1);
  std::vector<double> v(size_t(r * c), 0.0);
  for (int64_t i = 0; i < std::min(r, c); i++) v[size_t(i * c + i)] = 1.0;
  assign(t, v);
  return t;
}

Tensor xavier_uniform_(Tensor t, double gain, Generator* gen) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  double std = gain * std::sqrt(2.0 / double(fan_in + fan_out));
  double a = std::sqrt(3.0) * std;
  return uniform_(t, -a, a, gen);
}

Tensor xavier_normal_(Tensor t, double gain, Generator* gen) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  double std = gain * std::sqrt(2.0 / double(fan_in + fan_out));
  return normal_(t, 0.0, std, gen);
}

Tensor kaiming_uniform_(Tensor t, double a, FanMode mode, const std::string& nonlinearity,
                        Generator* gen) {
  int64_t f = fan(t, mode);
  MOX_CHECK(f > 0, "kaiming_uniform_", "fan is zero for " + t.desc());
  double std = calculate_gain(nonlinearity, a) / std::sqrt(double(f));
  double bound = std::sqrt(3.0) * std;
  return uniform_(t, -bound, bound, gen);
}

Tensor kaiming_normal_(Tensor t, double a, FanMode mode, const std::string& nonlinearity,
                       Generator* gen) {
  int64_t f = fan(t, mode);
  MOX_CHECK(f > 0, "kaiming_normal_", "fan is zero for " + t.desc());
  double std = calculate_gain(nonlinearity, a) / std::sqrt(double(f));
  return normal_(t, 0.0, std, gen);
}

// Householder QR of a row-major m x n matrix A (m >= n), in place. Returns the reduced
// Q (m x n, row-major) and fills diag with R's diagonal.
static std::vector<double> householder_q(std::vector<double> A, int64_t m, int64_t n,
                                         std::vector<double>& diag) {
  std::vector<std::vector<double>> vs(static_cast<size_t>(n));
  diag.assign(size_t(n), 0.0);
  for (int64_t k = 0; k < n; k++) {
    // v = x - alpha e1 with alpha = -sign(x0) |x|, which avoids cancellation.
    std::vector<double> v(size_t(m - k));
    double norm2 = 0;
    for (int64_t i = k; i < m; i++) {
      v[size_t(i - k)] = A[size_t(i * n + k)];
      norm2 += v[size_t(i - k)] * v[size_t(i - k)];
    }
    double norm = std::sqrt(norm2);
    double alpha = v[0] >= 0 ? -norm : norm;
    diag[size_t(k)] = alpha;
    v[0] -= alpha;
    double vnorm2 = 0;
    for (double x : v) vnorm2 += x * x;
    if (vnorm2 > 0) {
      double s = 1.0 / std::sqrt(vnorm2);
      for (double& x : v) x *= s;
      // A[k:, k:] -= 2 v (v^T A[k:, k:])
      for (int64_t j = k; j < n; j++) {
        double dot = 0;
        for (int64_t i = k; i < m; i++) dot += v[size_t(i - k)] * A[size_t(i * n + j)];
        for (int64_t i = k; i < m; i++) A[size_t(i * n + j)] -= 2 * dot * v[size_t(i - k)];
      }
    } else {
      std::fill(v.begin(), v.end(), 0.0);
    }
    vs[size_t(k)] = std::move(v);
  }
  // Q = H_0 H_1 ... H_{n-1} I[:, :n], applied right to left.
  std::vector<double> Q(size_t(m * n), 0.0);
  for (int64_t i = 0; i < n; i++) Q[size_t(i * n + i)] = 1.0;
  for (int64_t k = n - 1; k >= 0; k--) {
    const std::vector<double>& v = vs[size_t(k)];
    for (int64_t j = 0; j < n; j++) {
      double dot = 0;
      for (int64_t i = k; i < m; i++) dot += v[size_t(i - k)] * Q[size_t(i * n + j)];
      if (dot == 0) continue;
      for (int64_t i = k; i < m; i++) Q[size_t(i * n + j)] -= 2 * dot * v[size_t(i - k)];
    }
  }
  return Q;
}

Tensor orthogonal_(Tensor t, double gain, Generator* gen) {
  MOX_CHECK(t.dim() >= 2, "orthogonal_", "needs a tensor with at least 2 dims, got " + t.desc());
  if (t.numel() == 0) return t;
  int64_t rows = t.size(0), cols = t.numel() / rows;
  Generator& g = gen_or_default(gen);
  std::vector<double> flat(size_t(rows * cols));
  for (double& x : flat) x = g.normal();
  // QR needs a tall matrix: factor the transpose when t is wide.
  bool wide = rows < cols;
  int64_t m = wide ? cols : rows, n = wide ? rows : cols;
  std::vector<double> A(size_t(m * n));
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++)
      A[size_t(wide ? j * n + i : i * n + j)] = flat[size_t(i * cols + j)];
  std::vector<double> diag;
  std::vector<double> Q = householder_q(std::move(A), m, n, diag);
  // Q * sign(diag(R)) makes the factorisation unique (R with a positive diagonal).
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double d = diag[size_t(j)];
      Q[size_t(i * n + j)] *= d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0);
    }
  std::vector<double> out(size_t(rows * cols));
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++)
      out[size_t(i * cols + j)] = gain * Q[size_t(wide ? j * n + i : i * n + j)];
  assign(t, out);
  return t;
}

}  // namespace mox::nn::init
