// Shared machinery of the explainers: preparation, target values, gradients, batched mask
// scoring with KV-cache prefix reuse, and the common part of every result.
#include "explain/common.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "candor/error.h"

namespace candor::explain {

namespace {

// Sets the single step's target token (no span), refusing "A rather than A".
void set_single_target(Problem& p, TokenId target, bool predicted) {
  const bool classifier = p.model->config().kind == ModelKind::kClassifier;
  if (p.function == TargetFunction::kContrast && target == p.contrast) {
    throw Error(ErrorCode::kInvalidArgument,
                "the contrast token " + std::to_string(p.contrast) + " is the " +
                    (predicted ? "predicted " : "") + (classifier ? "class" : "token") +
                    " explained: \"A rather than A\" is 0 for every input",
                "contrast two different " + std::string(classifier ? "classes" : "tokens"));
  }
  p.step_tokens.assign(1, target);
  p.step_tokens_t = at::tensor(std::vector<int64_t>{std::max<TokenId>(target, 0)}, at::kLong);
}

// The predicted target from logits [B, 1, V] of a pass whose row 0 is the input.
void resolve_prediction(Problem& p, const at::Tensor& logits) {
  if (!p.target_pending) return;
  const TokenId target = static_cast<TokenId>(logits[0][0].argmax(-1).item<int64_t>());
  set_single_target(p, target, true);
  p.target_pending = false;
}

}  // namespace

Problem prepare(const Model& model, const ExplainRequest& request, bool defer_prediction) {
  const ModelConfig& c = model.config();
  const Tokenizer& tok = model.tokenizer();
  if (request.input_ids.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "the input to explain is empty",
                "give a prompt (it is encoded with BOS first)");
  }
  const bool classifier = c.kind == ModelKind::kClassifier;
  auto check_id = [&](TokenId id, const std::string& what) {
    if (id < 0 || id >= c.vocab_size) {
      throw Error(ErrorCode::kInvalidArgument, what + " " + std::to_string(id) +
                                                   " is outside the vocabulary of " +
                                                   std::to_string(c.vocab_size) + " tokens");
    }
  };
  for (TokenId id : request.input_ids) check_id(id, "input token");
  for (TokenId id : request.target.span) check_id(id, "span token");
  // Classifiers: targets are classes.
  auto check_target = [&](TokenId id, const std::string& what) {
    if (!classifier) return check_id(id, what);
    if (id < 0 || id >= c.n_outputs()) {
      throw Error(ErrorCode::kInvalidArgument,
                  what + ": class " + std::to_string(id) + " is outside the " +
                      std::to_string(c.n_outputs()) + " classes of the model",
                  "classes are 0.." + std::to_string(c.n_outputs() - 1));
    }
  };
  if (classifier && !request.target.span.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "a continuation (span) cannot be explained on the " + c.architecture +
                    " classifier: it predicts a class, not text",
                "explain a class (Target::token is the class index)");
  }

  Problem p;
  p.model = &model;
  p.function = request.target.function;
  p.tokens = request.input_ids;
  p.n_input = static_cast<int64_t>(request.input_ids.size());
  const auto& span = request.target.span;
  if (!span.empty()) p.tokens.insert(p.tokens.end(), span.begin(), span.end() - 1);
  if (p.length() > c.max_seq_len) {
    throw Error(ErrorCode::kResourceExhausted,
                "input and span are " + std::to_string(p.length()) +
                    " tokens, more than the model's context of " + std::to_string(c.max_seq_len),
                "shorten the prompt or the continuation");
  }
  if (p.function == TargetFunction::kContrast) {
    if (request.target.contrast_token < 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  "a contrast target needs a contrast token (B in \"A rather than B\")",
                  "use --contrast A,B");
    }
    check_target(request.target.contrast_token, "contrast token");
    p.contrast = request.target.contrast_token;
  }
  p.features = make_features(model, request);
  if (p.features.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "nothing to attribute: the input has no tokens besides BOS",
                "give a non-empty prompt");
  }
  p.feature_of_token.assign(p.tokens.size(), -1);
  for (size_t f = 0; f < p.features.size(); ++f) {
    for (int64_t t = p.features[f].begin; t < p.features[f].end; ++t)
      p.feature_of_token[t] = static_cast<int64_t>(f);
  }
  p.token_feature = at::tensor(p.feature_of_token, at::kLong);
  p.ids =
      at::tensor(std::vector<int64_t>(p.tokens.begin(), p.tokens.end()), at::kLong).unsqueeze(0);

  at::NoGradGuard no_grad;
  at::Tensor predicted_logits;  // the target prediction's pass, when one runs
  const NeuronTarget& neuron = request.target.neuron;
  if (neuron.active()) {
    const std::string name = "the neuron target (layer " + std::to_string(neuron.layer) +
                             ", position " + std::to_string(neuron.position) + ", unit " +
                             std::to_string(neuron.unit) + ")";
    if (!span.empty()) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + " comes with a continuation (span) to score",
                  "explain a neuron of the input alone: drop --generate / the span");
    }
    if (neuron.layer >= c.n_layers) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": layer must be in [0, " + std::to_string(c.n_layers - 1) +
                      "] for this model, got " + std::to_string(neuron.layer),
                  "layers count from 0; the model has " + std::to_string(c.n_layers));
    }
    const int64_t pos = neuron.position < 0 ? p.length() + neuron.position : neuron.position;
    if (pos < 0 || pos >= p.length()) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": position must be in [0, " + std::to_string(p.length() - 1) +
                      "] (or [-" + std::to_string(p.length()) + ", -1] from the end) for this " +
                      std::to_string(p.length()) + "-token input, got " +
                      std::to_string(neuron.position),
                  "positions count tokens from 0, BOS first; -1 is the last token");
    }
    if (neuron.unit < 0 || neuron.unit >= c.dim) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": unit must be in [0, " + std::to_string(c.dim - 1) +
                      "] for this model's width of " + std::to_string(c.dim) + ", got " +
                      std::to_string(neuron.unit),
                  "units count from 0 across the residual stream");
    }
    p.neuron_layer = neuron.layer;
    p.neuron_unit = neuron.unit;
    p.step_positions.push_back(pos);
    p.step_tokens.push_back(-1);
  } else if (!span.empty()) {
    for (size_t i = 0; i < span.size(); ++i) {
      p.step_positions.push_back(p.n_input - 1 + static_cast<int64_t>(i));
      p.step_tokens.push_back(p.function == TargetFunction::kEntropy ? -1 : span[i]);
    }
  } else {
    p.step_positions.push_back(p.length() - 1);
    TokenId target = request.target.token;
    if (p.function == TargetFunction::kEntropy) {
      target = -1;
    } else if (target < 0 && defer_prediction) {
      p.target_pending = true;  // taken from the first gradient pass
    } else if (target < 0) {
      ForwardArgs a;
      a.tokens = p.ids;
      a.last_only = true;
      predicted_logits = model.forward(a);  // [1, 1, V]: also gives f(x) below
      target = static_cast<TokenId>(predicted_logits.argmax(-1).item<int64_t>());
    } else {
      check_target(target, "target token");
    }
    p.step_tokens.push_back(target);
  }
  p.step_positions_t = at::tensor(p.step_positions, at::kLong);
  std::vector<int64_t> st;
  for (TokenId t : p.step_tokens) st.push_back(std::max<TokenId>(t, 0));
  p.step_tokens_t = at::tensor(st, at::kLong);
  if (span.empty() && !p.target_pending && !p.neuron())
    set_single_target(p, p.step_tokens[0], request.target.token < 0);
  if (predicted_logits.defined()) p.input_values = p.values_from_step_logits(predicted_logits)[0];

  p.embeddings = model.embed(p.ids).detach();
  at::Tensor base_vec;
  switch (request.baseline.kind) {
    case Baseline::Kind::kZero:
      base_vec = at::zeros({c.dim}, at::kFloat);
      break;
    case Baseline::Kind::kUnk:
    case Baseline::Kind::kPad:
    case Baseline::Kind::kToken: {
      TokenId b = request.baseline.token;
      if (request.baseline.kind == Baseline::Kind::kUnk) b = tok.unk_id();
      if (request.baseline.kind == Baseline::Kind::kPad)
        b = tok.pad_id() >= 0 ? tok.pad_id() : tok.unk_id();
      check_id(b, "baseline token");
      base_vec = model.embed(at::full({1, 1}, static_cast<int64_t>(b), at::kLong))[0][0];
      break;
    }
  }
  at::Tensor is_feature = (p.token_feature >= 0).view({1, p.length(), 1});
  p.baseline_embeddings = at::where(is_feature, base_vec.view({1, 1, c.dim}), p.embeddings);
  return p;
}

