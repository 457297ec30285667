// The model side of the service's batched decoding: one preallocated KV cache of slots, a slot
// per sequence in flight. A sequence's prompt is prefilled into a cache of its own; when it
// joins the batch its keys and values are copied into a free slot (the lowest), when it leaves
// its slot is freed (masked), and the other rows are not touched. Every step appends one column
// to every slot in use: the rows that read a token write real keys, the others (not fed, free
// slots) a masked one, so each row keeps its own rotary positions (the cache's per-row next
// positions) and attends to its own real tokens only. The masked columns accumulate; the rows
// are packed to the left only when the cache is full or mostly padding (rare). A step runs over
// slots [0, highest in use] through a view that shares the cache's storage (the fused forward
// when the model has it), with the token and mask buffers allocated once.
#include "serve/decode_model.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "candor/error.h"
#include "candor/runtime.h"

namespace candor::serve {
namespace {

struct ModelSequence : DecodeSequence {
  KVCache cache;  // the prefilled prompt, until the sequence joins the shared cache
};

// Multiply-adds of one row through the model's matrices (attention over the cache aside).
double row_macs(const ModelConfig& c) {
  const double hd = static_cast<double>(c.head_dim()), D = static_cast<double>(c.dim);
  const double qkv = static_cast<double>(c.n_heads + 2 * c.n_kv_heads) * hd;
  const double layer = D * qkv + static_cast<double>(c.n_heads) * hd * D +
                       3.0 * D * static_cast<double>(c.hidden_dim);
  return static_cast<double>(c.n_layers) * layer + static_cast<double>(c.vocab_size) * D;
}

// A step with fewer multiply-adds than this runs on one thread: handing its products to the
// kernel pool's threads (a wake-up per product, then their spin) costs more than it saves.
// Measured on stories260K (260K per row): at 4 rows a step on 2 threads cost more CPU per token
// than --parallel 1, and no less time. The GPT-2-small-sized model has 85M per row.
constexpr double kStepSplitMacs = 16.0 * 1024 * 1024;

class ModelBackend : public DecodeBackend {
 public:
  ModelBackend(const Model& model, int threads)
      : model_(model), threads_(threads), row_macs_(row_macs(model.config())) {}

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
    const bool small = static_cast<double>(rows.size()) * row_macs_ < kStepSplitMacs;
    ThreadScope threads(small ? 1 : threads_);
    place(rows);
    const int64_t n_slots = static_cast<int64_t>(slot_id_.size());
    int64_t hi = 0;  // slots [0, hi) take part
    for (int64_t s = 0; s < n_slots; ++s)
      if (slot_id_[static_cast<size_t>(s)] != 0) hi = s + 1;
    // The view keeps its rows while at least half of them are in use (a free slot costs a
    // masked row; making the view costs an allocation).
    if (hi <= view_rows_ && 2 * hi > view_rows_) hi = view_rows_;
    make_room(hi);
    if (view_rows_ != hi) {
      view_ = view_of(hi);
      view_rows_ = hi;
    }
    view_.set_length(cache_.length());
    // Tokens and mask of the slots: a row not fed and a free slot read a masked token 0.
    int64_t* tok = tokens_.data_ptr<int64_t>();
    int64_t* msk = mask_.data_ptr<int64_t>();
    std::fill(tok, tok + hi, 0);
    std::fill(msk, msk + hi, 0);
    bool all_fed = true;
    for (const StepRow& r : rows) {
      const int64_t s = slot_of_.at(r.id);
      if (r.fed) {
        tok[s] = r.token;
        msk[s] = 1;
        ++real_[static_cast<size_t>(s)];
      }
      all_fed = all_fed && r.fed;
    }
    all_fed = all_fed && static_cast<int64_t>(rows.size()) == hi;
    ForwardArgs args;
    args.tokens = tokens_.narrow(0, 0, hi);
    if (!all_fed) args.attention_mask = mask_.narrow(0, 0, hi);
    args.cache = &view_;
    args.last_only = true;
    at::Tensor out;
    try {
      out = model_.forward(args).reshape({hi, -1}).contiguous();  // [hi, V]
    } catch (...) {
      // Nothing was recorded (the forward checks the context before it writes; a column written
      // before a later failure stays masked): the rows keep their state.
      for (const StepRow& r : rows)
        if (r.fed) --real_[static_cast<size_t>(slot_of_.at(r.id))];
      view_rows_ = 0;
      throw;
    }
    // The view wrote keys, values and mask into the cache; its length and next positions are
    // its own.
    cache_.set_length(view_.length());
    cache_.next_position().narrow(0, 0, hi).copy_(view_.next_position());
    view_.next_position() = cache_.next_position().narrow(0, 0, hi);
    const int64_t V = vocab_size();
    logits->resize(rows.size() * static_cast<size_t>(V));
    const float* src = out.data_ptr<float>();
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(logits->data() + i * V, src + slot_of_.at(rows[i].id) * V,
                  static_cast<size_t>(V) * sizeof(float));
  }

