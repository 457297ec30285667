// Llama-architecture forward pass over padded batches, from tokens or input embeddings, with an
// optional KV cache and activation capture.
#include "models/llama.h"

#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "candor/error.h"
#include "candor/stored_weights.h"
#include "models/activation.h"
#include "models/compute_dtype.h"
#include "models/formats/gguf.h"
#include "models/formats/tensor_source.h"
#include "models/fused/fused_backward.h"
#include "models/fused/fused_llama.h"
#include "models/fused/pool.h"

namespace candor {
namespace {

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

void validate_llama_config(const ModelConfig& c, const std::string& source) {
  auto bad = [&](const std::string& what) {
    throw Error(ErrorCode::kInvalidArgument, source + ": invalid model header: " + what,
                "the file is not a model candor can read, or it is corrupt");
  };
  const int64_t kMax = int64_t{1} << 24;
  auto check_range = [&](const char* name, int64_t v) {
    if (v <= 0 || v > kMax) bad(std::string(name) + " = " + std::to_string(v));
  };
  check_range("dim", c.dim);
  check_range("hidden_dim", c.hidden_dim);
  check_range("n_layers", c.n_layers);
  check_range("n_heads", c.n_heads);
  check_range("n_kv_heads", c.n_kv_heads);
  check_range("vocab_size", c.vocab_size);
  check_range("max_seq_len", c.max_seq_len);
  if (c.dim % c.n_heads != 0) bad("dim " + std::to_string(c.dim) + " is not a multiple of n_heads");
  if (c.n_heads % c.n_kv_heads != 0) bad("n_heads is not a multiple of n_kv_heads");
  if (c.positions == PositionKind::kRotary && c.head_dim() % 2 != 0) bad("head dimension is odd");
  if (c.rope_scaling != "none" && c.rope_scaling != "linear" && c.rope_scaling != "llama3")
    bad("unknown rope scaling '" + c.rope_scaling + "'");
  if (c.rope_scaling != "none" && !(c.rope_scaling_factor > 0)) bad("rope scaling factor <= 0");
  if (c.sliding_window < 0) bad("sliding_window = " + std::to_string(c.sliding_window));
  if (!c.windowed_layers.empty() && static_cast<int64_t>(c.windowed_layers.size()) != c.n_layers)
    bad("windowed_layers lists " + std::to_string(c.windowed_layers.size()) + " layers, not " +
        std::to_string(c.n_layers));
}

at::Tensor rotate_half_to_interleaved(const at::Tensor& w, int64_t n_heads) {
  std::vector<int64_t> rest(w.sizes().begin() + 1, w.sizes().end());
  const int64_t hd = w.size(0) / n_heads;
  std::vector<int64_t> shape = {n_heads, 2, hd / 2};
  shape.insert(shape.end(), rest.begin(), rest.end());
  return w.reshape(shape).transpose(1, 2).contiguous().reshape(w.sizes());
}

at::Tensor interleaved_to_rotate_half(const at::Tensor& w, int64_t n_heads) {
  std::vector<int64_t> rest(w.sizes().begin() + 1, w.sizes().end());
  const int64_t hd = w.size(0) / n_heads;
  std::vector<int64_t> shape = {n_heads, hd / 2, 2};
  shape.insert(shape.end(), rest.begin(), rest.end());
  return w.reshape(shape).transpose(1, 2).contiguous().reshape(w.sizes());
}

LlamaModel::LlamaModel(ModelConfig config, LlamaWeights weights,
                       std::shared_ptr<Tokenizer> tokenizer)
    : config_(std::move(config)), weights_(std::move(weights)), tokenizer_(std::move(tokenizer)) {
  const at::ScalarType requested = parse_compute_dtype(config_.compute_dtype);
  config_.compute_dtype = "f32";
  if (requested != at::kFloat) set_compute_dtype(requested);
  fused_unsupported_ = fused::llama_unsupported(config_, weights_, dtype_);
  if (weights_.quant && !fused_unsupported_.empty()) {  // only the libtorch path runs
    dense_weights();
    weights_.quant.reset();
  }
  if (config_.positions != PositionKind::kRotary) return;
  // Rotary table, computed in double then rounded once: frequency j = theta^(-2j / head_dim),
  // rescaled by the rope scaling rule.
  const int64_t half = config_.head_dim() / 2;
  constexpr double kPi = 3.14159265358979323846;
  auto scaled = [&](double freq) {
    const double factor = config_.rope_scaling_factor;
    if (config_.rope_scaling == "linear") return freq / factor;
    if (config_.rope_scaling != "llama3") return freq;
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, a smooth blend between.
    const double old_ctx = static_cast<double>(config_.rope_original_max_seq_len);
    const double low = config_.rope_low_freq_factor, high = config_.rope_high_freq_factor;
    const double wavelen = 2 * kPi / freq;
    if (wavelen < old_ctx / high) return freq;
    if (wavelen > old_ctx / low) return freq / factor;
    const double smooth = (old_ctx / wavelen - low) / (high - low);
    return (1 - smooth) * freq / factor + smooth * freq;
  };
  std::vector<float> re(config_.max_seq_len * half), im(config_.max_seq_len * half);
  for (int64_t p = 0; p < config_.max_seq_len; ++p) {
    for (int64_t j = 0; j < half; ++j) {
      double freq =
          scaled(std::pow(static_cast<double>(config_.rope_theta),
                          -static_cast<double>(2 * j) / static_cast<double>(config_.head_dim())));
      double angle = static_cast<double>(p) * freq;
      re[p * half + j] = static_cast<float>(std::cos(angle));
      im[p * half + j] = static_cast<float>(std::sin(angle));
    }
  }
  at::Tensor r = at::from_blob(re.data(), {config_.max_seq_len, half}, at::kFloat);
  at::Tensor i = at::from_blob(im.data(), {config_.max_seq_len, half}, at::kFloat);
  rope_ = at::complex(r, i).clone();
}

bool QuantWeights::any() const {
  if (!tok_embeddings.empty() || !output.empty()) return true;
  for (const QuantLayerWeights& L : layers) {
    if (!L.wqkv.empty() || !L.wo.empty() || !L.w13.empty() || !L.w2.empty()) return true;
  }
  return false;
}

size_t QuantWeights::bytes() const {
  size_t b = tok_embeddings.bytes();
  if (output.empty() || output.parts.front().data != tok_embeddings.parts.front().data)
    b += output.bytes();
  for (const QuantLayerWeights& L : layers) b += L.wqkv.bytes() + L.wo.bytes() + L.w13.bytes() + L.w2.bytes();
  return b;
}

std::string QuantWeights::type_summary() const {
  std::set<std::string> kinds;
  auto add = [&](const fused::QuantMatrix& m) {
    if (m.empty()) return;
    std::string s = m.type_summary();
    for (size_t i = 0, j; i <= s.size(); i = j + 1) {
      j = s.find('+', i);
      if (j == std::string::npos) j = s.size();
      kinds.insert(s.substr(i, j - i));
    }
  };
  add(tok_embeddings);
  add(output);
  for (const QuantLayerWeights& L : layers) {
    for (const fused::QuantMatrix* m : {&L.wqkv, &L.wo, &L.w13, &L.w2}) add(*m);
  }
  std::string s;
  for (const std::string& k : kinds) s += (s.empty() ? "" : "+") + k;
  return s;
}

const LlamaWeights& LlamaModel::dense_weights() const {
  if (!weights_.quant || dense_.done.load(std::memory_order_acquire)) return weights_;
  std::lock_guard<std::mutex> lock(*dense_.mutex);
  if (dense_.done.load(std::memory_order_relaxed)) return weights_;
  auto fill = [](at::Tensor& t, const fused::QuantMatrix& m) {
    if (m.empty() || t.defined()) return;
    t = empty_weight({m.rows, m.cols});
    fused::dequantize_rows(m, 0, m.rows, t.data_ptr<float>());
  };
  const QuantWeights& q = *weights_.quant;
  const bool tied = !q.output.empty() && !q.tok_embeddings.empty() &&
                    q.output.parts.front().data == q.tok_embeddings.parts.front().data;
  fill(weights_.tok_embeddings, q.tok_embeddings);
  if (tied)
    weights_.output = weights_.tok_embeddings;
  else
    fill(weights_.output, q.output);
  for (size_t l = 0; l < q.layers.size() && l < weights_.layers.size(); ++l) {
    LlamaLayerWeights& L = weights_.layers[l];
    const QuantLayerWeights& Q = q.layers[l];
    fill(L.wqkv, Q.wqkv);
    fill(L.wo, Q.wo);
    fill(L.w13, Q.w13);
    fill(L.w2, Q.w2);
  }
  dense_.done.store(true, std::memory_order_release);
  return weights_;
}

void LlamaModel::set_compute_dtype(at::ScalarType type) {
  if (type != at::kFloat && type != at::kBFloat16 && type != at::kHalf) {
    throw Error(ErrorCode::kInvalidArgument,
                "compute dtype " + compute_dtype_name(type) + " is not a floating-point type");
  }
  if (type == dtype_) return;
  check_compute_dtype(type);
  if (weights_.quant) {  // another compute dtype: every weight a tensor, as before
    dense_weights();
    weights_.quant.reset();
  }
  const bool tied = weights_.output.defined() && weights_.tok_embeddings.defined() &&
                    weights_.output.data_ptr() == weights_.tok_embeddings.data_ptr();
  // One tensor at a time, so the old copy of each is freed before the next is converted.
  auto conv = [&](at::Tensor& w) {
    if (w.defined()) w = w.to(type).contiguous();
  };
  conv(weights_.tok_embeddings);
  conv(weights_.pos_embeddings);
  for (LlamaLayerWeights& L : weights_.layers) {
    for (at::Tensor* w : {&L.attn_norm, &L.wqkv, &L.wo, &L.ffn_norm, &L.w13, &L.w2,
                          &L.attn_norm_bias, &L.bqkv, &L.bo, &L.ffn_norm_bias, &L.b13, &L.b2})
      conv(*w);
  }
  conv(weights_.final_norm);
  conv(weights_.final_norm_bias);
  if (tied) {
    weights_.output = weights_.tok_embeddings;
  } else {
    conv(weights_.output);
  }
  dtype_ = type;
  config_.compute_dtype = compute_dtype_name(type);
  fused_unsupported_ = fused::llama_unsupported(config_, weights_, dtype_);
}

namespace {

// The fused kernels' threads, for forward_path (what `candor info` shows).
std::string kernel_threads_text() {
  const int n = fused::kernel_threads();
  if (n <= 1) return "1 kernel thread";
  return std::to_string(n) + " kernel threads in candor's pool (OpenBLAS on one thread inside it)";
}

}  // namespace

std::string LlamaModel::forward_path() const {
  std::string kept;
  if (weights_.quant) {
    kept = "; weights kept " + weights_.quant->type_summary() + " (" +
           (weights_.quant->bytes() >= (size_t{1} << 20)
                ? std::to_string(weights_.quant->bytes() >> 20) + " MiB"
                : std::to_string(weights_.quant->bytes() >> 10) + " KiB") +
           "), dequantised on the fly";
    if (dense_.done) kept += ", and as float32 for the libtorch path";
  }
  if (fused_unsupported_.empty())
    return "fused (candor kernels) without gradients and for gradients to the input embeddings, "
           "libtorch for other gradients" +
           kept + "; " + kernel_threads_text();
  return "libtorch (the fused path does not apply: " + fused_unsupported_ + ")";
}

namespace {

// Calls f(tensor or undefined, kept matrix or null) for every weight, tied matrices once.
template <typename F>
void each_weight(const LlamaWeights& w, bool tied, F&& f) {
  const QuantWeights* q = w.quant.get();
  auto one = [&](const at::Tensor& t, const fused::QuantMatrix* m) {
    f(t, m && !m->empty() ? m : nullptr);
  };
  one(w.tok_embeddings, q ? &q->tok_embeddings : nullptr);
  one(w.pos_embeddings, nullptr);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LlamaLayerWeights& L = w.layers[l];
    const QuantLayerWeights* Q = q && l < q->layers.size() ? &q->layers[l] : nullptr;
    for (const at::Tensor* t : {&L.attn_norm, &L.attn_norm_bias, &L.bqkv, &L.bo, &L.ffn_norm,
                                &L.ffn_norm_bias, &L.b13, &L.b2})
      one(*t, nullptr);
    one(L.wqkv, Q ? &Q->wqkv : nullptr);
    one(L.wo, Q ? &Q->wo : nullptr);
    one(L.w13, Q ? &Q->w13 : nullptr);
    one(L.w2, Q ? &Q->w2 : nullptr);
  }
  one(w.final_norm, nullptr);
  one(w.final_norm_bias, nullptr);
  if (!tied) one(w.output, q ? &q->output : nullptr);
}

}  // namespace

int64_t LlamaModel::n_params() const {
  if (!weights_.quant) return Model::n_params();
  int64_t n = 0;
  each_weight(weights_, config_.tied_embeddings, [&](const at::Tensor& t, const fused::QuantMatrix* m) {
    n += m ? m->rows * m->cols : t.defined() ? t.numel() : 0;
  });
  return n;
}

std::vector<std::pair<std::string, at::Tensor>> LlamaModel::named_parameters() const {
  dense_weights();
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    if (t.defined()) out.emplace_back(name, t);
  };
  add("tok_embeddings", weights_.tok_embeddings);
  add("pos_embeddings", weights_.pos_embeddings);
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const auto& L = weights_.layers[l];
    std::string p = "layers." + std::to_string(l) + ".";
    add(p + "attn_norm", L.attn_norm);
    add(p + "attn_norm_bias", L.attn_norm_bias);
    add(p + "wqkv", L.wqkv);
    add(p + "bqkv", L.bqkv);
    add(p + "wo", L.wo);
    add(p + "bo", L.bo);
    add(p + "ffn_norm", L.ffn_norm);
    add(p + "ffn_norm_bias", L.ffn_norm_bias);
    add(p + "w13", L.w13);
    add(p + "b13", L.b13);
    add(p + "w2", L.w2);
    add(p + "b2", L.b2);
  }
  add("final_norm", weights_.final_norm);
  add("final_norm_bias", weights_.final_norm_bias);
  if (!config_.tied_embeddings) out.emplace_back("output", weights_.output);
  return out;
}