void refuse_neuron_target(const Problem& p, const std::string& method) {
  if (!p.neuron()) return;
  throw Error(ErrorCode::kUnsupported,
              (method.empty() ? std::string("this method") : "method '" + method + "'") +
                  " scores the model's outputs and cannot explain a neuron target (layer " +
                  std::to_string(p.neuron_layer) + ", unit " + std::to_string(p.neuron_unit) +
                  ")",
              "explain a neuron with the gradient methods: saliency, input_x_gradient, "
              "integrated_gradients, smoothgrad, vargrad");
}

at::Tensor Problem::values_from_step_logits(const at::Tensor& logits,
                                            const at::Tensor& tokens) const {
  refuse_neuron_target(*this, "");
  const int64_t B = logits.size(0), S = logits.size(1);
  at::Tensor logp = at::log_softmax(logits, -1);
  at::Tensor idx = (tokens.defined() ? tokens : step_tokens_t).view({1, S, 1}).expand({B, S, 1});
  auto pick = [&](const at::Tensor& t, const at::Tensor& i) { return t.gather(-1, i).squeeze(-1); };
  switch (function) {
    case TargetFunction::kLogProb:
      return pick(logp, idx);
    case TargetFunction::kProb:
      return pick(logp, idx).exp();
    case TargetFunction::kLogit:
      return pick(logits, idx);
    case TargetFunction::kContrast:
      return pick(logp, idx) -
             pick(logp, at::full({B, S, 1}, static_cast<int64_t>(contrast), at::kLong));
    case TargetFunction::kEntropy:
      return -(logp.exp() * logp).sum(-1);
    case TargetFunction::kLogOdds: {
      // log p - log(1 - p) = z_t - logsumexp of the other logits: exact where p is near 1.
      at::Tensor others = logits.scatter(-1, idx, -std::numeric_limits<float>::infinity());
      return pick(logits, idx) - at::logsumexp(others, -1);
    }
  }
  throw Error(ErrorCode::kInternal, "unknown target function");
}

