// BERT / RoBERTa / DistilBERT sequence classifiers: embeddings (token + position + type, then
// LayerNorm), post-LayerNorm encoder blocks, a head on the first real token.
#include "candor/encoder.h"

#include <cmath>
#include <limits>

#include "candor/error.h"
#include "models/activation.h"
#include "models/compute_dtype.h"
#include "models/formats/tensor_source.h"

namespace candor {

EncoderClassifier::EncoderClassifier(ModelConfig config, EncoderSettings settings,
                                     EncoderWeights weights, std::shared_ptr<Tokenizer> tokenizer)
    : config_(std::move(config)),
      settings_(settings),
      weights_(std::move(weights)),
      tokenizer_(std::move(tokenizer)) {
  const at::ScalarType requested = parse_compute_dtype(config_.compute_dtype);
  config_.compute_dtype = "f32";
  if (requested != at::kFloat) set_compute_dtype(requested);
}

std::vector<std::pair<std::string, at::Tensor>> EncoderClassifier::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    if (t.defined()) out.emplace_back(name, t);
  };
  const EncoderWeights& w = weights_;
  add("tok_embeddings", w.tok_embeddings);
  add("pos_embeddings", w.pos_embeddings);
  add("type_embeddings", w.type_embeddings);
  add("emb_norm", w.emb_norm);
  add("emb_norm_bias", w.emb_norm_bias);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const auto& L = w.layers[l];
    std::string p = "layers." + std::to_string(l) + ".";
    add(p + "wqkv", L.wqkv);
    add(p + "bqkv", L.bqkv);
    add(p + "wo", L.wo);
    add(p + "bo", L.bo);
    add(p + "attn_norm", L.attn_norm);
    add(p + "attn_norm_bias", L.attn_norm_bias);
    add(p + "w1", L.w1);
    add(p + "b1", L.b1);
    add(p + "w2", L.w2);
    add(p + "b2", L.b2);
    add(p + "ffn_norm", L.ffn_norm);
    add(p + "ffn_norm_bias", L.ffn_norm_bias);
  }
  add("pool_w", w.pool_w);
  add("pool_b", w.pool_b);
  add("cls_w", w.cls_w);
  add("cls_b", w.cls_b);
  return out;
}

at::Tensor EncoderClassifier::embed(const at::Tensor& tokens) const {
  if (tokens.scalar_type() != at::kLong && tokens.scalar_type() != at::kInt) {
    throw Error(ErrorCode::kInvalidArgument, "token ids must be an integer tensor");
  }
  if (tokens.numel() > 0) {
    int64_t lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size) {
      throw Error(ErrorCode::kInvalidArgument, "token id " + std::to_string(lo < 0 ? lo : hi) +
                                                   " is outside the vocabulary of " +
                                                   std::to_string(config_.vocab_size) + " tokens");
    }
  }
  return at::embedding(weights_.tok_embeddings, tokens.to(at::kLong)).to(at::kFloat);
}

void EncoderClassifier::set_compute_dtype(at::ScalarType type) {
  if (type == dtype_) return;
  check_compute_dtype(type);
  auto conv = [&](at::Tensor& w) {
    if (w.defined()) w = w.to(type).contiguous();
  };
  for (at::Tensor* w : {&weights_.tok_embeddings, &weights_.pos_embeddings,
                        &weights_.type_embeddings, &weights_.emb_norm, &weights_.emb_norm_bias,
                        &weights_.pool_w, &weights_.pool_b, &weights_.cls_w, &weights_.cls_b})
    conv(*w);
  for (EncoderLayerWeights& L : weights_.layers) {
    for (at::Tensor* w : {&L.wqkv, &L.bqkv, &L.wo, &L.bo, &L.attn_norm, &L.attn_norm_bias, &L.w1,
                          &L.b1, &L.w2, &L.b2, &L.ffn_norm, &L.ffn_norm_bias})
      conv(*w);
  }
  dtype_ = type;
  config_.compute_dtype = compute_dtype_name(type);
}

