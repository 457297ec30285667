// The fused backward started at a layer's output (ForwardArgs::start_layer, for layer
// attribution) and the lean tape (q/k/v and the feed-forward's pre-activations recomputed in
// the backward): against libtorch autograd on every fixture of the Llama family and on
// stories260K, and the lean tape against the full one.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "candor/error.h"
#include "candor/model.h"
#include "models/fused/fused_backward.h"
#include "fused_fixtures.h"
#include "test_util.h"

namespace candor {
namespace {

const std::vector<std::string>& kFixtures = testing::kLlamaFamilyFixtures;
using testing::fixture;
using testing::rel_diff;
using testing::sequence;

// Restores the process-wide tape budget when a test ends.
struct BudgetGuard {
  int64_t saved = fused::tape_budget();
  ~BudgetGuard() { fused::set_tape_budget(saved); }
};

// Layer `layer`'s output for `a` (libtorch, whole graph), the gradient of sum(dl * logits)
// with respect to it through the whole graph (autograd from the input), and the same through
// a pass that starts at the layer: libtorch autograd and the fused backward.
void check_layer(const Model& m, ForwardArgs a, int64_t layer, const std::string& what) {
  SCOPED_TRACE(what + ", layer " + std::to_string(layer));
  constexpr double kTol = 1e-4;
  at::AutoGradMode grad(true);
  // Through the whole stack: the residual stream after `layer` keeps its gradient.
  Activations acts;
  ForwardArgs whole = a;
  whole.embeddings = a.embeddings.detach().clone().requires_grad_(true);
  whole.libtorch_path = true;
  whole.capture = &acts;
  whole.capture_options.residual = true;
  const at::Tensor logits = m.forward(whole);
  ASSERT_EQ(static_cast<int64_t>(acts.residual.size()), m.config().n_layers);
  at::Tensor h = acts.residual[static_cast<size_t>(layer)];
  h.retain_grad();
  const at::Tensor dl = at::randn(logits.sizes(), at::kFloat);
  (logits * dl).sum().backward();
  const at::Tensor whole_grad = h.grad().clone();
  const at::Tensor h0 = h.detach().clone();

  // libtorch from the layer on.
  ForwardArgs from = a;
  from.start_layer = layer + 1;
  from.embeddings = h0.clone().requires_grad_(true);
  from.libtorch_path = true;
  const at::Tensor part_logits = m.forward(from);
  EXPECT_LE(rel_diff(part_logits.detach(), logits.detach()), 1e-5) << "the rest of the stack";
  (part_logits * dl).sum().backward();
  EXPECT_LE(rel_diff(from.embeddings.grad(), whole_grad), kTol) << "libtorch from the layer";

  // The fused pass from the layer on, and its backward.
  ForwardArgs fa = a;
  fa.start_layer = layer + 1;
  fa.embeddings = h0;
  at::Tensor fused_logits;
  auto tape = m.forward_with_tape(fa, &fused_logits);
  ASSERT_TRUE(tape != nullptr);
  EXPECT_LE(rel_diff(fused_logits, logits.detach()), 1e-5) << "fused logits from the layer";
  const at::Tensor g = tape->backward(dl);
  EXPECT_LE(rel_diff(g, whole_grad), kTol) << "fused backward to the layer's output";
  EXPECT_GT(whole_grad.abs().max().item<double>(), 0.0);
}

void check_model(const Model& m, const std::string& name) {
  SCOPED_TRACE(name);
  ASSERT_EQ(m.gradient_path().rfind("fused", 0), 0u) << m.gradient_path();
  at::manual_seed(23);
  const int64_t V = m.config().vocab_size, L = m.config().n_layers;
  const int64_t T = std::min<int64_t>(40, m.config().max_seq_len);
  ForwardArgs a;
  {
    at::NoGradGuard ng;
    a.embeddings = m.embed(at::tensor(sequence(T, V, 4), at::kLong).view({1, T}));
  }
  for (int64_t layer : {int64_t{0}, L / 2, L - 1}) check_layer(m, a, layer, "one row");
  // A padded batch at chosen positions.
  std::vector<int64_t> toks, mask;
  for (int64_t r = 0; r < 2; ++r) {
    std::vector<int64_t> s = sequence(T, V, 30 + r);
    for (int64_t t = 0; t < T; ++t) {
      const bool real = r == 0 ? t >= 3 : true;
      toks.push_back(real ? s[t] : 0);
      mask.push_back(real);
    }
  }
  ForwardArgs pb;
  {
    at::NoGradGuard ng;
    pb.embeddings = m.embed(at::tensor(toks, at::kLong).view({2, T}));
  }
  pb.attention_mask = at::tensor(mask, at::kLong).view({2, T});
  pb.output_positions = at::tensor(std::vector<int64_t>{T - 1, 5}, at::kLong);
  check_layer(m, pb, L - 1 - L / 2, "padded batch");
}

TEST(FusedLayerBackward, MatchesAutogradOnEveryLlamaFamilyFixture) {
  for (const std::string& name : kFixtures) {
    auto model = load_model(fixture(name));
    check_model(*model, name);
  }
}

TEST(FusedLayerBackward, MatchesAutogradOnStories260K) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  check_model(testing::stories260k(), "stories260K");
}

TEST(FusedLayerBackward, BadStartLayersAreRefused) {
  auto model = load_model(fixture("llama"));
  ForwardArgs a;
  a.embeddings = at::zeros({1, 3, model->config().dim}, at::kFloat);
  for (int64_t bad : {int64_t{-1}, model->config().n_layers + 1}) {
    a.start_layer = bad;
    try {
      model->forward(a);
      ADD_FAILURE() << "start_layer " << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("start_layer"), std::string::npos) << e.what();
    }
  }
  // Entering after the last layer: only the final norm and the output remain.
  a.start_layer = model->config().n_layers;
  EXPECT_EQ(model->forward(a).size(2), model->config().vocab_size);
  auto bert = load_model(fixture("bert"));
  ForwardArgs b;
  b.embeddings = at::zeros({1, 3, bert->config().dim}, at::kFloat);
  b.start_layer = 1;
  EXPECT_THROW(bert->forward(b), Error);
}