std::unique_ptr<Model> LlamaModel::clone() const {
  auto copy = std::make_unique<LlamaModel>(*this);  // shares the tensors, then owns copies
  LlamaWeights& w = copy->weights_;
  auto own = [](at::Tensor& t) {
    if (t.defined()) t = t.detach().clone();
  };
  const bool tied = weights_.output.defined() && weights_.output.is_same(weights_.tok_embeddings);
  own(w.tok_embeddings);
  own(w.pos_embeddings);
  for (LlamaLayerWeights& L : w.layers) {
    for (at::Tensor* t : {&L.attn_norm, &L.wqkv, &L.wo, &L.ffn_norm, &L.w13, &L.w2,
                          &L.attn_norm_bias, &L.bqkv, &L.bo, &L.ffn_norm_bias, &L.b13, &L.b2})
      own(*t);
  }
  own(w.final_norm);
  own(w.final_norm_bias);
  if (tied)
    w.output = w.tok_embeddings;  // one tensor, as in the original
  else
    own(w.output);
  if (w.quant) {  // a copy is for changing its tensors: every weight a tensor, no blocks left
    copy->dense_weights();
    copy->weights_.quant.reset();
    copy->fused_unsupported_ = fused::llama_unsupported(copy->config_, w, copy->dtype_);
  }
  return copy;
}