at::Tensor EncoderClassifier::layer_norm(const at::Tensor& x, const at::Tensor& w,
                                         const at::Tensor& b) const {
  if (dtype_ == at::kFloat) return at::layer_norm(x, {config_.dim}, w, b, config_.norm_eps);
  return at::layer_norm(x.to(at::kFloat), {config_.dim}, w.to(at::kFloat), b.to(at::kFloat),
                        config_.norm_eps)
      .to(dtype_);
}

at::Tensor EncoderClassifier::unembed(const at::Tensor&, bool) const {
  throw Error(ErrorCode::kUnsupported,
              "the " + config_.architecture + " classifier has no unembedding (logit lens)",
              "the logit lens needs a language model; use an attribution method");
}

KVCache EncoderClassifier::new_cache(int64_t, int64_t) const {
  throw Error(ErrorCode::kUnsupported,
              "the " + config_.architecture + " classifier is bidirectional and keeps no KV cache",
              "run whole sequences (Model::is_causal() is false)");
}

at::Tensor EncoderClassifier::forward(const ForwardArgs& args) const {
  const ModelConfig& c = config_;
  if (args.cache) {
    throw Error(ErrorCode::kUnsupported,
                "the " + c.architecture + " classifier is bidirectional: forward() takes no cache",
                "run whole sequences (Model::is_causal() is false)");
  }
  if (args.start_layer != 0) {
    throw Error(ErrorCode::kUnsupported,
                "the " + c.architecture + " classifier cannot start a pass at a layer",
                "layer attribution runs on causal language models (Llama family, GPT-2)");
  }
  at::Tensor x;  // [B, T, D]
  if (args.embeddings.defined()) {
    if (args.embeddings.dim() != 3 || args.embeddings.size(2) != c.dim) {
      throw Error(ErrorCode::kInvalidArgument, "input embeddings must have shape [batch, seq, " +
                                                   std::to_string(c.dim) + "], got " +
                                                   shape_string(args.embeddings.sizes().vec()));
    }
    x = args.embeddings.to(dtype_);
  } else if (args.tokens.defined()) {
    if (args.tokens.dim() != 2) {
      throw Error(ErrorCode::kInvalidArgument, "token ids must have shape [batch, seq], got " +
                                                   shape_string(args.tokens.sizes().vec()));
    }
    x = embed(args.tokens).to(dtype_);
  } else {
    throw Error(ErrorCode::kInvalidArgument, "forward() needs tokens or embeddings");
  }
  const int64_t B = x.size(0), T = x.size(1), D = c.dim;
  if (T == 0) throw Error(ErrorCode::kInvalidArgument, "forward() got an empty sequence");
  if (T + settings_.position_offset > weights_.pos_embeddings.size(0)) {
    throw Error(ErrorCode::kResourceExhausted,
                "sequence of " + std::to_string(T) + " tokens exceeds the model's context of " +
                    std::to_string(c.max_seq_len),
                "shorten the input");
  }
  at::Tensor mask;  // [B, T] bool
  if (args.attention_mask.defined()) {
    if (args.attention_mask.dim() != 2 || args.attention_mask.size(0) != B ||
        args.attention_mask.size(1) != T) {
      throw Error(ErrorCode::kInvalidArgument, "attention mask must have shape [" +
                                                   std::to_string(B) + ", " + std::to_string(T) +
                                                   "], got " +
                                                   shape_string(args.attention_mask.sizes().vec()));
    }
    mask = args.attention_mask.to(at::kBool);
  } else {
    mask = at::ones({B, T}, at::kBool);
  }
  // Positions count the real tokens of each row (padding on either side).
  at::Tensor m = mask.to(at::kLong);
  at::Tensor positions = (m.cumsum(1) - m).clamp_max(c.max_seq_len - 1) + settings_.position_offset;
  x = x + at::embedding(weights_.pos_embeddings, positions);
  if (weights_.type_embeddings.defined()) x = x + weights_.type_embeddings[0];
  x = layer_norm(x, weights_.emb_norm, weights_.emb_norm_bias);

  const bool low = dtype_ != at::kFloat;  // low-precision compute: activations out as float32
  auto out_f32 = [&](const at::Tensor& t) { return low ? t.to(at::kFloat) : t; };
  Activations* cap = args.capture;
  const bool cap_att = cap && args.capture_options.attention;
  const bool cap_res = cap && args.capture_options.residual;
  if (cap) {
    cap->attention.clear();
    cap->residual.clear();
    if (cap_res) cap->embeddings = out_f32(x);
  }
  // Additive bias [B, 1, 1, T]: no real token attends to padding (a padding query sees itself).
  at::Tensor allowed = mask.view({B, 1, 1, T})
                           .logical_or(at::eye(T, at::kBool)
                                           .view({1, 1, T, T})
                                           .logical_and(mask.logical_not().view({B, 1, T, 1})));
  at::Tensor bias =
      at::zeros(allowed.sizes(), at::TensorOptions().dtype(dtype_))
          .masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  const int64_t H = c.n_heads, hd = c.head_dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (const EncoderLayerWeights& L : weights_.layers) {
    at::Tensor qkv = at::linear(x, L.wqkv, L.bqkv).view({B, T, 3, H, hd}).permute({2, 0, 3, 1, 4});
    at::Tensor scores = at::matmul(qkv[0], qkv[1].transpose(2, 3)).mul_(scale) + bias;
    at::Tensor att = low ? at::softmax(scores, -1, at::kFloat).to(dtype_)
                         : at::softmax(scores, -1);  // [B, H, T, T]
    if (cap_att) cap->attention.push_back(out_f32(att));
    at::Tensor o = at::matmul(att, qkv[2]).permute({0, 2, 1, 3}).reshape({B, T, D});
    x = layer_norm(x + at::linear(o, L.wo, L.bo), L.attn_norm, L.attn_norm_bias);
    at::Tensor f = at::linear(x, L.w1, L.b1);
    f = activate(c.activation, f);  // [B, T, F]
    x = layer_norm(x + at::linear(f, L.w2, L.b2), L.ffn_norm, L.ffn_norm_bias);
    if (cap_res) cap->residual.push_back(out_f32(x));
  }
  if (cap) cap->final_norm = out_f32(x);
  // The head reads the first real token of each row ([CLS] / <s>).
  at::Tensor first = mask.to(at::kLong).argmax(1);            // [B]
  at::Tensor h = x.index({at::arange(B, at::kLong), first});  // [B, D]
  at::Tensor pooled = at::linear(h, weights_.pool_w, weights_.pool_b);
  pooled = settings_.relu_head ? at::relu(pooled) : at::tanh(pooled);
  at::Tensor logits = out_f32(at::linear(pooled, weights_.cls_w, weights_.cls_b));  // [B, n_labels]
  int64_t P = T;
  if (args.last_only) {
    P = 1;
  } else if (args.output_positions.defined()) {
    P = args.output_positions.numel();
  }
  return logits.unsqueeze(1).expand({B, P, logits.size(1)}).contiguous();
}

std::unique_ptr<Model> EncoderClassifier::clone() const {
  auto copy = std::make_unique<EncoderClassifier>(*this);  // shares the tensors, then owns copies
  EncoderWeights& w = copy->weights_;
  auto own = [](at::Tensor& t) {
    if (t.defined()) t = t.detach().clone();
  };
  for (at::Tensor* t : {&w.tok_embeddings, &w.pos_embeddings, &w.type_embeddings, &w.emb_norm,
                        &w.emb_norm_bias, &w.pool_w, &w.pool_b, &w.cls_w, &w.cls_b})
    own(*t);
  for (EncoderLayerWeights& L : w.layers) {
    for (at::Tensor* t : {&L.wqkv, &L.bqkv, &L.wo, &L.bo, &L.attn_norm, &L.attn_norm_bias, &L.w1,
                          &L.b1, &L.w2, &L.b2, &L.ffn_norm, &L.ffn_norm_bias})
      own(*t);
  }
  return copy;
}

}  // namespace candor
