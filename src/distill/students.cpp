// Glass-box students: sparse logistic regression (coordinate descent, L1 / elastic net), a
// shallow decision tree (CART on soft labels), and a GAM fitted by cyclic boosting of
// per-feature shape functions plus the strongest pairwise interactions (explainable boosting).
#include <nlohmann/json.hpp>

#include <cmath>
#include <numeric>
#include <sstream>

#include "candor/distill.h"
#include "candor/error.h"
#include "candor/text_transformer.h"
#include "report/html_page.h"  // moves into src/report with the pages (architecture issue)
using candor::report::html_escape;

namespace candor::distill {

using Bins = std::vector<std::vector<uint16_t>>;

namespace {

double sigmoid(double m) { return 1.0 / (1.0 + std::exp(-m)); }

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

std::string num(double v, int prec = 4) {
  std::ostringstream ss;
  ss.precision(prec);
  ss << v;
  return ss.str();
}

// ---------------------------------------------------------------------------------------------
// Sparse logistic regression over one-hot bins, by cyclic coordinate descent with exact
// per-coordinate Newton steps and soft thresholding (glmnet-style), one problem per class.

class LinearStudent : public Student {
 public:
  explicit LinearStudent(StudentOptions o) : o_(std::move(o)) {}
  std::string kind() const override { return "linear"; }

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
    auto ys = ovr_targets(target, &k_);
    // One-hot columns: (feature, bin); for n-grams only "present".
    offsets_.clear();
    size_t p = 0;
    for (const Feature& f : features_) {
      offsets_.push_back(p);
      p += f.n_bins();
    }
    // Column-major copy of the non-zeros: the rows of each one-hot column and their x values
    // (1, or 1/length for n-grams).
    std::vector<std::vector<uint32_t>> rows_of(p);
    std::vector<std::vector<float>> vals_of(p);
    for (size_t i = 0; i < n; ++i) {
      for (size_t e = rows.start[i]; e < rows.start[i + 1]; ++e) {
        const uint32_t j = rows.feature[e];
        const uint16_t b = rows.bin[e];
        if (j >= features_.size() || b >= features_[j].n_bins())
          throw Error(ErrorCode::kInternal, "linear student: entry (" + std::to_string(j) + ", " +
                                                std::to_string(b) + ") out of range");
        bool ngram = features_[j].kind == Feature::kNgram;
        if (ngram && b == 0) continue;
        rows_of[offsets_[j] + b].push_back(static_cast<uint32_t>(i));
        vals_of[offsets_[j] + b].push_back(ngram ? scale(rows, i) : 1.0f);
      }
    }
    const double l1 = o_.lambda * o_.l1_ratio, l2 = o_.lambda * (1.0 - o_.l1_ratio);
    weights_.assign(ys.size(), std::vector<double>(p, 0.0));
    intercept_.assign(ys.size(), 0.0);
    for (size_t c = 0; c < ys.size(); ++c) {
      const std::vector<double>& y = ys[c];
      std::vector<double>& w = weights_[c];
      double mean = std::accumulate(y.begin(), y.end(), 0.0) / double(n);
      mean = std::min(1 - 1e-6, std::max(1e-6, mean));
      double b0 = std::log(mean / (1 - mean));
      std::vector<double> m(n, b0), pr(n, mean);
      for (int it = 0; it < o_.max_iter; ++it) {
        double max_delta = 0;
        {  // intercept (not penalised)
          double g = 0, h = 1e-12;
          for (size_t i = 0; i < n; ++i) {
            g += pr[i] - y[i];
            h += pr[i] * (1 - pr[i]);
          }
          double d = std::max(-4.0, std::min(4.0, -g / h));
          b0 += d;
          for (size_t i = 0; i < n; ++i) {
            m[i] += d;
            pr[i] = sigmoid(m[i]);
          }
          max_delta = std::max(max_delta, std::fabs(d));
        }
        for (size_t j = 0; j < p; ++j) {
          const auto& rj = rows_of[j];
          const auto& xj = vals_of[j];
          if (rj.empty()) continue;
          double g = 0, h = 1e-12;
          for (size_t q = 0; q < rj.size(); ++q) {
            uint32_t i = rj[q];
            g += xj[q] * (pr[i] - y[i]);
            h += xj[q] * xj[q] * pr[i] * (1 - pr[i]);
          }
          g /= double(n);
          h /= double(n);
          double z = h * w[j] - g;
          double wn = (z > l1 ? z - l1 : z < -l1 ? z + l1 : 0.0) / (h + l2);
          double d = std::max(-4.0, std::min(4.0, wn - w[j]));
          if (d == 0) continue;
          w[j] += d;
          for (size_t q = 0; q < rj.size(); ++q) {
            uint32_t i = rj[q];
            m[i] += d * xj[q];
            pr[i] = sigmoid(m[i]);
          }
          max_delta = std::max(max_delta, std::fabs(d));
        }
        if (max_delta < 1e-4) break;
      }
      intercept_[c] = b0;
    }
  }

