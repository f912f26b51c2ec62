// Metrics are computed on the host in double: N is at most a validation set, and
// double accumulation keeps the numbers equal to sklearn's to ~1e-15.
#include "mox/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

namespace mox::train {
namespace {

std::vector<double> host_doubles(const Tensor& t) {
  Tensor h = t.device().is_cpu() ? t : t.to(kCPU);
  return h.to_vector<double>();
}

// labels (N): integer class ids.
std::vector<int64_t> host_labels(const Tensor& labels, const char* where) {
  MOX_CHECK(labels.defined(), where, "labels are undefined");
  MOX_CHECK(labels.dim() == 1, where,
            "labels must be 1-D [N], got " + labels.desc());
  MOX_CHECK(is_integral(labels.dtype()), where,
            "labels must be an integer tensor, got " + labels.desc());
  MOX_CHECK(labels.numel() > 0, where, "labels are empty " + labels.desc());
  Tensor h = labels.device().is_cpu() ? labels : labels.to(kCPU);
  return h.to_vector<int64_t>();
}

void check_label_range(const std::vector<int64_t>& y, int64_t num_classes, const char* where,
                       const Tensor& labels) {
  for (int64_t v : y)
    MOX_CHECK(v >= 0 && v < num_classes, where,
              "label " + std::to_string(v) + " out of range [0, " +
                  std::to_string(num_classes) + ") in labels " + labels.desc());
}

void check_same_n(const Tensor& a, const Tensor& labels, const char* where) {
  MOX_CHECK(a.defined(), where, "predictions are undefined");
  MOX_CHECK(a.dim() >= 1 && a.size(0) == labels.size(0), where,
            "predictions " + a.desc() + " and labels " + labels.desc() +
                " differ in length N");
}

// Binary scores (N) or (N,2) -> the positive-class score per sample.
std::vector<double> binary_scores(const Tensor& scores, const char* where) {
  MOX_CHECK(scores.dim() == 1 || (scores.dim() == 2 && scores.size(1) == 2), where,
            "binary scores must be [N] or [N, 2], got " + scores.desc());
  return host_doubles(scores.dim() == 1 ? scores : scores.select(1, 1));
}

std::vector<int64_t> binary_labels(const Tensor& labels, const char* where) {
  std::vector<int64_t> y = host_labels(labels, where);
  for (int64_t v : y)
    MOX_CHECK(v == 0 || v == 1, where,
              "binary labels must be 0 or 1, got " + std::to_string(v) + " in " +
                  labels.desc());
  return y;
}

// sklearn's _binary_clf_curve followed by roc_curve's (0,0) point, unnormalised:
// fps/tps at each distinct score, highest score first.
struct ClfCurve {
  std::vector<double> fps, tps, thresholds;
};

ClfCurve binary_clf_curve(const std::vector<double>& s, const std::vector<int64_t>& y) {
  const size_t n = s.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  ClfCurve c;
  double tp = 0;
  for (size_t i = 0; i < n; i++) {
    tp += double(y[order[i]]);
    // A threshold closes after the last sample of each run of equal scores, so tied
    // samples enter the curve together (one diagonal step, not a staircase).
    if (i + 1 == n || s[order[i + 1]] != s[order[i]]) {
      c.tps.push_back(tp);
      c.fps.push_back(double(i + 1) - tp);
      c.thresholds.push_back(s[order[i]]);
    }
  }
  return c;
}

// Area under the ROC curve of one binary problem; throws when a class is missing.
double binary_auc(const std::vector<double>& s, const std::vector<int64_t>& y,
                  const char* where) {
  ClfCurve c = binary_clf_curve(s, y);
  const double P = c.tps.back(), Nn = c.fps.back();
  MOX_CHECK(P > 0 && Nn > 0, where,
            "only one class present in labels; ROC AUC is not defined");
  // Trapezoids between consecutive points, starting from (0,0).
  double area = 0, fp0 = 0, tp0 = 0;
  for (size_t i = 0; i < c.tps.size(); i++) {
    area += (c.fps[i] - fp0) * (c.tps[i] + tp0) * 0.5;
    fp0 = c.fps[i];
    tp0 = c.tps[i];
  }
  return area / (P * Nn);
}

double safe_div(double num, double den) { return den == 0 ? 0.0 : num / den; }

// probs (N,C), labels (N) -> mean -log p[label], each row clipped to [eps, 1-eps] and
// renormalised to sum 1 as sklearn.metrics.log_loss (1.2) does.
double log_loss_rows(std::vector<double> p, int64_t n, int64_t c, const std::vector<int64_t>& y,
                     double eps) {
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    double* row = p.data() + i * c;
    double sum = 0;
    for (int64_t j = 0; j < c; j++) {
      row[j] = std::clamp(row[j], eps, 1.0 - eps);
      sum += row[j];
    }
    total -= std::log(row[y[size_t(i)]] / sum);
  }
  return total / double(n);
}

// (N) or (N,D) pred/target -> values as (N, D) row-major plus D.
struct Regression {
  std::vector<double> p, t;
  int64_t n = 0, d = 1;
};

Regression regression_inputs(const Tensor& pred, const Tensor& target, const char* where) {
  MOX_CHECK(pred.defined() && target.defined(), where, "pred or target is undefined");
  MOX_CHECK(pred.shape() == target.shape(), where,
            "pred " + pred.desc() + " and target " + target.desc() + " differ in shape");
  MOX_CHECK(pred.dim() == 1 || pred.dim() == 2, where,
            "pred and target must be [N] or [N, D], got " + pred.desc());
  MOX_CHECK(pred.numel() > 0, where, "pred and target are empty " + pred.desc());
  Regression r;
  r.n = pred.size(0);
  r.d = pred.dim() == 2 ? pred.size(1) : 1;
  r.p = host_doubles(pred);
  r.t = host_doubles(target);
  return r;
}

}  // namespace

