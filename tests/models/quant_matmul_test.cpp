// Weights kept quantized (src/models/fused/qgemm.h): both products (x · Wᵀ and g · W) against
// dequantise-then-multiply in double for every block type, from random blocks, at odd sizes,
// over several panels and over matrices whose row parts mix types; the quantisers candor
// writes (Q8_0, Q4_K, Q6_K) against their error bounds; and whole models: GGUF files loaded
// with their matrices kept in blocks give the logits, greedy text and gradients of the same
// files dequantised at load (stories260K as Q8_0; the Q4_K + Q6_K, Q4_0 + Q8_0 + F16 + BF16 and
// GPT-2 fixtures), in about the file's memory.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <cctype>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "candor/generate.h"
#include "candor/model.h"
#include "models/formats/gguf.h"
#include "models/fused/fused_backward.h"
#include "models/fused/qgemm.h"
#include "models/llama.h"
#include "test_util.h"

namespace candor {
namespace {

using fused::QuantMatrix;

// Random blocks of ggml `type`: random bytes, with the scale fields set to moderate f16 values
// (random bytes there would be infinities and NaNs) and F16 / BF16 values drawn as floats.
std::vector<uint8_t> random_blocks(uint32_t type, int64_t n, std::mt19937& rng) {
  const size_t bytes = ggml_nbytes(type, n);
  std::vector<uint8_t> b(bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& v : b) v = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(0.001f, 0.05f), value(-2.0f, 2.0f);
  auto put = [&](size_t at, float v) {
    const uint16_t h = c10::detail::fp16_ieee_from_fp32_value(v);
    std::memcpy(&b[at], &h, 2);
  };
  switch (type) {
    case 1:
      for (int64_t i = 0; i < n; ++i) put(2 * i, value(rng));
      break;
    case 30:
      for (int64_t i = 0; i < n; ++i) {
        const float v = value(rng);
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        b[2 * i] = static_cast<uint8_t>(bits >> 16);
        b[2 * i + 1] = static_cast<uint8_t>(bits >> 24);
      }
      break;
    case 2:
    case 8: {
      const size_t bb = type == 2 ? 18 : 34;
      for (size_t at = 0; at < bytes; at += bb) put(at, scale(rng));
      break;
    }
    case 12:
      for (size_t at = 0; at < bytes; at += 144) {
        put(at, scale(rng));
        put(at + 2, scale(rng));
      }
      break;
    case 14:
      for (size_t at = 0; at < bytes; at += 210) put(at + 208, scale(rng) * 0.1f);
      break;
    default:
      for (int64_t i = 0; i < n; ++i) {
        const float v = value(rng);
        std::memcpy(&b[4 * i], &v, 4);
      }
  }
  return b;
}

struct Matrix {
  QuantMatrix q;
  std::vector<std::vector<uint8_t>> storage;
  at::Tensor dense;  // [rows, cols] double: the dequantised values
};

// A matrix of row parts {type, rows}, random blocks, `cols` values per row.
Matrix random_matrix(const std::vector<std::pair<uint32_t, int64_t>>& parts, int64_t cols,
                     std::mt19937& rng) {
  Matrix m;
  m.q.cols = cols;
  std::vector<at::Tensor> rows;
  for (const auto& [type, n] : parts) {
    m.storage.push_back(random_blocks(type, n * cols, rng));
    m.q.parts.push_back({type, n, m.storage.back().data()});
    m.q.rows += n;
    at::Tensor d = at::empty({n, cols}, at::kFloat);
    dequantize_ggml(type, m.storage.back().data(), n * cols, d.data_ptr<float>());
    rows.push_back(d);
  }
  m.dense = at::cat(rows).to(at::kDouble);
  return m;
}

// Every element within float rounding of the double reference: |got - want| <= 1e-5 times the
// sum of the magnitudes of its terms (beta's term included).
void expect_close(const at::Tensor& got, const at::Tensor& want, const at::Tensor& magnitude,
                  const std::string& what) {
  const at::Tensor err = (got.to(at::kDouble) - want).abs();
  const at::Tensor bound = magnitude * 1e-5 + 1e-30;
  EXPECT_TRUE((err <= bound).all().item<bool>())
      << what << ": worst error / bound " << (err / bound).max().item<double>();
  EXPECT_GT(want.abs().max().item<double>(), 1e-3) << what;  // not a product of zeros
}

void check_products(const Matrix& W, int64_t M, const std::string& what, std::mt19937& rng) {
  const int64_t N = W.q.rows, K = W.q.cols;
  at::manual_seed(rng());
  // x · Wᵀ + 1 · C
  at::Tensor A = at::randn({M, K});
  at::Tensor C0 = at::randn({M, N});
  at::Tensor C = C0.clone();
  fused::qgemm_nt(M, A.data_ptr<float>(), K, W.q, 1.0f, C.data_ptr<float>(), N);
  const at::Tensor Ad = A.to(at::kDouble);
  expect_close(C, Ad.mm(W.dense.t()) + C0.to(at::kDouble),
               Ad.abs().mm(W.dense.abs().t()) + C0.to(at::kDouble).abs(), what + " x·Wᵀ");
  // g · W + 0.5 · C, into a wider buffer (ldc > cols)
  at::Tensor G = at::randn({M, N});
  at::Tensor D0 = at::randn({M, K + 3});
  at::Tensor D = D0.clone();
  fused::qgemm_nn(M, G.data_ptr<float>(), N, W.q, 0.5f, D.data_ptr<float>(), K + 3);
  const at::Tensor Gd = G.to(at::kDouble);
  const at::Tensor Dd = D0.to(at::kDouble).narrow(1, 0, K);
  expect_close(D.narrow(1, 0, K), Gd.mm(W.dense) + 0.5 * Dd,
               Gd.abs().mm(W.dense.abs()) + 0.5 * Dd.abs(), what + " g·W");
  EXPECT_TRUE(D.narrow(1, K, 3).equal(D0.narrow(1, K, 3))) << what << ": wrote past its columns";
  // beta = 0 ignores what C held (NaN included)
  at::Tensor E = at::full({M, N}, std::nanf(""));
  fused::qgemm_nt(M, A.data_ptr<float>(), K, W.q, 0.0f, E.data_ptr<float>(), N);
  expect_close(E, Ad.mm(W.dense.t()), Ad.abs().mm(W.dense.abs().t()), what + " x·Wᵀ, beta 0");
}

TEST(QuantMatmul, EveryBlockTypeEqualsDequantizeThenMultiply) {
  std::mt19937 rng(17);
  struct Case {
    uint32_t type;
    const char* name;
    int64_t cols;
  };
  // Rows of several blocks (K-quants: 256 values per block; Q8_0 / Q4_0: 32), row counts that
  // are odd and span several of qgemm's panels.
  const std::vector<Case> cases = {{8, "Q8_0", 32 * 7},  {2, "Q4_0", 32 * 5},
                                   {12, "Q4_K", 256 * 3}, {14, "Q6_K", 256 * 2},
                                   {1, "F16", 200},      {30, "BF16", 136},
                                   {0, "F32", 72}};
  for (const Case& c : cases) {
    ASSERT_TRUE(fused::quant_type_usable(c.type, c.cols)) << c.name;
    for (int64_t rows : {int64_t{1}, int64_t{37}, int64_t{301}}) {
      Matrix W = random_matrix({{c.type, rows}}, c.cols, rng);
      std::string lower = c.name;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(ch));
      EXPECT_EQ(W.q.type_summary(), lower);
      for (int64_t M : {int64_t{1}, int64_t{5}, int64_t{33}})
        check_products(W, M, std::string(c.name) + " " + std::to_string(rows) + "x" +
                                 std::to_string(c.cols) + ", M " + std::to_string(M),
                       rng);
    }
  }
}

TEST(QuantMatmul, RowPartsOfDifferentTypesActAsOneMatrix) {
  // A fused q/k/v matrix as llama.cpp's Q4_K_M stores it: q and k rows Q4_K, v rows Q6_K (and
  // an F32 part, as an unquantised tensor beside them would be).
  std::mt19937 rng(3);
  Matrix W = random_matrix({{12, 150}, {12, 70}, {14, 70}, {0, 9}}, 512, rng);
  EXPECT_EQ(W.q.rows, 299);
  EXPECT_EQ(W.q.type_summary(), "f32+q4_k+q6_k");
  EXPECT_EQ(W.q.bytes(), 220u * 2 * 144 + 70u * 2 * 210 + 9u * 512 * 4);
  for (int64_t M : {int64_t{1}, int64_t{7}, int64_t{64}})
    check_products(W, M, "mixed parts, M " + std::to_string(M), rng);
  // Rows read back (an embedding lookup) across the parts' boundaries.
  const std::vector<int64_t> ids = {0, 149, 150, 219, 220, 289, 290, 298, 150};
  at::Tensor out = at::empty({9, 512}, at::kFloat);
  fused::gather_rows(W.q, ids.data(), 9, out.data_ptr<float>());
  for (size_t i = 0; i < ids.size(); ++i)
    EXPECT_TRUE(out[static_cast<int64_t>(i)].to(at::kDouble).equal(W.dense[ids[i]])) << ids[i];
}

// The quantisers candor writes: values back within the block format's resolution.
TEST(QuantMatmul, QuantisersRoundTripWithinTheirResolution) {
  at::manual_seed(5);
  const at::Tensor x = at::randn({4096}) * 0.05;
  const float* xp = x.data_ptr<float>();
  struct Case {
    uint32_t type;
    double max_rel_rms;  // RMS error / RMS value
    double min_rel_rms;  // it is not lossless
  };
  for (const Case& c : {Case{8, 0.01, 1e-4}, Case{12, 0.12, 0.01}, Case{14, 0.03, 1e-3},
                        Case{30, 0.005, 1e-5}, Case{1, 0.001, 1e-6}}) {
    const std::string q = quantize_ggml(c.type, xp, x.numel());
    ASSERT_EQ(q.size(), ggml_nbytes(c.type, x.numel())) << ggml_type_name(c.type);
    at::Tensor y = at::empty({4096}, at::kFloat);
    dequantize_ggml(c.type, reinterpret_cast<const uint8_t*>(q.data()), x.numel(),
                    y.data_ptr<float>());
    const double rel = ((y - x).pow(2).mean().sqrt() / x.pow(2).mean().sqrt()).item<double>();
    EXPECT_LE(rel, c.max_rel_rms) << ggml_type_name(c.type);
    EXPECT_GE(rel, c.min_rel_rms) << ggml_type_name(c.type);
  }
  // Per value, Q8_0 is within half a step of its block's scale.
  const std::string q8 = quantize_ggml(8, xp, 32);
  at::Tensor y = at::empty({32}, at::kFloat);
  dequantize_ggml(8, reinterpret_cast<const uint8_t*>(q8.data()), 32, y.data_ptr<float>());
  const double step = x.narrow(0, 0, 32).abs().max().item<double>() / 127;
  EXPECT_LE((y - x.narrow(0, 0, 32)).abs().max().item<double>(), 0.5 * step * 1.01 + 1e-7);
  EXPECT_THROW(quantize_ggml(12, xp, 100), Error);  // not whole blocks
}

// ---- whole models ---------------------------------------------------------------------------

std::string fixture(const std::string& name) {
  return std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/" + name;
}

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e9;
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-30);
}

