// The GAM student: a smooth shape function per feature (penalised Newton backfitting over a few
// quantile bins, optionally monotone) with bootstrap confidence bands, and the strongest pairwise
// interactions; its smoothness chosen by k-fold cross-validation on the training rows.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <tuple>

#include "candor/error.h"
#include "distill/students.h"

namespace candor::distill {

namespace {

std::string gam_num(double v) {
  std::ostringstream ss;
  ss.precision(4);
  ss << v;
  return ss.str();
}

// Solves A x = b for a small dense symmetric positive definite A (Gaussian elimination with
// partial pivoting; n <= 257).
std::vector<double> solve_dense(std::vector<double> a, std::vector<double> b, size_t n) {
  for (size_t c = 0; c < n; ++c) {
    size_t piv = c;
    for (size_t r = c + 1; r < n; ++r)
      if (std::fabs(a[r * n + c]) > std::fabs(a[piv * n + c])) piv = r;
    if (piv != c) {
      for (size_t k = 0; k < n; ++k) std::swap(a[c * n + k], a[piv * n + k]);
      std::swap(b[c], b[piv]);
    }
    const double d = a[c * n + c];
    if (std::fabs(d) < 1e-300) continue;
    for (size_t r = c + 1; r < n; ++r) {
      const double f = a[r * n + c] / d;
      if (f == 0) continue;
      for (size_t k = c; k < n; ++k) a[r * n + k] -= f * a[c * n + k];
      b[r] -= f * b[c];
    }
  }
  std::vector<double> x(n, 0.0);
  for (size_t c = n; c-- > 0;) {
    double s = b[c];
    for (size_t k = c + 1; k < n; ++k) s -= a[c * n + k] * x[k];
    x[c] = std::fabs(a[c * n + c]) < 1e-300 ? 0.0 : s / a[c * n + c];
  }
  return x;
}

// The weighted least-squares projection of v onto non-decreasing sequences (pool adjacent
// violators).
void isotonic(std::vector<double>& v, const std::vector<double>& w) {
  std::vector<double> val, wt;
  std::vector<size_t> len;
  for (size_t i = 0; i < v.size(); ++i) {
    val.push_back(v[i]);
    wt.push_back(std::max(w[i], 1e-9));
    len.push_back(1);
    while (val.size() > 1 && val[val.size() - 2] > val.back()) {
      const size_t a = val.size() - 2;
      const double ww = wt[a] + wt.back();
      val[a] = (val[a] * wt[a] + val.back() * wt.back()) / ww;
      wt[a] = ww;
      len[a] += len.back();
      val.pop_back();
      wt.pop_back();
      len.pop_back();
    }
  }
  size_t i = 0;
  for (size_t b = 0; b < val.size(); ++b)
    for (size_t k = 0; k < len[b]; ++k) v[i++] = val[b];
}

constexpr double kRidge = 1.0;  // the penalty of unordered levels (and pair cells), in rows

class GamStudent : public GlassBoxStudent {
 public:
  using GlassBoxStudent::GlassBoxStudent;

