// The "slow" Hugging Face tokenizer files: GPT-2's vocab.json + merges.txt (byte-level BPE) and
// BERT's vocab.txt (WordPiece), read into the Spec of the tokenizer runtime.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "tokenizers/hf_spec.h"
#include "tokenizers/hf_unicode.h"
#include "tokenizers/pair_merge.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace tokenizers {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The lines of a text file, without their "\n" or "\r\n" (no empty line after a final "\n").
std::vector<std::string> lines(const std::string& data) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    std::string line = data.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(std::move(line));
  }
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_slow_vocab_files(const std::string& folder,
                                                 const nlohmann::json* config) {
  const fs::path dir(folder);
  if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt")) {
    const std::string vocab_path = (dir / "vocab.json").string();
    const std::string merges_path = (dir / "merges.txt").string();
    return load_gpt2_bpe_files(vocab_path, merges_path, config);
  }
  const fs::path vocab_txt = dir / "vocab.txt";
  if (!fs::exists(vocab_txt)) {
    throw Error(ErrorCode::kNotFound,
                "no tokenizer in " + dir.string() +
                    ": expected tokenizer.json, vocab.json + merges.txt, or vocab.txt",
                "pass a Hugging Face model folder or a tokenizer.json file");
  }
  return load_bert_vocab_file(vocab_txt.string(), config);
}

std::unique_ptr<Tokenizer> load_gpt2_bpe_files(const std::string& vocab_path,
                                               const std::string& merges_path,
                                               const nlohmann::json* config) {
  Spec spec;
  spec.source = vocab_path;
  const json vocab = read_json(vocab_path, "vocabulary");
  if (!vocab.is_object())
    throw malformed(vocab_path, "the vocabulary is not an object of piece -> id");
  JsonParser parser(vocab_path, &spec);
  guarded(
      vocab_path, [] { return std::string("vocabulary"); },
      [&] {
        parser.set_vocab(vocab);
        const std::string merges = read_tokenizer_file(merges_path, "merges");
        size_t rank = 0;
        bool first = true;
        for (const std::string& line : lines(merges)) {
          if (first && line.rfind("#version", 0) == 0) {
            first = false;
            continue;
          }
          first = false;
          if (line.empty()) continue;
          parser.add_merge_line(line, rank++);
        }
      });
  const auto eot = vocab.find("<|endoftext|>");
  if (eot != vocab.end()) {
    spec.added.push_back(AddedToken{"<|endoftext|>", eot->get<TokenId>(), true, false, false});
    spec.bos = spec.eos = eot->get<TokenId>();
  }
  PreTokenizer pre;
  pre.kind = PreTokenizer::kByteLevel;
  pre.add_prefix_space = config != nullptr && config->value("add_prefix_space", false);
  pre.pattern = std::make_shared<uni::Regex>(kGpt2Pattern, false, "ByteLevel");
  spec.pre_tokenizers.push_back(pre);
  spec.decoder.byte_level = true;
  if (config != nullptr)
    guarded(
        vocab_path, [] { return std::string("tokenizer_config.json"); },
        [&] { parser.parse_config(*config); });
  finish_spec(&spec);
  spec.kind = "hf-bpe-bytelevel";
  return make_hf_tokenizer(std::move(spec));
}

std::unique_ptr<Tokenizer> load_bert_vocab_file(const std::string& vocab_path,
                                                const nlohmann::json* config) {
  Spec spec;
  spec.source = vocab_path;
  const std::string data = read_tokenizer_file(vocab_path, "WordPiece vocabulary");
  std::unordered_map<std::string, TokenId> vocab;
  for (const std::string& line : lines(data)) {
    const auto id = static_cast<TokenId>(spec.pieces.size());
    spec.pieces.push_back(line);
    spec.in_model.push_back(true);
    vocab.emplace(line, id);
  }
  if (spec.pieces.empty()) throw malformed(vocab_path, "the vocabulary is empty");
  require_valid_utf8(data);
  auto id_of = [&](const std::string& t) {
    const auto it = vocab.find(t);
    return it == vocab.end() ? -1 : it->second;
  };
  for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
    if (id_of(t) >= 0) spec.added.push_back(AddedToken{t, id_of(t), true, false, false});
  }
  spec.wordpiece = true;
  spec.subword_prefix = "##";
  spec.unk = id_of("[UNK]");
  Normalizer n;
  n.kind = Normalizer::kBert;
  n.lowercase = config == nullptr || config->value("do_lower_case", true);
  n.strip_accents = n.lowercase;
  if (config != nullptr && config->contains("strip_accents") &&
      (*config)["strip_accents"].is_boolean()) {
    n.strip_accents = (*config)["strip_accents"].get<bool>();
  }
  n.chinese = config == nullptr || config->value("tokenize_chinese_chars", true);
  spec.normalizers.push_back(n);
  PreTokenizer pre;
  pre.kind = PreTokenizer::kBert;
  spec.pre_tokenizers.push_back(pre);
  spec.decoder.wordpiece = true;
  spec.decoder.cleanup = true;
  if (id_of("[CLS]") >= 0) spec.prefix = {id_of("[CLS]")};
  if (id_of("[SEP]") >= 0) spec.suffix = {id_of("[SEP]")};
  if (id_of("[PAD]") >= 0) spec.pad = id_of("[PAD]");
  finish_spec(&spec);
  spec.kind = "hf-wordpiece";
  return make_hf_tokenizer(std::move(spec));
}

}  // namespace tokenizers
}  // namespace candor
