// The linear student: logistic regression (L1 / elastic net) with one standardised coefficient
// per numeric column (or one weight per quantile bin), one weight per categorical level and per
// text n-gram; its penalty chosen by k-fold cross-validation on the training rows.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "candor/error.h"
#include "distill/students.h"

namespace candor::distill {

namespace {

std::string linear_num(double v) {
  std::ostringstream ss;
  ss.precision(4);
  ss << v;
  return ss.str();
}

// log(1 + e^m), without overflow.
double softplus(double m) { return m > 0 ? m + std::log1p(std::exp(-m)) : std::log1p(std::exp(m)); }

// The design matrix column by column: the rows where the column is non-zero and its values.
struct Design {
  size_t n = 0;
  std::vector<std::vector<uint32_t>> rows;
  std::vector<std::vector<float>> vals;
};

// Logistic regression of soft targets y by IRLS: each outer iteration fits the quadratic
// approximation of the mean log-loss by cyclic coordinate descent with soft thresholding
// (glmnet's scheme), then backtracks when the penalised objective did not fall. `w`, `b0`: start
// values in (warm start), the fit out.
void solve(const Design& X, const std::vector<double>& y, double l1, double l2, int max_iter,
           std::vector<double>& w, double& b0) {
  const size_t n = X.n, p = X.rows.size();
  std::vector<double> m(n, b0);
  for (size_t j = 0; j < p; ++j)
    if (w[j] != 0)
      for (size_t q = 0; q < X.rows[j].size(); ++q) m[X.rows[j][q]] += w[j] * X.vals[j][q];
  auto objective = [&](const std::vector<double>& mm, const std::vector<double>& ww) {
    double loss = 0;
    for (size_t i = 0; i < n; ++i) loss += softplus(mm[i]) - y[i] * mm[i];
    double pen = 0;
    for (double v : ww) pen += l1 * std::fabs(v) + 0.5 * l2 * v * v;
    return loss / double(n) + pen;
  };
  double obj = objective(m, w);
  std::vector<double> wt(n), r(n), h(p), sw(p), mu(p), w_old, m_new(n);
  for (int it = 0; it < max_iter; ++it) {
    double wsum = 0;
    for (size_t i = 0; i < n; ++i) {
      const double pr = sigmoid(m[i]);
      wt[i] = std::max(pr * (1 - pr), 1e-5);
      r[i] = (y[i] - pr) / wt[i];
      wsum += wt[i];
    }
    // Each column enters centred on its weighted mean mu (orthogonal to the intercept, as
    // glmnet standardises): a step d of w_j moves the intercept by -d mu_j, so the one-hot levels
    // and the intercept do not fight. The centring's constant part of the residual is `shift`.
    for (size_t j = 0; j < p; ++j) {
      double s = 0, s1 = 0;
      for (size_t q = 0; q < X.rows[j].size(); ++q) {
        const double wx = wt[X.rows[j][q]] * double(X.vals[j][q]);
        s += wx * X.vals[j][q];
        s1 += wx;
      }
      sw[j] = s1;
      mu[j] = s1 / wsum;
      h[j] = std::max(0.0, (s - mu[j] * s1) / double(n));
    }
    w_old = w;
    const double b_old = b0;
    for (int inner = 0; inner < 100; ++inner) {
      double max_change = 0;
      double g0 = 0;
      for (size_t i = 0; i < n; ++i) g0 += wt[i] * r[i];
      const double d0 = g0 / wsum;
      b0 += d0;
      for (size_t i = 0; i < n; ++i) r[i] -= d0;
      max_change = std::max(max_change, wsum / double(n) * d0 * d0);
      double shift = 0;  // added to every r[i]
      for (size_t j = 0; j < p; ++j) {
        if (h[j] <= 1e-12) continue;
        const auto& rj = X.rows[j];
        const auto& xj = X.vals[j];
        double g = shift * sw[j];
        for (size_t q = 0; q < rj.size(); ++q) g += wt[rj[q]] * xj[q] * r[rj[q]];
        const double z = h[j] * w[j] + g / double(n);
        const double wn = (z > l1 ? z - l1 : z < -l1 ? z + l1 : 0.0) / (h[j] + l2);
        const double d = wn - w[j];
        if (d == 0) continue;
        w[j] = wn;
        for (size_t q = 0; q < rj.size(); ++q) r[rj[q]] -= d * xj[q];
        shift += d * mu[j];
        b0 -= d * mu[j];
        max_change = std::max(max_change, h[j] * d * d);
      }
      if (shift != 0)
        for (size_t i = 0; i < n; ++i) r[i] += shift;
      if (max_change < 1e-8) break;
    }
    // The step taken: back off (halving) while the penalised objective rises.
    double step = 1.0, obj_new = 0;
    std::vector<double> w_new = w;
    const double b_new = b0;
    for (int half = 0; half < 30; ++half) {
      for (size_t j = 0; j < p; ++j) w[j] = w_old[j] + step * (w_new[j] - w_old[j]);
      b0 = b_old + step * (b_new - b_old);
      std::fill(m_new.begin(), m_new.end(), b0);
      for (size_t j = 0; j < p; ++j)
        if (w[j] != 0)
          for (size_t q = 0; q < X.rows[j].size(); ++q) m_new[X.rows[j][q]] += w[j] * X.vals[j][q];
      obj_new = objective(m_new, w);
      if (obj_new <= obj + 1e-12) break;
      step *= 0.5;
    }
    if (obj_new > obj + 1e-12) {  // no descent at all: keep the previous point
      w = w_old;
      b0 = b_old;
      break;
    }
    m.swap(m_new);
    const double change = obj - obj_new;
    obj = obj_new;
    if (change < 1e-8 * std::max(1.0, std::fabs(obj))) break;
  }
}

class LinearStudent : public GlassBoxStudent {
 public:
  using GlassBoxStudent::GlassBoxStudent;