  void fit(const Featurizer& fz, const Bins& bins, const Probs& target) override {
    features_ = fz.features();
    const size_t n = target.size();
    auto ys = ovr_targets(target, &k_);
    const size_t F = features_.size();
    fit_ = Fit();
    parse_monotone();
    // Groups: numeric columns' quantile bins merged to at most o_.bins by training counts.
    fit_.group.assign(F, {});
    fit_.shape.assign(F, ShapeInfo());
    for (size_t f = 0; f < F; ++f) make_groups(f, bins[f]);
    fit_.monotone = monotone_;
    Bins g(F, std::vector<uint16_t>(n));
    for (size_t f = 0; f < F; ++f)
      for (size_t i = 0; i < n; ++i) g[f][i] = fit_.group[f][bins[f][i]];
    fit_.smoothing = o_.smoothing;
    if (o_.cv_folds >= 2 && !was_given(o_, "smoothing") && n >= 2 * size_t(o_.cv_folds)) {
      const std::vector<double> grid = {100, 10, 1, 0.1, 0.01, 1e-3, 1e-4, 1e-5};
      fit_.cv = cross_validate(
          "smoothing", grid, target, o_.cv_folds, o_.seed,
          [&](const std::vector<uint32_t>& train, const std::vector<uint32_t>& test) {
            std::vector<double> w(n, 0.0);
            for (uint32_t i : train) w[i] = 1.0;
            const Bins gv = select_rows(g, test);
            std::vector<Probs> out;
            std::vector<Model> ms;
            for (double lam : grid) {  // a path: each fit starts from the last
              for (size_t c = 0; c < ys.size(); ++c) {
                Model next = fit_model(g, ys[c], w, lam, ms.size() > c ? &ms[c] : nullptr);
                if (ms.size() > c)
                  ms[c] = std::move(next);
                else
                  ms.push_back(std::move(next));
              }
              out.push_back(predict_groups(ms, gv));
            }
            return out;
          });
      fit_.smoothing = fit_.cv.value();
    }
    choose_pairs(g, ys, target);
    std::vector<double> ones(n, 1.0);
    fit_.models.clear();
    for (const auto& y : ys)
      fit_.models.push_back(fit_model(g, y, ones, fit_.smoothing, nullptr, fit_.n_pairs));
    // Confidence bands: the spread of the shapes refitted on bootstrap samples of the rows.
    if (o_.bags >= 2) {
      std::mt19937_64 rng(o_.seed * 7919 + 17);
      std::vector<std::vector<std::vector<double>>> s1(ys.size()), s2(ys.size());
      for (size_t c = 0; c < ys.size(); ++c) {
        s1[c].assign(F, {});
        s2[c].assign(F, {});
        for (size_t f = 0; f < F; ++f) {
          s1[c][f].assign(fit_.shape[f].n_groups, 0.0);
          s2[c][f].assign(fit_.shape[f].n_groups, 0.0);
        }
      }
      for (int b = 0; b < o_.bags; ++b) {
        std::vector<double> w(n, 0.0);
        for (size_t i = 0; i < n; ++i) w[rng() % n] += 1.0;
        for (size_t c = 0; c < ys.size(); ++c) {
          Model m = fit_model(g, ys[c], w, fit_.smoothing, &fit_.models[c], fit_.n_pairs);
          centre(m, g, ones);
          for (size_t f = 0; f < F; ++f)
            for (size_t q = 0; q < m.shapes[f].size(); ++q) {
              s1[c][f][q] += m.shapes[f][q];
              s2[c][f][q] += m.shapes[f][q] * m.shapes[f][q];
            }
        }
      }
      for (size_t c = 0; c < ys.size(); ++c) {
        Model& m = fit_.models[c];
        m.sd.assign(F, {});
        for (size_t f = 0; f < F; ++f)
          for (size_t q = 0; q < s1[c][f].size(); ++q) {
            const double mean = s1[c][f][q] / o_.bags;
            const double var = std::max(0.0, s2[c][f][q] / o_.bags - mean * mean);
            m.sd[f].push_back(std::sqrt(var * o_.bags / (o_.bags - 1)));
          }
      }
    }
    for (Model& m : fit_.models) {
      centre(m, g, ones);
      importance(m, g);
    }
  }

  Probs predict(const Bins& bins) const override {
    const size_t n = bins.empty() ? 0 : bins[0].size();
    Bins g(features_.size(), std::vector<uint16_t>(n));
    for (size_t f = 0; f < features_.size(); ++f)
      for (size_t i = 0; i < n; ++i)
        g[f][i] = fit_.group[f][std::min<size_t>(bins[f][i], fit_.group[f].size() - 1)];
    return predict_groups(fit_.models, g);
  }

  // Everything fit_ holds, to save the student and read it back (student.json).
  nlohmann::json state() const override {
    nlohmann::json j = glassbox_state(o_, k_);
    j["group"] = fit_.group;
    j["shape_info"] = nlohmann::json::array();
    for (const ShapeInfo& si : fit_.shape)
      j["shape_info"].push_back({{"n_groups", si.n_groups},
                                 {"n_smooth", si.n_smooth},
                                 {"labels", si.labels},
                                 {"edges", si.edges},
                                 {"counts", si.counts}});
    j["monotone"] = fit_.monotone;
    j["smoothing"] = fit_.smoothing;
    if (!fit_.cv.grid.empty()) j["cv"] = fit_.cv.to_json();
    if (!fit_.pairs_cv.grid.empty()) j["interactions_cv"] = fit_.pairs_cv.to_json();
    j["models"] = nlohmann::json::array();
    for (const Model& md : fit_.models) {
      nlohmann::json m = {{"intercept", md.intercept},
                          {"shapes", md.shapes},
                          {"sd", md.sd},
                          {"importance", md.importance},
                          {"pairs", nlohmann::json::array()}};
      for (const Pair& pr : md.pairs)
        m["pairs"].push_back({{"features", {pr.f1, pr.f2}},
                              {"bins_per_cell", {pr.div1, pr.div2}},
                              {"shape", {pr.n1, pr.n2}},
                              {"values", pr.table},
                              {"importance", pr.importance}});
      j["models"].push_back(std::move(m));
    }
    return j;
  }

