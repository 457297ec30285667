// Autoregressive generation over the KV cache: greedy and seeded sampling (temperature, top-k,
// top-p), stop tokens, context limit and a streaming callback.
#include "candor/generate.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <map>
#include <numeric>

#include "candor/error.h"

namespace candor {
namespace {

// splitmix64: a small, portable, seedable generator (same stream on every platform).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

 private:
  uint64_t state_;
};

// Picks the next token from one row of logits; returns it with its log-probability under the
// untruncated distribution at temperature 1.
std::pair<TokenId, float> pick(const float* logits, int64_t n, const GenerateOptions& o, Rng& rng) {
  double max_logit = *std::max_element(logits, logits + n);
  double log_z = 0;
  for (int64_t i = 0; i < n; ++i) log_z += std::exp(logits[i] - max_logit);
  log_z = max_logit + std::log(log_z);
  auto logprob = [&](int64_t i) { return static_cast<float>(logits[i] - log_z); };

  if (o.temperature == 0.0f) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
      if (logits[i] > logits[best]) best = i;
    return {static_cast<TokenId>(best), logprob(best)};
  }
  // Candidates sorted by logit, cut by top-k, then by top-p over the tempered distribution.
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  int64_t keep = (o.top_k > 0 && o.top_k < n) ? o.top_k : n;
  std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), [&](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  idx.resize(keep);
  std::vector<double> p(keep);
  double top = logits[idx[0]], sum = 0;
  for (int64_t i = 0; i < keep; ++i) sum += p[i] = std::exp((logits[idx[i]] - top) / o.temperature);
  for (auto& v : p) v /= sum;
  if (o.top_p < 1.0f) {
    double cum = 0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i) {
      cum += p[i];
      if (cum >= o.top_p) {
        cut = i + 1;
        break;
      }
    }
    p.resize(cut);
    idx.resize(cut);
    double s = std::accumulate(p.begin(), p.end(), 0.0);
    for (auto& v : p) v /= s;
  }
  double r = rng.uniform(), cum = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    cum += p[i];
    if (r < cum) return {static_cast<TokenId>(idx[i]), logprob(idx[i])};
  }
  return {static_cast<TokenId>(idx.back()), logprob(idx.back())};
}

// Entropy, margin and the best alternatives of one row of logits (temperature 1).
TokenStats token_stats(const float* logits, int64_t n, float logprob, int64_t top) {
  TokenStats st;
  st.logprob = logprob;
  double max_logit = *std::max_element(logits, logits + n), z = 0;
  for (int64_t i = 0; i < n; ++i) z += std::exp(logits[i] - max_logit);
  double log_z = max_logit + std::log(z), h = 0;
  for (int64_t i = 0; i < n; ++i) {
    double lp = logits[i] - log_z;
    h -= std::exp(lp) * lp;
  }
  st.entropy = static_cast<float>(std::max(0.0, h));
  int64_t k = std::min<int64_t>(n, std::max<int64_t>(top, 2));
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  st.margin = static_cast<float>(std::exp(logits[idx[0]] - log_z) -
                                 (k > 1 ? std::exp(logits[idx[1]] - log_z) : 0.0));
  for (int64_t i = 0; i < std::min<int64_t>(top, n); ++i)
    st.top.emplace_back(static_cast<TokenId>(idx[i]), static_cast<float>(logits[idx[i]] - log_z));
  return st;
}

// One decoding step of one sequence: picks its next token from a row of logits. At a stop token
// sets stop_reason "stop_token" and returns false; otherwise appends the token, its
// log-probability and its bytes (also into *piece) to `r`, makes it *prev and returns true.
bool take_token(const float* logits, int64_t n, const GenerateOptions& o, Rng& rng,
                const std::vector<TokenId>& stops, const Tokenizer& tok, TokenId* prev,
                GenerateResult* r, std::string* piece) {
  auto [next, lp] = pick(logits, n, o, rng);
  if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
    r->stop_reason = "stop_token";
    return false;
  }
  r->generated_ids.push_back(next);
  r->logprobs.push_back(lp);
  if (o.token_stats || o.top_logprobs > 0)
    r->token_stats.push_back(token_stats(logits, n, lp, o.top_logprobs));
  *piece = tok.decode_piece(*prev, next);
  r->text += *piece;
  *prev = next;
  return true;
}

// Throws Error(kInvalidArgument) for an empty prompt, Error(kResourceExhausted) for one longer
// than the model's context.
void check_prompt(const std::vector<TokenId>& prompt_ids, const ModelConfig& c) {
  if (prompt_ids.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "generate() needs at least one prompt token",
                "start the prompt with BOS");
  }
  if (static_cast<int64_t>(prompt_ids.size()) > c.max_seq_len) {
    throw Error(ErrorCode::kResourceExhausted,
                "the prompt is " + std::to_string(prompt_ids.size()) +
                    " tokens long, more than the model's context of " +
                    std::to_string(c.max_seq_len) + " tokens",
                "shorten the prompt");
  }
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

