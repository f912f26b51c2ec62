// Metrics: hand-computed small cases, numbers from scikit-learn 1.2.1 (the Python that
// produced each is quoted beside it), ties in ROC and top-k, a class never predicted
// (zero_division=0), and the errors for bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "error_of.h"
#include "mox/train/metrics.h"

namespace mox::train {
namespace {

Tensor labels(const std::vector<int64_t>& v) { return from_vector(v); }
Tensor f64(const std::vector<double>& v) { return from_vector(v); }
Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s); }

void expect_vec_near(const std::vector<double>& got, const std::vector<double>& want,
                     double tol = 1e-12) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); i++) EXPECT_NEAR(got[i], want[i], tol) << "index " << i;
}

// --- accuracy, predicted classes, top-k ---

TEST(Metrics, AccuracyFromIdsScoresAndBinaryScores) {
  Tensor y = labels({0, 1, 2, 1});
  EXPECT_DOUBLE_EQ(accuracy(labels({0, 1, 1, 1}), y), 0.75);
  // scores (4,3): argmax rows = 0, 1, 2, 0 (ties go to the first index)
  Tensor s = f64({5, 1, 0, 0, 3, 1, 0, 0, 9, 2, 2, 1}, {4, 3});
  EXPECT_DOUBLE_EQ(accuracy(s, y), 0.75);
  EXPECT_EQ(predicted_classes(s), (std::vector<int64_t>{0, 1, 2, 0}));
  // binary probabilities use > 0.5; logits use threshold 0
  Tensor yb = labels({1, 0, 1, 0});
  EXPECT_DOUBLE_EQ(accuracy(f64({0.9, 0.5, 0.51, 0.2}), yb), 1.0);
  EXPECT_DOUBLE_EQ(accuracy(f64({2.0, -1.0, 0.1, -3.0}), yb, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(accuracy(f64({2.0, -1.0, 0.1, -3.0}), yb), 0.75);
  // f32 scores convert like f64 ones
  EXPECT_DOUBLE_EQ(accuracy(s.to(DType::F32), y), 0.75);
}

TEST(Metrics, TopKMatchesSklearnWithTies) {
  // S = np.array([[0.1,0.5,0.5,0.2],[0.3,0.3,0.3,0.1],[0.7,0.1,0.1,0.1],
  //               [0.2,0.2,0.2,0.4],[0.25,0.25,0.25,0.25],[0.0,0.6,0.3,0.1]])
  // y = [1,1,0,0,3,2]
  // [top_k_accuracy_score(y, S, k=k, labels=range(4)) for k in (1,2,3,4)]
  //   -> 0.3333333333333333, 0.8333333333333334, 0.8333333333333334, 1.0
  Tensor S = f64({0.1, 0.5, 0.5, 0.2, 0.3, 0.3, 0.3, 0.1, 0.7, 0.1, 0.1, 0.1,
                  0.2, 0.2, 0.2, 0.4, 0.25, 0.25, 0.25, 0.25, 0.0, 0.6, 0.3, 0.1},
                 {6, 4});
  Tensor y = labels({1, 1, 0, 0, 3, 2});
  EXPECT_NEAR(top_k_accuracy(S, y, 1), 0.3333333333333333, 1e-15);
  EXPECT_NEAR(top_k_accuracy(S, y, 2), 0.8333333333333334, 1e-15);
  EXPECT_NEAR(top_k_accuracy(S, y, 3), 0.8333333333333334, 1e-15);
  EXPECT_DOUBLE_EQ(top_k_accuracy(S, y, 4), 1.0);
  EXPECT_DOUBLE_EQ(top_k_accuracy(S, y, 10), 1.0);
}

// --- confusion matrix and classification report ---

TEST(Metrics, ConfusionMatrixRowsAreTrueClass) {
  // true 0 predicted 1 twice, true 1 predicted 1 once, true 2 predicted 0 once
  Tensor cm = confusion_matrix(labels({1, 1, 1, 0}), labels({0, 0, 1, 2}), 3);
  EXPECT_EQ(cm.dtype(), DType::I64);
  EXPECT_EQ(cm.shape(), (Shape{3, 3}));
  EXPECT_EQ(cm.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 0, 0, 1, 0, 1, 0, 0}));
}

