// Causal-LM students: teacher sampling, the student model, its training (token-level KD or
// sequence-level on generations / a corpus) and held-out figures.
#include "candor/lm_student.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include "candor/error.h"
#include "candor/files.h"
#include "candor/generate.h"
#include "candor/tokenizer_trainers.h"
#include "candor/train.h"
#include "train/bound_options.h"

namespace candor::distill {

namespace fs = std::filesystem;

namespace {

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

bool is_word_byte(unsigned char c) { return std::isalnum(c) || c >= 0x80; }

Error bad_option(const std::string& key, const std::string& value, const std::string& why) {
  return Error(ErrorCode::kInvalidArgument,
               "--student lm: " + key + "=" + value + " is invalid: " + why,
               "e.g. lm:dim=128,layers=4,heads=4,vocab=1024,samples=2000");
}

std::vector<TokenId> stop_ids(const Tokenizer& tok) {
  std::vector<TokenId> s;
  if (tok.bos_id() >= 0) s.push_back(tok.bos_id());
  if (tok.eos_id() >= 0) s.push_back(tok.eos_id());
  return s;
}

bool contains(const std::vector<TokenId>& v, TokenId t) {
  return std::find(v.begin(), v.end(), t) != v.end();
}

// The first "unit" of a continuation: a word (letters, digits, inner apostrophes) or one
// punctuation character, after leading white space. `complete` tells whether it is followed by
// more text (so it cannot grow).
std::string first_unit(const std::string& s, bool* complete) {
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  *complete = false;
  if (i == s.size()) return {};
  const auto c = static_cast<unsigned char>(s[i]);
  if (!is_word_byte(c)) {
    *complete = true;
    return s.substr(i, 1);
  }
  size_t j = i;
  while (j < s.size()) {
    const auto d = static_cast<unsigned char>(s[j]);
    if (is_word_byte(d)) {
      ++j;
    } else if (d == '\'' && j + 1 < s.size() &&
               is_word_byte(static_cast<unsigned char>(s[j + 1]))) {
      j += 2;
    } else {
      break;
    }
  }
  *complete = j < s.size() && !(s[j] == '\'' && j + 1 == s.size());
  return s.substr(i, j - i);
}

// The greedy next unit of `model` after `prefix` (BOS first), at most `max_tokens` tokens.
std::string greedy_next_unit(const Model& model, const std::string& prefix, int max_tokens) {
  const Tokenizer& tok = model.tokenizer();
  std::vector<TokenId> ids = tok.encode(prefix, true, false);
  if (static_cast<int64_t>(ids.size()) + max_tokens > model.config().max_seq_len) return "\x01";
  const std::vector<TokenId> stop = stop_ids(tok);
  KVCache cache = model.new_cache(1, static_cast<int64_t>(ids.size()) + max_tokens);
  ForwardArgs a;
  a.tokens = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
  a.cache = &cache;
  a.last_only = true;
  std::string acc;
  TokenId prev = ids.back();
  for (int k = 0; k < max_tokens; ++k) {
    at::Tensor logits = model.forward(a);  // [1, 1, V]
    const TokenId t = static_cast<TokenId>(logits.reshape({-1}).argmax().item<int64_t>());
    if (contains(stop, t)) break;
    acc += tok.decode_piece(prev, t);
    prev = t;
    bool complete = false;
    std::string u = first_unit(acc, &complete);
    if (complete) return u;
    a.tokens = at::full({1, 1}, static_cast<int64_t>(t), at::kLong);
  }
  bool complete = false;
  return first_unit(acc, &complete);
}

// Sum of next-token NLL over `ids` (positions 1..), and optionally the model's logits.
double sequence_nll(const Model& model, const std::vector<TokenId>& ids, at::Tensor* logits_out) {
  std::vector<int64_t> in(ids.begin(), ids.end() - 1), tg(ids.begin() + 1, ids.end());
  at::Tensor logits =
      model.forward_tokens(at::tensor(in, at::kLong).unsqueeze(0)).squeeze(0);  // [T, V]
  at::Tensor lp = at::log_softmax(logits, -1);
  at::Tensor nll = -lp.gather(1, at::tensor(tg, at::kLong).unsqueeze(1)).sum();
  if (logits_out) *logits_out = logits;
  return nll.item<double>();
}

bool same_vocabulary(const Tokenizer& a, const Tokenizer& b) {
  if (a.vocab_size() != b.vocab_size()) return false;
  for (TokenId i = 0; i < a.vocab_size(); ++i)
    if (a.piece(i) != b.piece(i)) return false;
  return true;
}

// The teacher's tokenizer, reloaded from its files (so the student owns a copy).
std::shared_ptr<Tokenizer> reload_tokenizer(const Model& teacher) {
  const auto& files = teacher.config().tokenizer_files;
  for (const std::string& f : files)
    if (fs::path(f).filename() == "tokenizer.json")
      return std::shared_ptr<Tokenizer>(load_hf_tokenizer(fs::path(f).parent_path().string()));
  if (files.empty())
    throw Error(ErrorCode::kUnsupported,
                "the teacher's tokenizer has no file of its own to give the student",
                "use tokenizer=bpe (the student learns its own)");
  return std::shared_ptr<Tokenizer>(load_tokenizer(files.front()));
}

}  // namespace

// --- options -----------------------------------------------------------------------------------

namespace {

// The options of the lm student, each bound to its field of LmStudentOptions.
const std::vector<train::BoundOption<LmStudentOptions>>& lm_fields() {
  static const std::vector<train::BoundOption<LmStudentOptions>> fields = [] {
    const LmStudentOptions d;  // the defaults, written once there
    constexpr double kInf = std::numeric_limits<double>::infinity();
    constexpr int64_t kMany = 1000000000;
    auto bind = [](OptionSpec spec, auto field) {
      return train::bind_option(std::move(spec), field);
    };
    return std::vector<train::BoundOption<LmStudentOptions>>{
        bind(OptionSpec::integer("dim", d.dim, 2, kMany, "model width"), &LmStudentOptions::dim),
        bind(OptionSpec::integer("layers", d.n_layers, 1, kMany, "transformer blocks"),
             &LmStudentOptions::n_layers),
        bind(OptionSpec::integer("heads", d.n_heads, 1, kMany, "attention heads"),
             &LmStudentOptions::n_heads),
        bind(
            OptionSpec::integer("kv_heads", d.n_kv_heads, 0, kMany, "key/value heads (0: = heads)"),
            &LmStudentOptions::n_kv_heads),
        bind(OptionSpec::integer("hidden", d.hidden_dim, 0, kMany,
                                 "feed-forward width (0: 8/3 dim)"),
             &LmStudentOptions::hidden_dim),
        bind(OptionSpec::integer("context", d.context, 8, kMany, "training and model context"),
             &LmStudentOptions::context),
        bind(OptionSpec::choice("tokenizer", d.tokenizer, {"bpe", "teacher"},
                                "a byte-level BPE learnt on the texts, or the teacher's"),
             &LmStudentOptions::tokenizer),
        bind(OptionSpec::integer("vocab", d.vocab_size, 259, std::numeric_limits<int32_t>::max(),
                                 "BPE vocabulary size"),
             &LmStudentOptions::vocab_size),
        bind(OptionSpec::choice("mode", d.mode, {"auto", "token", "sequence"},
                                "KD on the teacher's distributions, or on texts"),
             &LmStudentOptions::mode),
        bind(OptionSpec::real("alpha", d.alpha, 0, 1, "token mode: weight of the KD term"),
             &LmStudentOptions::alpha),
        bind(OptionSpec::real("kd_temperature", d.kd_temperature, 0, kInf,
                              "token mode: temperature T")
                 .above(),
             &LmStudentOptions::kd_temperature),
        bind(OptionSpec::integer("samples", d.samples, 1, kMany, "teacher generations to train on"),
             &LmStudentOptions::samples),
        bind(OptionSpec::integer("sample_tokens", d.sample_tokens, 1, kMany,
                                 "tokens per generation"),
             &LmStudentOptions::sample_tokens),
        bind(
            OptionSpec::real("temperature", d.temperature, 0, kInf, "sampling temperature").above(),
            &LmStudentOptions::temperature),
        bind(OptionSpec::integer("top_k", d.top_k, 0, kMany, "sampling top-k (0: none)"),
             &LmStudentOptions::top_k),
        bind(OptionSpec::real("top_p", d.top_p, 0, 1, "sampling top-p (1: none)").above(),
             &LmStudentOptions::top_p),
        bind(OptionSpec::integer("held_out", d.held_out, 1, kMany, "texts kept for the figures"),
             &LmStudentOptions::held_out),
        bind(OptionSpec::integer("epochs", d.epochs, 1, kMany, "epochs"),
             &LmStudentOptions::epochs),
        bind(OptionSpec::integer("batch", d.batch, 1, kMany, "batch size"),
             &LmStudentOptions::batch),
        bind(OptionSpec::real("lr", d.lr, 0, kInf, "peak learning rate").above(),
             &LmStudentOptions::lr),
        bind(OptionSpec::real("weight_decay", d.weight_decay, -kInf, kInf, "AdamW weight decay"),
             &LmStudentOptions::weight_decay),
        bind(OptionSpec::real("warmup", d.warmup, -kInf, kInf, "share of the steps warming up"),
             &LmStudentOptions::warmup),
        bind(OptionSpec::real("clip", d.clip, -kInf, kInf, "gradient-norm clip (<= 0: none)"),
             &LmStudentOptions::clip),
        bind(OptionSpec::choice("dtype", d.dtype, {"f32", "f16", "bf16"}, "of model.safetensors"),
             &LmStudentOptions::dtype),
        bind(OptionSpec::integer("eval_boundaries", d.eval_boundaries, 0, kMany,
                                 "word boundaries for the next-word agreement"),
             &LmStudentOptions::eval_boundaries)};
  }();
  return fields;
}

}  // namespace

OptionSpecs lm_student_options() { return train::declarations(lm_fields()); }

LmStudentOptions parse_lm_student(const std::string& spec) {
  const auto [kind, given] = parse_spec(spec);
  if (kind != "lm")
    throw Error(ErrorCode::kInvalidArgument, "'" + spec + "' is not an lm student",
                "use lm or lm:key=value,...");
  LmStudentOptions o;
  train::apply_options(lm_fields(), Options("student", kind, lm_student_options(), given), &o);
  if (o.dim % o.n_heads != 0)
    throw bad_option("heads", std::to_string(o.n_heads), "dim must be a multiple of heads");
  if ((o.dim / o.n_heads) % 2 != 0)
    throw bad_option("heads", std::to_string(o.n_heads), "dim / heads must be even (rotary)");
  if (o.n_kv_heads > 0 && o.n_heads % o.n_kv_heads != 0)
    throw bad_option("kv_heads", std::to_string(o.n_kv_heads), "heads must be a multiple of it");
  return o;
}

// --- teacher sampling --------------------------------------------------------------------------

std::vector<std::string> sample_teacher_texts(const Model& teacher, const SampleOptions& o,
                                              std::vector<bool>* complete) {
  if (!teacher.is_causal())
    throw Error(ErrorCode::kInvalidArgument,
                "the teacher is a " + teacher.config().architecture +
                    " classifier, not a causal LM: it cannot generate text",
                "give a causal LM (e.g. ../shared/models/stories260K) as --teacher");
  if (o.n < 0 || o.max_new_tokens < 1 || !(o.temperature > 0) || o.top_k < 0 ||
      !(o.top_p > 0 && o.top_p <= 1) || o.batch < 1)
    throw Error(ErrorCode::kInvalidArgument, "invalid teacher sampling options",
                "n >= 0, max_new_tokens >= 1, temperature > 0, top_p in (0, 1], batch >= 1");
  const Tokenizer& tok = teacher.tokenizer();
  const std::vector<TokenId> prompt = tok.encode(o.prompt, true, false);
  if (prompt.empty())
    throw Error(ErrorCode::kInvalidArgument, "the teacher's tokenizer has no BOS token",
                "give a prompt to start the generations from");
  const int64_t P = static_cast<int64_t>(prompt.size());
  const int64_t max_new = std::min(o.max_new_tokens, teacher.config().max_seq_len - P);
  if (max_new < 1)
    throw Error(ErrorCode::kInvalidArgument, "the prompt fills the teacher's context");
  GenerateOptions g;
  g.max_new_tokens = max_new;
  g.temperature = o.temperature;
  g.top_k = o.top_k;
  g.top_p = o.top_p;
  g.stop_tokens = stop_ids(tok);
  std::vector<std::vector<TokenId>> prompts(static_cast<size_t>(o.n), prompt);
  std::vector<uint64_t> seeds(static_cast<size_t>(o.n));
  for (int64_t i = 0; i < o.n; ++i)
    seeds[i] = splitmix(splitmix(o.seed) ^ static_cast<uint64_t>(o.first_index + i));
  std::vector<GenerateResult> gen;
  try {
    gen = generate_batch(teacher, prompts, seeds, g, o.batch, o.progress);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kCancelled) throw;
    throw Error(ErrorCode::kCancelled, "teacher sampling cancelled");
  }
  std::vector<std::string> out(static_cast<size_t>(o.n));
  if (complete) complete->assign(o.n, false);
  for (int64_t i = 0; i < o.n; ++i) {
    out[i] = std::move(gen[i].text);
    if (complete) (*complete)[i] = gen[i].stop_reason == "stop_token";
  }
  return out;
}

