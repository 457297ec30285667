// Batched scoring of keep-masks for the evaluator, by baseline replacement (MaskScorer) or by
// deletion (shorter sequences continuing a shared KV-cache prefix).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "candor/error.h"
#include "evaluate/internal.h"

namespace candor {

Removal parse_removal(const std::string& name) {
  if (name == "baseline") return Removal::kBaseline;
  if (name == "delete" || name == "deletion") return Removal::kDelete;
  throw Error(ErrorCode::kInvalidArgument, "unknown removal '" + name + "'",
              "use baseline (replace by the baseline token) or delete");
}

const char* removal_name(Removal r) { return r == Removal::kDelete ? "delete" : "baseline"; }

namespace evaluate {

ExplainRequest pinned_request(const ExplainRequest& request, const Attribution& a) {
  ExplainRequest r = request;
  if (r.target.span.empty() && !a.step_tokens.empty() && a.step_tokens[0] >= 0)
    r.target.token = a.step_tokens[0];
  if (!a.features.empty()) r.features = a.features;
  return r;
}

void check_matches(const explain::Problem& p, const Attribution& a) {
  if (a.scores.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "the attribution by '" + a.method + "' has no scores to evaluate",
                "views such as logit_lens attribute nothing; evaluate a scoring method");
  }
  if (a.tokens != p.tokens || a.n_features() != p.n_features() || a.n_steps() != p.n_steps()) {
    throw Error(ErrorCode::kInvalidArgument,
                "the attribution by '" + a.method + "' was not made for this request (" +
                    std::to_string(a.tokens.size()) + " tokens, " + std::to_string(a.n_features()) +
                    " features vs " + std::to_string(p.length()) + " tokens, " +
                    std::to_string(p.n_features()) + " features)",
                "evaluate an attribution with the request it explains");
  }
}

double l2(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

MaskBank::MaskBank(const explain::Problem& p, Removal removal, int64_t batch_size)
    : p_(p), removal_(removal), batch_size_(std::max<int64_t>(1, batch_size)) {
  at::NoGradGuard ng;
  if (removal_ == Removal::kBaseline) {
    scorer_ = std::make_unique<explain::MaskScorer>(p, batch_size_);
    full_steps_ = scorer_->full_values();
  } else {
    base_cache_ = p.model->new_cache(1, p.length());
    ForwardArgs a;
    a.tokens = p.ids;
    a.cache = &base_cache_;
    a.output_positions = p.step_positions_t;
    full_steps_ = p.values_from_step_logits(p.model->forward(a))[0];
    positions_ += p.length();
  }
  full_value_ = full_steps_.sum().item<double>();
}

double MaskBank::forward_passes() const {
  int64_t pos = positions_ + (scorer_ ? scorer_->positions_run() : 0);
  return static_cast<double>(pos) / static_cast<double>(p_.length());
}

int64_t MaskBank::add(const std::vector<uint8_t>& keep) {
  if (static_cast<int64_t>(keep.size()) != p_.n_features()) {
    throw Error(ErrorCode::kInvalidArgument, "a mask has " + std::to_string(keep.size()) +
                                                 " entries for " + std::to_string(p_.n_features()) +
                                                 " features");
  }
  auto it = index_.find(keep);
  if (it != index_.end()) return it->second;
  int64_t i = static_cast<int64_t>(masks_.size());
  index_.emplace(keep, i);
  masks_.push_back(keep);
  return i;
}

void MaskBank::run() {
  const int64_t done = static_cast<int64_t>(values_.size());
  const int64_t N = n_masks() - done, F = p_.n_features();
  if (N <= 0) return;
  at::Tensor keep = at::empty({N, F}, at::kFloat);
  float* kp = keep.data_ptr<float>();
  for (int64_t r = 0; r < N; ++r)
    for (int64_t f = 0; f < F; ++f) kp[r * F + f] = masks_[done + r][f] ? 1.0f : 0.0f;
  at::Tensor vals;
  if (removal_ == Removal::kBaseline) {
    vals = scorer_->score(keep).sum(1);
  } else {
    vals = score_delete(keep);
  }
  vals = vals.to(at::kDouble).contiguous();
  const double* vp = vals.data_ptr<double>();
  values_.insert(values_.end(), vp, vp + N);
}

at::Tensor MaskBank::score_delete(const at::Tensor& keep) {
  at::NoGradGuard ng;
  const int64_t N = keep.size(0), F = p_.n_features(), T = p_.length(), S = p_.n_steps();
  const float* kp = keep.data_ptr<float>();
  // Kept token positions of each row, and its first removed position (T: none).
  std::vector<std::vector<int64_t>> kept(N);
  std::vector<int64_t> first(N, T);
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t t = 0; t < T; ++t) {
      int64_t f = p_.feature_of_token[t];
      bool k = f < 0 || kp[r * F + f] != 0.0f;
      if (k)
        kept[r].push_back(t);
      else if (first[r] == T)
        first[r] = t;
    }
  }
  std::vector<int64_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return first[a] < first[b]; });
  std::vector<double> out(N, 0.0);
  const double full = full_value_;
  for (int64_t c0 = 0; c0 < N; c0 += batch_size_) {
    const int64_t B = std::min(batch_size_, N - c0);
    std::vector<int64_t> rows(order.begin() + c0, order.begin() + c0 + B);
    std::vector<int64_t> todo;
    for (int64_t r : rows) {
      if (first[r] >= T)
        out[r] = full;
      else
        todo.push_back(r);
    }
    if (todo.empty()) continue;
    const int64_t Bt = static_cast<int64_t>(todo.size());
    // Rerun from one position before the earliest change so that every row has at least one
    // token to run (the last kept token before its change explains the next one).
    const int64_t start = std::max<int64_t>(0, first[todo.front()] - 1);
    std::vector<std::vector<int64_t>> rest(Bt);
    int64_t L = 0;
    for (int64_t i = 0; i < Bt; ++i) {
      for (int64_t t : kept[todo[i]])
        if (t >= start) rest[i].push_back(t);
      L = std::max<int64_t>(L, static_cast<int64_t>(rest[i].size()));
    }
    if (L == 0) L = 1;
    std::vector<int64_t> ids_v(Bt * L, 0), mask_v(Bt * L, 0), col_v(Bt * S, 0);
    std::vector<std::vector<bool>> unchanged(Bt, std::vector<bool>(S, false));
    for (int64_t i = 0; i < Bt; ++i) {
      const int64_t pad = L - static_cast<int64_t>(rest[i].size());
      for (size_t j = 0; j < rest[i].size(); ++j) {
        ids_v[i * L + pad + static_cast<int64_t>(j)] = p_.tokens[rest[i][j]];
        mask_v[i * L + pad + static_cast<int64_t>(j)] = 1;
      }
      for (int64_t s = 0; s < S; ++s) {
        const int64_t q = p_.step_positions[s];
        if (q < first[todo[i]]) {
          unchanged[i][s] = true;
          continue;
        }
        // The last kept position at or before q, as a column of this row.
        int64_t n = std::upper_bound(rest[i].begin(), rest[i].end(), q) - rest[i].begin() - 1;
        col_v[i * S + s] = pad + std::max<int64_t>(0, n);
      }
    }
    at::Tensor ids = at::tensor(ids_v, at::kLong).view({Bt, L});
    at::Tensor mask = at::tensor(mask_v, at::kLong).view({Bt, L});
    at::Tensor col = at::tensor(col_v, at::kLong).view({Bt, S});  // step columns per row
    KVCache cache;
    ForwardArgs a;
    if (start > 0) {
      cache = base_cache_.expand(Bt);
      cache.truncate(start);
      a.cache = &cache;
    }
    a.tokens = ids;
    a.attention_mask = mask;
    at::Tensor logits = p_.model->forward(a);  // [Bt, L, V]
    positions_ += Bt * L;
    const int64_t V = logits.size(2);
    at::Tensor sel = logits.gather(1, col.unsqueeze(-1).expand({Bt, S, V}));         // [Bt, S, V]
    at::Tensor vals = p_.values_from_step_logits(sel).to(at::kDouble).contiguous();  // [Bt, S]
    at::Tensor fs = full_steps_.to(at::kDouble).contiguous();
    auto va = vals.accessor<double, 2>();
    auto fa = fs.accessor<double, 1>();
    for (int64_t i = 0; i < Bt; ++i) {
      double v = 0;
      for (int64_t s = 0; s < S; ++s) v += unchanged[i][s] ? fa[s] : va[i][s];
      out[todo[i]] = v;
    }
  }
  return at::tensor(out, at::kDouble);
}

}  // namespace evaluate

std::vector<double> score_masks(const Model& model, const ExplainRequest& request,
                                const Attribution& attribution,
                                const std::vector<std::vector<uint8_t>>& keep, Removal removal,
                                int64_t batch_size, double* forward_passes) {
  explain::Problem p = explain::prepare(model, evaluate::pinned_request(request, attribution));
  evaluate::MaskBank bank(p, removal, batch_size);
  std::vector<int64_t> idx;
  for (const auto& k : keep) idx.push_back(bank.add(k));
  bank.run();
  std::vector<double> out;
  for (int64_t i : idx) out.push_back(bank.value(i));
  if (forward_passes) *forward_passes = bank.forward_passes();
  return out;
}

}  // namespace candor