void validate_generate_options(const GenerateOptions& o) {
  auto bad = [](const std::string& msg, const std::string& hint) {
    throw Error(ErrorCode::kInvalidArgument, msg, hint);
  };
  if (o.max_new_tokens < 1)
    bad("the number of tokens to generate (-n) must be at least 1, got " +
            std::to_string(o.max_new_tokens),
        "pass -n with a positive count");
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature))
    bad("temperature must be a finite number >= 0, got " + std::to_string(o.temperature),
        "use 0 for greedy decoding, or e.g. 0.8");
  if (o.top_k < 0)
    bad("top-k must be >= 0 (0 disables it), got " + std::to_string(o.top_k), "e.g. --top-k 40");
  if (o.top_logprobs < 0 || o.top_logprobs > 100)
    bad("top_logprobs must be in [0, 100], got " + std::to_string(o.top_logprobs), "e.g. 5");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f))
    bad("top-p must be in (0, 1], got " + std::to_string(o.top_p), "e.g. --top-p 0.9");
}

namespace {

// The default source: the model's own batch-1 KV cache.
class CacheSource : public LogitSource {
 public:
  CacheSource(const Model& model, int64_t capacity) : model_(model) {
    cache_ = model.new_cache(1, capacity);
    args_.cache = &cache_;
    args_.last_only = true;
  }
  const float* prefill(const std::vector<TokenId>& ids) override {
    args_.tokens = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
    return run();
  }
  const float* next(TokenId token) override {
    args_.tokens = at::full({1, 1}, static_cast<int64_t>(token), at::kLong);
    return run();
  }

 private:
  const float* run() {
    logits_ = model_.forward(args_).contiguous();  // [1, 1, V]
    return logits_.data_ptr<float>();
  }
  const Model& model_;
  KVCache cache_;
  ForwardArgs args_;
  at::Tensor logits_;
};

}  // namespace

GenerateResult generate(const Model& model, const std::vector<TokenId>& prompt_ids,
                        const GenerateOptions& options) {
  validate_generate_options(options);
  check_prompt(prompt_ids, model.config());
  at::NoGradGuard no_grad;
  CacheSource source(model, std::min<int64_t>(model.config().max_seq_len,
                                              prompt_ids.size() + options.max_new_tokens));
  return generate(model, prompt_ids, options, source);
}

GenerateResult generate(const Model& model, const std::vector<TokenId>& prompt_ids,
                        const GenerateOptions& options, LogitSource& source) {
  validate_generate_options(options);
  const ModelConfig& c = model.config();
  check_prompt(prompt_ids, c);
  const Tokenizer& tok = model.tokenizer();
  std::vector<TokenId> stops = options.stop_tokens;
  if (stops.empty()) stops = {tok.bos_id(), tok.eos_id()};

  GenerateResult r;
  r.prompt_ids = prompt_ids;
  r.prompt_text = tok.decode(
      std::vector<TokenId>(prompt_ids.begin() + (prompt_ids[0] == tok.bos_id()), prompt_ids.end()));
  at::NoGradGuard no_grad;
  Rng rng(options.seed);

  auto t0 = std::chrono::steady_clock::now();
  const float* logits = source.prefill(prompt_ids);
  int64_t length = static_cast<int64_t>(prompt_ids.size());  // positions the model has read
  r.prefill_ms = ms_since(t0);

  auto t1 = std::chrono::steady_clock::now();
  TokenId prev = prompt_ids.back();
  r.stop_reason = "max_new_tokens";
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    std::string piece;
    if (!take_token(logits, c.vocab_size, options, rng, stops, tok, &prev, &r, &piece)) break;
    const TokenId next = prev;
    if (options.on_token && !options.on_token(next, piece)) {
      r.stop_reason = "callback";
      break;
    }
    if (step + 1 == options.max_new_tokens) break;
    if (length >= c.max_seq_len) {
      r.stop_reason = "context";
      break;
    }
    logits = source.next(next);
    ++length;
  }
  r.decode_ms = ms_since(t1);
  return r;
}