TEST(Metrics, ClassificationReportMatchesSklearnWithNeverPredictedClass) {
  // yt = [0,1,2,2,0,1,3,3,2,0]; yp = [0,2,2,2,0,0,1,2,2,1]   (class 3 never predicted)
  // confusion_matrix(yt, yp, labels=range(4))
  //   -> [[2,1,0,0],[1,0,1,0],[0,0,3,0],[0,1,1,0]]
  // precision_recall_fscore_support(yt, yp, labels=range(4), average=a, zero_division=0)
  //   None:     p [0.6666666666666666, 0.0, 0.6, 0.0], r [0.6666666666666666, 0.0, 1.0, 0.0]
  //             f [0.6666666666666666, 0.0, 0.7499999999999999, 0.0], support [3, 2, 3, 2]
  //   macro:    0.31666666666666665, 0.41666666666666663, 0.35416666666666663
  //   micro:    0.5, 0.5, 0.5
  //   weighted: 0.38, 0.5, 0.425
  Tensor yt = labels({0, 1, 2, 2, 0, 1, 3, 3, 2, 0});
  Tensor yp = labels({0, 2, 2, 2, 0, 0, 1, 2, 2, 1});
  EXPECT_EQ(confusion_matrix(yp, yt, 4).to_vector<int64_t>(),
            (std::vector<int64_t>{2, 1, 0, 0, 1, 0, 1, 0, 0, 0, 3, 0, 0, 1, 1, 0}));
  ClassificationReport r = classification_report(yp, yt, 4);
  expect_vec_near(r.precision, {0.6666666666666666, 0.0, 0.6, 0.0});
  expect_vec_near(r.recall, {0.6666666666666666, 0.0, 1.0, 0.0});
  expect_vec_near(r.f1, {0.6666666666666666, 0.0, 0.7499999999999999, 0.0});
  EXPECT_EQ(r.support, (std::vector<int64_t>{3, 2, 3, 2}));
  EXPECT_NEAR(r.macro.precision, 0.31666666666666665, 1e-12);
  EXPECT_NEAR(r.macro.recall, 0.41666666666666663, 1e-12);
  EXPECT_NEAR(r.macro.f1, 0.35416666666666663, 1e-12);
  EXPECT_NEAR(r.micro.precision, 0.5, 1e-12);
  EXPECT_NEAR(r.micro.recall, 0.5, 1e-12);
  EXPECT_NEAR(r.micro.f1, 0.5, 1e-12);
  EXPECT_NEAR(r.weighted.precision, 0.38, 1e-12);
  EXPECT_NEAR(r.weighted.recall, 0.5, 1e-12);
  EXPECT_NEAR(r.weighted.f1, 0.425, 1e-12);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.5);
  EXPECT_EQ(r.total, 10);
  const std::string table = r.str();
  EXPECT_NE(table.find("macro avg"), std::string::npos);
  EXPECT_NE(table.find("0.3542"), std::string::npos);
  EXPECT_NE(table.find("0.7500"), std::string::npos);
}

TEST(Metrics, ReportWithAbsentClassAndScoresInput) {
  // Class 2 neither occurs nor is predicted: p = r = f = 0 and it still counts in the
  // macro mean (sklearn with labels=range(3)). Hand-computed: class 0 p=1 r=1/2,
  // class 1 p=2/3 r=1.
  Tensor scores = f64({0.9, 0.1, 0.0, 0.2, 0.7, 0.1, 0.4, 0.6, 0.0, 0.1, 0.8, 0.1}, {4, 3});
  Tensor y = labels({0, 0, 1, 1});
  ClassificationReport r = classification_report(scores, y, 3);
  expect_vec_near(r.precision, {1.0, 2.0 / 3.0, 0.0});
  expect_vec_near(r.recall, {0.5, 1.0, 0.0});
  expect_vec_near(r.f1, {2.0 / 3.0, 0.8, 0.0});
  EXPECT_EQ(r.support, (std::vector<int64_t>{2, 2, 0}));
  EXPECT_NEAR(r.macro.f1, (2.0 / 3.0 + 0.8) / 3.0, 1e-12);
  EXPECT_NEAR(r.weighted.f1, (2.0 / 3.0 + 0.8) / 2.0, 1e-12);
  EXPECT_NEAR(r.micro.f1, 0.75, 1e-12);
}

