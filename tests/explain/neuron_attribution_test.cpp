// Per-neuron layer attribution and neuron targets (issue 17): the layer methods' scores per unit
// of the layer's output (`per_neuron=true`, extra.neurons), and a hidden unit of a layer as the
// target of the gradient methods (Target::neuron, `--target neuron:L:POS:UNIT`). Completeness
// per neuron, agreement with autograd at the captured residual stream, brute-force central
// differences on a fixture, and bad layers, positions and units naming the range.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <array>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd_only.h"
#include "candor/error.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

using testing::builtin_lm;
using testing::max_rel;

using testing::AutogradOnly;

ExplainRequest request(const Model& m, const char* text, bool span = false) {
  ExplainRequest r;
  r.input_ids = m.tokenizer().encode(text, true, false);
  if (span) r.target.span = {m.tokenizer().encode(" and then", false, false)};
  return r;
}

std::vector<double> flat(const nlohmann::json& rows) {  // [T][D] -> T * D
  std::vector<double> out;
  for (const auto& row : rows)
    for (const auto& v : row) out.push_back(v.get<double>());
  return out;
}

// --- per-neuron layer attribution ---------------------------------------------------------------

// Layer IG per unit: the units of every position sum to f(x) - f(baseline) (the part outside the
// features included), each feature's score is the sum of its positions' units, and the view
// has the shape it says.
TEST(NeuronAttribution, PerNeuronLayerIntegratedGradientsIsComplete) {
  const Model& m = builtin_lm();
  const int64_t D = m.config().dim;
  for (bool span : {false, true}) {
    SCOPED_TRACE(span ? "span" : "next token");
    const ExplainRequest r = request(m, "Once upon a time there was a little dog", span);
    Attribution a =
        make_explainer("layer_integrated_gradients:layer=1,per_neuron=true,n_steps=32")->explain(m, r);
    ASSERT_TRUE(a.extra.contains("neurons"));
    const nlohmann::json& n = a.extra["neurons"];
    EXPECT_EQ(n["layer"], 1);
    EXPECT_EQ(n["units"], D);
    const int64_t T = static_cast<int64_t>(a.tokens.size());
    EXPECT_EQ(n["positions"], T);
    ASSERT_EQ(static_cast<int64_t>(n["scores"].size()), a.n_steps());
    for (int64_t s = 0; s < a.n_steps(); ++s) {
      const nlohmann::json& rows = n["scores"][s];
      ASSERT_EQ(static_cast<int64_t>(rows.size()), T);
      std::vector<double> per_pos(T, 0.0);
      double total = 0;
      for (int64_t t = 0; t < T; ++t) {
        ASSERT_EQ(static_cast<int64_t>(rows[t].size()), D);
        for (int64_t d = 0; d < D; ++d) per_pos[t] += rows[t][d].get<double>();
        total += per_pos[t];
      }
      const double gap = a.target_values[s] - a.baseline_values[s];
      EXPECT_NEAR(total, gap, 1e-3 * std::abs(gap) + 1e-4) << "step " << s;
      EXPECT_NEAR(total - gap, a.convergence_delta[s], 1e-6) << "step " << s;
      // BOS's output does not depend on the input (causal): 0 up to the rounding of the two
      // rows of enter_layer's batched pass.
      EXPECT_NEAR(per_pos[0], 0.0, 1e-6);
      for (int64_t f = 0; f < a.n_features(); ++f) {
        double sum = 0;
        for (int64_t t = a.features[f].begin; t < a.features[f].end; ++t) sum += per_pos[t];
        if (a.features[f].begin <= a.step_positions[s])
          EXPECT_NEAR(a.score(s, f), sum, 1e-9 + 1e-9 * std::abs(sum)) << "feature " << f;
      }
    }
  }
  // Without the option there is no per-neuron view.
  Attribution plain = make_explainer("layer_integrated_gradients:layer=1,n_steps=8")
                          ->explain(m, request(m, "A dog"));
  EXPECT_FALSE(plain.extra.contains("neurons"));
}