std::vector<int64_t> predicted_classes(const Tensor& pred, double threshold) {
  const char* where = "predicted_classes";
  MOX_CHECK(pred.defined(), where, "predictions are undefined");
  MOX_CHECK(pred.dim() == 1 || pred.dim() == 2, where,
            "predictions must be scores [N, C] or classes [N], got " + pred.desc());
  if (pred.dim() == 2) {
    // scores (N,C) -> argmax (N), first index on ties
    const int64_t n = pred.size(0), c = pred.size(1);
    MOX_CHECK(c > 0, where, "scores have no classes " + pred.desc());
    std::vector<double> s = host_doubles(pred);
    std::vector<int64_t> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) {
      const double* row = s.data() + i * c;
      out[size_t(i)] = int64_t(std::max_element(row, row + c) - row);
    }
    return out;
  }
  if (is_integral(pred.dtype())) {
    Tensor h = pred.device().is_cpu() ? pred : pred.to(kCPU);
    return h.to_vector<int64_t>();
  }
  std::vector<double> s = host_doubles(pred);
  std::vector<int64_t> out(s.size());
  for (size_t i = 0; i < s.size(); i++) out[i] = s[i] > threshold ? 1 : 0;
  return out;
}

double accuracy(const Tensor& pred, const Tensor& labels, double threshold) {
  const char* where = "accuracy";
  std::vector<int64_t> y = host_labels(labels, where);
  check_same_n(pred, labels, where);
  std::vector<int64_t> p = predicted_classes(pred, threshold);
  int64_t hits = 0;
  for (size_t i = 0; i < y.size(); i++) hits += p[i] == y[i];
  return double(hits) / double(y.size());
}

double top_k_accuracy(const Tensor& scores, const Tensor& labels, int64_t k) {
  const char* where = "top_k_accuracy";
  MOX_CHECK(k >= 1, where, "k must be >= 1, got " + std::to_string(k));
  std::vector<int64_t> y = host_labels(labels, where);
  check_same_n(scores, labels, where);
  MOX_CHECK(scores.dim() == 2, where, "scores must be [N, C], got " + scores.desc());
  const int64_t n = scores.size(0), c = scores.size(1);
  check_label_range(y, c, where, labels);
  std::vector<double> s = host_doubles(scores);
  int64_t hits = 0;
  for (int64_t i = 0; i < n; i++) {
    // Rank of the true class: classes scoring higher, plus equal-scoring classes of
    // higher index (sklearn sorts with a stable argsort and reverses it).
    const double* row = s.data() + i * c;
    const int64_t t = y[size_t(i)];
    int64_t ahead = 0;
    for (int64_t j = 0; j < c; j++) ahead += row[j] > row[t] || (row[j] == row[t] && j > t);
    hits += ahead < k;
  }
  return double(hits) / double(n);
}