  void restore(const nlohmann::json& j) override {
    Fit fit;
    const size_t F = features_.size();
    fit.group = j.at("group").get<std::vector<std::vector<uint16_t>>>();
    if (fit.group.size() != F) throw std::runtime_error("the GAM's groups do not match the features");
    for (const auto& e : j.at("shape_info")) {
      ShapeInfo si;
      si.n_groups = e.at("n_groups").get<int>();
      si.n_smooth = e.at("n_smooth").get<int>();
      si.labels = e.at("labels").get<std::vector<std::string>>();
      si.edges = e.at("edges").get<std::vector<double>>();
      si.counts = e.at("counts").get<std::vector<double>>();
      fit.shape.push_back(std::move(si));
    }
    if (fit.shape.size() != F) throw std::runtime_error("the GAM's shapes do not match the features");
    for (size_t f = 0; f < F; ++f) {
      if (fit.group[f].size() != static_cast<size_t>(features_[f].n_bins()))
        throw std::runtime_error("the groups of '" + features_[f].name +
                                 "' do not match its bins");
      for (uint16_t g : fit.group[f])
        if (g >= fit.shape[f].n_groups)
          throw std::runtime_error("a group of '" + features_[f].name + "' is out of range");
    }
    fit.monotone = j.at("monotone").get<std::vector<int>>();
    fit.smoothing = j.at("smoothing").get<double>();
    if (j.contains("cv")) fit.cv = CvChoice::from_json(j.at("cv"));
    if (j.contains("interactions_cv")) fit.pairs_cv = CvChoice::from_json(j.at("interactions_cv"));
    for (const auto& e : j.at("models")) {
      Model md;
      md.intercept = e.at("intercept").get<double>();
      md.shapes = e.at("shapes").get<std::vector<std::vector<double>>>();
      md.sd = e.value("sd", std::vector<std::vector<double>>());
      md.importance = e.at("importance").get<std::vector<double>>();
      if (md.shapes.size() != F) throw std::runtime_error("the GAM's shapes do not match the features");
      for (size_t f = 0; f < F; ++f)
        if (md.shapes[f].size() != static_cast<size_t>(fit.shape[f].n_groups))
          throw std::runtime_error("the shape of '" + features_[f].name +
                                   "' does not match its groups");
      for (const auto& q : e.at("pairs")) {
        Pair pr;
        pr.f1 = q.at("features").at(0).get<size_t>();
        pr.f2 = q.at("features").at(1).get<size_t>();
        pr.div1 = q.at("bins_per_cell").at(0).get<int>();
        pr.div2 = q.at("bins_per_cell").at(1).get<int>();
        pr.n1 = q.at("shape").at(0).get<int>();
        pr.n2 = q.at("shape").at(1).get<int>();
        pr.table = q.at("values").get<std::vector<double>>();
        pr.importance = q.at("importance").get<double>();
        if (pr.f1 >= F || pr.f2 >= F || pr.div1 < 1 || pr.div2 < 1 || pr.n1 < 1 || pr.n2 < 1 ||
            pr.table.size() != static_cast<size_t>(pr.n1) * static_cast<size_t>(pr.n2) ||
            (fit.shape[pr.f1].n_groups - 1) / pr.div1 >= pr.n1 ||
            (fit.shape[pr.f2].n_groups - 1) / pr.div2 >= pr.n2)
          throw std::runtime_error("an interaction does not match its features' groups");
        md.pairs.push_back(std::move(pr));
      }
      fit.n_pairs = static_cast<int>(md.pairs.size());
      fit.models.push_back(std::move(md));
    }
    if (fit.models.size() != (k_ == 2 ? 1 : k_))
      throw std::runtime_error("the GAM has " + std::to_string(fit.models.size()) +
                               " models for " + std::to_string(k_) + " classes");
    monotone_ = fit.monotone;
    fit_ = std::move(fit);
  }

