// The Supervisor: runs a policy's checks over one exchange, never letting a check's error escape,
// and turns the failed checks into a decision (allow < flag < block) with reasons. Also the
// default Swapper over a small list of gendered words.
#include <cctype>
#include <chrono>
#include <map>

#include "candor/audit.h"
#include "candor/error.h"
#include "candor/supervise.h"
#include "supervise/internal.h"

namespace candor::supervise {

nlohmann::json Review::to_json() const {
  nlohmann::json checks_json = nlohmann::json::array();
  for (const auto& c : checks) checks_json.push_back(c.to_json());
  nlohmann::json j = {{"checks", checks_json},
                      {"decision", decision},
                      {"reasons", reasons},
                      {"regenerate", regenerate},
                      {"redact", redact}};
  if (redact) j["redacted_answer"] = redacted_answer;
  return j;
}

Supervisor::Supervisor(Policy policy, Swapper swapper)
    : policy_(std::move(policy)), swapper_(swapper ? std::move(swapper) : default_swapper()) {
  // A counterfactual check that names `attributes` swaps the audits' word lists of those
  // attributes (every variant of each, up to the check's max_swaps) instead of `swapper`.
  for (const CheckSpec& spec : policy_.checks) {
    if (spec.type != "counterfactual" || !spec.params.contains("attributes")) continue;
    std::vector<audit::SwapLexicon> lexicons;
    for (const auto& a : spec.params.at("attributes")) {
      const std::string name = a.get<std::string>();
      try {
        lexicons.push_back(audit::builtin_swap_lexicon(name));
      } catch (const Error& e) {
        throw Error(ErrorCode::kInvalidArgument,
                    "policy " + (policy_.source.empty() ? std::string("(built-in)") : policy_.source) +
                        ": check '" + spec.name + "': attributes: " + e.what(),
                    "name built-in attributes: gender, race, religion, nationality, age");
      }
    }
    if (lexicons.empty()) continue;
    attribute_swappers_[spec.name] = [lexicons](const std::string& prompt) {
      std::vector<std::string> out;
      for (const audit::SwapLexicon& lex : lexicons)
        for (std::string& t : audit::swapped_texts(prompt, lex)) out.push_back(std::move(t));
      return out;
    };
  }
}

Review Supervisor::review(const Exchange& exchange) const { return run(exchange, false); }

Review Supervisor::review_async(const Exchange& exchange) const { return run(exchange, true); }

namespace {

// allow 0 < flag 1 < block 2; redact and regenerate flag the answer (and say what to do).
int level(Action a) {
  switch (a) {
    case Action::kAllow:
      return 0;
    case Action::kBlock:
      return 2;
    default:
      return 1;
  }
}

const char* decision_name(int level) {
  return level == 2 ? "block" : level == 1 ? "flag" : "allow";
}

CheckResult run_one(const CheckSpec& spec, const Exchange& x, const Swapper& swapper,
                    std::string* redacted) {
  const std::string& t = spec.type;
  if (t == "uncertainty") return check_uncertainty(x.token_stats, spec.params);
  if (t == "explanation_quality")
    return check_explanation_quality(x.model, x.explain_request, x.explanation, spec.params);
  if (t == "counterfactual") {
    if (!x.model)
      throw Error(ErrorCode::kInvalidArgument, "the counterfactual check needs the model");
    return check_counterfactual(*x.model, x.prompt_ids, x.prompt, x.answer_ids, swapper,
                                spec.params);
  }
  if (t == "blocked_terms") return check_blocked_terms(x.answer, spec.params, redacted);
  if (t == "length") {
    int64_t n = !x.answer_ids.empty() ? static_cast<int64_t>(x.answer_ids.size())
                                      : static_cast<int64_t>(x.token_stats.size());
    return check_length(n, spec.params);
  }
  if (t == "time") return check_time(x.elapsed_ms, spec.params);
  throw Error(ErrorCode::kInvalidArgument, "unknown check type '" + t + "'");
}

}  // namespace

Review Supervisor::run(const Exchange& exchange, bool async) const {
  Review review;
  int decision = 0;
  // The spans the redacting checks matched in the answer; the redacted answer masks their union
  // (what a guarded stream releases too, StreamGuard).
  std::vector<std::pair<size_t, size_t>> masked;
  for (const CheckSpec& spec : policy_.checks) {
    if (spec.async != async) continue;
    auto start = std::chrono::steady_clock::now();
    CheckResult r;
    bool wants_redaction = spec.on_fail == Action::kRedact && spec.type == "blocked_terms";
    try {
      auto own = attribute_swappers_.find(spec.name);
      r = run_one(spec, exchange, own != attribute_swappers_.end() ? own->second : swapper_,
                  nullptr);
      if (wants_redaction && r.outcome == "fail")
        for (const BlockedMatch& m : BlockedMatcher(spec.params).find(exchange.answer))
          masked.emplace_back(m.begin, m.end);
    } catch (const std::exception& e) {
      r = CheckResult();
      r.outcome = "error";
      r.detail = e.what();
    }
    r.name = spec.name;
    r.type = spec.type;
    r.action = action_name(spec.on_fail);
    r.async = async;
    r.ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (r.outcome == "fail") {
      decision = std::max(decision, level(spec.on_fail));
      review.reasons.push_back(spec.name + " (" + spec.type + "): " + r.detail + " -> " + r.action);
      if (spec.on_fail == Action::kRegenerate) review.regenerate = true;
      if (spec.on_fail == Action::kRedact) review.redact = true;
    } else if (r.outcome == "error") {
      // A check that could not run is not a pass: flag the answer (unless the policy allows
      // its failures anyway).
      if (spec.on_fail != Action::kAllow) decision = std::max(decision, 1);
      review.reasons.push_back(spec.name + " (" + spec.type + "): error: " + r.detail);
    }
    review.checks.push_back(std::move(r));
  }
  review.decision = decision_name(decision);
  if (review.redact) review.redacted_answer = mask_spans(exchange.answer, masked);
  return review;
}

// ---------------------------------------------------------------------------------------------
// The default swapper
// ---------------------------------------------------------------------------------------------

namespace {

const std::map<std::string, std::string>& gender_pairs() {
  static const std::map<std::string, std::string> kPairs = [] {
    const std::vector<std::pair<std::string, std::string>> pairs = {{"he", "she"},
                                                                    {"him", "her"},
                                                                    {"his", "her"},
                                                                    {"himself", "herself"},
                                                                    {"man", "woman"},
                                                                    {"men", "women"},
                                                                    {"boy", "girl"},
                                                                    {"boys", "girls"},
                                                                    {"father", "mother"},
                                                                    {"fathers", "mothers"},
                                                                    {"dad", "mom"},
                                                                    {"son", "daughter"},
                                                                    {"sons", "daughters"},
                                                                    {"brother", "sister"},
                                                                    {"brothers", "sisters"},
                                                                    {"husband", "wife"},
                                                                    {"husbands", "wives"},
                                                                    {"king", "queen"},
                                                                    {"mr", "mrs"},
                                                                    {"male", "female"},
                                                                    {"males", "females"},
                                                                    {"gentleman", "lady"},
                                                                    {"gentlemen", "ladies"},
                                                                    {"uncle", "aunt"},
                                                                    {"nephew", "niece"},
                                                                    {"grandfather", "grandmother"},
                                                                    {"grandson", "granddaughter"},
                                                                    {"boyfriend", "girlfriend"},
                                                                    {"prince", "princess"},
                                                                    {"actor", "actress"},
                                                                    {"waiter", "waitress"},
                                                                    {"masculine", "feminine"}};
    std::map<std::string, std::string> m;
    for (const auto& [a, b] : pairs) {
      m.emplace(a, b);
      m.emplace(b, a);  // "her" keeps the first mapping given ("him"); see below for "his"
    }
    return m;
  }();
  return kPairs;
}

// Words after which "her" is an object ("him"), not a possessive ("his").
bool object_context(const std::string& next_word) {
  static const std::vector<std::string> kWords = {
      "",   "to",  "and", "or",   "but",  "the", "a",    "an",   "that", "with",
      "in", "on",  "at",  "for",  "from", "as",  "if",   "when", "so",   "because",
      "is", "was", "up",  "down", "out",  "off", "back", "again"};
  return std::find(kWords.begin(), kWords.end(), next_word) != kWords.end();
}

std::string with_case_of(const std::string& like, std::string word) {
  bool all_upper = like.size() > 1 && std::all_of(like.begin(), like.end(),
                                                  [](unsigned char c) { return std::isupper(c); });
  if (all_upper) {
    for (char& c : word) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  } else if (!like.empty() && std::isupper(static_cast<unsigned char>(like[0]))) {
    word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
  }
  return word;
}

}  // namespace

Swapper default_swapper() {
  return [](const std::string& prompt) -> std::vector<std::string> {
    const auto& pairs = gender_pairs();
    // Words: runs of ASCII letters (apostrophes end a word: "John's" -> "John", "s").
    std::vector<std::pair<size_t, size_t>> words;
    for (size_t i = 0; i < prompt.size();) {
      if (!std::isalpha(static_cast<unsigned char>(prompt[i]))) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < prompt.size() && std::isalpha(static_cast<unsigned char>(prompt[j]))) ++j;
      // Not part of a longer token with non-ASCII letters or digits.
      bool inside = (i > 0 && (static_cast<unsigned char>(prompt[i - 1]) >= 0x80 ||
                               std::isdigit(static_cast<unsigned char>(prompt[i - 1])))) ||
                    (j < prompt.size() && (static_cast<unsigned char>(prompt[j]) >= 0x80 ||
                                           std::isdigit(static_cast<unsigned char>(prompt[j]))));
      if (!inside) words.emplace_back(i, j);
      i = j;
    }
    std::string out;
    size_t at = 0;
    bool swapped = false;
    for (size_t k = 0; k < words.size(); ++k) {
      auto [b, e] = words[k];
      std::string word = prompt.substr(b, e - b), key = word;
      for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto it = pairs.find(key);
      if (it == pairs.end()) continue;
      std::string to = it->second;
      if (key == "her") {
        std::string next;
        if (k + 1 < words.size()) {
          // Only the next word of the same clause counts.
          std::string between = prompt.substr(e, words[k + 1].first - e);
          bool same_clause = between.find_first_not_of(" ") == std::string::npos;
          if (same_clause) {
            next = prompt.substr(words[k + 1].first, words[k + 1].second - words[k + 1].first);
            for (char& c : next) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          }
        }
        to = object_context(next) ? "him" : "his";
      }
      out += prompt.substr(at, b - at) + with_case_of(word, to);
      at = e;
      swapped = true;
    }
    if (!swapped) return {};
    out += prompt.substr(at);
    return {out};
  };
}

}  // namespace candor::supervise