// The lean tape keeps the block inputs only and recomputes the rest in the backward: the same
// gradients as the full tape (within float rounding of the recomputed products) on every
// fixture, padded batches included, also from a layer's output.
TEST(FusedLayerBackward, LeanTapeGivesTheFullTapesGradients) {
  BudgetGuard guard;
  std::vector<std::string> names = kFixtures;
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    auto m = load_model(fixture(name));
    at::manual_seed(5);
    const int64_t V = m->config().vocab_size;
    const int64_t T = std::min<int64_t>(40, m->config().max_seq_len);
    ForwardArgs a;
    {
      at::NoGradGuard ng;
      a.embeddings = m->embed(at::tensor(sequence(3 * T, V, 8), at::kLong).view({3, T}));
    }
    std::vector<int64_t> mask(3 * T, 1);
    for (int64_t t = 0; t < 4; ++t) mask[t] = 0;  // row 0 left-padded
    a.attention_mask = at::tensor(mask, at::kLong).view({3, T});
    for (int64_t start : {int64_t{0}, m->config().n_layers / 2}) {
      ForwardArgs s = a;
      s.start_layer = start;
      at::Tensor full_logits, lean_logits;
      fused::set_tape_budget(int64_t{1} << 40);
      auto full = m->forward_with_tape(s, &full_logits);
      fused::set_tape_budget(0);
      auto lean = m->forward_with_tape(s, &lean_logits);
      ASSERT_TRUE(full && lean);
      EXPECT_TRUE(lean_logits.equal(full_logits)) << "the forward is the same";
      const at::Tensor dl = at::randn(full_logits.sizes(), at::kFloat);
      const at::Tensor gf = full->backward(dl), gl = lean->backward(dl);
      EXPECT_LE(rel_diff(gl, gf), 1e-5) << "start layer " << start;
      EXPECT_GT(gf.abs().max().item<double>(), 0.0);
    }
  }
}