  Probs predict(const Bins& bins) const override {
    return predict_sparse(to_sparse(features_, bins));
  }

  Probs predict_sparse(const SparseRows& rows) const override {
    const size_t n = rows.n_rows();
    std::vector<std::vector<double>> m(weights_.size(), std::vector<double>(n));
    for (size_t c = 0; c < weights_.size(); ++c) {
      for (size_t i = 0; i < n; ++i) {
        double v = intercept_[c];
        for (size_t e = rows.start[i]; e < rows.start[i + 1]; ++e) {
          const uint32_t j = rows.feature[e];
          const uint16_t b = rows.bin[e];
          if (j >= features_.size() || b >= features_[j].n_bins()) continue;
          bool ngram = features_[j].kind == Feature::kNgram;
          if (ngram && b == 0) continue;
          v += weights_[c][offsets_[j] + b] * (ngram ? scale(rows, i) : 1.0f);
        }
        m[c][i] = v;
      }
    }
    return ovr_probs(m, k_, n);
  }

  struct Term {
    std::string feature, bin;
    double weight;
  };
  std::vector<Term> terms(size_t c) const {
    std::vector<Term> t;
    for (size_t j = 0; j < features_.size(); ++j)
      for (int b = 0; b < features_[j].n_bins(); ++b) {
        double w = weights_[c][offsets_[j] + b];
        if (w != 0) t.push_back({features_[j].name, features_[j].bin_labels[b], w});
      }
    std::sort(t.begin(), t.end(), [](const Term& a, const Term& b) {
      return std::fabs(a.weight) > std::fabs(b.weight);
    });
    return t;
  }

  nlohmann::json explain() const override {
    nlohmann::json j;
    j["kind"] = "linear";
    j["lambda"] = o_.lambda;
    j["l1_ratio"] = o_.l1_ratio;
    j["models"] = nlohmann::json::array();
    for (size_t c = 0; c < weights_.size(); ++c) {
      nlohmann::json m;
      m["class_index"] = k_ == 2 ? 1 : c;
      m["intercept"] = intercept_[c];
      m["terms"] = nlohmann::json::array();
      for (const Term& t : terms(c))
        m["terms"].push_back({{"feature", t.feature}, {"bin", t.bin}, {"weight", t.weight}});
      m["nonzero"] = m["terms"].size();
      j["models"].push_back(m);
    }
    return j;
  }

  std::string explain_html() const override {
    std::ostringstream h;
    for (size_t c = 0; c < weights_.size(); ++c) {
      auto t = terms(c);
      h << "<h3>Logit of class #" << (k_ == 2 ? 1 : c) << ": intercept " << num(intercept_[c])
        << ", " << t.size() << " non-zero weights</h3>\n<table><tr><th>feature</th><th>value</th>"
        << "<th>weight</th><th></th></tr>\n";
      double mx = t.empty() ? 1 : std::fabs(t[0].weight);
      for (size_t i = 0; i < t.size() && i < 40; ++i) {
        int width = static_cast<int>(120 * std::fabs(t[i].weight) / mx);
        const char* colour = t[i].weight > 0 ? "#2a7" : "#c33";
        h << "<tr><td>" << html_escape(t[i].feature) << "</td><td>"
          << html_escape(features_is_ngram(t[i].feature) ? "" : t[i].bin) << "</td><td>"
          << num(t[i].weight) << "</td><td><svg width='120' height='10'><rect width='" << width
          << "' height='10' fill='" << colour << "'/></svg></td></tr>\n";
      }
      h << "</table>\n";
    }
    return h.str();
  }

