// Adversarial explanations: decoys (random, inverted, position-biased, another target,
// lexicon-based), attacks that move an explanation while keeping the model's output, a consensus
// weighted by agreement, and the ranking of real methods against decoys.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>

#include "candor/error.h"
#include "candor/options.h"
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

// Top token and its probability at the last explained position.
std::pair<TokenId, double> top_of(const Model& model, const std::vector<TokenId>& ids) {
  at::NoGradGuard ng;
  at::Tensor p = at::softmax(model.logits(ids)[-1], -1);
  int64_t t = p.argmax().item<int64_t>();
  return {static_cast<TokenId>(t), p[t].item<double>()};
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

AttackResult attack_explainer(const Model& model, const ExplainRequest& request,
                              const Explainer& explainer, const Attribution& attribution,
                              const AttackOptions& options) {
  if (attribution.scores.empty())
    throw Error(ErrorCode::kInvalidArgument, "an attack needs an attribution with scores");
  const ExplainRequest r = evaluate::pinned_request(request, attribution);
  const std::vector<double> phi = attribution.total();
  const int64_t k = std::max<int64_t>(1, options.top_k);
  const auto [top0, p0] = top_of(model, r.input_ids);
  const std::vector<int64_t> positions = evaluate::substitutable_positions(attribution);
  evaluate::Rng rng(options.seed * 0xBF58476D1CE4E5B9ULL + 11);
  const double sigma = evaluate::embedding_std(model);
  const Tokenizer& tok = model.tokenizer();

  AttackResult out;
  out.top_token = top0;
  out.top_prob = out.perturbed_prob = p0;
  out.perturbed_ids = r.input_ids;
  std::vector<TokenId> current = r.input_ids;
  std::vector<Substitution> subs;
  double best_linf = 0;
  std::vector<std::string> changes;
  std::vector<bool> used(current.size(), false);
  for (int64_t round = 0; round < options.n_rounds; ++round) {
    double best = out.topk_intersection;
    double best_dp = 0, best_p = p0, best_noise = 0;
    std::vector<TokenId> best_ids;
    std::string best_change;
    int64_t best_pos = -1;
    TokenId best_sub = -1;
    for (int64_t c = 0; c < options.n_candidates; ++c) {
      ++out.candidates_tried;
      Attribution b;
      double dp = 0;
      std::string change;
      std::vector<TokenId> ids = current;
      int64_t pos = -1;
      TokenId sub = -1;
      double p_new = p0, linf = 0;
      if (options.space == PerturbationSpace::kToken) {
        std::vector<int64_t> free;
        for (int64_t t : positions)
          if (!used[t]) free.push_back(t);
        if (free.empty()) break;
        pos = free[std::uniform_int_distribution<size_t>(0, free.size() - 1)(rng)];
        std::vector<TokenId> nn = nearest_tokens(model, r.input_ids[pos], options.neighbours);
        if (nn.empty()) continue;
        sub = nn[std::uniform_int_distribution<size_t>(0, nn.size() - 1)(rng)];
        ids[pos] = sub;
        auto [t1, p1] = top_of(model, ids);
        dp = std::fabs(p1 - p0);
        p_new = p1;
        if (t1 != top0 || dp > options.max_prob_change) continue;
        ExplainRequest rp = r;
        rp.input_ids = ids;
        b = explainer.explain(model, rp);
        change = "pos " + std::to_string(pos) + ": '" + tok.piece(r.input_ids[pos]) + "' -> '" +
                 tok.piece(sub) + "'";
      } else {
        at::Tensor noise =
            evaluate::feature_noise(attribution, model.config().dim, options.radius * sigma, rng);
        linf = noise.abs().max().item<double>();
        auto noisy = with_embedding_noise(model, noise);
        auto [t1, p1] = top_of(*noisy, r.input_ids);
        dp = std::fabs(p1 - p0);
        p_new = p1;
        if (t1 != top0 || dp > options.max_prob_change) continue;
        b = explainer.explain(*noisy, r);
        char buf[96];
        std::snprintf(buf, sizeof(buf), "embedding noise |d|inf <= %.4g (draw %lld)",
                      options.radius * sigma, static_cast<long long>(out.candidates_tried));
        change = buf;
      }
      ++out.candidates_valid;
      double ti = topk_intersection(phi, b.total(), k);
      if (ti < best) {
        best = ti;
        best_dp = dp;
        best_ids = ids;
        best_change = change;
        best_pos = pos;
        best_sub = sub;
        best_p = p_new;
        best_noise = linf;
      }
    }
    if (best_change.empty()) break;  // no candidate moved the explanation further
    out.topk_intersection = best;
    out.prob_change = best_dp;
    out.perturbed_prob = best_p;
    if (options.space == PerturbationSpace::kToken) {
      current = best_ids;
      used[best_pos] = true;
      changes.push_back(best_change);
      subs.push_back({best_pos, r.input_ids[best_pos], best_sub});
    } else {
      changes = {best_change};
      best_linf = best_noise;
    }
  }
  out.changes = changes;
  out.substitutions = subs;
  out.perturbed_ids = current;
  out.noise_linf = best_linf;
  out.success = out.topk_intersection < options.success_below;
  return out;
}

OptionSpecs attack_option_specs(PerturbationSpace space) {
  // The defaults are AttackOptions' own, so they are written once.
  const AttackOptions d;
  OptionSpecs specs = {
      OptionSpec::integer("n_candidates", d.n_candidates, 1, 100000,
                          "candidate changes tried per round"),
      OptionSpec::integer("n_rounds", d.n_rounds, 1, 1000,
                          "greedy rounds (substitution: one more substitution per round)"),
      OptionSpec::integer("top_k", d.top_k, 1, 100000,
                          "the explanation's top-k features whose intersection is attacked"),
      OptionSpec::real("success_below", d.success_below, 0.0, 1.0,
                       "the attack succeeds when the top-k intersection drops below this"),
      OptionSpec::real("max_prob_change", d.max_prob_change, 0.0, 1.0,
                       "largest change of the top token's probability a change may make")};
  if (space == PerturbationSpace::kToken) {
    specs.push_back(OptionSpec::integer("neighbours", d.neighbours, 1, 100000,
                                        "nearest-neighbour tokens tried per position"));
  } else {
    specs.push_back(OptionSpec::real("radius", d.radius, 0.0, 1e6,
                                     "embedding noise radius (x the std of the embedding matrix)"));
  }
  return specs;
}

AttackOptions parse_attack(const std::string& spec) {
  auto [name, given] = parse_spec(spec);
  AttackOptions o;
  if (name == "substitution" || name == "token") {
    o.space = PerturbationSpace::kToken;
  } else if (name == "noise" || name == "embedding") {
    o.space = PerturbationSpace::kEmbedding;
  } else {
    throw Error(ErrorCode::kInvalidArgument, "unknown attack '" + name + "' in '" + spec + "'",
                "attacks are substitution (nearest-neighbour token substitutions) and noise "
                "(embedding noise within a radius), e.g. substitution:n_rounds=2,top_k=3");
  }
  Options opt("attack", attack_space_name(o), attack_option_specs(o.space), given);
  o.n_candidates = opt.get_int("n_candidates");
  o.n_rounds = opt.get_int("n_rounds");
  o.top_k = opt.get_int("top_k");
  o.success_below = opt.get_double("success_below");
  o.max_prob_change = opt.get_double("max_prob_change");
  if (o.space == PerturbationSpace::kToken)
    o.neighbours = opt.get_int("neighbours");
  else
    o.radius = opt.get_double("radius");
  return o;
}

const char* attack_space_name(const AttackOptions& o) {
  return o.space == PerturbationSpace::kToken ? "substitution" : "noise";
}

nlohmann::json attack_options_to_json(const AttackOptions& o) {
  nlohmann::ordered_json j;
  j["attack"] = attack_space_name(o);
  j["n_candidates"] = o.n_candidates;
  j["n_rounds"] = o.n_rounds;
  j["top_k"] = o.top_k;
  j["success_below"] = o.success_below;
  j["max_prob_change"] = o.max_prob_change;
  if (o.space == PerturbationSpace::kToken)
    j["neighbours"] = o.neighbours;
  else
    j["radius"] = o.radius;
  return nlohmann::json(j);
}

nlohmann::json attack_result_to_json(const AttackResult& r, const Tokenizer* tok) {
  nlohmann::ordered_json j;
  j["success"] = r.success;
  j["topk_intersection"] = r.topk_intersection;
  j["prob_change"] = r.prob_change;
  j["top_token"] = r.top_token;
  if (tok && r.top_token >= 0) j["top_piece"] = tok->piece(r.top_token);
  j["top_prob"] = r.top_prob;
  j["perturbed_prob"] = r.perturbed_prob;
  j["changes"] = r.changes;
  j["candidates_tried"] = r.candidates_tried;
  j["candidates_valid"] = r.candidates_valid;
  {
    j["perturbed_ids"] = r.perturbed_ids;
    nlohmann::json subs = nlohmann::json::array();
    for (const auto& s : r.substitutions) {
      nlohmann::ordered_json e;
      e["position"] = s.position;
      e["from"] = s.from;
      e["to"] = s.to;
      if (tok) {
        e["from_piece"] = tok->piece(s.from);
        e["to_piece"] = tok->piece(s.to);
      }
      subs.push_back(nlohmann::json(e));
    }
    j["substitutions"] = subs;
  }
  j["noise_linf"] = r.noise_linf;
  return nlohmann::json(j);
}

Attribution consensus(const std::vector<Attribution>& attributions) {
  std::vector<const Attribution*> in;
  for (const auto& a : attributions)
    if (!a.scores.empty()) in.push_back(&a);
  if (in.empty())
    throw Error(ErrorCode::kInvalidArgument, "a consensus needs attributions with scores");
  for (const auto* a : in) {
    if (a->scores.size() != in[0]->scores.size() || a->tokens != in[0]->tokens) {
      throw Error(ErrorCode::kInvalidArgument,
                  "a consensus needs attributions of the same request ('" + a->method +
                      "' differs from '" + in[0]->method + "')");
    }
  }
  const size_t M = in.size();
  std::vector<std::vector<double>> totals;
  for (const auto* a : in) totals.push_back(a->total());
  std::vector<double> w(M, 0.0);
  for (size_t i = 0; i < M; ++i) {
    double s = 0;
    for (size_t j = 0; j < M; ++j)
      if (j != i) s += spearman(totals[i], totals[j]);
    w[i] = M > 1 ? std::max(0.0, s / static_cast<double>(M - 1)) : 1.0;
  }
  double wsum = 0;
  for (double x : w) wsum += x;
  if (!(wsum > 0)) {
    std::fill(w.begin(), w.end(), 1.0);
    wsum = static_cast<double>(M);
  }
  Attribution c = *in[0];
  c.method = "consensus";
  c.options.clear();
  c.extra = nlohmann::json();
  c.convergence_delta.clear();
  c.forward_passes = 0;
  c.elapsed_ms = 0;
  std::fill(c.scores.begin(), c.scores.end(), 0.0);
  nlohmann::json weights = nlohmann::json::object();
  for (size_t i = 0; i < M; ++i) {
    double mx = 0;
    for (double x : in[i]->scores) mx = std::max(mx, std::fabs(x));
    const double scale = mx > 0 ? w[i] / wsum / mx : 0.0;
    for (size_t j = 0; j < c.scores.size(); ++j) c.scores[j] += scale * in[i]->scores[j];
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.4f", w[i] / wsum);
    c.options[in[i]->method] = buf;
    weights[in[i]->method] = w[i] / wsum;
    c.forward_passes += in[i]->forward_passes;
  }
  c.extra["consensus_weights"] = weights;
  return c;
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

void attach_quality(const Model& model, const ExplainRequest& request,
                    const std::vector<const Explainer*>& explainers,
                    std::vector<Attribution>& attributions, const QualityOptions& options) {
  for (size_t i = 0; i < attributions.size(); ++i) {
    Attribution& a = attributions[i];
    if (a.scores.empty()) continue;
    nlohmann::ordered_json q;
    Faithfulness f = evaluate_faithfulness(model, request, a, options.faithfulness);
    q["removal"] = removal_name(options.faithfulness.removal);
    q["fractions"] = f.fractions;
    q["comprehensiveness"] = f.comprehensiveness;
    q["sufficiency"] = f.sufficiency;
    q["comprehensiveness_aopc"] = f.comprehensiveness_aopc;
    q["sufficiency_aopc"] = f.sufficiency_aopc;
    double fpe = f.forward_passes;
    if (i < explainers.size() && explainers[i] && options.robustness.n_samples > 0) {
      Robustness r = evaluate_robustness(model, request, *explainers[i], a, options.robustness);
      q["sensitivity"] = robustness_to_json(r);
      fpe += r.forward_passes;
    }
    nlohmann::ordered_json agree = nlohmann::ordered_json::object();
    for (size_t j = 0; j < attributions.size(); ++j) {
      if (j == i || attributions[j].scores.empty() ||
          attributions[j].scores.size() != a.scores.size())
        continue;
      agree[attributions[j].method] = spearman(a.total(), attributions[j].total());
    }
    q["agreement_spearman"] = agree;
    q["forward_passes"] = fpe;
    if (!a.extra.is_object()) a.extra = nlohmann::json::object();
    a.extra["quality"] = nlohmann::json(q);
  }
}

}  // namespace candor
