// Integrated gradients: the target's gradient integrated along the straight path from the
// baseline embeddings to the input embeddings, in chunks of points so memory stays bounded.
#include <algorithm>
#include <cmath>
#include <map>

#include "candor/error.h"
#include "explain/common.h"
#include "explain/quadrature.h"

namespace candor::explain {
namespace {

// Accuracy note: on a trained model the target bends sharply along the path (on stories260K the
// slope of a span step can swing by ~80 nats per unit alpha within ~0.005), where one global
// Gauss-Legendre rule, whose points are ~0.025 apart mid-interval at 64 points, misses by up
// to a few percent. Every composite rule here checks itself: sum_i (x_i - x'_i) g_i(alpha) is
// exactly df/dalpha, so the integral over a panel [a, b] must equal f(b) - f(a), and a panel's
// error is known as soon as f is known at its edges.
//
// rule=adaptive (the default): panels of `per_panel` + 1 Gauss-Lobatto points (the Gauss-
// Legendre family member that includes both edges; the default per_panel=2 is the 3-point rule,
// Simpson's), neighbours sharing their edge point. Every point is a gradient point and its
// forward pass gives f there as well, so no pass is spent on f alone. The path starts as equal
// panels holding about `initial` of the points (at least kFirstPanels panels, so the first round
// fills a chunk of 16 points at any n_steps >= 17); then, round by round, the panels that need it
// most are bisected: need = max(the panel's exact check miss, kKappa x the largest exact
// trapezoid miss between its neighbouring points, which flags a panel whose misses cancel by
// luck), relative to |f(x) - f(baseline)| + 0.1. The rules of a span's steps (per_step) share
// one budget of S x n_steps points and each round splits the neediest panels over all of them,
// so a step whose target bends sharply gets points an easy step does not need (on a benchmark
// of 200 steps: 4 over the completeness bound at 64 points instead of 6; with tol=1e-3 none,
// at 62.8 points per step on average). With an odd number of Lobatto points the edges and the
// centre of a split panel are reused, so with 3 points a split costs 2 new points and nothing is
// thrown away. On stories260K the integrand is not resolved at 64 points (several dips of width
// ~0.005), and there the many cheap splits of the 3-point rule beat fewer panels of a higher order
// (measured in bench/bench_ig_completeness.cpp; docs/integrated-gradients.md). tol > 0 stops early
// once the panels' errors add up to less than tol |f(x) - f(baseline)|, and max_steps > n_steps
// lets the splitting go on until then. Memory: at most max(64, 4 internal_batch_size) points'
// gradients per rule are held at a time (one step's gradient each); beyond that the live panels
// that need it least are frozen (added to the sum, no longer split).
//
// rule=probed (the rule before): `probes` + 1 forward passes sample f, panels of `per_panel`
// Gauss-Legendre points are placed so each holds an equal share of f's variation, and the rest
// of the points split the worst panels (the split panel's points are discarded and counted).
// rule=plain (or probes=0): one n_steps-point Gauss-Legendre rule.
class IntegratedGradients : public Method {
 public:
  explicit IntegratedGradients(Options o) : Method(std::move(o)) {
    // Types, bounds and choices are checked against the declarations (registry.cpp).
    n_points_ = o_.get_int("n_steps");
    if (name() == "layer_integrated_gradients") {
      layer_ = o_.get_int("layer");
      per_neuron_ = o_.get_bool("per_neuron");
    }
    method_ = o_.get("method");
    rule_ = o_.get("rule");  // adaptive, probed or plain
    batch_ = o_.get_int("internal_batch_size");
    probes_ = o_.get_int("probes");
    per_panel_ = o_.is("per_panel", "auto") ? -1 : o_.get_int("per_panel");
    per_step_ = o_.get_bool("per_step");
    tol_ = o_.get_double("tol");
    if (probes_ == 0) rule_ = "plain";  // probes=0 meant one plain rule before rule= existed
    if (per_panel_ < 0) per_panel_ = rule_ == "probed" ? 4 : 2;
    initial_ =
        o_.is("initial", "auto") ? (rule_ == "probed" ? 0.75 : 0.25) : o_.get_double("initial");
    max_points_ = o_.is("max_steps", "n_steps") ? n_points_ : o_.get_int("max_steps");
    if (max_points_ < n_points_) {
      throw Error(ErrorCode::kInvalidArgument,
                  "option max_steps of method 'integrated_gradients' must be >= n_steps (" +
                      std::to_string(n_points_) + "), got " + std::to_string(max_points_));
    }
    make_quadrature(method_, n_points_);  // validates the method (and n_steps for it)
    // A composite rule needs room for one panel; fewer points give one plain rule.
    if (method_ != "gausslegendre" || n_points_ < per_panel_ + 1) rule_ = "plain";
  }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Problem problem = prepare(model, request);
    // Layer attribution: the path runs between the layer's outputs on the baseline input and
    // on the input, through the rest of the stack (the fused backward starts there too).
    if (layer_ >= 0) enter_layer(problem, layer_, name());
    Run run(*this, std::move(problem), context);
    const int64_t S = run.S;
    at::Tensor acc = at::zeros({S, run.T, run.D}, at::kDouble);  // sum of weighted gradients
    nlohmann::json panels_json = nlohmann::json::array();
    std::vector<double> panel_error;
    std::vector<int64_t> rule_points;
    if (rule_ != "plain") {
      // One rule per step (per_step), or one for all steps sharing each point's forward pass.
      std::vector<std::vector<double>> probe_values;
      if (rule_ == "probed") probe_values = run.probe();  // [S][probes + 1]
      const bool separate = per_step_ && S > 1;
      std::vector<std::vector<int64_t>> groups;
      for (int64_t r = 0; r < (separate ? S : 1); ++r) {
        std::vector<int64_t> steps;
        for (int64_t s = 0; s < S; ++s)
          if (!separate || s == r) steps.push_back(s);
        groups.push_back(steps);
      }
      std::vector<Adaptive> rules;
      if (rule_ == "adaptive") {
        rules = run.lobatto(groups);
      } else {
        for (const std::vector<int64_t>& steps : groups) {
          std::vector<double> column(probes_ + 1, 0.0);
          for (int64_t s : steps)
            for (int64_t i = 0; i <= probes_; ++i) column[i] += probe_values[s][i];
          rules.push_back(run.adaptive(steps, column));
        }
      }
      for (size_t r = 0; r < groups.size(); ++r) {
        for (size_t k = 0; k < groups[r].size(); ++k) acc[groups[r][k]] += rules[r].acc[k];
        panels_json.push_back(rules[r].edges);
        panel_error.push_back(rules[r].error);
        rule_points.push_back(rules[r].points);
      }
    } else {
      Quadrature q = make_quadrature(method_, n_points_);
      std::vector<int64_t> all(S);
      for (int64_t s = 0; s < S; ++s) all[s] = s;
      acc +=
          run.integrate(all, q.alphas, q.weights, std::vector<int64_t>(q.alphas.size(), 0), 1)[0];
    }
    at::Tensor token_scores = (acc * run.diff).sum(-1);  // [S, T]
    // Like every method, the count leaves out finish()'s f(x) and f(baseline) passes.
    Attribution out =
        finish(run.p, name(), o_, run.p.to_features(token_scores), start, run.positions);
    // At a layer, positions outside the features (the BOS token, a span's own tokens) have
    // outputs that differ between the input and the baseline, so part of f(x) - f(baseline)
    // lies there: reported, and counted in the completeness check.
    std::vector<double> unassigned(static_cast<size_t>(S), 0.0);
    if (layer_ >= 0) {
      const at::Tensor outside = (run.p.token_feature < 0).to(at::kDouble);  // [T]
      const at::Tensor u = (token_scores * outside).sum(-1);                // [S]
      for (int64_t s = 0; s < S; ++s) unassigned[static_cast<size_t>(s)] = u[s].item<double>();
    }
    for (int64_t s = 0; s < S; ++s) {
      double sum = unassigned[static_cast<size_t>(s)];
      for (int64_t f = 0; f < out.n_features(); ++f) sum += out.score(s, f);
      out.convergence_delta.push_back(sum - (out.target_values[s] - out.baseline_values[s]));
    }
    out.extra.update(nlohmann::json{{"max_batch", run.max_batch},
                                    {"n_chunks", run.n_chunks},
                                    {"gradient_points", run.gradient_points},
                                    {"rule", rule_}});
    if (layer_ >= 0) {
      out.extra["layer"] = layer_;
      out.extra["layer_unassigned"] = unassigned;  // per step: the part outside the features
      // Per hidden unit of the layer's output: [S, T, D], summing to f(x) - f(baseline).
      if (per_neuron_) out.extra["neurons"] = neurons_json(layer_, acc * run.diff);
    }
    if (rule_ == "adaptive") {
      out.extra["max_held_points"] = run.max_held;
      out.extra["rule_points"] = rule_points;
    }
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
    double error = 0;    // sum over panels of the worst relative check error of its steps
    int64_t points = 0;  // gradient points the rule used (rule=adaptive)
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
    int64_t max_held = 0;  // rule=adaptive: most points' gradients held at once

