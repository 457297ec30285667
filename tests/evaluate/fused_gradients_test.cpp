// The gradient users of the evaluator on the fused path: the embedding-noise attack and the
// max/avg-sensitivity metric rerun gradient explainers on a noisy copy of the model, and that
// copy (like the temperature-scaled model the service explains) now hands out the base model's
// hand-written backward. Their results equal those computed through libtorch autograd.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <string>

#include "candor/evaluate.h"
#include "candor/evaluate/adversarial.h"
#include "candor/evaluate/robustness.h"
#include "candor/explain.h"
#include "candor/jobs_temperature.h"
#include "candor/model.h"
#include "autograd_only.h"
#include "test_util.h"

namespace candor {
namespace {

using testing::builtin_lm;

using testing::AutogradOnly;

ExplainRequest request(const Model& m) {
  ExplainRequest r;
  r.input_ids = m.tokenizer().encode("Lily and Ben went to the park to play", true, false);
  return r;
}

TEST(FusedGradients, NoisyAndTemperatureScaledModelsKeepTheFusedBackward) {
  const Model& m = builtin_lm();
  ASSERT_EQ(m.gradient_path().rfind("fused", 0), 0u) << m.gradient_path();
  const int64_t T = 6, D = m.config().dim;
  auto noisy = with_embedding_noise(m, at::full({T, D}, 0.01f));
  EXPECT_EQ(noisy->gradient_path(), m.gradient_path());
  auto scaled = jobs::temperature_scaled(m, 1.7);
  EXPECT_EQ(scaled->gradient_path(), m.gradient_path());
  ForwardArgs a;
  a.embeddings = at::randn({2, T, D}, at::kFloat);
  at::Tensor logits, scaled_logits;
  ASSERT_NE(noisy->forward_with_tape(a, &logits), nullptr);
  auto tape = scaled->forward_with_tape(a, &scaled_logits);
  ASSERT_NE(tape, nullptr);
  EXPECT_TRUE(at::allclose(scaled_logits, logits / 1.7, 1e-6, 1e-6));
  // The scaled tape's gradient is the scaled model's: autograd through forward() / T.
  const at::Tensor dl = at::randn(logits.sizes(), at::kFloat);
  const at::Tensor g = tape->backward(dl);
  at::AutoGradMode grad(true);
  ForwardArgs b = a;
  b.embeddings = a.embeddings.clone().requires_grad_(true);
  b.libtorch_path = true;
  (scaled->forward(b) * dl).sum().backward();
  const at::Tensor ref = b.embeddings.grad();
  EXPECT_LE((g - ref).abs().max().item<double>(), 1e-4 * ref.abs().max().item<double>());
}

TEST(FusedGradients, SensitivityEqualsTheAutogradPath) {
  const Model& m = builtin_lm();
  AutogradOnly reference(m);
  const ExplainRequest r = request(m);
  for (const char* spec : {"saliency", "integrated_gradients:n_steps=16", "smoothgrad:n_samples=4"}) {
    SCOPED_TRACE(spec);
    auto ex = make_explainer(spec);
    const Attribution a = ex->explain(m, r);
    RobustnessOptions o;
    o.space = PerturbationSpace::kEmbedding;
    o.n_samples = 3;
    o.radius = 0.1;
    const Robustness fused = evaluate_robustness(m, r, *ex, a, o);
    const Robustness autograd = evaluate_robustness(reference, r, *ex, a, o);
    ASSERT_EQ(fused.sensitivities.size(), 3u);
    ASSERT_EQ(autograd.sensitivities.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_NEAR(fused.sensitivities[i], autograd.sensitivities[i],
                  1e-4 * std::max(1.0, autograd.sensitivities[i]));
      EXPECT_GT(fused.sensitivities[i], 0.0);  // the noise moved the explanation
    }
    EXPECT_NEAR(fused.max_sensitivity, autograd.max_sensitivity, 1e-4);
    EXPECT_NEAR(fused.mean_spearman, autograd.mean_spearman, 1e-6);
  }
}

TEST(FusedGradients, EmbeddingNoiseAttackEqualsTheAutogradPath) {
  const Model& m = builtin_lm();
  AutogradOnly reference(m);
  const ExplainRequest r = request(m);
  auto ex = make_explainer("input_x_gradient");
  const Attribution a = ex->explain(m, r);
  AttackOptions o;
  o.space = PerturbationSpace::kEmbedding;
  o.n_candidates = 4;
  o.n_rounds = 1;
  o.radius = 0.2;
  o.max_prob_change = 1.0;
  o.top_k = 3;
  const AttackResult fused = attack_explainer(m, r, *ex, a, o);
  const AttackResult autograd = attack_explainer(reference, r, *ex, a, o);
  EXPECT_EQ(fused.candidates_tried, autograd.candidates_tried);
  EXPECT_EQ(fused.candidates_valid, autograd.candidates_valid);
  EXPECT_GT(fused.candidates_valid, 0);
  EXPECT_DOUBLE_EQ(fused.topk_intersection, autograd.topk_intersection);
  EXPECT_EQ(fused.changes, autograd.changes);
}

}  // namespace
}  // namespace candor