// --- figures -----------------------------------------------------------------------------------

std::vector<std::string> lm_words(const std::string& text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    if (!is_word_byte(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    bool complete = false;
    std::string w = first_unit(text.substr(i), &complete);
    i += w.size();
    for (char& c : w) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.push_back(w);
  }
  return out;
}

nlohmann::json LmFidelity::to_json() const {
  nlohmann::json j = {{"texts", texts},
                      {"words", words},
                      {"student_tokens", student_tokens},
                      {"student_loss", student_loss},
                      {"student_perplexity", student_perplexity},
                      {"student_word_perplexity", student_word_perplexity}};
  if (teacher_word_perplexity >= 0) j["teacher_word_perplexity"] = teacher_word_perplexity;
  if (token_agreement >= 0) {
    j["token_agreement"] = token_agreement;
    j["token_kl"] = token_kl;
  }
  if (word_agreement >= 0) {
    j["next_word_boundaries"] = boundaries;
    j["next_word_agreement"] = word_agreement;
  }
  return j;
}

LmFidelity measure_lm_fidelity(const Model* teacher, const Model& student,
                               const std::vector<std::string>& texts, int64_t boundaries,
                               uint64_t seed) {
  at::NoGradGuard ng;
  LmFidelity f;
  const Tokenizer& st = student.tokenizer();
  const bool shared = teacher && same_vocabulary(teacher->tokenizer(), st);
  double s_nll = 0, t_nll = 0, kl = 0;
  int64_t agree = 0, words = 0;
  for (const std::string& text : texts) {
    std::vector<TokenId> s_ids = st.encode(text, true, false);
    std::vector<TokenId> t_ids;
    if (teacher) t_ids = teacher->tokenizer().encode(text, true, false);
    if (s_ids.size() < 2 || static_cast<int64_t>(s_ids.size()) > student.config().max_seq_len + 1)
      continue;
    if (teacher && (t_ids.size() < 2 ||
                    static_cast<int64_t>(t_ids.size()) > teacher->config().max_seq_len + 1))
      continue;
    at::Tensor s_logits, t_logits;
    s_nll += sequence_nll(student, s_ids, shared ? &s_logits : nullptr);
    f.student_tokens += static_cast<int64_t>(s_ids.size()) - 1;
    if (teacher) t_nll += sequence_nll(*teacher, t_ids, shared ? &t_logits : nullptr);
    if (shared) {
      agree += s_logits.argmax(-1).eq(t_logits.argmax(-1)).sum().item<int64_t>();
      at::Tensor lt = at::log_softmax(t_logits, -1), ls = at::log_softmax(s_logits, -1);
      kl += (lt.exp() * (lt - ls)).sum().item<double>();
    }
    words += static_cast<int64_t>(lm_words(text).size());
    ++f.texts;
  }
  f.words = words;
  if (f.student_tokens > 0) {
    f.student_loss = s_nll / double(f.student_tokens);
    f.student_perplexity = std::exp(f.student_loss);
  }
  if (words > 0) {
    f.student_word_perplexity = std::exp(s_nll / double(words));
    if (teacher) f.teacher_word_perplexity = std::exp(t_nll / double(words));
  }
  if (shared && f.student_tokens > 0) {
    f.token_agreement = double(agree) / double(f.student_tokens);
    f.token_kl = kl / double(f.student_tokens);
  }
  if (teacher && boundaries > 0) {
    std::vector<std::pair<size_t, size_t>> cand;  // (text, offset): the prefix ends a word
    for (size_t t = 0; t < texts.size(); ++t) {
      const std::string& s = texts[t];
      for (size_t p = 1; p < s.size(); ++p)
        if (is_word_byte(static_cast<unsigned char>(s[p - 1])) &&
            !is_word_byte(static_cast<unsigned char>(s[p])) && s[p] != '\'')
          cand.emplace_back(t, p);
    }
    std::mt19937_64 rng(splitmix(seed + 17));
    for (size_t i = cand.size(); i > 1; --i) std::swap(cand[i - 1], cand[rng() % i]);
    if (static_cast<int64_t>(cand.size()) > boundaries) cand.resize(boundaries);
    std::sort(cand.begin(), cand.end());
    int64_t same = 0, n = 0;
    for (const auto& [t, p] : cand) {
      const std::string prefix = texts[t].substr(0, p);
      const std::string a = greedy_next_unit(*teacher, prefix, 8);
      const std::string b = greedy_next_unit(student, prefix, 8);
      if (a == "\x01" || b == "\x01") continue;  // does not fit a context
      ++n;
      same += a == b;
    }
    f.boundaries = n;
    if (n > 0) f.word_agreement = double(same) / double(n);
  }
  return f;
}

// --- training ----------------------------------------------------------------------------------

nlohmann::json LmDistillResult::to_json() const {
  const ModelConfig& c = student->config();
  return {{"mode", mode},
          {"student",
           {{"architecture", c.architecture},
            {"dim", c.dim},
            {"hidden_dim", c.hidden_dim},
            {"n_layers", c.n_layers},
            {"n_heads", c.n_heads},
            {"n_kv_heads", c.n_kv_heads},
            {"vocab_size", c.vocab_size},
            {"context", c.max_seq_len},
            {"params", params}}},
          {"train_texts", train_texts},
          {"steps", steps},
          {"train_tokens", train_tokens},
          {"train_seconds", train_seconds},
          {"tokens_per_second", tokens_per_second},
          {"final_loss", final_loss},
          {"finished", finished},
          {"held_out", held_out.to_json()}};
}

LmDistillResult distill_lm(const Model* teacher, const LmDistillOptions& o) {
  const LmStudentOptions& so = o.student;
  if (teacher && !teacher->is_causal())
    throw Error(ErrorCode::kInvalidArgument,
                "the teacher is a " + teacher->config().architecture +
                    " classifier, not a causal LM: an lm student imitates next-token predictions",
                "give a causal LM as --teacher (e.g. ../shared/models/stories260K)");
  if (!teacher && o.corpus.empty())
    throw Error(ErrorCode::kInvalidArgument, "an lm student needs a teacher or a text corpus",
                "give --teacher MODEL, or --data FILE with a text column");
  if (!teacher && so.tokenizer == "teacher")
    throw Error(ErrorCode::kInvalidArgument, "tokenizer=teacher needs a teacher",
                "use tokenizer=bpe");
  if (so.mode == "token" && (!teacher || so.tokenizer != "teacher"))
    throw Error(ErrorCode::kInvalidArgument,
                "mode=token (KD on the teacher's next-token distributions) needs a teacher and "
                "tokenizer=teacher",
                "add tokenizer=teacher, or use mode=sequence");
  if (o.out_dir.empty())
    throw Error(ErrorCode::kInvalidArgument, "no output folder for the lm student");
  std::error_code ec;
  prepare_output_dir(o.out_dir);
  auto report = [&](LmProgress p) {
    if (o.progress && !o.progress(p)) throw Error(ErrorCode::kCancelled, "training cancelled");
  };

  // 1. Texts: the corpus (seeded split) or teacher generations (held-out ones sampled apart).
  std::vector<std::string> train_texts, held;
  std::vector<bool> train_complete;
  if (!o.corpus.empty()) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < o.corpus.size(); ++i)
      if (!o.corpus[i].empty()) idx.push_back(i);
    if (idx.size() < 2)
      throw Error(ErrorCode::kInvalidArgument,
                  "the corpus has " + std::to_string(idx.size()) + " non-empty text" +
                      (idx.size() == 1 ? "" : "s"),
                  "an lm student needs at least two texts (training and held-out)");
    std::mt19937_64 rng(splitmix(o.seed + 3));
    for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[rng() % i]);
    const size_t n_held =
        std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(so.held_out), idx.size() / 5));
    for (size_t k = 0; k < idx.size(); ++k)
      (k < idx.size() - n_held ? train_texts : held).push_back(o.corpus[idx[k]]);
    train_complete.assign(train_texts.size(), true);
  } else {
    SampleOptions sp;
    sp.n = so.samples;
    sp.max_new_tokens = so.sample_tokens;
    sp.temperature = so.temperature;
    sp.top_k = so.top_k;
    sp.top_p = so.top_p;
    sp.seed = o.seed;
    sp.batch = 256;
    sp.progress = [&](int64_t done, int64_t total) {
      LmProgress p;
      p.phase = "sample";
      p.done = done;
      p.total = total + so.held_out;
      report(p);
      return true;
    };
    std::vector<bool> complete;
    train_texts = sample_teacher_texts(*teacher, sp, &complete);
    train_complete = complete;
    sp.n = so.held_out;
    sp.first_index = so.samples;  // other random streams: texts the student never sees
    sp.progress = nullptr;
    held = sample_teacher_texts(*teacher, sp);
    std::string lines;
    const auto replace = nlohmann::json::error_handler_t::replace;
    for (const std::string& t : train_texts)
      lines += nlohmann::json({{"text", t}, {"split", "train"}}).dump(-1, ' ', false, replace) +
               "\n";
    for (const std::string& t : held)
      lines += nlohmann::json({{"text", t}, {"split", "held_out"}}).dump(-1, ' ', false, replace) +
               "\n";
    write_file_atomic((fs::path(o.out_dir) / "teacher_text.jsonl").string(), lines);
  }

  // 2. Tokenizer.
  std::shared_ptr<Tokenizer> tok;
  std::vector<std::string> tok_files;
  report({"tokenizer", 0, 1});
  if (so.tokenizer == "teacher") {
    tok = reload_tokenizer(*teacher);
    tok_files = teacher->config().tokenizer_files;
  } else {
    train::BpeTrainOptions bo;
    bo.vocab_size = so.vocab_size;
    const train::BpeTokenizerFiles files = train::learn_bpe_tokenizer(train_texts, bo);
    const std::string path = train::write_bpe_tokenizer(files, o.out_dir);  // the model's files
    tok = make_hf_tokenizer(files.tokenizer_json, files.tokenizer_config_json, path);
    tok_files = {path, (fs::path(o.out_dir) / "tokenizer_config.json").string()};
  }
  const bool shared = teacher && same_vocabulary(teacher->tokenizer(), *tok);
  const bool token_mode = so.mode == "token" || (so.mode == "auto" && shared);
  if (token_mode && !shared)
    throw Error(ErrorCode::kInvalidArgument,
                "mode=token needs the student to share the teacher's vocabulary",
                "use tokenizer=teacher");
  if (token_mode && so.context > teacher->config().max_seq_len)
    throw Error(ErrorCode::kInvalidArgument, "context=" + std::to_string(so.context) +
                                                 " exceeds the teacher's context of " +
                                                 std::to_string(teacher->config().max_seq_len));

  // 3. Token sequences: BOS text [EOS], at most context + 1 tokens.
  std::vector<std::vector<int64_t>> seqs;
  for (size_t i = 0; i < train_texts.size(); ++i) {
    if (train_texts[i].empty()) continue;
    std::vector<TokenId> ids = tok->encode(train_texts[i], true, false);
    if (train_complete[i] && tok->eos_id() >= 0) ids.push_back(tok->eos_id());
    if (static_cast<int64_t>(ids.size()) > so.context + 1) ids.resize(so.context + 1);
    if (ids.size() >= 2) seqs.emplace_back(ids.begin(), ids.end());
  }
  if (seqs.empty())
    throw Error(ErrorCode::kInvalidArgument, "no training text left after tokenization",
                teacher ? "the teacher generated only empty texts: check its tokenizer"
                        : "give a corpus with some text");

  // 4. The student.
  ModelConfig c;
  c.architecture = "llama";
  c.source_format = "candor-lm-student";
  c.dim = so.dim;
  c.n_layers = so.n_layers;
  c.n_heads = so.n_heads;
  c.n_kv_heads = so.n_kv_heads > 0 ? so.n_kv_heads : so.n_heads;
  c.hidden_dim = so.hidden_dim > 0 ? so.hidden_dim : ((8 * so.dim / 3 + 7) / 8) * 8;
  c.vocab_size = tok->vocab_size();
  c.max_seq_len = so.context;
  c.tokenizer_files = tok_files;
  std::unique_ptr<Model> student = make_random_llama(c, o.seed, tok);
  std::vector<at::Tensor> params;
  for (auto& [name, t] : student->named_parameters()) params.push_back(t);

  train::TrainOptions to;
  to.epochs = so.epochs;
  to.batch_size = so.batch;
  to.learning_rate = so.lr;
  to.weight_decay = so.weight_decay;
  to.warmup_fraction = so.warmup;
  to.clip_norm = so.clip;
  to.seed = o.seed;
  to.checkpoint = (fs::path(o.out_dir) / "train.ckpt").string();
  to.checkpoint_every = 50;
  to.resume = o.resume;
  to.stop_after_steps = o.stop_after_steps;
  to.cancel = o.cancel;
  const int64_t V = c.vocab_size;
  const double T = so.kd_temperature;
  double batch_fidelity = -1;
  int64_t tokens = 0;
  const Model* student_ptr = student.get();
  auto loss_fn = [&](const std::vector<int64_t>& batch) {
    int64_t L = 0;
    for (int64_t b : batch) L = std::max<int64_t>(L, static_cast<int64_t>(seqs[b].size()) - 1);
    const int64_t B = static_cast<int64_t>(batch.size());
    // Right padding: a causal model's real positions never see the padding after them.
    at::Tensor inp = at::zeros({B, L}, at::kLong);                // [B, L]
    at::Tensor tgt = at::full({B, L}, int64_t{-100}, at::kLong);  // [B, L]
    int64_t* pi = inp.data_ptr<int64_t>();
    int64_t* pt = tgt.data_ptr<int64_t>();
    for (int64_t r = 0; r < B; ++r) {
      const auto& s = seqs[batch[r]];
      for (size_t k = 0; k + 1 < s.size(); ++k) {
        pi[r * L + k] = s[k];
        pt[r * L + k] = s[k + 1];
      }
    }
    ForwardArgs a;
    a.tokens = inp;
    at::Tensor logits = student_ptr->forward(a).reshape({-1, V});  // [B*L, V]
    at::Tensor target = tgt.reshape({-1});
    at::Tensor real = target.ne(-100).nonzero().squeeze(1);  // [N]
    logits = logits.index_select(0, real);
    target = target.index_select(0, real);
    tokens += real.size(0);
    at::Tensor loss = at::cross_entropy_loss(logits, target);
    at::NoGradGuard ng;
    if (token_mode) {
      at::Tensor tl = teacher->forward_tokens(inp).reshape({-1, V}).index_select(0, real);
      at::AutoGradMode grad(true);
      at::Tensor lt = at::log_softmax(tl / T, -1);
      at::Tensor ls = at::log_softmax(logits / T, -1);
      at::Tensor kd = (lt.exp() * (lt - ls)).sum(-1).mean() * (T * T);
      loss = so.alpha * kd + (1 - so.alpha) * loss;
      batch_fidelity = logits.argmax(-1).eq(tl.argmax(-1)).to(at::kDouble).mean().item<double>();
    } else {
      batch_fidelity = logits.argmax(-1).eq(target).to(at::kDouble).mean().item<double>();
    }
    return loss;
  };
  auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&]() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  LmDistillResult r;
  to.progress = [&](const train::TrainProgress& tp) {
    LmProgress p;
    p.phase = "train";
    p.done = tp.step;
    p.total = tp.total_steps;
    p.loss = tp.loss;
    p.learning_rate = tp.learning_rate;
    p.fidelity = batch_fidelity;
    p.tokens_per_second = double(tokens) / std::max(1e-9, seconds());
    r.final_loss = tp.loss;
    report(p);
    return true;
  };
  r.steps = train::train_loop(params, static_cast<int64_t>(seqs.size()), loss_fn, to);
  r.train_seconds = seconds();
  r.train_tokens = tokens;
  r.tokens_per_second = double(tokens) / std::max(1e-9, r.train_seconds);
  const int64_t per_epoch = (static_cast<int64_t>(seqs.size()) + so.batch - 1) / so.batch;
  r.finished = r.steps >= per_epoch * so.epochs;
  r.mode = token_mode ? "token" : "sequence";
  r.train_texts = static_cast<int64_t>(seqs.size());
  r.params = student->n_params();

  // 5. Figures, files.
  report({"measure", 0, 1});
  r.held_out = measure_lm_fidelity(teacher, *student, held, so.eval_boundaries, o.seed);
  save_hf_folder(*student, o.out_dir, so.dtype);
  std::map<std::string, int64_t> wc;
  for (const std::string& t : train_texts)
    for (const std::string& w : lm_words(t)) ++wc[w];
  {
    std::string words;
    for (const auto& [w, n] : wc)
      if (n >= 2) words += w + "\n";
    write_file_atomic((fs::path(o.out_dir) / "words.txt").string(), words);
  }
  r.student = std::move(student);
  nlohmann::json j = r.to_json();
  j["seed"] = o.seed;
  j["tokenizer"] = so.tokenizer;
  j["source"] = teacher ? "teacher generations" : "corpus";
  if (teacher && o.corpus.empty())
    j["sampling"] = {{"samples", so.samples},
                     {"held_out", so.held_out},
                     {"max_new_tokens", so.sample_tokens},
                     {"temperature", so.temperature},
                     {"top_k", so.top_k},
                     {"top_p", so.top_p}};
  j["training"] = {{"epochs", so.epochs}, {"batch", so.batch},
                   {"lr", so.lr},         {"weight_decay", so.weight_decay},
                   {"warmup", so.warmup}, {"clip", so.clip}};
  if (token_mode) j["kd"] = {{"alpha", so.alpha}, {"temperature", so.kd_temperature}};
  write_file_atomic((fs::path(o.out_dir) / "report.json").string(),
                    j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  return r;
}

}  // namespace candor::distill
