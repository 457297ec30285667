// Features (tokens, words, sentences, given spans), target/baseline parsing, and the JSON form
// of an attribution.
#include <ATen/ATen.h>

#include <cctype>
#include <cmath>
#include <cstdio>

#include "candor/error.h"
#include "candor/explain.h"

namespace candor {
namespace {

std::string display(const std::string& text) {
  size_t b = text.find_first_not_of(" \t");
  size_t e = text.find_last_not_of(" \t");
  std::string t = b == std::string::npos ? "" : text.substr(b, e - b + 1);
  std::string out;
  for (char c : t) {
    if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out.empty() ? (text.empty() ? "" : "\xE2\x90\xA3") : out;  // U+2423 for a lone space
}

}  // namespace

const char* target_function_name(TargetFunction f) {
  switch (f) {
    case TargetFunction::kLogProb:
      return "logprob";
    case TargetFunction::kProb:
      return "prob";
    case TargetFunction::kLogit:
      return "logit";
    case TargetFunction::kContrast:
      return "contrast";
    case TargetFunction::kEntropy:
      return "entropy";
    case TargetFunction::kLogOdds:
      return "logodds";
  }
  return "?";
}

TargetFunction parse_target_function(const std::string& name) {
  for (auto f : {TargetFunction::kLogProb, TargetFunction::kProb, TargetFunction::kLogit,
                 TargetFunction::kContrast, TargetFunction::kEntropy, TargetFunction::kLogOdds}) {
    if (name == target_function_name(f)) return f;
  }
  throw Error(ErrorCode::kInvalidArgument, "unknown target function '" + name + "'",
              "use one of: logprob, prob, logit, logodds, contrast, entropy");
}

NeuronTarget parse_neuron_target(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::kInvalidArgument,
                 "'" + text + "' is not a neuron target" + (why.empty() ? "" : ": " + why),
                 "write neuron:LAYER:POSITION:UNIT, e.g. neuron:2:-1:17 (layer and unit from 0; "
                 "a negative position counts from the end, -1 the last token)");
  };
  const std::string prefix = "neuron:";
  if (text.rfind(prefix, 0) != 0) throw bad("it does not start with neuron:");
  std::vector<int64_t> parts;
  size_t from = prefix.size();
  while (true) {
    const size_t colon = text.find(':', from);
    const std::string field = text.substr(from, colon == std::string::npos ? colon : colon - from);
    size_t i = field.size() > 0 && field[0] == '-' ? 1 : 0;
    if (field.size() == i || field.size() > 12) throw bad("'" + field + "' is not a whole number");
    for (size_t k = i; k < field.size(); ++k)
      if (field[k] < '0' || field[k] > '9') throw bad("'" + field + "' is not a whole number");
    parts.push_back(std::stoll(field));
    if (colon == std::string::npos) break;
    from = colon + 1;
  }
  if (parts.size() != 3)
    throw bad("it has " + std::to_string(parts.size()) + " numbers, not 3 (layer, position, unit)");
  if (parts[0] < 0) throw bad("the layer counts from 0, got " + std::to_string(parts[0]));
  if (parts[2] < 0) throw bad("the unit counts from 0, got " + std::to_string(parts[2]));
  NeuronTarget n;
  n.layer = parts[0];
  n.position = parts[1];
  n.unit = parts[2];
  return n;
}

Granularity parse_granularity(const std::string& name) {
  if (name == "token") return Granularity::kToken;
  if (name == "word") return Granularity::kWord;
  if (name == "sentence") return Granularity::kSentence;
  throw Error(ErrorCode::kInvalidArgument, "unknown granularity '" + name + "'",
              "use token, word or sentence");
}

Baseline parse_baseline(const std::string& text) {
  Baseline b;
  if (text == "zero") {
    b.kind = Baseline::Kind::kZero;
    return b;
  }
  if (text == "unk") {
    b.kind = Baseline::Kind::kUnk;
    return b;
  }
  if (text == "pad") {
    b.kind = Baseline::Kind::kPad;
    return b;
  }
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < 0) {
    throw Error(ErrorCode::kInvalidArgument, "unknown baseline '" + text + "'",
                "use zero, unk, pad, or a token id");
  }
  b.kind = Baseline::Kind::kToken;
  b.token = static_cast<TokenId>(v);
  return b;
}

std::vector<double> Attribution::total() const {
  std::vector<double> t(features.size(), 0.0);
  if (scores.empty()) return t;  // a view (logit_lens) has no scores
  for (int64_t s = 0; s < n_steps(); ++s)
    for (int64_t f = 0; f < n_features(); ++f) t[f] += score(s, f);
  return t;
}