 private:
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
  bool features_is_ngram(const std::string& name) const {
    for (const Feature& f : features_)
      if (f.name == name) return f.kind == Feature::kNgram;
    return false;
  }
  StudentOptions o_;
  std::vector<Feature> features_;
  size_t k_ = 0;
  std::vector<size_t> offsets_;
  std::vector<std::vector<double>> weights_;
  std::vector<double> intercept_;
};

// ---------------------------------------------------------------------------------------------
// A shallow decision tree (CART, Gini impurity on soft class counts). Numeric and n-gram
// features split as "bin <= k" (missing is the last bin), categorical ones as "bin == k".

class TreeStudent : public Student {
 public:
  explicit TreeStudent(StudentOptions o) : o_(std::move(o)) {}
  std::string kind() const override { return "tree"; }

  void fit(const Featurizer& fz, const Bins& bins, const Probs& target) override {
    features_ = fz.features();
    k_ = target.empty() ? 0 : target[0].size();
    nodes_.clear();
    std::vector<uint32_t> rows(target.size());
    std::iota(rows.begin(), rows.end(), 0u);
    build(bins, target, rows, 0);
  }

  Probs predict(const Bins& bins) const override {
    const size_t n = bins.empty() ? 0 : bins[0].size();
    Probs p(n);
    for (size_t i = 0; i < n; ++i) {
      int node = 0;
      while (nodes_[node].feature >= 0) {
        const Node& nd = nodes_[node];
        uint16_t b = bins[nd.feature][i];
        bool left = nd.equality ? b == nd.bin : b <= nd.bin;
        node = left ? nd.left : nd.right;
      }
      p[i] = nodes_[node].value;
    }
    return p;
  }

  nlohmann::json explain() const override {
    nlohmann::json j;
    j["kind"] = "tree";
    j["max_depth"] = o_.max_depth;
    j["nodes"] = nodes_.size();
    j["rules"] = nlohmann::json::array();
    for (const auto& r : rules()) {
      j["rules"].push_back(
          {{"conditions", r.conditions}, {"probabilities", r.value}, {"rows", r.rows}});
    }
    return j;
  }

  std::string explain_html() const override {
    std::ostringstream h;
    h << "<h3>Rules (one per leaf)</h3>\n<table><tr><th>if</th><th>then p(class)</th>"
         "<th>training rows</th></tr>\n";
    for (const auto& r : rules()) {
      std::string cond;
      for (const auto& c : r.conditions) cond += (cond.empty() ? "" : " and ") + c;
      std::string val;
      for (double v : r.value) val += (val.empty() ? "" : ", ") + num(v, 3);
      h << "<tr><td>" << html_escape(cond.empty() ? "always" : cond) << "</td><td>" << val
        << "</td><td>" << r.rows << "</td></tr>\n";
    }
    h << "</table>\n";
    return h.str();
  }

 private:
  struct Node {
    int feature = -1;  // -1: leaf
    uint16_t bin = 0;
    bool equality = false;
    int left = -1, right = -1;
    std::vector<double> value;
    size_t rows = 0;
  };
  struct Rule {
    std::vector<std::string> conditions;
    std::vector<double> value;
    size_t rows;
  };

  std::string condition(const Node& nd, bool left) const {
    const Feature& f = features_[nd.feature];
    if (f.kind == Feature::kNgram) return "'" + f.name + "' " + (left ? "absent" : "present");
    if (nd.equality) return f.name + (left ? " = " : " != ") + f.bin_labels[nd.bin];
    if (f.kind == Feature::kNumeric) {
      std::string edge = num(f.upper[nd.bin]);
      return f.name + (left ? " <= " : " > ") + edge + (left ? "" : " or missing");
    }
    return f.name + (left ? " in bins <= " : " in bins > ") + std::to_string(nd.bin);
  }

