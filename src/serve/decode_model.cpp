// The model side of the service's batched decoding: one KV cache whose rows are the sequences
// in flight. A sequence's prompt is prefilled into a cache of its own; when the rows change (one
// joins or leaves) the shared cache is rebuilt with each row's real positions packed to the left
// (a shorter row is padded on the right, the padding masked), so every row keeps its own rotary
// positions and attends only to its own tokens. A row whose request has not asked for a step
// reads a padding token (masked: it adds nothing to its row).
#include "serve/decode_model.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include "candor/runtime.h"

namespace candor::serve {
namespace {

struct ModelSequence : DecodeSequence {
  KVCache cache;  // the prefilled prompt, until the sequence joins the shared cache
};

class ModelBackend : public DecodeBackend {
 public:
  ModelBackend(const Model& model, int threads) : model_(model), threads_(threads) {}

  int64_t vocab_size() const override { return model_.config().vocab_size; }

  std::unique_ptr<DecodeSequence> prefill(const std::vector<TokenId>& ids,
                                          std::vector<float>* logits) const override {
    at::NoGradGuard no_grad;
    auto s = std::make_unique<ModelSequence>();
    s->cache = model_.new_cache(1, static_cast<int64_t>(ids.size()));
    ForwardArgs args;
    args.tokens =
        at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
    args.cache = &s->cache;
    args.last_only = true;
    const at::Tensor out = model_.forward(args).contiguous();  // [1, 1, V]
    logits->assign(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
    return s;
  }

  void step(const std::vector<StepRow>& rows, std::vector<float>* logits) override {
    at::NoGradGuard no_grad;
    ThreadScope threads(threads_);
    std::vector<uint64_t> ids;
    for (const StepRow& r : rows) ids.push_back(r.id);
    // Rebuilt when the rows change, and when padding has filled the context (packing frees it).
    if (ids != ids_ || cache_.length() >= model_.config().max_seq_len) rebuild(rows, ids);
    const int64_t B = static_cast<int64_t>(rows.size());
    std::vector<int64_t> tokens(rows.size(), 0);
    bool all_fed = true;
    for (size_t i = 0; i < rows.size(); ++i) {
      tokens[i] = rows[i].fed ? rows[i].token : 0;
      all_fed = all_fed && rows[i].fed;
    }
    ForwardArgs args;
    args.tokens = at::tensor(tokens, at::kLong).view({B, 1});
    if (!all_fed) {
      std::vector<int64_t> mask;
      for (const StepRow& r : rows) mask.push_back(r.fed ? 1 : 0);
      args.attention_mask = at::tensor(mask, at::kLong).view({B, 1});
    }
    args.cache = &cache_;
    args.last_only = true;
    const at::Tensor out = model_.forward(args).reshape({B, -1}).contiguous();  // [B, V]
    logits->assign(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
  }

 private:
  // The shared cache for `rows`: each row's real positions (from the old shared cache, or from
  // its own prefilled cache when it is new) packed to the left.
  void rebuild(const std::vector<StepRow>& rows, const std::vector<uint64_t>& ids) {
    std::map<uint64_t, int64_t> old_row;
    for (size_t i = 0; i < ids_.size(); ++i) old_row[ids_[i]] = static_cast<int64_t>(i);
    struct Source {
      KVCache* cache;
      int64_t row;
      at::Tensor real;  // [n] positions of the real tokens
    };
    std::vector<Source> src;
    int64_t longest = 0;
    for (const StepRow& r : rows) {
      auto it = old_row.find(r.id);
      Source s{nullptr, 0, {}};
      if (it != old_row.end()) {
        s.cache = &cache_;
        s.row = it->second;
      } else {
        s.cache = &static_cast<ModelSequence*>(r.sequence)->cache;
      }
      s.real = s.cache->key_mask()[s.row].narrow(0, 0, s.cache->length()).nonzero().view({-1});
      longest = std::max(longest, s.real.size(0));
      src.push_back(s);
    }
    const int64_t B = static_cast<int64_t>(rows.size());
    const int64_t n_layers = model_.config().n_layers;
    KVCache fresh = model_.new_cache(
        B, std::min<int64_t>(model_.config().max_seq_len, std::max<int64_t>(longest + 64, 1)));
    for (int64_t b = 0; b < B; ++b) {
      const Source& s = src[static_cast<size_t>(b)];
      const int64_t n = s.real.size(0);
      for (int64_t l = 0; l < n_layers; ++l) {
        fresh.keys(l)[b].narrow(1, 0, n).copy_(s.cache->keys(l)[s.row].index_select(1, s.real));
        fresh.values(l)[b].narrow(1, 0, n).copy_(
            s.cache->values(l)[s.row].index_select(1, s.real));
      }
      fresh.key_mask()[b].narrow(0, 0, n).fill_(true);
      fresh.next_position()[b].copy_(s.cache->next_position()[s.row]);
    }
    fresh.set_length(longest);
    cache_ = fresh;
    ids_ = ids;
    // The new rows' own caches are in the shared one now.
    for (const StepRow& r : rows)
      if (old_row.count(r.id) == 0) static_cast<ModelSequence*>(r.sequence)->cache = KVCache();
  }

  const Model& model_;
  const int threads_;
  KVCache cache_;
  std::vector<uint64_t> ids_;  // the sequence of each row of cache_
};

}  // namespace

std::shared_ptr<DecodeBackend> model_decode_backend(const Model& model, int threads) {
  return std::make_shared<ModelBackend>(model, threads);
}

}  // namespace candor::serve