at::Tensor LlamaModel::norm(const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias) const {
  if (x.scalar_type() != at::kFloat) {  // low-precision compute: normalise in float
    const at::Tensor b = bias.defined() ? bias.to(at::kFloat) : bias;
    return norm(x.to(at::kFloat), weight.to(at::kFloat), b).to(x.scalar_type());
  }
  if (config_.norm == NormKind::kLayerNorm)
    return at::layer_norm(x, {config_.dim}, weight, bias, config_.norm_eps);
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + config_.norm_eps) * weight;
}

at::Tensor LlamaModel::embed(const at::Tensor& tokens) const {
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
  if (weights_.quant && !weights_.quant->tok_embeddings.empty() && !dense_.done) {
    // Kept quantized: the rows dequantised.
    const at::Tensor ids = tokens.to(at::kLong).contiguous();
    std::vector<int64_t> shape(ids.sizes().begin(), ids.sizes().end());
    shape.push_back(config_.dim);
    at::Tensor out = at::empty(shape, at::kFloat);
    fused::gather_rows(weights_.quant->tok_embeddings, ids.data_ptr<int64_t>(), ids.numel(),
                       out.data_ptr<float>());
    return out;
  }
  return at::embedding(dense_weights().tok_embeddings, tokens.to(at::kLong)).to(at::kFloat);
}

