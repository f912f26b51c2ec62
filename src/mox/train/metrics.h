#pragma once
// Evaluation metrics over host data, computed in double and defined as scikit-learn
// defines them (so that numbers reported by mox can be checked against sklearn 1.2):
//   classification: accuracy, top-k accuracy, confusion matrix, precision/recall/F1
//   (per class and macro/micro/weighted, zero_division=0), ROC curve, ROC AUC, log loss;
//   regression: MSE, MAE, R².
// Inputs are Tensors of any float dtype on any device (copied to the host as double);
// labels are integer tensors [N] holding class ids in [0, C).
// "pred" arguments accept either scores [N, C] (logits or probabilities; the class is the
// argmax, first index on ties, like torch.argmax / numpy.argmax), integer class ids [N],
// or floating binary scores [N] (class 1 when score > threshold; 0.5 suits
// probabilities, pass 0 for logits).
// Every function throws mox::Error naming itself and the shapes for mismatched lengths,
// out-of-range labels and empty inputs.
#include <cstdint>
#include <string>
#include <vector>

#include "mox/tensor/tensor.h"

namespace mox::train {

// Class ids [N] from scores [N,C] (argmax), integer ids [N] (as given), or floating
// binary scores [N] (score > threshold).
std::vector<int64_t> predicted_classes(const Tensor& pred, double threshold = 0.5);

// Fraction of samples whose predicted class equals the label.
double accuracy(const Tensor& pred, const Tensor& labels, double threshold = 0.5);

// scores (N,C), labels (N) -> fraction whose label is among the k highest scores.
// Ties rank like sklearn.metrics.top_k_accuracy_score: among equal scores the higher
// class index ranks first. k >= C gives 1.
double top_k_accuracy(const Tensor& scores, const Tensor& labels, int64_t k);

// pred, labels (N) -> i64 (C,C); entry [i][j] counts samples of true class i predicted as
// class j (rows = true class, as sklearn.metrics.confusion_matrix).
Tensor confusion_matrix(const Tensor& pred, const Tensor& labels, int64_t num_classes,
                        double threshold = 0.5);

struct AveragedScores {
  double precision = 0, recall = 0, f1 = 0;
};

// sklearn's precision_recall_fscore_support with labels=range(C), zero_division=0:
// a class never predicted has precision 0, a class with no samples has recall 0.
struct ClassificationReport {
  std::vector<double> precision, recall, f1;  // per class, size C
  std::vector<int64_t> support;               // true samples per class
  AveragedScores macro;     // unweighted mean over the C classes
  AveragedScores micro;     // from the summed tp/fp/fn (equals accuracy for single-label)
  AveragedScores weighted;  // mean weighted by support
  double accuracy = 0;
  int64_t total = 0;  // N
  // A table in the layout of sklearn.metrics.classification_report (4 digits).
  std::string str() const;
};

ClassificationReport classification_report(const Tensor& pred, const Tensor& labels,
                                           int64_t num_classes, double threshold = 0.5);

struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;
};

// Binary scores (N) (or (N,2), using column 1) and labels in {0,1} -> the curve of
// sklearn.metrics.roc_curve(drop_intermediate=False): one point per distinct score,
// highest first, preceded by (0,0) at threshold max(score)+1 (sklearn 1.2; 1.3+ writes
// +inf there). With no positives (negatives) tpr (fpr) is NaN, as in sklearn.
RocCurve roc_curve(const Tensor& scores, const Tensor& labels);

// Binary: scores (N) or (N,2) with labels in {0,1} -> area under the ROC curve.
// Multi-class: probabilities (N,C), C > 2, labels in [0,C) -> one-vs-rest macro average,
// as sklearn's roc_auc_score(multi_class='ovr', average='macro'); like sklearn it requires
// rows that sum to 1 (apply softmax to logits) and every class present in labels.
// Throws when only one class is present (the AUC is undefined).
double roc_auc(const Tensor& scores, const Tensor& labels);

// Mean negative log-likelihood of the labels, as sklearn.metrics.log_loss (1.2):
// probabilities (N,C) or positive-class probabilities (N) are clipped to [eps, 1-eps]
// and each row renormalised to sum 1.
double log_loss(const Tensor& probs, const Tensor& labels, double eps = 1e-15);
// The same from logits (N,C) (softmax) or binary logits (N) (sigmoid).
double log_loss_from_logits(const Tensor& logits, const Tensor& labels, double eps = 1e-15);

// Regression over pred, target of equal shape (N) or (N,D); for (N,D) each output is
// scored and the D scores averaged (sklearn's multioutput='uniform_average').
double mse(const Tensor& pred, const Tensor& target);
double mae(const Tensor& pred, const Tensor& target);
// 1 - SS_res/SS_tot per output; a constant target gives 1 when predicted exactly, else 0
// (sklearn's force_finite=True).
double r2(const Tensor& pred, const Tensor& target);

}  // namespace mox::train
