// The single-input gradient path (saliency, input x gradient): its scores are the gradient of
// the target computed directly with libtorch's autograd, and its f(x) and f(baseline) the
// values of plain passes, whether f(x) comes from the target prediction's pass (predicted
// target) or from the gradient pass (given target) — the passes finish() no longer repeats.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "candor/explain.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

struct Direct {
  at::Tensor grad;  // [T, D]
  double fx = 0, fb = 0;
  TokenId target = -1;
};

// The gradient of log p(target | input) at the last position, on the libtorch path, and the
// values at the input and at the unk baseline (every position but BOS replaced). `batched`:
// the input and the baseline as one batch of two rows, the gradient from row 0 (the explainer's
// one pass, computed here with plain autograd; for low-precision compute, where a batch of two
// rounds differently from a batch of one).
Direct direct(const Model& m, const std::vector<TokenId>& ids, TokenId target,
              bool batched = false) {
  at::Tensor tokens =
      at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, -1});
  const int64_t T = tokens.size(1);
  Direct d;
  at::Tensor x = m.embed(tokens).detach();
  at::Tensor base = x.clone();
  {
    at::NoGradGuard ng;
    const at::Tensor unk =
        m.embed(at::full({1, 1}, static_cast<int64_t>(m.tokenizer().unk_id()), at::kLong))[0][0];
    for (int64_t t = 1; t < T; ++t) base[0][t].copy_(unk);
  }
  at::Tensor emb = (batched ? at::cat({x, base}, 0) : x).requires_grad_(true);
  ForwardArgs a;
  a.embeddings = emb;
  a.libtorch_path = true;
  at::Tensor logp = at::log_softmax(m.forward(a).select(1, T - 1), -1);  // [rows, V]
  d.target = target >= 0 ? target : static_cast<TokenId>(logp[0].argmax().item<int64_t>());
  at::Tensor v = logp[0][d.target];
  v.backward();
  d.grad = emb.grad()[0];
  d.fx = v.item<double>();
  if (batched) {
    d.fb = logp[1][d.target].item<double>();
    return d;
  }
  at::NoGradGuard ng;
  ForwardArgs b;
  b.embeddings = base;
  b.libtorch_path = true;
  d.fb = at::log_softmax(m.forward(b)[0][T - 1], -1)[d.target].item<double>();
  return d;
}

// Saliency and input x gradient against direct(), for a predicted and a given target, within
// `tol` relative (absolute below 1).
void check_against_direct(const Model& m, const std::vector<TokenId>& ids, double tol,
                          bool batched = false) {
  const int64_t T = static_cast<int64_t>(ids.size());
  for (TokenId given : {TokenId{-1}, TokenId{42}}) {
    const Direct d = direct(m, ids, given, batched);
    for (const std::string method : {"saliency", "input_x_gradient"}) {
      SCOPED_TRACE(method + (given < 0 ? " (predicted target)" : " (given target)"));
      ExplainRequest req;
      req.input_ids = ids;
      req.target.token = given;
      Attribution a = make_explainer(method)->explain(m, req);
      ASSERT_EQ(a.step_tokens.size(), 1u);
      EXPECT_EQ(a.step_tokens[0], d.target);
      ASSERT_EQ(a.target_values.size(), 1u);
      EXPECT_NEAR(a.target_values[0], d.fx, tol * std::max(1.0, std::abs(d.fx)));
      EXPECT_NEAR(a.baseline_values[0], d.fb, tol * std::max(1.0, std::abs(d.fb)));
      ASSERT_EQ(a.features.size(), static_cast<size_t>(T - 1));  // one per token, BOS excluded
      at::Tensor emb = m.embed(
          at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, -1}))[0];
      for (size_t f = 0; f < a.features.size(); ++f) {
        const int64_t t = a.features[f].begin;
        const double want = method == "saliency" ? d.grad[t].norm().item<double>()
                                                 : (d.grad[t] * emb[t]).sum().item<double>();
        EXPECT_NEAR(a.scores[f], want, tol * std::max(1.0, std::abs(want))) << "feature " << f;
      }
    }
  }
}

// On stories260K the gradient pass is the fused path's hand-written backward (one pass with
// the baseline as a second row and the predicted target read from its logits).
TEST(SingleGradient, ScoresAndEndpointValuesEqualADirectComputation) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& m = testing::stories260k();
  ASSERT_EQ(m.gradient_path().rfind("fused", 0), 0u);
  check_against_direct(m, m.tokenizer().encode("Once upon a time, there was a", true), 1e-5);
}

// The same one pass on libtorch autograd, where the fused path does not apply (bf16 compute).
TEST(SingleGradient, TheLibtorchFallbackGivesTheSameOnePass) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  LoadOptions lo;
  lo.compute_dtype = "bf16";
  auto m = load_model(testing::shared_path("models/stories260K"), lo);
  ASSERT_EQ(m->gradient_path().rfind("libtorch", 0), 0u) << m->gradient_path();
  check_against_direct(*m, m->tokenizer().encode("Once upon a time, there was a", true), 1e-4,
                       /*batched=*/true);
}

}  // namespace
}  // namespace candor