at::Tensor Problem::neuron_values(const at::Tensor& emb) const {
  Activations acts;
  ForwardArgs a;
  a.embeddings = emb;
  a.start_layer = start_layer;
  a.last_only = true;  // the logits are not needed: the fewest
  a.capture = &acts;
  a.capture_options.residual = true;
  model->forward(a);
  const int64_t L = model->config().n_layers;
  if (static_cast<int64_t>(acts.residual.size()) != L - start_layer || neuron_layer < start_layer)
    throw Error(ErrorCode::kInternal, "the model did not capture the residual stream of layer " +
                                          std::to_string(neuron_layer));
  return acts.residual[static_cast<size_t>(neuron_layer - start_layer)]
      .select(1, step_positions[0])
      .select(-1, neuron_unit)
      .unsqueeze(1)
      .to(at::kFloat);  // [B, 1]
}

at::Tensor Problem::values(const at::Tensor& emb) const {
  if (neuron()) return neuron_values(emb);
  ForwardArgs a;
  a.embeddings = emb;
  a.start_layer = start_layer;
  a.output_positions = step_positions_t;
  return values_from_step_logits(model->forward(a));
}

at::Tensor Problem::mix(const at::Tensor& keep) const {
  const int64_t B = keep.size(0);
  at::Tensor ext = at::cat({keep.to(at::kFloat), at::ones({B, 1}, at::kFloat)}, 1);
  at::Tensor idx =
      at::where(token_feature >= 0, token_feature, at::full_like(token_feature, n_features()));
  at::Tensor token_keep = ext.index_select(1, idx).unsqueeze(-1);  // [B, T, 1]
  return baseline_embeddings + token_keep * (embeddings - baseline_embeddings);
}

at::Tensor Problem::to_features(const at::Tensor& token_scores) const {
  auto sizes = token_scores.sizes().vec();
  sizes.back() = n_features();
  at::Tensor valid = (token_feature >= 0).nonzero().squeeze(1);
  return at::zeros(sizes, token_scores.options())
      .index_add_(-1, token_feature.index_select(0, valid), token_scores.index_select(-1, valid));
}

