// Decoy explanations (random, inverted, position-biased, another target, lexicon-based), the
// sentiment lexicons they read, and the ranking of real methods against decoys.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>

#include "candor/error.h"
#include "evaluate/internal.h"

namespace candor {
namespace {

std::string lower_word(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (std::isspace(c)) continue;
    o += static_cast<char>(std::tolower(c));
  }
  // Trim punctuation at both ends (keeps "don't", drops "happy,").
  auto punct = [](char c) { return std::ispunct(static_cast<unsigned char>(c)) && c != '\''; };
  while (!o.empty() && punct(o.back())) o.pop_back();
  size_t i = 0;
  while (i < o.size() && punct(o[i])) ++i;
  return o.substr(i);
}

std::string unquote(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.pop_back();
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

}  // namespace

Attribution decoy_with_scores(const Attribution& a, const std::string& name,
                              const std::vector<double>& total) {
  Attribution d = a;
  d.method = name;
  d.options.clear();
  d.extra = nlohmann::json();
  d.convergence_delta.clear();
  d.forward_passes = 0;
  d.elapsed_ms = 0;
  std::fill(d.scores.begin(), d.scores.end(), 0.0);
  for (size_t f = 0; f < total.size(); ++f) d.scores[f] = total[f];
  return d;
}

Lexicon load_lexicon(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw Error(ErrorCode::kNotFound, "cannot open lexicon '" + path + "'",
                "give a VADER .txt, AFINN or Bing .csv file (see ../shared/lexicons)");
  }
  Lexicon lex;
  std::string line;
  int64_t n = 0;
  const bool tsv = path.size() >= 4 && path.substr(path.size() - 4) == ".txt";
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    std::string word, value;
    if (tsv) {
      std::istringstream ls(line);
      std::getline(ls, word, '\t');
      std::getline(ls, value, '\t');
    } else {
      size_t comma = line.rfind(',');
      if (comma == std::string::npos) continue;
      word = unquote(line.substr(0, comma));
      value = unquote(line.substr(comma + 1));
      if (n == 1 && (word == "word" || word == "Word")) continue;  // header
    }
    double v = 0;
    if (value == "positive") {
      v = 1;
    } else if (value == "negative") {
      v = -1;
    } else {
      try {
        v = std::stod(value);
      } catch (const std::exception&) {
        throw Error(ErrorCode::kInvalidArgument,
                    path + ":" + std::to_string(n) + ": '" + value + "' is not a valence",
                    "lines are word TAB valence (VADER) or word,valence (AFINN/Bing)");
      }
    }
    lex.valence[lower_word(word)] = v;
  }
  if (lex.valence.empty())
    throw Error(ErrorCode::kInvalidArgument, "lexicon '" + path + "' has no entries");
  return lex;
}