  std::vector<Rule> rules() const {
    std::vector<Rule> out;
    std::vector<std::string> path;
    std::function<void(int)> walk = [&](int i) {
      const Node& nd = nodes_[i];
      if (nd.feature < 0) {
        out.push_back({path, nd.value, nd.rows});
        return;
      }
      path.push_back(condition(nd, true));
      walk(nd.left);
      path.back() = condition(nd, false);
      walk(nd.right);
      path.pop_back();
    };
    if (!nodes_.empty()) walk(0);
    return out;
  }

  static double gini(const std::vector<double>& s, double n) {
    if (n <= 0) return 0;
    double q = 0;
    for (double v : s) q += v * v;
    return n - q / n;
  }

  int build(const Bins& bins, const Probs& t, std::vector<uint32_t>& rows, int depth) {
    const int id = static_cast<int>(nodes_.size());
    nodes_.emplace_back();
    std::vector<double> total(k_, 0.0);
    for (uint32_t i : rows)
      for (size_t c = 0; c < k_; ++c) total[c] += t[i][c];
    const double n = double(rows.size());
    {
      Node& nd = nodes_[id];
      nd.rows = rows.size();
      nd.value = total;
      for (double& v : nd.value) v = n > 0 ? v / n : 1.0 / double(k_);
    }
    if (depth >= o_.max_depth || rows.size() < 2 * static_cast<size_t>(o_.min_leaf)) return id;
    const double parent = gini(total, n);
    double best_gain = 1e-9;
    int best_f = -1;
    uint16_t best_bin = 0;
    bool best_eq = false;
    for (size_t f = 0; f < features_.size(); ++f) {
      const int nb = features_[f].n_bins();
      std::vector<double> cnt(nb, 0.0), sums(static_cast<size_t>(nb) * k_, 0.0);
      for (uint32_t i : rows) {
        uint16_t b = bins[f][i];
        cnt[b] += 1;
        for (size_t c = 0; c < k_; ++c) sums[b * k_ + c] += t[i][c];
      }
      const bool categorical = features_[f].kind == Feature::kCategorical;
      std::vector<double> left(k_, 0.0), right(k_);
      double nl = 0;
      for (int b = 0; b + 1 < nb || (categorical && b < nb); ++b) {
        if (categorical) {
          std::fill(left.begin(), left.end(), 0.0);
          nl = 0;
        }
        nl += cnt[b];
        for (size_t c = 0; c < k_; ++c) left[c] += sums[b * k_ + c];
        if (nl < o_.min_leaf || n - nl < o_.min_leaf) continue;
        for (size_t c = 0; c < k_; ++c) right[c] = total[c] - left[c];
        double gain = parent - gini(left, nl) - gini(right, n - nl);
        if (gain > best_gain) {
          best_gain = gain;
          best_f = static_cast<int>(f);
          best_bin = static_cast<uint16_t>(b);
          best_eq = categorical;
        }
      }
    }
    if (best_f < 0) return id;
    std::vector<uint32_t> l, r;
    for (uint32_t i : rows) {
      uint16_t b = bins[best_f][i];
      (best_eq ? b == best_bin : b <= best_bin) ? l.push_back(i) : r.push_back(i);
    }
    rows.clear();
    rows.shrink_to_fit();
    int li = build(bins, t, l, depth + 1);
    int ri = build(bins, t, r, depth + 1);
    Node& nd = nodes_[id];
    nd.feature = best_f;
    nd.bin = best_bin;
    nd.equality = best_eq;
    nd.left = li;
    nd.right = ri;
    return id;
  }

  StudentOptions o_;
  std::vector<Feature> features_;
  size_t k_ = 0;
  std::vector<Node> nodes_;
};

// ---------------------------------------------------------------------------------------------
// GAM by cyclic gradient boosting (explainable boosting): each round visits every feature and
// takes a small Newton step of its shape function (one value per bin) on the current
// residuals; then the pairs with the largest gain of a joint step on coarse bins are boosted
// the same way. The logit is intercept + sum of shapes + sum of pair tables.

class GamStudent : public Student {
 public:
  explicit GamStudent(StudentOptions o) : o_(std::move(o)) {}
  std::string kind() const override { return "gam"; }

