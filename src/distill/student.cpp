// The students' common ground: their declared options and the spec parser ("linear",
// "tree:max_depth=5", ... through candor/options.h), the factory,
// the default methods of Student and the one-vs-rest reduction.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

#include "candor/error.h"
#include "candor/lm_student.h"
#include "candor/text_transformer.h"
#include "distill/students.h"
#include "train/bound_options.h"

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

std::vector<int> cv_fold_of(size_t n, int k, uint64_t seed) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  std::vector<int> fold(n, 0);
  for (size_t i = 0; i < n; ++i) fold[order[i]] = static_cast<int>(i % static_cast<size_t>(k));
  return fold;
}

Bins select_rows(const Bins& bins, const std::vector<uint32_t>& rows) {
  Bins out(bins.size(), std::vector<uint16_t>(rows.size()));
  for (size_t f = 0; f < bins.size(); ++f)
    for (size_t i = 0; i < rows.size(); ++i) out[f][i] = bins[f][rows[i]];
  return out;
}

Probs select_rows(const Probs& p, const std::vector<uint32_t>& rows) {
  Probs out;
  out.reserve(rows.size());
  for (uint32_t r : rows) out.push_back(p[r]);
  return out;
}

nlohmann::json CvChoice::to_json() const {
  return {{"parameter", parameter}, {"folds", folds},         {"grid", grid},
          {"log_loss", log_loss},   {"agreement", agreement}, {"chosen", value()}};
}

CvChoice CvChoice::from_json(const nlohmann::json& j) {
  CvChoice cv;
  cv.parameter = j.at("parameter").get<std::string>();
  cv.folds = j.at("folds").get<int>();
  cv.grid = j.at("grid").get<std::vector<double>>();
  cv.log_loss = j.value("log_loss", std::vector<double>());
  cv.agreement = j.value("agreement", std::vector<double>());
  const double chosen = j.at("chosen").get<double>();
  for (size_t i = 0; i < cv.grid.size(); ++i)
    if (cv.grid[i] == chosen) cv.chosen = i;
  if (cv.grid.empty()) throw std::runtime_error("a cross-validation block without a grid");
  return cv;
}

CvChoice cross_validate(
    const std::string& parameter, const std::vector<double>& grid, const Probs& target, int k,
    uint64_t seed,
    const std::function<std::vector<Probs>(const std::vector<uint32_t>&,
                                           const std::vector<uint32_t>&)>& fit_predict) {
  CvChoice cv;
  cv.parameter = parameter;
  cv.folds = k;
  cv.grid = grid;
  cv.log_loss.assign(grid.size(), 0.0);
  cv.agreement.assign(grid.size(), 0.0);
  const size_t n = target.size();
  const std::vector<int> fold = cv_fold_of(n, k, seed);
  for (int f = 0; f < k; ++f) {
    std::vector<uint32_t> train, test;
    for (size_t i = 0; i < n; ++i) (fold[i] == f ? test : train).push_back(static_cast<uint32_t>(i));
    if (train.empty() || test.empty()) continue;
    const std::vector<Probs> pred = fit_predict(train, test);
    if (pred.size() != grid.size())
      throw Error(ErrorCode::kInternal, "cross-validation: a prediction per grid value expected");
    for (size_t g = 0; g < grid.size(); ++g)
      for (size_t q = 0; q < test.size(); ++q) {
        const std::vector<double>& t = target[test[q]];
        const std::vector<double>& p = pred[g][q];
        size_t ta = 0, pa = 0;
        for (size_t c = 0; c < t.size(); ++c) {
          if (t[c] > t[ta]) ta = c;
          if (p[c] > p[pa]) pa = c;
          if (t[c] > 0) cv.log_loss[g] -= t[c] * std::log(std::max(p[c], 1e-4));
        }
        cv.agreement[g] += ta == pa;
      }
  }
  for (size_t g = 0; g < grid.size(); ++g) {
    cv.log_loss[g] /= double(std::max<size_t>(n, 1));
    cv.agreement[g] /= double(std::max<size_t>(n, 1));
    if (cv.log_loss[g] < cv.log_loss[cv.chosen] - 1e-12) cv.chosen = g;
  }
  return cv;
}

