// Hugging Face folders against independent references: tiny random checkpoints of every
// architecture (tests/fixtures/models, written by scripts/make_reference_models.py with a plain
// PyTorch implementation of each architecture) must reproduce the reference logits; padding,
// the KV cache and conversion back to a folder must not change them.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "candor/error.h"
#include "candor/model.h"
#include "models/formats/hf.h"
#include "test_util.h"

namespace candor {
namespace {

std::string fixture(const std::string& name) {
  return std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/models/" + name;
}

struct Reference {
  std::vector<int64_t> ids;
  at::Tensor logits;  // [T, V] or [n_labels]
  double tolerance = 0;
};

Reference read_reference(const std::string& name) {
  std::ifstream f(fixture(name) + "/reference.json");
  nlohmann::json j = nlohmann::json::parse(f);
  Reference r;
  r.ids = j["input_ids"].get<std::vector<int64_t>>();
  r.tolerance = j["tolerance"].get<double>();
  std::vector<double> flat;
  int64_t rows = 0;
  if (j["logits"][0].is_array()) {
    for (const auto& row : j["logits"]) {
      for (double v : row) flat.push_back(v);
      ++rows;
    }
    r.logits = at::tensor(flat, at::kDouble).view({rows, -1});
  } else {
    r.logits = at::tensor(j["logits"].get<std::vector<double>>(), at::kDouble);
  }
  return r;
}

// Largest absolute difference between the model's logits and the reference.
double max_error(const Model& model, const Reference& r) {
  at::NoGradGuard g;
  at::Tensor out = model.forward_tokens(at::tensor(r.ids, at::kLong).unsqueeze(0))[0];
  if (!model.is_causal()) {
    // A classifier repeats the sequence's class logits at every position.
    EXPECT_EQ((out - out[0]).abs().max().item<double>(), 0.0);
    out = out[0];
  }
  EXPECT_EQ(out.sizes(), r.logits.sizes());
  return (out.to(at::kDouble) - r.logits).abs().max().item<double>();
}

class ReferenceLogits : public ::testing::TestWithParam<const char*> {};

TEST_P(ReferenceLogits, MatchWithinStatedTolerance) {
  const std::string name = GetParam();
  Reference r = read_reference(name);
  auto model = load_model(fixture(name));
  EXPECT_EQ(model->config().source_format, "safetensors");
  double err = max_error(*model, r);
  EXPECT_LE(err, r.tolerance) << name;
  // The same check fails for a wrong model: the reference is not trivially met.
  EXPECT_GT(r.logits.abs().max().item<double>(), 100 * r.tolerance);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceLogits,
                         ::testing::Values("llama", "llama_f16", "llama_bf16", "llama_sharded",
                                           "llama3_scaled", "mistral_linear", "mistral_window",
                                           "qwen2", "qwen2_window", "gpt2", "gpt2_f16", "bert",
                                           "bert_bf16", "roberta", "distilbert"),
                         [](const auto& info) { return std::string(info.param); });

TEST(HfModels, ConfigFieldsAreRead) {
  auto llama = load_model(fixture("llama_bf16"));
  EXPECT_EQ(llama->config().architecture, "llama");
  EXPECT_EQ(llama->config().dtype, "bf16");
  EXPECT_EQ(llama->config().n_kv_heads, 2);
  EXPECT_FALSE(llama->config().tied_embeddings);
  auto qwen = load_model(fixture("qwen2"));
  EXPECT_TRUE(qwen->config().attention_bias);
  EXPECT_TRUE(qwen->config().tied_embeddings);
  auto l3 = load_model(fixture("llama3_scaled"));
  EXPECT_EQ(l3->config().rope_scaling, "llama3");
  auto bert = load_model(fixture("bert"));
  EXPECT_EQ(bert->config().kind, ModelKind::kClassifier);
  EXPECT_FALSE(bert->is_causal());
  EXPECT_EQ(bert->config().labels, (std::vector<std::string>{"negative", "neutral", "positive"}));
  EXPECT_EQ(bert->config().n_outputs(), 3);
  // No tokenizer in the folder: the model loads, using the tokenizer says why it cannot.
  EXPECT_EQ(bert->tokenizer().kind(), "none");
  try {
    bert->tokenizer().encode("hello");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("no tokenizer"), std::string::npos) << e.what();
  }
}

// Left padding and a second row in the batch do not change a row's logits.
TEST(HfModels, PaddedBatchesMatchSingleSequences) {
  for (const char* name : {"gpt2", "qwen2", "bert", "roberta"}) {
    auto model = load_model(fixture(name));
    at::NoGradGuard g;
    std::vector<int64_t> a = {1, 17, 42, 5, 63}, b = {1, 8, 29};
    at::Tensor la = model->forward_tokens(at::tensor(a, at::kLong).unsqueeze(0))[0];
    at::Tensor lb = model->forward_tokens(at::tensor(b, at::kLong).unsqueeze(0))[0];
    at::Tensor tokens =
        at::tensor(std::vector<int64_t>{1, 17, 42, 5, 63, 0, 0, 1, 8, 29}, at::kLong).view({2, 5});
    at::Tensor mask =
        at::tensor(std::vector<int64_t>{1, 1, 1, 1, 1, 0, 0, 1, 1, 1}, at::kLong).view({2, 5});
    at::Tensor out = model->forward_tokens(tokens, mask);
    EXPECT_LE((out[0] - la).abs().max().item<double>(), 1e-5) << name;
    EXPECT_LE((out[1].narrow(0, 2, 3) - lb).abs().max().item<double>(), 1e-5) << name;
  }
}

// Decoding with the KV cache gives the logits of the full pass (learned positions, biases).
TEST(HfModels, KvCacheContinuationMatchesFullPass) {
  for (const char* name : {"gpt2", "qwen2", "llama3_scaled"}) {
    auto model = load_model(fixture(name));
    at::NoGradGuard g;
    std::vector<int64_t> ids = {1, 17, 42, 5, 63, 8};
    at::Tensor full = model->forward_tokens(at::tensor(ids, at::kLong).unsqueeze(0))[0];
    KVCache cache = model->new_cache(1);
    ForwardArgs a;
    a.tokens =
        at::tensor(std::vector<int64_t>(ids.begin(), ids.begin() + 4), at::kLong).unsqueeze(0);
    a.cache = &cache;
    model->forward(a);
    a.tokens = at::tensor(std::vector<int64_t>(ids.begin() + 4, ids.end()), at::kLong).unsqueeze(0);
    at::Tensor rest = model->forward(a)[0];
    EXPECT_LE((rest - full.narrow(0, 4, 2)).abs().max().item<double>(), 1e-5) << name;
  }
}

// Mistral's sliding-window attention (mistral_window: window 3, 12 reference tokens, so every
// query from position 3 on loses keys): the reference logits hold in a full pass, when decoding
// with the KV cache one token at a time, in batches with padding on the left and in the middle
// of a row (the window counts real tokens), and the window really changes the logits.
TEST(HfModels, SlidingWindowHoldsInBatchesAndTheKvCache) {
  const Reference r = read_reference("mistral_window");
  auto model = load_model(fixture("mistral_window"));
  EXPECT_EQ(model->config().sliding_window, 3);
  EXPECT_EQ(model->config().max_seq_len, 64);  // the window no longer caps the context
  const int64_t T = static_cast<int64_t>(r.ids.size());
  ASSERT_EQ(T, 12);
  at::Tensor ref = r.logits.to(at::kFloat);  // [T, V]
  at::NoGradGuard g;

  // One token at a time through the cache.
  KVCache cache = model->new_cache(1);
  for (int64_t i = 0; i < T; ++i) {
    ForwardArgs a;
    a.tokens = at::tensor(std::vector<int64_t>{r.ids[i]}, at::kLong).view({1, 1});
    a.cache = &cache;
    at::Tensor row = model->forward(a)[0][0];
    EXPECT_LE((row - ref[i]).abs().max().item<double>(), 1e-4) << "position " << i;
  }
  // A 5-token prefix, then the remaining 7 in one step.
  KVCache c2 = model->new_cache(1);
  ForwardArgs a;
  a.cache = &c2;
  a.tokens =
      at::tensor(std::vector<int64_t>(r.ids.begin(), r.ids.begin() + 5), at::kLong).view({1, 5});
  model->forward(a);
  a.tokens =
      at::tensor(std::vector<int64_t>(r.ids.begin() + 5, r.ids.end()), at::kLong).view({1, 7});
  EXPECT_LE((model->forward(a)[0] - ref.narrow(0, 5, 7)).abs().max().item<double>(), 1e-4);

  // Batch of two, prefilled with 8 tokens each: row 0 left-padded by 2, row 1 with 2 padding
  // slots after its 8th token (padding in the middle once decoding continues); then the last
  // 4 tokens one step at a time.
  std::vector<int64_t> toks(2 * 10, 0), mask(2 * 10, 0);
  for (int64_t i = 0; i < 8; ++i) {
    toks[2 + i] = toks[10 + i] = r.ids[i];
    mask[2 + i] = mask[10 + i] = 1;
  }
  KVCache bc = model->new_cache(2);
  ForwardArgs b;
  b.cache = &bc;
  b.tokens = at::tensor(toks, at::kLong).view({2, 10});
  b.attention_mask = at::tensor(mask, at::kLong).view({2, 10});
  at::Tensor pre = model->forward(b);  // [2, 10, V]
  EXPECT_LE((pre[0].narrow(0, 2, 8) - ref.narrow(0, 0, 8)).abs().max().item<double>(), 1e-4);
  EXPECT_LE((pre[1].narrow(0, 0, 8) - ref.narrow(0, 0, 8)).abs().max().item<double>(), 1e-4);
  for (int64_t i = 8; i < T; ++i) {
    ForwardArgs s;
    s.cache = &bc;
    s.tokens = at::tensor(std::vector<int64_t>{r.ids[i], r.ids[i]}, at::kLong).view({2, 1});
    at::Tensor out = model->forward(s);  // [2, 1, V]
    EXPECT_LE((out[0][0] - ref[i]).abs().max().item<double>(), 1e-4) << "row 0, position " << i;
    EXPECT_LE((out[1][0] - ref[i]).abs().max().item<double>(), 1e-4) << "row 1, position " << i;
  }

  // Without the window (sliding_window: null) the same weights give other logits.
  std::string dir = testing::temp_dir() + "/no_window";
  std::filesystem::copy(fixture("mistral_window"), dir, std::filesystem::copy_options::recursive);
  auto set_window = [&](const nlohmann::json* value) {
    std::ifstream f(dir + "/config.json");
    nlohmann::json j = nlohmann::json::parse(f);
    if (value) {
      j["sliding_window"] = *value;
    } else {
      j.erase("sliding_window");
    }
    std::ofstream(dir + "/config.json") << j.dump();
  };
  const nlohmann::json null_window = nullptr;
  set_window(&null_window);
  auto full = load_model(dir);
  EXPECT_EQ(full->config().sliding_window, 0);
  set_window(nullptr);
  EXPECT_EQ(load_model(dir)->config().sliding_window, 4096);  // transformers' default
  EXPECT_GT(max_error(*full, r), 0.1);
  // The first `window` positions see every key either way.
  at::Tensor fl = full->forward_tokens(at::tensor(r.ids, at::kLong).unsqueeze(0))[0];
  EXPECT_LE((fl.narrow(0, 0, 3) - ref.narrow(0, 0, 3)).abs().max().item<double>(), 1e-4);
}

// Qwen2 windows only some layers (qwen2_window: use_sliding_window, window 4, max_window_layers 1
// of 3 layers, 12 reference tokens). The reference holds in a full pass, step by step through the
// KV cache and with left padding; windowing no layer or every layer gives other logits, so the
// per-layer rule is what the reference checks; layer_types says the same thing another way.
TEST(HfModels, Qwen2SlidingWindowAppliesPerLayer) {
  const Reference r = read_reference("qwen2_window");
  auto model = load_model(fixture("qwen2_window"));
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.sliding_window, 4);
  EXPECT_EQ(c.windowed_layers, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(c.window_of(0), 0);
  EXPECT_EQ(c.window_of(2), 4);
  EXPECT_EQ(c.max_seq_len, 64);  // the window no longer caps the context
  const int64_t T = static_cast<int64_t>(r.ids.size());
  ASSERT_EQ(T, 12);
  at::Tensor ref = r.logits.to(at::kFloat);  // [T, V]
  at::NoGradGuard g;
  EXPECT_LE(max_error(*model, r), 1e-4);

  KVCache cache = model->new_cache(1);
  for (int64_t i = 0; i < T; ++i) {
    ForwardArgs a;
    a.tokens = at::tensor(std::vector<int64_t>{r.ids[i]}, at::kLong).view({1, 1});
    a.cache = &cache;
    at::Tensor row = model->forward(a)[0][0];
    EXPECT_LE((row - ref[i]).abs().max().item<double>(), 1e-4) << "position " << i;
  }
  // Row 0 left-padded by 3, row 1 padded by 3 at the end.
  std::vector<int64_t> toks(2 * (T + 3), 0), mask(2 * (T + 3), 0);
  for (int64_t i = 0; i < T; ++i) {
    toks[3 + i] = toks[T + 3 + i] = r.ids[i];
    mask[3 + i] = mask[T + 3 + i] = 1;
  }
  at::Tensor out = model->forward_tokens(at::tensor(toks, at::kLong).view({2, T + 3}),
                                         at::tensor(mask, at::kLong).view({2, T + 3}));
  EXPECT_LE((out[0].narrow(0, 3, T) - ref).abs().max().item<double>(), 1e-4);
  EXPECT_LE((out[1].narrow(0, 0, T) - ref).abs().max().item<double>(), 1e-4);

  std::string dir = testing::temp_dir() + "/qwen2_window_variants";
  std::filesystem::copy(fixture("qwen2_window"), dir, std::filesystem::copy_options::recursive);
  auto variant = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j;
    {
      std::ifstream f(fixture("qwen2_window") + "/config.json");
      j = nlohmann::json::parse(f);
    }
    edit(j);
    std::ofstream(dir + "/config.json") << j.dump();
    return load_model(dir);
  };
  auto all = variant([](nlohmann::json& j) { j["max_window_layers"] = 0; });
  EXPECT_TRUE(all->config().windowed_layers.empty());
  EXPECT_EQ(all->config().window_of(0), 4);
  EXPECT_GT(max_error(*all, r), 0.1);
  auto none = variant([](nlohmann::json& j) { j["max_window_layers"] = 3; });
  EXPECT_EQ(none->config().sliding_window, 0);
  EXPECT_GT(max_error(*none, r), 0.1);
  auto off = variant([](nlohmann::json& j) { j["use_sliding_window"] = false; });
  EXPECT_EQ(off->config().sliding_window, 0);
  EXPECT_GT(max_error(*off, r), 0.1);
  auto types = variant([](nlohmann::json& j) {
    j.erase("max_window_layers");
    j["layer_types"] = {"full_attention", "sliding_attention", "sliding_attention"};
  });
  EXPECT_EQ(types->config().windowed_layers, (std::vector<bool>{false, true, true}));
  EXPECT_LE(max_error(*types, r), 1e-4);
  // A pattern that is not a suffix of the layers round-trips through convert as layer_types.
  auto mixed = variant([](nlohmann::json& j) {
    j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};
  });
  EXPECT_GT(max_error(*mixed, r), 0.1);
  save_hf_folder(*mixed, dir + "_out");
  auto back = load_model(dir + "_out");
  EXPECT_EQ(back->config().windowed_layers, (std::vector<bool>{true, false, true}));
  at::Tensor ids = at::tensor(r.ids, at::kLong).unsqueeze(0);
  EXPECT_LE((back->forward_tokens(ids) - mixed->forward_tokens(ids)).abs().max().item<double>(),
            1e-6);
  try {
    variant([](nlohmann::json& j) {
      j["layer_types"] = {"full_attention", "chunked_attention", "sliding_attention"};
    });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("layer_types[1] 'chunked_attention'"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

TEST(HfModelErrors, GgufRefusesASlidingWindow) {
  auto model = load_model(fixture("mistral_window"));
  try {
    save_gguf(*model, testing::temp_dir() + "/w.gguf", "f32");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("sliding-window"), std::string::npos) << e.what();
  }
}

TEST(HfModels, EncodersRefuseACache) {
  auto model = load_model(fixture("bert"));
  try {
    model->new_cache(1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

// Every fixture written back as a folder (and as F16) loads and computes the same logits.
TEST(HfModels, SaveFolderRoundTripsEveryArchitecture) {
  for (const char* name : {"llama", "llama3_scaled", "mistral_linear", "mistral_window", "qwen2",
                           "qwen2_window", "gpt2", "bert", "roberta", "distilbert"}) {
    auto model = load_model(fixture(name));
    std::string dir = testing::temp_dir() + "/" + name;
    save_hf_folder(*model, dir);
    auto back = load_model(dir);
    EXPECT_EQ(back->config().architecture, model->config().architecture);
    EXPECT_LE(max_error(*back, read_reference(name)), 1e-4) << name;
    save_hf_folder(*model, dir + "_f16", "f16");
    auto half = load_model(dir + "_f16");
    EXPECT_EQ(half->config().dtype, "f16");
    EXPECT_LE(max_error(*half, read_reference(name)), 0.05) << name;
  }
}

// A folder with a WordPiece vocab.txt: the tokenizer module reads it (the one coupling point,
// load_folder_tokenizer), the classifier runs on encoded text and convert copies the file.
TEST(HfModels, FolderTokenizerIsReadAndCopiedByConvert) {
  std::string dir = testing::temp_dir() + "/distil_wp";
  std::filesystem::copy(fixture("distilbert"), dir, std::filesystem::copy_options::recursive);
  {
    std::ofstream v(dir + "/vocab.txt");
    for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was",
                          "good", "bad", "##s", "a"})
      v << t << "\n";
  }
  auto model = load_model(dir);
  EXPECT_NE(model->tokenizer().kind(), "none");
  std::vector<TokenId> ids = model->tokenizer().encode("the film was good", true, true);
  EXPECT_EQ(ids, (std::vector<TokenId>{2, 5, 6, 7, 8, 3}));
  at::NoGradGuard g;
  EXPECT_EQ(model->logits(ids).size(1), 2);
  save_hf_folder(*model, dir + "_out");
  EXPECT_TRUE(std::filesystem::exists(dir + "_out/vocab.txt"));
  EXPECT_EQ(load_model(dir + "_out")->tokenizer().encode("the film was good", true, true), ids);
}

// ---- bad input ------------------------------------------------------------------------------

std::string copy_fixture(const std::string& name) {
  std::string dir = testing::temp_dir() + "/" + name;
  std::filesystem::copy(fixture(name), dir, std::filesystem::copy_options::recursive);
  return dir;
}

void rewrite_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j;
  {
    std::ifstream f(dir + "/config.json");
    j = nlohmann::json::parse(f);
  }
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump();
}

Error load_error(const std::string& path) {
  try {
    load_model(path);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "loading '" << path << "' did not fail";
  return Error(ErrorCode::kInternal, "");
}

TEST(HfModelErrors, UnsupportedArchitectureNamesConfigAndArchitecture) {
  std::string dir = copy_fixture("llama");
  rewrite_config(dir, [](nlohmann::json& j) { j["architectures"] = {"MambaForCausalLM"}; });
  Error e = load_error(dir);
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("MambaForCausalLM"), std::string::npos) << e.what();
}

TEST(HfModelErrors, UnsupportedRopeScalingIsNamed) {
  std::string dir = copy_fixture("llama");
  rewrite_config(dir, [](nlohmann::json& j) {
    j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  });
  Error e = load_error(dir);
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("yarn"), std::string::npos) << e.what();
}