std::vector<Attribution> make_decoys(const Model& model, const ExplainRequest& request,
                                     const Attribution& a, const DecoyOptions& options) {
  if (a.scores.empty())
    throw Error(ErrorCode::kInvalidArgument, "decoys need an attribution with scores");
  const int64_t F = a.n_features();
  const std::vector<double> phi = a.total();
  evaluate::Rng rng(options.seed * 0x9E3779B97F4A7C15ULL + 3);
  std::vector<Attribution> out;
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(F);
  for (auto& x : v) x = u(rng);
  out.push_back(decoy_with_scores(a, "random", v));
  for (int64_t f = 0; f < F; ++f) v[f] = -phi[f];
  out.push_back(decoy_with_scores(a, "inverted", v));
  for (int64_t f = 0; f < F; ++f) v[f] = static_cast<double>(F - f);
  out.push_back(decoy_with_scores(a, "first", v));
  for (int64_t f = 0; f < F; ++f) v[f] = static_cast<double>(f + 1);
  out.push_back(decoy_with_scores(a, "last", v));
  const bool tokens_known = !a.step_tokens.empty() && a.step_tokens[0] >= 0;
  if (options.other_target && tokens_known && request.target.span.empty() &&
      a.step_tokens.size() == 1) {
    ExplainRequest r = evaluate::pinned_request(request, a);
    // The other token: the random-logit test's draw (same seed, same token).
    r.target.token = evaluate::random_other_token(model, a.step_tokens[0], options.seed);
    Attribution b = options.other_target->explain(model, r);
    out.push_back(decoy_with_scores(a, "other_target", b.total()));
  } else if (options.other_target && tokens_known &&
             request.target.span.size() == a.step_tokens.size()) {
    // A span: the explanation of a span of the same length whose every token is a random
    // other token (step s drawn with seed * 131 + s), scored with teacher forcing like the
    // original, over the same feature positions (input + the other span but its last token).
    ExplainRequest r = evaluate::pinned_request(request, a);
    for (size_t s = 0; s < r.target.span.size(); ++s)
      r.target.span[s] =
          evaluate::random_other_token(model, request.target.span[s], options.seed * 131 + s);
    Attribution b = options.other_target->explain(model, r);
    out.push_back(decoy_with_scores(a, "other_target", b.total()));
  }
  if (options.lexicon) {
    for (int64_t f = 0; f < F; ++f) {
      std::string text;
      for (int64_t t = a.features[f].begin; t < a.features[f].end; ++t) text += a.token_texts[t];
      auto it = options.lexicon->valence.find(lower_word(text));
      v[f] = it == options.lexicon->valence.end() ? 0.0 : std::fabs(it->second);
    }
    out.push_back(decoy_with_scores(a, "lexicon", v));
  }
  return out;
}

DecoyRanking rank_against_decoys(const std::vector<std::map<std::string, double>>& values,
                                 const std::vector<std::string>& methods,
                                 const std::vector<std::string>& decoys, bool higher_is_better) {
  DecoyRanking r;
  r.methods = methods;
  r.decoys = decoys;
  r.win_rate.assign(methods.size(), std::vector<double>(decoys.size(), 0.0));
  r.tie_rate = r.win_rate;
  r.caught_rate.assign(decoys.size(), 0.0);
  std::vector<std::vector<int64_t>> n(methods.size(), std::vector<int64_t>(decoys.size(), 0));
  std::vector<int64_t> nd(decoys.size(), 0);
  for (const auto& ex : values) {
    for (size_t d = 0; d < decoys.size(); ++d) {
      auto di = ex.find(decoys[d]);
      if (di == ex.end()) continue;
      bool all = true, any = false;
      for (size_t m = 0; m < methods.size(); ++m) {
        auto mi = ex.find(methods[m]);
        if (mi == ex.end()) continue;
        any = true;
        const double a = mi->second, b = di->second;
        const bool tie =
            std::fabs(a - b) <= 1e-9 * std::max(1.0, std::max(std::fabs(a), std::fabs(b)));
        bool win = !tie && (higher_is_better ? a > b : a < b);
        r.tie_rate[m][d] += tie ? 1.0 : 0.0;
        r.win_rate[m][d] += win ? 1.0 : 0.0;
        n[m][d] += 1;
        all = all && win;
      }
      if (any) {
        r.caught_rate[d] += all ? 1.0 : 0.0;
        nd[d] += 1;
      }
    }
  }
  for (size_t m = 0; m < methods.size(); ++m)
    for (size_t d = 0; d < decoys.size(); ++d)
      if (n[m][d] > 0) {
        r.win_rate[m][d] /= static_cast<double>(n[m][d]);
        r.tie_rate[m][d] /= static_cast<double>(n[m][d]);
      }
  for (size_t d = 0; d < decoys.size(); ++d)
    if (nd[d] > 0) r.caught_rate[d] /= static_cast<double>(nd[d]);
  r.n_examples = static_cast<int64_t>(values.size());
  return r;
}

}  // namespace candor
