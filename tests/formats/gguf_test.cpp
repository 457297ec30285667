// GGUF: dequantisation of every readable type against values computed from the block layouts by
// scripts/make_reference_models.py, llama (Q8_0) and gpt2 files against reference logits,
// stories260K written as GGUF F32 (golden text byte for byte) and Q8_0 (logit tolerance), and
// clear errors for a wrong magic or version and for truncation.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "candor/error.h"
#include "candor/generate.h"
#include "candor/model.h"
#include "models/formats/gguf.h"
#include "test_util.h"

namespace candor {
namespace {

std::string fixture(const std::string& name) {
  return std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(Gguf, EveryTypeDequantisesToTheReferenceValues) {
  auto g = GgufFile::open(fixture("gguf/types.gguf"));
  EXPECT_EQ(g->version(), 3u);
  std::ifstream f(fixture("gguf/types.json"));
  nlohmann::json ref = nlohmann::json::parse(f);
  for (const char* name : {"q4_0", "q8_0", "q4_k", "q6_k", "f32", "f16", "bf16"}) {
    at::Tensor got = g->load(name).flatten().to(at::kDouble);
    at::Tensor want = at::tensor(ref[name].get<std::vector<double>>(), at::kDouble);
    ASSERT_EQ(got.numel(), want.numel()) << name;
    EXPECT_LE((got - want).abs().max().item<double>(), 1e-6) << name;
    EXPECT_GT(want.abs().max().item<double>(), 1e-3) << name;
  }
  EXPECT_EQ(g->shape("q4_k"), (std::vector<int64_t>{2, 256}));
}

double max_error(const Model& m, const std::string& json_path) {
  std::ifstream f(json_path);
  nlohmann::json j = nlohmann::json::parse(f);
  std::vector<int64_t> ids = j["input_ids"].get<std::vector<int64_t>>();
  std::vector<double> flat;
  for (const auto& row : j["logits"])
    for (double v : row) flat.push_back(v);
  at::NoGradGuard g;
  at::Tensor out = m.forward_tokens(at::tensor(ids, at::kLong).unsqueeze(0))[0].to(at::kDouble);
  at::Tensor want = at::tensor(flat, at::kDouble).view(out.sizes());
  return (out - want).abs().max().item<double>();
}

TEST(Gguf, LlamaQ8_0MatchesReferenceLogits) {
  auto m = load_model(fixture("gguf/llama_q8_0.gguf"));
  EXPECT_EQ(m->config().source_format, "gguf");
  EXPECT_EQ(m->config().dtype, "f32+q8_0");
  EXPECT_FALSE(m->config().tied_embeddings);
  EXPECT_LE(max_error(*m, fixture("gguf/llama_q8_0.json")), 1e-4);
}

TEST(Gguf, Gpt2MatchesReferenceLogitsAndNamesItsTokenizer) {
  auto m = load_model(fixture("gguf/gpt2.gguf"));
  EXPECT_EQ(m->config().architecture, "gpt2");
  EXPECT_LE(max_error(*m, fixture("models/gpt2/reference.json")), 1e-4);
  EXPECT_EQ(m->tokenizer().kind(), "none");
  try {
    m->tokenizer().encode("hi");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("gpt2"), std::string::npos) << e.what();
  }
}

constexpr const char* kGolden = "models/stories260K/golden/gen_t0_n64_once_upon_a_time.txt";

std::string greedy_text(const Model& model) {
  std::vector<TokenId> ids = model.tokenizer().encode("Once upon a time", true, false);
  GenerateOptions o;
  o.max_new_tokens = 64 - (static_cast<int64_t>(ids.size()) - 1);
  GenerateResult r = generate(model, ids, o);
  return r.prompt_text + r.text + "\n";
}

TEST(Gguf, Stories260KRoundTripsF32ExactlyAndQ8_0WithinTolerance) {
  CANDOR_REQUIRE_SHARED(kGolden);
  const Model& orig = testing::stories260k();
  const std::string dir = testing::temp_dir();
  save_gguf(orig, dir + "/s.gguf", "f32");
  auto f32 = load_model(dir + "/s.gguf");
  EXPECT_EQ(f32->tokenizer().kind(), "llama2c");
  EXPECT_EQ(f32->n_params(), orig.n_params());
  EXPECT_EQ(greedy_text(*f32), read_file(testing::shared_path(kGolden)));
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  EXPECT_EQ(f32->tokenizer().encode(text), orig.tokenizer().encode(text));

  // GGUF -> Hugging Face folder: the vocabulary from the metadata is written as tokenizer.bin.
  save_hf_folder(*f32, dir + "/from_gguf");
  EXPECT_EQ(greedy_text(*load_model(dir + "/from_gguf")), read_file(testing::shared_path(kGolden)));

  save_gguf(orig, dir + "/s8.gguf", "q8_0");
  auto q8 = load_model(dir + "/s8.gguf");
  EXPECT_EQ(q8->config().dtype, "f32+q8_0");
  std::vector<TokenId> ids = orig.tokenizer().encode(text);
  at::NoGradGuard g;
  at::Tensor a = orig.logits(ids), b = q8->logits(ids);
  const double err = (a - b).abs().max().item<double>();
  const double mean_err = (a - b).abs().mean().item<double>();
  const double range = a.abs().max().item<double>();
  std::cout << "Q8_0 vs F32 logits: max abs " << err << ", mean abs " << mean_err
            << ", max |logit| " << range << "\n";
  // Stated tolerance: Q8_0 moves stories260K's logits by at most 3% of the largest logit, 0.5%
  // on average.
  EXPECT_LE(err, 0.03 * range);
  EXPECT_LE(mean_err, 0.005 * range);
  EXPECT_GT(err, 0.0);  // it really is quantised
  EXPECT_GT((a.argmax(-1) == b.argmax(-1)).to(at::kFloat).mean().item<double>(), 0.9);
}

Error open_error(const std::string& path) {
  try {
    load_model(path);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "loading '" << path << "' did not fail";
  return Error(ErrorCode::kInternal, "");
}

TEST(GgufErrors, WrongMagicVersionAndTruncation) {
  const std::string src = fixture("gguf/llama_q8_0.gguf");
  std::string data = read_file(src);
  const std::string dir = testing::temp_dir();
  {
    std::string bad = data;
    bad[0] = 'X';
    std::ofstream(dir + "/magic.gguf", std::ios::binary) << bad;
    Error e = open_error(dir + "/magic.gguf");
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("magic"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("magic.gguf"), std::string::npos) << e.what();
  }
  {
    std::string bad = data;
    bad[4] = 9;
    std::ofstream(dir + "/version.gguf", std::ios::binary) << bad;
    Error e = open_error(dir + "/version.gguf");
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("version 9"), std::string::npos) << e.what();
  }
  for (long n : {10L, 300L, static_cast<long>(data.size()) - 100}) {
    const std::string cut = dir + "/cut" + std::to_string(n) + ".gguf";
    testing::copy_prefix(src, cut, n);
    Error e = open_error(cut);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(cut), std::string::npos) << e.what();
  }
}

TEST(GgufErrors, UnreadableTypeIsNamedAtLoad) {
  // Type id 3 (Q4_1) is a valid ggml type that candor does not dequantise.
  std::string data = read_file(fixture("gguf/types.gguf"));
  const std::string name = "q8_0";
  size_t pos = data.find(name + std::string("\x02\x00\x00\x00", 4));
  ASSERT_NE(pos, std::string::npos);
  // After the name: n_dims (u32) = 2, dims (2 x u64), then the type (u32).
  size_t type_at = pos + name.size() + 4 + 16;
  ASSERT_EQ(data[type_at], 8);
  data[type_at] = 3;  // Q4_1 blocks are 20 bytes: the span shrinks, still in range
  const std::string path = testing::temp_dir() + "/q41.gguf";
  std::ofstream(path, std::ios::binary) << data;
  auto g = GgufFile::open(path);
  try {
    g->load(name);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("Q4_1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace candor