  nlohmann::json explain() const override {
    nlohmann::json j;
    j["kind"] = "gam";
    j["rounds"] = o_.rounds;
    j["learning_rate"] = o_.learning_rate;
    j["smoothing"] = fit_.smoothing;
    j["bins"] = o_.bins;
    j["bags"] = o_.bags;
    if (!fit_.cv.grid.empty()) j["cv"] = fit_.cv.to_json();
    j["interactions"] = fit_.n_pairs;
    if (!fit_.pairs_cv.grid.empty()) j["interactions_cv"] = fit_.pairs_cv.to_json();
    if (o_.bags >= 2)
      j["band"] = "shape +- 1.96 SD of " + std::to_string(o_.bags) + " bootstrap refits";
    j["models"] = nlohmann::json::array();
    for (size_t c = 0; c < fit_.models.size(); ++c) {
      const Model& md = fit_.models[c];
      nlohmann::json m;
      m["class_index"] = k_ == 2 ? 1 : c;
      m["intercept"] = md.intercept;
      m["shapes"] = nlohmann::json::array();
      for (size_t f : order(md)) {
        const ShapeInfo& si = fit_.shape[f];
        nlohmann::json s = {{"feature", features_[f].name},
                            {"kind", features_[f].kind == Feature::kNumeric       ? "numeric"
                                     : features_[f].kind == Feature::kCategorical ? "categorical"
                                                                                  : "ngram"},
                            {"importance", md.importance[f]},
                            {"bins", si.labels},
                            {"rows", si.counts},
                            {"values", md.shapes[f]}};
        if (features_[f].kind == Feature::kNumeric) s["edges"] = si.edges;  // the units' cuts
        if (!md.sd.empty()) {
          std::vector<double> lo, hi;
          for (size_t q = 0; q < md.shapes[f].size(); ++q) {
            lo.push_back(md.shapes[f][q] - 1.96 * md.sd[f][q]);
            hi.push_back(md.shapes[f][q] + 1.96 * md.sd[f][q]);
          }
          s["lower"] = lo;
          s["upper"] = hi;
        }
        if (fit_.monotone[f] != 0) s["monotone"] = fit_.monotone[f] > 0 ? "+" : "-";
        m["shapes"].push_back(std::move(s));
      }
      m["interactions"] = nlohmann::json::array();
      for (const Pair& pr : md.pairs)
        m["interactions"].push_back({{"features", {features_[pr.f1].name, features_[pr.f2].name}},
                                     {"importance", pr.importance},
                                     {"bins_per_cell", {pr.div1, pr.div2}},
                                     {"shape", {pr.n1, pr.n2}},
                                     {"values", pr.table}});
      j["models"].push_back(m);
    }
    return j;
  }

 private:
  struct Pair {
    size_t f1, f2;
    int div1, div2, n1, n2;
    std::vector<double> table;  // [n1 * n2]
    double importance = 0;
  };
  struct Model {
    double intercept = 0;
    std::vector<std::vector<double>> shapes;  // [feature][group]
    std::vector<std::vector<double>> sd;      // [feature][group] over the bootstrap refits
    std::vector<double> importance;
    std::vector<Pair> pairs;
  };
  struct ShapeInfo {
    int n_groups = 0;
    int n_smooth = 0;  // the first n_smooth groups are ordered (numeric values): smoothed
    std::vector<std::string> labels;
    std::vector<double> edges;  // numeric: the n_smooth - 1 cuts between the ordered groups
    std::vector<double> counts;  // training rows per group
  };
  // Everything the fitted student is (to save and load it: one struct).
  struct Fit {
    std::vector<std::vector<uint16_t>> group;  // [feature][featurizer bin] -> group
    std::vector<ShapeInfo> shape;
    std::vector<int> monotone;  // [feature]: +1 rising, -1 falling, 0 free
    double smoothing = 0;
    CvChoice cv;
    int n_pairs = 0;     // the pairwise interactions fitted
    CvChoice pairs_cv;   // how many, when chosen by cross-validation
    std::vector<Model> models;  // one per one-vs-rest problem
  };

