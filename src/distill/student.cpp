// The students' common ground: the spec parser ("linear", "tree:max_depth=5", ...), the factory,
// the default methods of Student and the one-vs-rest reduction.
#include <sstream>

#include "candor/error.h"
#include "candor/text_transformer.h"
#include "distill/students.h"

namespace candor::distill {

// One-vs-rest targets: for two classes one problem (class 1), else one per class.
std::vector<std::vector<double>> ovr_targets(const Probs& t, size_t* n_classes) {
  *n_classes = t.empty() ? 0 : t[0].size();
  const size_t k = *n_classes;
  std::vector<std::vector<double>> y(k == 2 ? 1 : k, std::vector<double>(t.size()));
  for (size_t i = 0; i < t.size(); ++i) {
    if (k == 2) {
      y[0][i] = t[i][1];
    } else {
      for (size_t c = 0; c < k; ++c) y[c][i] = t[i][c];
    }
  }
  return y;
}

Probs ovr_probs(const std::vector<std::vector<double>>& margins, size_t k, size_t n) {
  Probs p(n, std::vector<double>(k, 0.0));
  for (size_t i = 0; i < n; ++i) {
    if (k == 2) {
      double s = sigmoid(margins[0][i]);
      p[i] = {1.0 - s, s};
    } else {
      double z = 0;
      for (size_t c = 0; c < k; ++c) z += p[i][c] = sigmoid(margins[c][i]);
      for (size_t c = 0; c < k; ++c) p[i][c] /= z;
    }
  }
  return p;
}

StudentOptions parse_student(const std::string& spec) {
  StudentOptions o;
  size_t colon = spec.find(':');
  o.kind = spec.substr(0, colon);
  o.spec = spec;
  if (o.kind == "gam") o.lambda = 0;
  if (o.kind == "transformer") {
    train::TransformerOptions t;
    train::TrainOptions to;
    train::parse_transformer_spec(spec, &t, &to);  // throws for bad options
    return o;
  }
  if (o.kind != "linear" && o.kind != "tree" && o.kind != "gam")
    throw Error(ErrorCode::kInvalidArgument, "unknown student '" + o.kind + "'",
                "use linear, tree, gam or transformer");
  if (colon == std::string::npos) return o;
  std::stringstream ss(spec.substr(colon + 1));
  std::string kv;
  while (std::getline(ss, kv, ',')) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos)
      throw Error(ErrorCode::kInvalidArgument,
                  "student option '" + kv + "' in '" + spec + "' is not key=value");
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    try {
      if (k == "lambda")
        o.lambda = std::stod(v);
      else if (k == "l1_ratio")
        o.l1_ratio = std::stod(v);
      else if (k == "max_iter")
        o.max_iter = std::stoi(v);
      else if (k == "max_depth")
        o.max_depth = std::stoi(v);
      else if (k == "min_leaf")
        o.min_leaf = std::stoi(v);
      else if (k == "rounds")
        o.rounds = std::stoi(v);
      else if (k == "interactions")
        o.interactions = std::stoi(v);
      else if (k == "learning_rate")
        o.learning_rate = std::stod(v);
      else
        throw Error(ErrorCode::kInvalidArgument,
                    "unknown option '" + k + "' for student '" + o.kind + "'",
                    "linear: lambda, l1_ratio, max_iter; tree: max_depth, min_leaf; gam: rounds, "
                    "interactions, learning_rate");
    } catch (const std::logic_error&) {
      throw Error(ErrorCode::kInvalidArgument,
                  "student option '" + k + "' has a bad value '" + v + "'");
    }
  }
  if (o.lambda < 0 || o.l1_ratio < 0 || o.l1_ratio > 1 || o.max_depth < 0 || o.min_leaf < 1 ||
      o.rounds < 0 || o.learning_rate <= 0 || o.max_iter < 1)
    throw Error(ErrorCode::kInvalidArgument, "student options out of range in '" + spec + "'");
  return o;
}

std::unique_ptr<Student> make_student(const StudentOptions& o) {
  if (o.kind == "linear") return make_linear_student(o);
  if (o.kind == "tree") return make_tree_student(o);
  if (o.kind == "gam") return make_gam_student(o);
  if (o.kind == "transformer") {
    train::TrainOptions to;
    to.seed = o.seed;
    return make_transformer_student(o.spec.empty() ? "transformer" : o.spec, to);
  }
  throw Error(ErrorCode::kInvalidArgument, "unknown student '" + o.kind + "'",
              "use linear, tree, gam or transformer");
}

void Student::fit_text(const std::vector<std::string>&, const Probs&, const std::vector<int>&,
                       const std::vector<std::string>&) {
  throw Error(ErrorCode::kInternal, "the " + kind() + " student reads features, not texts");
}

Probs Student::predict_text(const std::vector<std::string>&) const {
  throw Error(ErrorCode::kInternal, "the " + kind() + " student reads features, not texts");
}

void Student::fit_sparse(const Featurizer&, const SparseRows&, const Probs&) {
  throw Error(ErrorCode::kInternal, "the " + kind() + " student reads dense bins, not sparse rows");
}

Probs Student::predict_sparse(const SparseRows&) const {
  throw Error(ErrorCode::kInternal, "the " + kind() + " student reads dense bins, not sparse rows");
}

}  // namespace candor::distill
