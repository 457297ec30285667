// Vocabularies stored as arrays (GGUF's tokenizer.ggml.* metadata) to and from tokenizers:
// make_tokenizer_from_vocab (the Hugging Face runtime over a Spec), make_gguf_tokenizer,
// scored_vocabulary; and the llama2.c tokenizer.bin writer (see tokenizer.h).
#include <algorithm>
#include <cstring>
#include <fstream>

#include "candor/error.h"
#include "candor/files.h"
#include "candor/tokenizer.h"
#include "tokenizers/hf_spec.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace {

const std::string kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's word boundary

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
  return s;
}

}  // namespace

std::unique_ptr<Tokenizer> make_tokenizer_from_vocab(const VocabTokenizerSpec& v) {
  using namespace tokenizers;
  const std::string& src = v.source.empty() ? std::string("(vocabulary)") : v.source;
  const auto n = static_cast<TokenId>(v.tokens.size());
  auto bad = [&](const std::string& what) {
    return Error(ErrorCode::kInvalidArgument, "inconsistent tokenizer in " + src + ": " + what,
                 "the file may be damaged or written by a tool candor does not know");
  };
  if (n == 0) throw bad("the vocabulary is empty");
  if (!v.token_types.empty() && static_cast<TokenId>(v.token_types.size()) != n) {
    throw bad(std::to_string(v.token_types.size()) + " token types for " + std::to_string(n) +
              " tokens");
  }
  for (const auto& [id, name] : {std::pair<TokenId, const char*>{v.bos_id, "BOS"},
                                 {v.eos_id, "EOS"},
                                 {v.unk_id, "unknown"},
                                 {v.pad_id, "padding"}}) {
    if (id >= n) throw bad(std::string(name) + " id " + std::to_string(id) + " is out of range");
  }
  Spec spec;
  spec.source = src;
  spec.pieces = v.tokens;
  spec.in_model.assign(n, true);
  std::unordered_map<std::string, TokenId> vocab;
  for (TokenId id = 0; id < n; ++id) {
    const int32_t type = v.token_types.empty() ? 1 : v.token_types[id];
    if (type == 3 || type == 4) {
      spec.added.push_back(AddedToken{v.tokens[id], id, type == 3, false, false});
    }
    const bool normal = type == 1 || type == 0;
    spec.in_model[id] = normal;
    if (normal) vocab.emplace(v.tokens[id], id);
  }
  spec.bos = v.bos_id;
  spec.eos = v.eos_id;
  spec.unk = v.unk_id;
  spec.pad = v.pad_id;
  if (v.add_bos && v.bos_id >= 0) spec.prefix = {v.bos_id};
  if (v.add_eos && v.eos_id >= 0) spec.suffix = {v.eos_id};
  spec.chat_template = v.chat_template;
  if (v.model == "llama") {
    if (static_cast<TokenId>(v.scores.size()) != n) {
      throw bad(std::to_string(v.scores.size()) + " scores for " + std::to_string(n) + " tokens");
    }
    spec.scores = v.scores;
    spec.byte_fallback = true;
    spec.fuse_unk = true;
    if (v.add_space_prefix) {
      Normalizer prepend;
      prepend.kind = Normalizer::kPrepend;
      prepend.content = std::string(kMetaspace);
      spec.normalizers.push_back(prepend);
    }
    Normalizer replace;
    replace.kind = Normalizer::kReplace;
    replace.pattern = std::make_shared<uni::Regex>(" ", true, src);
    replace.content = std::string(kMetaspace);
    spec.normalizers.push_back(replace);
    derive_score_merges(&spec, vocab);
    spec.decoder.byte_fallback = true;
    spec.decoder.replacements.emplace_back(std::string(kMetaspace), " ");
    spec.decoder.strip_first_space = v.add_space_prefix;
    spec.kind = "gguf-llama";
  } else if (v.model == "gpt2") {
    spec.merges.reserve(v.merges.size());
    for (size_t rank = 0; rank < v.merges.size(); ++rank) {
      const std::string& line = v.merges[rank];
      const size_t space = line.find(' ', 1);
      if (space == std::string::npos) throw bad("merge " + std::to_string(rank) + " has no space");
      const auto a = vocab.find(line.substr(0, space)), b = vocab.find(line.substr(space + 1)),
                 m = vocab.find(line.substr(0, space) + line.substr(space + 1));
      if (a == vocab.end() || b == vocab.end() || m == vocab.end()) {
        throw bad("merge " + std::to_string(rank) + " (\"" + line +
                  "\") names a token missing from the vocabulary");
      }
      spec.merges.emplace(pair_key(a->second, b->second),
                          Merge{static_cast<float>(rank), m->second});
    }
    const std::string& pre = v.pre;
    const char* pattern = kGpt2Pattern;
    if (pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3" || pre == "smaug-bpe") {
      pattern = kLlama3Pattern;
    } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
      pattern = kQwen2Pattern;
    } else if (pre == "gpt-4o" || pre == "o200k") {
      pattern = kGpt4oPattern;
    } else if (!(pre.empty() || pre == "gpt2" || pre == "default" || pre == "gpt-2")) {
      throw Error(ErrorCode::kUnsupported,
                  "unsupported pre-tokenizer \"" + pre + "\" (tokenizer.ggml.pre) in " + src,
                  "supported: gpt2/default, llama3/llama-bpe, qwen2, gpt-4o");
    }
    PreTokenizer split;
    split.kind = PreTokenizer::kSplit;
    split.pattern = std::make_shared<uni::Regex>(pattern, false, src);
    split.behavior = Behavior::kIsolated;
    spec.pre_tokenizers.push_back(split);
    PreTokenizer bytes;
    bytes.kind = PreTokenizer::kByteLevel;
    spec.pre_tokenizers.push_back(bytes);
    spec.decoder.byte_level = true;
    spec.ignore_merges = pattern == kLlama3Pattern;
    spec.kind = "gguf-gpt2";
  } else {
    throw Error(
        ErrorCode::kUnsupported, "unsupported tokenizer model \"" + v.model + "\" in " + src,
        "supported GGUF tokenizer models: llama (SentencePiece BPE) and gpt2 (byte-level BPE)");
  }
  finish_spec(&spec);
  return make_hf_tokenizer(std::move(spec));
}