// Loads `path` twice (kept quantized, dequantised at load) and compares the full forward of a
// batch of token ids (every position's logits, a padded row among them) and the fused against
// the libtorch path of the quantized model.
void expect_same_model(const std::string& path, const std::string& kept_types) {
  SCOPED_TRACE(path);
  auto q = load_model(path);
  LoadOptions dense_options;
  dense_options.dequantize = true;
  auto d = load_model(path, dense_options);
  EXPECT_NE(q->forward_path().find("weights kept " + kept_types), std::string::npos)
      << q->forward_path();
  EXPECT_EQ(d->forward_path().find("weights kept"), std::string::npos) << d->forward_path();
  const int64_t V = q->config().vocab_size;
  at::manual_seed(11);
  at::Tensor ids = at::randint(3, V, {2, 19}, at::kLong);
  at::Tensor mask = at::ones({2, 19}, at::kBool);
  mask[1].narrow(0, 0, 4).fill_(false);  // left padding on the second row
  at::NoGradGuard ng;
  ForwardArgs a;
  a.tokens = ids;
  a.attention_mask = mask;
  at::Tensor lq = q->forward(a), ld = d->forward(a);
  EXPECT_LE(rel_diff(lq, ld), 1e-5);
  EXPECT_GT(ld.abs().max().item<double>(), 1e-3);
  ForwardArgs r = a;
  r.libtorch_path = true;  // dequantises the quantized model's matrices once
  EXPECT_LE(rel_diff(q->forward(r), ld), 1e-5);
  EXPECT_NE(q->forward_path().find("and as float32 for the libtorch path"), std::string::npos);
  EXPECT_LE(rel_diff(q->forward(a), ld), 1e-5);  // the fused path still reads the blocks
}