  bool fits_sparse() const override { return true; }

  void fit(const Featurizer& fz, const Bins& bins, const Probs& target) override {
    fit_sparse(fz, to_sparse(fz.features(), bins), target);
  }

  void fit_sparse(const Featurizer& fz, const SparseRows& rows, const Probs& target) override {
    features_ = fz.features();
    const size_t n = target.size();
    if (rows.n_rows() != n)
      throw Error(ErrorCode::kInternal, "linear student: " + std::to_string(rows.n_rows()) +
                                            " featurized rows for " + std::to_string(n) +
                                            " targets");
    if (o_.numeric != "linear" && o_.numeric != "bins")
      throw Error(ErrorCode::kInvalidArgument,
                  "linear student: numeric=" + o_.numeric + " is not linear or bins",
                  "use linear:numeric=linear (the default) or linear:numeric=bins");
    for (size_t e = 0; e < rows.feature.size(); ++e)
      if (rows.feature[e] >= features_.size() ||
          rows.bin[e] >= features_[rows.feature[e]].n_bins())
        throw Error(ErrorCode::kInternal, "linear student: entry (" +
                                              std::to_string(rows.feature[e]) + ", " +
                                              std::to_string(rows.bin[e]) + ") out of range");
    auto ys = ovr_targets(target, &k_);
    code(rows);
    fit_.cv = CvChoice();
    fit_.lambda = o_.lambda;
    const double alpha = std::max(o_.l1_ratio, 1e-3);
    if (o_.cv_folds >= 2 && !was_given(o_, "lambda") && n >= 2 * size_t(o_.cv_folds)) {
      // The grid: from just under the strength that zeroes every weight down by 10^4.
      const Design all = design(rows, identity(n));
      double lmax = 0;
      for (const auto& y : ys) {
        const double mean = std::accumulate(y.begin(), y.end(), 0.0) / double(n);
        for (size_t j = 0; j < all.rows.size(); ++j) {
          double g = 0;
          for (size_t q = 0; q < all.rows[j].size(); ++q)
            g += all.vals[j][q] * (y[all.rows[j][q]] - mean);
          lmax = std::max(lmax, std::fabs(g) / double(n) / alpha);
        }
      }
      if (!(lmax > 0)) lmax = 1;
      std::vector<double> grid;
      for (int g = 1; g <= 9; ++g) grid.push_back(lmax * std::pow(10.0, -0.5 * g));
      fit_.cv = cross_validate(
          "lambda", grid, target, o_.cv_folds, o_.seed,
          [&](const std::vector<uint32_t>& train, const std::vector<uint32_t>& test) {
            const Design xt = design(rows, train);
            const Design xv = design(rows, test);
            std::vector<std::vector<double>> w(ys.size(), std::vector<double>(xt.rows.size()));
            std::vector<double> b(ys.size());
            std::vector<std::vector<double>> yt(ys.size());
            for (size_t c = 0; c < ys.size(); ++c) {
              for (uint32_t i : train) yt[c].push_back(ys[c][i]);
              b[c] = start_intercept(yt[c]);
            }
            std::vector<Probs> out;
            for (double lam : grid) {  // a path: each fit starts from the last
              std::vector<std::vector<double>> margins(ys.size());
              for (size_t c = 0; c < ys.size(); ++c) {
                solve(xt, yt[c], lam * o_.l1_ratio, lam * (1 - o_.l1_ratio), o_.max_iter, w[c],
                      b[c]);
                margins[c] = apply(xv, w[c], b[c]);
              }
              out.push_back(ovr_probs(margins, k_, test.size()));
            }
            return out;
          });
      fit_.lambda = fit_.cv.value();
      // The final fit follows the path down to the chosen strength.
      fit_.weights.assign(ys.size(), std::vector<double>(all.rows.size(), 0.0));
      fit_.intercept.assign(ys.size(), 0.0);
      for (size_t c = 0; c < ys.size(); ++c) {
        fit_.intercept[c] = start_intercept(ys[c]);
        for (size_t g = 0; g <= fit_.cv.chosen; ++g)
          solve(all, ys[c], grid[g] * o_.l1_ratio, grid[g] * (1 - o_.l1_ratio), o_.max_iter,
                fit_.weights[c], fit_.intercept[c]);
      }
      return;
    }
    const Design all = design(rows, identity(n));
    fit_.weights.assign(ys.size(), std::vector<double>(all.rows.size(), 0.0));
    fit_.intercept.assign(ys.size(), 0.0);
    for (size_t c = 0; c < ys.size(); ++c) {
      fit_.intercept[c] = start_intercept(ys[c]);
      solve(all, ys[c], fit_.lambda * o_.l1_ratio, fit_.lambda * (1 - o_.l1_ratio), o_.max_iter,
            fit_.weights[c], fit_.intercept[c]);
    }
  }

