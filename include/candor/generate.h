// Text generation with a loaded model: greedy, temperature, top-k and top-p sampling, seeded,
// with a streaming callback per token.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "candor/model.h"

namespace candor {

// What the model thought of one generated token, from the pass that produced it (temperature 1,
// no truncation): the uncertainty checks and the OpenAI-style `logprobs` read these.
struct TokenStats {
  float logprob = 0;  // log-probability of the chosen token
  float entropy = 0;  // entropy of the next-token distribution, in nats
  float margin = 0;   // probability of the most likely token minus that of the runner-up
  std::vector<std::pair<TokenId, float>> top;  // the `top_logprobs` most likely tokens, best first
};

struct GenerateOptions {
  int64_t max_new_tokens = 256;      // Default: 256. Must be >= 1.
  float temperature = 0.0f;          // Default: 0 = greedy (argmax). Must be >= 0.
  int64_t top_k = 0;                 // Default: 0 = no top-k cut. Must be >= 0.
  float top_p = 1.0f;                // Default: 1 = no nucleus cut. Must be in (0, 1].
  uint64_t seed = 0;                 // Default: 0. Same seed, same options, same model: same text.
  bool add_bos = true;               // Default: true (as the llama2.c reference does).
  std::vector<TokenId> stop_tokens;  // Default (empty): the tokenizer's BOS and EOS.
  bool token_stats = false;          // Default: false. Fill GenerateResult::token_stats.
  int64_t top_logprobs = 0;          // Default: 0. Alternatives kept per token (implies token_stats).
  // Called with each generated token and the bytes it adds to the text. Return false to stop.
  std::function<bool(TokenId token, const std::string& piece)> on_token;
};

struct GenerateResult {
  std::vector<TokenId> prompt_ids;     // the prompt as fed, BOS included
  std::vector<TokenId> generated_ids;  // new tokens (a stop token is not included)
  std::vector<float> logprobs;         // log-probability of each generated token (T = 1)
  std::vector<TokenStats> token_stats;  // per generated token, when options.token_stats or top_logprobs
  std::string prompt_text;             // decode(prompt_ids)
  std::string text;                    // the bytes the generated tokens add after the prompt
  std::string stop_reason;             // "stop_token", "max_new_tokens", "context", "callback"
  double prefill_ms = 0;
  double decode_ms = 0;
};

// Throws Error(kInvalidArgument) naming the first invalid option and its allowed range.
void validate_generate_options(const GenerateOptions& options);

// Generates from token ids (BOS already included when wanted). Throws Error(kInvalidArgument)
// for invalid options or ids, Error(kResourceExhausted) when the prompt exceeds the context.
GenerateResult generate(const Model& model, const std::vector<TokenId>& prompt_ids,
                        const GenerateOptions& options);

// Where generate() reads its logits: by default the model's own KV cache, one sequence at a time;
// the service feeds the sequences of concurrent requests through one batched forward instead
// (src/serve/batcher.h). The pointers returned stay valid until the next call.
class LogitSource {
 public:
  virtual ~LogitSource() = default;
  // The logits [vocab] (float32) after the whole prompt.
  virtual const float* prefill(const std::vector<TokenId>& prompt_ids) = 0;
  // The logits [vocab] after one more token.
  virtual const float* next(TokenId token) = 0;
};

// generate() with its logits from `source` (fresh: prefill() not yet called): the same pick of
// each token, stop tokens, context limit and callback.
GenerateResult generate(const Model& model, const std::vector<TokenId>& prompt_ids,
                        const GenerateOptions& options, LogitSource& source);

// Encodes `prompt` (BOS first when options.add_bos; an empty prompt is BOS alone) and generates.
// Also throws Error(kInvalidArgument) when the prompt is not valid UTF-8.
GenerateResult generate(const Model& model, std::string_view prompt,
                        const GenerateOptions& options);

// Continues several prompts in batches over the KV cache: result i is sampled with the rule of
// generate() (the same pick of each next token, stop tokens and context limit) from its own
// random stream, seeded with seeds[i] (empty `seeds`: options.seed for every prompt), so it
// depends on its prompt and seed only, not on the other rows or the batch size. Prompts of the
// same length are decoded together, at most `batch` rows at a time (rows that stop leave the
// batch). The logits come from a batched forward pass, which may differ from a one-row pass in
// the last bits. options.on_token is not called; `progress` (optional) is called after each
// batch with the prompts done and their total, and false cancels (Error kCancelled). Throws as
// generate(), and Error(kInvalidArgument) when seeds and prompts differ in number.
std::vector<GenerateResult> generate_batch(
    const Model& model, const std::vector<std::vector<TokenId>>& prompt_ids,
    const std::vector<uint64_t>& seeds, const GenerateOptions& options, int64_t batch = 64,
    const std::function<bool(int64_t done, int64_t total)>& progress = nullptr);

}  // namespace candor