std::vector<Feature> make_features(const Model& model, const ExplainRequest& request) {
  const Tokenizer& tok = model.tokenizer();
  std::vector<TokenId> seq = request.input_ids;
  const auto& span = request.target.span;
  if (!span.empty()) seq.insert(seq.end(), span.begin(), span.end() - 1);
  const int64_t T = static_cast<int64_t>(seq.size());
  const int64_t n_input = static_cast<int64_t>(request.input_ids.size());
  std::vector<std::string> text(T);
  for (int64_t i = 0; i < T; ++i)
    text[i] = tok.decode_piece(i == 0 ? tok.bos_id() : seq[i - 1], seq[i]);
  const int64_t first = (T > 0 && seq[0] == tok.bos_id()) ? 1 : 0;

  auto label_of = [&](int64_t b, int64_t e) {
    std::string s;
    for (int64_t i = b; i < e; ++i) s += text[i];
    return display(s);
  };

  std::vector<Feature> out;
  if (!request.features.empty()) {
    std::vector<bool> used(T, false);
    for (const Feature& f : request.features) {
      if (f.begin < 0 || f.end > T || f.begin >= f.end) {
        throw Error(ErrorCode::kInvalidArgument,
                    "feature span [" + std::to_string(f.begin) + ", " + std::to_string(f.end) +
                        ") is empty or outside the " + std::to_string(T) + " tokens",
                    "spans are token positions [begin, end) with BOS at position 0");
      }
      for (int64_t i = f.begin; i < f.end; ++i) {
        if (used[i]) {
          throw Error(ErrorCode::kInvalidArgument,
                      "feature spans overlap at token position " + std::to_string(i));
        }
        used[i] = true;
      }
      Feature g = f;
      if (g.label.empty()) g.label = label_of(f.begin, f.end);
      out.push_back(g);
    }
    for (int64_t i = first; i < T; ++i) {
      if (!used[i]) {
        throw Error(ErrorCode::kInvalidArgument,
                    "feature spans leave token position " + std::to_string(i) + " out",
                    "the spans must cover every token after BOS exactly once");
      }
    }
    std::sort(out.begin(), out.end(),
              [](const Feature& a, const Feature& b) { return a.begin < b.begin; });
    return out;
  }

  auto starts_new = [&](int64_t i) {
    if (i == first || i == n_input) return true;
    switch (request.granularity) {
      case Granularity::kToken:
        return true;
      case Granularity::kWord: {
        const std::string& t = text[i];
        const std::string& prev = text[i - 1];
        bool space_start = !t.empty() && std::isspace(static_cast<unsigned char>(t[0]));
        bool prev_newline = !prev.empty() && prev.back() == '\n';
        return space_start || prev_newline;
      }
      case Granularity::kSentence: {
        std::string prev = text[i - 1];
        if (prev.find('\n') != std::string::npos) return true;
        while (!prev.empty() && std::isspace(static_cast<unsigned char>(prev.back())))
          prev.pop_back();
        if (prev.empty()) return false;
        char c = prev.back();
        // A closing quote after the end mark still ends the sentence.
        if ((c == '"' || c == '\'') && prev.size() >= 2) c = prev[prev.size() - 2];
        return c == '.' || c == '!' || c == '?';
      }
    }
    return true;
  };
  for (int64_t i = first; i < T; ++i) {
    if (out.empty() || starts_new(i))
      out.push_back(Feature{"", i, i + 1});
    else
      out.back().end = i + 1;
  }
  for (auto& f : out) f.label = label_of(f.begin, f.end);
  return out;
}

std::vector<std::string> saturation_warnings(const Attribution& a) {
  const bool prob = a.target_function == "prob";
  if (!prob && a.target_function != "logprob") return {};
  std::vector<size_t> hit;
  double worst = 0;
  for (size_t s = 0; s < a.target_values.size(); ++s) {
    const double p = prob ? a.target_values[s] : std::exp(a.target_values[s]);
    if (p >= kSaturatedProbability) {
      hit.push_back(s);
      worst = std::max(worst, p);
    }
  }
  if (hit.empty()) return {};
  char pbuf[32];
  std::snprintf(pbuf, sizeof(pbuf), "%.4g", worst);
  std::string what;
  if (a.target_values.size() == 1) {
    const std::string t = a.step_texts.empty() ? std::string() : a.step_texts[0];
    what = "p('" + t + "') = " + pbuf;
  } else {
    what = std::to_string(hit.size()) + " of the " + std::to_string(a.target_values.size()) +
           " steps have p >= 0.99" +
           " (highest " + pbuf + ")";
  }
  return {"saturated target: " + what + " with the " + a.target_function +
          " target, which barely moves near p = 1, so the scores are close to zero and "
          "unreliable (methods can disagree in sign); explain the log-odds (target function "
          "logodds) or the logit instead"};
}

nlohmann::json attribution_to_json(const Attribution& a) {
  nlohmann::ordered_json j;
  j["method"] = a.method;
  j["options"] = a.options;
  j["target_function"] = a.target_function;
  j["tokens"] = a.tokens;
  j["token_texts"] = a.token_texts;
  j["n_input_tokens"] = a.n_input_tokens;
  nlohmann::json feats = nlohmann::json::array();
  for (const auto& f : a.features)
    feats.push_back({{"label", f.label}, {"begin", f.begin}, {"end", f.end}});
  j["features"] = feats;
  nlohmann::json steps = nlohmann::json::array();
  for (int64_t s = 0; s < a.n_steps(); ++s) {
    nlohmann::json st;
    st["token"] = a.step_tokens[s];
    st["text"] = a.step_texts[s];
    st["position"] = a.step_positions[s];
    st["target_value"] = a.target_values.empty() ? 0.0 : a.target_values[s];
    st["baseline_value"] = a.baseline_values.empty() ? 0.0 : a.baseline_values[s];
    if (!a.convergence_delta.empty()) st["convergence_delta"] = a.convergence_delta[s];
    std::vector<double> row;
    if (!a.scores.empty())
      row.assign(a.scores.begin() + s * a.n_features(),
                 a.scores.begin() + (s + 1) * a.n_features());
    st["scores"] = row;
    steps.push_back(st);
  }
  j["steps"] = steps;
  if (!a.scores.empty()) j["total"] = a.total();
  j["elapsed_ms"] = a.elapsed_ms;
  j["forward_passes"] = a.forward_passes;
  if (!a.extra.is_null()) j["extra"] = a.extra;
  j["warnings"] = a.warnings;
  return nlohmann::json(j);
}

}  // namespace candor