// What the lean tape saves: an integrated-gradients chunk of 50 points x 128 tokens on the
// GPT-2-small-sized Llama (dim 768, hidden 2048, 12 layers): 2.46 GB of full tape, 0.49 GB lean
// (5.0x less), and the default budget makes that chunk lean while integrated gradients'
// default chunk of 16 x 128 tokens (0.78 GB) stays full.
TEST(FusedLayerBackward, LeanTapeSizeOnTheLargeModel) {
  ModelConfig c;
  c.dim = 768;
  c.hidden_dim = 2048;
  c.n_layers = 12;
  c.n_heads = 12;
  c.n_kv_heads = 12;
  c.vocab_size = 32000;
  c.max_seq_len = 1024;
  const int64_t full = fused::Tape::full_bytes(c, 50, 128);
  const int64_t lean = fused::Tape::lean_bytes(c, 50, 128);
  // Per token and layer: 2 x 768 block inputs + 768 q + 2 x 768 k, v + 2 x 2048 pre-activations.
  EXPECT_EQ(full, int64_t{4} * 6400 * (12 * (1536 + 768 + 1536 + 4096) + 768));
  EXPECT_EQ(lean, int64_t{4} * 6400 * (12 * 1536 + 768));
  // 5.17x per layer; the final residual stream, kept by both, makes it 5.0x in all.
  EXPECT_GE(static_cast<double>(full) / static_cast<double>(lean), 4.99);
  EXPECT_GT(full, fused::tape_budget());
  EXPECT_LT(fused::Tape::full_bytes(c, 16, 128), fused::tape_budget());  // IG's default chunk
}

// A tape reports its own size and layout: lean under a zero budget, full under a large one,
// and smaller when the pass enters at a later layer.
TEST(FusedLayerBackward, LeanTapeHoldsWhatItSays) {
  BudgetGuard guard;
  ModelConfig c;
  c.dim = 64;
  c.hidden_dim = 172;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 100;
  c.max_seq_len = 64;
  fused::Tape t;
  fused::set_tape_budget(0);
  t.begin(c, 2, 10);
  EXPECT_TRUE(t.lean());
  EXPECT_EQ(t.bytes(), fused::Tape::lean_bytes(c, 2, 10));
  EXPECT_EQ(t.at(fused::Tape::kQ, 0), nullptr);
  fused::set_tape_budget(int64_t{1} << 40);
  t.begin(c, 2, 10, 1);
  EXPECT_FALSE(t.lean());
  EXPECT_EQ(t.bytes(), fused::Tape::full_bytes(c, 2, 10, 1));
  EXPECT_LT(fused::Tape::full_bytes(c, 2, 10, 1), fused::Tape::full_bytes(c, 2, 10, 0));
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// The large buffers of gradient passes are kept for the next pass (no fresh pages to fault in
// and zero), the smallest that fits serves, at most kKeptRegions stay, and they can be given
// back at once.
TEST(FusedLayerBackward, GradientBuffersAreKeptForTheNextPassAndGivenBack) {
  fused::release_kept_regions();
  EXPECT_EQ(fused::kept_region_bytes(), 0u);
  const size_t MB = size_t{1} << 20;
  {
    fused::KeptRegion r(3 * MB);
    ASSERT_NE(r.floats(), nullptr);
    EXPECT_GE(r.bytes(), 3 * MB);
    r.floats()[0] = 1.0f;
    r.floats()[3 * MB / 4 - 1] = 2.0f;
  }
  EXPECT_EQ(fused::kept_region_bytes(), 3 * MB);
  {
    fused::KeptRegion r(MB);  // the kept 3 MB serves
    EXPECT_EQ(r.bytes(), 3 * MB);
    EXPECT_EQ(fused::kept_region_bytes(), 0u);
    fused::KeptRegion moved(std::move(r));
    EXPECT_EQ(r.floats(), nullptr);
    EXPECT_EQ(moved.bytes(), 3 * MB);
  }
  {
    fused::KeptRegion a(MB), b(2 * MB), c(4 * MB);  // a takes the 3 MB; b, c are new
    EXPECT_EQ(fused::kept_region_bytes(), 0u);
  }
  // Three let go, two kept: the smallest (2 MB) went back.
  EXPECT_EQ(fused::kept_region_bytes(), 7 * MB);
  // A tape lives in a kept region, and leaves it kept.
  auto m = load_model(std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/models/llama");
  fused::release_kept_regions();
  {
    ForwardArgs a;
    a.embeddings = at::randn({2, 9, m->config().dim}, at::kFloat);
    at::Tensor logits;
    auto tape = m->forward_with_tape(a, &logits);
    ASSERT_TRUE(tape);
    EXPECT_GT(tape->backward(at::ones_like(logits)).abs().max().item<double>(), 0.0);
  }
  EXPECT_GE(fused::kept_region_bytes(),
            static_cast<size_t>(fused::Tape::full_bytes(m->config(), 2, 9)));
  fused::release_kept_regions();
  EXPECT_EQ(fused::kept_region_bytes(), 0u);
}

}  // namespace
}  // namespace candor