    Run(const IntegratedGradients& owner, Problem problem, const ExplainContext& c)
        : ig(owner), p(std::move(problem)), context(c) {
      S = p.n_steps();
      T = p.length();
      D = p.embeddings.size(2);
      base = p.baseline_embeddings.to(at::kDouble);
      diff = p.embeddings.to(at::kDouble) - base;
      const bool separate = ig.per_step_ && S > 1;
      budget_points = (ig.rule_ != "plain" ? ig.max_points_ : ig.n_points_) * (separate ? S : 1);
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

    // Gradient points: `alphas` in chunks of internal_batch_size, each chunk one forward and
    // the backward passes of the steps `steps`; use(from, B, values [B, S] double, grads) gets
    // grads[k] [B, T, D], the gradient of step steps[k].
    template <class Use>
    void evaluate(const std::vector<int64_t>& steps, const std::vector<double>& alphas, Use&& use) {
      const int64_t R = static_cast<int64_t>(steps.size());
      const int64_t n = static_cast<int64_t>(alphas.size());
      for (int64_t from = 0; from < n; from += ig.batch_) {
        const int64_t B = std::min(ig.batch_, n - from);
        std::vector<double> a(alphas.begin() + from, alphas.begin() + from + B);
        at::Tensor pts = points(a);  // [B, T, D]
        at::Tensor values;
        std::vector<at::Tensor> grads;
        if (R == 1 && S > 1) {
          // One step: one forward and one backward.
          grads.push_back(value_grad_of_step(p, pts, steps[0], &values));
          positions += static_cast<double>(B * T) * 3;
        } else {
          ValuesAndGrads vg = values_and_grads(p, pts);
          values = vg.values;
          for (int64_t k = 0; k < R; ++k) grads.push_back(vg.grads[steps[k]]);
          // One forward of B rows and one backward (about two forwards) per step.
          positions += static_cast<double>(B * T) * (1 + 2 * S);
        }
        use(from, B, values.to(at::kDouble), grads);
        max_batch = std::max(max_batch, B);
        ++n_chunks;
        gradient_points += B;
        done_points += B;
        report_progress(&context, static_cast<double>(done_points) /
                                      static_cast<double>(std::max<int64_t>(1, budget_points)));
      }
    }

    // sum_i w_i grad f_s(alpha_i) for the steps `steps`, per group of points (group[i] in
    // [0, G)): [G, steps, T, D] double.
    at::Tensor integrate(const std::vector<int64_t>& steps, const std::vector<double>& alphas,
                         const std::vector<double>& weights, const std::vector<int64_t>& group,
                         int64_t G) {
      const int64_t R = static_cast<int64_t>(steps.size());
      at::Tensor acc = at::zeros({G, R, T, D}, at::kDouble);
      evaluate(steps, alphas,
               [&](int64_t from, int64_t B, const at::Tensor&, const std::vector<at::Tensor>& g) {
                 std::vector<double> w(weights.begin() + from, weights.begin() + from + B);
                 at::Tensor weight = at::tensor(w, at::kDouble).view({B, 1, 1});
                 at::Tensor index = at::tensor(
                     std::vector<int64_t>(group.begin() + from, group.begin() + from + B),
                     at::kLong);
                 for (int64_t k = 0; k < R; ++k)
                   acc.select(1, k).index_add_(0, index, g[k].to(at::kDouble) * weight);
               });
      return acc;
    }

    // --- rule=adaptive: bisected Gauss-Lobatto panels sharing their edge points ---------------

    struct Node {
      at::Tensor grad;            // [R, T, D] float: the rule's steps' gradients at this point
      std::vector<double> f;      // [R] target values
      std::vector<double> slope;  // [R] df/dalpha = <grad, x - x'>
      int refs = 0;               // live panels using this point
    };
    struct LobattoPanel {
      size_t rule = 0;  // which rule (of lobatto()'s list) the panel belongs to
      double a = 0, b = 1;
      double error = 0;  // worst relative check miss over the rule's steps
      double need = 0;   // what orders the splits, comparable across rules (see open())
    };
    struct LobattoRule {
      std::vector<int64_t> steps;    // [R]
      std::map<double, Node> nodes;  // the points live panels use
      std::vector<double> scale;     // [R] |f(x) - f(x')| (>= 1e-6): errors are relative to it
      std::vector<double> norm;      // [R] |f(x) - f(x')| + kAtol / kRtol: splits compare by it
      std::vector<LobattoPanel> frozen;
      at::Tensor frozen_acc;  // [R, T, D] double
      double frozen_error = 0;
      int64_t spent = 0;  // points evaluated for the rule
    };

    // Runs one adaptive rule per entry of `rules` (each a list of steps sharing the rule's
    // points); the rules draw on one budget of n_steps points each and the splits go, round by
    // round, to the panels that need them most over all rules, so a span step whose target
    // bends sharply gets points an easy step of the same span does not need. The memory bound
    // (gradients held) is per rule on average, as before.
    std::vector<Adaptive> lobatto(const std::vector<std::vector<int64_t>>& groups) {
      const int64_t pp = ig.per_panel_;
      const Quadrature L = gauss_lobatto(pp + 1);
      const int64_t n_rules = static_cast<int64_t>(groups.size());
      const int64_t keep_one = std::max<int64_t>({64, 4 * ig.batch_, 2 * pp + 1});
      const int64_t keep = keep_one * n_rules;
      std::vector<LobattoRule> rules(groups.size());
      for (size_t r = 0; r < groups.size(); ++r) rules[r].steps = groups[r];
      auto nodes_of = [&](double a, double b) {
        std::vector<double> v;
        for (double t : L.alphas) v.push_back(t == 0.0 ? a : t == 1.0 ? b : a + (b - a) * t);
        return v;
      };
      auto held = [&] {
        int64_t n = 0;
        for (const LobattoRule& rule : rules) n += static_cast<int64_t>(rule.nodes.size());
        return n;
      };
      int64_t used = 0;
      // Evaluates `alphas` for the rules `which` together (one forward, a backward per step).
      auto run_points = [&](const std::vector<size_t>& which, std::vector<double> alphas) {
        std::sort(alphas.begin(), alphas.end());
        std::vector<int64_t> steps;
        for (size_t r : which)
          steps.insert(steps.end(), rules[r].steps.begin(), rules[r].steps.end());
        evaluate(steps, alphas,
                 [&](int64_t from, int64_t B, const at::Tensor& values,
                     const std::vector<at::Tensor>& g) {
                   std::vector<at::Tensor> slopes;  // [steps] x [B]
                   for (const at::Tensor& gk : g)
                     slopes.push_back((gk.to(at::kDouble) * diff).sum({1, 2}));
                   size_t k0 = 0;
                   for (size_t r : which) {
                     const size_t R = rules[r].steps.size();
                     for (int64_t i = 0; i < B; ++i) {
                       Node node;
                       std::vector<at::Tensor> rows;
                       for (size_t k = k0; k < k0 + R; ++k) {
                         rows.push_back(g[k][i]);
                         node.f.push_back(values[i][steps[k]].item<double>());
                         node.slope.push_back(slopes[k][i].item<double>());
                       }
                       node.grad = at::stack(rows).contiguous();
                       rules[r].nodes[alphas[from + i]] = std::move(node);
                     }
                     k0 += R;
                   }
                   max_held = std::max(max_held, held());
                 });
        used += static_cast<int64_t>(alphas.size() * which.size());
        for (size_t r : which) rules[r].spent += static_cast<int64_t>(alphas.size());
      };
      // The first panels: equal, about `initial` of the points but at least kFirstPanels,
      // within the budget and the memory bound; the same points for every rule.
      const int64_t most = std::min<int64_t>(ig.n_points_, keep_one);
      int64_t n0 = static_cast<int64_t>(ig.initial_ * static_cast<double>(ig.n_points_) / pp);
      n0 = std::max<int64_t>(1, std::min(std::max(n0, kFirstPanels), (most - 1) / pp));
      std::vector<double> first;
      for (int64_t k = 0; k <= n0 * pp; ++k) {
        const int64_t panel = std::min(k / pp, n0 - 1);
        const double a = static_cast<double>(panel) / static_cast<double>(n0);
        const double b = static_cast<double>(panel + 1) / static_cast<double>(n0);
        first.push_back(nodes_of(a, b)[k - panel * pp]);
      }
      std::vector<size_t> every(rules.size());
      for (size_t r = 0; r < rules.size(); ++r) every[r] = r;
      run_points(every, first);
      for (LobattoRule& rule : rules) {
        for (size_t k = 0; k < rule.steps.size(); ++k) {
          const double gap = std::abs(rule.nodes.at(1.0).f[k] - rule.nodes.at(0.0).f[k]);
          rule.scale.push_back(std::max(gap, 1e-6));
          rule.norm.push_back(gap + kAtol / kRtol);
        }
        rule.frozen_acc = at::zeros({static_cast<int64_t>(rule.steps.size()), T, D}, at::kDouble);
      }

      std::vector<LobattoPanel> live;
      auto open = [&](size_t r, double a, double b) {
        LobattoRule& rule = rules[r];
        LobattoPanel pan;
        pan.rule = r;
        pan.a = a;
        pan.b = b;
        const std::vector<double> v = nodes_of(a, b);
        for (size_t k = 0; k < rule.steps.size(); ++k) {
          double est = 0, trapezoid = 0;
          for (size_t j = 0; j < v.size(); ++j) {
            const Node& x = rule.nodes.at(v[j]);
            est += (b - a) * L.weights[j] * x.slope[k];
            if (j + 1 < v.size()) {
              // The trapezoid rule's exact miss between neighbouring points: large where the
              // slope bends within the panel even when the panel's own misses cancel.
              const Node& y = rule.nodes.at(v[j + 1]);
              const double t =
                  0.5 * (v[j + 1] - v[j]) * (x.slope[k] + y.slope[k]) - (y.f[k] - x.f[k]);
              trapezoid = std::max(trapezoid, std::abs(t));
            }
          }
          const double miss = std::abs(est - (rule.nodes.at(b).f[k] - rule.nodes.at(a).f[k]));
          pan.error = std::max(pan.error, miss / rule.scale[k]);
          // Relative to |f(x) - f(x')| + kAtol / kRtol: steps with a tiny difference compete
          // for points by an absolute miss, like an atol + rtol tolerance.
          pan.need = std::max(pan.need, std::max(miss, kKappa * trapezoid) / rule.norm[k]);
        }
        // Narrower panels are not split: their points would be the same path point once the
        // embeddings are rounded to float, and their checks are float noise.
        if (b - a < kMinWidth) pan.need = 0;
        for (double x : v) ++rule.nodes.at(x).refs;
        live.push_back(pan);
      };
      // Adds the panel's weighted gradients to `to` ([R, T, D] double); release: drop its refs.
      auto sum_panel = [&](const LobattoPanel& pan, at::Tensor& to, bool release) {
        LobattoRule& rule = rules[pan.rule];
        const std::vector<double> v = nodes_of(pan.a, pan.b);
        for (size_t j = 0; j < v.size(); ++j) {
          auto it = rule.nodes.find(v[j]);
          if (to.defined()) to += (pan.b - pan.a) * L.weights[j] * it->second.grad.to(at::kDouble);
          if (release && --it->second.refs == 0) rule.nodes.erase(it);
        }
      };
      for (size_t r = 0; r < rules.size(); ++r) {
        for (int64_t k = 0; k < n0; ++k) {
          open(r, static_cast<double>(k) / static_cast<double>(n0),
               static_cast<double>(k + 1) / static_cast<double>(n0));
        }
      }
      const int64_t limit = (ig.tol_ > 0 ? ig.max_points_ : ig.n_points_) * n_rules;
      for (;;) {
        // With tol > 0 a rule whose panels' errors add up to at most tol is done.
        std::vector<bool> done(rules.size(), false);
        if (ig.tol_ > 0) {
          std::vector<double> total(rules.size(), 0.0);
          for (const LobattoPanel& pan : live) total[pan.rule] += pan.error;
          bool all_done = true;
          for (size_t r = 0; r < rules.size(); ++r) {
            done[r] = total[r] + rules[r].frozen_error <= ig.tol_;
            all_done = all_done && done[r];
          }
          if (all_done) break;
        }
        std::stable_sort(live.begin(), live.end(),
                         [&](const LobattoPanel& x, const LobattoPanel& y) {
                           if (done[x.rule] != done[y.rule]) return !done[x.rule];
                           return x.need > y.need;
                         });
        // This round: the worst panels, while their need is within kRound of the worst's.
        std::vector<std::vector<double>> fresh(rules.size());
        int64_t n_fresh = 0;
        size_t chosen = 0;
        for (; chosen < live.size(); ++chosen) {
          const LobattoPanel& pan = live[chosen];
          if (done[pan.rule]) break;
          if (pan.need <= 0 || (chosen > 0 && pan.need < kRound * live[0].need)) break;
          const double c = pan.a + (pan.b - pan.a) * 0.5;
          std::vector<double> add;
          for (double x : nodes_of(pan.a, c)) add.push_back(x);
          for (double x : nodes_of(c, pan.b)) add.push_back(x);
          std::vector<double>& mine = fresh[pan.rule];
          std::vector<double> extra;
          for (double x : add) {
            if (!rules[pan.rule].nodes.count(x) &&
                std::find(mine.begin(), mine.end(), x) == mine.end() &&
                std::find(extra.begin(), extra.end(), x) == extra.end())
              extra.push_back(x);
          }
          const int64_t n_extra = static_cast<int64_t>(extra.size());
          if (used + n_fresh + n_extra > limit) break;
          // A round adds at most a quarter of the held points (one split always fits).
          if (chosen > 0 && n_fresh + n_extra > keep / 4) break;
          mine.insert(mine.end(), extra.begin(), extra.end());
          n_fresh += n_extra;
        }
        if (chosen == 0 || n_fresh == 0) break;
        // Bound the gradients held: freeze the live panels that need it least and are not split
        // now. With tol > 0 only while the rule's frozen panels' errors stay below tol / 2 (so
        // the tolerance stays reachable; beyond that more gradients are held).
        while (held() + n_fresh > keep && live.size() > chosen) {
          LobattoPanel pan = live.back();
          LobattoRule& rule = rules[pan.rule];
          if (ig.tol_ > 0 && rule.frozen_error + pan.error > 0.5 * ig.tol_) break;
          rule.frozen_error += pan.error;
          live.pop_back();
          sum_panel(pan, rule.frozen_acc, true);
          rule.frozen.push_back(pan);
        }
        for (size_t r = 0; r < rules.size(); ++r)
          if (!fresh[r].empty()) run_points({r}, fresh[r]);
        std::vector<LobattoPanel> split(live.begin(), live.begin() + chosen);
        live.erase(live.begin(), live.begin() + chosen);
        for (const LobattoPanel& pan : split) {
          const double c = pan.a + (pan.b - pan.a) * 0.5;
          open(pan.rule, pan.a, c);
          open(pan.rule, c, pan.b);
          at::Tensor none;
          sum_panel(pan, none, true);
        }
      }
      std::vector<Adaptive> out(rules.size());
      std::vector<std::vector<LobattoPanel>> all(rules.size());
      std::vector<at::Tensor> total(rules.size());
      for (size_t r = 0; r < rules.size(); ++r) {
        all[r] = rules[r].frozen;
        total[r] = rules[r].frozen_acc;
      }
      for (const LobattoPanel& pan : live) {
        sum_panel(pan, total[pan.rule], false);
        all[pan.rule].push_back(pan);
      }
      for (size_t r = 0; r < rules.size(); ++r) {
        std::sort(all[r].begin(), all[r].end(),
                  [](const LobattoPanel& x, const LobattoPanel& y) { return x.a < y.a; });
        for (size_t k = 0; k < rules[r].steps.size(); ++k)
          out[r].acc.push_back(total[r][static_cast<int64_t>(k)]);
        out[r].points = rules[r].spent;
        out[r].edges.push_back(0.0);
        for (const LobattoPanel& pan : all[r]) {
          out[r].edges.push_back(pan.b);
          out[r].error += pan.error;
        }
      }
      return out;
    }

    // --- rule=probed ----------------------------------------------------------------------------

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

  // A round of rule=adaptive splits every panel whose error is at least kRound times the worst.
  static constexpr double kRound = 0.5;
  // rule=adaptive splits by max(error, kKappa x the largest trapezoid miss in the panel).
  static constexpr double kKappa = 0.1;
  // rule=adaptive compares panels of different steps by their miss relative to
  // |f(x) - f(baseline)| + kAtol / kRtol (the shape of a tolerance kAtol + kRtol |f(x) - f(x')|,
  // as in the completeness bound 1e-4 + 1e-3 |f(x) - f(x')|).
  static constexpr double kAtol = 1e-4;
  // rule=adaptive does not split panels narrower than this (in alpha).
  static constexpr double kMinWidth = 1e-6;
  static constexpr double kRtol = 1e-3;
  // rule=adaptive starts with at least this many panels (17 points with 3-point panels).
  static constexpr int64_t kFirstPanels = 8;

  int64_t n_points_ = 0;
  int64_t layer_ = -1;  // layer_integrated_gradients: the layer whose output is attributed
  bool per_neuron_ = false;  // also the scores per unit of the layer's output (extra.neurons)
  std::string method_;
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