// Layer gradient x activation per unit equals h_L * d target / d h_L at the residual stream
// captured through the whole graph (autograd from the input embeddings), on the fused backward
// and on libtorch autograd.
TEST(NeuronAttribution, PerNeuronGradientXActivationEqualsAutogradAtTheCapturedLayer) {
  const Model& m = builtin_lm();
  AutogradOnly reference(m);
  const ExplainRequest r = request(m, "The cat sat on the mat");
  for (int64_t layer : {int64_t{0}, int64_t{2}, m.config().n_layers - 1}) {
    SCOPED_TRACE("layer " + std::to_string(layer));
    const std::string spec =
        "layer_gradient_x_activation:per_neuron=true,layer=" + std::to_string(layer);
    Attribution a = make_explainer(spec)->explain(m, r);
    Attribution b = make_explainer(spec)->explain(reference, r);
    ASSERT_TRUE(a.extra.contains("neurons"));
    const TokenId target = a.step_tokens[0];
    const int64_t T = static_cast<int64_t>(a.tokens.size());
    at::AutoGradMode grad(true);
    ForwardArgs f;
    f.embeddings =
        m.embed(at::tensor(std::vector<int64_t>(a.tokens.begin(), a.tokens.end()), at::kLong)
                    .view({1, T}))
            .detach()
            .requires_grad_(true);
    f.libtorch_path = true;
    Activations acts;
    f.capture = &acts;
    f.capture_options.residual = true;
    const at::Tensor logits = m.forward(f);
    at::Tensor h = acts.residual[layer];
    h.retain_grad();
    at::log_softmax(logits[0][T - 1], -1)[target].backward();
    const at::Tensor want = (h.grad() * h.detach())[0].to(at::kDouble).contiguous();  // [T, D]
    const std::vector<double> w(want.data_ptr<double>(), want.data_ptr<double>() + want.numel());
    EXPECT_LE(max_rel(flat(a.extra["neurons"]["scores"][0]), w), 1e-4) << "fused";
    EXPECT_LE(max_rel(flat(b.extra["neurons"]["scores"][0]), w), 1e-4) << "autograd";
  }
}

// --- neuron targets -----------------------------------------------------------------------------

// h_L[0, pos, unit] through the whole graph (libtorch), and its gradient w.r.t. the embeddings.
struct NeuronRef {
  double value;
  at::Tensor grad;  // [T, D]
};
NeuronRef neuron_autograd(const Model& m, const at::Tensor& emb, int64_t layer, int64_t pos,
                          int64_t unit) {
  at::AutoGradMode grad(true);
  ForwardArgs f;
  f.embeddings = emb.detach().clone().requires_grad_(true);
  f.libtorch_path = true;
  Activations acts;
  f.capture = &acts;
  f.capture_options.residual = true;
  m.forward(f);
  at::Tensor v = acts.residual[layer][0][pos][unit];
  v.backward();
  return {v.item<double>(), f.embeddings.grad()[0].detach()};
}

ExplainRequest neuron_request(const Model& m, const char* text, int64_t layer, int64_t pos,
                              int64_t unit) {
  ExplainRequest r = request(m, text);
  r.target.neuron = parse_neuron_target("neuron:" + std::to_string(layer) + ":" +
                                        std::to_string(pos) + ":" + std::to_string(unit));
  return r;
}

