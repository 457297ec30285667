// Supervision of one answer under a policy: which checks run, their thresholds, and what happens
// when one fails. The service runs this beside every response; the CLI can run the same checks.
// Checks that need the model reuse the pass that produced the answer (the per-token statistics
// of GenerateResult::token_stats) instead of calling the model again, except those that must
// (the counterfactual probe: one teacher-forced pass per swapped prompt).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "candor/explain.h"
#include "candor/generate.h"
#include "candor/model.h"

namespace candor::supervise {

enum class Action { kAllow, kFlag, kBlock, kRedact, kRegenerate };
const char* action_name(Action action);  // "allow", "flag", "block", "redact", "regenerate"

struct CheckSpec {
  std::string name;      // unique in the policy, e.g. "uncertainty"
  std::string type;      // "uncertainty", "explanation_quality", "counterfactual",
                         // "blocked_terms", "length", "time"
  nlohmann::json params = nlohmann::json::object();  // thresholds and settings of the type
  Action on_fail = Action::kFlag;
  bool async = false;    // run after the answer is sent; results appended to the same record
};

struct ExplainPolicy {
  bool enabled = true;
  std::string method = "occlusion";     // registry spec, "name:key=value"
  std::string granularity = "word";
  std::vector<std::string> allowed_methods;  // what a request may ask for ("" list: method only)
  int64_t max_methods = 2;
  bool evaluate = false;                // attach the quality block
  int64_t top_features = 5;             // kept in the audit record's summary
};

struct Limits {
  int64_t max_tokens = 512;          // per request
  int64_t max_prompt_tokens = 2048;
  int64_t max_body_bytes = 1 << 20;
  double request_timeout_ms = 30000;
  // A failed check whose action is `regenerate` samples the answer again (a new seed derived from
  // the request's) at most this many times; every attempt is recorded.
  int64_t max_regenerations = 2;
};

struct Policy {
  std::string source;   // the file it came from ("" for the default)
  std::string hash;     // hex SHA-256 of the file's bytes (of the default's JSON for the default)
  ExplainPolicy explain;
  Limits limits;
  bool log_content = true;  // prompts and answers go into the audit log
  // Prompts and answers go into exported OpenTelemetry spans (gen_ai.input.messages,
  // gen_ai.output.messages) too; off by default, and never without log_content.
  bool export_content = false;
  std::vector<CheckSpec> checks;
  nlohmann::json to_json() const;
};

// YAML or JSON (docs/policy.md). Errors name the file, the line and the field, with a suggestion
// for a misspelt key, check type or action (Error kInvalidArgument; kNotFound for a missing file).
Policy load_policy(const std::string& path);
Policy parse_policy(std::string_view text, const std::string& source_name);
Policy default_policy();
// "allow" -> kAllow, ...; throws Error(kInvalidArgument) with a suggestion for another word.
Action parse_action(const std::string& name);
// The check types and the parameters each takes (beside name, type, on_fail, async).
const std::vector<std::string>& check_types();
std::vector<std::string> check_parameters(const std::string& type);

// One answered request, as the server has it after generation.
struct Exchange {
  const Model* model = nullptr;          // for checks that must call the model again
  std::vector<TokenId> prompt_ids;       // as fed, BOS included
  std::vector<TokenId> answer_ids;
  std::string prompt;                    // the prompt text the model read
  std::string answer;                    // the generated text
  std::vector<TokenStats> token_stats;   // per answer token, from the generating pass
  const Attribution* explanation = nullptr;  // the policy's explanation, when one was made
  // The request `explanation` answers (input, target, features): lets explanation_quality score
  // the explanation and its decoys itself when the quality block is absent or lists no decoys.
  const ExplainRequest* explain_request = nullptr;
  double elapsed_ms = 0;                 // time spent on the request so far
};

struct CheckResult {
  std::string name;
  std::string type;
  double value = 0;
  double threshold = 0;
  std::string outcome;   // "pass", "fail", "skipped" (not applicable), "error"
  std::string action;    // what the policy does on failure
  std::string detail;    // a sentence: what was measured, why it failed
  double ms = 0;
  bool async = false;
  nlohmann::json measures = nlohmann::json::object();  // every figure the check measured
  nlohmann::json to_json() const;
};

struct Review {
  std::vector<CheckResult> checks;
  std::string decision = "allow";  // the strongest action of the failed checks: allow < flag < block
  std::vector<std::string> reasons;
  bool regenerate = false;  // a failed check asks for another sample
  bool redact = false;      // a failed check asks for the matched text to be masked
  std::string redacted_answer;  // the answer with the matches masked, when `redact`
  nlohmann::json to_json() const;
};

// Rewrites a prompt with protected-attribute terms swapped (one prompt per swap); empty when the
// prompt mentions none. The audits' counterfactual swaps provide it.
using Swapper = std::function<std::vector<std::string>(const std::string& prompt)>;

// A Swapper over a small built-in list of gendered words (he/she, his/her, man/woman, mother/
// father, ...): one prompt with every listed word swapped, keeping capitalisation; none when the
// prompt mentions no listed word (whole words, any case).
Swapper default_swapper();

// --- the checks, each a plain function (params as in the policy; a missing one takes its default).
// They throw Error(kInvalidArgument) for bad params or input; the Supervisor records that as
// outcome "error".

// Mean and max token entropy and the minimum token log-probability of the answer, from the
// generating pass. Params: max_mean_entropy, max_entropy, min_logprob (each optional, nats).
CheckResult check_uncertainty(const std::vector<TokenStats>& stats, const nlohmann::json& params);
// From the attribution's quality block (extra["quality"], attached by `evaluate`): comprehensiveness
// AOPC at least min_comprehensiveness, sufficiency AOPC at most max_sufficiency, and, with
// beat_decoys, comprehensiveness above that of every decoy listed in quality["decoys"]
// ({name: {comprehensiveness_aopc}}). Skipped without an explanation or a quality block.
CheckResult check_explanation_quality(const Attribution* explanation, const nlohmann::json& params);
// The same, computing what the quality block lacks with the model: comprehensiveness and
// sufficiency AOPC of the explanation and, with beat_decoys, of its decoys ("random", "inverted",
// "first", "last"; make_decoys, seed 0), scored from one shared mask bank. Model passes: one
// batch of masked inputs (fractions x 2 x (1 + decoys) at most). Falls back to the block-only
// check when `model` or `request` is null.
CheckResult check_explanation_quality(const Model* model, const ExplainRequest* request,
                                      const Attribution* explanation, const nlohmann::json& params);
// Teacher-forced mean log-probability of the answer after the prompt and after each swapped
// prompt (one forward pass each); fails when |difference| > threshold for any swap. Skipped when
// the swapper returns no prompt. Params: threshold (nats, default 0.5), max_swaps (default 8).
CheckResult check_counterfactual(const Model& model, const std::vector<TokenId>& prompt_ids,
                                 const std::string& prompt, const std::vector<TokenId>& answer_ids,
                                 const Swapper& swapper, const nlohmann::json& params);
// Mean log-probability per token of `answer_ids` after `prompt_ids` (BOS included), in one
// forward pass.
double answer_mean_logprob(const Model& model, const std::vector<TokenId>& prompt_ids,
                           const std::vector<TokenId>& answer_ids);
// Blocked terms (whole words, any case) and regular expressions (ECMAScript) on the answer.
// Params: terms [..], patterns [..], case_sensitive (patterns; default false). `redacted`, when
// given, receives the answer with every match replaced by "[redacted]".
CheckResult check_blocked_terms(const std::string& answer, const nlohmann::json& params,
                                std::string* redacted = nullptr);
// Answer length in tokens. Params: max_tokens (required), min_tokens (default 0).
CheckResult check_length(int64_t n_tokens, const nlohmann::json& params);
// Time spent on the request. Params: max_ms (required).
CheckResult check_time(double elapsed_ms, const nlohmann::json& params);

// --- guarded streaming: what `candor serve` releases of a streamed answer under the policy.
//
// Live: no check can block or rewrite the answer before it is whole (every check's action is
// allow or flag, or it is async): pieces go out as they are generated.
// Windowed: every non-async check that can block or redact is a blocked_terms check whose
// patterns (if any) declare `max_match` (the longest match in bytes): the guard holds back a
// window of the last max(longest term, max_match + 1) bytes, releases only text no future match
// can reach (redacted where a redacting check matched), and stops at the first complete match of
// a blocking check.
// Buffered: a non-async check that needs the whole answer (uncertainty, explanation_quality,
// counterfactual, length, time, a blocked_terms check with patterns but no max_match, or any
// check whose action is regenerate) can block, redact or regenerate it: nothing is released
// until the review has decided.
enum class StreamMode { kLive, kWindowed, kBuffered };
const char* stream_mode_name(StreamMode mode);  // "live", "windowed", "buffered"

struct StreamPlan {
  StreamMode mode = StreamMode::kLive;
  size_t window = 0;                 // bytes held back (windowed)
  std::vector<std::string> reasons;  // why the stream is windowed or buffered, one per check
  nlohmann::json to_json() const;
};
StreamPlan plan_stream(const Policy& policy);

// Fed the answer piece by piece as it is generated, returns what may be released. Blocking
// checks are watched in every mode (a blocked stream stops generating); the text released is
// exactly a prefix of what the review's decision gives the whole answer: the answer itself
// (allow, flag) or the redacted answer (redact) -- provided each pattern's matches are at most
// its check's `max_match` bytes, lookarounds included.
class StreamGuard {
 public:
  explicit StreamGuard(const Policy& policy);
  const StreamPlan& plan() const { return plan_; }
  // The next piece of the answer; returns the text released now ("" while held or blocked).
  std::string push(const std::string& piece);
  // The answer is complete: returns the rest to release (windowed and live; "" when buffered:
  // the caller releases the review's answer) and decides a match at the very end.
  std::string finish();
  bool blocked() const { return blocked_; }
  const std::string& block_reason() const { return block_reason_; }  // the check and the match
  const std::string& text() const { return text_; }                  // everything pushed
  const std::string& released() const { return released_; }         // everything released

 private:
  struct Watched;
  std::string advance(bool final);
  StreamPlan plan_;
  std::vector<std::shared_ptr<const Watched>> watched_;
  std::string text_, released_;
  size_t consumed_ = 0;  // bytes of text_ released (or passed over as redacted)
  bool blocked_ = false;
  bool finished_ = false;
  std::string block_reason_;
};

class Supervisor {
 public:
  explicit Supervisor(Policy policy, Swapper swapper = nullptr);
  const Policy& policy() const { return policy_; }
  // The checks not declared async, in policy order. Never throws for a failing check: a check
  // that errors is recorded with outcome "error".
  Review review(const Exchange& exchange) const;
  // The async checks only, for the addendum record.
  Review review_async(const Exchange& exchange) const;

 private:
  Review run(const Exchange& exchange, bool async) const;
  Policy policy_;
  Swapper swapper_;
  // Per check name: the swapper over the audits' word lists of the check's `attributes`
  // (gender, race, religion, nationality, age; candor/audit.h), when it names any.
  std::map<std::string, Swapper> attribute_swappers_;
};

}  // namespace candor::supervise
