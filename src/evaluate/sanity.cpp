// Sanity checks: model-parameter randomisation (Adebayo et al. 2018), cascading from the output
// layer down or one layer at a time, and the random-logit test.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "candor/error.h"
#include "evaluate/internal.h"

namespace candor {
namespace {

// Parameter groups from the output down: "output" (final norm and an untied output matrix),
// "layers.N" for N = L-1 .. 0, then "embeddings".
std::vector<std::pair<std::string, std::vector<at::Tensor>>> groups_top_down(const Model& model) {
  std::map<int64_t, std::vector<at::Tensor>> layers;
  std::vector<at::Tensor> output, embeddings, other;
  for (auto& [name, t] : model.named_parameters()) {
    if (name.rfind("layers.", 0) == 0) {
      int64_t l = std::stoll(name.substr(7, name.find('.', 7) - 7));
      layers[l].push_back(t);
    } else if (name == "tok_embeddings") {
      embeddings.push_back(t);
    } else {
      output.push_back(t);  // final_norm, output
    }
  }
  std::vector<std::pair<std::string, std::vector<at::Tensor>>> g;
  if (!output.empty()) g.emplace_back("output", output);
  for (auto it = layers.rbegin(); it != layers.rend(); ++it)
    g.emplace_back("layers." + std::to_string(it->first), it->second);
  if (!embeddings.empty()) g.emplace_back("embeddings", embeddings);
  return g;
}

// Puts saved parameter values back on restore().
class Restorer {
 public:
  void save(const at::Tensor& t) {
    for (auto& [p, v] : saved_)
      if (p.is_same(t)) return;
    saved_.emplace_back(t, t.detach().clone());
  }
  void restore() {
    at::NoGradGuard ng;
    for (auto& [p, v] : saved_) p.detach().copy_(v);
  }

 private:
  std::vector<std::pair<at::Tensor, at::Tensor>> saved_;
};

void redraw(const at::Tensor& t, evaluate::Rng& rng) {
  at::NoGradGuard ng;
  at::Tensor f = t.detach().to(at::kFloat);
  const double mean = t.dim() == 1 ? f.mean().item<double>() : 0.0;
  double sd = f.numel() > 1 ? f.std().item<double>() : 0.0;
  if (!(sd > 0)) sd = t.dim() == 1 ? 0.1 * std::max(1e-3, std::fabs(mean)) : 0.02;
  std::normal_distribution<float> n(static_cast<float>(mean), static_cast<float>(sd));
  std::vector<float> v(t.numel());
  for (auto& x : v) x = n(rng);
  t.detach().copy_(at::tensor(v, at::kFloat).view(t.sizes()).to(t.scalar_type()));
}

std::vector<double> abs_of(std::vector<double> v) {
  for (auto& x : v) x = std::fabs(x);
  return v;
}

}  // namespace

std::vector<RandomisationStep> randomisation_test(const Model& model, const ExplainRequest& request,
                                                  const Explainer& explainer,
                                                  const Attribution& attribution,
                                                  const SanityOptions& options) {
  if (attribution.scores.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "the attribution by '" + attribution.method + "' has no scores to compare");
  }
  const ExplainRequest r = evaluate::pinned_request(request, attribution);
  const std::vector<double> phi = attribution.total();
  evaluate::Rng rng(options.seed * 0x9E3779B97F4A7C15ULL + 101);
  // The parameters are re-drawn in a copy; `model` itself is never changed.
  std::unique_ptr<Model> copy = model.clone();
  auto groups = groups_top_down(*copy);
  Restorer restorer;  // one layer at a time: the copy's parameters are put back between steps
  if (!options.cascading) {
    for (auto& [name, ts] : groups)
      for (auto& t : ts) restorer.save(t);
  }
  std::vector<RandomisationStep> out;
  for (auto& [name, ts] : groups) {
    if (!options.cascading) restorer.restore();
    for (auto& t : ts) redraw(t, rng);
    Attribution b = explainer.explain(*copy, r);
    const std::vector<double> phi2 = b.total();
    RandomisationStep s;
    s.randomised = name;  // cascading: this group and every one before it
    s.spearman = spearman(phi, phi2);
    s.spearman_abs = spearman(abs_of(phi), abs_of(phi2));
    s.topk_intersection = topk_intersection(phi, phi2, std::max<int64_t>(1, options.top_k));
    out.push_back(s);
  }
  return out;
}

namespace evaluate {

TokenId random_other_token(const Model& model, TokenId token, uint64_t seed) {
  const Tokenizer& tok = model.tokenizer();
  const int64_t V = model.config().vocab_size;
  Rng rng(seed * 0x2545F4914F6CDD1DULL + 7);
  std::uniform_int_distribution<int64_t> pick(0, V - 1);
  for (int i = 0; i < 1000; ++i) {
    TokenId c = static_cast<TokenId>(pick(rng));
    if (c != token && c != tok.bos_id() && c != tok.eos_id() && c != tok.unk_id() &&
        c != tok.pad_id())
      return c;
  }
  return token;
}

}  // namespace evaluate

RandomLogit random_logit_test(const Model& model, const ExplainRequest& request,
                              const Explainer& explainer, const Attribution& attribution,
                              const SanityOptions& options) {
  if (attribution.scores.empty() || attribution.step_tokens.size() != 1 ||
      attribution.step_tokens[0] < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "the random-logit test needs a single explained token with scores",
                "explain the next token (not a span or the entropy)");
  }
  ExplainRequest r = evaluate::pinned_request(request, attribution);
  const TokenId t = evaluate::random_other_token(model, attribution.step_tokens[0], options.seed);
  r.target.token = t;
  Attribution b = explainer.explain(model, r);
  RandomLogit out;
  out.random_token = t;
  out.spearman = spearman(attribution.total(), b.total());
  out.topk_intersection =
      topk_intersection(attribution.total(), b.total(), std::max<int64_t>(1, options.top_k));
  return out;
}

}  // namespace candor