std::vector<GenerateResult> generate_batch(const Model& model,
                                           const std::vector<std::vector<TokenId>>& prompt_ids,
                                           const std::vector<uint64_t>& seeds,
                                           const GenerateOptions& options, int64_t batch,
                                           const std::function<bool(int64_t, int64_t)>& progress) {
  validate_generate_options(options);
  if (!seeds.empty() && seeds.size() != prompt_ids.size())
    throw Error(ErrorCode::kInvalidArgument,
                "generate_batch got " + std::to_string(prompt_ids.size()) + " prompts and " +
                    std::to_string(seeds.size()) + " seeds",
                "give one seed per prompt, or none (options.seed for all)");
  if (batch < 1)
    throw Error(ErrorCode::kInvalidArgument,
                "the batch size must be at least 1, got " + std::to_string(batch));
  const ModelConfig& c = model.config();
  const Tokenizer& tok = model.tokenizer();
  for (const auto& p : prompt_ids) check_prompt(p, c);

  std::vector<TokenId> stops = options.stop_tokens;
  if (stops.empty()) stops = {tok.bos_id(), tok.eos_id()};
  const int64_t V = c.vocab_size;
  const int64_t n = static_cast<int64_t>(prompt_ids.size());

  std::vector<GenerateResult> out(prompt_ids.size());
  // Prompts of one length share batches (one prefill, one cache length), in order of first use.
  std::vector<std::vector<int64_t>> groups;
  {
    std::map<size_t, size_t> group_of;
    for (int64_t i = 0; i < n; ++i) {
      auto [it, fresh] = group_of.emplace(prompt_ids[i].size(), groups.size());
      if (fresh) groups.emplace_back();
      groups[it->second].push_back(i);
    }
  }
  at::NoGradGuard no_grad;
  int64_t done = 0;
  for (const std::vector<int64_t>& group : groups) {
    const int64_t P = static_cast<int64_t>(prompt_ids[group[0]].size());
    for (size_t start = 0; start < group.size(); start += static_cast<size_t>(batch)) {
      const int64_t B = std::min<int64_t>(batch, static_cast<int64_t>(group.size() - start));
      std::vector<int64_t> rows(B);  // prompt index of each cache row still decoding
      std::vector<Rng> rng;
      std::vector<TokenId> prev(B);
      std::vector<int64_t> flat;
      for (int64_t r = 0; r < B; ++r) {
        const int64_t i = group[start + r];
        rows[r] = i;
        rng.emplace_back(seeds.empty() ? options.seed : seeds[i]);
        const std::vector<TokenId>& p = prompt_ids[i];
        prev[r] = p.back();
        flat.insert(flat.end(), p.begin(), p.end());
        GenerateResult& g = out[i];
        g.prompt_ids = p;
        g.prompt_text =
            tok.decode(std::vector<TokenId>(p.begin() + (p[0] == tok.bos_id()), p.end()));
        g.stop_reason = "max_new_tokens";
      }
      std::vector<size_t> slot(B);  // rng / prev slot of each cache row
      std::iota(slot.begin(), slot.end(), 0);
      KVCache cache =
          model.new_cache(B, std::min<int64_t>(c.max_seq_len, P + options.max_new_tokens));
      auto t0 = std::chrono::steady_clock::now();
      ForwardArgs args;
      args.tokens = at::tensor(flat, at::kLong).view({B, P});  // [B, P]
      args.cache = &cache;
      args.last_only = true;
      at::Tensor logits = model.forward(args).reshape({-1, V}).contiguous();  // [rows, V]
      const double prefill = ms_since(t0);
      auto t1 = std::chrono::steady_clock::now();
      for (int64_t step = 0; step < options.max_new_tokens && !rows.empty(); ++step) {
        const float* lg = logits.data_ptr<float>();
        std::vector<int64_t> keep, next;
        for (size_t k = 0; k < rows.size(); ++k) {
          GenerateResult& g = out[rows[k]];
          std::string piece;
          TokenId& t = prev[slot[k]];
          if (!take_token(lg + static_cast<int64_t>(k) * V, V, options, rng[slot[k]], stops, tok,
                          &t, &g, &piece))
            continue;
          keep.push_back(static_cast<int64_t>(k));
          next.push_back(t);
        }
        if (step + 1 == options.max_new_tokens) break;
        if (!keep.empty() && cache.length() >= c.max_seq_len) {
          for (int64_t k : keep) out[rows[k]].stop_reason = "context";
          break;
        }
        if (keep.size() < rows.size()) {
          std::vector<int64_t> still_rows;
          std::vector<size_t> still_slot;
          for (int64_t k : keep) {
            still_rows.push_back(rows[k]);
            still_slot.push_back(slot[k]);
          }
          rows = std::move(still_rows);
          slot = std::move(still_slot);
          if (rows.empty()) break;
          cache = cache.select_rows(keep);
        }
        args.tokens = at::tensor(next, at::kLong).view({static_cast<int64_t>(rows.size()), 1});
        logits = model.forward(args).reshape({-1, V}).contiguous();  // [rows, V]
      }
      const double decode = ms_since(t1);
      for (int64_t r = 0; r < B; ++r) {
        out[group[start + r]].prefill_ms = prefill;
        out[group[start + r]].decode_ms = decode;
      }
      done += B;
      if (progress && !progress(done, n))
        throw Error(ErrorCode::kCancelled, "generation cancelled");
    }
  }
  return out;
}

GenerateResult generate(const Model& model, std::string_view prompt,
                        const GenerateOptions& options) {
  validate_generate_options(options);
  std::vector<TokenId> ids = model.tokenizer().encode(prompt, options.add_bos, false);
  return generate(model, ids, options);
}

}  // namespace candor