  void fit(const Featurizer& fz, const Bins& bins, const Probs& target) override {
    features_ = fz.features();
    const size_t n = target.size();
    auto ys = ovr_targets(target, &k_);
    models_.assign(ys.size(), Model());
    std::vector<int> coarse(features_.size());
    for (size_t f = 0; f < features_.size(); ++f) {
      int nb = features_[f].n_bins();
      coarse[f] = (nb + 7) / 8;  // pairs use at most ~8 bins per feature
    }
    for (size_t c = 0; c < ys.size(); ++c) {
      const auto& y = ys[c];
      Model& md = models_[c];
      double mean = std::accumulate(y.begin(), y.end(), 0.0) / double(n);
      mean = std::min(1 - 1e-6, std::max(1e-6, mean));
      md.intercept = std::log(mean / (1 - mean));
      md.shapes.resize(features_.size());
      for (size_t f = 0; f < features_.size(); ++f) md.shapes[f].assign(features_[f].n_bins(), 0.0);
      std::vector<double> m(n, md.intercept);
      auto step = [&](const std::vector<uint16_t>* b1, const std::vector<uint16_t>* b2, int div1,
                      int div2, int nb2, std::vector<double>& shape, double lr) {
        const size_t nb = shape.size();
        std::vector<double> G(nb, 0.0), H(nb, 0.0);
        for (size_t i = 0; i < n; ++i) {
          size_t b = b2 ? (*b1)[i] / div1 * nb2 + (*b2)[i] / div2 : (*b1)[i];
          double p = sigmoid(m[i]);
          G[b] += y[i] - p;
          H[b] += p * (1 - p);
        }
        std::vector<double> d(nb);
        for (size_t b = 0; b < nb; ++b) {
          d[b] = lr * G[b] / (H[b] + 1.0);
          d[b] = std::max(-1.0, std::min(1.0, d[b]));
          shape[b] += d[b];
        }
        for (size_t i = 0; i < n; ++i) {
          size_t b = b2 ? (*b1)[i] / div1 * nb2 + (*b2)[i] / div2 : (*b1)[i];
          m[i] += d[b];
        }
      };
      for (int r = 0; r < o_.rounds; ++r)
        for (size_t f = 0; f < features_.size(); ++f)
          step(&bins[f], nullptr, 1, 1, 0, md.shapes[f], o_.learning_rate);
      // Interactions: rank tabular pairs by the gain of one joint Newton step.
      std::vector<size_t> cand;
      for (size_t f = 0; f < features_.size(); ++f)
        if (features_[f].kind != Feature::kNgram) cand.push_back(f);
      if (o_.interactions > 0 && cand.size() >= 2) {
        std::vector<double> g(n), h(n);
        for (size_t i = 0; i < n; ++i) {
          double p = sigmoid(m[i]);
          g[i] = y[i] - p;
          h[i] = p * (1 - p);
        }
        std::vector<std::tuple<double, size_t, size_t>> gains;
        for (size_t a = 0; a < cand.size(); ++a)
          for (size_t b = a + 1; b < cand.size(); ++b) {
            size_t f1 = cand[a], f2 = cand[b];
            int n1 = (features_[f1].n_bins() + coarse[f1] - 1) / coarse[f1];
            int n2 = (features_[f2].n_bins() + coarse[f2] - 1) / coarse[f2];
            std::vector<double> G(n1 * n2, 0.0), H(n1 * n2, 0.0);
            for (size_t i = 0; i < n; ++i) {
              size_t cell = bins[f1][i] / coarse[f1] * n2 + bins[f2][i] / coarse[f2];
              G[cell] += g[i];
              H[cell] += h[i];
            }
            double gain = 0;
            for (size_t cidx = 0; cidx < G.size(); ++cidx)
              gain += G[cidx] * G[cidx] / (H[cidx] + 1.0);
            gains.emplace_back(gain, f1, f2);
          }
        std::sort(gains.begin(), gains.end(),
                  [](const auto& x, const auto& y2) { return std::get<0>(x) > std::get<0>(y2); });
        for (int q = 0; q < o_.interactions && q < static_cast<int>(gains.size()); ++q) {
          Pair pr;
          pr.f1 = std::get<1>(gains[q]);
          pr.f2 = std::get<2>(gains[q]);
          pr.div1 = coarse[pr.f1];
          pr.div2 = coarse[pr.f2];
          pr.n1 = (features_[pr.f1].n_bins() + pr.div1 - 1) / pr.div1;
          pr.n2 = (features_[pr.f2].n_bins() + pr.div2 - 1) / pr.div2;
          pr.table.assign(pr.n1 * pr.n2, 0.0);
          md.pairs.push_back(pr);
        }
        for (int r = 0; r < o_.rounds / 2; ++r) {
          for (Pair& pr : md.pairs)
            step(&bins[pr.f1], &bins[pr.f2], pr.div1, pr.div2, pr.n2, pr.table, o_.learning_rate);
          // keep main effects adjusting as pairs absorb signal
          if (r % 4 == 0)
            for (size_t f = 0; f < features_.size(); ++f)
              step(&bins[f], nullptr, 1, 1, 0, md.shapes[f], o_.learning_rate);
        }
      }
      // Centre each shape on the training rows (the mean goes into the intercept).
      for (size_t f = 0; f < features_.size(); ++f) {
        double s = 0;
        for (size_t i = 0; i < n; ++i) s += md.shapes[f][bins[f][i]];
        s /= double(n);
        for (double& v : md.shapes[f]) v -= s;
        md.intercept += s;
        double imp = 0;
        for (size_t i = 0; i < n; ++i) imp += std::fabs(md.shapes[f][bins[f][i]]);
        md.importance.push_back(imp / double(n));
      }
      for (Pair& pr : md.pairs) {
        double imp = 0;
        for (size_t i = 0; i < n; ++i)
          imp += std::fabs(pr.table[bins[pr.f1][i] / pr.div1 * pr.n2 + bins[pr.f2][i] / pr.div2]);
        pr.importance = imp / double(n);
      }
    }
  }

