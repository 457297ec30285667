// The explain job: attribute the next token, a generated continuation, or a contrast "A rather
// than B" to a prompt with one or more methods, optionally graded (the quality block) and joined
// by a consensus; returns the attributions and the JSON envelope that `candor explain --json`
// writes. The request is built from text: tokens and classes by name, the span generated first.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "candor/cancel.h"
#include "candor/explain.h"
#include "candor/jobs_common.h"
#include "candor/report.h"

namespace candor::jobs {

struct ExplainOptions {
  ModelSource model;
  std::string prompt;  // the input text (UTF-8)
  bool chat = false;   // wrap the prompt as a user message in the model's chat template
  std::string system;  // system message when `chat`
  std::vector<std::string> methods;   // specs NAME[:key=value,...]; empty: {"input_x_gradient"}
  std::string granularity = "token";  // token | word | sentence
  // logprob | prob | logit | logodds | entropy; "": the model's default_target_function
  std::string target_function;
  std::string baseline = "unk";             // unk | pad | zero | a token id
  // What is explained (at most one of the three): the next token `target` (text that is one
  // token, with or without its leading space, or "#id"; a classifier's class by label or index),
  // `contrast` "A,B" (A rather than B), or the span of `generate` tokens the model generates
  // greedily. None: the model's prediction.
  std::string target;
  std::string contrast;
  int64_t generate = 0;
  bool evaluate = false;   // attach the quality block to each attribution (extra["quality"])
  bool consensus = false;  // add a consensus of the methods (needs two that give scores)
  std::string removal = "baseline";  // how the quality block removes features: baseline | delete
  int threads = 0;  // intra-op threads while the job runs (ThreadScope); 0: one per core
  // Bytes of the gradient tape a pass may keep before it turns lean (TapeBudgetScope while the
  // job runs; --tape-budget): -1: the process's budget (1 GiB unless set); 0: always lean.
  int64_t tape_budget = -1;
  // Polled between (and, through the progress, within) the methods: when cancelled, the job
  // stops and returns the methods that finished, naming the rest (ExplainResult::missing).
  // Not owned; may be null.
  const CancelToken* cancel = nullptr;
};

// What a running explain job reports (every callback optional).
struct ExplainEvents {
  // The model is loaded and the request built; the methods start.
  std::function<void()> started;
  // Fraction done (0..1) of a method's explanation; return false to cancel (Error(kCancelled)).
  std::function<bool(const std::string& method, double fraction)> progress;
  // A method's explanation is done.
  std::function<void(const std::string& method)> method_done;
  // The quality block (ExplainOptions::evaluate) starts.
  std::function<void()> evaluating;
};

// The target function explained when none is given: logodds for a classifier, whose class
// probability is often near 1 where prob and logprob flatten out and every score goes to zero
// (saturation_warnings); logprob for a language model, whose next-token probabilities are
// spread over the vocabulary.
TargetFunction default_target_function(ModelKind kind);

// A request built from text, and what it explains in words.
struct ExplainSetup {
  ExplainRequest request;
  std::string generated_text;      // the generated span's text ("" unless options.generate)
  std::string target_description;  // e.g. "logprob of ' time'", "log p('big') - log p('little')"
};

// Builds the request of `options` for `model`: the prompt's ids (chat template when asked), the
// granularity, baseline and target, generating the span first when options.generate > 0.
// Throws RequestError for a bad option, a token that is not one of the vocabulary, or --generate
// on a classifier; Error(kInvalidArgument) when the model generates nothing.
ExplainSetup build_explain_request(const Model& model, const ExplainOptions& options);

struct ExplainResult {
  std::vector<Attribution> attributions;  // one per method, in order, then the consensus
  ReportContext context;                  // model, prompt, generated text, target description
  nlohmann::ordered_json envelope;        // what `candor explain --json` writes
  // Interrupted (ExplainOptions::cancel or a progress callback returning false) after at least
  // one method finished: `complete` is false and `missing` names what was not done (the method
  // specs that did not finish, then "consensus" / "quality" when they were asked for); the
  // envelope says so ("interrupted": true, "missing": [...]).
  bool complete = true;
  std::vector<std::string> missing;
};

// Runs the job: checks every option before loading the model (RequestError), loads it (unless
// borrowed), builds the request, explains with each method, adds the consensus and the quality
// block, and the envelope. Runs with options.threads intra-op threads, restored afterwards.
// Cancelled before any method finished: throws Error(kCancelled); after: returns what is done.
// A fastText classifier file (is_fasttext_file) is explained exactly by its linear decomposition
// (one attribution, method "fasttext_exact": a score per word or sentence, summing to
// logit(target) - logit(contrast); the terms of its words, character n-grams and word n-grams
// in extra["terms"]); --target and --contrast name its labels; the options that need a network
// candor runs (other methods, --generate, --chat, --evaluate, --consensus, --tokenizer,
// --baseline, --target-function prob|entropy) are RequestErrors.
ExplainResult run_explain(const ExplainOptions& options, const ExplainEvents& events = {});

// The envelope of `candor explain --json`: model, prompt, generated_text, target, and the
// attributions (attribution_to_json, with a quality block lifted out of "extra").
nlohmann::ordered_json explain_envelope(const ReportContext& context,
                                        const std::vector<Attribution>& attributions);
// The envelope as the file holds it: indented by 2, a newline at the end; bytes that are not
// UTF-8 (a token label can be part of a character) become U+FFFD.
std::string envelope_text(const nlohmann::ordered_json& envelope);

}  // namespace candor::jobs