at::Tensor LlamaModel::unembed(const at::Tensor& hidden, bool apply_norm) const {
  const at::Tensor x = hidden.to(dtype_);
  at::Tensor h = apply_norm ? norm(x, weights_.final_norm, weights_.final_norm_bias) : x;
  return at::linear(h, dense_weights().output).to(at::kFloat);
}

KVCache LlamaModel::new_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  cache.init(config_.n_layers, batch, config_.n_kv_heads, capacity > 0 ? capacity : 64,
             config_.head_dim(), dtype_);
  return cache;
}

namespace {

// A fused forward's tape and the model whose weights its backward reads.
class FusedTape : public GradientTape {
 public:
  FusedTape(const ModelConfig* config, const LlamaWeights* weights)
      : config_(config), weights_(weights) {}
  at::Tensor backward(const at::Tensor& dlogits) const override {
    at::NoGradGuard no_grad;
    return fused::llama_backward(*config_, *weights_, tape, dlogits);
  }
  fused::Tape tape;

 private:
  const ModelConfig* config_;
  const LlamaWeights* weights_;
};

}  // namespace

std::string LlamaModel::gradient_path() const {
  if (fused_unsupported_.empty()) return "fused (candor's hand-written backward)";
  return "libtorch autograd (the fused path does not apply: " + fused_unsupported_ + ")";
}