TEST(QuantModel, KQuantFixtureKeptQuantizedEqualsDequantized) {
  expect_same_model(fixture("gguf/llama_q4_k_m.gguf"), "q4_k+q6_k");
}

TEST(QuantModel, MixedTypesFixtureKeptQuantizedEqualsDequantized) {
  // Q4_0, Q8_0, F16 and BF16 matrices.
  expect_same_model(fixture("gguf/llama_mixed.gguf"), "bf16+f16+q4_0+q8_0");
}

TEST(QuantModel, Gpt2KQuantFixtureKeptQuantizedEqualsDequantized) {
  // Learned positions, LayerNorm and biases around the quantized products.
  expect_same_model(fixture("gguf/gpt2_q4_k_m.gguf"), "q4_k+q6_k");
}

constexpr const char* kStories = "models/stories260K";

TEST(QuantModel, Stories260KAsQ8_0KeptQuantizedEqualsDequantizedThroughTheWholeForward) {
  CANDOR_REQUIRE_SHARED(kStories);
  const std::string dir = testing::temp_dir();
  const std::string path = dir + "/s8.gguf";
  save_gguf(testing::stories260k(), path, "q8_0");
  expect_same_model(path, "q8_0");

  auto q = load_model(path);
  LoadOptions o;
  o.dequantize = true;
  auto d = load_model(path, o);
  // Greedy generation (prefill, then one token at a time through the KV cache): the same text.
  std::vector<TokenId> prompt = q->tokenizer().encode("Once upon a time", true, false);
  GenerateOptions g;
  g.max_new_tokens = 40;
  EXPECT_EQ(generate(*q, prompt, g).text, generate(*d, prompt, g).text);
  EXPECT_EQ(q->forward_path().find("as float32"), std::string::npos)
      << "generation dequantised the matrices: " << q->forward_path();

  // Gradients (libtorch path, the matrices dequantised when first needed) equal the
  // dequantised model's.
  std::vector<TokenId> ids = q->tokenizer().encode("The cat sat on the mat.", true, false);
  at::Tensor t = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
  auto grad_of = [&](const Model& m) {
    at::Tensor e = m.embed(t).detach().requires_grad_(true);
    ForwardArgs a;
    a.embeddings = e;
    at::Tensor logits = m.forward(a);
    logits.select(1, -1).select(1, 5).sum().backward();
    return e.grad().clone();
  };
  const at::Tensor gq = grad_of(*q), gd = grad_of(*d);
  EXPECT_LE(rel_diff(gq, gd), 1e-5);
  EXPECT_GT(gd.abs().max().item<double>(), 0.0);
}

