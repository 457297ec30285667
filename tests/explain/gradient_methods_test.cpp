// Integrated gradients (completeness, quadrature rules, bounded chunks), SmoothGrad and VarGrad
// (seeded determinism, zero-noise limits) and their option errors, on stories260K.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <iterator>
#include <numeric>

#include "candor/error.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "explain/quadrature.h"
#include "test_util.h"

namespace candor {
namespace {

const Model& stories() { return testing::stories260k(); }

std::vector<TokenId> encode(const std::string& text) {
  return stories().tokenizer().encode(text, true, false);
}

// Greedy continuation of `ids`, `n` tokens.
std::vector<TokenId> greedy(std::vector<TokenId> ids, int n, const Model& m = stories()) {
  std::vector<TokenId> out;
  for (int i = 0; i < n; ++i) {
    TokenId t = static_cast<TokenId>(m.logits(ids)[-1].argmax().item<int64_t>());
    out.push_back(t);
    ids.push_back(t);
  }
  return out;
}

// The two most likely next tokens after `ids`.
std::pair<TokenId, TokenId> top_two(const std::vector<TokenId>& ids, const Model& m = stories()) {
  at::Tensor top = std::get<1>(m.logits(ids)[-1].topk(2));
  return {static_cast<TokenId>(top[0].item<int64_t>()),
          static_cast<TokenId>(top[1].item<int64_t>())};
}

// A model with stories260K's shape and tokenizer but random weights (std 0.02): its embeddings
// are small, so the first RMSNorm is smooth along the IG path from the zero baseline.
const Model& random_model() {
  static std::unique_ptr<Model> m =
      make_random_llama(stories().config(), 1,
                        std::shared_ptr<Tokenizer>(
                            load_tokenizer(testing::shared_path("models/stories260K/tok512.bin"))));
  return *m;
}

Attribution run(const std::string& spec, const ExplainRequest& r, const ExplainContext& c = {},
                const Model* model = nullptr) {
  return make_explainer(spec)->explain(model ? *model : stories(), r, c);
}

double sum_row(const Attribution& a, int64_t s) {
  double t = 0;
  for (int64_t f = 0; f < a.n_features(); ++f) t += a.score(s, f);
  return t;
}

double max_abs_delta(const Attribution& a) {
  double m = 0;
  for (double d : a.convergence_delta) m = std::max(m, std::abs(d));
  return m;
}

void expect_error_naming(const std::string& spec, const std::string& word) {
  try {
    make_explainer(spec);
    ADD_FAILURE() << spec << " did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << spec;
    EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << spec << ": " << e.what();
  }
}

const char* kPrompts[] = {"Once upon a time", "The little dog was happy because",
                          "Lily went to the park and saw a big"};

// ---------------------------------------------------------------------------------------------
// Quadrature
// ---------------------------------------------------------------------------------------------

TEST(Quadrature, GaussLegendreIsExactForPolynomialsBelowDegree2n) {
  for (int64_t n : {1, 2, 3, 5, 16, 64, 65}) {
    explain::Quadrature q = explain::make_quadrature("gausslegendre", n);
    ASSERT_EQ(static_cast<int64_t>(q.alphas.size()), n);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_GT(q.alphas[i], 0.0);
      EXPECT_LT(q.alphas[i], 1.0);
      EXPECT_GT(q.weights[i], 0.0);
      if (i > 0) EXPECT_GT(q.alphas[i], q.alphas[i - 1]);
    }
    for (int64_t k = 0; k < std::min<int64_t>(2 * n, 40); ++k) {
      double integral = 0;
      for (int64_t i = 0; i < n; ++i) integral += q.weights[i] * std::pow(q.alphas[i], k);
      EXPECT_NEAR(integral, 1.0 / (k + 1), 1e-13) << "n=" << n << " k=" << k;
    }
  }
}

TEST(Quadrature, GaussLobattoIncludesTheEdgesAndIsExactBelowDegree2nMinus2) {
  for (int64_t n : {2, 3, 4, 5, 6, 9}) {
    explain::Quadrature q = explain::gauss_lobatto(n);
    ASSERT_EQ(static_cast<int64_t>(q.alphas.size()), n);
    EXPECT_EQ(q.alphas.front(), 0.0);
    EXPECT_EQ(q.alphas.back(), 1.0);
    for (int64_t i = 1; i < n; ++i) EXPECT_GT(q.alphas[i], q.alphas[i - 1]);
    for (double w : q.weights) EXPECT_GT(w, 0.0);
    if (n % 2 == 1) EXPECT_EQ(q.alphas[n / 2], 0.5);  // bisection reuses the centre
    for (int64_t k = 0; k < 2 * n - 2; ++k) {
      double integral = 0;
      for (int64_t i = 0; i < n; ++i) integral += q.weights[i] * std::pow(q.alphas[i], k);
      EXPECT_NEAR(integral, 1.0 / (k + 1), 1e-13) << "n=" << n << " k=" << k;
    }
    // One degree more is not integrated exactly (for n >= 3: the rule is not Gauss-Legendre).
    double integral = 0;
    for (int64_t i = 0; i < n; ++i) integral += q.weights[i] * std::pow(q.alphas[i], 2 * n - 2);
    EXPECT_GT(std::abs(integral - 1.0 / (2 * n - 1)), 1e-12) << "n=" << n;
  }
  // Simpson's rule, and the 5-point rule's known nodes and weights.
  explain::Quadrature s = explain::gauss_lobatto(3);
  EXPECT_NEAR(s.weights[0], 1.0 / 6, 1e-15);
  EXPECT_NEAR(s.weights[1], 4.0 / 6, 1e-15);
  explain::Quadrature l5 = explain::gauss_lobatto(5);
  EXPECT_NEAR(l5.alphas[1], (1 - std::sqrt(3.0 / 7)) / 2, 1e-15);
  EXPECT_NEAR(l5.weights[1], 49.0 / 180, 1e-15);
  EXPECT_NEAR(l5.weights[2], 32.0 / 90, 1e-15);
}

// A logistic step of scale 0.004 at 0.6: equidistributed panels crowd around it, and composite
// Gauss-Legendre on them integrates its derivative far better than one 64-point rule.
TEST(Quadrature, EquidistributedPanelsResolveAJump) {
  const double c = 0.6, sc = 0.004;
  auto f = [&](double x) { return 1.0 / (1.0 + std::exp(-(x - c) / sc)); };
  auto df = [&](double x) { return f(x) * (1.0 - f(x)) / sc; };
  const double exact = f(1.0) - f(0.0);
  std::vector<double> alphas, values;
  for (int i = 0; i <= 32; ++i) {
    alphas.push_back(i / 32.0);
    values.push_back(f(i / 32.0));
  }
  std::vector<double> edges = explain::equidistributed_edges(16, alphas, values);
  ASSERT_EQ(edges.size(), 17u);
  EXPECT_EQ(edges.front(), 0.0);
  EXPECT_EQ(edges.back(), 1.0);
  EXPECT_TRUE(std::is_sorted(edges.begin(), edges.end()));
  int near = 0;  // edges within one sample cell of the jump
  for (double e : edges) near += std::abs(e - c) < 1.0 / 32;
  EXPECT_GE(near, 6);
  auto g4 = explain::make_quadrature("gausslegendre", 4);
  double composite = 0;
  for (size_t k = 0; k + 1 < edges.size(); ++k) {
    for (size_t j = 0; j < 4; ++j) {
      const double h = edges[k + 1] - edges[k];
      composite += h * g4.weights[j] * df(edges[k] + h * g4.alphas[j]);
    }
  }
  auto plain = explain::make_quadrature("gausslegendre", 64);
  double one = 0;
  for (size_t i = 0; i < plain.alphas.size(); ++i) one += plain.weights[i] * df(plain.alphas[i]);
  EXPECT_GT(std::abs(one - exact), 1e-3);
  EXPECT_LT(std::abs(composite - exact), 1e-2 * std::abs(one - exact));
  std::cout << "[ figures  ] logistic jump, 64 points: one rule error " << std::abs(one - exact)
            << ", 16 equidistributed panels x 4 error " << std::abs(composite - exact) << "\n";
  // A flat f gives equal panels.
  std::vector<double> flat(alphas.size(), 2.0);
  std::vector<double> even = explain::equidistributed_edges(4, alphas, flat);
  for (int k = 0; k <= 4; ++k) EXPECT_NEAR(even[k], k / 4.0, 1e-12);
}

TEST(Quadrature, RiemannRules) {
  auto q = explain::make_quadrature("riemann_trapezoid", 5);
  EXPECT_EQ(q.alphas, (std::vector<double>{0, 0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(q.weights, (std::vector<double>{0.125, 0.25, 0.25, 0.25, 0.125}));
  EXPECT_EQ(explain::make_quadrature("riemann_left", 4).alphas,
            (std::vector<double>{0, 0.25, 0.5, 0.75}));
  EXPECT_EQ(explain::make_quadrature("riemann_right", 4).alphas,
            (std::vector<double>{0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(explain::make_quadrature("riemann_middle", 2).alphas,
            (std::vector<double>{0.25, 0.75}));
}

// ---------------------------------------------------------------------------------------------
// Integrated gradients
// ---------------------------------------------------------------------------------------------

// |sum of scores - (f(x) - f(baseline))| <= 1e-3 |f(x) - f(baseline)| + 1e-4 at every step.
// Returns the largest |delta| / |f(x) - f(baseline)|.
double expect_complete(const Attribution& a, const std::string& what, bool check = true) {
  double worst = 0;
  EXPECT_EQ(a.convergence_delta.size(), static_cast<size_t>(a.n_steps()));
  for (int64_t s = 0; s < a.n_steps(); ++s) {
    const double gap = a.target_values[s] - a.baseline_values[s];
    const double delta = sum_row(a, s) - gap;
    EXPECT_NEAR(a.convergence_delta[s], delta, 1e-9);
    if (check) {
      EXPECT_LE(std::abs(delta), 1e-3 * std::abs(gap) + 1e-4)
          << what << " step " << s << ": sum " << sum_row(a, s) << " vs f(x) - f(b) = " << gap;
    }
    worst = std::max(worst, std::abs(delta) / std::max(std::abs(gap), 1e-12));
  }
  return worst;
}

// Next token, a generated span (every step) and a contrast, for each prompt; returns the worst
// relative completeness error.
double completeness(const std::string& spec, const Model& m, Baseline::Kind baseline, bool check) {
  double worst = 0;
  for (const char* text : kPrompts) {
    ExplainRequest r;
    r.input_ids = m.tokenizer().encode(text, true, false);
    r.baseline.kind = baseline;
    worst = std::max(worst,
                     expect_complete(run(spec, r, {}, &m), std::string(text) + " (next)", check));

    ExplainRequest span = r;
    span.target.span = greedy(r.input_ids, 4, m);
    Attribution a = run(spec, span, {}, &m);
    EXPECT_EQ(a.n_steps(), 4);
    worst = std::max(worst, expect_complete(a, std::string(text) + " (span)", check));

    ExplainRequest contrast = r;
    contrast.target.function = TargetFunction::kContrast;
    std::tie(contrast.target.token, contrast.target.contrast_token) = top_two(r.input_ids, m);
    worst = std::max(worst, expect_complete(run(spec, contrast, {}, &m),
                                            std::string(text) + " (contrast)", check));
  }
  return worst;
}

// Where the integrand is smooth, 64 Gauss-Legendre points reach float32 precision.
TEST(IntegratedGradients, CompletenessWithGaussLegendre64) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  for (auto baseline : {Baseline::Kind::kZero, Baseline::Kind::kUnk}) {
    double worst = completeness("integrated_gradients", random_model(), baseline, true);
    std::cout << "[ figures  ] random 260K-shaped model, baseline "
              << (baseline == Baseline::Kind::kZero ? "zero" : "unk")
              << ", gausslegendre n_steps=64: max |delta| / |f(x) - f(b)| = " << worst << "\n";
  }
}

// On trained stories260K the target bends sharply along the path from the unk baseline (the
// slope of a step can swing by ~80 per unit alpha within ~0.005, at different places for every
// step of a span), so one plain 64-point Gauss-Legendre rule misses by up to 8e-3 relative on
// these prompts. The default adaptive rule (bisected 3-point Gauss-Lobatto panels, at most 64
// gradient points per step) meets the 1e-3 bound on them.
TEST(IntegratedGradients, CompletenessOnStories260K) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  double unk64 = completeness("integrated_gradients", stories(), Baseline::Kind::kUnk, true);
  double plain64 =
      completeness("integrated_gradients:rule=plain", stories(), Baseline::Kind::kUnk, false);
  double zero64 = completeness("integrated_gradients", stories(), Baseline::Kind::kZero, false);
  std::cout << "[ figures  ] stories260K max |delta| / |f(x) - f(b)|, n_steps=64: unk baseline "
            << unk64 << " (plain Gauss-Legendre: " << plain64 << "), zero baseline " << zero64
            << "\n";
  EXPECT_LT(unk64, plain64);
  // The zero baseline converges with more points (one prompt, to keep the test short).
  ExplainRequest r;
  r.input_ids = encode(kPrompts[0]);
  r.target.span = greedy(r.input_ids, 4);
  double zero1024 =
      expect_complete(run("integrated_gradients:n_steps=1024,internal_batch_size=128", r),
                      "zero baseline, 1024 points", true);
  std::cout << "[ figures  ] stories260K zero baseline, n_steps=1024, '" << kPrompts[0]
            << "' + 4-token span: " << zero1024 << "\n";
}

// The bound on a broader set: longer prompts with 4-6-token spans, next-token and contrast
// targets, among them the prompts where the rule before (33 probe passes placing Gauss-Legendre
// panels) missed it (up to 1.6e-2). One prompt of bench_ig_completeness's main set is still
// out of reach at 64 points per step ('Anna liked to draw pictures of' + its 5-token span:
// 1.17e-3 relative at its 4th step, 2.1e-3 before the rules of a span shared their budget): its
// figure is printed and bounded loosely. With a tolerance the panels are split until their own
// checks, which bound the completeness error, pass.
TEST(IntegratedGradients, CompletenessOnMorePrompts) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  struct Case {
    const char* text;
    int span;  // 0: the next token; -1: a contrast of the two most likely next tokens
  };
  const Case cases[] = {{"Tom had a red ball. He liked to throw it to his friend", 6},
                        {"The sun was hot, so the children went to the", 6},
                        {"She was sad because her toy was broken. Her mom said", 6},
                        {"Max and Mia played with the blocks. Then", 6},
                        {"One day, a cat and a bird", 5},
                        {"Mom made a big cake for", 6},
                        {"Mom made a big cake for", -1},
                        {"The cat was hungry, so it", -1},
                        {"The teddy bear was soft and", 6},
                        {"The bird flew high in the sky and", 0}};
  auto request = [&](const char* text, int span) {
    ExplainRequest r;
    r.input_ids = encode(text);
    r.baseline.kind = Baseline::Kind::kUnk;
    if (span > 0) r.target.span = greedy(r.input_ids, span);
    if (span < 0) {
      r.target.function = TargetFunction::kContrast;
      std::tie(r.target.token, r.target.contrast_token) = top_two(r.input_ids);
    }
    return r;
  };
  double worst64 = 0, plain64 = 0;
  int64_t steps = 0, points = 0;
  for (const Case& c : cases) {
    ExplainRequest r = request(c.text, c.span);
    Attribution a = run("integrated_gradients", r);
    worst64 = std::max(worst64, expect_complete(a, c.text, true));
    steps += a.n_steps();
    for (int64_t p : a.extra["rule_points"].get<std::vector<int64_t>>()) points += p;
    EXPECT_LE(a.extra["gradient_points"].get<int64_t>(), 64 * a.n_steps());
    plain64 = std::max(plain64,
                       expect_complete(run("integrated_gradients:rule=plain", r), c.text, false));
  }
  Attribution anna = run("integrated_gradients", request("Anna liked to draw pictures of", 5));
  const double out_of_reach = expect_complete(anna, "Anna", false);
  std::cout << "[ figures  ] stories260K, " << std::size(cases) << " more targets (" << steps
            << " steps), max relative |delta| at n_steps=64: " << worst64 << " ("
            << static_cast<double>(points) / static_cast<double>(steps)
            << " gradient points per step; plain Gauss-Legendre " << plain64
            << "); out of reach: 'Anna liked to draw pictures of' + 5 tokens " << out_of_reach
            << "\n";
  EXPECT_LT(out_of_reach, 2e-3);
  EXPECT_LT(worst64, plain64);
  // The span's five rules share 5 x 64 points; its hardest steps get more than 64.
  const auto anna_points = anna.extra["rule_points"].get<std::vector<int64_t>>();
  ASSERT_EQ(anna_points.size(), 5u);
  int64_t anna_total = 0;
  for (int64_t p : anna_points) anna_total += p;
  EXPECT_LE(anna_total, 5 * 64);
  EXPECT_GT(*std::max_element(anna_points.begin(), anna_points.end()), 64);

  double worst_tol = 0;
  int64_t most_points = 0;
  for (const char* text : {"Anna liked to draw pictures of"}) {
    ExplainRequest r = request(text, 5);
    Attribution a =
        run("integrated_gradients:tol=1e-4,per_panel=4,max_steps=1024,internal_batch_size=32", r);
    worst_tol = std::max(worst_tol, expect_complete(a, text, true));
    for (int64_t p : a.extra["rule_points"].get<std::vector<int64_t>>())
      most_points = std::max(most_points, p);
    for (double e : a.extra["panel_error"]) EXPECT_LE(e, 1e-4) << text;
  }
  std::cout << "[ figures  ] tol=1e-4: max relative |delta| " << worst_tol << " with at most "
            << most_points << " points per step\n";
  EXPECT_LT(worst_tol, 1e-4 + 1e-5);
}

TEST(IntegratedGradients, RiemannRulesConvergeToGaussLegendre) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& m = random_model();
  ExplainRequest r;
  r.input_ids = m.tokenizer().encode(kPrompts[1], true, false);
  r.target.span = greedy(r.input_ids, 2, m);
  Attribution ref = run("integrated_gradients:n_steps=64", r, {}, &m);
  double ref_norm = 0;
  for (double v : ref.scores) ref_norm += v * v;
  ref_norm = std::sqrt(ref_norm);
  auto distance = [&](const Attribution& a) {
    double d = 0;
    for (size_t i = 0; i < a.scores.size(); ++i) d += std::pow(a.scores[i] - ref.scores[i], 2);
    return std::sqrt(d);
  };
  const double floor = 1e-5 * ref_norm;  // float32 noise: no further progress to see
  for (std::string rule :
       {"riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"}) {
    double prev_delta = INFINITY, prev_dist = INFINITY;
    for (int n : {4, 16, 64, 256}) {
      Attribution a = run("integrated_gradients:method=" + rule + ",n_steps=" + std::to_string(n) +
                              ",internal_batch_size=64",
                          r, {}, &m);
      const double delta = max_abs_delta(a), dist = distance(a);
      std::cout << "[ figures  ] " << rule << " n_steps=" << n << ": max |delta| " << delta
                << ", distance to gausslegendre " << dist << " (|gl| " << ref_norm << ")\n";
      if (prev_dist > floor) EXPECT_LT(dist, prev_dist) << rule << " n_steps=" << n;
      // The delta of 4 points can be small by luck (trapezoid); from 16 on it must shrink.
      if (n >= 64 && prev_delta > 1e-5) EXPECT_LT(delta, prev_delta) << rule << " n_steps=" << n;
      prev_delta = delta;
      prev_dist = dist;
    }
    EXPECT_LT(prev_dist, 1e-2 * ref_norm) << rule;
  }
}

TEST(IntegratedGradients, ChunksBoundTheBatchAndDoNotChangeTheResult) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = encode(kPrompts[0]);
  r.target.span = greedy(r.input_ids, 2);
  int calls = 0;
  ExplainContext counting{[&](double) {
    ++calls;
    return true;
  }};
  // Plain Gauss-Legendre: 512 points in chunks of 8, each one forward plus a backward (two
  // forwards) per step.
  Attribution big =
      run("integrated_gradients:n_steps=512,internal_batch_size=8,probes=0", r, counting);
  EXPECT_EQ(big.extra["max_batch"], 8);
  EXPECT_EQ(big.extra["n_chunks"], 64);
  EXPECT_EQ(calls, 64);
  EXPECT_DOUBLE_EQ(big.forward_passes, 512.0 * (1 + 2 * 2));
  // The default adaptive rule: a rule per step, the two drawing on one budget of 2 x n_steps
  // gradient points (3-point panels: 2 per split), chunks of 8. The first 17 points (8 equal
  // panels) are the same for both rules and are evaluated once, with a backward per step.
  Attribution adaptive = run("integrated_gradients:n_steps=64,internal_batch_size=8", r);
  EXPECT_EQ(adaptive.extra["max_batch"], 8);
  EXPECT_EQ(adaptive.extra["panels"].size(), 2u);
  EXPECT_EQ(adaptive.extra["rule"], "adaptive");
  const auto rule_points = adaptive.extra["rule_points"].get<std::vector<int64_t>>();
  ASSERT_EQ(rule_points.size(), 2u);
  EXPECT_GE(rule_points[0], 17);
  EXPECT_GE(rule_points[1], 17);
  EXPECT_GE(rule_points[0] + rule_points[1], 2 * 64 - 2);  // the budget is spent
  EXPECT_LE(rule_points[0] + rule_points[1], 2 * 64);
  EXPECT_EQ(adaptive.extra["gradient_points"], rule_points[0] + rule_points[1] - 17);

  Attribution one = run("integrated_gradients:n_steps=20,internal_batch_size=1", r);
  Attribution all = run("integrated_gradients:n_steps=20,internal_batch_size=64", r);
  const auto points_of = [](const Attribution& a) {
    const auto p = a.extra["rule_points"].get<std::vector<int64_t>>();
    return p[0] + p[1] - 17;  // path points: the first 17 serve both rules
  };
  EXPECT_EQ(one.extra["max_batch"], 1);
  EXPECT_EQ(one.extra["gradient_points"], points_of(one));
  EXPECT_EQ(one.extra["n_chunks"], points_of(one));
  EXPECT_EQ(all.extra["max_batch"], 17);  // the first 8 panels of 3 points, then a split
  EXPECT_EQ(all.extra["gradient_points"], points_of(all));
  EXPECT_EQ(points_of(one), points_of(all));
  ASSERT_EQ(one.scores.size(), all.scores.size());
  for (size_t i = 0; i < one.scores.size(); ++i) {
    EXPECT_NEAR(one.scores[i], all.scores[i], 1e-4 + 1e-4 * std::abs(all.scores[i]));
  }
}

// The adaptive rule holds at most max(64, 4 internal_batch_size) points' gradients; with more
// points the panels that need it least are frozen, and the result stays complete.
TEST(IntegratedGradients, AdaptiveRuleHoldsABoundedNumberOfGradients) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = encode(kPrompts[2]);
  Attribution small = run("integrated_gradients:n_steps=300,internal_batch_size=4", r);
  Attribution large = run("integrated_gradients:n_steps=300,internal_batch_size=100", r);
  EXPECT_LE(small.extra["max_held_points"], 64);
  EXPECT_GE(small.extra["max_held_points"], 60);
  EXPECT_GT(large.extra["max_held_points"], 64);
  EXPECT_LE(large.extra["max_held_points"], 299);
  for (const Attribution* a : {&small, &large}) {
    EXPECT_EQ((*a).extra["gradient_points"], 299);
    expect_complete(*a, "300 points", true);
  }
}

TEST(IntegratedGradients, CancelsFromProgress) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = encode(kPrompts[0]);
  ExplainContext stop{[](double f) { return f < 0.5; }};
  try {
    run("integrated_gradients:n_steps=64,internal_batch_size=8", r, stop);
    ADD_FAILURE() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
}

// ---------------------------------------------------------------------------------------------
// SmoothGrad and VarGrad
// ---------------------------------------------------------------------------------------------

TEST(SmoothGrad, DeterministicUnderASeedAndIndependentOfBatching) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = encode(kPrompts[2]);
  for (std::string method : {"smoothgrad", "vargrad"}) {
    Attribution a = run(method + ":n_samples=8,seed=3", r);
    Attribution b = run(method + ":n_samples=8,seed=3", r);
    Attribution c = run(method + ":n_samples=8,seed=4", r);
    Attribution d = run(method + ":n_samples=8,seed=3,internal_batch_size=3", r);
    EXPECT_EQ(a.scores, b.scores) << method;
    EXPECT_NE(a.scores, c.scores) << method;
    ASSERT_EQ(a.scores.size(), d.scores.size());
    for (size_t i = 0; i < a.scores.size(); ++i) {
      EXPECT_NEAR(a.scores[i], d.scores[i], 1e-6 + 1e-4 * std::abs(a.scores[i])) << method;
    }
    EXPECT_EQ(a.extra["max_batch"], 8);
    EXPECT_EQ(d.extra["max_batch"], 3);
    EXPECT_GT(a.extra["noise_std"].get<double>(), 0.0);
    for (double v : a.scores) EXPECT_GE(v, 0.0) << method;  // norms and variances
  }
}