Tensor confusion_matrix(const Tensor& pred, const Tensor& labels, int64_t num_classes,
                        double threshold) {
  const char* where = "confusion_matrix";
  MOX_CHECK(num_classes >= 1, where,
            "num_classes must be >= 1, got " + std::to_string(num_classes));
  std::vector<int64_t> y = host_labels(labels, where);
  check_same_n(pred, labels, where);
  MOX_CHECK(pred.dim() == 1 || pred.size(1) == num_classes, where,
            "scores " + pred.desc() + " do not have num_classes = " +
                std::to_string(num_classes) + " columns");
  check_label_range(y, num_classes, where, labels);
  std::vector<int64_t> p = predicted_classes(pred, threshold);
  for (int64_t v : p)
    MOX_CHECK(v >= 0 && v < num_classes, where,
              "predicted class " + std::to_string(v) + " out of range [0, " +
                  std::to_string(num_classes) + ") in predictions " + pred.desc());
  std::vector<int64_t> cm(size_t(num_classes * num_classes), 0);
  for (size_t i = 0; i < y.size(); i++) cm[size_t(y[i] * num_classes + p[i])]++;
  return from_vector(cm, Shape{num_classes, num_classes});
}

ClassificationReport classification_report(const Tensor& pred, const Tensor& labels,
                                           int64_t num_classes, double threshold) {
  Tensor cm_t = confusion_matrix(pred, labels, num_classes, threshold);
  std::vector<int64_t> cm = cm_t.to_vector<int64_t>();
  const int64_t c = num_classes;
  ClassificationReport r;
  r.precision.resize(size_t(c));
  r.recall.resize(size_t(c));
  r.f1.resize(size_t(c));
  r.support.resize(size_t(c));
  double tp_sum = 0, pred_sum = 0, true_sum = 0;
  for (int64_t k = 0; k < c; k++) {
    double tp = double(cm[size_t(k * c + k)]), predicted = 0, actual = 0;
    for (int64_t j = 0; j < c; j++) {
      predicted += double(cm[size_t(j * c + k)]);
      actual += double(cm[size_t(k * c + j)]);
    }
    const size_t ks = size_t(k);
    r.precision[ks] = safe_div(tp, predicted);
    r.recall[ks] = safe_div(tp, actual);
    r.f1[ks] = safe_div(2 * r.precision[ks] * r.recall[ks], r.precision[ks] + r.recall[ks]);
    r.support[ks] = int64_t(actual);
    tp_sum += tp;
    pred_sum += predicted;
    true_sum += actual;
  }
  r.total = int64_t(true_sum);
  r.accuracy = tp_sum / true_sum;
  r.micro.precision = safe_div(tp_sum, pred_sum);
  r.micro.recall = safe_div(tp_sum, true_sum);
  r.micro.f1 = safe_div(2 * r.micro.precision * r.micro.recall,
                        r.micro.precision + r.micro.recall);
  for (size_t k = 0; k < size_t(c); k++) {
    const double w = double(r.support[k]) / true_sum;
    r.macro.precision += r.precision[k] / double(c);
    r.macro.recall += r.recall[k] / double(c);
    r.macro.f1 += r.f1[k] / double(c);
    r.weighted.precision += r.precision[k] * w;
    r.weighted.recall += r.recall[k] * w;
    r.weighted.f1 += r.f1[k] * w;
  }
  return r;
}

