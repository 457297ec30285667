// The transformer text classifier: a BERT-layout encoder trained with KD or on labels, its spec
// parser, and its Hugging Face folder output. Its WordPiece vocabulary comes from
// train/tokenizers; as a distillation student it lives in distill/transformer_student.cpp.
#include "candor/text_transformer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "candor/error.h"
#include "candor/files.h"
#include "candor/tokenizer_trainers.h"
#include "candor/encoder.h"
#include "train/bound_options.h"
#include "train/init.h"

namespace candor::train {

namespace fs = std::filesystem;

namespace {

// The training-time forward pass of the encoder (the same arithmetic as EncoderClassifier's,
// plus dropout when `gen` is given). tokens, mask: [B, T]. Returns the class logits [B, C].
struct Net {
  ModelConfig c;
  EncoderWeights w;
  double dropout = 0;

  at::Tensor drop(const at::Tensor& x, at::Generator* gen) const {
    if (!gen || dropout <= 0) return x;
    const double keep = 1.0 - dropout;
    at::Tensor m = at::empty(x.sizes(), at::kFloat).bernoulli_(keep, *gen).div_(keep);
    return x * m;
  }

  at::Tensor logits(const at::Tensor& tokens, const at::Tensor& mask, at::Generator* gen) const {
    const int64_t B = tokens.size(0), T = tokens.size(1), D = c.dim, H = c.n_heads,
                  hd = c.head_dim();
    at::Tensor x = at::embedding(w.tok_embeddings, tokens) + w.pos_embeddings.narrow(0, 0, T) +
                   w.type_embeddings[0];  // [B, T, D]
    x = drop(at::layer_norm(x, {D}, w.emb_norm, w.emb_norm_bias, c.norm_eps), gen);
    at::Tensor bias = at::zeros({B, 1, 1, T}, at::kFloat)
                          .masked_fill_(mask.logical_not().view({B, 1, 1, T}),
                                        -std::numeric_limits<float>::infinity());
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    for (const EncoderLayerWeights& L : w.layers) {
      at::Tensor qkv =
          at::linear(x, L.wqkv, L.bqkv).view({B, T, 3, H, hd}).permute({2, 0, 3, 1, 4});
      at::Tensor att = at::softmax(at::matmul(qkv[0], qkv[1].transpose(2, 3)) * scale + bias, -1);
      at::Tensor o = at::matmul(drop(att, gen), qkv[2]).permute({0, 2, 1, 3}).reshape({B, T, D});
      x = at::layer_norm(x + drop(at::linear(o, L.wo, L.bo), gen), {D}, L.attn_norm,
                         L.attn_norm_bias, c.norm_eps);
      at::Tensor f = at::linear(at::gelu(at::linear(x, L.w1, L.b1)), L.w2, L.b2);
      x = at::layer_norm(x + drop(f, gen), {D}, L.ffn_norm, L.ffn_norm_bias, c.norm_eps);
    }
    at::Tensor pooled = at::tanh(at::linear(x.select(1, 0), w.pool_w, w.pool_b));  // [B, D]
    return at::linear(drop(pooled, gen), w.cls_w, w.cls_b);                        // [B, C]
  }
};

int argmax(const std::vector<double>& p) {
  return static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
}

}  // namespace

// ---- options -----------------------------------------------------------------------------------

namespace {

// The options of "transformer[:...]": the model's (TransformerOptions; a field the caller set
// stays unless given) and the training schedule's (TrainOptions; epochs, batch, lr and warm-up
// are the transformer's, small batches and a gentler peak rate than the MLP's; weight decay and
// clipping stay unless given).
struct TransformerFields {
  std::vector<BoundOption<TransformerOptions>> model;
  std::vector<BoundOption<TrainOptions>> training;
};

const TransformerFields& transformer_fields() {
  static const TransformerFields fields = [] {
    const TransformerOptions t;  // the model's defaults, written once there
    const TrainOptions o;        // the training loop's
    constexpr int64_t kMany = 100000000;
    auto if_given = [](OptionSpec spec, auto field) {
      return bind_option(std::move(spec), field, true);
    };
    auto always = [](OptionSpec spec, auto field) { return bind_option(std::move(spec), field); };
    TransformerFields f;
    f.model = {
        if_given(OptionSpec::integer("dim", t.dim, 1, kMany, "model width (a multiple of heads)"),
                 &TransformerOptions::dim),
        if_given(OptionSpec::integer("layers", t.layers, 1, kMany, "encoder blocks"),
                 &TransformerOptions::layers),
        if_given(OptionSpec::integer("heads", t.heads, 1, kMany, "attention heads"),
                 &TransformerOptions::heads),
        if_given(OptionSpec::integer("hidden", t.hidden, 1, kMany, "feed-forward width"),
                 &TransformerOptions::hidden),
        if_given(OptionSpec::integer("max_len", t.max_len, 2, kMany, "tokens per text with [CLS]"),
                 &TransformerOptions::max_len),
        if_given(
            OptionSpec::integer("vocab", t.vocab, 1, kMany, "WordPiece vocabulary size (at most)"),
            &TransformerOptions::vocab),
        if_given(OptionSpec::real("temperature", t.temperature, 1e-3, 1e3, "KD temperature T"),
                 &TransformerOptions::temperature),
        if_given(
            OptionSpec::real("alpha", t.alpha, 0, 1, "weight of the KD term (1 - alpha: labels)"),
            &TransformerOptions::alpha),
        if_given(OptionSpec::real("dropout", t.dropout, 0, 0.9, "dropout rate"),
                 &TransformerOptions::dropout)};
    f.training = {
        always(OptionSpec::integer("epochs", 10, 1, kMany, "epochs"), &TrainOptions::epochs),
        always(OptionSpec::integer("batch", 32, 1, kMany, "batch size"), &TrainOptions::batch_size),
        always(OptionSpec::real("lr", 1e-3, 1e-9, 10, "peak learning rate"),
               &TrainOptions::learning_rate),
        if_given(OptionSpec::real("weight_decay", o.weight_decay, 0, 10, "AdamW weight decay"),
                 &TrainOptions::weight_decay),
        always(OptionSpec::real("warmup", 0.1, 0, 1, "share of the steps warming up"),
               &TrainOptions::warmup_fraction),
        if_given(OptionSpec::real("clip", o.clip_norm, 0, 1e6, "gradient-norm clip (0: none)"),
                 &TrainOptions::clip_norm)};
    return f;
  }();
  return fields;
}

}  // namespace

OptionSpecs transformer_options() {
  OptionSpecs specs = declarations(transformer_fields().model);
  for (OptionSpec& s : declarations(transformer_fields().training)) specs.push_back(std::move(s));
  return specs;
}

void parse_transformer_spec(const std::string& spec, TransformerOptions* t, TrainOptions* o) {
  const auto [kind, given] = parse_spec(spec);
  if (kind != "transformer")
    throw Error(ErrorCode::kInvalidArgument, "'" + spec + "' is not a transformer student",
                "write transformer[:key=value,...]");
  const Options opts("student", kind, transformer_options(), given);
  apply_options(transformer_fields().model, opts, t);
  apply_options(transformer_fields().training, opts, o);
  if (t->dim % t->heads != 0)
    throw Error(ErrorCode::kInvalidArgument, "transformer student: dim " + std::to_string(t->dim) +
                                                 " is not a multiple of heads " +
                                                 std::to_string(t->heads));
  if (t->max_len < 2)
    throw Error(ErrorCode::kInvalidArgument, "transformer student: max_len must be at least 2");
}

// ---- the classifier
// ------------------------------------------------------------------------------

const std::vector<std::string>& TransformerClassifier::labels() const {
  return model_->config().labels;
}

std::vector<double> TransformerClassifier::predict_proba(const std::string& text) const {
  return predict_proba_batch({text})[0];
}

std::vector<std::vector<double>> TransformerClassifier::predict_proba_batch(
    const std::vector<std::string>& texts) const {
  const auto& enc = static_cast<const EncoderClassifier&>(*model_);
  Net net{enc.config(), enc.weights(), 0.0};
  auto ids = encode_for_classifier(model_->tokenizer(), texts, options_.max_len);
  return class_probabilities(
      ids, static_cast<int64_t>(labels().size()),
      [&](const at::Tensor& t, const at::Tensor& m) { return net.logits(t, m, nullptr); });
}

void TransformerClassifier::save(const std::string& dir) const {
  save_hf_folder(*model_, dir, "f32");
  write_file_atomic((fs::path(dir) / "tokenizer.json").string(), tokenizer_json_);
}

std::unique_ptr<TransformerClassifier> TransformerClassifier::train(
    const std::vector<std::string>& texts, const std::vector<std::vector<double>>& target,
    const std::vector<int>& hard, const std::vector<std::string>& classes,
    const TransformerOptions& t, const TrainOptions& o) {
  const int64_t n = static_cast<int64_t>(texts.size());
  const int64_t C = static_cast<int64_t>(classes.size());
  if (n == 0) throw Error(ErrorCode::kInvalidArgument, "the transformer student got no texts");
  if (C < 2) throw Error(ErrorCode::kInvalidArgument, "a classifier needs at least two classes");
  if (static_cast<int64_t>(target.size()) != n || (!hard.empty() && hard.size() != target.size()))
    throw Error(ErrorCode::kInvalidArgument, "the transformer student got " + std::to_string(n) +
                                                 " texts but " + std::to_string(target.size()) +
                                                 " targets and " + std::to_string(hard.size()) +
                                                 " labels");
  for (const auto& row : target)
    if (static_cast<int64_t>(row.size()) != C)
      throw Error(ErrorCode::kInvalidArgument,
                  "a target row does not have one probability per class");
  if (t.dim % t.heads != 0)
    throw Error(ErrorCode::kInvalidArgument, "transformer: dim is not a multiple of heads");
  auto m = std::unique_ptr<TransformerClassifier>(new TransformerClassifier());
  m->options_ = t;
  m->vocab_ = build_wordpiece_vocab(texts, t.vocab);
  m->tokenizer_json_ = wordpiece_tokenizer_json(m->vocab_);
  std::shared_ptr<Tokenizer> tok =
      make_hf_tokenizer(m->tokenizer_json_, "", "WordPiece vocabulary");
  const auto ids = encode_for_classifier(*tok, texts, t.max_len);

  ModelConfig c;
  c.architecture = "bert";
  c.source_format = "candor";
  c.kind = ModelKind::kClassifier;
  c.labels = classes;
  c.dim = t.dim;
  c.hidden_dim = t.hidden;
  c.n_layers = t.layers;
  c.n_heads = c.n_kv_heads = t.heads;
  c.vocab_size = static_cast<int64_t>(m->vocab_.size());
  c.max_seq_len = t.max_len;
  c.norm_eps = 1e-12f;
  c.norm = NormKind::kLayerNorm;
  c.positions = PositionKind::kLearned;
  c.activation = Activation::kGelu;
  c.attention_bias = true;
  c.tied_embeddings = false;
  const int64_t D = t.dim, F = t.hidden;
  std::mt19937_64 rng(o.seed);
  auto normal = [&](std::vector<int64_t> shape) {
    return init_normal(rng, std::move(shape), 0.02);
  };
  auto zeros = [](int64_t k) { return at::zeros({k}, at::kFloat); };
  auto ones = [](int64_t k) { return at::ones({k}, at::kFloat); };
  EncoderWeights w;
  w.tok_embeddings = normal({c.vocab_size, D});
  w.pos_embeddings = normal({t.max_len, D});
  w.type_embeddings = normal({1, D});
  w.emb_norm = ones(D);
  w.emb_norm_bias = zeros(D);
  for (int64_t l = 0; l < t.layers; ++l) {
    EncoderLayerWeights L;
    L.wqkv = normal({3 * D, D});
    L.bqkv = zeros(3 * D);
    L.wo = normal({D, D});
    L.bo = zeros(D);
    L.attn_norm = ones(D);
    L.attn_norm_bias = zeros(D);
    L.w1 = normal({F, D});
    L.b1 = zeros(F);
    L.w2 = normal({D, F});
    L.b2 = zeros(D);
    L.ffn_norm = ones(D);
    L.ffn_norm_bias = zeros(D);
    w.layers.push_back(L);
  }
  w.pool_w = normal({D, D});
  w.pool_b = zeros(D);
  w.cls_w = normal({C, D});
  w.cls_b = zeros(C);
  auto model = std::make_shared<EncoderClassifier>(c, EncoderSettings(), w, tok);
  for (const auto& [name, p] : model->named_parameters()) m->params_.push_back(p);
  m->model_ = model;

  // Targets: the softened teacher distribution and the hard class of every row.
  const double T = t.temperature;
  at::Tensor soft = at::empty({n, C}, at::kFloat);
  std::vector<int64_t> hard_ids(static_cast<size_t>(n));
  {
    float* sp = soft.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      std::vector<double> lg(C);
      double mx = -1e300, z = 0;
      for (int64_t k = 0; k < C; ++k) {
        lg[k] = std::log(std::max(target[i][k], 1e-12)) / T;
        mx = std::max(mx, lg[k]);
      }
      for (int64_t k = 0; k < C; ++k) z += std::exp(lg[k] - mx);
      for (int64_t k = 0; k < C; ++k) sp[i * C + k] = static_cast<float>(std::exp(lg[k] - mx) / z);
      const int h = hard.empty() ? -1 : hard[i];
      if (h >= C)
        throw Error(ErrorCode::kInvalidArgument, "hard label " + std::to_string(h) +
                                                     " is not one of the " + std::to_string(C) +
                                                     " classes");
      hard_ids[i] = h >= 0 ? h : argmax(target[i]);
    }
  }
  at::Tensor hard_t = at::tensor(hard_ids, at::kLong);
  at::Tensor soft_log = soft.clamp_min(1e-12).log();
  Net net{c, w, t.dropout};
  const double alpha = t.alpha;
  const uint64_t seed = o.seed;