TEST(QuantModel, Stories260KKeptQuantizedEmbedsAndCountsItsParameters) {
  CANDOR_REQUIRE_SHARED(kStories);
  const std::string path = testing::temp_dir() + "/s8.gguf";
  save_gguf(testing::stories260k(), path, "q8_0");
  auto q = load_model(path);
  LoadOptions o;
  o.dequantize = true;
  auto d = load_model(path, o);
  at::Tensor t = at::tensor(std::vector<int64_t>{1, 5, 300, 511, 7}, at::kLong).view({1, 5});
  EXPECT_TRUE(q->embed(t).equal(d->embed(t)));  // rows dequantised one by one: same values
  EXPECT_EQ(q->n_params(), d->n_params());
  // Counted without dequantising.
  EXPECT_EQ(q->forward_path().find("as float32"), std::string::npos) << q->forward_path();
  EXPECT_TRUE(q->embedding_matrix().equal(d->embedding_matrix()));
}

// A clone is for changing its weights (the sanity checks redraw them in place): it keeps no
// quantized blocks, so its fused path sees the change.
TEST(QuantModel, CloneHoldsTensorsOnlyAndItsFusedPathSeesChangedWeights) {
  auto q = load_model(fixture("gguf/llama_q4_k_m.gguf"));
  std::unique_ptr<Model> c = q->clone();
  EXPECT_EQ(c->forward_path().find("weights kept"), std::string::npos) << c->forward_path();
  EXPECT_NE(q->forward_path().find("weights kept"), std::string::npos) << q->forward_path();
  at::Tensor ids = at::tensor(std::vector<int64_t>{1, 7, 30, 19, 4}, at::kLong).view({1, 5});
  at::NoGradGuard ng;
  EXPECT_LE(rel_diff(c->forward_tokens(ids), q->forward_tokens(ids)), 1e-5);
  for (auto& [name, t] : c->named_parameters()) {
    if (name.find("w13") != std::string::npos) t.mul_(0.5);
  }
  ForwardArgs a;
  a.tokens = ids;
  ForwardArgs r = a;
  r.libtorch_path = true;
  const at::Tensor fused = c->forward(a), reference = c->forward(r);
  EXPECT_LE(rel_diff(fused, reference), 1e-5);
  EXPECT_GT(rel_diff(fused, q->forward_tokens(ids)), 1e-3);  // the change is seen
}