std::string ClassificationReport::str() const {
  std::string out;
  char line[160];
  std::snprintf(line, sizeof line, "%12s %10s %10s %10s %10s\n\n", "", "precision", "recall",
                "f1-score", "support");
  out += line;
  for (size_t k = 0; k < precision.size(); k++) {
    std::snprintf(line, sizeof line, "%12zu %10.4f %10.4f %10.4f %10lld\n", k, precision[k],
                  recall[k], f1[k], static_cast<long long>(support[k]));
    out += line;
  }
  std::snprintf(line, sizeof line, "\n%12s %10s %10s %10.4f %10lld\n", "accuracy", "", "",
                accuracy, static_cast<long long>(total));
  out += line;
  const std::pair<const char*, const AveragedScores*> rows[] = {{"macro avg", &macro},
                                                                {"weighted avg", &weighted}};
  for (const auto& [name, a] : rows) {
    std::snprintf(line, sizeof line, "%12s %10.4f %10.4f %10.4f %10lld\n", name, a->precision,
                  a->recall, a->f1, static_cast<long long>(total));
    out += line;
  }
  return out;
}

RocCurve roc_curve(const Tensor& scores, const Tensor& labels) {
  const char* where = "roc_curve";
  std::vector<int64_t> y = binary_labels(labels, where);
  check_same_n(scores, labels, where);
  std::vector<double> s = binary_scores(scores, where);
  ClfCurve c = binary_clf_curve(s, y);
  RocCurve r;
  const size_t m = c.tps.size() + 1;
  r.thresholds.reserve(m);
  r.thresholds.push_back(c.thresholds[0] + 1);
  r.thresholds.insert(r.thresholds.end(), c.thresholds.begin(), c.thresholds.end());
  const double P = c.tps.back(), Nn = c.fps.back();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.fpr.assign(m, nan);
  r.tpr.assign(m, nan);
  for (size_t i = 0; i < m; i++) {
    const double fp = i == 0 ? 0.0 : c.fps[i - 1], tp = i == 0 ? 0.0 : c.tps[i - 1];
    if (Nn > 0) r.fpr[i] = fp / Nn;
    if (P > 0) r.tpr[i] = tp / P;
  }
  return r;
}

double roc_auc(const Tensor& scores, const Tensor& labels) {
  const char* where = "roc_auc";
  MOX_CHECK(scores.defined(), where, "scores are undefined");
  if (scores.dim() == 1 || (scores.dim() == 2 && scores.size(1) == 2)) {
    std::vector<int64_t> y = binary_labels(labels, where);
    check_same_n(scores, labels, where);
    return binary_auc(binary_scores(scores, where), y, where);
  }
  std::vector<int64_t> y = host_labels(labels, where);
  check_same_n(scores, labels, where);
  MOX_CHECK(scores.dim() == 2, where,
            "scores must be [N] (binary) or [N, C] probabilities, got " + scores.desc());
  const int64_t n = scores.size(0), c = scores.size(1);
  check_label_range(y, c, where, labels);
  std::vector<double> s = host_doubles(scores);
  // sklearn refuses scores that are not probabilities: the one-vs-rest ranking of a
  // column changes under softmax, so logits would give a different (wrong) number.
  for (int64_t i = 0; i < n; i++) {
    double sum = 0;
    for (int64_t j = 0; j < c; j++) sum += s[size_t(i * c + j)];
    MOX_CHECK(std::abs(sum - 1.0) <= 1e-8 + 1e-5, where,
              "multi-class scores " + scores.desc() + " must be probabilities whose rows sum "
              "to 1 (row " + std::to_string(i) + " sums to " + std::to_string(sum) +
                  "); apply softmax to logits");
  }
  std::vector<int64_t> present(size_t(c), 0);
  for (int64_t v : y) present[size_t(v)] = 1;
  for (int64_t k = 0; k < c; k++)
    MOX_CHECK(present[size_t(k)], where,
              "class " + std::to_string(k) + " of scores " + scores.desc() +
                  " never occurs in labels; one-vs-rest ROC AUC is not defined");
  double total = 0;
  std::vector<double> col(static_cast<size_t>(n));
  std::vector<int64_t> is_k(static_cast<size_t>(n));
  for (int64_t k = 0; k < c; k++) {
    for (int64_t i = 0; i < n; i++) {
      col[size_t(i)] = s[size_t(i * c + k)];
      is_k[size_t(i)] = y[size_t(i)] == k;
    }
    total += binary_auc(col, is_k, where);
  }
  return total / double(c);
}