  Probs predict(const Bins& bins) const override {
    return predict_sparse(to_sparse(features_, bins));
  }

  Probs predict_sparse(const SparseRows& rows) const override {
    const size_t n = rows.n_rows();
    std::vector<std::vector<double>> m(fit_.weights.size(), std::vector<double>(n));
    for (size_t c = 0; c < fit_.weights.size(); ++c) {
      for (size_t i = 0; i < n; ++i) {
        double v = fit_.intercept[c];
        for (size_t e = rows.start[i]; e < rows.start[i + 1]; ++e) {
          const uint32_t j = rows.feature[e];
          const uint16_t b = rows.bin[e];
          if (j >= features_.size() || b >= features_[j].n_bins()) continue;
          const Coding& cd = fit_.code[j][b];
          if (cd.col < 0) continue;
          const bool ngram = features_[j].kind == Feature::kNgram;
          v += fit_.weights[c][cd.col] * cd.x * (ngram ? scale(rows, i) : 1.0f);
        }
        m[c][i] = v;
      }
    }
    return ovr_probs(m, k_, n);
  }

  // Everything fit_ holds, to save the student and read it back (student.json).
  nlohmann::json state() const override {
    nlohmann::json j = glassbox_state(o_, k_);
    nlohmann::json code = nlohmann::json::array();
    for (const auto& row : fit_.code) {
      nlohmann::json r = nlohmann::json::array();
      for (const Coding& cd : row) r.push_back({cd.col, cd.x});
      code.push_back(std::move(r));
    }
    nlohmann::json cols = nlohmann::json::array();
    for (const Column& c : fit_.columns)
      cols.push_back({{"feature", c.feature},
                      {"bin", c.bin},
                      {"missing", c.missing},
                      {"mean", c.mean},
                      {"sd", c.sd}});
    j["code"] = std::move(code);
    j["columns"] = std::move(cols);
    j["intercepts"] = fit_.intercept;
    j["weights"] = fit_.weights;
    j["fitted_lambda"] = fit_.lambda;
    if (!fit_.cv.grid.empty()) j["cv"] = fit_.cv.to_json();
    return j;
  }

