// Robustness: max- and average-sensitivity (Yeh et al. 2019) in embedding space (uniform noise
// in an L-inf ball) and in token space (nearest-neighbour substitutions), with the top-k
// intersection and rank correlation of each perturbed explanation with the original.
#include <algorithm>
#include <cmath>

#include "candor/error.h"
#include "evaluate/internal.h"

namespace candor {
namespace {

// Adds a fixed [T, D] noise to the embeddings of every length-T sequence; delegates the rest.
class NoisyEmbeddings : public Model {
 public:
  NoisyEmbeddings(const Model& base, at::Tensor noise) : base_(base), noise_(std::move(noise)) {}
  const ModelConfig& config() const override { return base_.config(); }
  const Tokenizer& tokenizer() const override { return base_.tokenizer(); }
  int64_t n_params() const override { return base_.n_params(); }
  at::Tensor forward(const ForwardArgs& args) const override {
    if (args.embeddings.defined() || !args.tokens.defined()) return base_.forward(args);
    ForwardArgs a = args;
    a.embeddings = embed(args.tokens);
    a.tokens = at::Tensor();
    return base_.forward(a);
  }
  at::Tensor embed(const at::Tensor& tokens) const override {
    at::Tensor e = base_.embed(tokens);
    if (tokens.dim() >= 1 && tokens.size(-1) == noise_.size(0)) e = e + noise_;
    return e;
  }
  // Gradient methods (and so the attacks and sensitivities that rerun them) take the base
  // model's hand-written backward: the noise is already in the embeddings they pass.
  std::unique_ptr<GradientTape> forward_with_tape(const ForwardArgs& args,
                                                  at::Tensor* logits) const override {
    if (!args.embeddings.defined()) return nullptr;
    return base_.forward_with_tape(args, logits);
  }
  std::string forward_path() const override { return base_.forward_path(); }
  std::string gradient_path() const override { return base_.gradient_path(); }
  at::Tensor embedding_matrix() const override { return base_.embedding_matrix(); }
  at::Tensor unembed(const at::Tensor& h, bool n) const override { return base_.unembed(h, n); }
  KVCache new_cache(int64_t b, int64_t c) const override { return base_.new_cache(b, c); }
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override {
    return base_.named_parameters();
  }

 private:
  const Model& base_;
  at::Tensor noise_;
};

}  // namespace

std::unique_ptr<Model> with_embedding_noise(const Model& model, at::Tensor noise) {
  return std::make_unique<NoisyEmbeddings>(model, std::move(noise));
}

std::vector<TokenId> nearest_tokens(const Model& model, TokenId token, int64_t k) {
  at::NoGradGuard ng;
  at::Tensor E = model.embedding_matrix().to(at::kFloat);  // [V, D]
  const int64_t V = E.size(0);
  if (token < 0 || token >= V)
    throw Error(ErrorCode::kInvalidArgument, "token " + std::to_string(token) + " out of range");
  at::Tensor En = E / E.norm(2, 1, true).clamp_min(1e-12);
  at::Tensor sim = at::matmul(En, En[token]).contiguous();  // [V]
  const Tokenizer& tok = model.tokenizer();
  for (TokenId s : {token, tok.bos_id(), tok.eos_id(), tok.unk_id(), tok.pad_id()})
    if (s >= 0 && s < V) sim[s] = -1e9;
  at::Tensor idx = std::get<1>(sim.topk(std::min<int64_t>(k, V - 1)));
  std::vector<TokenId> out;
  for (int64_t i = 0; i < idx.numel(); ++i)
    out.push_back(static_cast<TokenId>(idx[i].item<int64_t>()));
  return out;
}

namespace evaluate {

// Token positions of the input (not the span) that belong to a feature.
std::vector<int64_t> substitutable_positions(const Attribution& a) {
  std::vector<int64_t> pos;
  for (const auto& f : a.features)
    for (int64_t t = f.begin; t < f.end && t < a.n_input_tokens; ++t) pos.push_back(t);
  return pos;
}

double embedding_std(const Model& model) {
  at::NoGradGuard ng;
  return model.embedding_matrix().to(at::kFloat).std().item<double>();
}

// Uniform noise in [-r, r] at the feature positions of the input, [T, D].
at::Tensor feature_noise(const Attribution& a, int64_t dim, double r, Rng& rng) {
  const int64_t T = static_cast<int64_t>(a.tokens.size());
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(T * dim, 0.0f);
  for (int64_t t : substitutable_positions(a))
    for (int64_t d = 0; d < dim; ++d) v[t * dim + d] = static_cast<float>(r) * u(rng);
  return at::tensor(v, at::kFloat).view({T, dim});
}

}  // namespace evaluate

Robustness evaluate_robustness(const Model& model, const ExplainRequest& request,
                               const Explainer& explainer, const Attribution& attribution,
                               const RobustnessOptions& options) {
  if (attribution.scores.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "the attribution by '" + attribution.method + "' has no scores to evaluate");
  }
  const ExplainRequest r = evaluate::pinned_request(request, attribution);
  const std::vector<double> phi = attribution.total();
  const double norm = evaluate::l2(phi);
  const std::vector<int64_t> positions = evaluate::substitutable_positions(attribution);
  evaluate::Rng rng(options.seed * 0xD1B54A32D192ED03ULL + 29);
  const double sigma = evaluate::embedding_std(model);

