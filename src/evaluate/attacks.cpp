// Attacks on explanations: greedy token substitutions or embedding noise that move an
// explanation's top-k features while keeping the model's output; their options are declared
// once (attack_option_specs) and parsed through candor/options.h.
#include <algorithm>
#include <cmath>

#include "candor/error.h"
#include "candor/options.h"
#include "evaluate/internal.h"

namespace candor {
namespace {

// Top token and its probability at the last explained position.
std::pair<TokenId, double> top_of(const Model& model, const std::vector<TokenId>& ids) {
  at::NoGradGuard ng;
  at::Tensor p = at::softmax(model.logits(ids)[-1], -1);
  int64_t t = p.argmax().item<int64_t>();
  return {static_cast<TokenId>(t), p[t].item<double>()};
}

}  // namespace

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
        change = "pos " + std::to_string(pos) + ": '" + token_text(tok, r.input_ids[pos]) +
                 "' -> '" + token_text(tok, sub) + "'";
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

}  // namespace candor
