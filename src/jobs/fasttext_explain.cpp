// The explain job for a fastText classifier (candor explain --model X.ftz): the exact linear
// decomposition of TextClassifier::explain as an Attribution, so that the console view, the
// JSON envelope and the HTML report show it like any other method's. The classifier's hidden
// vector is the mean of its input rows, so logit(A) - logit(B) is the sum of one term per row:
// each word's feature gets its own row and its character n-grams, and a word n-gram's term is
// shared equally among its words (every term is listed in extra["terms"]).
#include <chrono>
#include <cmath>

#include "candor/classifier.h"
#include "candor/jobs_explain.h"
#include "jobs/internal.h"

namespace candor::jobs {
namespace {

constexpr const char* kMethod = "fasttext_exact";

int parse_label(const TextClassifier& clf, const std::string& text, const std::string& option) {
  const auto& labels = clf.labels();
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] == text || labels[i] == "__label__" + text) return static_cast<int>(i);
  }
  std::string digits = text.size() > 1 && text[0] == '#' ? text.substr(1) : text;
  if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos &&
      digits.size() < 6) {
    const int i = std::stoi(digits);
    if (i < static_cast<int>(labels.size())) return i;
  }
  std::string names;
  for (size_t i = 0; i < labels.size(); ++i) names += (i ? ", " : "") + labels[i];
  throw RequestError(option + " '" + text + "' is not a label of this fastText classifier",
                     "its labels are " + names + " (or their index, 0.." +
                         std::to_string(labels.size() - 1) + ")");
}

}  // namespace

