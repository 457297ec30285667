// KVCache: per-layer key/value buffers with a fill length, growth, fork, truncation and
// expansion of a shared prefix to a batch.
#include <ATen/ATen.h>

#include "candor/error.h"
#include "candor/model.h"

namespace candor {

void KVCache::init(int64_t n_layers, int64_t batch, int64_t n_kv_heads, int64_t capacity,
                   int64_t head_dim, at::ScalarType dtype) {
  batch_ = batch;
  length_ = 0;
  capacity_ = std::max<int64_t>(capacity, 1);
  k_.clear();
  v_.clear();
  auto opts = at::TensorOptions().dtype(dtype);
  for (int64_t l = 0; l < n_layers; ++l) {
    k_.push_back(at::zeros({batch, n_kv_heads, capacity_, head_dim}, opts));
    v_.push_back(at::zeros({batch, n_kv_heads, capacity_, head_dim}, opts));
  }
  key_mask_ = at::zeros({batch, capacity_}, at::kBool);
  next_pos_ = at::zeros({batch}, at::kLong);
}

void KVCache::reserve(int64_t extra) {
  int64_t needed = length_ + extra;
  if (needed <= capacity_) return;
  int64_t cap = std::max<int64_t>({needed, capacity_ * 2, 16});
  auto grow = [&](at::Tensor& t, int64_t dim) {
    auto sizes = t.sizes().vec();
    sizes[dim] = cap;
    at::Tensor bigger = at::zeros(sizes, t.options());
    if (length_ > 0) bigger.narrow(dim, 0, length_).copy_(t.narrow(dim, 0, length_));
    t = bigger;
  };
  for (auto& t : k_) grow(t, 2);
  for (auto& t : v_) grow(t, 2);
  grow(key_mask_, 1);
  capacity_ = cap;
}

void KVCache::truncate(int64_t n) {
  if (n < 0 || n > length_) {
    throw Error(ErrorCode::kInvalidArgument, "cannot truncate a KV cache of " +
                                                 std::to_string(length_) + " positions to " +
                                                 std::to_string(n));
  }
  if (n == length_) return;
  // Positions of each row restart after the real tokens that remain.
  next_pos_ = key_mask_.narrow(1, 0, n).sum(1).to(at::kLong);
  key_mask_.narrow(1, n, length_ - n).fill_(false);
  length_ = n;
}

KVCache KVCache::fork() const {
  KVCache c;
  c.batch_ = batch_;
  c.length_ = length_;
  c.capacity_ = capacity_;
  for (const auto& t : k_) c.k_.push_back(t.clone());
  for (const auto& t : v_) c.v_.push_back(t.clone());
  if (key_mask_.defined()) c.key_mask_ = key_mask_.clone();
  if (next_pos_.defined()) c.next_pos_ = next_pos_.clone();
  return c;
}

KVCache KVCache::expand(int64_t n) const {
  if (batch_ != 1) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "KVCache::expand needs a batch-1 cache, this one has " + std::to_string(batch_) + " rows");
  }
  if (n < 1) throw Error(ErrorCode::kInvalidArgument, "KVCache::expand needs n >= 1");
  KVCache c;
  c.batch_ = n;
  c.length_ = length_;
  c.capacity_ = capacity_;
  // clone, not contiguous(): for n == 1 contiguous() would return the very same tensors, and
  // writing to the copy (truncate, a forward) would change this cache.
  constexpr auto kDense = at::MemoryFormat::Contiguous;
  for (const auto& t : k_) c.k_.push_back(t.expand({n, -1, -1, -1}).clone(kDense));
  for (const auto& t : v_) c.v_.push_back(t.expand({n, -1, -1, -1}).clone(kDense));
  c.key_mask_ = key_mask_.expand({n, -1}).clone(kDense);
  c.next_pos_ = next_pos_.expand({n}).clone(kDense);
  return c;
}

KVCache KVCache::select_rows(const std::vector<int64_t>& rows) const {
  for (int64_t r : rows) {
    if (r < 0 || r >= batch_) {
      throw Error(ErrorCode::kInvalidArgument, "KVCache::select_rows: row " + std::to_string(r) +
                                                   " is outside a batch of " +
                                                   std::to_string(batch_));
    }
  }
  at::Tensor index = at::tensor(rows, at::kLong);
  KVCache c;
  c.batch_ = static_cast<int64_t>(rows.size());
  c.length_ = length_;
  c.capacity_ = capacity_;
  for (const auto& t : k_) c.k_.push_back(t.index_select(0, index));
  for (const auto& t : v_) c.v_.push_back(t.index_select(0, index));
  c.key_mask_ = key_mask_.index_select(0, index);
  c.next_pos_ = next_pos_.index_select(0, index);
  return c;
}

}  // namespace candor