at::Tensor Problem::visible() const {
  at::Tensor v = at::zeros({n_steps(), n_features()}, at::kFloat);
  float* vp = v.data_ptr<float>();  // filled through the pointer: one element at a time through
                                    // tensor indexing cost ~10 us each
  for (int64_t s = 0; s < n_steps(); ++s)
    for (int64_t f = 0; f < n_features(); ++f)
      if (features[f].begin <= step_positions[s]) vp[s * n_features() + f] = 1.0f;
  return v;
}

namespace {

// The model's hand-written backward, where it has one: one forward keeping a tape, the values
// and their gradient with respect to the (few) logits through autograd, then the tape's
// backward from those logits to the embeddings. False (nothing run) where the model has none.
struct Taped {
  std::unique_ptr<GradientTape> tape;
  at::Tensor logits;  // leaf requiring grad: [B, n_steps, V]
  at::Tensor values;  // [B, n_steps], on the graph from `logits`
};
bool taped_values(const Problem& p, Problem* resolve, const at::Tensor& embeddings,
                  Taped* out) {
  if (p.neuron()) return false;  // the tape's backward starts at the logits
  ForwardArgs a;
  a.embeddings = embeddings.detach();
  a.start_layer = p.start_layer;
  a.output_positions = p.step_positions_t;
  at::Tensor logits;
  out->tape = p.model->forward_with_tape(a, &logits);
  if (!out->tape) return false;
  if (resolve) resolve_prediction(*resolve, logits);
  at::AutoGradMode enable(true);
  out->logits = logits.detach().requires_grad_(true);
  out->values = p.values_from_step_logits(out->logits);
  return true;
}

// d(sum over rows [0, rows) of step `s`'s values) / d embeddings through the tape.
at::Tensor taped_grad(Taped& t, int64_t s, int64_t rows, bool retain) {
  at::AutoGradMode enable(true);
  t.values.select(1, s).narrow(0, 0, rows).sum().backward({}, retain);
  at::Tensor dlogits = t.logits.grad().clone();
  t.logits.mutable_grad().zero_();
  return t.tape->backward(dlogits);
}


ValuesAndGrads values_and_grads_impl(const Problem& p, Problem* resolve,
                                    const at::Tensor& embeddings, int64_t grad_rows) {
  const int64_t rows = grad_rows < 0 ? embeddings.size(0) : grad_rows;
  Taped t;
  if (taped_values(p, resolve, embeddings, &t)) {
    ValuesAndGrads out;
    for (int64_t s = 0; s < p.n_steps(); ++s)
      out.grads.push_back(taped_grad(t, s, rows, s + 1 < p.n_steps()));
    out.values = t.values.detach();
    return out;
  }
  at::AutoGradMode enable(true);
  at::Tensor emb = embeddings.detach().requires_grad_(true);
  ValuesAndGrads out;
  if (p.neuron()) {
    out.values = p.neuron_values(emb);
  } else {
    ForwardArgs a;
    a.embeddings = emb;
    a.start_layer = p.start_layer;
    a.output_positions = p.step_positions_t;
    const at::Tensor logits = p.model->forward(a);
    if (resolve) resolve_prediction(*resolve, logits.detach());
    out.values = p.values_from_step_logits(logits);
  }
  for (int64_t s = 0; s < p.n_steps(); ++s) {
    out.values.select(1, s).narrow(0, 0, rows).sum().backward({}, s + 1 < p.n_steps());
    out.grads.push_back(emb.grad().clone());
    emb.mutable_grad().zero_();
  }
  out.values = out.values.detach();
  return out;
}

}  // namespace

ValuesAndGrads values_and_grads(Problem& p, const at::Tensor& embeddings, int64_t grad_rows) {
  return values_and_grads_impl(p, &p, embeddings, grad_rows);
}

ValuesAndGrads values_and_grads(const Problem& p, const at::Tensor& embeddings,
                                int64_t grad_rows) {
  if (p.target_pending) throw Error(ErrorCode::kInternal, "the predicted target is not known yet");
  return values_and_grads_impl(p, nullptr, embeddings, grad_rows);
}