  // Statistics for the tests: how often the cache was packed and reallocated.
  int64_t packs() const { return packs_; }
  int64_t reallocations() const { return reallocations_; }

 private:
  // Frees the slots of the rows that left, gives the new rows a slot (the lowest free one) and
  // copies their prefilled keys and values there.
  void place(const std::vector<StepRow>& rows) {
    present_.clear();
    for (const StepRow& r : rows) present_.push_back(r.id);
    std::sort(present_.begin(), present_.end());
    for (size_t s = 0; s < slot_id_.size(); ++s) {
      const uint64_t id = slot_id_[s];
      if (id != 0 && !std::binary_search(present_.begin(), present_.end(), id)) free_slot(s);
    }
    for (const StepRow& r : rows) {
      if (slot_of_.count(r.id)) continue;
      auto* seq = static_cast<ModelSequence*>(r.sequence);
      if (!seq || seq->cache.batch() != 1)
        throw Error(ErrorCode::kInternal, "a sequence joined the batch without its prefill");
      const int64_t n = seq->cache.length();
      int64_t slot = -1;
      for (size_t s = 0; s < slot_id_.size() && slot < 0; ++s)
        if (slot_id_[s] == 0) slot = static_cast<int64_t>(s);
      if (slot < 0) {
        slot = static_cast<int64_t>(slot_id_.size());
        reallocate(std::max<int64_t>(2 * slot, static_cast<int64_t>(rows.size())),
                   std::max(cache_.capacity(), n + 1));
      }
      if (n + 1 > cache_.capacity())
        reallocate(static_cast<int64_t>(slot_id_.size()), std::max(n + 1, 2 * cache_.capacity()));
      // Columns [length, n) become real for this row only: masked in the others (the mask
      // beyond length() is false everywhere).
      if (n > cache_.length()) cache_.set_length(n);
      for (int64_t l = 0; l < model_.config().n_layers; ++l) {
        cache_.keys(l)[slot].narrow(1, 0, n).copy_(seq->cache.keys(l)[0].narrow(1, 0, n));
        cache_.values(l)[slot].narrow(1, 0, n).copy_(seq->cache.values(l)[0].narrow(1, 0, n));
      }
      cache_.key_mask()[slot].narrow(0, 0, n).copy_(seq->cache.key_mask()[0].narrow(0, 0, n));
      cache_.next_position()[slot].copy_(seq->cache.next_position()[0]);
      real_[static_cast<size_t>(slot)] = n;
      slot_id_[static_cast<size_t>(slot)] = r.id;
      slot_of_[r.id] = slot;
      seq->cache = KVCache();  // in the shared cache now
    }
  }

  void free_slot(size_t s) {
    slot_of_.erase(slot_id_[s]);
    slot_id_[s] = 0;
    real_[s] = 0;
    cache_.key_mask()[static_cast<int64_t>(s)].fill_(false);
  }

  // Before a step over slots [0, hi): a free column for it. The rows are packed to the left when
  // the cache is full, or when padding is most of what the step would attend to; the cache grows
  // (up to the context) when packing is not enough.
  void make_room(int64_t hi) {
    const int64_t longest = *std::max_element(real_.begin(), real_.begin() + hi);
    const int64_t length = cache_.length();
    if (length + 1 <= cache_.capacity() && length <= 2 * longest + 64) return;
    pack(hi);
    if (cache_.length() + 1 > cache_.capacity() &&
        cache_.capacity() < model_.config().max_seq_len) {
      reallocate(static_cast<int64_t>(slot_id_.size()),
                 std::min(model_.config().max_seq_len, 2 * cache_.capacity()));
    }
    // Still full: the row has reached the context; the forward says so.
  }

