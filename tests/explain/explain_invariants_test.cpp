// Invariants shared by every registered method (one table: the registry itself), on stories260K
// (../shared) and on the built-in LM (models/builtin/lm, always present): one score per feature
// and step, finite, deterministic under a fixed seed; gradients against central finite
// differences; bad requests give clear errors; Model::clone.
#include <ATen/ATen.h>

#include <cmath>

#include "candor/error.h"
#include "candor/explain.h"
#include "explain/common.h"
#include "test_util.h"

namespace candor {
namespace {

using testing::builtin_lm;

using ::testing::HasSubstr;

const Model* stories() { return &testing::stories260k(); }

// Light options so the whole table stays quick; anything not listed runs with its defaults.
std::string light_spec(const std::string& name,
                       const std::map<std::string, std::string>& defaults) {
  std::string spec = name;
  std::vector<std::string> opts;
  auto set = [&](const char* key, const char* value) {
    if (defaults.count(key)) opts.push_back(std::string(key) + "=" + value);
  };
  set("n_steps", "16");
  set("n_samples", "64");
  set("n_permutations", "4");
  for (size_t i = 0; i < opts.size(); ++i) spec += (i == 0 ? ":" : ",") + opts[i];
  return spec;
}

// The invariants of one registered method on `m`: one finite score per feature and step, the
// same scores twice under a fixed seed, the declared options reported (defaults where not given),
// and a JSON form with the same shape.
void check_method_invariants(const Model& m, const std::string& name) {
  ExplainerInfo info;
  for (const auto& e : list_explainers())
    if (e.name == name) info = e;
  const std::string spec = light_spec(info.name, info.defaults);
  auto ex = make_explainer(spec);
  EXPECT_EQ(ex->name(), info.name);
  EXPECT_EQ(ex->options().size(), info.options.size()) << "every declared option is reported";
  for (const auto& [k, v] : info.defaults) {
    if (spec.find(k + "=") == std::string::npos)
      EXPECT_EQ(ex->options().at(k), v) << k << " is not given, so it keeps its default";
  }
  for (bool span : {false, true}) {
    ExplainRequest req;
    req.input_ids = m.tokenizer().encode("Lily and Ben went to the park", true, false);
    req.granularity = Granularity::kWord;
    if (span) req.target.span = {m.tokenizer().encode("They played", false, false)};
    Attribution a = ex->explain(m, req);
    Attribution b = ex->explain(m, req);
    const auto features = make_features(m, req);
    ASSERT_EQ(a.n_features(), static_cast<int64_t>(features.size()));
    EXPECT_EQ(a.n_steps(), span ? static_cast<int64_t>(req.target.span.size()) : 1);
    EXPECT_EQ(a.method, info.name);
    EXPECT_EQ(a.options, ex->options());
    if (!a.scores.empty()) {
      ASSERT_EQ(static_cast<int64_t>(a.scores.size()), a.n_steps() * a.n_features());
      for (double v : a.scores) EXPECT_TRUE(std::isfinite(v));
    }
    EXPECT_EQ(a.scores, b.scores) << "same seed, same request: same scores";
    ASSERT_EQ(a.target_values.size(), static_cast<size_t>(a.n_steps()));
    for (double v : a.target_values) EXPECT_TRUE(std::isfinite(v));
    EXPECT_GT(a.forward_passes, 0.0);
    // The JSON form carries the same numbers.
    nlohmann::json j = attribution_to_json(a);
    EXPECT_EQ(j["steps"].size(), static_cast<size_t>(a.n_steps()));
    EXPECT_EQ(j["features"].size(), static_cast<size_t>(a.n_features()));
  }
}

class EveryMethod : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryMethod, OneFiniteScorePerFeatureAndStepAndDeterministic) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  check_method_invariants(*stories(), GetParam());
}

std::vector<std::string> registered() {
  std::vector<std::string> out;
  for (const auto& e : list_explainers()) out.push_back(e.name);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Registry, EveryMethod, ::testing::ValuesIn(registered()),
                         [](const auto& info) { return info.param; });

// The same table on candor's built-in LM (models/builtin/lm, committed in the repository), so
// every registered method runs on a real checkpoint even where ../shared is absent.
class EveryMethodOnTheBuiltinLm : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryMethodOnTheBuiltinLm, OneFiniteScorePerFeatureAndStepAndDeterministic) {
  check_method_invariants(builtin_lm(), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Registry, EveryMethodOnTheBuiltinLm, ::testing::ValuesIn(registered()),
                         [](const auto& info) { return info.param; });

TEST(ModelClone, TheCopyComputesTheSameAndOwnsItsParameters) {
  const Model& m = builtin_lm();
  std::unique_ptr<Model> copy = m.clone();
  const std::vector<TokenId> ids = m.tokenizer().encode("Lily went to the", true, false);
  EXPECT_TRUE(at::equal(copy->logits(ids), m.logits(ids)));
  auto a = m.named_parameters(), b = copy->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
    EXPECT_NE(a[i].second.data_ptr(), b[i].second.data_ptr()) << a[i].first << " is shared";
  }
  at::Tensor before = a[0].second.clone();
  {
    at::NoGradGuard g;
    b[0].second.zero_();
  }
  EXPECT_TRUE(at::equal(a[0].second, before)) << "changing the copy leaves the original";
  EXPECT_FALSE(at::equal(copy->logits(ids), m.logits(ids)));
}