// Saliency and input x gradient of a neuron equal autograd's gradient of the captured unit.
TEST(NeuronAttribution, NeuronGradientEqualsAutograd) {
  const Model& m = builtin_lm();
  const char* text = "Lily and Ben went to the park";
  const int64_t T = static_cast<int64_t>(m.tokenizer().encode(text, true, false).size());
  for (auto [layer, pos, unit] : {std::array<int64_t, 3>{0, -1, 5}, std::array<int64_t, 3>{2, 3, 40},
                                  std::array<int64_t, 3>{3, -2, 95}}) {
    SCOPED_TRACE("neuron " + std::to_string(layer) + ":" + std::to_string(pos) + ":" +
                 std::to_string(unit));
    const ExplainRequest r = neuron_request(m, text, layer, pos, unit);
    Attribution ixg = make_explainer("input_x_gradient")->explain(m, r);
    Attribution sal = make_explainer("saliency")->explain(m, r);
    const int64_t p = pos < 0 ? T + pos : pos;
    EXPECT_EQ(ixg.target_function, "neuron");
    ASSERT_EQ(ixg.n_steps(), 1);
    EXPECT_EQ(ixg.step_positions[0], p);
    EXPECT_EQ(ixg.extra["neuron"]["layer"], layer);
    EXPECT_EQ(ixg.extra["neuron"]["position"], p);
    EXPECT_EQ(ixg.extra["neuron"]["unit"], unit);
    const at::Tensor ids =
        at::tensor(std::vector<int64_t>(r.input_ids.begin(), r.input_ids.end()), at::kLong)
            .view({1, T});
    const at::Tensor emb = m.embed(ids).detach();
    const NeuronRef ref = neuron_autograd(m, emb, layer, p, unit);
    EXPECT_NEAR(ixg.target_values[0], ref.value, 1e-5 * (1 + std::abs(ref.value)));
    std::vector<double> want_ixg, want_sal;
    for (int64_t f = 0; f < ixg.n_features(); ++f) {
      const int64_t t = ixg.features[f].begin;  // token granularity: one position each
      want_ixg.push_back(t <= p ? (ref.grad[t] * emb[0][t]).sum().item<double>() : 0.0);
      want_sal.push_back(t <= p ? ref.grad[t].norm().item<double>() : 0.0);
    }
    EXPECT_LE(max_rel(ixg.scores, want_ixg), 1e-5);
    EXPECT_LE(max_rel(sal.scores, want_sal), 1e-5);
    // Positions after the unit's cannot reach it (causal) and score 0; earlier ones do.
    double before = 0;
    for (int64_t f = 0; f < ixg.n_features(); ++f) {
      if (ixg.features[f].begin > p) EXPECT_EQ(ixg.score(0, f), 0.0);
      else before += std::abs(ixg.score(0, f));
    }
    EXPECT_GT(before, 0.0);
  }
}

// Brute force on the checked-in builtin model (the tests/fixtures models have no tokenizer,
// which the explainers need): input x gradient of a neuron at token t is the derivative of the
// unit along that token's own embedding, d/de h(E + e * E_t) at e = 0 (central differences).
TEST(NeuronAttribution, NeuronInputXGradientMatchesCentralDifferences) {
  const Model* m = &builtin_lm();
  const std::vector<TokenId> ids = {1, 17, 42, 90, 7, 63, 5};
  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t layer = m->config().n_layers > 1 ? 1 : 0, pos = T - 1, unit = 3;
  ExplainRequest r;
  r.input_ids = ids;
  r.target.neuron.layer = layer;
  r.target.neuron.position = pos;
  r.target.neuron.unit = unit;
  Attribution a = make_explainer("input_x_gradient")->explain(*m, r);
  const at::Tensor emb =
      m->embed(at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, T}))
          .detach();
  at::NoGradGuard ng;
  auto h = [&](const at::Tensor& e) {
    ForwardArgs f;
    f.embeddings = e;
    f.libtorch_path = true;
    Activations acts;
    f.capture = &acts;
    f.capture_options.residual = true;
    m->forward(f);
    return acts.residual[layer][0][pos][unit].item<double>();
  };
  const double eps = 3e-3;
  std::vector<double> fd;
  for (int64_t f = 0; f < a.n_features(); ++f) {
    const int64_t t = a.features[f].begin;
    at::Tensor dir = at::zeros_like(emb);
    dir[0][t].copy_(emb[0][t]);
    fd.push_back((h(emb + eps * dir) - h(emb - eps * dir)) / (2 * eps));
  }
  EXPECT_LE(max_rel(a.scores, fd), 2e-3);
  double norm = 0;
  for (double v : fd) norm += std::abs(v);
  EXPECT_GT(norm, 1e-4);  // the check is not vacuous
}

