// The linear student: sparse logistic regression over one-hot bins (L1 / elastic net).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "candor/error.h"
#include "distill/students.h"

namespace candor::distill {

namespace {

// Sparse logistic regression over one-hot bins, by cyclic coordinate descent with exact
// per-coordinate Newton steps and soft thresholding (glmnet-style), one problem per class.

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

  nlohmann::json state() const override {
    nlohmann::json j = glassbox_state(o_, k_);
    j["intercepts"] = intercept_;
    j["weights"] = weights_;
    return j;
  }

  void restore(const nlohmann::json& j) override {
    intercept_ = j.at("intercepts").get<std::vector<double>>();
    weights_ = j.at("weights").get<std::vector<std::vector<double>>>();
    offsets_.clear();
    size_t p = 0;
    for (const Feature& f : features_) {
      offsets_.push_back(p);
      p += f.n_bins();
    }
    const size_t problems = k_ == 2 ? 1 : k_;
    if (intercept_.size() != problems || weights_.size() != problems)
      throw std::runtime_error("the linear student has " + std::to_string(weights_.size()) +
                               " models for " + std::to_string(k_) + " classes");
    for (const auto& w : weights_)
      if (w.size() != p)
        throw std::runtime_error("the linear student's weights do not match the features' bins");
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
  std::vector<size_t> offsets_;
  std::vector<std::vector<double>> weights_;
  std::vector<double> intercept_;
};

}  // namespace

std::unique_ptr<Student> make_linear_student(const StudentOptions& o) {
  return std::make_unique<LinearStudent>(o);
}

}  // namespace candor::distill