bool was_given(const StudentOptions& o, const std::string& name) {
  return std::find(o.given.begin(), o.given.end(), name) != o.given.end();
}

namespace {

using Bound = std::vector<train::BoundOption<StudentOptions>>;

// The options of the glass-box students, each bound to its field of StudentOptions; nullptr for
// another kind.
const Bound* glassbox_fields(const std::string& kind) {
  static const std::map<std::string, Bound> fields = [] {
    const StudentOptions d;  // the defaults, written once there
    constexpr double kInf = std::numeric_limits<double>::infinity();
    constexpr int64_t kMany = 1000000000;
    auto bind = [](OptionSpec spec, auto field) {
      return train::bind_option(std::move(spec), field);
    };
    auto cv_spec = [&] {
      return OptionSpec::integer("cv_folds", d.cv_folds, 0, 100,
                                 "folds of the cross-validation on the training rows choosing the "
                                 "strength (0 or 1: none)");
    };
    std::map<std::string, Bound> f;
    f["linear"] = {
        bind(OptionSpec::real("lambda", d.lambda, 0, kInf, "penalty strength (scaled by 1/rows)"),
             &StudentOptions::lambda),
        bind(OptionSpec::real("l1_ratio", d.l1_ratio, 0, 1, "L1 share of the penalty (1: lasso)"),
             &StudentOptions::l1_ratio),
        bind(OptionSpec::integer("max_iter", d.max_iter, 1, kMany,
                                 "Newton (IRLS) iterations of the coordinate descent"),
             &StudentOptions::max_iter),
        bind(OptionSpec::choice("numeric", d.numeric, {"linear", "bins"},
                                "numeric columns: one standardised coefficient each (linear) or "
                                "one weight per quantile bin (bins)"),
             &StudentOptions::numeric),
        bind(cv_spec(), &StudentOptions::cv_folds)};
    f["tree"] = {
        bind(OptionSpec::integer("max_depth", d.max_depth, 0, kMany, "depth of the tree"),
             &StudentOptions::max_depth),
        bind(OptionSpec::integer("min_leaf", d.min_leaf, 1, kMany,
                                 "training rows per leaf (chosen by cross-validation unless "
                                 "given)"),
             &StudentOptions::min_leaf),
        bind(cv_spec(), &StudentOptions::cv_folds)};
    f["gam"] = {
        bind(OptionSpec::integer("rounds", d.rounds, 0, kMany, "boosting rounds"),
             &StudentOptions::rounds),
        bind(OptionSpec::integer("interactions", d.interactions, 0, kMany,
                                 "pairwise interactions fitted (default: chosen by "
                                 "cross-validation among 0, 1, 2, 3, 5 and 8)"),
             &StudentOptions::interactions),
        bind(OptionSpec::real("learning_rate", d.learning_rate, 0, 1,
                              "share of each Newton step taken (1: the whole step)")
                 .above(),
             &StudentOptions::learning_rate),
        bind(OptionSpec::real("smoothing", d.smoothing, 0, kInf,
                              "second-difference penalty of the numeric shapes (chosen by "
                              "cross-validation unless given)"),
             &StudentOptions::smoothing),
        bind(OptionSpec::integer("bins", d.bins, 2, 256,
                                 "quantile bins per numeric shape (fewer than the featurizer's "
                                 "are merged by training counts)"),
             &StudentOptions::bins),
        bind(OptionSpec::integer("bags", d.bags, 0, 1000,
                                 "bootstrap refits for the confidence bands (0: none)"),
             &StudentOptions::bags),
        bind(OptionSpec::text("monotone", d.monotone,
                              "shapes constrained to rise (+) or fall (-), e.g. age:+;bmi:-"),
             &StudentOptions::monotone),
        bind(cv_spec(), &StudentOptions::cv_folds)};
    return f;
  }();
  auto it = fields.find(kind);
  return it == fields.end() ? nullptr : &it->second;
}

Error unknown_student(const std::string& kind) {
  return Error(ErrorCode::kInvalidArgument, "unknown student '" + kind + "'",
               "use linear, tree, gam, transformer or lm");
}

}  // namespace

