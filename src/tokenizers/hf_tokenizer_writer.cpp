// A scored vocabulary (llama2.c tokenizer.bin) written as the Hugging Face files that the
// Hugging Face tools read: tokenizer.json in the layout of Llama 2's (a BPE model with byte
// fallback, spaces as "▁", a "▁" prepended to the text) and tokenizer_config.json. The merges are
// derived from the scores: every split of a piece into two pieces of the vocabulary merges into
// it, ranked by the piece's score (highest first), which is the order in which llama2.c's greedy
// highest-score merging applies them.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace {

const std::string kWriterSpace = "\xE2\x96\x81";  // U+2581

std::string writer_replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
  return s;
}

// A special piece as a name: llama2.c stores BOS as "\n<s>\n".
std::string writer_special_name(const std::string& piece, const char* fallback) {
  const size_t b = piece.find_first_not_of(" \n\r\t");
  if (b == std::string::npos) return fallback;
  return piece.substr(b, piece.find_last_not_of(" \n\r\t") - b + 1);
}

// run.c merges only pairs whose score beats its initial best of -1e10.
constexpr float kWriterMinMergeScore = -1e10f;

}  // namespace

HfTokenizerFiles scored_tokenizer_to_hf(const Tokenizer& tok) {
  using nlohmann::ordered_json;
  const std::string kind = tok.kind();
  if (kind != "llama2c")
    throw Error(ErrorCode::kUnsupported,
                "a " + kind + " tokenizer has no scored vocabulary to write as tokenizer.json",
                "only llama2.c vocabularies are written as tokenizer.json");
  const TokenId n = tok.vocab_size();
  const TokenId unk = tok.unk_id(), bos = tok.bos_id(), eos = tok.eos_id();

  std::vector<std::string> pieces(static_cast<size_t>(n));
  std::vector<bool> mergeable(static_cast<size_t>(n), false);
  std::unordered_map<std::string, TokenId> vocab;  // mergeable pieces -> id (first id wins)
  const std::string unk_name = unk >= 0 ? writer_special_name(tok.piece(unk), "<unk>") : "<unk>";
  const std::string bos_name = bos >= 0 ? writer_special_name(tok.piece(bos), "<s>") : "<s>";
  const std::string eos_name = eos >= 0 ? writer_special_name(tok.piece(eos), "</s>") : "</s>";
  for (TokenId id = 0; id < n; ++id) {
    const std::string raw = tok.piece(id);
    uint8_t byte = 0;
    if (id == unk) {
      pieces[id] = unk_name;
    } else if (id == bos) {
      pieces[id] = bos_name;
    } else if (id == eos) {
      pieces[id] = eos_name;
    } else if (tokenizers::parse_byte_piece(raw, &byte)) {
      pieces[id] = raw;  // "<0x0A>": reached only through byte fallback
    } else {
      pieces[id] = writer_replace_all(raw, " ", kWriterSpace);
      mergeable[id] = vocab.emplace(pieces[id], id).second;
    }
  }

  // Merges: (score of the merged piece, merged id, split offset) -> "left right".
  struct Merge {
    float score;
    TokenId merged;
    size_t split;
    std::string text;
  };
  std::vector<Merge> merges;
  for (TokenId id = 0; id < n; ++id) {
    if (!mergeable[id] || !(tok.score(id) > kWriterMinMergeScore)) continue;
    const std::string& p = pieces[id];
    for (size_t k = 1; k < p.size(); ++k) {
      if ((static_cast<unsigned char>(p[k]) & 0xC0) == 0x80) continue;  // inside a character
      const std::string a = p.substr(0, k), b = p.substr(k);
      if (!vocab.count(a) || !vocab.count(b)) continue;
      merges.push_back({tok.score(id), id, k, a + " " + b});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& x, const Merge& y) {
    return std::tie(y.score, x.merged, x.split) < std::tie(x.score, y.merged, y.split);
  });

  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  ordered_json added = ordered_json::array();
  for (TokenId id : {unk, bos, eos}) {
    if (id < 0) continue;
    added.push_back({{"id", id},
                     {"content", pieces[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  j["added_tokens"] = added;
  // The dummy prefix and spaces, as llama2.c reads them: " " + text, spaces as "▁" pieces.
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "Prepend"}, {"prepend", kWriterSpace}},
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kWriterSpace}}}}};
  j["pre_tokenizer"] = nullptr;
  ordered_json single = ordered_json::array(), pair = ordered_json::array();
  if (bos >= 0) single.push_back({{"SpecialToken", {{"id", bos_name}, {"type_id", 0}}}});
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  pair = single;
  if (bos >= 0) pair.push_back({{"SpecialToken", {{"id", bos_name}, {"type_id", 1}}}});
  pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
  ordered_json specials = ordered_json::object();
  if (bos >= 0)
    specials[bos_name] = {{"id", bos_name}, {"ids", {bos}}, {"tokens", {bos_name}}};
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", single},
                         {"pair", pair},
                         {"special_tokens", specials}};
  j["decoder"] = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Replace"}, {"pattern", {{"String", kWriterSpace}}}, {"content", " "}},
        {{"type", "ByteFallback"}},
        {{"type", "Fuse"}},
        {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  ordered_json v = ordered_json::object();
  for (TokenId id = 0; id < n; ++id) {
    if (!v.contains(pieces[id])) v[pieces[id]] = id;
  }
  ordered_json m = ordered_json::array();
  for (const Merge& x : merges) m.push_back(x.text);
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", unk >= 0 ? ordered_json(unk_name) : ordered_json(nullptr)},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"ignore_merges", false},
                {"vocab", v},
                {"merges", m}};

  ordered_json c;
  c["tokenizer_class"] = "PreTrainedTokenizerFast";
  c["add_bos_token"] = bos >= 0;
  c["add_eos_token"] = false;
  if (bos >= 0) c["bos_token"] = bos_name;
  if (eos >= 0) c["eos_token"] = eos_name;
  if (unk >= 0) c["unk_token"] = unk_name;
  c["clean_up_tokenization_spaces"] = false;
  c["model_input_names"] = {"input_ids", "attention_mask"};

  HfTokenizerFiles files;
  files.tokenizer_json = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  files.tokenizer_config_json = c.dump(2) + "\n";
  return files;
}

}  // namespace candor