  Probs predict(const Bins& bins) const override {
    const size_t n = bins.empty() ? 0 : bins[0].size();
    std::vector<std::vector<double>> m(models_.size(), std::vector<double>(n));
    for (size_t c = 0; c < models_.size(); ++c) {
      const Model& md = models_[c];
      for (size_t i = 0; i < n; ++i) {
        double v = md.intercept;
        for (size_t f = 0; f < features_.size(); ++f) v += md.shapes[f][bins[f][i]];
        for (const Pair& pr : md.pairs)
          v += pr.table[bins[pr.f1][i] / pr.div1 * pr.n2 + bins[pr.f2][i] / pr.div2];
        m[c][i] = v;
      }
    }
    return ovr_probs(m, k_, n);
  }

  nlohmann::json explain() const override {
    nlohmann::json j;
    j["kind"] = "gam";
    j["rounds"] = o_.rounds;
    j["learning_rate"] = o_.learning_rate;
    j["models"] = nlohmann::json::array();
    for (size_t c = 0; c < models_.size(); ++c) {
      const Model& md = models_[c];
      nlohmann::json m;
      m["class_index"] = k_ == 2 ? 1 : c;
      m["intercept"] = md.intercept;
      m["shapes"] = nlohmann::json::array();
      for (size_t f : order(md))
        m["shapes"].push_back({{"feature", features_[f].name},
                               {"importance", md.importance[f]},
                               {"bins", features_[f].bin_labels},
                               {"values", md.shapes[f]}});
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

  std::string explain_html() const override {
    std::ostringstream h;
    for (size_t c = 0; c < models_.size(); ++c) {
      const Model& md = models_[c];
      h << "<h3>Shape functions (contribution to the logit of class #" << (k_ == 2 ? 1 : c)
        << "; intercept " << num(md.intercept) << ")</h3>\n<div class='shapes'>\n";
      int shown = 0;
      for (size_t f : order(md)) {
        if (shown++ >= 30) break;
        h << "<figure>" << shape_svg(features_[f], md.shapes[f]) << "<figcaption>"
          << html_escape(features_[f].name) << " (importance " << num(md.importance[f], 3)
          << ")</figcaption></figure>\n";
      }
      h << "</div>\n";
      for (const Pair& pr : md.pairs)
        h << "<figure>" << pair_svg(pr) << "<figcaption>" << html_escape(features_[pr.f1].name)
          << " &times; " << html_escape(features_[pr.f2].name) << " (importance "
          << num(pr.importance, 3) << ")</figcaption></figure>\n";
    }
    return h.str();
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
    std::vector<std::vector<double>> shapes;  // [feature][bin]
    std::vector<double> importance;
    std::vector<Pair> pairs;
  };

  std::vector<size_t> order(const Model& md) const {
    std::vector<size_t> o(features_.size());
    std::iota(o.begin(), o.end(), 0);
    std::stable_sort(o.begin(), o.end(),
                     [&](size_t a, size_t b) { return md.importance[a] > md.importance[b]; });
    return o;
  }

  // A bar / step plot of one shape function: one bar per bin, positive up in green.
  static std::string shape_svg(const Feature& f, const std::vector<double>& v) {
    const int W = 320, H = 160, pad = 20;
    double mx = 1e-9;
    for (double x : v) mx = std::max(mx, std::fabs(x));
    const int nb = static_cast<int>(v.size());
    const double bw = double(W - 2 * pad) / nb;
    const double mid = H / 2.0;
    std::ostringstream s;
    s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H + 30
      << "' viewBox='0 0 " << W << " " << H + 30 << "'>";
    s << "<line x1='" << pad << "' y1='" << mid << "' x2='" << W - pad << "' y2='" << mid
      << "' stroke='#888'/>";
    for (int b = 0; b < nb; ++b) {
      double hgt = (H / 2.0 - pad) * v[b] / mx;
      double y = hgt >= 0 ? mid - hgt : mid;
      s << "<rect x='" << num(pad + b * bw + 0.5) << "' y='" << num(y) << "' width='"
        << num(std::max(1.0, bw - 1)) << "' height='" << num(std::fabs(hgt) + 0.5) << "' fill='"
        << (v[b] >= 0 ? "#2a7" : "#c33") << "'><title>" << html_escape(f.bin_labels[b]) << ": "
        << num(v[b]) << "</title></rect>";
    }
    s << "<text x='" << pad << "' y='12' font-size='10'>+" << num(mx, 3) << "</text>";
    s << "<text x='" << pad << "' y='" << H - 4 << "' font-size='10'>-" << num(mx, 3) << "</text>";
    s << "<text x='" << pad << "' y='" << H + 14 << "' font-size='9'>"
      << html_escape(f.bin_labels.front()) << "</text>";
    s << "<text x='" << W - pad << "' y='" << H + 26 << "' font-size='9' text-anchor='end'>"
      << html_escape(f.bin_labels.back()) << "</text></svg>";
    return s.str();
  }

  static std::string pair_svg(const Pair& pr) {
    const int cell = 18;
    double mx = 1e-9;
    for (double x : pr.table) mx = std::max(mx, std::fabs(x));
    std::ostringstream s;
    s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << pr.n2 * cell << "' height='"
      << pr.n1 * cell << "'>";
    for (int a = 0; a < pr.n1; ++a)
      for (int b = 0; b < pr.n2; ++b) {
        double v = pr.table[a * pr.n2 + b] / mx;
        int shade = static_cast<int>(255 * (1 - std::fabs(v)));
        std::string col =
            v >= 0 ? "rgb(" + std::to_string(shade) + ",255," + std::to_string(shade) + ")"
                   : "rgb(255," + std::to_string(shade) + "," + std::to_string(shade) + ")";
        s << "<rect x='" << b * cell << "' y='" << a * cell << "' width='" << cell << "' height='"
          << cell << "' fill='" << col << "'><title>" << num(pr.table[a * pr.n2 + b])
          << "</title></rect>";
      }
    s << "</svg>";
    return s.str();
  }

  StudentOptions o_;
  std::vector<Feature> features_;
  size_t k_ = 0;
  std::vector<Model> models_;
};

}  // namespace

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
  if (o.kind == "linear") return std::make_unique<LinearStudent>(o);
  if (o.kind == "tree") return std::make_unique<TreeStudent>(o);
  if (o.kind == "gam") return std::make_unique<GamStudent>(o);
  if (o.kind == "transformer") {
    train::TrainOptions to;
    to.seed = o.seed;
    return train::make_transformer_student(o.spec.empty() ? "transformer" : o.spec, to);
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