std::unique_ptr<GradientTape> LlamaModel::forward_with_tape(const ForwardArgs& args,
                                                            at::Tensor* logits) const {
  if (!fused_unsupported_.empty() || args.libtorch_path || args.capture || args.cache ||
      !args.embeddings.defined())
    return nullptr;
  at::NoGradGuard no_grad;
  // Forward and backward both read kept quantized blocks as they are (no float32 copy).
  auto out = std::make_unique<FusedTape>(&config_, &weights_);
  *logits = run(args, &out->tape);
  if (!out->tape.ready()) return nullptr;  // the fused path did not run
  return out;
}

at::Tensor LlamaModel::forward(const ForwardArgs& args) const { return run(args, nullptr); }

at::Tensor LlamaModel::run(const ForwardArgs& args, fused::Tape* tape) const {
  const ModelConfig& c = config_;
  at::Tensor x;  // [B, T, D]
  if (args.embeddings.defined()) {
    if (args.embeddings.dim() != 3 || args.embeddings.size(2) != c.dim) {
      throw Error(ErrorCode::kInvalidArgument, "input embeddings must have shape [batch, seq, " +
                                                   std::to_string(c.dim) + "], got " +
                                                   shape_str(args.embeddings));
    }
    x = args.embeddings.to(dtype_);
  } else if (args.tokens.defined()) {
    if (args.tokens.dim() != 2) {
      throw Error(ErrorCode::kInvalidArgument,
                  "token ids must have shape [batch, seq], got " + shape_str(args.tokens));
    }
    x = embed(args.tokens).to(dtype_);
  } else {
    throw Error(ErrorCode::kInvalidArgument, "forward() needs tokens or embeddings");
  }
  const int64_t B = x.size(0), T = x.size(1);
  if (T == 0) throw Error(ErrorCode::kInvalidArgument, "forward() got an empty sequence");
  const int64_t first = args.start_layer;  // layer the input enters at (layer attribution)
  if (first < 0 || first > c.n_layers || (first > 0 && !args.embeddings.defined())) {
    throw Error(ErrorCode::kInvalidArgument,
                "start_layer " + std::to_string(first) + " is not in [0, " +
                    std::to_string(c.n_layers) + "] or comes without embeddings",
                "give the residual stream after layer start_layer - 1 as the embeddings");
  }

  at::Tensor mask;  // [B, T] bool
  if (args.attention_mask.defined()) {
    if (args.attention_mask.dim() != 2 || args.attention_mask.size(0) != B ||
        args.attention_mask.size(1) != T) {
      throw Error(ErrorCode::kInvalidArgument, "attention mask must have shape [" +
                                                   std::to_string(B) + ", " + std::to_string(T) +
                                                   "], got " + shape_str(args.attention_mask));
    }
    mask = args.attention_mask.to(at::kBool);
  }

  KVCache* cache = args.cache;
  int64_t past = 0;
  if (cache) {
    if (cache->batch() == 0) *cache = new_cache(B, T);
    if (cache->batch() != B) {
      throw Error(ErrorCode::kInvalidArgument, "KV cache holds " + std::to_string(cache->batch()) +
                                                   " rows but the input has " + std::to_string(B));
    }
    past = cache->length();
  }
  const int64_t S = past + T;  // keys visible to the new queries
  if (S > c.max_seq_len) {
    throw Error(ErrorCode::kResourceExhausted,
                "sequence of " + std::to_string(S) + " tokens exceeds the model's context of " +
                    std::to_string(c.max_seq_len),
                "shorten the input");
  }

  // Rotary positions count the real tokens of each row.
  at::Tensor positions;  // [B, T] int64
  if (mask.defined()) {
    at::Tensor m = mask.to(at::kLong);
    positions = m.cumsum(1) - m;
  } else {
    positions = at::arange(T, at::kLong).unsqueeze(0).expand({B, T});
  }
  if (cache) positions = positions + cache->next_position().unsqueeze(1);
  positions = positions.clamp(0, c.max_seq_len - 1);
  if (c.positions == PositionKind::kLearned && first == 0) {
    x = x + at::embedding(weights_.pos_embeddings, positions);
  }

  // Keys, values, mask and next positions of the new tokens recorded in the cache.
  auto record_in_cache = [&]() {
    if (!cache) return;
    cache->key_mask().narrow(1, past, T).copy_(mask.defined() ? mask : at::ones({B, T}, at::kBool));
    at::Tensor added = mask.defined() ? mask.sum(1).to(at::kLong) : at::full({B}, T, at::kLong);
    cache->next_position() = cache->next_position() + added;
    cache->set_length(S);
  };

  // The fused path, when no gradient is needed and nothing is captured.
  if (fused_unsupported_.empty() && !args.libtorch_path &&
      (tape || !at::GradMode::is_enabled()) &&
      !args.capture && x.scalar_type() == at::kFloat &&
      (!cache || fused::cache_usable(c, *cache))) {
    std::vector<int64_t> rows;
    if (args.last_only) {
      rows.push_back(T - 1);
    } else if (args.output_positions.defined()) {
      const at::Tensor op = args.output_positions.to(at::kLong).contiguous().view({-1});
      for (int64_t i = 0; i < op.numel(); ++i) {
        const int64_t r = op.data_ptr<int64_t>()[i];
        if (r < -T || r >= T) {
          throw Error(ErrorCode::kInvalidArgument, "output position " + std::to_string(r) +
                                                       " is outside a sequence of " +
                                                       std::to_string(T) + " tokens");
        }
        rows.push_back(r < 0 ? r + T : r);
      }
    } else {
      for (int64_t t = 0; t < T; ++t) rows.push_back(t);
    }
    if (cache) cache->reserve(T);
    const at::Tensor table = rope_.defined() ? at::view_as_real(rope_) : at::Tensor();
    at::Tensor logits =
        fused::llama_forward(c, weights_, x, mask, positions, table, cache, rows, tape, first);
    record_in_cache();
    return logits;
  }
  dense_weights();  // the libtorch path multiplies tensors: quantized matrices dequantised once
  // (Computed here, not before the fused path, which needs neither.)
  bool padded = mask.defined() && !mask.all().item<bool>();
  if (cache && past > 0)
    padded = padded || !cache->key_mask().narrow(1, 0, past).all().item<bool>();
  at::Tensor rope;  // [B, T, 1, hd/2] complex
  if (c.positions == PositionKind::kRotary) rope = rope_.index({positions}).unsqueeze(2);

  // Sliding-window attention: the window only matters when a key can be `window` or more
  // tokens behind a query, i.e. when more than `window` positions are visible. Layers may
  // differ (Qwen2 windows only some): one bias for the windowed layers, one for the others.
  auto layer_windowed = [&](int64_t l) {
    const int64_t w = c.window_of(l);
    return w > 0 && S > w;
  };
  bool any_windowed = false, any_full = false;
  for (int64_t l = 0; l < c.n_layers; ++l) (layer_windowed(l) ? any_windowed : any_full) = true;

  // Additive attention bias [B or 1, 1, 1, T, S]: causal, within the sliding window when
  // `windowed`, no padding keys, always self.
  auto make_bias = [&](bool windowed) {
    const int64_t window = c.sliding_window;
    at::Tensor q_idx = at::arange(past, S, at::kLong).unsqueeze(1);  // [T, 1]
    at::Tensor k_idx = at::arange(S, at::kLong).unsqueeze(0);        // [1, S]
    at::Tensor allowed = (k_idx <= q_idx).unsqueeze(0);              // [1, T, S]
    if (windowed) {
      // Distances count real tokens (the rotary positions), so padding anywhere in a row leaves
      // its window as it would be without the padding. Cached keys: positions from the key mask.
      at::Tensor key_pos = positions;  // [B, S] after the cached part is prepended
      if (cache && past > 0) {
        at::Tensor km = cache->key_mask().narrow(1, 0, past).to(at::kLong);  // [B, past]
        key_pos = at::cat({km.cumsum(1) - km, positions}, 1);
      }
      allowed = allowed.logical_and((positions.unsqueeze(2) - key_pos.unsqueeze(1)) < window);
    }
    if (padded) {
      at::Tensor keys_real = mask.defined() ? mask : at::ones({B, T}, at::kBool);
      if (cache && past > 0)
        keys_real = at::cat({cache->key_mask().narrow(1, 0, past), keys_real}, 1);
      allowed =
          allowed.logical_and(keys_real.unsqueeze(1)).logical_or((k_idx == q_idx).unsqueeze(0));
    }
    return at::zeros(allowed.sizes(), at::TensorOptions().dtype(dtype_))
        .masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity())
        .view({allowed.size(0), 1, 1, T, S});
  };
  at::Tensor full_bias, window_bias;
  if (any_full && (T > 1 || padded)) full_bias = make_bias(false);
  if (any_windowed) window_bias = make_bias(true);

  const int64_t H = c.n_heads, KV = c.n_kv_heads, G = H / KV, hd = c.head_dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  Activations* cap = args.capture;
  const bool cap_att = cap && args.capture_options.attention;
  const bool cap_res = cap && args.capture_options.residual;
  const bool low = dtype_ != at::kFloat;  // low-precision compute: activations out as float32
  auto out_f32 = [&](const at::Tensor& t) { return low ? t.to(at::kFloat) : t; };
  if (cap) {
    cap->attention.clear();
    cap->residual.clear();
    if (cap_res) cap->embeddings = out_f32(x);
  }
  if (cache) cache->reserve(T);

  auto rotate = [&](const at::Tensor& t,
                    int64_t heads) {  // [B, T, heads * hd] -> [B, T, heads, hd]
    if (!rope.defined()) return t.reshape({B, T, heads, hd});
    if (low) {  // rotated in float, rounded once
      at::Tensor z = at::view_as_complex(t.to(at::kFloat).reshape({B, T, heads, hd / 2, 2}));
      return at::view_as_real(z * rope).reshape({B, T, heads, hd}).to(dtype_);
    }
    at::Tensor z = at::view_as_complex(t.reshape({B, T, heads, hd / 2, 2}));
    return at::view_as_real(z * rope).reshape({B, T, heads, hd});
  };

  for (int64_t l = first; l < c.n_layers; ++l) {
    const LlamaLayerWeights& L = weights_.layers[l];
    at::Tensor h = norm(x, L.attn_norm, L.attn_norm_bias);
    at::Tensor qkv = at::linear(h, L.wqkv, L.bqkv);  // [B, T, (H + 2KV) * hd]
    at::Tensor q = rotate(qkv.narrow(2, 0, H * hd), H);
    at::Tensor k = rotate(qkv.narrow(2, H * hd, KV * hd), KV);
    at::Tensor v = qkv.narrow(2, (H + KV) * hd, KV * hd).view({B, T, KV, hd});
    // Queries grouped by the key head they share: [B, KV, G * T, hd].
    q = q.view({B, T, KV, G, hd}).permute({0, 2, 3, 1, 4}).reshape({B, KV, G * T, hd});
    k = k.permute({0, 2, 1, 3});  // [B, KV, T, hd]
    v = v.permute({0, 2, 1, 3});
    if (cache) {
      cache->keys(l).narrow(2, past, T).copy_(k);
      cache->values(l).narrow(2, past, T).copy_(v);
      k = cache->keys(l).narrow(2, 0, S);
      v = cache->values(l).narrow(2, 0, S);
    }
    at::Tensor scores = at::matmul(q, k.transpose(2, 3)).mul_(scale);  // [B, KV, G*T, S]
    const at::Tensor& bias = layer_windowed(l) ? window_bias : full_bias;
    if (bias.defined()) scores.view({B, KV, G, T, S}).add_(bias);
    at::Tensor att = low ? at::softmax(scores, -1, at::kFloat).to(dtype_) : at::softmax(scores, -1);
    if (cap_att) cap->attention.push_back(out_f32(att.view({B, H, T, S})));
    at::Tensor o = at::matmul(att, v)  // [B, KV, G*T, hd]
                       .view({B, KV, G, T, hd})
                       .permute({0, 3, 1, 2, 4})
                       .reshape({B, T, H * hd});
    x = x + at::linear(o, L.wo, L.bo);
    at::Tensor f = at::linear(norm(x, L.ffn_norm, L.ffn_norm_bias), L.w13, L.b13);
    f = activate(c.activation, f);  // [B, T, F] (SwiGLU: from [B, T, 2 * F])
    x = x + at::linear(f, L.w2, L.b2);
    if (cap_res) cap->residual.push_back(out_f32(x));
  }

  record_in_cache();
  if (args.last_only) {
    x = x.narrow(1, T - 1, 1);
  } else if (args.output_positions.defined()) {
    x = x.index_select(1, args.output_positions.to(at::kLong));
  }
  at::Tensor normed = norm(x, weights_.final_norm, weights_.final_norm_bias);
  if (cap) cap->final_norm = out_f32(normed);
  return out_f32(at::linear(normed, weights_.output));
}

