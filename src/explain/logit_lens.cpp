// The logit lens: the residual stream after every layer read out through the final norm and the
// output matrix, at each explained position: the target's probability and rank, and the top-k.
// A view, not an attribution: its result has empty `scores` and the table in extra["logit_lens"].
#include "candor/error.h"
#include "explain/common.h"

namespace candor::explain {
namespace {

class LogitLens : public Method {
 public:
  explicit LogitLens(Options o) : Method(std::move(o)) { top_k_ = o_.get_int("top_k"); }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Problem p = prepare(model, request);
    refuse_neuron_target(p, name());
    const Tokenizer& tok = model.tokenizer();
    const int64_t S = p.n_steps(), V = model.config().vocab_size;
    const int64_t k = std::min<int64_t>(top_k_, V);

    at::NoGradGuard no_grad;
    Activations acts;
    ForwardArgs a;
    a.embeddings = p.embeddings;
    a.output_positions = p.step_positions_t;
    a.capture = &acts;
    a.capture_options.residual = true;
    model.forward(a);
    // The stream entering layer 0, then after each layer: (L + 1) x [1, T, D].
    std::vector<at::Tensor> states = {acts.embeddings};
    states.insert(states.end(), acts.residual.begin(), acts.residual.end());

    // Layer-major table: layers[l].steps[s] (rows = layers, columns = steps in a grid view).
    nlohmann::json layers = nlohmann::json::array();
    auto text_of = [&](int64_t s, TokenId id) {
      std::string t = tok.decode_piece(p.tokens[p.step_positions[s]], id);
      return t.empty() ? token_text(tok, id) : t;
    };
    for (size_t l = 0; l < states.size(); ++l) {
      nlohmann::json steps = nlohmann::json::array();
      at::Tensor h = states[l][0].index_select(0, p.step_positions_t);                // [S, D]
      at::Tensor logp = at::log_softmax(model.unembed(h, true).to(at::kDouble), -1);  // [S, V]
      auto [top_logp, top_ids] = logp.topk(k, -1);                                    // [S, k]
      at::Tensor entropy = -(logp.exp() * logp).sum(-1);                              // [S]
      for (int64_t s = 0; s < S; ++s) {
        nlohmann::json row;
        row["position"] = p.step_positions[s];
        row["token"] = p.step_tokens[s];
        row["entropy"] = entropy[s].item<double>();
        auto add_token = [&](const std::string& key, TokenId id) {
          double lp = logp[s][id].item<double>();
          row[key + "_prob"] = std::exp(lp);
          row[key + "_rank"] = (logp[s] > lp).sum().item<int64_t>();  // 0: the top token
        };
        if (p.step_tokens[s] >= 0) add_token("target", p.step_tokens[s]);
        if (p.function == TargetFunction::kContrast) add_token("contrast", p.contrast);
        nlohmann::json top = nlohmann::json::array();
        for (int64_t j = 0; j < k; ++j) {
          TokenId id = static_cast<TokenId>(top_ids[s][j].item<int64_t>());
          top.push_back({{"token", id},
                         {"text", text_of(s, id)},
                         {"prob", std::exp(top_logp[s][j].item<double>())}});
        }
        row["top"] = top;
        steps.push_back(row);
      }
      layers.push_back({{"layer", l},
                        {"name", l == 0 ? std::string("embeddings") : "layer " + std::to_string(l)},
                        {"steps", steps}});
      report_progress(&context, static_cast<double>(l + 1) / states.size());
    }
    Attribution out = finish(p, name(), o_, at::zeros({S, p.n_features()}, at::kDouble), start,
                             static_cast<double>(p.length()));
    out.scores.clear();  // a view: no per-feature scores
    out.extra["logit_lens"] = {{"top_k", k}, {"layers", layers}};
    return out;
  }

 private:
  int64_t top_k_ = 0;
};

}  // namespace

std::unique_ptr<Explainer> make_logit_lens(const Options& o) {
  return std::make_unique<LogitLens>(o);
}

}  // namespace candor::explain