  void restore(const nlohmann::json& j) override {
    Fit f;
    const auto& code = j.at("code");
    if (code.size() != features_.size())
      throw std::runtime_error("the linear student's coding does not match the features");
    for (size_t fi = 0; fi < code.size(); ++fi) {
      std::vector<Coding> row;
      for (const auto& e : code[fi]) row.push_back({e.at(0).get<int32_t>(), e.at(1).get<float>()});
      if (row.size() != static_cast<size_t>(features_[fi].n_bins()))
        throw std::runtime_error("the coding of '" + features_[fi].name +
                                 "' does not match its bins");
      f.code.push_back(std::move(row));
    }
    for (const auto& e : j.at("columns")) {
      Column c;
      c.feature = e.at("feature").get<size_t>();
      c.bin = e.at("bin").get<int>();
      c.missing = e.at("missing").get<bool>();
      c.mean = e.at("mean").get<double>();
      c.sd = e.at("sd").get<double>();
      if (c.feature >= features_.size())
        throw std::runtime_error("a column of the linear student names no feature");
      f.columns.push_back(c);
    }
    f.intercept = j.at("intercepts").get<std::vector<double>>();
    f.weights = j.at("weights").get<std::vector<std::vector<double>>>();
    f.lambda = j.value("fitted_lambda", o_.lambda);
    if (j.contains("cv")) f.cv = CvChoice::from_json(j.at("cv"));
    const size_t problems = k_ == 2 ? 1 : k_;
    if (f.intercept.size() != problems || f.weights.size() != problems)
      throw std::runtime_error("the linear student has " + std::to_string(f.weights.size()) +
                               " models for " + std::to_string(k_) + " classes");
    for (const auto& w : f.weights)
      if (w.size() != f.columns.size())
        throw std::runtime_error("the linear student's weights do not match its columns");
    for (const auto& row : f.code)
      for (const Coding& cd : row)
        if (cd.col >= static_cast<int32_t>(f.columns.size()))
          throw std::runtime_error("the linear student's coding names a missing column");
    fit_ = std::move(f);
  }