// `candor info` names the path and the kept types.
TEST(QuantModel, InfoSaysWhichWeightsStayQuantized) {
  testing::CliRun r = testing::run_cli("info --model " + fixture("gguf/llama_q4_k_m.gguf"));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("weights kept q4_k+q6_k"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("as float32"), std::string::npos) << "said after dequantising: " << r.out;
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// ---- the backward reads the blocks ----------------------------------------------------------

// The fused gradient (forward_with_tape + backward) of a model loaded from `path` with its
// matrices kept in blocks equals the same file dequantised at load, and the kept model makes no
// float32 copy of its matrices for it (its own accounting, forward_path(), says so).
void expect_same_gradients(const std::string& path, const std::string& kept_types) {
  SCOPED_TRACE(path);
  auto q = load_model(path);
  LoadOptions dense_options;
  dense_options.dequantize = true;
  auto d = load_model(path, dense_options);
  ASSERT_NE(q->forward_path().find("weights kept " + kept_types), std::string::npos)
      << q->forward_path();
  ASSERT_NE(q->gradient_path().find("fused"), std::string::npos) << q->gradient_path();
  const int64_t V = q->config().vocab_size;
  at::manual_seed(5);
  at::Tensor ids = at::randint(3, V, {2, 23}, at::kLong);
  at::Tensor mask = at::ones({2, 23}, at::kBool);
  mask[1].narrow(0, 0, 3).fill_(false);  // left padding on the second row
  at::NoGradGuard ng;
  ForwardArgs a;
  a.embeddings = d->embed(ids);
  a.attention_mask = mask;
  at::Tensor lq, ld;
  auto tq = q->forward_with_tape(a, &lq);
  auto td = d->forward_with_tape(a, &ld);
  ASSERT_TRUE(tq && td);
  EXPECT_LE(rel_diff(lq, ld), 1e-5);
  const at::Tensor dlogits = at::randn(ld.sizes(), at::kFloat);
  const at::Tensor gq = tq->backward(dlogits), gd = td->backward(dlogits);
  EXPECT_LE(rel_diff(gq, gd), 1e-5);
  EXPECT_GT(gd.abs().max().item<double>(), 1e-6);
  // A lean tape (block inputs only) recomputes q, k, v and the pre-activations through the
  // blocks in the backward: the same gradients, still no float32 copy.
  {
    const int64_t budget = fused::tape_budget();
    fused::set_tape_budget(0);
    at::Tensor ll;
    auto tl = q->forward_with_tape(a, &ll);
    fused::set_tape_budget(budget);
    ASSERT_TRUE(tl);
    EXPECT_LE(rel_diff(tl->backward(dlogits), gq), 1e-5) << "lean tape";
  }
  // One target logit at the last position (saliency, integrated gradients): the output
  // matrix's backward reads the one row it names from the blocks, the last layer runs at one
  // row per sequence, on the full and on the lean tape.
  for (int64_t budget : {fused::tape_budget(), int64_t{0}}) {
    const int64_t kept = fused::tape_budget();
    fused::set_tape_budget(budget);
    ForwardArgs o = a;
    o.last_only = true;
    at::Tensor l1, l2;
    auto t1 = q->forward_with_tape(o, &l1);
    auto t2 = d->forward_with_tape(o, &l2);
    fused::set_tape_budget(kept);
    ASSERT_TRUE(t1 && t2);
    at::Tensor one = at::zeros(l2.sizes(), at::kFloat);
    one.select(-1, 7).fill_(1.0f);
    const at::Tensor g1 = t1->backward(one), g2 = t2->backward(one);
    EXPECT_LE(rel_diff(g1, g2), 1e-5) << "budget " << budget;
    EXPECT_GT(g2.abs().max().item<double>(), 1e-7);
  }
  EXPECT_EQ(q->forward_path().find("as float32"), std::string::npos)
      << "the gradient pass made a float32 copy: " << q->forward_path();
  // And against libtorch autograd on the dequantised model (which the kept one must match).
  at::AutoGradMode grad(true);
  at::Tensor e = a.embeddings.detach().clone().requires_grad_(true);
  ForwardArgs r = a;
  r.embeddings = e;
  r.libtorch_path = true;
  (d->forward(r) * dlogits).sum().backward();
  EXPECT_LE(rel_diff(gq, e.grad()), 1e-4);
}

TEST(QuantBackward, Q4KAndQ6KFixtureReadsItsBlocks) {
  expect_same_gradients(fixture("gguf/llama_q4_k_m.gguf"), "q4_k+q6_k");
}

TEST(QuantBackward, Q8_0AndBf16FixtureReadsItsBlocks) {
  expect_same_gradients(fixture("gguf/llama_mixed.gguf"), "bf16+f16+q4_0+q8_0");
}

TEST(QuantBackward, Stories260KInEveryTypeReadsItsBlocks) {
  CANDOR_REQUIRE_SHARED(kStories);
  const std::string dir = testing::temp_dir();
  // Q8_0 and BF16 (stories260K's rows of 64 and 172 values are not whole K-quant blocks of 256:
  // the Q4_K + Q6_K fixture above covers those).
  for (const char* type : {"q8_0", "bf16"}) {
    SCOPED_TRACE(type);
    const std::string path = dir + "/s_" + type + ".gguf";
    save_gguf(testing::stories260k(), path, type);
    auto probe = load_model(path);
    const std::string fp = probe->forward_path();
    const size_t at = fp.find("weights kept ");
    ASSERT_NE(at, std::string::npos) << fp;
    const std::string kept = fp.substr(at + 13, fp.find_first_of(" ,;)", at + 13) - at - 13);
    EXPECT_NE(kept.find(type), std::string::npos) << fp;
    expect_same_gradients(path, kept);
  }
}

}  // namespace
}  // namespace candor