  void parse_monotone() {
    monotone_.assign(features_.size(), 0);
    if (o_.monotone.empty()) return;
    std::stringstream ss(o_.monotone);
    std::string item;
    while (std::getline(ss, item, ';')) {
      if (item.empty()) continue;
      const size_t colon = item.rfind(':');
      const std::string name = item.substr(0, colon);
      const std::string dir = colon == std::string::npos ? "" : item.substr(colon + 1);
      if (dir != "+" && dir != "-")
        throw Error(ErrorCode::kInvalidArgument,
                    "gam student: monotone entry '" + item + "' is not COLUMN:+ or COLUMN:-",
                    "e.g. 'gam:monotone=age:+;bmi:-' (entries separated by ';', quoted in the shell)");
      bool found = false;
      std::string numeric;
      for (size_t f = 0; f < features_.size(); ++f) {
        if (features_[f].kind == Feature::kNumeric)
          numeric += (numeric.empty() ? "" : ", ") + features_[f].name;
        if (features_[f].name != name) continue;
        if (features_[f].kind != Feature::kNumeric)
          throw Error(ErrorCode::kInvalidArgument,
                      "gam student: monotone column '" + name + "' is not numeric",
                      "only numeric columns have an order to keep");
        monotone_[f] = dir == "+" ? 1 : -1;
        found = true;
      }
      if (!found)
        throw Error(ErrorCode::kInvalidArgument,
                    "gam student: monotone names '" + name + "', which is not an input column",
                    "numeric input columns: " + (numeric.empty() ? "(none)" : numeric));
    }
  }

  // Merges feature f's featurizer bins into groups: numeric values in at most o_.bins groups of
  // about equal training counts (then the missing group); other features keep their bins.
  void make_groups(size_t f, const std::vector<uint16_t>& bins) {
    const Feature& ft = features_[f];
    const int nb = ft.n_bins();
    std::vector<double> cnt(nb, 0.0);
    for (uint16_t b : bins) cnt[std::min<int>(b, nb - 1)] += 1;
    ShapeInfo& si = fit_.shape[f];
    std::vector<uint16_t>& grp = fit_.group[f];
    grp.assign(nb, 0);
    if (ft.kind != Feature::kNumeric) {
      std::iota(grp.begin(), grp.end(), uint16_t(0));
      si.n_groups = nb;
      si.n_smooth = 0;
      si.labels = ft.bin_labels;
      si.counts = cnt;
      return;
    }
    const int nv = nb - 1;  // value bins; the last bin is "missing"
    double total = 0;
    for (int b = 0; b < nv; ++b) total += cnt[b];
    const int target = std::max(1, std::min(o_.bins, nv));
    // Each bin goes to the quantile group of its middle training row; groups renumbered 0, 1..
    std::vector<int> last_of_group;  // the last featurizer bin of each group
    double cum = 0;
    int gi = 0, prev = -1;
    for (int b = 0; b < nv; ++b) {
      const double mid = total > 0 ? (cum + 0.5 * cnt[b]) / total : double(b) / nv;
      cum += cnt[b];
      // With no more bins than groups, each bin is its own group (the quantile rule would merge
      // the small bins of a skewed column's tail, the ones that tell its large values apart).
      const int q = nv <= o_.bins ? b : std::min(target - 1, static_cast<int>(std::floor(target * mid)));
      if (prev >= 0 && q != prev) {
        last_of_group.push_back(b - 1);
        ++gi;
      }
      prev = q;
      grp[b] = static_cast<uint16_t>(gi);
    }
    last_of_group.push_back(nv - 1);
    ++gi;
    si.n_smooth = gi;
    si.n_groups = gi + 1;
    grp[nv] = static_cast<uint16_t>(gi);
    si.counts.assign(si.n_groups, 0.0);
    for (int b = 0; b < nb; ++b) si.counts[grp[b]] += cnt[b];
    for (int q = 0; q < gi; ++q) {
      const double hi = ft.upper[last_of_group[q]];
      const double lo = q == 0 ? -INFINITY : ft.upper[last_of_group[q - 1]];
      if (gi == 1)
        si.labels.push_back("any");
      else if (q == 0)
        si.labels.push_back("<= " + gam_num(hi));
      else if (q + 1 == gi)
        si.labels.push_back("> " + gam_num(lo));
      else
        si.labels.push_back("(" + gam_num(lo) + ", " + gam_num(hi) + "]");
      if (q + 1 < gi) si.edges.push_back(hi);
    }
    si.labels.push_back("missing");
  }