std::unique_ptr<Tokenizer> make_gguf_tokenizer(const VocabTokenizerSpec& spec) {
  if (spec.model != "llama" || spec.bos_id != 1 || spec.eos_id != 2 || spec.unk_id != 0)
    return make_tokenizer_from_vocab(spec);
  // The llama2.c layout: its tokenizer, with spaces where GGUF writes "▁".
  std::vector<std::string> pieces;
  pieces.reserve(spec.tokens.size());
  for (const std::string& t : spec.tokens) pieces.push_back(replace_all(t, kSpmSpace, " "));
  return tokenizers::make_llama2c_tokenizer(spec.source + " (tokenizer.ggml.tokens)",
                                            std::move(pieces), spec.scores);
}

VocabTokenizerSpec scored_vocabulary(const Tokenizer& tok) {
  VocabTokenizerSpec v;
  v.model = "llama";
  v.bos_id = tok.bos_id();
  v.eos_id = tok.eos_id();
  v.unk_id = tok.unk_id();
  const TokenId n = tok.vocab_size();
  for (TokenId i = 0; i < n; ++i) {
    const std::string piece = tok.piece(i);
    v.tokens.push_back(replace_all(piece, " ", kSpmSpace));
    v.scores.push_back(tok.score(i));
    uint8_t byte = 0;
    int32_t t = i == v.unk_id ? 2 : (i == v.bos_id || i == v.eos_id) ? 3 : 1;
    if (t == 1 && tokenizers::parse_byte_piece(piece, &byte)) t = 6;
    v.token_types.push_back(t);
  }
  return v;
}

void save_llama2c_tokenizer(const Tokenizer& tok, const std::string& path) {
  // max token length, then (score, length, bytes) records
  std::string bin(4, '\0');
  int32_t max_len = 1;
  for (TokenId i = 0; i < tok.vocab_size(); ++i) {
    const std::string piece = tok.piece(i);
    const float score = tok.score(i);
    const int32_t len = static_cast<int32_t>(piece.size());
    max_len = std::max(max_len, len);
    bin.append(reinterpret_cast<const char*>(&score), 4);
    bin.append(reinterpret_cast<const char*>(&len), 4);
    bin += piece;
  }
  std::memcpy(&bin[0], &max_len, 4);
  write_file_atomic(path, bin);
}

}  // namespace candor
