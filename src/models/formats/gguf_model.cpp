// GGUF models: the architecture named by general.architecture (src/models/arch/) built from
// the file's tensors, with the tokenizer stored in its tokenizer.ggml.* metadata.
#include <ATen/ATen.h>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "models/arch/arch.h"
#include "models/formats/gguf.h"
#include "models/fused/qgemm.h"

namespace candor {
namespace {

std::vector<std::string> string_array(const GgufFile& g, const std::string& key) {
  std::vector<std::string> out;
  if (!g.has_meta(key)) return out;
  const auto& a = g.meta(key);
  if (!a.is_array()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF file '" + g.where() + "': metadata '" + key + "' is not an array");
  }
  for (const auto& v : a) {
    if (!v.is_string()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "GGUF file '" + g.where() + "': metadata '" + key + "' holds a non-string");
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

bool meta_flag(const GgufFile& g, const std::string& key, bool dflt) {
  return g.has_meta(key) && g.meta(key).is_boolean() ? g.meta(key).get<bool>() : dflt;
}

// What tokenizer.ggml.* says about the vocabulary, as the tokenizers read it.
VocabTokenizerSpec vocab_spec(const GgufFile& g, const std::string& model) {
  const std::string k = "tokenizer.ggml.";
  VocabTokenizerSpec spec;
  spec.model = model;
  spec.source = g.where();
  spec.tokens = string_array(g, k + "tokens");
  if (g.has_meta(k + "token_type") && g.meta(k + "token_type").is_array()) {
    for (const auto& v : g.meta(k + "token_type"))
      spec.token_types.push_back(v.is_number_integer() ? v.get<int32_t>() : 1);
  }
  if (g.has_meta("tokenizer.chat_template") && g.meta("tokenizer.chat_template").is_string())
    spec.chat_template = g.meta("tokenizer.chat_template").get<std::string>();
  if (model == "gpt2") {
    spec.merges = string_array(g, k + "merges");
    if (g.has_meta(k + "pre") && g.meta(k + "pre").is_string())
      spec.pre = g.meta(k + "pre").get<std::string>();
    auto id = [&](const std::string& key) {
      return static_cast<TokenId>(gguf_int(g, k + key, -1));
    };
    spec.bos_id = id("bos_token_id");
    spec.eos_id = id("eos_token_id");
    spec.unk_id = id("unknown_token_id");
    spec.pad_id = id("padding_token_id");
    spec.add_bos = meta_flag(g, k + "add_bos_token", false);
    spec.add_eos = meta_flag(g, k + "add_eos_token", false);
    spec.add_space_prefix = meta_flag(g, k + "add_space_prefix", false);
    return spec;
  }
  // llama: scored pieces
  const auto& tokens = g.meta(k + "tokens");
  const auto& scores = g.meta(k + "scores");
  if (!tokens.is_array() || !scores.is_array() || tokens.size() != scores.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF file '" + g.where() +
                    "': tokenizer.ggml.tokens and .scores are not arrays "
                    "of the same length");
  }
  spec.bos_id = static_cast<TokenId>(gguf_int(g, k + "bos_token_id", 1));
  spec.eos_id = static_cast<TokenId>(gguf_int(g, k + "eos_token_id", 2));
  spec.unk_id = static_cast<TokenId>(gguf_int(g, k + "unknown_token_id", 0));
  spec.pad_id = static_cast<TokenId>(gguf_int(g, k + "padding_token_id", -1));
  // The llama2.c layout (<unk>, <s>, </s> at 0, 1, 2) needs a score for every token.
  const bool llama2c = spec.bos_id == 1 && spec.eos_id == 2 && spec.unk_id == 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (llama2c && !scores[i].is_number()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "GGUF file '" + g.where() + "': token " + std::to_string(i) + " is malformed");
    }
    spec.scores.push_back(scores[i].is_number() ? scores[i].get<float>() : 0.0f);
  }
  spec.add_space_prefix = meta_flag(g, k + "add_space_prefix", true);
  return spec;
}

// The tokenizer in the metadata: "llama" (SentencePiece BPE) and "gpt2" (byte-level BPE)
// vocabularies through make_gguf_tokenizer; others, and a gpt2 one without tokens, as a
// placeholder that says why.
std::shared_ptr<Tokenizer> gguf_tokenizer(const GgufFile& g, int64_t vocab) {
  const std::string model =
      g.has_meta("tokenizer.ggml.model") && g.meta("tokenizer.ggml.model").is_string()
          ? g.meta("tokenizer.ggml.model").get<std::string>()
          : "";
  if (model != "llama" && model != "gpt2") {
    return missing_tokenizer(
        static_cast<int32_t>(vocab), ErrorCode::kUnsupported,
        "GGUF file '" + g.where() + "' stores a tokenizer of model '" + model +
            "', which candor cannot read (it reads 'llama' and 'gpt2' vocabularies)",
        "pass a tokenizer with --tokenizer");
  }
  const VocabTokenizerSpec spec = vocab_spec(g, model);
  if (model == "gpt2" && spec.tokens.empty()) {
    return missing_tokenizer(static_cast<int32_t>(vocab), ErrorCode::kInvalidArgument,
                             "GGUF file '" + g.where() + "' has a gpt2 tokenizer without tokens",
                             "pass a tokenizer with --tokenizer");
  }
  return make_gguf_tokenizer(spec);
}

const Architecture& gguf_architecture(const GgufFile& g) {
  const auto& a = g.meta("general.architecture");
  const std::string name = a.is_string() ? a.get<std::string>() : "";
  std::string known;
  for (const Architecture* arch : architectures()) {
    if (arch->gguf_name.empty()) continue;
    if (arch->gguf_name == name) return *arch;
    known += (known.empty() ? "" : " and ") + arch->gguf_name;
  }
  throw Error(
      ErrorCode::kUnsupported,
      "GGUF file '" + g.where() + "' holds architecture '" + name + "'; candor reads " + known,
      "see docs/model-formats.md");
}

}  // namespace

