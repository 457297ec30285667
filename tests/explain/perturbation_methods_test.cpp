// Perturbation methods (shapley_sampling, kernel_shap, lime, exact_shapley) on stories260K:
// exact Shapley against an independent brute force over plain forwards, the mask scorer's
// KV-cache shortcut against plain forwards, convergence of the samplers, efficiency, LIME's
// ordering, determinism, errors, and the cost of prefix reuse in forward-pass equivalents.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "candor/error.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "explain/common.h"
#include "test_util.h"

namespace candor {
namespace {

#define REQUIRE_STORIES() CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin")

const Model& stories() { return testing::stories260k(); }

const char* kText =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun "
    "with her dog and her big red ball.";

// BOS and the first `n_features` tokens of the text: `n_features` token features.
std::vector<TokenId> prompt(int64_t n_features) {
  std::vector<TokenId> ids = stories().tokenizer().encode(kText, true, false);
  EXPECT_GT(static_cast<int64_t>(ids.size()), n_features);
  ids.resize(n_features + 1);
  return ids;
}

ExplainRequest request(int64_t n_features) {
  ExplainRequest r;
  r.input_ids = prompt(n_features);
  return r;
}

// A span target: the input has `n_input_features` features, the span `span_len` tokens (its
// first span_len - 1 tokens are features too).
ExplainRequest span_request(int64_t n_input_features, int64_t span_len) {
  std::vector<TokenId> all = prompt(n_input_features + span_len);
  ExplainRequest r;
  r.input_ids.assign(all.begin(), all.begin() + n_input_features + 1);
  r.target.span.assign(all.begin() + n_input_features + 1, all.end());
  return r;
}

Attribution run(const std::string& spec, const ExplainRequest& r, const ExplainContext& c = {}) {
  return make_explainer(spec)->explain(stories(), r, c);
}

// ---------------------------------------------------------------------------------------------
// An independent value function: plain forwards over embeddings built by hand (no mask scorer,
// no KV cache). keep: [n_masks][n_features]; returns [n_masks][n_steps].
// ---------------------------------------------------------------------------------------------

struct Game {
  std::vector<TokenId> tokens;  // the sequence seen (Attribution::tokens)
  std::vector<Feature> features;
  std::vector<int64_t> step_positions;
  std::vector<TokenId> step_tokens;
  at::Tensor baseline;  // [dim]
};

Game game_of(const Attribution& a, const Baseline& b) {
  Game g{a.tokens, a.features, a.step_positions, a.step_tokens, {}};
  const int64_t dim = stories().config().dim;
  if (b.kind == Baseline::Kind::kZero) {
    g.baseline = at::zeros({dim}, at::kFloat);
  } else {
    // unk and pad are the unknown token (id 0) for this vocabulary.
    TokenId t = b.kind == Baseline::Kind::kToken ? b.token : stories().tokenizer().unk_id();
    g.baseline = stories().embed(at::full({1, 1}, static_cast<int64_t>(t), at::kLong))[0][0];
  }
  return g;
}

std::vector<std::vector<double>> plain_values(const Game& g,
                                              const std::vector<std::vector<int>>& keep) {
  at::NoGradGuard ng;
  const int64_t T = static_cast<int64_t>(g.tokens.size());
  at::Tensor ids =
      at::tensor(std::vector<int64_t>(g.tokens.begin(), g.tokens.end()), at::kLong).view({1, T});
  at::Tensor emb = stories().embed(ids);  // [1, T, D]
  std::vector<std::vector<double>> out;
  const size_t chunk = 64;
  for (size_t c0 = 0; c0 < keep.size(); c0 += chunk) {
    std::vector<at::Tensor> rows;
    for (size_t r = c0; r < std::min(keep.size(), c0 + chunk); ++r) {
      at::Tensor e = emb.clone();  // [1, T, D]
      for (size_t f = 0; f < g.features.size(); ++f) {
        if (keep[r][f]) continue;
        for (int64_t t = g.features[f].begin; t < g.features[f].end; ++t) e[0][t].copy_(g.baseline);
      }
      rows.push_back(e);
    }
    ForwardArgs a;
    a.embeddings = at::cat(rows, 0);                              // [B, T, D]
    at::Tensor logp = at::log_softmax(stories().forward(a), -1);  // [B, T, V]
    for (int64_t b = 0; b < logp.size(0); ++b) {
      std::vector<double> v;
      for (size_t s = 0; s < g.step_positions.size(); ++s)
        v.push_back(logp[b][g.step_positions[s]][g.step_tokens[s]].item<double>());
      out.push_back(v);
    }
  }
  return out;
}

// Exact Shapley values [n_steps][n_features] by enumerating every coalition:
// phi_f = 1/n sum_k 1/C(n-1, k) sum_{|S| = k, f not in S} (v(S + f) - v(S)).
std::vector<std::vector<double>> brute_force_shapley(const Game& g) {
  const int n = static_cast<int>(g.features.size());
  std::vector<std::vector<int>> keep(size_t{1} << n, std::vector<int>(n));
  for (size_t m = 0; m < keep.size(); ++m)
    for (int f = 0; f < n; ++f) keep[m][f] = (m >> f) & 1;
  std::vector<std::vector<double>> v = plain_values(g, keep);
  auto choose = [](int a, int b) {
    double c = 1;
    for (int i = 1; i <= b; ++i) c = c * (a - b + i) / i;
    return c;
  };
  std::vector<std::vector<double>> phi(g.step_positions.size(), std::vector<double>(n, 0.0));
  for (size_t s = 0; s < g.step_positions.size(); ++s) {
    for (int f = 0; f < n; ++f) {
      for (size_t m = 0; m < keep.size(); ++m) {
        if ((m >> f) & 1) continue;
        const int k = __builtin_popcount(static_cast<unsigned>(m));
        phi[s][f] += (v[m | (size_t{1} << f)][s] - v[m][s]) / choose(n - 1, k) / n;
      }
    }
  }
  return phi;
}

std::vector<double> row(const Attribution& a, int64_t step) {
  return std::vector<double>(a.scores.begin() + step * a.n_features(),
                             a.scores.begin() + (step + 1) * a.n_features());
}

double norm(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

// L2 norm of a - b over the L2 norm of b.
double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return norm(d) / norm(b);
}

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i] / n, mb += b[i] / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

double range_of(const std::vector<double>& x) {
  return *std::max_element(x.begin(), x.end()) - *std::min_element(x.begin(), x.end());
}

// ---------------------------------------------------------------------------------------------

TEST(PerturbationMethods, RegistryListsThemWithDefaults) {
  std::map<std::string, std::map<std::string, std::string>> want = {
      {"shapley_sampling",
       {{"n_permutations", "25"},
        {"antithetic", "true"},
        {"seed", "0"},
        {"internal_batch_size", "32"}}},
      {"kernel_shap",
       {{"n_samples", "512"}, {"seed", "0"}, {"internal_batch_size", "32"}, {"paired", "true"}}},
      {"lime",
       {{"n_samples", "512"},
        {"kernel_width", "0.25"},
        {"seed", "0"},
        {"alpha", "0.01"},
        {"internal_batch_size", "32"}}},
      {"exact_shapley", {{"max_features", "12"}, {"internal_batch_size", "64"}}},
  };
  for (const auto& [name, defaults] : want) {
    bool found = false;
    for (const ExplainerInfo& info : list_explainers()) {
      if (info.name != name) continue;
      found = true;
      EXPECT_EQ(info.defaults, defaults) << name;
      EXPECT_FALSE(info.description.empty());
    }
    EXPECT_TRUE(found) << name;
    EXPECT_EQ(make_explainer(name)->options(), defaults);
    EXPECT_EQ(make_explainer(name)->name(), name);
  }
}

TEST(PerturbationMethods, ExactShapleyMatchesBruteForceOverPlainForwards) {
  REQUIRE_STORIES();
  // A next-token target on 10 features with the zero baseline.
  {
    ExplainRequest r = request(10);
    Attribution a = run("exact_shapley", r);
    ASSERT_EQ(a.n_features(), 10);
    std::vector<double> want = brute_force_shapley(game_of(a, r.baseline))[0];
    std::vector<double> got = row(a, 0);
    const double tol = 1e-5 * std::max(1.0, range_of(want));
    for (int f = 0; f < 10; ++f) EXPECT_NEAR(got[f], want[f], tol) << "feature " << f;
    EXPECT_GT(range_of(want), 0.1);  // not a trivial game
  }
  // A span target (3 steps) on 5 + 2 features with a token baseline: each step has its own game
  // and features after a step's position score 0 there.
  {
    ExplainRequest r = span_request(5, 3);
    r.baseline.kind = Baseline::Kind::kToken;
    r.baseline.token = stories().tokenizer().encode(" the", false, false).back();
    Attribution a = run("exact_shapley", r);
    ASSERT_EQ(a.n_features(), 7);
    ASSERT_EQ(a.n_steps(), 3);
    std::vector<std::vector<double>> want = brute_force_shapley(game_of(a, r.baseline));
    for (int64_t s = 0; s < 3; ++s) {
      const double tol = 1e-5 * std::max(1.0, range_of(want[s]));
      for (int64_t f = 0; f < 7; ++f) {
        EXPECT_NEAR(a.score(s, f), want[s][f], tol) << "step " << s << " feature " << f;
        if (a.features[f].begin > a.step_positions[s]) EXPECT_EQ(a.score(s, f), 0.0);
      }
    }
  }
}

TEST(PerturbationMethods, MaskScorerReuseMatchesPlainForwards) {
  REQUIRE_STORIES();
  for (bool span : {false, true}) {
    ExplainRequest r = span ? span_request(8, 4) : request(12);
    explain::Problem p = explain::prepare(stories(), r);
    const int64_t F = p.n_features(), S = p.n_steps(), T = p.length();
    // Random masks, plus all kept, all removed and each single removal.
    std::mt19937 gen(3);
    std::vector<std::vector<int>> keep;
    keep.push_back(std::vector<int>(F, 1));
    keep.push_back(std::vector<int>(F, 0));
    for (int64_t f = 0; f < F; ++f) {
      keep.push_back(std::vector<int>(F, 1));
      keep.back()[f] = 0;
    }
    for (int i = 0; i < 40; ++i) {
      std::vector<int> k(F);
      for (auto& x : k) x = static_cast<int>(gen() % 2);
      keep.push_back(k);
    }
    at::Tensor keep_t = at::zeros({static_cast<int64_t>(keep.size()), F}, at::kFloat);
    for (size_t i = 0; i < keep.size(); ++i)
      for (int64_t f = 0; f < F; ++f) keep_t[i][f] = static_cast<float>(keep[i][f]);
    explain::MaskScorer scorer(p, 5);       // small chunks: many different reuse points
    at::Tensor got = scorer.score(keep_t);  // [N, S]
    explain::MaskScorer single(p, 1);       // one row per forward
    EXPECT_LT((single.score(keep_t) - got).abs().max().item<double>(), 1e-4);
    // The baseline vector the request asked for (the default unk token's embedding).
    Game g{p.tokens, p.features, p.step_positions, p.step_tokens,
           p.baseline_embeddings[0][p.features[0].begin].clone()};
    std::vector<std::vector<double>> want = plain_values(g, keep);
    double worst = 0;
    for (size_t i = 0; i < keep.size(); ++i)
      for (int64_t s = 0; s < S; ++s)
        worst = std::max(worst, std::abs(got[i][s].item<double>() - want[i][s]));
    EXPECT_LT(worst, 1e-4) << (span ? "span" : "next token");
    // full_values and empty_values are the all-kept and all-removed rows.
    for (int64_t s = 0; s < S; ++s) {
      EXPECT_NEAR(scorer.full_values()[s].item<double>(), want[0][s], 1e-4);
      EXPECT_NEAR(scorer.empty_values()[s].item<double>(), want[1][s], 1e-4);
    }
    // The shortcut runs fewer positions than one full forward per mask.
    const int64_t n = static_cast<int64_t>(keep.size());
    EXPECT_LT(scorer.positions_run(), (n + 1) * T);
    std::printf(
        "[ cost     ] mask scorer (%s, %lld masks, T=%lld, %lld steps): %lld positions run "
        "vs %lld for plain forwards\n",
        span ? "span" : "next token", static_cast<long long>(n), static_cast<long long>(T),
        static_cast<long long>(S), static_cast<long long>(scorer.positions_run()),
        static_cast<long long>(n * T));
  }
}

// Regression: a one-row chunk (empty_values() is one) used to share the unperturbed KV cache
// instead of copying it (KVCache::expand(1)), so later chunks continued a corrupted prefix.
TEST(PerturbationMethods, MaskScorerOneRowChunksLeaveTheCacheIntact) {
  REQUIRE_STORIES();
  explain::Problem p = explain::prepare(stories(), span_request(6, 3));
  const int64_t F = p.n_features();
  at::Tensor keep = at::ones({F, F}, at::kFloat) - at::eye(F, at::kFloat).flip(0);  // [F, F]
  explain::MaskScorer scorer(p, 4);
  at::Tensor before = scorer.score(keep);
  at::Tensor empty = scorer.empty_values();
  for (int64_t r = 0; r < F; ++r) scorer.score(keep.narrow(0, r, 1));  // one row each
  at::Tensor after = scorer.score(keep);
  EXPECT_TRUE(at::equal(before, after)) << (before - after).abs().max().item<double>();
  EXPECT_TRUE(at::equal(empty, scorer.empty_values()));
}

TEST(PerturbationMethods, KernelShapEnumeratesSmallProblemsExactly) {
  REQUIRE_STORIES();
  ExplainRequest r = request(8);  // 2^8 - 2 = 254 <= 512 coalitions: all enumerated
  Attribution exact = run("exact_shapley", r);
  Attribution ks = run("kernel_shap", r);
  EXPECT_TRUE(ks.extra.value("enumerated", false));
  EXPECT_EQ(ks.extra.value("coalitions", 0), 254);
  const double tol = 1e-5 * std::max(1.0, range_of(exact.scores));
  for (int64_t f = 0; f < 8; ++f) EXPECT_NEAR(ks.score(0, f), exact.score(0, f), tol) << f;
  // Also per step of a span (the regression is restricted to each step's visible features).
  ExplainRequest sr = span_request(4, 3);
  Attribution se = run("exact_shapley", sr), sk = run("kernel_shap", sr);
  ASSERT_EQ(se.scores.size(), sk.scores.size());
  for (size_t i = 0; i < se.scores.size(); ++i) EXPECT_NEAR(sk.scores[i], se.scores[i], 1e-5) << i;
}

TEST(PerturbationMethods, SamplersApproachExactShapley) {
  REQUIRE_STORIES();
  ExplainRequest r = request(12);  // 2^12 - 2 = 4094 coalitions: KernelSHAP below that samples
  const std::vector<double> exact = run("exact_shapley", r).scores;
  // Mean relative error over two seeds.
  auto err = [&](const std::string& spec) {
    double total = 0;
    for (int seed : {0, 1}) {
      Attribution a = run(spec + ",seed=" + std::to_string(seed), r);
      if (a.method == "kernel_shap") EXPECT_FALSE(a.extra.value("enumerated", true)) << spec;
      total += relative_error(a.scores, exact);
    }
    return total / 2;
  };
  std::vector<double> ks, ss;
  for (int n : {64, 256, 2000}) {
    ks.push_back(err("kernel_shap:n_samples=" + std::to_string(n)));
    std::printf("[ accuracy ] kernel_shap n_samples=%d on 12 features: relative L2 error %.4f\n", n,
                ks.back());
  }
  for (int n : {5, 25, 500}) {
    ss.push_back(err("shapley_sampling:n_permutations=" + std::to_string(n)));
    std::printf(
        "[ accuracy ] shapley_sampling n_permutations=%d (antithetic: %d orderings) on 12 "
        "features: relative L2 error %.4f\n",
        n, 2 * n, ss.back());
  }
  EXPECT_LE(ks.back(), 0.05);
  EXPECT_LE(ss.back(), 0.05);
  EXPECT_GT(ks.front(), ks.back());
  EXPECT_GT(ss.front(), ss.back());
  EXPECT_GT(ks[1], ks[2]);
  EXPECT_GT(ss[1], ss[2]);
}

// On a span each step's game has only the features before it: KernelSHAP fits every step from
// the same coalitions (restricted to the step's features), Shapley sampling from the same
// orderings.
TEST(PerturbationMethods, SamplersApproachExactShapleyPerSpanStep) {
  REQUIRE_STORIES();
  ExplainRequest r = span_request(8, 4);  // 11 features; the steps see 8, 9, 10 and 11
  Attribution exact = run("exact_shapley", r);
  Attribution ks = run("kernel_shap:n_samples=1500", r);
  Attribution ss = run("shapley_sampling:n_permutations=300", r);
  EXPECT_FALSE(ks.extra.value("enumerated", true));
  for (int64_t s = 0; s < exact.n_steps(); ++s) {
    const double e_ks = relative_error(row(ks, s), row(exact, s));
    const double e_ss = relative_error(row(ss, s), row(exact, s));
    std::printf(
        "[ accuracy ] span step %lld: kernel_shap n_samples=1500 error %.4f, "
        "shapley_sampling n_permutations=300 error %.4f\n",
        static_cast<long long>(s), e_ks, e_ss);
    EXPECT_LE(e_ks, 0.08) << s;
    EXPECT_LE(e_ss, 0.10) << s;
  }
}

TEST(PerturbationMethods, EfficiencyHolds) {
  REQUIRE_STORIES();
  for (bool span : {false, true}) {
    ExplainRequest r = span ? span_request(6, 3) : request(11);
    for (const char* spec :
         {"shapley_sampling", "kernel_shap", "kernel_shap:n_samples=100", "exact_shapley",
          "shapley_sampling:antithetic=false,n_permutations=3"}) {
      Attribution a = run(spec, r);
      for (int64_t s = 0; s < a.n_steps(); ++s) {
        double sum = 0;
        for (int64_t f = 0; f < a.n_features(); ++f) sum += a.score(s, f);
        const double delta = a.target_values[s] - a.baseline_values[s];
        EXPECT_NEAR(sum, delta, 1e-4 * std::max(1.0, std::abs(delta)))
            << spec << (span ? " span step " : " step ") << s;
      }
    }
  }
}

TEST(PerturbationMethods, LimeRecoversTheOrderingAndIsSeeded) {
  REQUIRE_STORIES();
  ExplainRequest r = request(8);
  const std::vector<double> exact = run("exact_shapley", r).scores;
  Attribution a = run("lime", r);
  const double c = correlation(a.scores, exact);
  std::printf("[ accuracy ] lime (512 samples) vs exact Shapley on 8 features: correlation %.3f\n",
              c);
  EXPECT_GT(c, 0.8);
  // The most important feature by exact Shapley is LIME's too.
  auto argmax = [](const std::vector<double>& x) {
    return std::max_element(x.begin(), x.end()) - x.begin();
  };
  EXPECT_EQ(argmax(a.scores), argmax(exact));
  // Deterministic under the seed, different with another seed.
  EXPECT_EQ(run("lime", r).scores, a.scores);
  EXPECT_NE(run("lime:seed=7", r).scores, a.scores);
  // Spans: one fit per step over its visible features; later features score 0.
  Attribution s = run("lime:n_samples=200", span_request(5, 3));
  for (int64_t st = 0; st < s.n_steps(); ++st)
    for (int64_t f = 0; f < s.n_features(); ++f)
      if (s.features[f].begin > s.step_positions[st]) EXPECT_EQ(s.score(st, f), 0.0);
}

TEST(PerturbationMethods, SamplersAreSeeded) {
  REQUIRE_STORIES();
  ExplainRequest r = request(14);
  for (const char* name : {"kernel_shap", "shapley_sampling:n_permutations=4"}) {
    std::string spec(name);
    const std::string sep = spec.find(':') == std::string::npos ? ":" : ",";
    Attribution a = run(spec, r), b = run(spec, r), c = run(spec + sep + "seed=5", r);
    EXPECT_EQ(a.scores, b.scores) << spec;
    EXPECT_NE(a.scores, c.scores) << spec;
  }
}

TEST(PerturbationMethods, ErrorsNameTheProblem) {
  REQUIRE_STORIES();
  ExplainRequest r = request(13);
  try {
    run("exact_shapley", r);
    FAIL() << "13 features > max_features=12 should throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(e.what(), ::testing::HasSubstr("max_features=12"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("13 features"));
    EXPECT_THAT(e.hint(), ::testing::HasSubstr("word"));
    EXPECT_THAT(e.hint(), ::testing::HasSubstr("kernel_shap"));
  }
  EXPECT_NO_THROW(run("exact_shapley:max_features=13", r));
  auto expect_option_error = [](const std::string& spec, const std::string& option) {
    try {
      make_explainer(spec);
      ADD_FAILURE() << spec << " should throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << spec;
      EXPECT_THAT(std::string(e.what()) + " " + e.hint(), ::testing::HasSubstr(option)) << spec;
    }
  };
  expect_option_error("kernel_shap:n_samples=0", "n_samples");
  expect_option_error("kernel_shap:paired=perhaps", "paired");
  expect_option_error("shapley_sampling:n_permutations=-3", "n_permutations");
  expect_option_error("shapley_sampling:antithetic=2", "antithetic");
  expect_option_error("shapley_sampling:seed=x", "seed");
  expect_option_error("lime:kernel_width=0", "kernel_width");
  expect_option_error("lime:alpha=-1", "alpha");
  expect_option_error("lime:internal_batch_size=0", "internal_batch_size");
  expect_option_error("exact_shapley:max_features=40", "max_features");
  expect_option_error("exact_shapley:n_samples=10", "n_samples");  // not an option of it
}

TEST(PerturbationMethods, ProgressIsReportedAndCancels) {
  REQUIRE_STORIES();
  ExplainRequest r = request(8);
  for (const char* spec : {"shapley_sampling:n_permutations=4", "kernel_shap:n_samples=300",
                           "lime:n_samples=100", "exact_shapley"}) {
    std::vector<double> seen;
    ExplainContext c;
    c.progress = [&](double f) {
      seen.push_back(f);
      return true;
    };
    run(spec, r, c);
    ASSERT_FALSE(seen.empty()) << spec;
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end())) << spec;
    EXPECT_NEAR(seen.back(), 1.0, 1e-9) << spec;
    ExplainContext stop;
    stop.progress = [](double) { return false; };
    try {
      run(spec, r, stop);
      ADD_FAILURE() << spec << " ignored cancellation";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kCancelled) << spec;
    }
  }
}