  nlohmann::json explain() const override {
    nlohmann::json j;
    j["kind"] = "linear";
    j["numeric"] = o_.numeric;
    j["lambda"] = fit_.lambda;
    j["l1_ratio"] = o_.l1_ratio;
    if (!fit_.cv.grid.empty()) j["cv"] = fit_.cv.to_json();
    j["models"] = nlohmann::json::array();
    for (size_t c = 0; c < fit_.weights.size(); ++c) {
      const std::vector<double>& w = fit_.weights[c];
      nlohmann::json m;
      m["class_index"] = k_ == 2 ? 1 : c;
      m["intercept"] = fit_.intercept[c];
      // With every numeric column at 0 (not at its mean): the intercept in the original units.
      double b_units = fit_.intercept[c];
      std::vector<nlohmann::json> terms;
      for (size_t col = 0; col < fit_.columns.size(); ++col) {
        if (w[col] == 0) continue;
        const Column& cl = fit_.columns[col];
        const Feature& f = features_[cl.feature];
        nlohmann::json t = {{"feature", f.name}, {"weight", w[col]}};
        if (cl.bin < 0) {
          t["kind"] = "numeric";
          t["bin"] = "per SD (" + linear_num(cl.sd) + ")";
          t["weight_per_unit"] = w[col] / cl.sd;
          t["mean"] = cl.mean;
          t["sd"] = cl.sd;
          b_units -= w[col] * cl.mean / cl.sd;
        } else {
          const char* kinds[] = {"numeric_bin", "categorical", "ngram"};
          t["kind"] = f.kind == Feature::kNumeric && cl.missing ? "missing" : kinds[f.kind];
          t["bin"] = f.bin_labels[cl.bin];
        }
        terms.push_back(std::move(t));
      }
      std::stable_sort(terms.begin(), terms.end(), [](const auto& a, const auto& b) {
        return std::fabs(a["weight"].template get<double>()) >
               std::fabs(b["weight"].template get<double>());
      });
      m["intercept_original_units"] = b_units;
      m["terms"] = terms;
      m["nonzero"] = terms.size();
      j["models"].push_back(m);
    }
    return j;
  }

 private:
  struct Coding {  // what bin b of feature j puts into the design: x in column col (-1: none)
    int32_t col = -1;
    float x = 0;
  };
  struct Column {  // a design column: a feature's standardised value (bin -1) or one of its bins
    size_t feature = 0;
    int bin = -1;
    bool missing = false;  // the indicator of a numeric column's missing values
    double mean = 0, sd = 1;
  };
  // Everything the fitted student is (to save and load it: one struct).
  struct Fit {
    std::vector<std::vector<Coding>> code;  // [feature][bin]
    std::vector<Column> columns;
    std::vector<std::vector<double>> weights;  // [problem][column]
    std::vector<double> intercept;
    double lambda = 0;
    CvChoice cv;  // empty grid: no cross-validation
  };

  static std::vector<uint32_t> identity(size_t n) {
    std::vector<uint32_t> r(n);
    std::iota(r.begin(), r.end(), 0u);
    return r;
  }
  static double start_intercept(const std::vector<double>& y) {
    double mean = std::accumulate(y.begin(), y.end(), 0.0) / double(std::max<size_t>(y.size(), 1));
    mean = std::min(1 - 1e-6, std::max(1e-6, mean));
    return std::log(mean / (1 - mean));
  }