TEST(SmoothGrad, ZeroNoiseGivesTheBaseMethod) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = encode(kPrompts[1]);
  r.target.span = greedy(r.input_ids, 3);
  for (std::string base : {"saliency", "input_x_gradient"}) {
    Attribution ref = run(base, r);
    Attribution sg = run("smoothgrad:stdev=0,n_samples=4,base=" + base, r);
    Attribution vg = run("vargrad:stdev=0,n_samples=4,base=" + base, r);
    ASSERT_EQ(ref.scores.size(), sg.scores.size());
    for (size_t i = 0; i < ref.scores.size(); ++i) {
      EXPECT_NEAR(sg.scores[i], ref.scores[i], 1e-6 + 1e-4 * std::abs(ref.scores[i])) << base;
      // Zero up to the float rounding by which the rows of one batch differ.
      EXPECT_LE(vg.scores[i], 1e-9 * (1 + ref.scores[i] * ref.scores[i])) << base;
    }
    EXPECT_EQ(sg.extra["noise_std"].get<double>(), 0.0);
  }
}

TEST(SmoothGrad, NoiseGrowsTheVariance) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = encode(kPrompts[0]);
  auto total = [](const Attribution& a) {
    return std::accumulate(a.scores.begin(), a.scores.end(), 0.0);
  };
  double small = total(run("vargrad:n_samples=16,stdev=0.05", r));
  double large = total(run("vargrad:n_samples=16,stdev=0.5", r));
  EXPECT_GT(small, 0.0);
  EXPECT_GT(large, small);
}