ExplainResult explain_fasttext(const ExplainOptions& o, const ExplainEvents& events) {
  const std::string& path = o.model.path;
  const std::string what = "'" + path + "' is a fastText classifier";
  // Options that need a network candor runs, refused with what to do instead.
  for (const std::string& m : o.methods) {
    if (m != kMethod)
      throw RequestError("--method " + m + ": " + what +
                             ", explained exactly by its linear decomposition (method " + kMethod +
                             ", the default); the other methods need a transformer candor runs",
                         "leave --method out (or give --method " + std::string(kMethod) + ")");
  }
  if (o.generate > 0)
    throw RequestError("--generate needs a language model; " + what,
                       "explain a class with --target LABEL");
  if (o.chat) throw RequestError("--chat needs a chat model; " + what, "leave --chat out");
  if (!o.model.tokenizer.empty())
    throw RequestError("--tokenizer: " + what + ", which splits its text itself",
                       "leave --tokenizer out");
  if (o.evaluate || o.consensus)
    throw RequestError(std::string(o.evaluate ? "--evaluate" : "--consensus") + ": " + what +
                           ", whose one attribution is exact (its scores sum to the explained "
                           "logit difference); there are no approximate methods to grade or join",
                       "leave the option out");
  if (!o.target_function.empty() && o.target_function != "logprob" && o.target_function != "logit")
    throw RequestError("--target-function " + o.target_function + ": " + what +
                           ", explained exactly only for its logits (the difference of two "
                           "classes' logits, = log p(A) / p(B) for a softmax model)",
                       "leave --target-function out");
  if (o.baseline != "unk")
    throw RequestError("--baseline: " + what + ", whose exact decomposition has no baseline",
                       "leave --baseline out");
  Granularity granularity;
  try {
    granularity = parse_granularity(o.granularity);
  } catch (const Error& e) {
    throw RequestError(e.what(), e.hint());
  }
  check_prompt(o.prompt);
  if (o.prompt.find_first_not_of(" \t\r\n\v\f") == std::string::npos)
    throw RequestError("--prompt is empty: nothing to attribute", "give a non-empty prompt");

  std::unique_ptr<TextClassifier> clf = load_fasttext(path);
  const auto& labels = clf->labels();
  const nlohmann::ordered_json info = clf->describe();
  const bool softmax = info.value("loss", std::string()) == "softmax";
  const std::vector<double> proba = clf->predict_proba(o.prompt);

  int target = -1, contrast = -1;
  if (!o.contrast.empty()) {
    const size_t comma = o.contrast.find(',');
    if (comma == std::string::npos)
      throw RequestError("--contrast takes A,B (two labels), got '" + o.contrast + "'");
    target = parse_label(*clf, o.contrast.substr(0, comma), "--contrast");
    contrast = parse_label(*clf, o.contrast.substr(comma + 1), "--contrast");
    if (target == contrast)
      throw RequestError("--contrast '" + o.contrast + "': both name the class '" +
                             labels[target] + "', so the contrast is 0 for every input",
                         "give two different classes as --contrast A,B");
  } else if (!o.target.empty()) {
    target = parse_label(*clf, o.target, "--target");
  } else {
    target = clf->predict(o.prompt);
  }
  // A softmax model of more than two classes is explained against its runner-up class.
  if (contrast < 0 && softmax && labels.size() > 2) {
    for (size_t i = 0; i < labels.size(); ++i) {
      if (static_cast<int>(i) == target) continue;
      if (contrast < 0 || proba[i] > proba[contrast]) contrast = static_cast<int>(i);
    }
  }

  if (events.started) events.started();
  const auto t0 = std::chrono::steady_clock::now();
  ClassifierExplanation ex;
  try {
    ex = clf->explain(o.prompt, target, contrast);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kInvalidArgument) throw RequestError(e.what(), e.hint());
    throw;
  }
  if (events.progress && !events.progress(kMethod, 1.0))
    throw Error(ErrorCode::kCancelled, "cancelled");

  Attribution a;
  a.method = kMethod;
  a.target_function = ex.contrast >= 0 ? "logit_difference" : "logit";
  const int64_t n_tokens = static_cast<int64_t>(ex.tokens.size());
  for (int64_t t = 0; t < n_tokens; ++t) {
    a.tokens.push_back(-1);  // fastText words have no ids of a candor vocabulary
    a.token_texts.push_back((t > 0 ? " " : "") + ex.tokens[t]);
  }
  a.n_input_tokens = n_tokens;
  // Features: the words (token / word granularity) or the sentences, ending at . ! ?
  std::vector<int64_t> feature_of(static_cast<size_t>(n_tokens), 0);
  if (granularity == Granularity::kSentence) {
    Feature f{"", 0, 0};
    for (int64_t t = 0; t < n_tokens; ++t) {
      f.label += (f.label.empty() ? "" : " ") + ex.tokens[t];
      feature_of[t] = static_cast<int64_t>(a.features.size());
      const char last = ex.tokens[t].back();
      if (last == '.' || last == '!' || last == '?' || t + 1 == n_tokens) {
        f.end = t + 1;
        a.features.push_back(f);
        f = Feature{"", t + 1, t + 1};
      }
    }
  } else {
    for (int64_t t = 0; t < n_tokens; ++t) {
      feature_of[t] = t;
      a.features.push_back({ex.tokens[t], t, t + 1});
    }
  }
  std::vector<double> scores(a.features.size(), 0.0);
  nlohmann::json terms = nlohmann::json::array();
  for (const TextFeatureAttribution& f : ex.features) {
    const int64_t span = f.token_end - f.token_begin;
    for (int64_t t = f.token_begin; t < f.token_end; ++t)
      scores[feature_of[t]] += f.value / static_cast<double>(span);
    terms.push_back({{"kind", f.kind},
                     {"text", f.text},
                     {"token_begin", f.token_begin},
                     {"token_end", f.token_end},
                     {"value", f.value}});
  }
  a.scores = scores;
  a.step_tokens = {ex.target};
  a.step_texts = {ex.contrast >= 0 ? labels[ex.target] + " vs " + labels[ex.contrast]
                                   : labels[ex.target]};
  a.step_positions = {n_tokens - 1};
  a.target_values = {ex.explained};
  a.baseline_values = {0.0};
  a.elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  a.forward_passes = 1;
  nlohmann::json probs = nlohmann::json::object();
  for (size_t i = 0; i < labels.size(); ++i) probs[labels[i]] = proba[i];
  a.extra = {{"classifier", "fasttext"},
             {"exact", true},
             {"explained", ex.explained_name},
             {"target", labels[ex.target]},
             {"contrast", ex.contrast >= 0 ? nlohmann::json(labels[ex.contrast]) : nlohmann::json()},
             {"probabilities", probs},
             {"note",
              "exact: the scores sum to the explained value; each word holds its own row and "
              "its character n-grams, a word n-gram's term is shared equally among its words"},
             {"terms", terms}};
  if (events.method_done) events.method_done(kMethod);

  ExplainResult result;
  result.context.model = path;
  result.context.prompt = o.prompt;
  result.context.target_description = ex.explained_name;
  result.attributions.push_back(std::move(a));
  result.envelope = explain_envelope(result.context, result.attributions);
  return result;
}

}  // namespace candor::jobs
