// The explainer on a bidirectional classifier (DistilBERT fixture, read with the stories260K
// tokenizer for text): every attribution method runs on the "class" target without special
// cases, perturbations rerun whole sequences (no KV-cache prefix reuse), and the methods'
// invariants hold.
#include <ATen/ATen.h>

#include "candor/error.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

std::unique_ptr<Model> load_classifier() {
  LoadOptions o;
  o.tokenizer_path = testing::shared_path("models/stories260K/tok512.bin");
  return load_model(std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/models/distilbert", o);
}

// log p(class | ids) with a full forward pass.
double class_logprob(const Model& m, const std::vector<TokenId>& ids, int64_t cls) {
  at::NoGradGuard g;
  return at::log_softmax(m.logits(ids)[0].to(at::kDouble), -1)[cls].item<double>();
}

TEST(ClassifierExplain, OcclusionEqualsFullRerunsOfTheWholeSequence) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.bin");
  auto model = load_classifier();
  ExplainRequest req;
  req.input_ids = model->tokenizer().encode("the film was good but long", true, false);
  req.target.token = parse_class(*model, "POSITIVE");
  EXPECT_EQ(req.target.token, 1);
  Attribution a = make_explainer("occlusion")->explain(*model, req);
  ASSERT_EQ(a.n_steps(), 1);
  EXPECT_EQ(a.step_texts[0], "POSITIVE");
  const TokenId unk = model->tokenizer().unk_id();
  const double full = class_logprob(*model, req.input_ids, 1);
  EXPECT_NEAR(a.target_values[0], full, 1e-5);
  // Removing a token changes the first position's state too (bidirectional): a prefix-cache
  // reuse would get these wrong for every feature but the first.
  for (int64_t f = 0; f < a.n_features(); ++f) {
    std::vector<TokenId> ids = req.input_ids;
    for (int64_t t = a.features[f].begin; t < a.features[f].end; ++t) ids[t] = unk;
    EXPECT_NEAR(a.score(0, f), full - class_logprob(*model, ids, 1), 1e-4) << "feature " << f;
  }
}

TEST(ClassifierExplain, EveryMethodRunsOnTheClassTarget) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.bin");
  auto model = load_classifier();
  ExplainRequest req;
  req.input_ids = model->tokenizer().encode("a quiet little story", true, false);
  for (const ExplainerInfo& info : list_explainers()) {
    // The logit lens needs an unembedding; layer attribution a causal stack to enter.
    if (info.name == "logit_lens" || info.name.rfind("layer_", 0) == 0) {
      try {
        make_explainer(info.name)->explain(*model, req);
        FAIL() << info.name << " ran on a bidirectional classifier";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
      }
      continue;
    }
    Attribution a = make_explainer(info.name)->explain(*model, req);
    EXPECT_EQ(a.n_steps(), 1) << info.name;
    EXPECT_LT(a.step_tokens[0], 2) << info.name;  // a class, not a vocabulary token
    if (!a.scores.empty()) {
      for (double s : a.scores) EXPECT_TRUE(std::isfinite(s)) << info.name;
    }
  }
}

TEST(ClassifierExplain, ExactShapleyIsEfficientAndContrastWorks) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.bin");
  auto model = load_classifier();
  ExplainRequest req;
  req.input_ids = model->tokenizer().encode("one two three", true, false);
  req.target.function = TargetFunction::kContrast;
  req.target.token = 0;
  req.target.contrast_token = 1;
  Attribution a = make_explainer("exact_shapley")->explain(*model, req);
  double sum = 0;
  for (double s : a.total()) sum += s;
  EXPECT_NEAR(sum, a.target_values[0] - a.baseline_values[0], 1e-4);
  EXPECT_GT(std::abs(a.target_values[0] - a.baseline_values[0]), 1e-3);
}

TEST(ClassifierExplain, BadClassTargetsAreRefused) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.bin");
  auto model = load_classifier();
  EXPECT_THROW(parse_class(*model, "MAYBE"), Error);
  EXPECT_EQ(parse_class(*model, "#0"), 0);
  ExplainRequest req;
  req.input_ids = model->tokenizer().encode("hello", true, false);
  req.target.token = 2;
  EXPECT_THROW(make_explainer("occlusion")->explain(*model, req), Error);
  req.target.token = -1;
  req.target.span = {5, 6};
  EXPECT_THROW(make_explainer("occlusion")->explain(*model, req), Error);
}

}  // namespace
}  // namespace candor