// Integrated gradients of a neuron: complete (the scores sum to h(x) - h(baseline)), f(x) is the
// captured unit, and the fused model and the autograd-only one agree.
TEST(NeuronAttribution, NeuronIntegratedGradientsIsComplete) {
  const Model& m = builtin_lm();
  AutogradOnly reference(m);
  for (int64_t layer : {int64_t{0}, int64_t{2}}) {
    SCOPED_TRACE("layer " + std::to_string(layer));
    const ExplainRequest r = neuron_request(m, "Once upon a time there was a cat", layer, -1, 11);
    Attribution a = make_explainer("integrated_gradients:n_steps=32")->explain(m, r);
    Attribution b = make_explainer("integrated_gradients:n_steps=32")->explain(reference, r);
    ASSERT_EQ(a.n_steps(), 1);
    double sum = 0;
    for (int64_t f = 0; f < a.n_features(); ++f) sum += a.score(0, f);
    const double gap = a.target_values[0] - a.baseline_values[0];
    EXPECT_GT(std::abs(gap), 1e-4);
    EXPECT_NEAR(sum, gap, 1e-3 * std::abs(gap) + 1e-5);
    EXPECT_NEAR(a.convergence_delta[0], sum - gap, 1e-9);
    EXPECT_LE(max_rel(a.scores, b.scores), 1e-6);
    // smoothgrad and vargrad take the target too.
    Attribution s = make_explainer("smoothgrad:n_samples=4")->explain(m, r);
    EXPECT_EQ(s.target_function, "neuron");
    EXPECT_EQ(s.extra["neuron"]["layer"], layer);
  }
}

// Bad layers, positions and units name the range; methods that score outputs refuse a neuron.
TEST(NeuronAttribution, BadNeuronsAndMethodsAreRefusedNamingTheRange) {
  const Model& m = builtin_lm();
  const int64_t D = m.config().dim;
  auto message = [&](const std::string& spec, int64_t layer, int64_t pos, int64_t unit,
                     ErrorCode code = ErrorCode::kInvalidArgument) {
    ExplainRequest r = request(m, "A dog ran");
    r.target.neuron.layer = layer;
    r.target.neuron.position = pos;
    r.target.neuron.unit = unit;
    try {
      make_explainer(spec)->explain(m, r);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message("saliency", 4, -1, 0).find("layer must be in [0, 3]"), std::string::npos);
  EXPECT_NE(message("saliency", 1, -1, D).find("unit must be in [0, " + std::to_string(D - 1) + "]"),
            std::string::npos);
  EXPECT_NE(message("saliency", 1, -1, -1).find("unit must be in"), std::string::npos);
  const std::string pos = message("integrated_gradients", 1, 40, 0);
  EXPECT_NE(pos.find("position must be in [0, "), std::string::npos) << pos;
  EXPECT_NE(message("saliency", 1, -40, 0).find("position must be in"), std::string::npos);
  for (const char* spec : {"occlusion", "kernel_shap", "lime", "attention", "logit_lens"}) {
    const std::string e = message(spec, 1, -1, 0, ErrorCode::kUnsupported);
    EXPECT_NE(e.find("neuron"), std::string::npos) << spec << ": " << e;
  }
  EXPECT_NE(message("layer_integrated_gradients:layer=0", 1, -1, 0, ErrorCode::kUnsupported)
                .find("neuron"),
            std::string::npos);
  // A neuron with a span to score is refused.
  ExplainRequest r = request(m, "A dog", true);
  r.target.neuron.layer = 0;
  EXPECT_NE(testing::error_of([&] { make_explainer("saliency")->explain(m, r); }).find("span"),
            std::string::npos);
  // The per-neuron layer methods name the layer range as before.
  EXPECT_NE(testing::error_of([&] {
              make_explainer("layer_gradient_x_activation:layer=9,per_neuron=true")
                  ->explain(m, request(m, "A dog"));
            }).find("[0, 3]"),
            std::string::npos);
  // The text form.
  const NeuronTarget n = parse_neuron_target("neuron:2:-1:17");
  EXPECT_EQ(n.layer, 2);
  EXPECT_EQ(n.position, -1);
  EXPECT_EQ(n.unit, 17);
  for (const char* bad : {"neuron:1:2", "neuron:a:1:2", "neuron:1:2:3:4", "neuron:-1:0:0",
                          "neuron:1:0:-2", "neuron::0:0", "neurons:1:0:0"}) {
    const std::string e = testing::error_of([&] { parse_neuron_target(bad); });
    EXPECT_NE(e.find("neuron target"), std::string::npos) << bad << ": " << e;
  }
}

}  // namespace
}  // namespace candor
