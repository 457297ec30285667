// The tree student: a shallow CART decision tree on soft class counts, read as rules.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <sstream>

#include "candor/error.h"
#include "distill/students.h"

namespace candor::distill {

namespace {

std::string num(double v, int prec = 4) {
  std::ostringstream ss;
  ss.precision(prec);
  ss << v;
  return ss.str();
}

// A shallow decision tree (CART, Gini impurity on soft class counts). Numeric and n-gram
// features split as "bin <= k" (missing is the last bin), categorical ones as "bin == k".

class TreeStudent : public GlassBoxStudent {
 public:
  using GlassBoxStudent::GlassBoxStudent;

  void fit(const Featurizer& fz, const Bins& bins, const Probs& target) override {
    features_ = fz.features();
    k_ = target.empty() ? 0 : target[0].size();
    cv_ = CvChoice();
    min_leaf_ = o_.min_leaf;
    const size_t n = target.size();
    if (o_.cv_folds >= 2 && !was_given(o_, "min_leaf") && n >= 2 * size_t(o_.cv_folds)) {
      // min_leaf from the largest down: ties keep the larger leaves.
      std::vector<double> grid;
      for (int m : {200, 100, 50, 20, 10, 5, 2, 1})
        if (size_t(2 * m) <= n) grid.push_back(m);
      cv_ = cross_validate("min_leaf", grid, target, o_.cv_folds, o_.seed,
                           [&](const std::vector<uint32_t>& train,
                               const std::vector<uint32_t>& test) {
                             const Bins bt = select_rows(bins, train), bv = select_rows(bins, test);
                             const Probs tt = select_rows(target, train);
                             std::vector<Probs> out;
                             for (double m : grid) {
                               min_leaf_ = static_cast<int>(m);
                               grow(bt, tt);
                               out.push_back(predict(bv));
                             }
                             return out;
                           });
      min_leaf_ = static_cast<int>(cv_.value());
    }
    grow(bins, target);
  }

  Probs predict(const Bins& bins) const override {
    const size_t n = bins.empty() ? 0 : bins[0].size();
    Probs p(n);
    for (size_t i = 0; i < n; ++i) p[i] = nodes_[leaf(bins, i)].value;
    return p;
  }

  nlohmann::json state() const override {
    nlohmann::json j = glassbox_state(o_, k_);
    j["fitted_min_leaf"] = min_leaf_;
    if (!cv_.grid.empty()) j["cv"] = cv_.to_json();
    j["nodes"] = nlohmann::json::array();
    for (const Node& nd : nodes_)
      j["nodes"].push_back({{"feature", nd.feature},
                            {"bin", nd.bin},
                            {"equality", nd.equality},
                            {"missing_left", nd.missing_left},
                            {"left", nd.left},
                            {"right", nd.right},
                            {"value", nd.value},
                            {"rows", nd.rows}});
    return j;
  }

  void restore(const nlohmann::json& j) override {
    min_leaf_ = j.value("fitted_min_leaf", o_.min_leaf);
    cv_ = j.contains("cv") ? CvChoice::from_json(j.at("cv")) : CvChoice();
    nodes_.clear();
    for (const auto& e : j.at("nodes")) {
      Node nd;
      nd.feature = e.at("feature").get<int>();
      nd.bin = e.at("bin").get<uint16_t>();
      nd.equality = e.at("equality").get<bool>();
      nd.missing_left = e.value("missing_left", false);
      nd.left = e.at("left").get<int>();
      nd.right = e.at("right").get<int>();
      nd.value = e.at("value").get<std::vector<double>>();
      nd.rows = e.at("rows").get<size_t>();
      nodes_.push_back(std::move(nd));
    }
    if (nodes_.empty()) throw std::runtime_error("the tree has no nodes");
    const int n = static_cast<int>(nodes_.size());
    for (int i = 0; i < n; ++i) {
      const Node& nd = nodes_[i];
      if (nd.feature < 0) {
        if (nd.value.size() != k_) throw std::runtime_error("a leaf's probabilities miss classes");
        continue;
      }
      // Children come after their parent (as build() numbers them): every path ends in a leaf.
      if (nd.feature >= static_cast<int>(features_.size()) || nd.left <= i || nd.right <= i ||
          nd.left >= n || nd.right >= n || nd.bin >= features_[nd.feature].n_bins())
        throw std::runtime_error("node " + std::to_string(i) + " points outside the tree");
    }
  }

