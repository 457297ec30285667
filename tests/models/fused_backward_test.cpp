// The hand-written backward of the fused path (src/models/fused/fused_backward.cpp) against
// libtorch autograd on every fixture of the Llama family and on stories260K: the gradient of
// sum(dlogits * logits) with respect to the input embeddings within 1e-4 of the largest
// gradient element, for random dlogits over chosen positions (repeats included), padded
// batches (padding on the left and the right), sequences of more than one attention tile and
// longer than the sliding windows; and against central differences on a small random model.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "candor/model.h"
#include "fused_fixtures.h"
#include "test_util.h"

namespace candor {
namespace {

const std::vector<std::string>& kFixtures = testing::kLlamaFamilyFixtures;
using testing::fixture;
using testing::rel_diff;
using testing::sequence;

struct Grads {
  at::Tensor logits, fused, reference, reference_logits;
};

// The fused forward + backward and libtorch's forward + autograd for the same arguments and
// logits' gradient `dlogits` (random when undefined).
Grads both(const Model& m, ForwardArgs a, at::Tensor dlogits = {}) {
  Grads out;
  std::unique_ptr<GradientTape> tape = m.forward_with_tape(a, &out.logits);
  EXPECT_TRUE(tape != nullptr);
  if (!tape) return out;
  if (!dlogits.defined()) dlogits = at::randn(out.logits.sizes(), at::kFloat);
  out.fused = tape->backward(dlogits);
  // Twice from one tape: the tape is not consumed.
  EXPECT_TRUE(tape->backward(dlogits).equal(out.fused));

  at::AutoGradMode grad(true);
  at::Tensor emb = a.embeddings.detach().clone().requires_grad_(true);
  a.embeddings = emb;
  a.libtorch_path = true;
  out.reference_logits = m.forward(a);
  (out.reference_logits * dlogits).sum().backward();
  out.reference = emb.grad();
  out.reference_logits = out.reference_logits.detach();
  return out;
}

void check_model(const Model& m, const std::string& name) {
  SCOPED_TRACE(name);
  ASSERT_EQ(m.gradient_path().rfind("fused", 0), 0u) << m.gradient_path();
  at::manual_seed(17);
  const int64_t V = m.config().vocab_size;
  const int64_t T = std::min<int64_t>(40, m.config().max_seq_len);  // two attention tiles
  constexpr double kTol = 1e-4;

  // One row, every position.
  ForwardArgs a;
  {
    at::NoGradGuard ng;
    a.embeddings = m.embed(at::tensor(sequence(T, V, 1), at::kLong).view({1, T}));
  }
  Grads g = both(m, a);
  EXPECT_LE(rel_diff(g.logits, g.reference_logits), 1e-5);
  EXPECT_LE(rel_diff(g.fused, g.reference), kTol);
  EXPECT_GT(g.reference.abs().max().item<double>(), 0.0);

  // Two rows, chosen positions (one repeated), the logits' gradient at one position only.
  {
    at::NoGradGuard ng;
    at::Tensor e = m.embed(at::tensor(sequence(2 * T, V, 2), at::kLong).view({2, T}));
    a.embeddings = e;
  }
  a.output_positions = at::tensor(std::vector<int64_t>{T - 1, 3, 3, T / 2}, at::kLong);
  g = both(m, a);
  EXPECT_LE(rel_diff(g.fused, g.reference), kTol);
  at::Tensor one = at::zeros({2, 4, V}, at::kFloat);
  one[0][0] = at::randn({V}, at::kFloat);
  g = both(m, a, one);
  EXPECT_LE(rel_diff(g.fused, g.reference), kTol);
  // Row 1 had no gradient; positions after the last asked for have none either.
  EXPECT_EQ(g.fused[1].abs().max().item<double>(), 0.0);

  // The last position only, one target logit per row (saliency, integrated gradients): the
  // output matrix's backward sums the rows the targets name, and the last layer runs at the
  // one live row of each sequence.
  a.output_positions = at::tensor(std::vector<int64_t>{T - 1}, at::kLong);
  at::Tensor target = at::zeros({2, 1, V}, at::kFloat);
  target[0][0][5] = 1.0f;
  target[1][0][V - 1] = -2.0f;
  g = both(m, a, target);
  EXPECT_LE(rel_diff(g.fused, g.reference), kTol);
  EXPECT_GT(g.reference.abs().max().item<double>(), 0.0);

  // A padded batch: row 0 left-padded by 3, row 1 right-padded by 2, row 2 full; a batch of
  // three (attention then runs on the intra-op threads when there are several).
  std::vector<int64_t> toks, mask;
  for (int64_t r = 0; r < 3; ++r) {
    std::vector<int64_t> s = sequence(T, V, 10 + r);
    for (int64_t t = 0; t < T; ++t) {
      const bool real = r == 0 ? t >= 3 : r == 1 ? t < T - 2 : true;
      toks.push_back(real ? s[t] : 0);
      mask.push_back(real);
    }
  }
  ForwardArgs pb;
  {
    at::NoGradGuard ng;
    pb.embeddings = m.embed(at::tensor(toks, at::kLong).view({3, T}));
  }
  pb.attention_mask = at::tensor(mask, at::kLong).view({3, T});
  g = both(m, pb);
  EXPECT_LE(rel_diff(g.fused, g.reference), kTol);
}

TEST(FusedBackward, MatchesAutogradOnEveryLlamaFamilyFixture) {
  for (const std::string& name : kFixtures) {
    auto model = load_model(fixture(name));
    check_model(*model, name);
  }
}

TEST(FusedBackward, MatchesAutogradOnStories260K) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  check_model(testing::stories260k(), "stories260K");
}

// A wider layer stack (dim 256, 8 heads over 2 key heads, 80 tokens): sgemm blocking, three
// attention tiles.
TEST(FusedBackward, MatchesAutogradOnAWiderRandomLlama) {
  ModelConfig c;
  c.dim = 256;
  c.hidden_dim = 688;
  c.n_layers = 2;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.vocab_size = 500;
  c.max_seq_len = 128;
  auto model = make_random_llama(c, 7);
  at::manual_seed(3);
  ForwardArgs a;
  {
    at::NoGradGuard ng;
    a.embeddings = model->embed(at::tensor(sequence(80, 500, 9), at::kLong).view({1, 80}));
  }
  Grads g = both(*model, a);
  EXPECT_LE(rel_diff(g.fused, g.reference), 1e-4);
}

// Central differences on a small random model, independent of autograd: for random
// directions u, (L(x + h u) - L(x - h u)) / 2h against <grad L, u>, L = sum(dlogits * logits)
// evaluated by the fused forward itself.
TEST(FusedBackward, MatchesCentralDifferences) {
  ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 40;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 40;
  c.max_seq_len = 16;
  auto model = make_random_llama(c, 11);
  at::manual_seed(5);
  at::NoGradGuard ng;
  // Weights of std 0.02 give a nearly linear model; embeddings of std 1 make it less so.
  at::Tensor x = at::randn({1, 9, c.dim}, at::kFloat);
  at::Tensor dl = at::randn({1, 9, c.vocab_size}, at::kFloat);
  ForwardArgs a;
  a.embeddings = x;
  at::Tensor logits;
  auto tape = model->forward_with_tape(a, &logits);
  ASSERT_TRUE(tape != nullptr);
  at::Tensor grad = tape->backward(dl).to(at::kDouble);
  auto L = [&](const at::Tensor& e) {
    ForwardArgs f;
    f.embeddings = e;
    return (model->forward(f).to(at::kDouble) * dl.to(at::kDouble)).sum().item<double>();
  };
  const double h = 1e-2;
  for (int k = 0; k < 6; ++k) {
    at::Tensor u = at::randn(x.sizes(), at::kFloat);
    if (k == 0) u = at::zeros_like(x).index_put_({0, 4, 3}, 1.0f);  // one coordinate
    const double numeric = (L(x + h * u) - L(x - h * u)) / (2 * h);
    const double analytic = (grad * u.to(at::kDouble)).sum().item<double>();
    EXPECT_NEAR(analytic, numeric, 2e-3 * std::max(1.0, std::abs(numeric))) << "direction " << k;
  }
}

// Where the fused path does not apply there is no tape, and gradient_path() says so.
TEST(FusedBackward, NoTapeWhereTheFusedPathDoesNotApply) {
  LoadOptions lo;
  lo.compute_dtype = "bf16";
  auto bf16 = load_model(fixture("llama"), lo);
  EXPECT_EQ(bf16->gradient_path().rfind("libtorch", 0), 0u) << bf16->gradient_path();
  auto bert = load_model(fixture("bert"));
  EXPECT_EQ(bert->gradient_path().rfind("libtorch", 0), 0u);
  ForwardArgs a;
  a.embeddings = at::zeros({1, 3, bert->config().dim}, at::kFloat);
  at::Tensor logits;
  EXPECT_EQ(bert->forward_with_tape(a, &logits), nullptr);
  auto model = load_model(fixture("llama"));
  a.embeddings = at::zeros({1, 3, model->config().dim}, at::kFloat);
  a.libtorch_path = true;
  EXPECT_EQ(model->forward_with_tape(a, &logits), nullptr);
  a.libtorch_path = false;
  EXPECT_NE(model->forward_with_tape(a, &logits), nullptr);
  EXPECT_EQ(logits.sizes(), (at::IntArrayRef{1, 3, model->config().vocab_size}));
}

}  // namespace
}  // namespace candor