// --- ROC ---

TEST(Metrics, RocCurveMatchesSklearnWithTies) {
  // y = [0,0,1,1,1,0,1,0]; s = [0.1,0.4,0.35,0.8,0.4,0.4,0.9,0.1]
  // roc_curve(y, s, drop_intermediate=False)
  //   fpr [0.0, 0.0, 0.0, 0.5, 0.5, 1.0], tpr [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
  //   thresholds [1.9, 0.9, 0.8, 0.4, 0.35, 0.1]
  // roc_auc_score(y, s) -> 0.8125
  Tensor y = labels({0, 0, 1, 1, 1, 0, 1, 0});
  Tensor s = f64({0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.1});
  RocCurve c = roc_curve(s, y);
  expect_vec_near(c.fpr, {0.0, 0.0, 0.0, 0.5, 0.5, 1.0});
  expect_vec_near(c.tpr, {0.0, 0.25, 0.5, 0.75, 1.0, 1.0});
  expect_vec_near(c.thresholds, {1.9, 0.9, 0.8, 0.4, 0.35, 0.1});
  EXPECT_NEAR(roc_auc(s, y), 0.8125, 1e-12);
  // (N,2) scores use column 1
  std::vector<double> two;
  for (double v : s.to_vector<double>()) {
    two.push_back(1 - v);
    two.push_back(v);
  }
  EXPECT_NEAR(roc_auc(f64(two, {8, 2}), y), 0.8125, 1e-12);
}

TEST(Metrics, RocHandComputed) {
  // Perfect separation, perfect inversion, and all scores tied (one diagonal step).
  Tensor y = labels({0, 1, 0, 1});
  EXPECT_DOUBLE_EQ(roc_auc(f64({0.1, 0.9, 0.2, 0.8}), y), 1.0);
  EXPECT_DOUBLE_EQ(roc_auc(f64({0.9, 0.1, 0.8, 0.2}), y), 0.0);
  EXPECT_DOUBLE_EQ(roc_auc(f64({0.5, 0.5, 0.5, 0.5}), y), 0.5);
  RocCurve c = roc_curve(f64({0.5, 0.5, 0.5, 0.5}), y);
  expect_vec_near(c.fpr, {0.0, 1.0});
  expect_vec_near(c.tpr, {0.0, 1.0});
  expect_vec_near(c.thresholds, {1.5, 0.5});
  // No positives: tpr is NaN, as in sklearn (which also warns).
  RocCurve none = roc_curve(f64({0.2, 0.7}), labels({0, 0}));
  EXPECT_TRUE(std::isnan(none.tpr[1]));
  EXPECT_DOUBLE_EQ(none.fpr[2], 1.0);
}

TEST(Metrics, RocAucOneVsRestMatchesSklearn) {
  // P = [[0.7,0.2,0.1],[0.2,0.5,0.3],[0.1,0.3,0.6],[0.3,0.3,0.4],
  //      [0.5,0.25,0.25],[0.1,0.8,0.1],[0.2,0.2,0.6],[0.4,0.4,0.2]]
  // y = [0,1,2,1,0,1,2,2]
  // roc_auc_score(y, P, multi_class='ovr', average='macro') -> 0.9
  Tensor P = f64({0.7, 0.2, 0.1, 0.2, 0.5, 0.3, 0.1, 0.3, 0.6, 0.3, 0.3, 0.4,
                  0.5, 0.25, 0.25, 0.1, 0.8, 0.1, 0.2, 0.2, 0.6, 0.4, 0.4, 0.2},
                 {8, 3});
  Tensor y = labels({0, 1, 2, 1, 0, 1, 2, 2});
  EXPECT_NEAR(roc_auc(P, y), 0.9, 1e-12);
  EXPECT_NEAR(roc_auc(P.to(DType::F32), y), 0.9, 1e-12);
}

