// Integrated gradients: the target's gradient integrated along the straight path from the
// baseline embeddings to the input embeddings, in chunks of points so memory stays bounded.
#include <algorithm>
#include <cmath>

#include "candor/error.h"
#include "explain/common.h"
#include "explain/quadrature.h"

namespace candor::explain {
namespace {

// Gauss-Legendre nodes and weights on [-1, 1] by Newton's method on P_n, returned on [0, 1].
Quadrature gauss_legendre(int64_t n) {
  const double pi = std::acos(-1.0);
  Quadrature q;
  q.alphas.resize(n);
  q.weights.resize(n);
  // Roots come in +-x pairs: find the (n + 1) / 2 non-negative ones.
  for (int64_t i = 0; i < (n + 1) / 2; ++i) {
    double x = std::cos(pi * (static_cast<double>(i) + 0.75) / (static_cast<double>(n) + 0.5));
    double dp = 0;  // P_n'(x)
    for (int iter = 0; iter < 100; ++iter) {
      // P_0 = 1, P_1 = x, (k + 1) P_{k+1} = (2k + 1) x P_k - k P_{k-1}.
      double p_prev = 1.0, p = x;
      for (int64_t k = 1; k < n; ++k) {
        double next = ((2.0 * k + 1.0) * x * p - k * p_prev) / (k + 1.0);
        p_prev = p;
        p = next;
      }
      dp = static_cast<double>(n) * (x * p - p_prev) / (x * x - 1.0);
      double step = p / dp;
      x -= step;
      if (std::abs(step) < 1e-16) break;
    }
    // Recompute P_n' at the converged root for the weight.
    double p_prev = 1.0, p = x;
    for (int64_t k = 1; k < n; ++k) {
      double next = ((2.0 * k + 1.0) * x * p - k * p_prev) / (k + 1.0);
      p_prev = p;
      p = next;
    }
    dp = static_cast<double>(n) * (x * p - p_prev) / (x * x - 1.0);
    double w = 2.0 / ((1.0 - x * x) * dp * dp);
    // x > 0 here (descending in i); map t = (1 + x) / 2, and the mirror (1 - x) / 2.
    q.alphas[i] = (1.0 - x) / 2.0;
    q.weights[i] = w / 2.0;
    q.alphas[n - 1 - i] = (1.0 + x) / 2.0;
    q.weights[n - 1 - i] = w / 2.0;
  }
  if (n % 2 == 1) q.alphas[n / 2] = 0.5;  // the middle root is exactly 0
  return q;
}

}  // namespace

Quadrature make_quadrature(const std::string& method, int64_t n) {
  if (n < 1) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "option n_steps of method 'integrated_gradients' must be >= 1, got " + std::to_string(n));
  }
  if (method == "gausslegendre") return gauss_legendre(n);
  Quadrature q;
  const double dn = static_cast<double>(n);
  if (method == "riemann_left" || method == "riemann_right" || method == "riemann_middle") {
    const double shift = method == "riemann_left" ? 0.0 : method == "riemann_right" ? 1.0 : 0.5;
    for (int64_t i = 0; i < n; ++i) {
      q.alphas.push_back((static_cast<double>(i) + shift) / dn);
      q.weights.push_back(1.0 / dn);
    }
    return q;
  }
  if (method == "riemann_trapezoid") {
    if (n < 2) {
      throw Error(ErrorCode::kInvalidArgument,
                  "option n_steps of method 'integrated_gradients' must be >= 2 with "
                  "method=riemann_trapezoid, got " +
                      std::to_string(n));
    }
    for (int64_t i = 0; i < n; ++i) {
      q.alphas.push_back(static_cast<double>(i) / (dn - 1.0));
      q.weights.push_back((i == 0 || i == n - 1 ? 0.5 : 1.0) / (dn - 1.0));
    }
    return q;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "option method of method 'integrated_gradients' must be gausslegendre, "
              "riemann_left, riemann_right, riemann_middle or riemann_trapezoid, got '" +
                  method + "'");
}

