// The WordPiece trainer: a vocabulary learnt from texts by BPE-style merges over BERT-normalised
// words, and the Hugging Face tokenizer.json for it.
#include <nlohmann/json.hpp>

#include <map>
#include <queue>
#include <set>
#include <unordered_map>

#include "candor/tokenizer.h"
#include "candor/tokenizer_trainers.h"

namespace candor::train {

namespace {

const char* kSpecials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

// The characters of valid UTF-8 text, each as its bytes.
std::vector<std::string> utf8_chars(const std::string& w) {
  std::vector<std::string> out;
  for (size_t i = 0; i < w.size();) {
    const auto lead = static_cast<unsigned char>(w[i]);
    const size_t len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    out.push_back(w.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace

std::vector<std::string> build_wordpiece_vocab(const std::vector<std::string>& texts,
                                               int64_t size) {
  std::map<std::string, int64_t> word_count;  // ordered: deterministic ids
  for (const std::string& t : texts)
    for (std::string& w : bert_words(t)) ++word_count[w];
  std::vector<std::string> vocab(std::begin(kSpecials), std::end(kSpecials));
  std::unordered_map<std::string, int32_t> sym_id;
  std::vector<std::string> syms;
  auto intern = [&](const std::string& s) {
    auto it = sym_id.find(s);
    if (it != sym_id.end()) return it->second;
    const int32_t id = static_cast<int32_t>(syms.size());
    syms.push_back(s);
    sym_id.emplace(s, id);
    return id;
  };
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> counts;
  std::set<std::string> alphabet;
  for (const auto& [w, n] : word_count) {
    std::vector<std::string> ch = utf8_chars(w);
    if (ch.size() > 100) continue;  // WordPiece gives such words [UNK] anyway
    std::vector<int32_t> s;
    for (size_t i = 0; i < ch.size(); ++i) {
      const std::string piece = i == 0 ? ch[i] : "##" + ch[i];
      alphabet.insert(piece);
      s.push_back(intern(piece));
    }
    words.push_back(std::move(s));
    counts.push_back(n);
  }
  std::set<std::string> in_vocab(vocab.begin(), vocab.end());
  for (const std::string& a : alphabet)
    if (in_vocab.insert(a).second) vocab.push_back(a);
  // Pair counts with a lazily-invalidated max-heap (ties: the smaller ids first).
  auto key = [](int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  };
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  using Entry = std::pair<int64_t, uint64_t>;
  auto cmp = [](const Entry& x, const Entry& y) {
    return x.first != y.first ? x.first < y.first : x.second > y.second;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(cmp)> heap(cmp);
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const uint64_t k = key(words[w][i], words[w][i + 1]);
      pair_count[k] += counts[w];
      where[k].push_back(static_cast<int32_t>(w));
    }
  for (const auto& [k, n] : pair_count) heap.push({n, k});
  std::vector<int64_t> stamp(words.size(), -1);
  int64_t merge = 0;
  while (static_cast<int64_t>(vocab.size()) < size && !heap.empty()) {
    const auto [n, k] = heap.top();
    heap.pop();
    auto pc = pair_count.find(k);
    if (pc == pair_count.end() || pc->second != n) continue;  // stale entry
    if (n < 2) break;
    const int32_t a = static_cast<int32_t>(k >> 32), b = static_cast<int32_t>(k & 0xffffffffu);
    const std::string& sb = syms[b];
    const std::string joined = syms[a] + (sb.compare(0, 2, "##") == 0 ? sb.substr(2) : sb);
    const int32_t ab = intern(joined);
    if (in_vocab.insert(joined).second) vocab.push_back(joined);
    std::map<uint64_t, int64_t> delta;
    const std::vector<int32_t> affected = where[k];
    for (int32_t w : affected) {
      if (stamp[w] == merge) continue;
      stamp[w] = merge;
      std::vector<int32_t>& s = words[w];
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == a && s[i + 1] == b;
      if (!has) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[key(s[i], s[i + 1])] -= counts[w];
      std::vector<int32_t> merged;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(ab);
          ++i;
        } else {
          merged.push_back(s[i]);
        }
      }
      s = std::move(merged);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t nk = key(s[i], s[i + 1]);
        delta[nk] += counts[w];
        where[nk].push_back(w);
      }
    }
    for (const auto& [dk, d] : delta) {
      if (d == 0) continue;
      int64_t& c = pair_count[dk];
      c += d;
      if (c <= 0) {
        pair_count.erase(dk);
      } else {
        heap.push({c, dk});
      }
    }
    ++merge;
  }
  return vocab;
}

std::string wordpiece_tokenizer_json(const std::vector<std::string>& vocab) {
  using oj = nlohmann::ordered_json;
  oj j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = oj::array();
  for (int i = 0; i < 5; ++i)
    j["added_tokens"].push_back({{"id", i},
                                 {"content", kSpecials[i]},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", false},
                                 {"special", true}});
  j["normalizer"] = {{"type", "BertNormalizer"},
                     {"clean_text", true},
                     {"handle_chinese_chars", true},
                     {"strip_accents", nullptr},
                     {"lowercase", true}};
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  auto special = [](const char* s, int type) {
    return oj{{"SpecialToken", {{"id", s}, {"type_id", type}}}};
  };
  auto seq = [](const char* s, int type) {
    return oj{{"Sequence", {{"id", s}, {"type_id", type}}}};
  };
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {special("[CLS]", 0), seq("A", 0)}},
      {"pair", {special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 0)}},
      {"special_tokens",
       {{"[CLS]", {{"id", "[CLS]"}, {"ids", {2}}, {"tokens", {"[CLS]"}}}},
        {"[SEP]", {{"id", "[SEP]"}, {"ids", {3}}, {"tokens", {"[SEP]"}}}}}}};
  j["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}};
  oj v = oj::object();
  for (size_t i = 0; i < vocab.size(); ++i) v[vocab[i]] = i;
  j["model"] = {{"type", "WordPiece"},
                {"unk_token", "[UNK]"},
                {"continuing_subword_prefix", "##"},
                {"max_input_chars_per_word", 100},
                {"vocab", v}};
  return j.dump(1) + "\n";
}

}  // namespace candor::train
