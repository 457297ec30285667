// Layer attribution: layer_integrated_gradients and layer_gradient_x_activation attribute a
// layer's output (the residual stream after it) through the rest of the stack. Completeness of
// layer IG (scores plus the part outside the features sum to f(x) - f(baseline)); layer
// gradient x activation against a direct autograd computation through the whole graph; and
// both equal on the fused backward and on libtorch autograd (a wrapper without a tape).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <string>

#include "candor/error.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "autograd_only.h"
#include "test_util.h"

namespace candor {
namespace {

using testing::builtin_lm;
using testing::max_rel;

using testing::AutogradOnly;

ExplainRequest request(const Model& m, const char* text, bool span) {
  ExplainRequest r;
  r.input_ids = m.tokenizer().encode(text, true, false);
  if (span) r.target.span = {m.tokenizer().encode(" and then", false, false)};
  return r;
}

// Completeness: sum of the feature scores + the part at positions outside the features equals
// f(x) - f(baseline), per step; and f(x), f(baseline) are those of the input method.
void check_complete(const Model& m, int64_t layer, bool span) {
  SCOPED_TRACE("layer " + std::to_string(layer) + (span ? ", span" : ", next token"));
  const ExplainRequest r = request(m, "Once upon a time there was a little dog", span);
  auto ex = make_explainer("layer_integrated_gradients:layer=" + std::to_string(layer));
  Attribution a = ex->explain(m, r);
  Attribution in = make_explainer("integrated_gradients:n_steps=16")->explain(m, r);
  ASSERT_EQ(a.n_steps(), in.n_steps());
  ASSERT_TRUE(a.extra.contains("layer_unassigned"));
  for (int64_t s = 0; s < a.n_steps(); ++s) {
    EXPECT_NEAR(a.target_values[s], in.target_values[s], 1e-4);
    EXPECT_NEAR(a.baseline_values[s], in.baseline_values[s], 1e-4);
    double sum = a.extra["layer_unassigned"][s].get<double>();
    for (int64_t f = 0; f < a.n_features(); ++f) sum += a.score(s, f);
    const double gap = a.target_values[s] - a.baseline_values[s];
    EXPECT_NEAR(sum, gap, 1e-3 * std::abs(gap) + 1e-4) << "step " << s;
    EXPECT_NEAR(a.convergence_delta[s], sum - gap, 1e-9);
  }
  if (!span) {
    // The next-token target has no positions outside the features but BOS, whose output does
    // not depend on the input (causal): nothing unassigned.
    EXPECT_NEAR(a.extra["layer_unassigned"][0].get<double>(), 0.0, 1e-6);
  }
}

TEST(LayerMethods, LayerIntegratedGradientsIsCompleteAtEveryLayer) {
  const Model& m = builtin_lm();
  ASSERT_EQ(m.gradient_path().rfind("fused", 0), 0u) << m.gradient_path();
  for (int64_t layer = 0; layer < m.config().n_layers; ++layer) check_complete(m, layer, false);
  check_complete(m, 1, true);
}

TEST(LayerMethods, LayerIntegratedGradientsIsCompleteOnStories260K) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& m = testing::stories260k();
  for (int64_t layer : {int64_t{0}, m.config().n_layers - 1}) check_complete(m, layer, false);
  check_complete(m, m.config().n_layers / 2, true);
}

// The fused backward from the layer and libtorch autograd give the same scores.
void check_fused_equals_autograd(const Model& m) {
  AutogradOnly reference(m);
  for (const char* spec : {"layer_integrated_gradients:layer=1,n_steps=16",
                           "layer_gradient_x_activation:layer=0",
                           "layer_gradient_x_activation:layer=2"}) {
    for (bool span : {false, true}) {
      SCOPED_TRACE(std::string(spec) + (span ? " span" : ""));
      const ExplainRequest r = request(m, "Lily and Ben went to the park", span);
      Attribution fused = make_explainer(spec)->explain(m, r);
      Attribution autograd = make_explainer(spec)->explain(reference, r);
      EXPECT_LE(max_rel(fused.scores, autograd.scores), 1e-4);
      EXPECT_GT(std::abs(fused.scores[0]) + std::abs(fused.scores[1]), 0.0);
    }
  }
}

TEST(LayerMethods, FusedEqualsAutogradOnTheBuiltinLM) { check_fused_equals_autograd(builtin_lm()); }

TEST(LayerMethods, FusedEqualsAutogradOnStories260K) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  check_fused_equals_autograd(testing::stories260k());
}

// layer_gradient_x_activation = sum over the width of h_l * d target / d h_l per position,
// computed here through the whole graph (autograd from the input embeddings, the captured
// residual stream keeping its gradient).
TEST(LayerMethods, LayerGradientXActivationEqualsADirectComputation) {
  const Model& m = builtin_lm();
  ExplainRequest r = request(m, "The cat sat on the mat", false);
  r.baseline.kind = Baseline::Kind::kZero;
  const int64_t layer = 2;
  Attribution a =
      make_explainer("layer_gradient_x_activation:layer=" + std::to_string(layer))->explain(m, r);
  ASSERT_EQ(a.n_steps(), 1);
  const TokenId target = a.step_tokens[0];
  at::AutoGradMode grad(true);
  const int64_t T = static_cast<int64_t>(a.tokens.size());
  ForwardArgs f;
  f.embeddings = m.embed(at::tensor(std::vector<int64_t>(a.tokens.begin(), a.tokens.end()),
                                    at::kLong)
                             .view({1, T}))
                     .detach()
                     .requires_grad_(true);
  f.libtorch_path = true;
  Activations acts;
  f.capture = &acts;
  f.capture_options.residual = true;
  const at::Tensor logits = m.forward(f);  // [1, T, V]
  at::Tensor h = acts.residual[layer];
  h.retain_grad();
  at::log_softmax(logits[0][T - 1], -1)[target].backward();
  const at::Tensor per_pos = (h.grad() * h.detach()).sum(-1)[0];  // [T]
  ASSERT_EQ(a.n_features(), T - 1);  // every token but BOS
  std::vector<double> want;
  for (int64_t f2 = 0; f2 < a.n_features(); ++f2) {
    double sum = 0;
    for (int64_t t = a.features[f2].begin; t < a.features[f2].end; ++t)
      sum += per_pos[t].item<double>();
    want.push_back(sum);
  }
  EXPECT_LE(max_rel(a.scores, want), 1e-4);
}

TEST(LayerMethods, BadLayersAndModelsAreRefused) {
  const Model& m = builtin_lm();
  const ExplainRequest r = request(m, "A dog", false);
  for (const char* spec : {"layer_integrated_gradients:layer=4", "layer_gradient_x_activation:layer=9"}) {
    try {
      make_explainer(spec)->explain(m, r);
      ADD_FAILURE() << spec << " was accepted on a 4-layer model";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("layer"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("[0, 3]"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(make_explainer("layer_integrated_gradients:layer=-1"), Error);
}

}  // namespace
}  // namespace candor