TEST(HfModelErrors, ConfigNotMatchingTensorsNamesTheTensor) {
  std::string dir = copy_fixture("gpt2");
  rewrite_config(dir, [](nlohmann::json& j) { j["n_embd"] = 48; });
  Error e = load_error(dir);
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("transformer.wte.weight"), std::string::npos) << e.what();
}

TEST(HfModelErrors, MissingFieldAndBadJsonAreNamed) {
  std::string dir = copy_fixture("bert");
  rewrite_config(dir, [](nlohmann::json& j) { j.erase("hidden_size"); });
  Error e = load_error(dir);
  EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos) << e.what();
  std::ofstream(dir + "/config.json") << "{not json";
  e = load_error(dir);
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
}

TEST(HfModelErrors, TokenizerLargerThanTheVocabularyIsRefused) {
  std::string dir = copy_fixture("gpt2");
  {
    std::ofstream v(dir + "/vocab.txt");
    for (int i = 0; i < 200; ++i) v << (i == 0 ? "[UNK]" : "w" + std::to_string(i)) << "\n";
  }
  Error e = load_error(dir);
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("200"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("96"), std::string::npos) << e.what();
}

TEST(HfModelErrors, MissingShardIsNamed) {
  std::string dir = copy_fixture("llama_sharded");
  std::filesystem::remove(dir + "/model-00002-of-00003.safetensors");
  Error e = load_error(dir);
  EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  EXPECT_NE(std::string(e.what()).find("model-00002-of-00003.safetensors"), std::string::npos)
      << e.what();
}

}  // namespace
}  // namespace candor
