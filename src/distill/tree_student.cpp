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

  nlohmann::json state() const override {
    nlohmann::json j = glassbox_state(o_, k_);
    j["nodes"] = nlohmann::json::array();
    for (const Node& nd : nodes_)
      j["nodes"].push_back({{"feature", nd.feature},
                            {"bin", nd.bin},
                            {"equality", nd.equality},
                            {"left", nd.left},
                            {"right", nd.right},
                            {"value", nd.value},
                            {"rows", nd.rows}});
    return j;
  }

  void restore(const nlohmann::json& j) override {
    nodes_.clear();
    for (const auto& e : j.at("nodes")) {
      Node nd;
      nd.feature = e.at("feature").get<int>();
      nd.bin = e.at("bin").get<uint16_t>();
      nd.equality = e.at("equality").get<bool>();
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
    j["nodes"] = nodes_.size();
    j["rules"] = nlohmann::json::array();
    for (const auto& r : rules()) {
      j["rules"].push_back(
          {{"conditions", r.conditions}, {"probabilities", r.value}, {"rows", r.rows}});
    }
    return j;
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

  std::vector<Node> nodes_;
};

}  // namespace

std::unique_ptr<Student> make_tree_student(const StudentOptions& o) {
  return std::make_unique<TreeStudent>(o);
}

}  // namespace candor::distill