// --- log loss ---

TEST(Metrics, LogLossMatchesSklearn) {
  // log_loss(y, P, labels=[0,1,2]) with P, y of RocAucOneVsRestMatchesSklearn
  //   -> 0.7251468525831063
  Tensor P = f64({0.7, 0.2, 0.1, 0.2, 0.5, 0.3, 0.1, 0.3, 0.6, 0.3, 0.3, 0.4,
                  0.5, 0.25, 0.25, 0.1, 0.8, 0.1, 0.2, 0.2, 0.6, 0.4, 0.4, 0.2},
                 {8, 3});
  EXPECT_NEAR(log_loss(P, labels({0, 1, 2, 1, 0, 1, 2, 2})), 0.7251468525831063, 1e-12);
  // Binary with probabilities 0 and 1 (clipped to 1e-15):
  // log_loss([0,0,1,1,1,0,1,0], [0.9,0.0,1.0,0.3,0.6,0.5,0.99,0.2], labels=[0,1])
  //   -> 0.6179655736017038
  EXPECT_NEAR(log_loss(f64({0.9, 0.0, 1.0, 0.3, 0.6, 0.5, 0.99, 0.2}),
                       labels({0, 0, 1, 1, 1, 0, 1, 0})),
              0.6179655736017038, 1e-12);
  // A confidently wrong prediction costs -log(1e-15).
  EXPECT_NEAR(log_loss(f64({0.0}), labels({1})), -std::log(1e-15), 1e-9);
  // Z = [[2,-1,0.5],[0.1,0.2,0.3],[-3,4,1],[0,0,0]]; y = [0,2,1,1]
  // log_loss(y, softmax(Z, axis=1), labels=[0,1,2]) -> 0.5978305108125392
  Tensor Z = f64({2, -1, 0.5, 0.1, 0.2, 0.3, -3, 4, 1, 0, 0, 0}, {4, 3});
  EXPECT_NEAR(log_loss_from_logits(Z, labels({0, 2, 1, 1})), 0.5978305108125392, 1e-12);
  // Binary logits: sigmoid(0) = 0.5 -> log 2.
  EXPECT_NEAR(log_loss_from_logits(f64({0.0, 0.0}), labels({0, 1})), std::log(2.0), 1e-15);
}

// --- regression ---

TEST(Metrics, RegressionMatchesSklearn) {
  // yr = [3.0,-0.5,2.0,7.0,4.2,1.1]; pr = [2.5,0.0,2.0,8.0,3.9,1.5]
  // mean_squared_error, mean_absolute_error, r2_score
  //   -> 0.2916666666666667, 0.45, 0.9486200822078684
  Tensor yr = f64({3.0, -0.5, 2.0, 7.0, 4.2, 1.1}), pr = f64({2.5, 0.0, 2.0, 8.0, 3.9, 1.5});
  EXPECT_NEAR(mse(pr, yr), 0.2916666666666667, 1e-12);
  EXPECT_NEAR(mae(pr, yr), 0.45, 1e-12);
  EXPECT_NEAR(r2(pr, yr), 0.9486200822078684, 1e-12);
  // Multi-output, uniform average:
  // Y2 = [[0.5,1],[-1,1],[7,-6],[2,3],[1,0]]; P2 = [[0,2],[-1,2],[8,-5],[2.5,2],[0.5,0.5]]
  //   -> 0.6, 0.7, 0.931072511717673
  Tensor Y2 = f64({0.5, 1, -1, 1, 7, -6, 2, 3, 1, 0}, {5, 2});
  Tensor P2 = f64({0, 2, -1, 2, 8, -5, 2.5, 2, 0.5, 0.5}, {5, 2});
  EXPECT_NEAR(mse(P2, Y2), 0.6, 1e-12);
  EXPECT_NEAR(mae(P2, Y2), 0.7, 1e-12);
  EXPECT_NEAR(r2(P2, Y2), 0.931072511717673, 1e-12);
  // Constant target: r2_score([2,2,2],[2,2,2]) -> 1.0; r2_score([2,2,2],[2,2,3]) -> 0.0
  EXPECT_DOUBLE_EQ(r2(f64({2, 2, 2}), f64({2, 2, 2})), 1.0);
  EXPECT_DOUBLE_EQ(r2(f64({2, 2, 3}), f64({2, 2, 2})), 0.0);
  // Hand-computed: perfect prediction, and predicting the mean gives 0.
  EXPECT_DOUBLE_EQ(mse(f64({1, 2}), f64({1, 2})), 0.0);
  EXPECT_DOUBLE_EQ(r2(f64({2, 2, 2}), f64({1, 2, 3})), 0.0);
}

