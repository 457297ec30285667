// The GPT-2 blocks' vector kernels (LayerNorm, GELU) at model level: the GPT-2 fixture with
// its tanh GELU, and the same weights with the exact (erf) GELU (config.json's
// "activation_function": "gelu", which no fixture has), through the fused forward and
// backward, against the libtorch path and autograd (logits within 1e-5, gradients to the
// embeddings within 1e-4 of the largest), on the vector kernels and on the scalar loops.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "candor/model.h"
#include "models/fused/vec.h"
#include "test_util.h"

namespace candor {
namespace {

namespace fs = std::filesystem;

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e9;
  const double scale = std::max(b.abs().max().item<double>(), 1e-30);
  return (a - b).abs().max().item<double>() / scale;
}

// The GPT-2 fixture, copied with its activation set to `activation`.
std::string gpt2_with(const std::string& activation) {
  const fs::path src = fs::path(CANDOR_SOURCE_DIR) / "tests/fixtures/models/gpt2";
  const fs::path dir = fs::path(testing::temp_dir()) / ("gpt2_" + activation);
  fs::create_directories(dir);
  fs::copy_file(src / "model.safetensors", dir / "model.safetensors",
                fs::copy_options::overwrite_existing);
  std::ifstream in(src / "config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string config = ss.str();
  const std::string key = "\"gelu_new\"";
  const size_t at = config.find(key);
  EXPECT_NE(at, std::string::npos) << config;
  if (at != std::string::npos) config.replace(at, key.size(), "\"" + activation + "\"");
  std::ofstream(dir / "config.json") << config;
  return dir.string();
}

void check(const Model& m) {
  ASSERT_EQ(m.gradient_path().rfind("fused", 0), 0u) << m.gradient_path();
  at::manual_seed(23);
  const int64_t T = 29;  // not a multiple of 8
  at::Tensor ids = at::randint(3, m.config().vocab_size, {2, T}, at::kLong);
  ForwardArgs a;
  {
    at::NoGradGuard ng;
    // Scaled embeddings, so that the MLP's pre-activations reach GELU's tails.
    a.embeddings = m.embed(ids) * 8.0;
  }
  at::Tensor logits;
  std::unique_ptr<GradientTape> tape = m.forward_with_tape(a, &logits);
  ASSERT_TRUE(tape != nullptr);
  const at::Tensor dlogits = at::randn(logits.sizes(), at::kFloat);
  const at::Tensor fused = tape->backward(dlogits);
  at::Tensor plain;
  {
    at::NoGradGuard ng;
    plain = m.forward(a);  // the no-grad fused forward
  }
  at::AutoGradMode grad(true);
  ForwardArgs r = a;
  at::Tensor emb = a.embeddings.detach().clone().requires_grad_(true);
  r.embeddings = emb;
  r.libtorch_path = true;
  at::Tensor ref_logits = m.forward(r);
  (ref_logits * dlogits).sum().backward();
  EXPECT_LE(rel_diff(logits, ref_logits.detach()), 1e-5);
  EXPECT_LE(rel_diff(plain, ref_logits.detach()), 1e-5);
  EXPECT_LE(rel_diff(fused, emb.grad()), 1e-4);
  EXPECT_GT(emb.grad().abs().max().item<double>(), 0.0);
}

TEST(FusedGpt2Blocks, TanhAndExactGeluMatchLibtorchOnVectorAndScalarKernels) {
  for (const std::string act : {"gelu_new", "gelu"}) {
    SCOPED_TRACE(act);
    auto m = load_model(gpt2_with(act));
    EXPECT_EQ(m->config().activation,
              act == "gelu" ? Activation::kGelu : Activation::kGeluTanh);
    for (bool simd : {true, false}) {
      SCOPED_TRACE(simd ? "vector kernels" : "scalar kernels");
      fused::vec::set_simd(simd);
      check(*m);
    }
    fused::vec::set_simd(true);
  }
}

}  // namespace
}  // namespace candor