std::vector<double> equidistributed_edges(int64_t panels, const std::vector<double>& alphas,
                                          const std::vector<double>& values, double beta) {
  const size_t M = alphas.size();
  panels = std::max<int64_t>(1, panels);
  double variation = 0;
  for (size_t i = 0; i + 1 < M; ++i) variation += std::abs(values[i + 1] - values[i]);
  if (M < 2 || !(variation > 0) || !std::isfinite(variation)) beta = 1;
  std::vector<double> edges = {0.0};
  if (M < 2) {
    for (int64_t k = 1; k <= panels; ++k) edges.push_back(static_cast<double>(k) / panels);
    return edges;
  }
  // Cumulative density at the samples: beta (uniform) + (1 - beta) |df| / variation.
  std::vector<double> cum(M, 0.0);
  for (size_t i = 0; i + 1 < M; ++i) {
    const double v = beta < 1 ? std::abs(values[i + 1] - values[i]) / variation : 0;
    cum[i + 1] = cum[i] + beta * (alphas[i + 1] - alphas[i]) + (1 - beta) * v;
  }
  size_t i = 0;
  for (int64_t k = 1; k < panels; ++k) {
    const double target = cum[M - 1] * static_cast<double>(k) / static_cast<double>(panels);
    while (i + 2 < M && cum[i + 1] < target) ++i;
    const double span = cum[i + 1] - cum[i];
    const double t = span > 0 ? std::min(1.0, std::max(0.0, (target - cum[i]) / span)) : 0;
    edges.push_back(alphas[i] + t * (alphas[i + 1] - alphas[i]));
  }
  edges.push_back(1.0);
  return edges;
}

namespace {

// Accuracy note: on a trained model the target bends sharply along the path (on stories260K the
// slope of a span step can swing by ~80 nats per unit alpha within ~0.005), where one global
// Gauss-Legendre rule, whose points are ~0.025 apart mid-interval at 64 points, misses by up
// to a few percent. The default rule is therefore composite and checks itself: the integral of
// df/dalpha over a panel [a, b] must equal f(b) - f(a), which forward passes give exactly, so
// every panel's error is known. The points are spent as follows: `probes` + 1 forward passes
// sample f; half of the n_steps points go to panels of `per_panel` Gauss-Legendre points placed
// so each holds an equal share of f's variation; the other half split, one at a time, the
// panel whose check fails worst (its points are discarded and counted). `tol` > 0 stops early
// once the panels' errors add up to less than tol |f(x) - f(baseline)|; max_steps > n_steps
// lets the splitting go on until then.
class IntegratedGradients : public Explainer {
 public:
  explicit IntegratedGradients(Options o) : o_(std::move(o)) {
    n_points_ = o_.get_int("n_steps", 1, 1 << 20);
    rule_ = o_.get("method");
    batch_ = o_.get_int("internal_batch_size", 1, 1 << 20);
    probes_ = o_.get_int("probes", 0, 1 << 16);
    per_panel_ = o_.get_int("per_panel", 1, 64);
    per_step_ = o_.get_bool("per_step");
    tol_ = o_.get_double("tol", 0, 1);
    initial_ = o_.get_double("initial", 0, 1);
    max_points_ =
        o_.get("max_steps") == "n_steps" ? n_points_ : o_.get_int("max_steps", 1, 1 << 20);
    if (max_points_ < n_points_) {
      throw Error(ErrorCode::kInvalidArgument,
                  "option max_steps of method 'integrated_gradients' must be >= n_steps (" +
                      std::to_string(n_points_) + "), got " + std::to_string(max_points_));
    }
    make_quadrature(rule_, n_points_);  // validates the method (and n_steps for it)
  }
  std::string name() const override { return "integrated_gradients"; }
  std::map<std::string, std::string> options() const override { return o_.values(); }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Run run(*this, prepare(model, request), context);
    const int64_t S = run.S;
    at::Tensor acc = at::zeros({S, run.T, run.D}, at::kDouble);  // sum of weighted gradients
    nlohmann::json panels_json = nlohmann::json::array();
    std::vector<double> panel_error;
    if (rule_ == "gausslegendre" && probes_ > 0) {
      // One rule per step (per_step), or one for all steps sharing each point's forward pass.
      std::vector<std::vector<double>> probe_values = run.probe();  // [S][probes + 1]
      const bool separate = per_step_ && S > 1;
      for (int64_t r = 0; r < (separate ? S : 1); ++r) {
        std::vector<int64_t> steps;
        std::vector<double> column(probes_ + 1, 0.0);
        for (int64_t s = 0; s < S; ++s) {
          if (separate && s != r) continue;
          steps.push_back(s);
          for (int64_t i = 0; i <= probes_; ++i) column[i] += probe_values[s][i];
        }
        Adaptive a = run.adaptive(steps, column);
        for (size_t k = 0; k < steps.size(); ++k) acc[steps[k]] += a.acc[k];
        panels_json.push_back(a.edges);
        panel_error.push_back(a.error);
      }
    } else {
      Quadrature q = make_quadrature(rule_, n_points_);
      std::vector<int64_t> all(S);
      for (int64_t s = 0; s < S; ++s) all[s] = s;
      acc +=
          run.integrate(all, q.alphas, q.weights, std::vector<int64_t>(q.alphas.size(), 0), 1)[0];
    }
    at::Tensor token_scores = (acc * run.diff).sum(-1);  // [S, T]
    // Like every method, the count leaves out finish()'s f(x) and f(baseline) passes.
    Attribution out =
        finish(run.p, name(), o_, run.p.to_features(token_scores), start, run.positions);
    for (int64_t s = 0; s < S; ++s) {
      double sum = 0;
      for (int64_t f = 0; f < out.n_features(); ++f) sum += out.score(s, f);
      out.convergence_delta.push_back(sum - (out.target_values[s] - out.baseline_values[s]));
    }
    out.extra = {{"max_batch", run.max_batch},
                 {"n_chunks", run.n_chunks},
                 {"gradient_points", run.gradient_points}};
    if (!panels_json.empty()) {
      out.extra["panels"] = panels_json;
      out.extra["panel_error"] = panel_error;
    }
    return out;
  }