at::Tensor value_grad_of_step(const Problem& p, const at::Tensor& embeddings, int64_t step,
                              at::Tensor* values) {
  Taped t;
  if (taped_values(p, nullptr, embeddings, &t)) {
    at::Tensor g = taped_grad(t, step, embeddings.size(0), false);
    if (values) *values = t.values.detach();
    return g;
  }
  at::AutoGradMode enable(true);
  at::Tensor emb = embeddings.detach().requires_grad_(true);
  at::Tensor v = p.values(emb);  // [B, n_steps]
  v.select(1, step).sum().backward();
  if (values) *values = v.detach();
  return emb.grad();
}

void enter_layer(Problem& p, int64_t layer, const std::string& method) {
  const int64_t n_layers = p.model->config().n_layers;
  if (p.neuron()) {
    throw Error(ErrorCode::kUnsupported,
                "method '" + method + "' attributes to a layer's output, not to the input, and "
                "takes no neuron target",
                "explain a neuron with the input methods: saliency, input_x_gradient, "
                "integrated_gradients, smoothgrad, vargrad");
  }
  if (!p.model->is_causal()) {
    throw Error(ErrorCode::kUnsupported,
                "method '" + method + "' needs a causal language model with a layer stack",
                "layer attribution runs on the Llama family and GPT-2; use the input methods "
                "(integrated_gradients, input_x_gradient) on a classifier");
  }
  if (layer < 0 || layer >= n_layers) {
    throw Error(ErrorCode::kInvalidArgument,
                "option layer of method '" + method + "' must be in [0, " +
                    std::to_string(n_layers - 1) + "] for this model, got " +
                    std::to_string(layer),
                "layers count from 0; the model has " + std::to_string(n_layers));
  }
  at::NoGradGuard ng;
  Activations acts;
  ForwardArgs a;
  a.embeddings = at::cat({p.embeddings, p.baseline_embeddings}, 0);
  a.output_positions = p.step_positions_t;
  a.capture = &acts;
  a.capture_options.residual = true;
  const at::Tensor logits = p.model->forward(a);
  if (static_cast<int64_t>(acts.residual.size()) != n_layers)
    throw Error(ErrorCode::kInternal, "the model did not capture its residual stream");
  const at::Tensor h = acts.residual[static_cast<size_t>(layer)].to(at::kFloat).contiguous();
  p.embeddings = h.narrow(0, 0, 1).clone();
  p.baseline_embeddings = h.narrow(0, 1, 1).clone();
  p.start_layer = layer + 1;
  if (!p.target_pending) {
    const at::Tensor v = p.values_from_step_logits(logits);
    p.input_values = v[0];
    p.baseline_values = v[1];
  }
}

nlohmann::json neurons_json(int64_t layer, const at::Tensor& scores) {
  const at::Tensor s = scores.to(at::kDouble).contiguous();
  const int64_t S = s.size(0), T = s.size(1), D = s.size(2);
  const double* d = s.data_ptr<double>();
  nlohmann::json steps = nlohmann::json::array();
  for (int64_t i = 0; i < S; ++i) {
    nlohmann::json rows = nlohmann::json::array();
    for (int64_t t = 0; t < T; ++t) {
      const double* row = d + (i * T + t) * D;
      rows.push_back(std::vector<double>(row, row + D));
    }
    steps.push_back(std::move(rows));
  }
  return {{"layer", layer}, {"positions", T}, {"units", D}, {"scores", std::move(steps)}};
}

void report_progress(const ExplainContext* context, double fraction) {
  if (context && context->progress && !context->progress(std::min(1.0, std::max(0.0, fraction)))) {
    throw Error(ErrorCode::kCancelled, "the explanation was cancelled");
  }
}

MaskScorer::MaskScorer(const Problem& p, int64_t batch_size)
    : p_(p), batch_size_(std::max<int64_t>(1, batch_size)), causal_(p.model->is_causal()) {
  refuse_neuron_target(p, "");
  at::NoGradGuard ng;
  ForwardArgs a;
  if (causal_) {
    base_cache_ = p.model->new_cache(1, p.length());
    a.cache = &base_cache_;
  }
  a.embeddings = p.embeddings;
  a.output_positions = p.step_positions_t;
  full_values_ = p.values_from_step_logits(p.model->forward(a))[0];
  positions_run_ += p.length();
}

