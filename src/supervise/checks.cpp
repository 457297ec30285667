// The supervisor's checks, each a plain function: uncertainty from the generating pass, the
// explanation's quality block, the counterfactual probe (teacher-forced passes), blocked terms and
// patterns, length and time.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <regex>
#include <sstream>

#include "candor/error.h"
#include "candor/evaluate.h"
#include "candor/supervise.h"
#include "supervise/internal.h"

namespace candor::supervise {

nlohmann::json CheckResult::to_json() const {
  nlohmann::json j = {{"name", name},           {"type", type},       {"value", value},
                      {"threshold", threshold}, {"outcome", outcome}, {"action", action},
                      {"detail", detail},       {"ms", ms},           {"async", async}};
  if (!measures.is_null() && !measures.empty()) j["measures"] = measures;
  return j;
}

namespace {

std::string num(double v) {
  std::ostringstream out;
  out.precision(4);
  out << v;
  return out.str();
}

double param_number(const nlohmann::json& params, const char* key, double fallback) {
  if (!params.is_object() || !params.contains(key)) return fallback;
  const auto& v = params[key];
  if (!v.is_number())
    throw Error(ErrorCode::kInvalidArgument,
                std::string("check parameter ") + key + " must be a number, not " + v.dump());
  return v.get<double>();
}

bool param_bool(const nlohmann::json& params, const char* key, bool fallback) {
  if (!params.is_object() || !params.contains(key)) return fallback;
  const auto& v = params[key];
  if (!v.is_boolean())
    throw Error(ErrorCode::kInvalidArgument,
                std::string("check parameter ") + key + " must be true or false");
  return v.get<bool>();
}

std::vector<std::string> param_strings(const nlohmann::json& params, const char* key) {
  std::vector<std::string> out;
  if (!params.is_object() || !params.contains(key)) return out;
  const auto& v = params[key];
  if (v.is_string()) return {v.get<std::string>()};
  if (!v.is_array())
    throw Error(ErrorCode::kInvalidArgument,
                std::string("check parameter ") + key + " must be a list of strings");
  for (const auto& s : v) {
    if (!s.is_string())
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("check parameter ") + key + " must be a list of strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

bool has(const nlohmann::json& params, const char* key) {
  return params.is_object() && params.contains(key);
}

CheckResult result(const char* type) {
  CheckResult r;
  r.name = type;
  r.type = type;
  r.outcome = "pass";
  return r;
}

// One measured limit of a check: fails when the value is on the wrong side of the bound.
struct Limit {
  const char* what;
  double value;
  double bound;
  bool upper;           // value must be <= bound (else >= bound)
  bool strict = false;  // a lower bound that must be exceeded (value > bound)
  bool failed() const {
    if (upper) return value > bound;
    return strict ? value <= bound : value < bound;
  }
  std::string sentence() const {
    const char* op = upper ? (failed() ? " > " : " <= ")
                           : (failed() ? (strict ? " <= " : " < ") : (strict ? " > " : " >= "));
    return std::string(what) + " " + num(value) + op + num(bound);
  }
};

// Fills value, threshold, outcome and detail from the limits that were set.
void judge(CheckResult& r, const std::vector<Limit>& limits, const std::string& extra = {}) {
  std::string detail;
  const Limit* shown = limits.empty() ? nullptr : &limits[0];
  for (const auto& l : limits) {
    if (l.failed() && r.outcome != "fail") {
      r.outcome = "fail";
      shown = &l;
    }
    detail += (detail.empty() ? "" : "; ") + l.sentence();
  }
  if (shown) {
    r.value = shown->value;
    r.threshold = shown->bound;
  }
  r.detail = detail + extra;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// uncertainty
// ---------------------------------------------------------------------------------------------

CheckResult check_uncertainty(const std::vector<TokenStats>& stats, const nlohmann::json& params) {
  CheckResult r = result("uncertainty");
  if (stats.empty()) {
    r.outcome = "skipped";
    r.detail = "no per-token statistics (empty answer, or generated without token_stats)";
    return r;
  }
  double sum = 0, max_entropy = 0, min_logprob = std::numeric_limits<double>::infinity();
  for (const auto& s : stats) {
    sum += s.entropy;
    max_entropy = std::max<double>(max_entropy, s.entropy);
    min_logprob = std::min<double>(min_logprob, s.logprob);
  }
  double mean_entropy = sum / static_cast<double>(stats.size());
  r.measures = {{"mean_entropy", mean_entropy},
                {"max_entropy", max_entropy},
                {"min_logprob", min_logprob},
                {"tokens", stats.size()}};
  std::vector<Limit> limits;
  if (has(params, "max_mean_entropy"))
    limits.push_back(
        {"mean entropy", mean_entropy, param_number(params, "max_mean_entropy", 0), true});
  if (has(params, "max_entropy"))
    limits.push_back({"max entropy", max_entropy, param_number(params, "max_entropy", 0), true});
  if (has(params, "min_logprob"))
    limits.push_back({"min log-prob", min_logprob, param_number(params, "min_logprob", 0), false});
  if (limits.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "uncertainty check needs max_mean_entropy, max_entropy or min_logprob");
  judge(r, limits, " (nats, over " + std::to_string(stats.size()) + " answer tokens)");
  return r;
}

// ---------------------------------------------------------------------------------------------
// explanation_quality
// ---------------------------------------------------------------------------------------------

namespace {

// Judges comprehensiveness / sufficiency AOPC and the decoys' comprehensiveness (name -> AOPC).
CheckResult judge_quality(double comp, double suff, const std::map<std::string, double>& decoys,
                          const std::string& source, const nlohmann::json& params) {
  CheckResult r = result("explanation_quality");
  r.measures = {{"comprehensiveness_aopc", comp}, {"sufficiency_aopc", suff}, {"source", source}};
  std::vector<Limit> limits;
  if (has(params, "min_comprehensiveness"))
    limits.push_back(
        {"comprehensiveness AOPC", comp, param_number(params, "min_comprehensiveness", 0), false});
  if (has(params, "max_sufficiency"))
    limits.push_back({"sufficiency AOPC", suff, param_number(params, "max_sufficiency", 0), true});
  // Decoys: the explanation must remove more of the prediction than each decoy does.
  std::string note;
  std::vector<std::string> decoy_names;
  if (param_bool(params, "beat_decoys", true)) {
    for (const auto& [name, dc] : decoys) {
      r.measures["decoys"][name] = dc;
      decoy_names.push_back("comprehensiveness AOPC over decoy " + name);
      limits.push_back({nullptr, comp, dc, false, true});
    }
    if (decoy_names.empty()) note = "; no decoys to compare with (not compared)";
  }
  for (size_t i = 0, k = 0; i < limits.size(); ++i)
    if (!limits[i].what) limits[i].what = decoy_names[k++].c_str();
  if (limits.empty()) {
    r.value = comp;
    r.detail = "comprehensiveness AOPC " + num(comp) + ", sufficiency AOPC " + num(suff) + note;
    return r;
  }
  judge(r, limits, note);
  return r;
}

CheckResult skipped_quality(const std::string& why) {
  CheckResult r = result("explanation_quality");
  r.outcome = "skipped";
  r.detail = why;
  return r;
}

}  // namespace

CheckResult check_explanation_quality(const Attribution* explanation,
                                      const nlohmann::json& params) {
  if (!explanation) return skipped_quality("no explanation was made for this request");
  const nlohmann::json& extra = explanation->extra;
  if (!extra.is_object() || !extra.contains("quality") || !extra["quality"].is_object())
    return skipped_quality(
        "the explanation has no quality block (set explain.evaluate: true in the policy)");
  const nlohmann::json& q = extra["quality"];
  auto figure = [&](const char* key) {
    if (!q.contains(key) || !q[key].is_number())
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("the quality block has no number ") + key);
    return q[key].get<double>();
  };
  std::map<std::string, double> decoys;
  if (q.contains("decoys") && q["decoys"].is_object())
    for (const auto& [name, d] : q["decoys"].items())
      if (d.is_object() && d.contains("comprehensiveness_aopc") &&
          d["comprehensiveness_aopc"].is_number())
        decoys[name] = d["comprehensiveness_aopc"].get<double>();
  return judge_quality(figure("comprehensiveness_aopc"), figure("sufficiency_aopc"), decoys,
                       "quality block", params);
}

CheckResult check_explanation_quality(const Model* model, const ExplainRequest* request,
                                      const Attribution* explanation,
                                      const nlohmann::json& params) {
  if (!explanation) return skipped_quality("no explanation was made for this request");
  const nlohmann::json& extra = explanation->extra;
  bool has_block = extra.is_object() && extra.contains("quality") && extra["quality"].is_object();
  bool block_decoys = has_block && extra["quality"].contains("decoys");
  bool want_decoys = param_bool(params, "beat_decoys", true);
  if (!model || !request || (has_block && (block_decoys || !want_decoys)))
    return check_explanation_quality(explanation, params);
  if (explanation->scores.empty())
    return skipped_quality("the explanation has no scores (" + explanation->method + ")");
  std::vector<Attribution> all = {*explanation};
  if (want_decoys) {
    for (auto& d : make_decoys(*model, *request, *explanation, DecoyOptions{}))
      all.push_back(std::move(d));
  }
  FaithfulnessOptions o;
  o.curves = false;
  o.infidelity = false;
  o.loo = false;
  std::vector<Faithfulness> f = evaluate_faithfulness(*model, *request, all, o);
  std::map<std::string, double> decoys;
  for (size_t i = 1; i < all.size(); ++i) decoys[all[i].method] = f[i].comprehensiveness_aopc;
  CheckResult r =
      judge_quality(f[0].comprehensiveness_aopc, f[0].sufficiency_aopc, decoys, "computed", params);
  r.measures["forward_passes"] = f[0].forward_passes;
  return r;
}

// ---------------------------------------------------------------------------------------------
// counterfactual
// ---------------------------------------------------------------------------------------------

double answer_mean_logprob(const Model& model, const std::vector<TokenId>& prompt_ids,
                           const std::vector<TokenId>& answer_ids) {
  if (prompt_ids.empty())
    throw Error(ErrorCode::kInvalidArgument, "teacher forcing needs a prompt (at least BOS)");
  if (answer_ids.empty())
    throw Error(ErrorCode::kInvalidArgument, "teacher forcing needs answer tokens");
  at::NoGradGuard no_grad;
  std::vector<int64_t> ids(prompt_ids.begin(), prompt_ids.end());
  ids.insert(ids.end(), answer_ids.begin(), answer_ids.end());
  const int64_t p = static_cast<int64_t>(prompt_ids.size());
  const int64_t a = static_cast<int64_t>(answer_ids.size());
  ForwardArgs args;
  args.tokens = at::tensor(ids, at::kLong).unsqueeze(0);            // [1, p + a]
  args.output_positions = at::arange(p - 1, p + a - 1, at::kLong);  // [a]
  at::Tensor logits = model.forward(args)[0];                       // [a, vocab]
  at::Tensor logp = at::log_softmax(logits.to(at::kFloat), -1);     // [a, vocab]
  std::vector<int64_t> answer(answer_ids.begin(), answer_ids.end());
  at::Tensor picked = logp.gather(1, at::tensor(answer, at::kLong).unsqueeze(1));  // [a, 1]
  return picked.mean().item<double>();
}

CheckResult check_counterfactual(const Model& model, const std::vector<TokenId>& prompt_ids,
                                 const std::string& prompt, const std::vector<TokenId>& answer_ids,
                                 const Swapper& swapper, const nlohmann::json& params) {
  CheckResult r = result("counterfactual");
  if (!swapper) throw Error(ErrorCode::kInvalidArgument, "counterfactual check needs a swapper");
  double threshold = param_number(params, "threshold", 0.5);
  int64_t max_swaps = static_cast<int64_t>(param_number(params, "max_swaps", 8));
  r.threshold = threshold;
  if (answer_ids.empty()) {
    r.outcome = "skipped";
    r.detail = "the answer is empty";
    return r;
  }
  std::vector<std::string> swapped = swapper(prompt);
  if (swapped.empty()) {
    r.outcome = "skipped";
    r.detail = "the prompt mentions no protected-attribute term";
    return r;
  }
  if (static_cast<int64_t>(swapped.size()) > max_swaps) swapped.resize(max_swaps);
  const Tokenizer& tok = model.tokenizer();
  bool bos = prompt_ids.empty() || prompt_ids[0] == tok.bos_id();
  // The original prompt goes through the same encoding as the swapped ones, so that only the
  // swapped words differ.
  std::vector<TokenId> base_ids = prompt.empty() ? prompt_ids : tok.encode(prompt, bos);
  double base = answer_mean_logprob(model, base_ids, answer_ids);
  nlohmann::json swaps = nlohmann::json::array();
  double worst = 0, worst_delta = 0;
  std::string worst_prompt;
  for (const auto& s : swapped) {
    double lp = answer_mean_logprob(model, tok.encode(s, bos), answer_ids);
    double delta = lp - base;
    swaps.push_back({{"prompt", s}, {"mean_logprob", lp}, {"delta", delta}});
    if (std::abs(delta) >= worst) {
      worst = std::abs(delta);
      worst_delta = delta;
      worst_prompt = s;
    }
  }
  r.value = worst;
  r.measures = {{"mean_logprob", base}, {"swaps", swaps}};
  r.outcome = worst > threshold ? "fail" : "pass";
  r.detail = "the answer's mean log-prob moves by " + num(worst_delta) +
             " nats under a swapped prompt (|" + num(worst) +
             (worst > threshold ? "| > " : "| <= ") + num(threshold) + ", " +
             std::to_string(swapped.size()) + " swap(s))";
  return r;
}

// ---------------------------------------------------------------------------------------------
// blocked_terms
// ---------------------------------------------------------------------------------------------

namespace {

bool word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

BlockedMatcher::BlockedMatcher(const nlohmann::json& params) {
  terms_ = param_strings(params, "terms");
  std::vector<std::string> patterns = param_strings(params, "patterns");
  const bool case_sensitive = param_bool(params, "case_sensitive", false);
  if (terms_.empty() && patterns.empty())
    throw Error(ErrorCode::kInvalidArgument, "blocked_terms check needs terms or patterns");
  for (const auto& t : terms_) {
    lowered_.push_back(lower(t));
    longest_term_ = std::max(longest_term_, t.size());
  }
  for (size_t i = 0; i < patterns.size(); ++i) {
    try {
      auto flags = std::regex::ECMAScript;
      if (!case_sensitive) flags |= std::regex::icase;
      patterns_.emplace_back(patterns[i], flags);
    } catch (const std::regex_error& e) {
      throw Error(ErrorCode::kInvalidArgument,
                  "blocked_terms pattern '" + patterns[i] + "' is invalid: " + e.what());
    }
  }
}

std::vector<BlockedMatch> BlockedMatcher::find(const std::string& answer,
                                               std::vector<std::string>* found) const {
  std::vector<BlockedMatch> spans;
  const std::string text = lower(answer);
  for (size_t k = 0; k < lowered_.size(); ++k) {
    const std::string& t = lowered_[k];
    if (t.empty()) continue;
    size_t count = 0;
    for (size_t at = text.find(t); at != std::string::npos; at = text.find(t, at + 1)) {
      size_t end = at + t.size();
      bool starts = at == 0 || !word_byte(text[at - 1]) || !word_byte(t.front());
      bool ends = end == text.size() || !word_byte(text[end]) || !word_byte(t.back());
      if (!starts || !ends) continue;
      spans.push_back({at, end, false});
      ++count;
    }
    if (count && found) found->push_back("term '" + terms_[k] + "' x" + std::to_string(count));
  }
  for (size_t i = 0; i < patterns_.size(); ++i) {
    size_t count = 0;
    for (auto it = std::sregex_iterator(answer.begin(), answer.end(), patterns_[i]);
         it != std::sregex_iterator(); ++it) {
      if (it->length(0) == 0) continue;
      spans.push_back({static_cast<size_t>(it->position(0)),
                       static_cast<size_t>(it->position(0) + it->length(0)), true});
      ++count;
    }
    if (count && found)
      found->push_back("pattern " + std::to_string(i + 1) + " x" + std::to_string(count));
  }
  return spans;
}

std::string mask_spans(const std::string& answer, std::vector<std::pair<size_t, size_t>> spans) {
  std::sort(spans.begin(), spans.end());
  std::string out;
  size_t at = 0;
  for (size_t i = 0; i < spans.size();) {
    size_t b = spans[i].first, e = spans[i].second;
    for (++i; i < spans.size() && spans[i].first < e; ++i) e = std::max(e, spans[i].second);
    if (b < at) b = at;
    out += answer.substr(at, b - at) + "[redacted]";
    at = std::max(at, e);
  }
  out += answer.substr(std::min(at, answer.size()));
  return out;
}

CheckResult check_blocked_terms(const std::string& answer, const nlohmann::json& params,
                                std::string* redacted) {
  CheckResult r = result("blocked_terms");
  const BlockedMatcher matcher(params);
  std::vector<std::string> found;
  const std::vector<BlockedMatch> matches = matcher.find(answer, &found);
  r.value = static_cast<double>(matches.size());
  r.threshold = 0;
  r.outcome = matches.empty() ? "pass" : "fail";
  std::string list;
  for (const auto& f : found) list += (list.empty() ? "" : ", ") + f;
  r.detail = matches.empty() ? "no blocked term or pattern in the answer"
                             : std::to_string(matches.size()) + " match(es) in the answer: " + list;
  if (redacted) {
    std::vector<std::pair<size_t, size_t>> spans;
    for (const auto& m : matches) spans.emplace_back(m.begin, m.end);
    *redacted = mask_spans(answer, spans);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// length and time
// ---------------------------------------------------------------------------------------------

CheckResult check_length(int64_t n_tokens, const nlohmann::json& params) {
  CheckResult r = result("length");
  if (!has(params, "max_tokens"))
    throw Error(ErrorCode::kInvalidArgument, "length check needs max_tokens");
  std::vector<Limit> limits = {{"answer tokens", static_cast<double>(n_tokens),
                                param_number(params, "max_tokens", 0), true}};
  if (has(params, "min_tokens"))
    limits.push_back({"answer tokens", static_cast<double>(n_tokens),
                      param_number(params, "min_tokens", 0), false});
  judge(r, limits);
  return r;
}

CheckResult check_time(double elapsed_ms, const nlohmann::json& params) {
  CheckResult r = result("time");
  if (!has(params, "max_ms")) throw Error(ErrorCode::kInvalidArgument, "time check needs max_ms");
  judge(r, {{"elapsed ms", elapsed_ms, param_number(params, "max_ms", 0), true}});
  return r;
}

}  // namespace candor::supervise