double log_loss(const Tensor& probs, const Tensor& labels, double eps) {
  const char* where = "log_loss";
  MOX_CHECK(eps > 0 && eps < 0.5, where, "eps must be in (0, 0.5), got " + std::to_string(eps));
  std::vector<int64_t> y = host_labels(labels, where);
  check_same_n(probs, labels, where);
  MOX_CHECK(probs.dim() == 1 || probs.dim() == 2, where,
            "probabilities must be [N, C] or [N] (binary), got " + probs.desc());
  const int64_t n = probs.size(0);
  std::vector<double> p = host_doubles(probs);
  if (probs.dim() == 2) {
    const int64_t c = probs.size(1);
    MOX_CHECK(c >= 2, where, "probabilities need at least 2 classes, got " + probs.desc());
    check_label_range(y, c, where, labels);
    return log_loss_rows(std::move(p), n, c, y, eps);
  }
  check_label_range(y, 2, where, labels);
  // p (N) is P(class 1): clip first, then expand to rows [1-p, p], as sklearn does.
  std::vector<double> rows(size_t(2 * n));
  for (int64_t i = 0; i < n; i++) {
    const double q = std::clamp(p[size_t(i)], eps, 1.0 - eps);
    rows[size_t(2 * i)] = 1.0 - q;
    rows[size_t(2 * i + 1)] = q;
  }
  return log_loss_rows(std::move(rows), n, 2, y, eps);
}

double log_loss_from_logits(const Tensor& logits, const Tensor& labels, double eps) {
  const char* where = "log_loss_from_logits";
  MOX_CHECK(logits.defined(), where, "logits are undefined");
  MOX_CHECK(logits.dim() == 1 || logits.dim() == 2, where,
            "logits must be [N, C] or [N] (binary), got " + logits.desc());
  std::vector<double> z = host_doubles(logits);
  if (logits.dim() == 1) {
    for (double& v : z) v = 1.0 / (1.0 + std::exp(-v));
  } else {
    // Softmax per row, shifted by the row max so that exp cannot overflow.
    const int64_t n = logits.size(0), c = logits.size(1);
    for (int64_t i = 0; i < n && c > 0; i++) {
      double* row = z.data() + i * c;
      const double mx = *std::max_element(row, row + c);
      double sum = 0;
      for (int64_t j = 0; j < c; j++) sum += row[j] = std::exp(row[j] - mx);
      for (int64_t j = 0; j < c; j++) row[j] /= sum;
    }
  }
  return log_loss(from_vector(z, logits.shape()), labels, eps);
}

double mse(const Tensor& pred, const Tensor& target) {
  Regression r = regression_inputs(pred, target, "mse");
  double sum = 0;
  for (size_t i = 0; i < r.p.size(); i++) sum += (r.p[i] - r.t[i]) * (r.p[i] - r.t[i]);
  return sum / double(r.p.size());  // every output has N samples: mean of means = mean
}

double mae(const Tensor& pred, const Tensor& target) {
  Regression r = regression_inputs(pred, target, "mae");
  double sum = 0;
  for (size_t i = 0; i < r.p.size(); i++) sum += std::abs(r.p[i] - r.t[i]);
  return sum / double(r.p.size());
}

double r2(const Tensor& pred, const Tensor& target) {
  Regression r = regression_inputs(pred, target, "r2");
  double total = 0;
  for (int64_t j = 0; j < r.d; j++) {
    double mean = 0;
    for (int64_t i = 0; i < r.n; i++) mean += r.t[size_t(i * r.d + j)];
    mean /= double(r.n);
    double ss_res = 0, ss_tot = 0;
    for (int64_t i = 0; i < r.n; i++) {
      const double t = r.t[size_t(i * r.d + j)], p = r.p[size_t(i * r.d + j)];
      ss_res += (t - p) * (t - p);
      ss_tot += (t - mean) * (t - mean);
    }
    if (ss_tot == 0)
      total += ss_res == 0 ? 1.0 : 0.0;
    else
      total += 1.0 - ss_res / ss_tot;
  }
  return total / double(r.d);
}

}  // namespace mox::train