 private:
  struct Adaptive {
    std::vector<at::Tensor> acc;  // per step of the rule: [T, D]
    std::vector<double> edges;
    double error = 0;  // sum over panels of the worst relative check error of its steps
  };

  // The state of one explanation: the path, the counters, and the ways to spend points on it.
  struct Run {
    const IntegratedGradients& ig;
    Problem p;
    const ExplainContext& context;
    int64_t S, T, D;
    at::Tensor base, diff;  // [1, T, D] double
    double positions = 0;
    int64_t max_batch = 0, n_chunks = 0, gradient_points = 0, budget_points = 0, done_points = 0;

    Run(const IntegratedGradients& owner, Problem problem, const ExplainContext& c)
        : ig(owner), p(std::move(problem)), context(c) {
      S = p.n_steps();
      T = p.length();
      D = p.embeddings.size(2);
      base = p.baseline_embeddings.to(at::kDouble);
      diff = p.embeddings.to(at::kDouble) - base;
      const bool separate = ig.per_step_ && S > 1;
      budget_points =
          (ig.rule_ == "gausslegendre" && ig.probes_ > 0 ? ig.max_points_ : ig.n_points_) *
          (separate ? S : 1);
    }

    at::Tensor points(const std::vector<double>& alphas) const {
      at::Tensor a = at::tensor(alphas, at::kDouble).view({-1, 1, 1});
      return (base + a * diff).to(at::kFloat);  // interpolated in double, rounded once
    }