TEST(ExplainGradients, MatchCentralFiniteDifferencesOnATinyModel) {
  ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 24;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 40;
  c.max_seq_len = 16;
  auto m = make_random_llama(c, 3);
  // Scale the weights up so the target is far from flat.
  {
    at::NoGradGuard g;
    for (auto& [name, t] : m->named_parameters())
      if (name.find("norm") == std::string::npos) t.mul_(10.0);
  }
  explain::Problem p;
  p.model = m.get();
  p.tokens = {1, 7, 12, 30, 5};
  p.ids = at::tensor(std::vector<int64_t>{1, 7, 12, 30, 5}, at::kLong).unsqueeze(0);
  p.step_positions = {4};
  p.step_tokens = {9};
  p.step_positions_t = at::tensor(std::vector<int64_t>{4}, at::kLong);
  p.step_tokens_t = at::tensor(std::vector<int64_t>{9}, at::kLong);
  p.embeddings = m->embed(p.ids).detach();
  explain::ValuesAndGrads vg = explain::values_and_grads(p, p.embeddings);
  at::Tensor grad = vg.grads[0][0];  // [T, D]
  at::Generator gen = at::detail::createCPUGenerator(5);
  const double eps = 1e-2;
  int checked = 0;
  for (int k = 0; k < 20; ++k) {
    int64_t t = at::randint(0, 5, {1}, gen, at::kLong).item<int64_t>();
    int64_t d = at::randint(0, c.dim, {1}, gen, at::kLong).item<int64_t>();
    at::NoGradGuard g;
    at::Tensor plus = p.embeddings.clone(), minus = p.embeddings.clone();
    plus[0][t][d] += eps;
    minus[0][t][d] -= eps;
    double fd = (p.values(plus).item<double>() - p.values(minus).item<double>()) / (2 * eps);
    double an = grad[t][d].item<double>();
    EXPECT_NEAR(an, fd, 2e-3 + 0.02 * std::fabs(fd)) << "position " << t << ", dim " << d;
    ++checked;
  }
  EXPECT_EQ(checked, 20);
  EXPECT_GT(grad.abs().max().item<double>(), 1e-3) << "a flat target would make this test vacuous";
}

TEST(ExplainErrors, UnknownMethodListsTheRegisteredOnes) {
  try {
    make_explainer("integrated_gradient");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("integrated_gradient"));
    EXPECT_THAT(e.hint(), HasSubstr("occlusion"));
  }
}

TEST(ExplainErrors, UnknownOptionListsTheMethodsOptions) {
  try {
    make_explainer("occlusion:windows=3");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("windows"));
    EXPECT_THAT(e.hint(), HasSubstr("window=1"));
  }
  EXPECT_THROW(make_explainer("occlusion:window=zero"), Error);
  EXPECT_THROW(make_explainer("occlusion:window"), Error);
  EXPECT_THROW(make_explainer(":window=1"), Error);
}

TEST(ExplainErrors, ZeroStepsIsRejected) {
  try {
    make_explainer("integrated_gradients:n_steps=0");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("n_steps"));
  }
}

TEST(ExplainErrors, BadRequests) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& m = *stories();
  auto ex = make_explainer("occlusion");
  ExplainRequest req;
  EXPECT_THROW(ex->explain(m, req), Error) << "empty input";
  req.input_ids = {1};
  EXPECT_THROW(ex->explain(m, req), Error) << "BOS alone: nothing to attribute";
  req.input_ids = m.tokenizer().encode("the cat sat", true, false);
  req.target.token = 9999;
  try {
    ex->explain(m, req);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("9999"));
  }
  req.target.token = -1;
  const int64_t T = static_cast<int64_t>(req.input_ids.size());
  req.features = {{"a", 1, 3}, {"b", 2, T}};
  try {
    ex->explain(m, req);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("overlap"));
  }
  req.features = {{"a", 1, 2}};
  try {
    ex->explain(m, req);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("leave"));
  }
  req.features = {{"a", 1, 2}, {"b", 2, T}};
  EXPECT_EQ(ex->explain(m, req).n_features(), 2);
  req.features.clear();
  req.target.function = TargetFunction::kContrast;
  EXPECT_THROW(ex->explain(m, req), Error) << "contrast without a contrast token";
}

TEST(ExplainOcclusion, KvCacheReuseAndBatchingEqualNaiveRecompute) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& m = *stories();
  ExplainRequest req;
  req.input_ids = m.tokenizer().encode("Tom had a red ball. He threw it to his dog", true, false);
  req.baseline = parse_baseline("unk");
  Attribution fast = make_explainer("occlusion:internal_batch_size=5")->explain(m, req);
  // Naive: one full forward per removed token, no cache, no batching.
  at::NoGradGuard g;
  std::vector<int64_t> ids(req.input_ids.begin(), req.input_ids.end());
  auto logprob = [&](const std::vector<int64_t>& seq) {
    at::Tensor logits = m.forward_tokens(at::tensor(seq, at::kLong).unsqueeze(0))[0][-1];
    return at::log_softmax(logits, -1)[fast.step_tokens[0]].item<double>();
  };
  double full = logprob(ids);
  ASSERT_EQ(fast.n_features(), static_cast<int64_t>(ids.size()) - 1);
  for (int64_t f = 0; f < fast.n_features(); ++f) {
    std::vector<int64_t> seq = ids;
    seq[f + 1] = m.tokenizer().unk_id();
    EXPECT_NEAR(fast.score(0, f), full - logprob(seq), 1e-5) << "feature " << f;
  }
}

}  // namespace
}  // namespace candor
