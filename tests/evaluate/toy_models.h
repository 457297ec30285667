// Hand-built models whose attributions and metrics are known in closed form:
//   kBag:  logits at position t = U * (sum of the real input embeddings at positions <= t)
//   kLast: logits at position t = U * (embedding at position t)   (depends on one token only)
// with the logit as target both are linear in the embeddings, so every removal effect is a dot
// product the tests compute by hand. They implement the whole Model interface (padding, KV
// cache, embeddings input), so the evaluator's batched paths run unchanged.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "candor/model.h"
#include "candor/tokenizer.h"

namespace candor::testing {

// Pieces " t0" ... " t{V-1}"; 0 = unk, 1 = BOS, 2 = EOS.
class ToyTokenizer : public Tokenizer {
 public:
  explicit ToyTokenizer(int32_t v) : v_(v) {}
  std::vector<TokenId> encode(std::string_view, bool add_bos = true, bool = false) const override {
    return add_bos ? std::vector<TokenId>{1} : std::vector<TokenId>{};
  }
  std::string decode_piece(TokenId, TokenId token) const override { return piece(token); }
  std::string piece(TokenId token) const override { return " t" + std::to_string(token); }
  float score(TokenId) const override { return 0; }
  int32_t vocab_size() const override { return v_; }
  TokenId bos_id() const override { return 1; }
  TokenId eos_id() const override { return 2; }
  TokenId unk_id() const override { return 0; }
  std::string kind() const override { return "toy"; }

 private:
  int32_t v_;
};

class ToyModel : public Model {
 public:
  enum class Kind { kBag, kLast };
  ToyModel(Kind kind, int64_t vocab, int64_t dim, uint64_t seed) : kind_(kind), tok_(vocab) {
    at::manual_seed(seed);
    config_.architecture = "toy";
    config_.dim = dim;
    config_.vocab_size = vocab;
    config_.n_layers = 1;
    config_.n_heads = 1;
    config_.n_kv_heads = 1;
    config_.hidden_dim = dim;
    config_.max_seq_len = 256;
    E_ = at::randn({vocab, dim}, at::kFloat);
    U_ = at::randn({vocab, dim}, at::kFloat);
  }
  const ModelConfig& config() const override { return config_; }
  const Tokenizer& tokenizer() const override { return tok_; }
  int64_t n_params() const override { return E_.numel() + U_.numel(); }
  at::Tensor embed(const at::Tensor& tokens) const override {
    return at::embedding(E_, tokens.to(at::kLong));
  }
  at::Tensor embedding_matrix() const override { return E_; }
  at::Tensor unembed(const at::Tensor& h, bool) const override { return at::matmul(h, U_.t()); }
  KVCache new_cache(int64_t batch, int64_t capacity) const override {
    KVCache c;
    c.init(1, batch, 1, capacity > 0 ? capacity : 16, config_.dim, at::kFloat);
    return c;
  }
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override {
    return {{"tok_embeddings", E_}, {"output", U_}};
  }
  at::Tensor forward(const ForwardArgs& a) const override {
    at::Tensor x = a.embeddings.defined() ? a.embeddings.to(at::kFloat) : embed(a.tokens);
    const int64_t B = x.size(0), T = x.size(1);
    at::Tensor m = a.attention_mask.defined() ? a.attention_mask.to(at::kFloat)
                                              : at::ones({B, T}, at::kFloat);  // [B, T]
    at::Tensor h;                                                              // [B, T, D]
    if (kind_ == Kind::kLast) {
      h = x;
    } else {
      at::Tensor xs = x * m.unsqueeze(-1);
      h = xs.cumsum(1);
      if (a.cache && a.cache->length() > 0) {
        const int64_t past = a.cache->length();
        at::Tensor prev = a.cache->keys(0).narrow(2, 0, past).select(1, 0);  // [B, past, D]
        at::Tensor pm = a.cache->key_mask().narrow(1, 0, past).to(at::kFloat).unsqueeze(-1);
        h = h + (prev * pm).sum(1, true);
      }
    }
    if (a.cache) {
      KVCache& c = *a.cache;
      if (c.batch() == 0) c = new_cache(B, T);
      const int64_t past = c.length();
      c.reserve(T);
      c.keys(0).narrow(2, past, T).copy_(x.detach().unsqueeze(1));
      c.key_mask().narrow(1, past, T).copy_(m.to(at::kBool));
      c.next_position() = c.next_position() + m.sum(1).to(at::kLong);
      c.set_length(past + T);
    }
    if (a.last_only) {
      h = h.narrow(1, T - 1, 1);
    } else if (a.output_positions.defined()) {
      h = h.index_select(1, a.output_positions.to(at::kLong));
    }
    return at::matmul(h, U_.t());
  }

  std::unique_ptr<Model> clone() const override {
    auto copy = std::make_unique<ToyModel>(*this);
    copy->E_ = E_.clone();
    copy->U_ = U_.clone();
    return copy;
  }

  // Hand-computed helpers: u_y . e_token, and u_y . (sum of embeddings of ids).
  double dot(TokenId y, TokenId token) const { return (U_[y] * E_[token]).sum().item<double>(); }
  const at::Tensor& E() const { return E_; }
  const at::Tensor& U() const { return U_; }

 private:
  Kind kind_;
  ToyTokenizer tok_;
  ModelConfig config_;
  at::Tensor E_, U_;
};

}  // namespace candor::testing