    // Target values at `alphas` (forward passes only, in chunks): [S][alphas].
    std::vector<std::vector<double>> values_at(const std::vector<double>& alphas) {
      at::NoGradGuard no_grad;
      std::vector<std::vector<double>> out(S, std::vector<double>(alphas.size()));
      for (size_t from = 0; from < alphas.size(); from += static_cast<size_t>(ig.batch_)) {
        const size_t B = std::min(alphas.size() - from, static_cast<size_t>(ig.batch_));
        std::vector<double> a(alphas.begin() + from, alphas.begin() + from + B);
        at::Tensor v = p.values(points(a)).to(at::kDouble);  // [B, S]
        for (size_t b = 0; b < B; ++b) {
          for (int64_t s = 0; s < S; ++s) out[s][from + b] = v[b][s].item<double>();
        }
        positions += static_cast<double>(B * T);
      }
      return out;
    }

    std::vector<std::vector<double>> probe() {
      std::vector<double> alphas;
      for (int64_t i = 0; i <= ig.probes_; ++i) {
        alphas.push_back(static_cast<double>(i) / static_cast<double>(ig.probes_));
      }
      return values_at(alphas);
    }

    // sum_i w_i grad f_s(alpha_i) for the steps `steps`, per group of points (group[i] in
    // [0, G)): [G, steps, T, D] double. All points run together in chunks of
    // internal_batch_size.
    at::Tensor integrate(const std::vector<int64_t>& steps, const std::vector<double>& alphas,
                         const std::vector<double>& weights, const std::vector<int64_t>& group,
                         int64_t G) {
      const int64_t R = static_cast<int64_t>(steps.size());
      at::Tensor acc = at::zeros({G, R, T, D}, at::kDouble);
      const int64_t n = static_cast<int64_t>(alphas.size());
      for (int64_t from = 0; from < n; from += ig.batch_) {
        const int64_t B = std::min(ig.batch_, n - from);
        std::vector<double> a(alphas.begin() + from, alphas.begin() + from + B);
        std::vector<double> w(weights.begin() + from, weights.begin() + from + B);
        at::Tensor weight = at::tensor(w, at::kDouble).view({B, 1, 1});
        at::Tensor index = at::tensor(
            std::vector<int64_t>(group.begin() + from, group.begin() + from + B), at::kLong);
        at::Tensor pts = points(a);                          // [B, T, D]
        auto add = [&](int64_t k, const at::Tensor& grad) {  // grad [B, T, D]
          acc.select(1, k).index_add_(0, index, grad.to(at::kDouble) * weight);
        };
        if (R == 1 && S > 1) {
          // One step: one forward and one backward.
          add(0, value_grad_of_step(p, pts, steps[0]));
          positions += static_cast<double>(B * T) * 3;
        } else {
          ValuesAndGrads vg = values_and_grads(p, pts);
          for (int64_t k = 0; k < R; ++k) add(k, vg.grads[steps[k]]);
          // One forward of B rows and one backward (about two forwards) per step.
          positions += static_cast<double>(B * T) * (1 + 2 * S);
        }
        max_batch = std::max(max_batch, B);
        ++n_chunks;
        gradient_points += B;
        done_points += B;
        report_progress(&context, static_cast<double>(done_points) /
                                      static_cast<double>(std::max<int64_t>(1, budget_points)));
      }
      return acc;
    }

    struct Panel {
      double a, b;
      at::Tensor acc;              // [steps, T, D]
      std::vector<double> fa, fb;  // exact values at the edges, per step
      double error = 0;            // worst relative check error over the steps
    };

    // Evaluates panels [edges[k], edges[k+1]] with per_panel Gauss-Legendre points each, all
    // their points batched together; `f` holds the exact values at the edges ([steps][edge]).
    std::vector<Panel> panels(const std::vector<int64_t>& steps, const std::vector<double>& edges,
                              const std::vector<std::vector<double>>& f,
                              const std::vector<double>& scale) {
      const Quadrature g = make_quadrature("gausslegendre", ig.panel_points());
      const int64_t G = static_cast<int64_t>(edges.size()) - 1;
      std::vector<double> alphas, weights;
      std::vector<int64_t> group;
      for (int64_t k = 0; k < G; ++k) {
        const double a = edges[k], b = edges[k + 1];
        for (size_t j = 0; j < g.alphas.size(); ++j) {
          alphas.push_back(a + (b - a) * g.alphas[j]);
          weights.push_back((b - a) * g.weights[j]);
          group.push_back(k);
        }
      }
      at::Tensor acc = integrate(steps, alphas, weights, group, G);  // [G, R, T, D]
      std::vector<Panel> out;
      for (int64_t k = 0; k < G; ++k) {
        Panel pan;
        pan.a = edges[k];
        pan.b = edges[k + 1];
        pan.acc = acc[k].clone();
        for (size_t r = 0; r < steps.size(); ++r) {
          pan.fa.push_back(f[r][k]);
          pan.fb.push_back(f[r][k + 1]);
          const double est = (pan.acc[r] * diff[0]).sum().item<double>();
          pan.error = std::max(pan.error, std::abs(est - (f[r][k + 1] - f[r][k])) / scale[r]);
        }
        out.push_back(std::move(pan));
      }
      return out;
    }