  // Fits one problem (targets y, row weights w: 0 leaves a row out) by penalised Newton
  // backfitting: each sweep takes for every feature the Newton step of its shape under the
  // penalty smoothing * (sum of weights) * (second differences of the ordered groups)^2 and a
  // ridge on unordered levels, projects monotone shapes, then boosts the strongest pairs.
  // `init`: the shapes to start from (a warm start: the fit at a neighbouring strength).
  Model fit_model(const Bins& g, const std::vector<double>& y, const std::vector<double>& w,
                  double lambda, const Model* init = nullptr, int n_pairs = 0) const {
    const size_t n = y.size(), F = features_.size();
    Model md;
    double W = 0, sy = 0;
    for (size_t i = 0; i < n; ++i) {
      W += w[i];
      sy += w[i] * y[i];
    }
    double mean = std::min(1 - 1e-6, std::max(1e-6, sy / std::max(W, 1e-12)));
    md.intercept = std::log(mean / (1 - mean));
    md.shapes.resize(F);
    for (size_t f = 0; f < F; ++f) md.shapes[f].assign(fit_.shape[f].n_groups, 0.0);
    if (init) {
      md.intercept = init->intercept;
      md.shapes = init->shapes;
    }
    std::vector<double> m(n, md.intercept);
    if (init)
      for (size_t f = 0; f < F; ++f)
        for (size_t i = 0; i < n; ++i) m[i] += md.shapes[f][g[f][i]];
    const double lr = o_.learning_rate;
    for (int r = 0; r < o_.rounds; ++r) {
      double max_step = 0;
      for (size_t f = 0; f < F; ++f) {
        const ShapeInfo& si = fit_.shape[f];
        const size_t ng = si.n_groups, ns = si.n_smooth;
        std::vector<double> G(ng, 0.0), H(ng, 0.0), cnt(ng, 0.0);
        for (size_t i = 0; i < n; ++i) {
          if (w[i] == 0) continue;
          const double p = sigmoid(m[i]);
          const uint16_t q = g[f][i];
          G[q] += w[i] * (y[i] - p);
          H[q] += w[i] * p * (1 - p);
          cnt[q] += w[i];
        }
        std::vector<double>& s = md.shapes[f];
        std::vector<double> d(ng, 0.0);
        if (ns >= 3) {
          // (H + lambda W D'D) d = G - lambda W D'D s on the ordered groups.
          const double pen = lambda * W;
          std::vector<double> A(ns * ns, 0.0), b(ns);
          for (size_t k = 0; k + 2 < ns; ++k) {
            const double c[3] = {1, -2, 1};
            for (int a = 0; a < 3; ++a)
              for (int bb = 0; bb < 3; ++bb) A[(k + a) * ns + k + bb] += pen * c[a] * c[bb];
          }
          for (size_t k = 0; k < ns; ++k) {
            double ps = 0;
            for (size_t l = 0; l < ns; ++l) ps += A[k * ns + l] * s[l];
            b[k] = G[k] - ps;
            A[k * ns + k] += H[k] + 1e-6 * (W + 1);
          }
          std::vector<double> x = solve_dense(std::move(A), std::move(b), ns);
          for (size_t k = 0; k < ns; ++k) d[k] = x[k];
        } else {
          for (size_t k = 0; k < ns; ++k) d[k] = (G[k] - kRidge * s[k]) / (H[k] + kRidge);
        }
        for (size_t k = ns; k < ng; ++k) d[k] = (G[k] - kRidge * s[k]) / (H[k] + kRidge);
        std::vector<double> old = s;
        for (size_t k = 0; k < ng; ++k) s[k] += std::max(-2.0, std::min(2.0, lr * d[k]));
        if (fit_.monotone[f] != 0 && ns >= 2) {
          std::vector<double> v(s.begin(), s.begin() + ns), wt(cnt.begin(), cnt.begin() + ns);
          if (fit_.monotone[f] < 0)
            for (double& x : v) x = -x;
          isotonic(v, wt);
          for (size_t k = 0; k < ns; ++k) s[k] = fit_.monotone[f] < 0 ? -v[k] : v[k];
        }
        for (size_t k = 0; k < ng; ++k) {
          d[k] = s[k] - old[k];
          max_step = std::max(max_step, std::fabs(d[k]));
        }
        for (size_t i = 0; i < n; ++i) m[i] += d[g[f][i]];
      }
      if (max_step < 1e-4) break;
    }
    if (n_pairs > 0) boost_pairs(md, g, y, w, m, rank_pairs(g, y, w, m), n_pairs);
    return md;
  }

