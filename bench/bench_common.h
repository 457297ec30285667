// Pieces shared by the benchmarks: where ../shared is, and the GPT-2-small-sized random Llama.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include <ATen/ATen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <vector>

#include "candor/error.h"
#include "candor/model.h"
#include "candor/tokenizer.h"

namespace candor::bench {

// $CANDOR_SHARED, or ../shared beside the source tree.
inline std::string shared_dir() {
  if (const char* env = std::getenv("CANDOR_SHARED")) return env;
  return std::string(CANDOR_SOURCE_DIR) + "/../shared";
}

// GPT-2-small shape (dim 768, 12 layers, 12 heads, hidden 2048) in the Llama architecture.
inline ModelConfig llama768_config(int64_t vocab_size = 32000) {
  ModelConfig c;
  c.architecture = "llama";
  c.source_format = "random";
  c.dim = 768;
  c.hidden_dim = 2048;
  c.n_layers = 12;
  c.n_heads = 12;
  c.n_kv_heads = 12;
  c.vocab_size = vocab_size;
  c.max_seq_len = 1024;
  return c;
}

// A llama2.c tokenizer.bin with `vocab` pieces: <unk>, <s>, </s>, the 256 byte pieces, then
// "t259", "t260", ... Written to a temporary file, loaded, and removed.
inline std::shared_ptr<Tokenizer> synthetic_tokenizer(int32_t vocab) {
  std::vector<std::string> pieces = {"<unk>", "\n<s>\n", "\n</s>\n"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    pieces.emplace_back(buf);
  }
  while (static_cast<int32_t>(pieces.size()) < vocab) {
    pieces.push_back("t" + std::to_string(pieces.size()));
  }
  int32_t max_len = 0;
  for (const auto& p : pieces) max_len = std::max(max_len, static_cast<int32_t>(p.size()));
  const std::string path = "/tmp/candor_bench_explain_tok_" + std::to_string(::getpid()) + ".bin";
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(&max_len), 4);
    for (const auto& p : pieces) {
      const float score = 0.0f;
      const int32_t len = static_cast<int32_t>(p.size());
      out.write(reinterpret_cast<const char*>(&score), 4);
      out.write(reinterpret_cast<const char*>(&len), 4);
      out.write(p.data(), len);
    }
    if (!out) throw Error(ErrorCode::kInternal, "cannot write " + path);
  }
  std::shared_ptr<Tokenizer> tok = load_tokenizer(path);
  std::remove(path.c_str());
  return tok;
}

// Null (with `why` set) when stories260K is not there.
inline std::unique_ptr<Model> load_stories(std::string* why) {
  const std::string path = bench::shared_dir() + "/models/stories260K";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    *why = "needs ../shared/models/stories260K (or CANDOR_SHARED pointing at the shared folder)";
    return nullptr;
  }
  try {
    return load_model(path);
  } catch (const std::exception& e) {
    *why = std::string("cannot load stories260K: ") + e.what();
    return nullptr;
  }
}

inline std::unique_ptr<Model> make_large() {
  return make_random_llama(llama768_config(32000), /*seed=*/1234, synthetic_tokenizer(32000));
}

// `t` ids, BOS first: story text for a trained model (repeated as needed), random ids otherwise.
inline std::vector<TokenId> make_prompt(const Model& model, bool random_ids, int64_t t) {
  std::vector<TokenId> ids;
  if (random_ids) {
    at::manual_seed(100 + t);
    at::Tensor r = at::randint(3, model.config().vocab_size, {t - 1}, at::kLong);
    ids.push_back(model.tokenizer().bos_id());
    for (int64_t i = 0; i < t - 1; ++i) ids.push_back(static_cast<TokenId>(r[i].item<int64_t>()));
    return ids;
  }
  const std::string story =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park with her friend Tom. One day, they found a big red ball under a tree. Lily said, "
      "\"Let's play with the ball!\" Tom was happy and they played all day. When the sun went "
      "down, they went home to their moms and had a warm dinner. ";
  std::string text = story;
  ids = model.tokenizer().encode(text, /*add_bos=*/true);
  while (static_cast<int64_t>(ids.size()) < t) {
    text += story;
    ids = model.tokenizer().encode(text, true);
  }
  ids.resize(t);
  return ids;
}

}  // namespace candor::bench
