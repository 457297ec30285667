// What the students of distill/ share: the one-vs-rest reduction of the linear and GAM students
// and a factory per student (one file each). Internal header of candor_train.
#pragma once

#include <cmath>
#include <cstdint>
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
