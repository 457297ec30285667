// The transformer text classifier: WordPiece vocabulary, BERT-layout encoder, KD training,
// Hugging Face folder output, and its use as a distillation student.
#include "candor/text_transformer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <queue>
#include <random>
#include <set>
#include <sstream>
#include <unordered_map>

#include "candor/error.h"
#include "models/encoder.h"
#include "report/html_page.h"  // moves into src/report with the pages (architecture issue)
using candor::report::html_escape;
#include "tokenizers/hf_unicode.h"

#include "train/init.h"

namespace candor::train {

namespace fs = std::filesystem;
namespace uni = candor::tokenizers::unicode;

namespace {

const char* kSpecials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
constexpr int kPad = 0, kCls = 2;

// BERT normalisation and pre-tokenisation (as BertNormalizer + BertPreTokenizer do it): control
// characters dropped, CJK ideographs split off, accents stripped, lower case, then words split
// at whitespace with every punctuation character a word of its own.
std::vector<std::string> bert_words(const std::string& text) {
  std::string clean;
  size_t bad = 0;
  if (!is_valid_utf8(text, &bad)) return {};
  for (size_t i = 0; i < text.size();) {
    char32_t cp = uni::next_codepoint(text, &i);
    if (cp == 0 || cp == 0xFFFD || uni::is_control(cp)) continue;
    if (uni::is_whitespace(cp)) {
      clean.push_back(' ');
    } else if (uni::is_chinese_char(cp)) {
      clean.push_back(' ');
      uni::append_utf8(cp, &clean);
      clean.push_back(' ');
    } else {
      uni::append_utf8(cp, &clean);
    }
  }
  std::string nfd = uni::normalize(clean, uni::Form::kNFD), stripped;
  for (size_t i = 0; i < nfd.size();) {
    char32_t cp = uni::next_codepoint(nfd, &i);
    if (!uni::is_nonspacing_mark(cp)) uni::append_utf8(cp, &stripped);
  }
  const std::string low = uni::lowercase(stripped);
  std::vector<std::string> words;
  std::string cur;
  for (size_t i = 0; i < low.size();) {
    char32_t cp = uni::next_codepoint(low, &i);
    if (uni::is_whitespace(cp) || uni::is_punctuation(cp)) {
      if (!cur.empty()) words.push_back(std::move(cur));
      cur.clear();
      if (uni::is_punctuation(cp)) {
        std::string p;
        uni::append_utf8(cp, &p);
        words.push_back(std::move(p));
      }
    } else {
      uni::append_utf8(cp, &cur);
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

std::vector<std::string> utf8_chars(const std::string& w) {
  std::vector<std::string> out;
  for (size_t i = 0; i < w.size();) {
    size_t b = i;
    uni::next_codepoint(w, &i);
    out.push_back(w.substr(b, i - b));
  }
  return out;
}

double parse_number(const std::string& key, const std::string& value, const std::string& spec) {
  try {
    size_t used = 0;
    double v = std::stod(value, &used);
    if (used == value.size() && std::isfinite(v)) return v;
  } catch (...) {
  }
  throw Error(ErrorCode::kInvalidArgument,
              "student option '" + key + "' in '" + spec + "' is not a number: '" + value + "'");
}

// The training-time forward pass of the encoder (the same arithmetic as EncoderClassifier's,
// plus dropout when `gen` is given). tokens, mask: [B, T]. Returns the class logits [B, C].
struct Net {
  ModelConfig c;
  EncoderWeights w;
  double dropout = 0;

  at::Tensor drop(const at::Tensor& x, at::Generator* gen) const {
    if (!gen || dropout <= 0) return x;
    const double keep = 1.0 - dropout;
    at::Tensor m = at::empty(x.sizes(), at::kFloat).bernoulli_(keep, *gen).div_(keep);
    return x * m;
  }

  at::Tensor logits(const at::Tensor& tokens, const at::Tensor& mask, at::Generator* gen) const {
    const int64_t B = tokens.size(0), T = tokens.size(1), D = c.dim, H = c.n_heads,
                  hd = c.head_dim();
    at::Tensor x = at::embedding(w.tok_embeddings, tokens) + w.pos_embeddings.narrow(0, 0, T) +
                   w.type_embeddings[0];  // [B, T, D]
    x = drop(at::layer_norm(x, {D}, w.emb_norm, w.emb_norm_bias, c.norm_eps), gen);
    at::Tensor bias = at::zeros({B, 1, 1, T}, at::kFloat)
                          .masked_fill_(mask.logical_not().view({B, 1, 1, T}),
                                        -std::numeric_limits<float>::infinity());
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    for (const EncoderLayerWeights& L : w.layers) {
      at::Tensor qkv =
          at::linear(x, L.wqkv, L.bqkv).view({B, T, 3, H, hd}).permute({2, 0, 3, 1, 4});
      at::Tensor att = at::softmax(at::matmul(qkv[0], qkv[1].transpose(2, 3)) * scale + bias, -1);
      at::Tensor o = at::matmul(drop(att, gen), qkv[2]).permute({0, 2, 1, 3}).reshape({B, T, D});
      x = at::layer_norm(x + drop(at::linear(o, L.wo, L.bo), gen), {D}, L.attn_norm,
                         L.attn_norm_bias, c.norm_eps);
      at::Tensor f = at::linear(at::gelu(at::linear(x, L.w1, L.b1)), L.w2, L.b2);
      x = at::layer_norm(x + drop(f, gen), {D}, L.ffn_norm, L.ffn_norm_bias, c.norm_eps);
    }
    at::Tensor pooled = at::tanh(at::linear(x.select(1, 0), w.pool_w, w.pool_b));  // [B, D]
    return at::linear(drop(pooled, gen), w.cls_w, w.cls_b);                        // [B, C]
  }
};

// Pads token lists [b][len] into tokens and mask [B, T].
std::pair<at::Tensor, at::Tensor> pad_batch(const std::vector<const std::vector<int32_t>*>& rows) {
  int64_t T = 1;
  for (const auto* r : rows) T = std::max<int64_t>(T, static_cast<int64_t>(r->size()));
  const int64_t B = static_cast<int64_t>(rows.size());
  at::Tensor tok = at::full({B, T}, kPad, at::kLong), mask = at::zeros({B, T}, at::kBool);
  int64_t* tp = tok.data_ptr<int64_t>();
  bool* mp = mask.data_ptr<bool>();
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < rows[b]->size(); ++t) {
      tp[b * T + static_cast<int64_t>(t)] = (*rows[b])[t];
      mp[b * T + static_cast<int64_t>(t)] = true;
    }
  return {tok, mask};
}

// Encodes texts with [CLS] first, cut to `max_len` tokens.
std::vector<std::vector<int32_t>> encode_all(const Tokenizer& tok,
                                             const std::vector<std::string>& texts,
                                             int64_t max_len) {
  std::vector<std::vector<int32_t>> out;
  out.reserve(texts.size());
  for (const std::string& s : texts) {
    std::vector<TokenId> ids = tok.encode(s, true, false);
    if (ids.empty()) ids = {kCls};
    if (static_cast<int64_t>(ids.size()) > max_len) ids.resize(static_cast<size_t>(max_len));
    out.emplace_back(ids.begin(), ids.end());
  }
  return out;
}

// Class probabilities of encoded texts, in batches of similar length.
template <typename LogitsFn>
distill::Probs batched_probs(const std::vector<std::vector<int32_t>>& ids, int64_t n_classes,
                             const LogitsFn& logits) {
  std::vector<size_t> order(ids.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return ids[a].size() < ids[b].size(); });
  distill::Probs out(ids.size(), std::vector<double>(static_cast<size_t>(n_classes)));
  at::NoGradGuard ng;
  for (size_t s = 0; s < order.size(); s += 64) {
    std::vector<const std::vector<int32_t>*> rows;
    for (size_t i = s; i < std::min(order.size(), s + 64); ++i) rows.push_back(&ids[order[i]]);
    auto [tok, mask] = pad_batch(rows);
    at::Tensor p = at::softmax(logits(tok, mask), -1).to(at::kDouble).contiguous();
    const double* d = p.data_ptr<double>();
    for (size_t i = 0; i < rows.size(); ++i)
      for (int64_t k = 0; k < n_classes; ++k) out[order[s + i]][k] = d[i * n_classes + k];
  }
  return out;
}

std::shared_ptr<Tokenizer> tokenizer_from_json(const std::string& json_text) {
  // The Hugging Face loader reads files: a private temporary file, removed at once.
  static std::atomic<int> counter{0};
  const fs::path tmp =
      fs::temp_directory_path() / ("candor-wordpiece-" + std::to_string(::getpid()) + "-" +
                                   std::to_string(counter++) + ".json");
  {
    std::ofstream f(tmp);
    f << json_text;
    if (!f)
      throw Error(ErrorCode::kInvalidArgument,
                  "cannot write a temporary file in " + fs::temp_directory_path().string());
  }
  std::shared_ptr<Tokenizer> tok;
  try {
    tok = load_hf_tokenizer(tmp.string());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  std::error_code ec;
  fs::remove(tmp, ec);
  return tok;
}

int argmax(const std::vector<double>& p) {
  return static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
}

}  // namespace

// ---- options -----------------------------------------------------------------------------------

void parse_transformer_spec(const std::string& spec, TransformerOptions* t, TrainOptions* o) {
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  if (kind != "transformer")
    throw Error(ErrorCode::kInvalidArgument, "'" + spec + "' is not a transformer student",
                "write transformer[:key=value,...]");
  // Training defaults of the transformer (small batches, a gentler peak rate than the MLP's).
  o->epochs = 10;
  o->batch_size = 32;
  o->learning_rate = 1e-3;
  o->warmup_fraction = 0.1;
  if (colon == std::string::npos) return;
  std::stringstream ss(spec.substr(colon + 1));
  std::string kv;
  while (std::getline(ss, kv, ',')) {
    if (kv.empty()) continue;
    const size_t eq = kv.find('=');
    if (eq == std::string::npos)
      throw Error(ErrorCode::kInvalidArgument,
                  "student option '" + kv + "' in '" + spec + "' is not key=value");
    const std::string k = kv.substr(0, eq);
    const double v = parse_number(k, kv.substr(eq + 1), spec);
    auto positive_int = [&](int64_t* field) {
      if (v < 1 || v != std::floor(v) || v > 1e8)
        throw Error(ErrorCode::kInvalidArgument, "student option '" + k +
                                                     "' must be a positive whole number (got " +
                                                     kv.substr(eq + 1) + ")");
      *field = static_cast<int64_t>(v);
    };
    auto in_range = [&](double* field, double lo, double hi) {
      if (!(v >= lo && v <= hi))
        throw Error(ErrorCode::kInvalidArgument, "student option '" + k + "' must be in [" +
                                                     std::to_string(lo) + ", " +
                                                     std::to_string(hi) + "]");
      *field = v;
    };
    int64_t epochs = o->epochs;
    if (k == "dim") {
      positive_int(&t->dim);
    } else if (k == "layers") {
      positive_int(&t->layers);
    } else if (k == "heads") {
      positive_int(&t->heads);
    } else if (k == "hidden") {
      positive_int(&t->hidden);
    } else if (k == "max_len") {
      positive_int(&t->max_len);
    } else if (k == "vocab") {
      positive_int(&t->vocab);
    } else if (k == "temperature") {
      in_range(&t->temperature, 1e-3, 1e3);
    } else if (k == "alpha") {
      in_range(&t->alpha, 0, 1);
    } else if (k == "dropout") {
      in_range(&t->dropout, 0, 0.9);
    } else if (k == "epochs") {
      positive_int(&epochs);
      o->epochs = static_cast<int>(epochs);
    } else if (k == "batch") {
      positive_int(&o->batch_size);
    } else if (k == "lr") {
      in_range(&o->learning_rate, 1e-9, 10);
    } else if (k == "weight_decay") {
      in_range(&o->weight_decay, 0, 10);
    } else if (k == "warmup") {
      in_range(&o->warmup_fraction, 0, 1);
    } else if (k == "clip") {
      in_range(&o->clip_norm, 0, 1e6);
    } else {
      throw Error(ErrorCode::kInvalidArgument,
                  "unknown option '" + k + "' for the transformer student",
                  "options: dim, layers, heads, hidden, max_len, vocab, temperature, alpha, "
                  "dropout, epochs, batch, lr, weight_decay, warmup, clip");
    }
  }
  if (t->dim % t->heads != 0)
    throw Error(ErrorCode::kInvalidArgument, "transformer student: dim " + std::to_string(t->dim) +
                                                 " is not a multiple of heads " +
                                                 std::to_string(t->heads));
  if (t->max_len < 2)
    throw Error(ErrorCode::kInvalidArgument, "transformer student: max_len must be at least 2");
}

// ---- vocabulary
// ----------------------------------------------------------------------------------

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

// ---- the classifier
// ------------------------------------------------------------------------------

const std::vector<std::string>& TransformerClassifier::labels() const {
  return model_->config().labels;
}

std::vector<double> TransformerClassifier::predict_proba(const std::string& text) const {
  return predict_proba_batch({text})[0];
}

std::vector<std::vector<double>> TransformerClassifier::predict_proba_batch(
    const std::vector<std::string>& texts) const {
  const auto& enc = static_cast<const EncoderClassifier&>(*model_);
  Net net{enc.config(), enc.weights(), 0.0};
  auto ids = encode_all(model_->tokenizer(), texts, options_.max_len);
  return batched_probs(
      ids, static_cast<int64_t>(labels().size()),
      [&](const at::Tensor& t, const at::Tensor& m) { return net.logits(t, m, nullptr); });
}

void TransformerClassifier::save(const std::string& dir) const {
  save_hf_folder(*model_, dir, "f32");
  std::ofstream f(fs::path(dir) / "tokenizer.json");
  f << tokenizer_json_;
  if (!f) throw Error(ErrorCode::kInvalidArgument, "cannot write '" + dir + "/tokenizer.json'");
}

std::unique_ptr<TransformerClassifier> TransformerClassifier::train(
    const std::vector<std::string>& texts, const distill::Probs& target,
    const std::vector<int>& hard, const std::vector<std::string>& classes,
    const TransformerOptions& t, const TrainOptions& o) {
  const int64_t n = static_cast<int64_t>(texts.size());
  const int64_t C = static_cast<int64_t>(classes.size());
  if (n == 0) throw Error(ErrorCode::kInvalidArgument, "the transformer student got no texts");
  if (C < 2) throw Error(ErrorCode::kInvalidArgument, "a classifier needs at least two classes");
  if (static_cast<int64_t>(target.size()) != n || (!hard.empty() && hard.size() != target.size()))
    throw Error(ErrorCode::kInvalidArgument, "the transformer student got " + std::to_string(n) +
                                                 " texts but " + std::to_string(target.size()) +
                                                 " targets and " + std::to_string(hard.size()) +
                                                 " labels");
  for (const auto& row : target)
    if (static_cast<int64_t>(row.size()) != C)
      throw Error(ErrorCode::kInvalidArgument,
                  "a target row does not have one probability per class");
  if (t.dim % t.heads != 0)
    throw Error(ErrorCode::kInvalidArgument, "transformer: dim is not a multiple of heads");
  auto m = std::unique_ptr<TransformerClassifier>(new TransformerClassifier());
  m->options_ = t;
  m->vocab_ = build_wordpiece_vocab(texts, t.vocab);
  m->tokenizer_json_ = wordpiece_tokenizer_json(m->vocab_);
  std::shared_ptr<Tokenizer> tok = tokenizer_from_json(m->tokenizer_json_);
  const auto ids = encode_all(*tok, texts, t.max_len);

  ModelConfig c;
  c.architecture = "bert";
  c.source_format = "candor";
  c.kind = ModelKind::kClassifier;
  c.labels = classes;
  c.dim = t.dim;
  c.hidden_dim = t.hidden;
  c.n_layers = t.layers;
  c.n_heads = c.n_kv_heads = t.heads;
  c.vocab_size = static_cast<int64_t>(m->vocab_.size());
  c.max_seq_len = t.max_len;
  c.norm_eps = 1e-12f;
  c.norm = NormKind::kLayerNorm;
  c.positions = PositionKind::kLearned;
  c.activation = Activation::kGelu;
  c.attention_bias = true;
  c.tied_embeddings = false;
  const int64_t D = t.dim, F = t.hidden;
  std::mt19937_64 rng(o.seed);
  auto normal = [&](std::vector<int64_t> shape) {
    return init_normal(rng, std::move(shape), 0.02);
  };
  auto zeros = [](int64_t k) { return at::zeros({k}, at::kFloat); };
  auto ones = [](int64_t k) { return at::ones({k}, at::kFloat); };
  EncoderWeights w;
  w.tok_embeddings = normal({c.vocab_size, D});
  w.pos_embeddings = normal({t.max_len, D});
  w.type_embeddings = normal({1, D});
  w.emb_norm = ones(D);
  w.emb_norm_bias = zeros(D);
  for (int64_t l = 0; l < t.layers; ++l) {
    EncoderLayerWeights L;
    L.wqkv = normal({3 * D, D});
    L.bqkv = zeros(3 * D);
    L.wo = normal({D, D});
    L.bo = zeros(D);
    L.attn_norm = ones(D);
    L.attn_norm_bias = zeros(D);
    L.w1 = normal({F, D});
    L.b1 = zeros(F);
    L.w2 = normal({D, F});
    L.b2 = zeros(D);
    L.ffn_norm = ones(D);
    L.ffn_norm_bias = zeros(D);
    w.layers.push_back(L);
  }
  w.pool_w = normal({D, D});
  w.pool_b = zeros(D);
  w.cls_w = normal({C, D});
  w.cls_b = zeros(C);
  auto model = std::make_shared<EncoderClassifier>(c, EncoderSettings(), w, tok);
  for (const auto& [name, p] : model->named_parameters()) m->params_.push_back(p);
  m->model_ = model;

  // Targets: the softened teacher distribution and the hard class of every row.
  const double T = t.temperature;
  at::Tensor soft = at::empty({n, C}, at::kFloat);
  std::vector<int64_t> hard_ids(static_cast<size_t>(n));
  {
    float* sp = soft.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      std::vector<double> lg(C);
      double mx = -1e300, z = 0;
      for (int64_t k = 0; k < C; ++k) {
        lg[k] = std::log(std::max(target[i][k], 1e-12)) / T;
        mx = std::max(mx, lg[k]);
      }
      for (int64_t k = 0; k < C; ++k) z += std::exp(lg[k] - mx);
      for (int64_t k = 0; k < C; ++k) sp[i * C + k] = static_cast<float>(std::exp(lg[k] - mx) / z);
      const int h = hard.empty() ? -1 : hard[i];
      if (h >= C)
        throw Error(ErrorCode::kInvalidArgument, "hard label " + std::to_string(h) +
                                                     " is not one of the " + std::to_string(C) +
                                                     " classes");
      hard_ids[i] = h >= 0 ? h : argmax(target[i]);
    }
  }
  at::Tensor hard_t = at::tensor(hard_ids, at::kLong);
  at::Tensor soft_log = soft.clamp_min(1e-12).log();
  Net net{c, w, t.dropout};
  const double alpha = t.alpha;
  const uint64_t seed = o.seed;

  // Fidelity during training: agreement with the targets on (at most) 512 training rows.
  std::vector<size_t> probe;
  for (size_t i = 0; i < ids.size() && probe.size() < 512; ++i) probe.push_back(i);
  auto probe_agreement = [&]() {
    std::vector<std::vector<int32_t>> pid;
    for (size_t i : probe) pid.push_back(ids[i]);
    Net eval{c, w, 0.0};
    distill::Probs p = batched_probs(pid, C, [&](const at::Tensor& a, const at::Tensor& b) {
      return eval.logits(a, b, nullptr);
    });
    size_t ok = 0;
    for (size_t j = 0; j < probe.size(); ++j) ok += argmax(p[j]) == argmax(target[probe[j]]);
    return double(ok) / double(probe.size());
  };
  TrainOptions opts = o;
  const int64_t per_epoch = (n + o.batch_size - 1) / o.batch_size;
  double epoch_sum = 0;
  int64_t epoch_steps = 0;
  opts.progress = [&](const TrainProgress& p) {
    TrainProgress q = p;
    epoch_sum += p.loss;
    ++epoch_steps;
    if (p.step % per_epoch == 0 || p.step == p.total_steps) {
      m->epoch_losses_.push_back(epoch_sum / double(epoch_steps));
      epoch_sum = 0;
      epoch_steps = 0;
      q.fidelity = probe_agreement();
    }
    return o.progress ? o.progress(q) : true;
  };
  train_loop(
      m->params_, n,
      [&](const std::vector<int64_t>& batch) {
        std::vector<const std::vector<int32_t>*> rows;
        uint64_t h = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
        for (int64_t i : batch) {
          rows.push_back(&ids[static_cast<size_t>(i)]);
          h = (h ^ static_cast<uint64_t>(i)) * 0x100000001B3ull;  // dropout masks: a function of
        }                                                         // the seed and the batch only
        auto [tok_t, mask] = pad_batch(rows);
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(h);
        at::Tensor lg = net.logits(tok_t, mask, t.dropout > 0 ? &gen : nullptr);  // [B, C]
        at::Tensor idx = at::tensor(batch, at::kLong);
        at::Tensor loss = at::zeros({}, at::kFloat);
        if (alpha > 0) {
          at::Tensor ls = at::log_softmax(lg / T, -1);
          at::Tensor st = soft.index_select(0, idx);
          at::Tensor kl = (st * (soft_log.index_select(0, idx) - ls)).sum(-1).mean();
          loss = loss + kl * (alpha * T * T);
        }
        if (alpha < 1)
          loss = loss + at::cross_entropy_loss(lg, hard_t.index_select(0, idx)) * (1 - alpha);
        return loss;
      },
      opts);
  return m;
}

// ---- a classifier over a loaded model
// -------------------------------------------------------------

namespace {

class ModelTextClassifier : public TextClassifier {
 public:
  explicit ModelTextClassifier(std::shared_ptr<const Model> m) : m_(std::move(m)) {
    if (m_->config().kind != ModelKind::kClassifier)
      throw Error(ErrorCode::kInvalidArgument,
                  "the " + m_->config().architecture + " model is not a sequence classifier",
                  "give a BERT, RoBERTa or DistilBERT classifier (or a saved transformer student)");
  }
  std::string kind() const override { return m_->config().architecture + "-classifier"; }
  const std::vector<std::string>& labels() const override { return m_->config().labels; }
  std::vector<double> predict_proba(const std::string& text) const override {
    return predict_proba_batch({text})[0];
  }
  std::vector<std::vector<double>> predict_proba_batch(
      const std::vector<std::string>& texts) const override {
    auto ids = encode_all(m_->tokenizer(), texts, m_->config().max_seq_len);
    return batched_probs(ids, static_cast<int64_t>(labels().size()),
                         [&](const at::Tensor& t, const at::Tensor& mask) {
                           ForwardArgs a;
                           a.tokens = t;
                           a.attention_mask = mask;
                           a.last_only = true;
                           return m_->forward(a).select(1, 0);
                         });
  }

