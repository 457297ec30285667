// Rank statistics shared by the metrics: Kendall tau-b, Spearman (average ranks), top-k sets.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "candor/error.h"
#include "evaluate/internal.h"

namespace candor {
namespace {

void check_same(const std::vector<double>& a, const std::vector<double>& b, const char* what) {
  if (a.size() != b.size()) {
    throw Error(ErrorCode::kInvalidArgument, std::string(what) + " of vectors of lengths " +
                                                 std::to_string(a.size()) + " and " +
                                                 std::to_string(b.size()));
  }
}

std::vector<double> average_ranks(const std::vector<double>& v) {
  const size_t n = v.size();
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(n);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) ++j;
    double avg = 0.5 * static_cast<double>(i + j) + 1.0;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

}  // namespace

double kendall_tau(const std::vector<double>& a, const std::vector<double>& b) {
  check_same(a, b, "Kendall tau");
  const size_t n = a.size();
  double concordant = 0, discordant = 0, ties_a = 0, ties_b = 0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      double da = a[i] - a[j], db = b[i] - b[j];
      if (da == 0 && db == 0) continue;
      if (da == 0) {
        ties_a += 1;
      } else if (db == 0) {
        ties_b += 1;
      } else if ((da > 0) == (db > 0)) {
        concordant += 1;
      } else {
        discordant += 1;
      }
    }
  }
  double denom = std::sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b));
  return denom > 0 ? (concordant - discordant) / denom : 0.0;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  check_same(a, b, "Spearman correlation");
  const size_t n = a.size();
  if (n < 2) return 0.0;
  std::vector<double> ra = average_ranks(a), rb = average_ranks(b);
  double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n;
  double mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

std::vector<int64_t> rank_order(const std::vector<double>& scores) {
  std::vector<int64_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t x, int64_t y) { return scores[x] > scores[y]; });
  return idx;
}

double topk_intersection(const std::vector<double>& a, const std::vector<double>& b, int64_t k) {
  check_same(a, b, "top-k intersection");
  k = std::min<int64_t>(k, static_cast<int64_t>(a.size()));
  if (k <= 0) return 1.0;
  std::vector<int64_t> oa = rank_order(a), ob = rank_order(b);
  std::vector<int64_t> sa(oa.begin(), oa.begin() + k), sb(ob.begin(), ob.begin() + k);
  std::sort(sa.begin(), sa.end());
  std::sort(sb.begin(), sb.end());
  std::vector<int64_t> both;
  std::set_intersection(sa.begin(), sa.end(), sb.begin(), sb.end(), std::back_inserter(both));
  return static_cast<double>(both.size()) / static_cast<double>(k);
}

}  // namespace candor