  nlohmann::json explain() const override {
    nlohmann::json j;
    j["kind"] = "tree";
    j["max_depth"] = o_.max_depth;
    j["min_leaf"] = min_leaf_;
    if (!cv_.grid.empty()) j["cv"] = cv_.to_json();
    j["nodes"] = nodes_.size();
    j["rules"] = nlohmann::json::array();
    for (const auto& r : rules()) {
      size_t best = 0;
      for (size_t c = 1; c < r.value.size(); ++c)
        if (r.value[c] > r.value[best]) best = c;
      j["rules"].push_back({{"conditions", r.conditions},
                            {"probabilities", r.value},
                            {"class_index", best},
                            {"rows", r.rows}});
    }
    // The splits as data: feature, the test, and which branch takes missing values.
    j["splits"] = nlohmann::json::array();
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const Node& nd = nodes_[i];
      if (nd.feature < 0) continue;
      const Feature& f = features_[nd.feature];
      nlohmann::json s = {{"node", i},         {"feature", f.name},   {"left", nd.left},
                          {"right", nd.right}, {"rows", nd.rows}};
      if (nd.equality) {
        s["test"] = "equals";
        s["value"] = f.bin_labels[nd.bin];
        s["missing"] = nd.bin + 1 == f.n_bins() ? "left" : "right";
      } else if (f.kind == Feature::kNumeric) {
        s["test"] = "at most";
        if (nd.bin + 2 < f.n_bins()) s["threshold"] = f.upper[nd.bin];
        s["missing"] = nd.missing_left ? "left" : "right";
      } else {
        s["test"] = "absent";
        s["missing"] = "left";
      }
      j["splits"].push_back(std::move(s));
    }
    return j;
  }

 private:
  struct Node {
    int feature = -1;  // -1: leaf
    uint16_t bin = 0;
    bool equality = false;
    bool missing_left = false;  // numeric: the branch of missing values
    int left = -1, right = -1;
    std::vector<double> value;
    size_t rows = 0;
  };

  void grow(const Bins& bins, const Probs& target) {
    nodes_.clear();
    std::vector<uint32_t> rows(target.size());
    std::iota(rows.begin(), rows.end(), 0u);
    build(bins, target, rows, 0);
  }

  bool goes_left(const Node& nd, uint16_t b) const {
    if (nd.equality) return b == nd.bin;
    const Feature& f = features_[nd.feature];
    if (f.kind == Feature::kNumeric && b + 1 == f.n_bins()) return nd.missing_left;
    return b <= nd.bin;
  }

  int leaf(const Bins& bins, size_t i) const {
    int node = 0;
    while (nodes_[node].feature >= 0) {
      const Node& nd = nodes_[node];
      node = goes_left(nd, bins[nd.feature][i]) ? nd.left : nd.right;
    }
    return node;
  }
  struct Rule {
    std::vector<std::string> conditions;
    std::vector<double> value;
    size_t rows;
  };