at::Tensor MaskScorer::empty_values() {
  return score(at::zeros({1, p_.n_features()}, at::kFloat))[0];
}

at::Tensor MaskScorer::score(const at::Tensor& keep, const ExplainContext* context,
                             double progress_from, double progress_to) {
  at::NoGradGuard ng;
  const int64_t N = keep.size(0), F = p_.n_features(), T = p_.length(), S = p_.n_steps();
  at::Tensor keep_f = keep.to(at::kFloat).contiguous();
  // First changed position of each row (T when nothing is removed).
  std::vector<int64_t> first(N, T);
  const float* kp = keep_f.data_ptr<float>();
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t f = 0; f < F; ++f) {
      if (kp[r * F + f] != 1.0f) {
        first[r] = p_.features[f].begin;
        break;
      }
    }
  }
  // A bidirectional model sees every position from every other: any change reruns it all.
  if (!causal_)
    for (auto& f : first) f = f < T ? 0 : T;
  // Features are in position order, so the first changed feature gives the first position.
  std::vector<int64_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return first[a] < first[b]; });

  // Chunks of consecutive sorted rows: a chunk reruns every row from its earliest change, so
  // rows starting later waste positions, while each chunk has a fixed cost. Choose the split
  // that minimises positions run + kChunkCost * T per chunk (dynamic programming over the
  // sorted rows, at most batch_size rows a chunk).
  constexpr double kChunkCost = 0.5;
  std::vector<double> best(N + 1, 0.0);
  std::vector<int64_t> cut(N + 1, 0);
  for (int64_t j = 1; j <= N; ++j) {
    best[j] = 1e300;
    for (int64_t i = j; i >= 1 && j - i + 1 <= batch_size_; --i) {
      const int64_t from = first[order[i - 1]];
      double cost = from >= T ? 0.0
                              : static_cast<double>(j - i + 1) * static_cast<double>(T - from) +
                                    kChunkCost * T;
      if (best[i - 1] + cost < best[j]) {
        best[j] = best[i - 1] + cost;
        cut[j] = i - 1;
      }
    }
  }
  std::vector<std::pair<int64_t, int64_t>> chunks;  // [start, start + B)
  for (int64_t j = N; j > 0; j = cut[j]) chunks.emplace_back(cut[j], j - cut[j]);
  std::reverse(chunks.begin(), chunks.end());

  at::Tensor out = at::empty({N, S}, at::kFloat);
  for (const auto& [start, B] : chunks) {
    std::vector<int64_t> rows(order.begin() + start, order.begin() + start + B);
    at::Tensor rows_t = at::tensor(rows, at::kLong);
    const int64_t from = first[rows.front()];
    if (from >= T) {
      out.index_copy_(0, rows_t, full_values_.unsqueeze(0).expand({B, S}).contiguous());
    } else {
      KVCache cache;
      if (causal_) {
        cache = base_cache_.expand(B);
        cache.truncate(from);
      }
      at::Tensor emb = p_.mix(keep_f.index_select(0, rows_t)).narrow(1, from, T - from);
      // Steps before `from` see no change.
      at::Tensor vals = full_values_.unsqueeze(0).expand({B, S}).clone();
      std::vector<int64_t> later, later_idx;
      for (int64_t s = 0; s < S; ++s) {
        if (p_.step_positions[s] >= from) {
          later.push_back(s);
          later_idx.push_back(p_.step_positions[s] - from);
        }
      }
      ForwardArgs a;
      a.embeddings = emb;
      if (causal_) a.cache = &cache;
      a.output_positions = at::tensor(later_idx, at::kLong);
      at::Tensor logits = p_.model->forward(a);  // [B, later, V]
      at::Tensor later_t = at::tensor(later, at::kLong);
      vals.index_copy_(
          1, later_t,
          p_.values_from_step_logits(logits, p_.step_tokens_t.index_select(0, later_t)));
      out.index_copy_(0, rows_t, vals);
      positions_run_ += B * (T - from);
    }
    report_progress(context, progress_from + (progress_to - progress_from) * (start + B) / N);
  }
  return out;
}