    Adaptive adaptive(const std::vector<int64_t>& steps, const std::vector<double>& column) {
      const int64_t m = ig.panel_points();
      std::vector<double> probe_alphas;
      for (int64_t i = 0; i <= ig.probes_; ++i) {
        probe_alphas.push_back(static_cast<double>(i) / static_cast<double>(ig.probes_));
      }
      const int64_t n0 = std::max<int64_t>(
          1, static_cast<int64_t>(ig.initial_ * static_cast<double>(ig.n_points_)) / m);
      std::vector<double> edges = equidistributed_edges(n0, probe_alphas, column);
      std::vector<std::vector<double>> all = values_at(edges);
      std::vector<std::vector<double>> f;
      std::vector<double> scale;
      for (int64_t s : steps) {
        f.push_back(all[s]);
        scale.push_back(std::max(std::abs(all[s].back() - all[s].front()), 1e-6));
      }
      std::vector<Panel> list = panels(steps, edges, f, scale);
      int64_t used = n0 * m;
      auto total_error = [&] {
        double e = 0;
        for (const Panel& pan : list) e += pan.error;
        return e;
      };
      while (used + 2 * m <= ig.max_points_) {
        if (used + 2 * m > ig.n_points_ && !(ig.tol_ > 0)) break;
        const double err = total_error();
        if (ig.tol_ > 0 && err <= ig.tol_) break;
        size_t worst = 0;
        for (size_t k = 1; k < list.size(); ++k) {
          if (list[k].error > list[worst].error) worst = k;
        }
        Panel old = std::move(list[worst]);
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(worst));
        const double mid = 0.5 * (old.a + old.b);
        std::vector<std::vector<double>> fm_all = values_at({mid});
        std::vector<std::vector<double>> fe;
        for (size_t r = 0; r < steps.size(); ++r) {
          fe.push_back({old.fa[r], fm_all[steps[r]][0], old.fb[r]});
        }
        for (Panel& pan : panels(steps, {old.a, mid, old.b}, fe, scale)) {
          list.push_back(std::move(pan));
        }
        used += 2 * m;
      }
      std::sort(list.begin(), list.end(), [](const Panel& x, const Panel& y) { return x.a < y.a; });
      Adaptive out;
      for (size_t r = 0; r < steps.size(); ++r) out.acc.push_back(at::zeros({T, D}, at::kDouble));
      out.edges.push_back(0.0);
      for (const Panel& pan : list) {
        for (size_t r = 0; r < steps.size(); ++r) out.acc[r] += pan.acc[r];
        out.edges.push_back(pan.b);
        out.error += pan.error;
      }
      return out;
    }
  };

  int64_t panel_points() const { return std::min(per_panel_, n_points_); }

  Options o_;
  int64_t n_points_ = 0;
  std::string rule_;
  int64_t batch_ = 0;
  int64_t probes_ = 0;
  int64_t per_panel_ = 4;
  bool per_step_ = true;
  double tol_ = 0;
  double initial_ = 0.75;
  int64_t max_points_ = 0;
};

}  // namespace

std::unique_ptr<Explainer> make_integrated_gradients(const Options& o) {
  return std::make_unique<IntegratedGradients>(o);
}

}  // namespace candor::explain