  std::string condition(const Node& nd, bool left) const {
    const Feature& f = features_[nd.feature];
    if (f.kind == Feature::kNgram) return "'" + f.name + "' " + (left ? "absent" : "present");
    if (nd.equality) {
      if (nd.bin + 1 == f.n_bins())  // the "missing or unseen" level
        return f.name + (left ? " is missing (or a level unseen in training)"
                              : " is not missing");
      return f.name + (left ? " = " : " is not ") + f.bin_labels[nd.bin] +
             (left ? "" : " (or missing)");
    }
    if (f.kind == Feature::kNumeric) {
      if (nd.bin + 2 >= f.n_bins())  // every value on the left, missing on the right
        return f.name + (left ? " is not missing" : " is missing");
      std::string edge = num(f.upper[nd.bin]);
      const bool missing_here = nd.missing_left == left;
      return f.name + (left ? " <= " : " > ") + edge +
             (missing_here ? " or missing" : " (not missing)");
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
    if (depth >= o_.max_depth || rows.size() < 2 * static_cast<size_t>(min_leaf_)) return id;
    const double parent = gini(total, n);
    double best_gain = 1e-9;
    int best_f = -1;
    uint16_t best_bin = 0;
    bool best_eq = false, best_missing_left = false;
    for (size_t f = 0; f < features_.size(); ++f) {
      const int nb = features_[f].n_bins();
      std::vector<double> cnt(nb, 0.0), sums(static_cast<size_t>(nb) * k_, 0.0);
      for (uint32_t i : rows) {
        uint16_t b = bins[f][i];
        cnt[b] += 1;
        for (size_t c = 0; c < k_; ++c) sums[b * k_ + c] += t[i][c];
      }
      const bool categorical = features_[f].kind == Feature::kCategorical;
      const bool numeric = features_[f].kind == Feature::kNumeric;
      std::vector<double> left(k_, 0.0), right(k_), with_missing(k_);
      double nl = 0;
      auto consider = [&](const std::vector<double>& l, double count, int b, bool miss_left) {
        if (count < min_leaf_ || n - count < min_leaf_) return;
        for (size_t c = 0; c < k_; ++c) right[c] = total[c] - l[c];
        double gain = parent - gini(l, count) - gini(right, n - count);
        if (gain > best_gain) {
          best_gain = gain;
          best_f = static_cast<int>(f);
          best_bin = static_cast<uint16_t>(b);
          best_eq = categorical;
          best_missing_left = miss_left;
        }
      };
      for (int b = 0; b + 1 < nb || (categorical && b < nb); ++b) {
        if (categorical) {
          std::fill(left.begin(), left.end(), 0.0);
          nl = 0;
        }
        nl += cnt[b];
        for (size_t c = 0; c < k_; ++c) left[c] += sums[b * k_ + c];
        consider(left, nl, b, false);
        // Numeric: missing values may also go left, with the small values (not when every
        // value is already left: that split is "missing or not").
        if (numeric && b + 2 < nb && cnt[nb - 1] > 0) {
          for (size_t c = 0; c < k_; ++c) with_missing[c] = left[c] + sums[(nb - 1) * k_ + c];
          consider(with_missing, nl + cnt[nb - 1], b, true);
        }
      }
    }
    if (best_f < 0) return id;
    std::vector<uint32_t> l, r;
    Node probe;
    probe.feature = best_f;
    probe.bin = best_bin;
    probe.equality = best_eq;
    probe.missing_left = best_missing_left;
    for (uint32_t i : rows) (goes_left(probe, bins[best_f][i]) ? l : r).push_back(i);
    rows.clear();
    rows.shrink_to_fit();
    int li = build(bins, t, l, depth + 1);
    int ri = build(bins, t, r, depth + 1);
    Node& nd = nodes_[id];
    nd.feature = best_f;
    nd.bin = best_bin;
    nd.equality = best_eq;
    nd.missing_left = best_missing_left;
    nd.left = li;
    nd.right = ri;
    return id;
  }

  // The fitted tree (nodes_) and how its leaf size was chosen.
  std::vector<Node> nodes_;
  int min_leaf_ = 1;
  CvChoice cv_;
};

}  // namespace

std::unique_ptr<Student> make_tree_student(const StudentOptions& o) {
  return std::make_unique<TreeStudent>(o);
}

}  // namespace candor::distill