std::pair<at::Tensor, at::Tensor> endpoint_values(const Problem& p) {
  at::NoGradGuard ng;
  if (p.input_values.defined() && p.baseline_values.defined())
    return {p.input_values, p.baseline_values};
  if (p.input_values.defined()) return {p.input_values, p.values(p.baseline_embeddings)[0]};
  at::Tensor both = p.values(at::cat({p.embeddings, p.baseline_embeddings}, 0));
  return {both[0], both[1]};
}

Attribution finish(const Problem& p, const std::string& method, const Options& options,
                   const at::Tensor& scores, std::chrono::steady_clock::time_point start,
                   double forward_positions) {
  const Tokenizer& tok = p.model->tokenizer();
  Attribution a;
  a.method = method;
  a.options = options.values();
  a.target_function = p.neuron() ? "neuron" : target_function_name(p.function);
  a.tokens = p.tokens;
  for (size_t i = 0; i < p.tokens.size(); ++i) {
    std::string text = tok.decode_piece(i == 0 ? tok.bos_id() : p.tokens[i - 1], p.tokens[i]);
    // Special tokens show the vocabulary's own text: "[CLS]" for BERT, "<s>" for Llama.
    if (p.tokens[i] == tok.bos_id() || p.tokens[i] == tok.eos_id() || text.empty())
      text = token_text(tok, p.tokens[i]);
    a.token_texts.push_back(text);
  }
  a.n_input_tokens = p.n_input;
  a.features = p.features;
  a.step_tokens = p.step_tokens;
  a.step_positions = p.step_positions;
  for (size_t s = 0; s < p.step_tokens.size(); ++s) {
    TokenId t = p.step_tokens[s];
    if (p.neuron()) {
      a.step_texts.push_back("layer " + std::to_string(p.neuron_layer) + " unit " +
                             std::to_string(p.neuron_unit));
    } else if (p.model->config().kind == ModelKind::kClassifier) {
      a.step_texts.push_back(t < 0 ? "" : p.model->config().labels[t]);
    } else {
      a.step_texts.push_back(t < 0 ? "" : tok.decode_piece(p.tokens[p.step_positions[s]], t));
    }
  }
  at::Tensor sc =
      (scores.to(at::kDouble).reshape({p.n_steps(), p.n_features()}) * p.visible().to(at::kDouble))
          .contiguous();
  a.scores.assign(sc.data_ptr<double>(), sc.data_ptr<double>() + sc.numel());
  auto [fx, fb] = endpoint_values(p);
  const at::Tensor fxd = fx.to(at::kDouble).contiguous(), fbd = fb.to(at::kDouble).contiguous();
  a.target_values.assign(fxd.data_ptr<double>(), fxd.data_ptr<double>() + p.n_steps());
  a.baseline_values.assign(fbd.data_ptr<double>(), fbd.data_ptr<double>() + p.n_steps());
  a.elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  a.forward_passes = forward_positions / static_cast<double>(p.length());
  a.warnings = saturation_warnings(a);
  if (p.neuron()) {
    a.extra["neuron"] = {{"layer", p.neuron_layer},
                         {"position", p.step_positions[0]},
                         {"unit", p.neuron_unit}};
  }
  return a;
}

}  // namespace candor::explain

namespace candor {

TokenId parse_class(const Model& model, const std::string& label) {
  const ModelConfig& c = model.config();
  if (c.kind != ModelKind::kClassifier) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "the " + c.architecture + " model is not a classifier: it has no class '" + label + "'",
        "classes are explained on sequence-classification models");
  }
  std::string names;
  for (size_t i = 0; i < c.labels.size(); ++i) {
    if (c.labels[i] == label) return static_cast<TokenId>(i);
    names += (i ? ", " : "") + c.labels[i];
  }
  std::string digits = !label.empty() && label[0] == '#' ? label.substr(1) : label;
  if (!digits.empty() && digits.size() < 7 &&
      std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    int64_t id = std::stoll(digits);
    if (id < static_cast<int64_t>(c.labels.size())) return static_cast<TokenId>(id);
  }
  throw Error(
      ErrorCode::kInvalidArgument, "'" + label + "' is not a class of the model",
      "classes: " + names + " (or their indices 0.." + std::to_string(c.labels.size() - 1) + ")");
}

}  // namespace candor