  // Each row's real columns moved to the left; the cache's length becomes the longest row.
  void pack(int64_t hi) {
    ++packs_;
    const int64_t length = cache_.length();
    int64_t longest = 0;
    for (int64_t s = 0; s < hi; ++s) {
      at::Tensor m = cache_.key_mask()[s];
      if (slot_id_[static_cast<size_t>(s)] == 0) {
        m.fill_(false);
        continue;
      }
      const at::Tensor real = m.narrow(0, 0, length).nonzero().view({-1});
      const int64_t n = real.size(0);
      for (int64_t l = 0; l < model_.config().n_layers; ++l) {
        for (at::Tensor* t : {&cache_.keys(l), &cache_.values(l)}) {
          at::Tensor row = (*t)[s];  // [KV, capacity, hd]
          row.narrow(1, 0, n).copy_(row.index_select(1, real));
        }
      }
      m.fill_(false);
      m.narrow(0, 0, n).fill_(true);
      real_[static_cast<size_t>(s)] = n;
      longest = std::max(longest, n);
    }
    cache_.set_length(longest);
  }

  // A cache of `slots` rows and `capacity` columns holding what the current one holds.
  void reallocate(int64_t slots, int64_t capacity) {
    ++reallocations_;
    const int64_t context = model_.config().max_seq_len;
    capacity = std::min(context, std::max(capacity, int64_t{256}));
    KVCache fresh = model_.new_cache(slots, capacity);
    const int64_t old_slots = cache_.batch(), length = cache_.length();
    if (old_slots > 0) {
      for (int64_t l = 0; l < model_.config().n_layers; ++l) {
        fresh.keys(l).narrow(0, 0, old_slots).narrow(2, 0, length).copy_(
            cache_.keys(l).narrow(2, 0, length));
        fresh.values(l).narrow(0, 0, old_slots).narrow(2, 0, length).copy_(
            cache_.values(l).narrow(2, 0, length));
      }
      fresh.key_mask().narrow(0, 0, old_slots).narrow(1, 0, length).copy_(
          cache_.key_mask().narrow(1, 0, length));
      fresh.next_position().narrow(0, 0, old_slots).copy_(cache_.next_position());
    }
    fresh.set_length(length);
    cache_ = fresh;
    slot_id_.resize(static_cast<size_t>(slots), 0);
    real_.resize(static_cast<size_t>(slots), 0);
    tokens_ = at::zeros({slots, 1}, at::kLong);
    mask_ = at::zeros({slots, 1}, at::kLong);
    view_rows_ = 0;  // the view shares the old storage: made again
  }

  // A cache over slots [0, n) sharing cache_'s storage. (KVCache has no constructor for a
  // view: init() allocates tensors of cache_'s shape, which are then replaced by cache_'s
  // rows; made only when the rows in use grow, or shrink to half.)
  KVCache view_of(int64_t n) {
    KVCache v;
    v.init(model_.config().n_layers, n, model_.config().n_kv_heads, cache_.capacity(),
           model_.config().head_dim(), cache_.keys(0).scalar_type());
    for (int64_t l = 0; l < model_.config().n_layers; ++l) {
      v.keys(l) = cache_.keys(l).narrow(0, 0, n);
      v.values(l) = cache_.values(l).narrow(0, 0, n);
    }
    v.key_mask() = cache_.key_mask().narrow(0, 0, n);
    v.next_position() = cache_.next_position().narrow(0, 0, n);
    v.set_length(cache_.length());
    return v;
  }

  const Model& model_;
  const int threads_;
  const double row_macs_;
  KVCache cache_;                  // [slots, kv_heads, capacity, hd] per layer
  KVCache view_;                   // slots [0, view_rows_) of cache_
  int64_t view_rows_ = 0;
  std::vector<uint64_t> slot_id_;  // the sequence in each slot (0: free)
  std::vector<int64_t> real_;      // real (unmasked) columns of each slot
  std::unordered_map<uint64_t, int64_t> slot_of_;
  std::vector<uint64_t> present_;
  at::Tensor tokens_, mask_;       // [slots, 1] int64
  int64_t packs_ = 0, reallocations_ = 0;
};

}  // namespace

DecodeCacheStats decode_cache_stats(const DecodeBackend& backend) {
  DecodeCacheStats s;
  if (auto* m = dynamic_cast<const ModelBackend*>(&backend)) {
    s.packs = m->packs();
    s.reallocations = m->reallocations();
  }
  return s;
}

std::shared_ptr<DecodeBackend> model_decode_backend(const Model& model, int threads) {
  return std::make_shared<ModelBackend>(model, threads);
}

}  // namespace candor::serve
