// A byte-level BPE trainer: learns merges from texts into a Hugging Face tokenizer.json (GPT-2
// style byte-level pieces) held in memory, written beside a model when asked.
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <unordered_map>

#include "candor/error.h"
#include "candor/files.h"
#include "candor/tokenizer_trainers.h"

namespace candor::train {

namespace {

bool is_letter(unsigned char c) { return std::isalpha(c) || c >= 0x80; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// GPT-2's reversible byte -> printable character map, as UTF-8 strings.
std::vector<std::string> byte_chars() {
  std::vector<std::string> out(256);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    const int cp = printable ? b : next++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {  // cp < 0x800 here
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    out[b] = s;
  }
  return out;
}

}  // namespace

std::vector<std::string> bpe_pretokenize(const std::string& text) {
  std::vector<std::string> out;
  const size_t n = text.size();
  auto u = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  size_t i = 0;
  while (i < n) {
    // Contractions.
    if (text[i] == '\'' && i + 1 < n) {
      static const char* kC[] = {"ll", "re", "ve", "s", "t", "m", "d"};
      bool hit = false;
      for (const char* c : kC) {
        size_t len = std::strlen(c);
        if (text.compare(i + 1, len, c) == 0) {
          out.push_back(text.substr(i, len + 1));
          i += len + 1;
          hit = true;
          break;
        }
      }
      if (hit) continue;
    }
    size_t start = i;
    size_t j = i;
    if (text[j] == ' ' && j + 1 < n && !is_space(u(j + 1))) ++j;  // optional leading space
    if (j < n && is_letter(u(j))) {
      while (j < n && is_letter(u(j))) ++j;
    } else if (j < n && is_digit(u(j))) {
      while (j < n && is_digit(u(j))) ++j;
    } else if (j < n && !is_space(u(j))) {
      while (j < n && !is_space(u(j)) && !is_letter(u(j)) && !is_digit(u(j))) ++j;
    } else {
      // Whitespace: a run, leaving its last character to the next token when that is a space
      // followed by a non-space.
      j = i;
      while (j < n && is_space(u(j))) ++j;
      if (j < n && j - i > 1) --j;
      if (j == i) ++j;
    }
    out.push_back(text.substr(start, j - start));
    i = j;
  }
  return out;
}

BpeTokenizerFiles learn_bpe_tokenizer(const std::vector<std::string>& texts,
                                      const BpeTrainOptions& o) {
  constexpr int32_t kFirstByte = 3;  // <unk>, <s>, </s>
  if (o.vocab_size < kFirstByte + 256)
    throw Error(ErrorCode::kInvalidArgument,
                "a byte-level BPE vocabulary needs at least 259 tokens, got " +
                    std::to_string(o.vocab_size),
                "use vocab=512 or more");
  // Word frequencies (ordered: deterministic).
  std::map<std::string, int64_t> freq;
  for (const std::string& t : texts)
    for (std::string& w : bpe_pretokenize(t)) ++freq[w];
  if (freq.empty())
    throw Error(ErrorCode::kInvalidArgument, "the BPE tokenizer has no text to learn from",
                "give a corpus with some text");
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> counts;
  for (const auto& [w, c] : freq) {
    std::vector<int32_t> s;
    for (unsigned char ch : w) s.push_back(kFirstByte + ch);
    words.push_back(std::move(s));
    counts.push_back(c);
  }
  const std::vector<std::string> bc = byte_chars();
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) pieces.push_back(bc[b]);
  std::vector<std::pair<int32_t, int32_t>> merges;
  auto key = [](int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  };
  while (static_cast<int32_t>(pieces.size()) < o.vocab_size) {
    std::unordered_map<uint64_t, int64_t> pairs;
    for (size_t w = 0; w < words.size(); ++w)
      for (size_t k = 0; k + 1 < words[w].size(); ++k)
        pairs[key(words[w][k], words[w][k + 1])] += counts[w];
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [k, c] : pairs)
      if (c > best_count || (c == best_count && k < best)) best = k, best_count = c;
    if (best_count < std::max<int64_t>(1, o.min_frequency)) break;
    const int32_t a = static_cast<int32_t>(best >> 32), b = static_cast<int32_t>(best & 0xFFFFFFFF);
    const int32_t id = static_cast<int32_t>(pieces.size());
    pieces.push_back(pieces[a] + pieces[b]);
    merges.emplace_back(a, b);
    for (auto& s : words) {
      if (s.size() < 2) continue;
      size_t out = 0;
      for (size_t k = 0; k < s.size(); ++k) {
        if (k + 1 < s.size() && s[k] == a && s[k + 1] == b) {
          s[out++] = id;
          ++k;
        } else {
          s[out++] = s[k];
        }
      }
      s.resize(out);
    }
  }

  using ojson = nlohmann::ordered_json;
  ojson vocab = ojson::object();
  for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = i;
  ojson merge_list = ojson::array();
  for (const auto& [a, b] : merges) merge_list.push_back(pieces[a] + " " + pieces[b]);
  ojson added = ojson::array();
  for (int i = 0; i < kFirstByte; ++i)
    added.push_back({{"id", i},
                     {"content", pieces[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  ojson byte_level = {{"type", "ByteLevel"},
                      {"add_prefix_space", false},
                      {"trim_offsets", true},
                      {"use_regex", true}};
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = byte_level;
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = byte_level;
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", merge_list}};
  ojson cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"},
               {"bos_token", "<s>"},
               {"eos_token", "</s>"},
               {"unk_token", "<unk>"},
               {"add_bos_token", true},
               {"add_eos_token", false},
               {"model_max_length", 1024}};
  return {j.dump(1) + "\n", cfg.dump(2) + "\n"};
}

std::string write_bpe_tokenizer(const BpeTokenizerFiles& files, const std::string& dir) {
  namespace fs = std::filesystem;
  prepare_output_dir(dir);
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  write_file_atomic(path, files.tokenizer_json);
  write_file_atomic((fs::path(dir) / "tokenizer_config.json").string(),
                    files.tokenizer_config_json);
  return path;
}

std::string train_bpe_tokenizer(const std::vector<std::string>& texts, const BpeTrainOptions& o,
                                const std::string& dir) {
  return write_bpe_tokenizer(learn_bpe_tokenizer(texts, o), dir);
}

}  // namespace candor::train