  // The coding of every (feature, bin) from the training rows: numeric columns standardised by
  // the mean and SD of their training values (bin centres) with an indicator of missing values
  // when any training value is missing (numeric=linear), else one column per bin present.
  void code(const SparseRows& rows) {
    fit_.code.assign(features_.size(), {});
    fit_.columns.clear();
    std::vector<std::vector<double>> count(features_.size());
    for (size_t j = 0; j < features_.size(); ++j) count[j].assign(features_[j].n_bins(), 0.0);
    for (size_t e = 0; e < rows.feature.size(); ++e) count[rows.feature[e]][rows.bin[e]] += 1;
    for (size_t j = 0; j < features_.size(); ++j) {
      const Feature& f = features_[j];
      fit_.code[j].assign(f.n_bins(), Coding());
      if (f.kind == Feature::kNumeric && o_.numeric == "linear" &&
          f.centers.size() + 1 == static_cast<size_t>(f.n_bins())) {
        double s = 0, s2 = 0, c = 0;
        for (size_t b = 0; b < f.centers.size(); ++b) {
          s += count[j][b] * f.centers[b];
          c += count[j][b];
        }
        const double mean = c > 0 ? s / c : 0;
        for (size_t b = 0; b < f.centers.size(); ++b)
          s2 += count[j][b] * (f.centers[b] - mean) * (f.centers[b] - mean);
        const double sd = c > 1 ? std::sqrt(s2 / c) : 0;
        if (sd > 0) {
          const int32_t col = static_cast<int32_t>(fit_.columns.size());
          fit_.columns.push_back({j, -1, false, mean, sd});
          for (size_t b = 0; b < f.centers.size(); ++b)
            fit_.code[j][b] = {col, static_cast<float>((f.centers[b] - mean) / sd)};
        }
        const int miss = f.n_bins() - 1;
        if (count[j][miss] > 0) {
          fit_.code[j][miss] = {static_cast<int32_t>(fit_.columns.size()), 1.0f};
          fit_.columns.push_back({j, miss, true, 0, 1});
        }
        continue;
      }
      for (int b = 0; b < f.n_bins(); ++b) {
        if (f.kind == Feature::kNgram && b == 0) continue;
        if (count[j][b] == 0) continue;
        fit_.code[j][b] = {static_cast<int32_t>(fit_.columns.size()), 1.0f};
        fit_.columns.push_back(
            {j, b, f.kind == Feature::kNumeric && b + 1 == f.n_bins(), 0, 1});
      }
    }
  }

  // The design of rows `sel` (in that order) of `rows`.
  Design design(const SparseRows& rows, const std::vector<uint32_t>& sel) const {
    Design d;
    d.n = sel.size();
    d.rows.assign(fit_.columns.size(), {});
    d.vals.assign(fit_.columns.size(), {});
    for (size_t q = 0; q < sel.size(); ++q) {
      const size_t i = sel[q];
      for (size_t e = rows.start[i]; e < rows.start[i + 1]; ++e) {
        const uint32_t j = rows.feature[e];
        const Coding& cd = fit_.code[j][rows.bin[e]];
        if (cd.col < 0 || cd.x == 0) continue;
        const bool ngram = features_[j].kind == Feature::kNgram;
        d.rows[cd.col].push_back(static_cast<uint32_t>(q));
        d.vals[cd.col].push_back(cd.x * (ngram ? scale(rows, i) : 1.0f));
      }
    }
    return d;
  }

  static std::vector<double> apply(const Design& x, const std::vector<double>& w, double b0) {
    std::vector<double> m(x.n, b0);
    for (size_t j = 0; j < x.rows.size(); ++j)
      if (w[j] != 0)
        for (size_t q = 0; q < x.rows[j].size(); ++q) m[x.rows[j][q]] += w[j] * x.vals[j][q];
    return m;
  }

  // The n-gram scale of row i: 1 / word count (the row after the features), as fastText averages.
  static float scale(const SparseRows& rows, size_t i) {
    if (rows.length.empty()) return 1.0f;
    return 1.0f / static_cast<float>(std::max<uint16_t>(1, rows.length[i]));
  }
  // Dense bins [feature][row] (+ the word-count row after the features) -> sparse rows.
  static SparseRows to_sparse(const std::vector<Feature>& features, const Bins& bins) {
    SparseRows s;
    const size_t n = bins.empty() ? 0 : bins[0].size();
    if (bins.size() > features.size()) s.length = bins[features.size()];
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < features.size() && j < bins.size(); ++j) {
        uint16_t b = bins[j][i];
        if (features[j].kind == Feature::kNgram && b == 0) continue;
        s.feature.push_back(static_cast<uint32_t>(j));
        s.bin.push_back(b);
      }
      s.start.push_back(s.feature.size());
    }
    return s;
  }

  Fit fit_;
};

}  // namespace

std::unique_ptr<Student> make_linear_student(const StudentOptions& o) {
  return std::make_unique<LinearStudent>(o);
}

}  // namespace candor::distill