TEST(PerturbationMethods, PrefixReuseSavesForwardPasses) {
  REQUIRE_STORIES();
  ExplainRequest r = request(30);
  const int64_t F = 30;
  // Without reuse: one full forward for the input and one per removed feature.
  const double plain = static_cast<double>(F + 1);
  std::map<int, double> fpe;
  for (int batch : {1, 4, 32}) {
    Attribution loo = run("leave_one_out:internal_batch_size=" + std::to_string(batch), r);
    fpe[batch] = loo.forward_passes;
    std::printf(
        "[ cost     ] leave_one_out on %lld tokens, internal_batch_size=%d: %.2f "
        "forward-pass equivalents with prefix reuse vs %.0f full forwards\n",
        static_cast<long long>(loo.tokens.size()), batch, loo.forward_passes, plain);
  }
  // Removing feature f (position f + 1) reruns positions f + 1 .. T - 1: about half overall.
  // A chunk reruns from its earliest change, so larger chunks save less (one chunk of all 30
  // masks saves nothing) but run fewer, wider forwards.
  EXPECT_LT(fpe[1], 0.6 * plain);
  EXPECT_GT(fpe[1], 0.4 * plain);
  EXPECT_LT(fpe[4], 0.7 * plain);
  EXPECT_LE(fpe[1], fpe[4]);
  EXPECT_LE(fpe[4], fpe[32]);
  EXPECT_LE(fpe[32], plain + 1e-9);
  for (const char* spec : {"shapley_sampling:n_permutations=10", "kernel_shap", "lime"}) {
    Attribution a = run(spec, r);
    // Masks scored (the initial pass, and for Shapley methods the all-removed input, not counted).
    const double masks = std::string(spec).rfind("shapley", 0) == 0 ? 20.0 * (F - 1) : 512.0;
    std::printf("[ cost     ] %s on %lld tokens: %.1f forward-pass equivalents for %.0f masks\n",
                spec, static_cast<long long>(a.tokens.size()), a.forward_passes, masks);
    EXPECT_GT(a.forward_passes, 1.0);
    EXPECT_LT(a.forward_passes, masks + 2);
  }
}

}  // namespace
}  // namespace candor
