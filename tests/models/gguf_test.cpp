// GGUF: dequantisation of every readable type against values computed from the block layouts by
// scripts/make_reference_models.py, llama (Q8_0, mixed, Q4_K + Q6_K) and gpt2 (F32, Q4_K + Q6_K
// with its byte-level BPE vocabulary in the metadata) files against reference logits,
// stories260K written as GGUF F32 (golden text byte for byte) and Q8_0 (logit tolerance), and
// clear errors for a wrong magic or version and for truncation.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <algorithm>
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

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

// The model's logits for the reference's input ids: [T, V] double.
at::Tensor model_logits(const Model& m, const nlohmann::json& j) {
  std::vector<int64_t> ids = j["input_ids"].get<std::vector<int64_t>>();
  at::NoGradGuard g;
  return m.forward_tokens(at::tensor(ids, at::kLong).unsqueeze(0))[0].to(at::kDouble);
}

at::Tensor reference_logits(const nlohmann::json& j, const char* key = "logits") {
  std::vector<double> flat;
  for (const auto& row : j[key])
    for (double v : row) flat.push_back(v);
  return at::tensor(flat, at::kDouble).view({static_cast<int64_t>(j[key].size()), -1});
}

double max_error(const Model& m, const std::string& json_path) {
  nlohmann::json j = read_json(json_path);
  return (model_logits(m, j) - reference_logits(j)).abs().max().item<double>();
}

TEST(Gguf, LlamaQ8_0MatchesReferenceLogits) {
  auto m = load_model(fixture("gguf/llama_q8_0.gguf"));
  EXPECT_EQ(m->config().source_format, "gguf");
  EXPECT_EQ(m->config().dtype, "f32+q8_0");
  EXPECT_FALSE(m->config().tied_embeddings);
  EXPECT_LE(max_error(*m, fixture("gguf/llama_q8_0.json")), 1e-4);
}

// Q4_0, Q8_0, F16 and BF16 weights in one model: the reference logits are computed from the
// dequantised values, so the tolerance is that of F32 (the quantisation itself moves this
// fixture's logits by up to 0.6 from the F32 model's, recorded in the JSON).
TEST(Gguf, LlamaWithMixedTypesMatchesReferenceLogits) {
  auto m = load_model(fixture("gguf/llama_mixed.gguf"));
  EXPECT_EQ(m->config().dtype, "bf16+f16+f32+q4_0+q8_0");
  EXPECT_LE(max_error(*m, fixture("gguf/llama_mixed.json")), 1e-4);
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
    // The fixture declares a gpt2 tokenizer but stores no tokens.
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("gpt2 tokenizer without tokens"), std::string::npos)
        << e.what();
  }
}

// Q4_K and Q6_K through whole-model logits. The fixtures mix the two k-quants as llama.cpp's
// Q4_K_M does (Q6_K for the output, value and down projections, Q4_K for the other matrices,
// rows of 256 values); scripts/make_reference_models.py quantises a random float32 model with
// its own Python implementation of the block formats and computes the reference logits from the
// dequantised weights. Tolerances: 1e-4 against that reference (the quantisation is then not
// part of the comparison), and against the float32 model's logits a max abs difference of at
// most 20% and a mean of at most 5% of the largest |logit| (these random 4-bit models measure
// 14% and 3%; trained models lose far less).
void expect_kquant_reference(const Model& m, const std::string& json_path) {
  nlohmann::json j = read_json(json_path);
  EXPECT_EQ(j["types"], (nlohmann::json{"F32", "Q4_K", "Q6_K"}));
  at::Tensor got = model_logits(m, j), want = reference_logits(j);
  at::Tensor f32 = reference_logits(j, "logits_f32");
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LE((got - want).abs().max().item<double>(), 1e-4) << json_path;
  const double range = f32.abs().max().item<double>();
  const double max_abs = (got - f32).abs().max().item<double>();
  const double mean_abs = (got - f32).abs().mean().item<double>();
  std::cout << json_path << ": vs float32 logits max abs " << max_abs << ", mean abs " << mean_abs
            << ", max |logit| " << range << "\n";
  EXPECT_LE(max_abs, 0.2 * range);
  EXPECT_LE(mean_abs, 0.05 * range);
  EXPECT_GT(max_abs, 100 * 1e-4);  // the weights really are quantised
}

TEST(Gguf, LlamaQ4KAndQ6KMatchReferenceLogits) {
  auto m = load_model(fixture("gguf/llama_q4_k_m.gguf"));
  EXPECT_EQ(m->config().dtype, "f32+q4_k+q6_k");
  EXPECT_EQ(m->config().dim, 256);
  expect_kquant_reference(*m, fixture("gguf/llama_q4_k_m.json"));
}

TEST(Gguf, Gpt2Q4KAndQ6KWithItsTokenizerMatchReferenceLogits) {
  auto m = load_model(fixture("gguf/gpt2_q4_k_m.gguf"));
  EXPECT_EQ(m->config().architecture, "gpt2");
  EXPECT_EQ(m->config().dtype, "f32+q4_k+q6_k");
  EXPECT_TRUE(m->config().tied_embeddings);
  expect_kquant_reference(*m, fixture("gguf/gpt2_q4_k_m.json"));
  // The reference's input ids are the generator's byte-level BPE encoding of its prompt.
  nlohmann::json j = read_json(fixture("gguf/gpt2_q4_k_m.json"));
  std::vector<TokenId> ids = j["input_ids"].get<std::vector<TokenId>>();
  std::vector<TokenId> got = m->tokenizer().encode(j["prompt"].get<std::string>(), false, false);
  ASSERT_GE(got.size(), ids.size());
  EXPECT_EQ(std::vector<TokenId>(got.begin(), got.begin() + ids.size()), ids);
}

// The gpt2 (byte-level BPE) vocabulary stored in the GGUF metadata encodes a varied text
// (English, contractions, digits, whitespace runs, tabs, CRLF, accents, Chinese, emoji, the
// special token) to the same ids as the Hugging Face tokenizer.json of the same vocabulary and
// as the generator's Python BPE, and decodes back to the text (less the special token).
TEST(Gguf, Gpt2MetadataTokenizerEncodesLikeTokenizerJson) {
  auto m = load_model(fixture("gguf/gpt2_q4_k_m.gguf"));
  const Tokenizer& tok = m->tokenizer();
  EXPECT_EQ(tok.kind(), "gguf-gpt2");
  EXPECT_EQ(tok.vocab_size(), 320);
  EXPECT_EQ(tok.eos_id(), 319);
  auto hf = load_hf_tokenizer(fixture("gguf/gpt2_q4_k_m_tokenizer.json"));
  nlohmann::json j = read_json(fixture("gguf/gpt2_q4_k_m_tokens.json"));
  const std::string text = j["text"].get<std::string>();
  const std::vector<TokenId> want = j["ids"].get<std::vector<TokenId>>();
  const std::vector<TokenId> got = tok.encode(text, false, false);
  EXPECT_EQ(got, hf->encode(text, false, false));
  EXPECT_EQ(got, want);
  // Decoding gives the text back, without the special token (decode drops specials).
  std::string plain = text;
  plain.erase(plain.find("<|endoftext|>"), 13);
  EXPECT_EQ(tok.decode(got), plain);
  EXPECT_EQ(hf->decode(got), plain);
  // Not trivially bytes: merged tokens and the special token occur.
  EXPECT_LT(got.size(), text.size());
  EXPECT_NE(std::find(got.begin(), got.end(), 319), got.end());
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

  // GGUF -> Hugging Face folder: the vocabulary from the metadata is written as tokenizer.json.
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
