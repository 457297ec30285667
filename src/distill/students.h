// What the students of distill/ share: the one-vs-rest reduction of the linear and GAM students
// and a factory per student (one file each). Internal header of candor_train.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "candor/distill.h"

namespace candor::distill {

using Bins = std::vector<std::vector<uint16_t>>;  // [feature][row]

inline double sigmoid(double m) { return 1.0 / (1.0 + std::exp(-m)); }

// One-vs-rest targets: for two classes one problem (class 1), else one per class. [problem][row]
std::vector<std::vector<double>> ovr_targets(const Probs& t, size_t* n_classes);
// Class probabilities [row][class] from one-vs-rest margins [problem][row].
Probs ovr_probs(const std::vector<std::vector<double>>& margins, size_t k, size_t n);

// --- cross-validation of a student's strength on its training rows ---------------------------

// The fold (0 .. k-1) of each of n rows: a seeded shuffle dealt round-robin (sizes differ by <= 1).
std::vector<int> cv_fold_of(size_t n, int k, uint64_t seed);
// Rows `rows` of [feature][row] bins / of probabilities.
Bins select_rows(const Bins& bins, const std::vector<uint32_t>& rows);
Probs select_rows(const Probs& p, const std::vector<uint32_t>& rows);

// What a cross-validation tried and chose: per grid value the mean held-out log-loss against the
// teacher's probabilities (clamped at 1e-4) and the agreement of the arg-max classes.
struct CvChoice {
  std::string parameter;
  int folds = 0;
  std::vector<double> grid, log_loss, agreement;
  size_t chosen = 0;
  double value() const { return grid.at(chosen); }
  nlohmann::json to_json() const;
  static CvChoice from_json(const nlohmann::json& j);  // what to_json wrote
};
// k-fold cross-validation: `fit_predict(train, test)` fits on the rows `train` (indices into
// `target`) once per grid value and returns the probabilities of the rows `test` for each, in
// grid order. The chosen value has the least mean log-loss; ties go to the earlier grid value
// (so order the grid from the strongest regularisation down).
CvChoice cross_validate(
    const std::string& parameter, const std::vector<double>& grid, const Probs& target, int k,
    uint64_t seed,
    const std::function<std::vector<Probs>(const std::vector<uint32_t>& train,
                                           const std::vector<uint32_t>& test)>& fit_predict);
// Whether the spec of `o` gave option `name`.
bool was_given(const StudentOptions& o, const std::string& name);

// What every glass-box student (linear, tree, GAM) keeps: its options (their kind is its kind),
// the featurizer's features it was fitted on and the number of classes.
class GlassBoxStudent : public Student {
 public:
  explicit GlassBoxStudent(StudentOptions o) : o_(std::move(o)) {}
  std::string kind() const override { return o_.kind; }  // "linear", "tree" or "gam"
  // Reads the student's parameters back from state() (the kind and options are read by
  // student_from_state); throws std::exception when they are malformed.
  virtual void restore(const nlohmann::json& state) = 0;
  void restore_common(const nlohmann::json& state, const std::vector<Feature>& features);

 protected:
  StudentOptions o_;
  std::vector<Feature> features_;
  size_t k_ = 0;
};

// The state every glass-box student writes: kind, options and class count.
nlohmann::json glassbox_state(const StudentOptions& o, size_t k);

std::unique_ptr<Student> make_linear_student(const StudentOptions& o);
std::unique_ptr<Student> make_tree_student(const StudentOptions& o);
std::unique_ptr<Student> make_gam_student(const StudentOptions& o);

}  // namespace candor::distill