// ---------------------------------------------------------------------------------------------
// Option errors
// ---------------------------------------------------------------------------------------------

TEST(GradientMethods, BadOptionsNameTheOption) {
  expect_error_naming("integrated_gradients:n_steps=0", "n_steps");
  expect_error_naming("integrated_gradients:n_steps=many", "n_steps");
  expect_error_naming("integrated_gradients:method=simpson", "method");
  expect_error_naming("integrated_gradients:rule=fancy", "rule");
  expect_error_naming("integrated_gradients:per_panel=0", "per_panel");
  expect_error_naming("integrated_gradients:method=riemann_trapezoid,n_steps=1", "n_steps");
  expect_error_naming("integrated_gradients:internal_batch_size=0", "internal_batch_size");
  expect_error_naming("integrated_gradients:steps=3", "steps");
  for (std::string m : {"smoothgrad", "vargrad"}) {
    expect_error_naming(m + ":n_samples=0", "n_samples");
    expect_error_naming(m + ":stdev=-0.1", "stdev");
    expect_error_naming(m + ":stdev=x", "stdev");
    expect_error_naming(m + ":base=gradient", "base");
    expect_error_naming(m + ":seed=-1", "seed");
    expect_error_naming(m + ":internal_batch_size=0", "internal_batch_size");
  }
}

TEST(GradientMethods, Registered) {
  std::vector<std::string> names;
  for (const auto& e : list_explainers()) names.push_back(e.name);
  for (const char* n : {"integrated_gradients", "smoothgrad", "vargrad"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  auto ig = make_explainer("integrated_gradients");
  EXPECT_EQ(ig->options().at("n_steps"), "64");
  EXPECT_EQ(ig->options().at("method"), "gausslegendre");
  EXPECT_EQ(ig->options().at("internal_batch_size"), "16");
  auto sg = make_explainer("smoothgrad");
  EXPECT_EQ(sg->options().at("n_samples"), "32");
  EXPECT_EQ(sg->options().at("stdev"), "0.1");
}

}  // namespace
}  // namespace candor
