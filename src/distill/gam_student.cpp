// The GAM student: per-feature shape functions and the strongest pairwise interactions
// fitted by cyclic boosting (explainable boosting).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include "candor/error.h"
#include "distill/students.h"

namespace candor::distill {

namespace {

// GAM by cyclic gradient boosting (explainable boosting): each round visits every feature and
// takes a small Newton step of its shape function (one value per bin) on the current
// residuals; then the pairs with the largest gain of a joint step on coarse bins are boosted
// the same way. The logit is intercept + sum of shapes + sum of pair tables.

class GamStudent : public GlassBoxStudent {
 public:
  using GlassBoxStudent::GlassBoxStudent;

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

  nlohmann::json state() const override {
    nlohmann::json j = glassbox_state(o_, k_);
    j["models"] = nlohmann::json::array();
    for (const Model& md : models_) {
      nlohmann::json m = {{"intercept", md.intercept},
                          {"shapes", md.shapes},
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
    models_.clear();
    for (const auto& e : j.at("models")) {
      Model md;
      md.intercept = e.at("intercept").get<double>();
      md.shapes = e.at("shapes").get<std::vector<std::vector<double>>>();
      md.importance = e.at("importance").get<std::vector<double>>();
      if (md.shapes.size() != features_.size())
        throw std::runtime_error("the GAM's shapes do not match the features");
      for (size_t f = 0; f < features_.size(); ++f)
        if (md.shapes[f].size() != static_cast<size_t>(features_[f].n_bins()))
          throw std::runtime_error("the shape of '" + features_[f].name +
                                   "' does not match its bins");
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
        if (pr.f1 >= features_.size() || pr.f2 >= features_.size() || pr.div1 < 1 || pr.div2 < 1 ||
            pr.n1 < 1 || pr.n2 < 1 ||
            pr.table.size() != static_cast<size_t>(pr.n1) * static_cast<size_t>(pr.n2) ||
            (features_[pr.f1].n_bins() - 1) / pr.div1 >= pr.n1 ||
            (features_[pr.f2].n_bins() - 1) / pr.div2 >= pr.n2)
          throw std::runtime_error("an interaction does not match its features' bins");
        md.pairs.push_back(std::move(pr));
      }
      models_.push_back(std::move(md));
    }
    if (models_.size() != (k_ == 2 ? 1 : k_))
      throw std::runtime_error("the GAM has " + std::to_string(models_.size()) + " models for " +
                               std::to_string(k_) + " classes");
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

  std::vector<Model> models_;
};

}  // namespace

std::unique_ptr<Student> make_gam_student(const StudentOptions& o) {
  return std::make_unique<GamStudent>(o);
}

}  // namespace candor::distill