  // Fidelity during training: agreement with the targets on (at most) 512 training rows.
  std::vector<size_t> probe;
  for (size_t i = 0; i < ids.size() && probe.size() < 512; ++i) probe.push_back(i);
  auto probe_agreement = [&]() {
    std::vector<std::vector<int32_t>> pid;
    for (size_t i : probe) pid.push_back(ids[i]);
    Net eval{c, w, 0.0};
    std::vector<std::vector<double>> p = class_probabilities(
        pid, C,
        [&](const at::Tensor& a, const at::Tensor& b) { return eval.logits(a, b, nullptr); });
    size_t ok = 0;
    for (size_t j = 0; j < probe.size(); ++j) ok += argmax(p[j]) == argmax(target[probe[j]]);
    return double(ok) / double(probe.size());
  };
  TrainOptions opts = o;
  const int64_t per_epoch = (n + o.batch_size - 1) / o.batch_size;
  double epoch_sum = 0;
  int64_t epoch_steps = 0;
  opts.progress = [&](const TrainProgress& p) {
    TrainProgress q = p;
    epoch_sum += p.loss;
    ++epoch_steps;
    if (p.step % per_epoch == 0 || p.step == p.total_steps) {
      m->epoch_losses_.push_back(epoch_sum / double(epoch_steps));
      epoch_sum = 0;
      epoch_steps = 0;
      q.fidelity = probe_agreement();
    }
    return o.progress ? o.progress(q) : true;
  };
  train_loop(
      m->params_, n,
      [&](const std::vector<int64_t>& batch) {
        std::vector<const std::vector<int32_t>*> rows;
        uint64_t h = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
        for (int64_t i : batch) {
          rows.push_back(&ids[static_cast<size_t>(i)]);
          h = (h ^ static_cast<uint64_t>(i)) * 0x100000001B3ull;  // dropout masks: a function of
        }                                                         // the seed and the batch only
        auto [tok_t, mask] = pad_token_rows(rows);
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(h);
        at::Tensor lg = net.logits(tok_t, mask, t.dropout > 0 ? &gen : nullptr);  // [B, C]
        at::Tensor idx = at::tensor(batch, at::kLong);
        at::Tensor loss = at::zeros({}, at::kFloat);
        if (alpha > 0) {
          at::Tensor ls = at::log_softmax(lg / T, -1);
          at::Tensor st = soft.index_select(0, idx);
          at::Tensor kl = (st * (soft_log.index_select(0, idx) - ls)).sum(-1).mean();
          loss = loss + kl * (alpha * T * T);
        }
        if (alpha < 1)
          loss = loss + at::cross_entropy_loss(lg, hard_t.index_select(0, idx)) * (1 - alpha);
        return loss;
      },
      opts);
  return m;
}

}  // namespace candor::train