  Robustness out;
  out.space = options.space == PerturbationSpace::kEmbedding ? "embedding" : "token";
  const int64_t k = std::max<int64_t>(1, options.top_k);
  for (int64_t s = 0; s < options.n_samples; ++s) {
    Attribution b;
    std::string what;
    if (options.space == PerturbationSpace::kEmbedding) {
      at::Tensor noise =
          evaluate::feature_noise(attribution, model.config().dim, options.radius * sigma, rng);
      auto noisy = with_embedding_noise(model, noise);
      b = explainer.explain(*noisy, r);
      char buf[96];
      std::snprintf(buf, sizeof(buf), "uniform noise |d|inf <= %.4g", options.radius * sigma);
      what = buf;
    } else {
      if (positions.empty()) break;
      ExplainRequest rp = r;
      std::vector<int64_t> pool = positions;
      std::shuffle(pool.begin(), pool.end(), rng);
      const int64_t n =
          std::min<int64_t>(options.n_substitutions, static_cast<int64_t>(pool.size()));
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = pool[i];
        std::vector<TokenId> nn = nearest_tokens(model, r.input_ids[t], options.neighbours);
        if (nn.empty()) continue;
        TokenId sub = nn[std::uniform_int_distribution<size_t>(0, nn.size() - 1)(rng)];
        if (!what.empty()) what += "; ";
        what += "pos " + std::to_string(t) + ": '" + token_text(model.tokenizer(), r.input_ids[t]) +
                "' -> '" + token_text(model.tokenizer(), sub) + "'";
        rp.input_ids[t] = sub;
      }
      b = explainer.explain(model, rp);
    }
    out.forward_passes += b.forward_passes;
    const std::vector<double> phi2 = b.total();
    if (phi2.size() != phi.size()) {
      throw Error(ErrorCode::kInternal, "a perturbed explanation changed the feature count");
    }
    std::vector<double> d(phi.size());
    for (size_t i = 0; i < phi.size(); ++i) d[i] = phi2[i] - phi[i];
    const double sens = evaluate::l2(d) / (norm > 0 ? norm : 1.0);
    out.sensitivities.push_back(sens);
    out.perturbations.push_back(what);
    out.max_sensitivity = std::max(out.max_sensitivity, sens);
    out.avg_sensitivity += sens;
    out.mean_topk_intersection += topk_intersection(phi, phi2, k);
    out.mean_spearman += spearman(phi, phi2);
  }
  const double n = static_cast<double>(out.sensitivities.size());
  if (n > 0) {
    out.avg_sensitivity /= n;
    out.mean_topk_intersection /= n;
    out.mean_spearman /= n;
  }
  return out;
}

nlohmann::json robustness_to_json(const Robustness& r) {
  nlohmann::ordered_json j;
  j["space"] = r.space;
  j["max_sensitivity"] = r.max_sensitivity;
  j["avg_sensitivity"] = r.avg_sensitivity;
  j["mean_topk_intersection"] = r.mean_topk_intersection;
  j["mean_spearman"] = r.mean_spearman;
  j["sensitivities"] = r.sensitivities;
  j["perturbations"] = r.perturbations;
  j["forward_passes"] = r.forward_passes;
  return nlohmann::json(j);
}

}  // namespace candor