  // The number of pairwise interactions: the option when given (or when cross-validation is
  // off), else chosen by k-fold cross-validation on the training rows, like the smoothness: per
  // fold the main effects are fitted once at the chosen smoothness, then the strongest 0, 1, 2,
  // 3, 5 or 8 pairs are boosted on top and scored on the fold's held-out rows.
  void choose_pairs(const Bins& g, const std::vector<std::vector<double>>& ys, const Probs& target) {
    const size_t n = target.size();
    fit_.n_pairs = o_.interactions;
    fit_.pairs_cv = CvChoice();
    size_t cand = 0;
    for (const Feature& f : features_) cand += f.kind != Feature::kNgram;
    const size_t max_pairs = cand * (cand - (cand > 0)) / 2;
    if (o_.cv_folds < 2 || was_given(o_, "interactions") || n < 2 * size_t(o_.cv_folds) ||
        max_pairs == 0)
      return;
    std::vector<double> grid;
    for (double q : {0.0, 1.0, 2.0, 3.0, 5.0, 8.0})
      if (q <= double(max_pairs)) grid.push_back(q);
    fit_.pairs_cv = cross_validate(
        "interactions", grid, target, o_.cv_folds, o_.seed + 1,
        [&](const std::vector<uint32_t>& train, const std::vector<uint32_t>& test) {
          std::vector<double> w(n, 0.0);
          for (uint32_t i : train) w[i] = 1.0;
          const Bins gv = select_rows(g, test);
          std::vector<Model> base;
          std::vector<std::vector<double>> margin;
          std::vector<std::vector<std::pair<size_t, size_t>>> ranked;
          for (const auto& y : ys) {
            base.push_back(fit_model(g, y, w, fit_.smoothing));
            margin.push_back(margins(base.back(), g));
            ranked.push_back(rank_pairs(g, y, w, margin.back()));
          }
          std::vector<Probs> out;
          for (double q : grid) {
            std::vector<Model> ms = base;
            for (size_t c = 0; c < ms.size() && q > 0; ++c) {
              std::vector<double> m = margin[c];
              boost_pairs(ms[c], g, ys[c], w, m, ranked[c], static_cast<int>(q));
            }
            out.push_back(predict_groups(ms, gv));
          }
          return out;
        });
    fit_.n_pairs = static_cast<int>(fit_.pairs_cv.value());
  }

  // The margins (log-odds) of every row under the main effects of `md`.
  std::vector<double> margins(const Model& md, const Bins& g) const {
    const size_t n = g.empty() ? 0 : g[0].size();
    std::vector<double> m(n, md.intercept);
    for (size_t f = 0; f < features_.size(); ++f)
      for (size_t i = 0; i < n; ++i) m[i] += md.shapes[f][g[f][i]];
    return m;
  }

  int coarse(size_t f) const { return (fit_.shape[f].n_groups + 7) / 8; }
  int cells(size_t f) const { return (fit_.shape[f].n_groups + coarse(f) - 1) / coarse(f); }

  // The pairs (of non-text features), those whose joint Newton step on coarse cells from the
  // margins m gains most first.
  std::vector<std::pair<size_t, size_t>> rank_pairs(const Bins& g, const std::vector<double>& y,
                                                    const std::vector<double>& w,
                                                    const std::vector<double>& m) const {
    const size_t n = y.size();
    std::vector<size_t> cand;
    for (size_t f = 0; f < features_.size(); ++f)
      if (features_[f].kind != Feature::kNgram) cand.push_back(f);
    if (cand.size() < 2) return {};
    std::vector<double> gr(n), h(n);
    for (size_t i = 0; i < n; ++i) {
      const double p = sigmoid(m[i]);
      gr[i] = w[i] * (y[i] - p);
      h[i] = w[i] * p * (1 - p);
    }
    std::vector<std::tuple<double, size_t, size_t>> gains;
    for (size_t a = 0; a < cand.size(); ++a)
      for (size_t b = a + 1; b < cand.size(); ++b) {
        const size_t f1 = cand[a], f2 = cand[b];
        const int d1 = coarse(f1), d2 = coarse(f2), n2 = cells(f2);
        std::vector<double> G(size_t(cells(f1)) * n2, 0.0), H(G.size(), 0.0);
        for (size_t i = 0; i < n; ++i) {
          const size_t cell = g[f1][i] / d1 * n2 + g[f2][i] / d2;
          G[cell] += gr[i];
          H[cell] += h[i];
        }
        double gain = 0;
        for (size_t c = 0; c < G.size(); ++c) gain += G[c] * G[c] / (H[c] + kRidge);
        gains.emplace_back(gain, f1, f2);
      }
    std::stable_sort(gains.begin(), gains.end(),
                     [](const auto& x, const auto& z) { return std::get<0>(x) > std::get<0>(z); });
    std::vector<std::pair<size_t, size_t>> ranked;
    for (const auto& x : gains) ranked.emplace_back(std::get<1>(x), std::get<2>(x));
    return ranked;
  }