// ---------------------------------------------------------------------------------------------
// The weights as stored (for digests): a quantized matrix's blocks, never a float copy
// ---------------------------------------------------------------------------------------------

namespace {

void visit_tensor(const std::string& name, const at::Tensor& t, const StoredWeightVisitor& f) {
  if (!t.defined()) return;
  at::Tensor c = t.detach().contiguous();
  std::ostringstream layout;
  layout << c.sizes() << ':' << c.scalar_type();
  f(name, layout.str(), c.data_ptr(), c.nbytes());
}

}  // namespace

void visit_stored_weights(const Model& model, const StoredWeightVisitor& f) {
  const auto* llama = dynamic_cast<const LlamaModel*>(&model);
  if (llama == nullptr || !llama->stored_weights().quant) {
    for (const auto& [name, t] : model.named_parameters()) visit_tensor(name, t, f);
    return;
  }
  // The order and names of LlamaModel::named_parameters().
  const LlamaWeights& w = llama->stored_weights();
  const QuantWeights& q = *w.quant;
  auto matrix = [&](const std::string& name, const at::Tensor& t, const fused::QuantMatrix* m) {
    if (m == nullptr || m->empty()) return visit_tensor(name, t, f);
    for (const fused::QuantPart& p : m->parts) {
      const std::string layout = ggml_type_name(p.type) + "[" + std::to_string(p.rows) + ", " +
                                 std::to_string(m->cols) + "]";
      f(name, layout, p.data, static_cast<size_t>(p.rows) * fused::quant_row_bytes(p.type, m->cols));
    }
  };
  matrix("tok_embeddings", w.tok_embeddings, &q.tok_embeddings);
  visit_tensor("pos_embeddings", w.pos_embeddings, f);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LlamaLayerWeights& L = w.layers[l];
    const QuantLayerWeights* Q = l < q.layers.size() ? &q.layers[l] : nullptr;
    const std::string p = "layers." + std::to_string(l) + ".";
    visit_tensor(p + "attn_norm", L.attn_norm, f);
    visit_tensor(p + "attn_norm_bias", L.attn_norm_bias, f);
    matrix(p + "wqkv", L.wqkv, Q ? &Q->wqkv : nullptr);
    visit_tensor(p + "bqkv", L.bqkv, f);
    matrix(p + "wo", L.wo, Q ? &Q->wo : nullptr);
    visit_tensor(p + "bo", L.bo, f);
    visit_tensor(p + "ffn_norm", L.ffn_norm, f);
    visit_tensor(p + "ffn_norm_bias", L.ffn_norm_bias, f);
    matrix(p + "w13", L.w13, Q ? &Q->w13 : nullptr);
    visit_tensor(p + "b13", L.b13, f);
    matrix(p + "w2", L.w2, Q ? &Q->w2 : nullptr);
    visit_tensor(p + "b2", L.b2, f);
  }
  visit_tensor("final_norm", w.final_norm, f);
  visit_tensor("final_norm_bias", w.final_norm_bias, f);
  if (!llama->config().tied_embeddings) matrix("output", w.output, &q.output);
}

}  // namespace candor