std::unique_ptr<Model> load_gguf_model(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<GgufFile> g = GgufFile::open(path);
  const Architecture& arch = gguf_architecture(*g);
  const int64_t vocab = g->has("token_embd.weight") ? g->shape("token_embd.weight")[0] : 0;
  std::vector<std::string> files;
  std::shared_ptr<Tokenizer> tok =
      options.tokenizer_path.empty()
          ? gguf_tokenizer(*g, vocab)
          : load_folder_tokenizer(".", vocab, options.tokenizer_path, &files);
  ArchConfig a = arch.from_gguf(*g);
  a.model.source_format = "gguf";
  a.model.dtype = g->dtype_summary();
  a.model.compute_dtype = options.compute_dtype;
  a.model.tokenizer_files = std::move(files);
  // Matrices stay in their blocks when every part is of a type the quantized products take
  // (at least one of them not F32) with whole blocks per row.
  QuantKeeper keep;
  if (!options.dequantize && a.model.compute_dtype == "f32") {
    const GgufFile* gf = g.get();
    keep = [gf](const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts,
                fused::QuantMatrix* out) {
      if (parts.empty() || parts[0].second.size() != 2) return false;
      const int64_t cols = parts[0].second[1];
      bool quantized = false;
      fused::QuantMatrix m;
      m.cols = cols;
      for (const auto& [name, shape] : parts) {
        if (!gf->has(name) || gf->shape(name) != shape) return false;  // load() says why
        const uint32_t type = gf->type(name);
        if (!fused::quant_type_usable(type, cols)) return false;
        quantized = quantized || type != 0;
        m.parts.push_back({type, shape[0], gf->data(name)});
        m.rows += shape[0];
      }
      if (!quantized) return false;
      m.keep = gf->mapping();
      *out = std::move(m);
      return true;
    };
  }
  return build_from_table(arch, a, *g, TensorFormat::kGguf, std::move(tok), keep);
}

}  // namespace candor