  // Adds the first `count` of the ranked pairs to md, boosted from the margins m (updated) with
  // ridge-penalised steps for half as many rounds as the shapes.
  void boost_pairs(Model& md, const Bins& g, const std::vector<double>& y,
                   const std::vector<double>& w, std::vector<double>& m,
                   const std::vector<std::pair<size_t, size_t>>& ranked, int count) const {
    const size_t n = y.size();
    for (int q = 0; q < count && q < static_cast<int>(ranked.size()); ++q) {
      Pair pr;
      pr.f1 = ranked[q].first;
      pr.f2 = ranked[q].second;
      pr.div1 = coarse(pr.f1);
      pr.div2 = coarse(pr.f2);
      pr.n1 = cells(pr.f1);
      pr.n2 = cells(pr.f2);
      pr.table.assign(size_t(pr.n1) * pr.n2, 0.0);
      md.pairs.push_back(pr);
    }
    for (int r = 0; r < std::max(1, o_.rounds / 2); ++r)
      for (Pair& pr : md.pairs) {
        std::vector<double> G(pr.table.size(), 0.0), H(pr.table.size(), 0.0);
        for (size_t i = 0; i < n; ++i) {
          if (w[i] == 0) continue;
          const double p = sigmoid(m[i]);
          const size_t cell = g[pr.f1][i] / pr.div1 * pr.n2 + g[pr.f2][i] / pr.div2;
          G[cell] += w[i] * (y[i] - p);
          H[cell] += w[i] * p * (1 - p);
        }
        std::vector<double> d(pr.table.size());
        for (size_t c = 0; c < d.size(); ++c) {
          d[c] = std::max(-2.0, std::min(2.0, o_.learning_rate * 0.5 *
                                                  (G[c] - kRidge * pr.table[c]) /
                                                  (H[c] + kRidge)));
          pr.table[c] += d[c];
        }
        for (size_t i = 0; i < n; ++i)
          m[i] += d[g[pr.f1][i] / pr.div1 * pr.n2 + g[pr.f2][i] / pr.div2];
      }
  }

  // Centres each shape on the rows (weights w): its weighted mean goes into the intercept.
  void centre(Model& md, const Bins& g, const std::vector<double>& w) const {
    for (size_t f = 0; f < features_.size(); ++f) {
      double s = 0, W = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        s += w[i] * md.shapes[f][g[f][i]];
        W += w[i];
      }
      s /= std::max(W, 1e-12);
      for (double& v : md.shapes[f]) v -= s;
      md.intercept += s;
    }
  }

  void importance(Model& md, const Bins& g) const {
    const size_t n = g.empty() ? 0 : g[0].size();
    md.importance.clear();
    for (size_t f = 0; f < features_.size(); ++f) {
      double imp = 0;
      for (size_t i = 0; i < n; ++i) imp += std::fabs(md.shapes[f][g[f][i]]);
      md.importance.push_back(imp / double(std::max<size_t>(n, 1)));
    }
    for (Pair& pr : md.pairs) {
      double imp = 0;
      for (size_t i = 0; i < n; ++i)
        imp += std::fabs(pr.table[g[pr.f1][i] / pr.div1 * pr.n2 + g[pr.f2][i] / pr.div2]);
      pr.importance = imp / double(std::max<size_t>(n, 1));
    }
  }

  Probs predict_groups(const std::vector<Model>& models, const Bins& g) const {
    const size_t n = g.empty() ? 0 : g[0].size();
    std::vector<std::vector<double>> m(models.size(), std::vector<double>(n));
    for (size_t c = 0; c < models.size(); ++c) {
      const Model& md = models[c];
      for (size_t i = 0; i < n; ++i) {
        double v = md.intercept;
        for (size_t f = 0; f < features_.size(); ++f) v += md.shapes[f][g[f][i]];
        for (const Pair& pr : md.pairs)
          v += pr.table[g[pr.f1][i] / pr.div1 * pr.n2 + g[pr.f2][i] / pr.div2];
        m[c][i] = v;
      }
    }
    return ovr_probs(m, k_, n);
  }

  std::vector<size_t> order(const Model& md) const {
    std::vector<size_t> o(features_.size());
    std::iota(o.begin(), o.end(), 0);
    std::stable_sort(o.begin(), o.end(),
                     [&](size_t a, size_t b) { return md.importance[a] > md.importance[b]; });
    return o;
  }

  std::vector<int> monotone_;
  Fit fit_;
};

}  // namespace

std::unique_ptr<Student> make_gam_student(const StudentOptions& o) {
  return std::make_unique<GamStudent>(o);
}

}  // namespace candor::distill