OptionSpecs student_options(const std::string& kind) {
  if (kind == "transformer") return train::transformer_options();
  if (kind == "lm") return lm_student_options();
  const Bound* f = glassbox_fields(kind);
  if (!f) throw unknown_student(kind);
  return train::declarations(*f);
}

StudentOptions parse_student(const std::string& spec) {
  StudentOptions o;
  const auto [kind, given] = parse_spec(spec);
  o.kind = kind;
  o.spec = spec;
  if (o.kind == "transformer") {
    train::TransformerOptions t;
    train::TrainOptions to;
    train::parse_transformer_spec(spec, &t, &to);  // throws for bad options
    return o;
  }
  const Bound* f = glassbox_fields(o.kind);
  if (!f) throw unknown_student(o.kind);
  if (o.kind == "gam") o.lambda = 0;
  train::apply_options(*f, Options("student", o.kind, train::declarations(*f), given), &o);
  for (const auto& kv : given) o.given.push_back(kv.first);
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

nlohmann::json Student::state() const {
  throw Error(ErrorCode::kUnsupported, "the " + kind() + " student is not saved as JSON",
              "a transformer student is saved as a Hugging Face folder (OUT/model)");
}

nlohmann::json glassbox_state(const StudentOptions& o, size_t k) {
  return {{"kind", o.kind},
          {"classes", k},
          {"options",
           {{"lambda", o.lambda},
            {"l1_ratio", o.l1_ratio},
            {"max_iter", o.max_iter},
            {"max_depth", o.max_depth},
            {"min_leaf", o.min_leaf},
            {"rounds", o.rounds},
            {"interactions", o.interactions},
            {"learning_rate", o.learning_rate},
            {"seed", o.seed},
            {"cv_folds", o.cv_folds},
            {"numeric", o.numeric},
            {"bins", o.bins},
            {"bags", o.bags},
            {"smoothing", o.smoothing},
            {"monotone", o.monotone}}}};
}

void GlassBoxStudent::restore_common(const nlohmann::json& j,
                                     const std::vector<Feature>& features) {
  features_ = features;
  k_ = j.at("classes").get<size_t>();
  if (k_ < 2) throw std::runtime_error("a student needs at least two classes");
  const nlohmann::json& o = j.at("options");
  o_.lambda = o.at("lambda").get<double>();
  o_.l1_ratio = o.at("l1_ratio").get<double>();
  o_.max_iter = o.at("max_iter").get<int>();
  o_.max_depth = o.at("max_depth").get<int>();
  o_.min_leaf = o.at("min_leaf").get<int>();
  o_.rounds = o.at("rounds").get<int>();
  o_.interactions = o.at("interactions").get<int>();
  o_.learning_rate = o.at("learning_rate").get<double>();
  o_.seed = o.at("seed").get<uint64_t>();
  o_.cv_folds = o.value("cv_folds", o_.cv_folds);
  o_.numeric = o.value("numeric", o_.numeric);
  o_.bins = o.value("bins", o_.bins);
  o_.bags = o.value("bags", o_.bags);
  o_.smoothing = o.value("smoothing", o_.smoothing);
  o_.monotone = o.value("monotone", o_.monotone);
}

std::unique_ptr<Student> student_from_state(const nlohmann::json& state, const Featurizer& f,
                                            const std::string& source) {
  std::string kind;
  try {
    kind = state.at("kind").get<std::string>();
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kInvalidArgument,
                source + ": not a saved student (" + std::string(e.what()) + ")",
                "give the student.json that candor distill wrote");
  }
  if (kind != "linear" && kind != "tree" && kind != "gam")
    throw Error(
        ErrorCode::kInvalidArgument,
        source + ": a saved student of kind '" + kind + "' (candor reads linear, tree, gam)",
        "distill the student again with this version of candor");
  StudentOptions o;
  o.kind = kind;
  o.spec = kind;
  std::unique_ptr<Student> s = make_student(o);
  auto* g = static_cast<GlassBoxStudent*>(s.get());
  try {
    g->restore_common(state, f.features());
    g->restore(state);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kInvalidArgument,
                source + ": the saved " + kind + " student is malformed (" + e.what() + ")",
                "distill the student again (candor distill ... --out DIR)");
  }
  return s;
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