 private:
  std::shared_ptr<const Model> m_;
};

// The transformer as a distillation student.
class TransformerStudent : public distill::Student {
 public:
  TransformerStudent(std::string spec, TrainOptions o) : spec_(std::move(spec)), train_(o) {
    parse_transformer_spec(spec_, &t_, &train_);
  }
  std::string kind() const override { return "transformer"; }
  bool reads_text() const override { return true; }
  void fit(const distill::Featurizer&, const std::vector<std::vector<uint16_t>>&,
           const distill::Probs&) override {
    throw Error(ErrorCode::kInternal, "the transformer student reads texts (fit_text)");
  }
  distill::Probs predict(const std::vector<std::vector<uint16_t>>&) const override {
    throw Error(ErrorCode::kInternal, "the transformer student reads texts (predict_text)");
  }
  void fit_text(const std::vector<std::string>& texts, const distill::Probs& target,
                const std::vector<int>& labels, const std::vector<std::string>& classes) override {
    auto t0 = std::chrono::steady_clock::now();
    clf_ = TransformerClassifier::train(texts, target, labels, classes, t_, train_);
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows_ = texts.size();
  }
  distill::Probs predict_text(const std::vector<std::string>& texts) const override {
    if (!clf_) throw Error(ErrorCode::kInternal, "the transformer student is not trained");
    return clf_->predict_proba_batch(texts);
  }
  nlohmann::json explain() const override {
    nlohmann::json j = {{"kind", "transformer"},
                        {"spec", spec_},
                        {"architecture", "bert"},
                        {"dim", t_.dim},
                        {"layers", t_.layers},
                        {"heads", t_.heads},
                        {"hidden", t_.hidden},
                        {"max_len", t_.max_len},
                        {"temperature", t_.temperature},
                        {"alpha", t_.alpha},
                        {"dropout", t_.dropout},
                        {"epochs", train_.epochs},
                        {"batch", train_.batch_size},
                        {"lr", train_.learning_rate},
                        {"seed", train_.seed}};
    if (clf_) {
      j["vocabulary"] = clf_->vocabulary().size();
      j["parameters"] = clf_->model().n_params();
      j["epoch_losses"] = clf_->epoch_losses();
      j["training_rows"] = rows_;
      j["training_seconds"] = seconds_;
      j["rows_per_second"] = seconds_ > 0 ? double(rows_) * train_.epochs / seconds_ : 0.0;
    }
    return j;
  }
  std::string explain_html() const override {
    std::ostringstream h;
    nlohmann::json j = explain();
    h << "<p>A transformer encoder (BERT layout) is not glass-box: explain it token by token with "
         "<code>candor explain --model DIR/model</code> (it is saved there as a Hugging Face "
         "folder) and check the explanation against the teacher's.</p>\n<table>\n";
    for (auto it = j.begin(); it != j.end(); ++it)
      h << "<tr><td>" << html_escape(it.key()) << "</td><td>" << html_escape(it.value().dump())
        << "</td></tr>\n";
    h << "</table>\n";
    return h.str();
  }
  const TransformerClassifier* classifier() const { return clf_.get(); }

 private:
  std::string spec_;
  TransformerOptions t_;
  TrainOptions train_;
  std::unique_ptr<TransformerClassifier> clf_;
  double seconds_ = 0;
  size_t rows_ = 0;
};

}  // namespace

std::unique_ptr<TextClassifier> model_text_classifier(std::shared_ptr<const Model> model) {
  return std::make_unique<ModelTextClassifier>(std::move(model));
}

std::unique_ptr<distill::Student> make_transformer_student(const std::string& spec,
                                                           const TrainOptions& o) {
  return std::make_unique<TransformerStudent>(spec, o);
}

const TransformerClassifier* transformer_of(const distill::Student& student) {
  const auto* s = dynamic_cast<const TransformerStudent*>(&student);
  return s ? s->classifier() : nullptr;
}

}  // namespace candor::train