// --- errors ---

TEST(Metrics, ErrorsNameFunctionAndShapes) {
  Tensor y3 = labels({0, 1, 2});
  expect_error([&] { accuracy(labels({0, 1}), y3); }, {"accuracy", "i64[2]", "i64[3]"});
  expect_error([&] { confusion_matrix(labels({0, 1, 1}), labels({0, 1, 5}), 3); },
               {"confusion_matrix", "label 5", "[0, 3)", "i64[3]"});
  expect_error([&] { confusion_matrix(labels({0, 7, 1}), y3, 3); },
               {"confusion_matrix", "predicted class 7"});
  expect_error([&] { confusion_matrix(f64(std::vector<double>(6, 0.0), {3, 2}), y3, 3); },
               {"confusion_matrix", "f64[3, 2]", "num_classes = 3"});
  expect_error([&] { top_k_accuracy(f64(std::vector<double>(9, 0.0), {3, 3}), y3, 0); },
               {"top_k_accuracy", "k must be >= 1"});
  expect_error([&] { top_k_accuracy(f64({0.1, 0.2, 0.3}), y3, 1); },
               {"top_k_accuracy", "f64[3]"});
  expect_error([&] { classification_report(labels({0, 1, 2}), labels({0, -1, 2}), 3); },
               {"confusion_matrix", "label -1"});
  expect_error([&] { roc_curve(f64({0.1, 0.2, 0.3}), y3); }, {"roc_curve", "0 or 1"});
  expect_error([&] { roc_auc(f64({0.1, 0.2}), labels({1, 1})); },
               {"roc_auc", "only one class"});
  expect_error([&] { roc_auc(f64({0.1, 0.2}), labels({1, 1, 0})); },
               {"roc_auc", "f64[2]", "i64[3]"});
  // Logits instead of probabilities for multi-class AUC, and a class absent from labels.
  expect_error([&] { roc_auc(f64({2, 1, 0, 0, 1, 2, 1, 2, 0}, {3, 3}), y3); },
               {"roc_auc", "softmax"});
  expect_error(
      [&] { roc_auc(f64({0.5, 0.3, 0.2, 0.2, 0.5, 0.3, 0.3, 0.3, 0.4}, {3, 3}), labels({0, 1, 1})); },
      {"roc_auc", "class 2"});
  expect_error([&] { log_loss(f64({0.5, 0.5, 0.5, 0.5}, {2, 2}), labels({0, 2})); },
               {"log_loss", "label 2"});
  expect_error([&] { log_loss(f64({0.5}), f64({1.0})); }, {"log_loss", "integer"});
  expect_error([&] { mse(f64({1, 2, 3}), f64({1, 2})); }, {"mse", "f64[3]", "f64[2]"});
  expect_error([&] { r2(f64({1, 2}, {2, 1}), f64({1, 2})); }, {"r2", "f64[2, 1]"});
  expect_error([&] { accuracy(labels(std::vector<int64_t>{}), labels(std::vector<int64_t>{})); },
               {"accuracy", "empty"});
}

}  // namespace
}  // namespace mox::train
