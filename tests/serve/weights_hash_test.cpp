// The service's weights hash over a quantized model: the stored blocks are digested, no float32
// copy is made (the model's own account, forward_path(), says when one exists), the digest is
// stable across loads and differs from the dequantised model's; for float models it is the
// digest over named_parameters() it always was.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <sstream>
#include <string>

#include "candor/model.h"
#include "candor/serve.h"
#include "candor/stored_weights.h"

namespace candor {
namespace {

std::string fixture(const std::string& name) {
  return std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/gguf/" + name;
}

bool has_float_copy(const Model& m) {
  return m.forward_path().find("as float32") != std::string::npos;
}

// The digest the service computed before quantized weights were kept: over named_parameters().
std::string named_parameters_hash(const Model& m) {
  std::string all;
  for (const auto& [name, t] : m.named_parameters()) {
    at::Tensor c = t.detach().contiguous();
    std::ostringstream head;
    head << name << ':' << c.sizes() << ':' << c.scalar_type() << ';';
    all += head.str();
    all.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  }
  return serve::sha256_hex(all);
}

TEST(WeightsHash, AQ4KModelIsHashedOverItsBlocksWithoutAFloatCopy) {
  const std::string path = fixture("llama_q4_k_m.gguf");
  auto a = load_model(path);
  ASSERT_NE(a->forward_path().find("weights kept q4_k+q6_k"), std::string::npos)
      << a->forward_path();
  ASSERT_FALSE(has_float_copy(*a));
  const std::string h1 = serve::weights_hash(*a);
  EXPECT_EQ(h1.size(), 64u);
  EXPECT_FALSE(has_float_copy(*a)) << "weights_hash dequantised the model: " << a->forward_path();

  // The blocks are what is visited: their bytes add up to the kept blocks (no f32 tensor of a
  // quantized matrix is among them).
  size_t quant_bytes = 0, parts = 0;
  visit_stored_weights(*a, [&](const std::string& name, const std::string& layout, const void*,
                               size_t bytes) {
    if (layout.rfind("Q4_K[", 0) == 0 || layout.rfind("Q6_K[", 0) == 0) {
      quant_bytes += bytes;
      ++parts;
    }
    EXPECT_FALSE(name.empty());
  });
  EXPECT_GT(parts, 0u);
  EXPECT_GT(quant_bytes, 0u);

  // Stable across loads.
  auto b = load_model(path);
  EXPECT_EQ(serve::weights_hash(*b), h1);
  // Unchanged once the libtorch path has made its float32 copy (the blocks are still hashed).
  {
    at::NoGradGuard ng;
    ForwardArgs args;
    args.tokens = at::tensor(std::vector<int64_t>{1, 5, 9, 3}, at::kLong).unsqueeze(0);
    args.libtorch_path = true;
    b->forward(args);
  }
  ASSERT_TRUE(has_float_copy(*b));
  EXPECT_EQ(serve::weights_hash(*b), h1);

  // The dequantised model (its float32 source as far as the file tells) hashes differently, and
  // as a float model its digest is the one over named_parameters().
  LoadOptions dense;
  dense.dequantize = true;
  auto d = load_model(path, dense);
  const std::string hd = serve::weights_hash(*d);
  EXPECT_NE(hd, h1);
  EXPECT_EQ(hd, named_parameters_hash(*d));
  // A different quantization of the same model hashes differently too.
  auto q8 = load_model(fixture("llama_q8_0.gguf"));
  EXPECT_NE(serve::weights_hash(*q8), h1);
}

TEST(WeightsHash, AFloatModelKeepsItsNamedParametersDigest) {
  auto m = load_model(fixture("gpt2.gguf"));
  EXPECT_EQ(serve::weights_hash(*m), named_parameters_hash(*m));
  auto m2 = load_model(fixture("gpt2.gguf"));
  EXPECT_EQ(serve::weights_hash(*m2), serve::weights_hash(*m));
}

}  // namespace
}  // namespace candor
