// Faithfulness: comprehensiveness and sufficiency with their AOPC (DeYoung et al. 2020),
// deletion and insertion curves (Petsiuk et al. 2018), infidelity (Yeh et al. 2019) and the
// Kendall tau with leave-one-out. All masks of one attribution are scored in one batched run.
#include <algorithm>
#include <cmath>

#include "candor/error.h"
#include "evaluate/internal.h"

namespace candor {

namespace {

// The masks one attribution needs, registered in a shared bank.
struct Plan {
  std::vector<int64_t> ks, comp_idx, suff_idx, del_idx, ins_idx, inf_idx, loo_idx;
  std::vector<std::vector<uint8_t>> inf_masks;
  int64_t empty_idx = -1;
};

Plan plan_masks(evaluate::MaskBank& bank, int64_t F, const std::vector<int64_t>& order,
                const FaithfulnessOptions& options, Faithfulness& out) {
  // keep everything except the top n / only the top n.
  auto without_top = [&](int64_t n) {
    std::vector<uint8_t> k(F, 1);
    for (int64_t i = 0; i < n; ++i) k[order[i]] = 0;
    return k;
  };
  auto only_top = [&](int64_t n) {
    std::vector<uint8_t> k(F, 0);
    for (int64_t i = 0; i < n; ++i) k[order[i]] = 1;
    return k;
  };
  Plan pl;
  pl.empty_idx = bank.add(std::vector<uint8_t>(F, 0));
  if (options.comprehensiveness) {
    for (double q : options.fractions) {
      int64_t n = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(q * F - 1e-9)), 1, F);
      out.fractions.push_back(q);
      out.counts.push_back(n);
      pl.comp_idx.push_back(bank.add(without_top(n)));
      pl.suff_idx.push_back(bank.add(only_top(n)));
    }
  }
  if (options.curves) {
    const int64_t P = options.curve_points;
    if (P <= 1 || P >= F + 1) {
      for (int64_t k = 0; k <= F; ++k) pl.ks.push_back(k);
    } else {
      for (int64_t i = 0; i < P; ++i) {
        int64_t k = static_cast<int64_t>(std::llround(static_cast<double>(i) * F / (P - 1)));
        if (pl.ks.empty() || pl.ks.back() != k) pl.ks.push_back(k);
      }
    }
    for (int64_t k : pl.ks) {
      pl.del_idx.push_back(bank.add(without_top(k)));
      pl.ins_idx.push_back(bank.add(only_top(k)));
    }
  }
  if (options.infidelity) {
    evaluate::Rng rng(options.seed * 0x9E3779B97F4A7C15ULL + 17);
    std::bernoulli_distribution coin(0.5);
    for (int64_t s = 0; s < options.infidelity_samples; ++s) {
      std::vector<uint8_t> k(F);
      for (int64_t f = 0; f < F; ++f) k[f] = coin(rng) ? 1 : 0;
      pl.inf_idx.push_back(bank.add(k));
      pl.inf_masks.push_back(k);
    }
  }
  if (options.loo) {
    for (int64_t f = 0; f < F; ++f) {
      std::vector<uint8_t> k(F, 1);
      k[f] = 0;
      pl.loo_idx.push_back(bank.add(k));
    }
  }
  return pl;
}

void finish(const evaluate::MaskBank& bank, int64_t F, const std::vector<double>& phi,
            const Plan& pl, const FaithfulnessOptions& options, Faithfulness& out) {
  const double fx = bank.full_value();
  out.full_value = fx;
  out.empty_value = bank.value(pl.empty_idx);
  for (size_t i = 0; i < pl.comp_idx.size(); ++i) {
    out.comprehensiveness.push_back(fx - bank.value(pl.comp_idx[i]));
    out.sufficiency.push_back(fx - bank.value(pl.suff_idx[i]));
  }
  if (!pl.comp_idx.empty()) {
    for (size_t i = 0; i < pl.comp_idx.size(); ++i) {
      out.comprehensiveness_aopc += out.comprehensiveness[i];
      out.sufficiency_aopc += out.sufficiency[i];
    }
    out.comprehensiveness_aopc /= static_cast<double>(pl.comp_idx.size());
    out.sufficiency_aopc /= static_cast<double>(pl.comp_idx.size());
  }
  auto finish_curve = [&](Curve& c, const std::vector<int64_t>& idx) {
    for (size_t i = 0; i < pl.ks.size(); ++i) {
      c.fraction.push_back(static_cast<double>(pl.ks[i]) / static_cast<double>(F));
      c.value.push_back(bank.value(idx[i]));
    }
    for (size_t i = 1; i < c.fraction.size(); ++i)
      c.area += 0.5 * (c.value[i] + c.value[i - 1]) * (c.fraction[i] - c.fraction[i - 1]);
  };
  if (options.curves) {
    finish_curve(out.deletion, pl.del_idx);
    finish_curve(out.insertion, pl.ins_idx);
  }
  if (!pl.inf_idx.empty()) {
    double sum = 0;
    for (size_t s = 0; s < pl.inf_idx.size(); ++s) {
      double removed = 0;
      for (int64_t f = 0; f < F; ++f)
        if (!pl.inf_masks[s][f]) removed += phi[f];
      double d = removed - (fx - bank.value(pl.inf_idx[s]));
      sum += d * d;
    }
    out.infidelity = sum / static_cast<double>(pl.inf_idx.size());
  }
  if (!pl.loo_idx.empty()) {
    for (int64_t i : pl.loo_idx) out.loo.push_back(fx - bank.value(i));
    out.loo_kendall = kendall_tau(phi, out.loo);
  }
  out.forward_passes = bank.forward_passes();
  out.masks_scored = bank.n_masks();
}

void check_fractions(const FaithfulnessOptions& options) {
  for (double q : options.fractions) {
    if (!(q > 0 && q <= 1)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "fraction " + std::to_string(q) + " is outside (0, 1]",
                  "give top fractions such as 0.01,0.05,0.1,0.2,0.5");
    }
  }
}

}  // namespace

Faithfulness evaluate_faithfulness(const Model& model, const ExplainRequest& request,
                                   const Attribution& attribution,
                                   const FaithfulnessOptions& options) {
  explain::Problem p = explain::prepare(model, evaluate::pinned_request(request, attribution));
  evaluate::check_matches(p, attribution);
  check_fractions(options);
  const int64_t F = p.n_features();
  const std::vector<double> phi = attribution.total();
  evaluate::MaskBank bank(p, options.removal, options.batch_size);
  Faithfulness out;
  Plan pl = plan_masks(bank, F, rank_order(phi), options, out);
  bank.run();
  finish(bank, F, phi, pl, options, out);
  return out;
}

std::vector<Faithfulness> evaluate_faithfulness(const Model& model, const ExplainRequest& request,
                                                const std::vector<Attribution>& attributions,
                                                const FaithfulnessOptions& options) {
  if (attributions.empty()) return {};
  const ExplainRequest pinned = evaluate::pinned_request(request, attributions[0]);
  explain::Problem p = explain::prepare(model, pinned);
  check_fractions(options);
  for (const Attribution& a : attributions) {
    evaluate::check_matches(p, a);
    if (a.step_tokens != attributions[0].step_tokens) {
      throw Error(ErrorCode::kInvalidArgument,
                  "the attributions by '" + a.method + "' and '" + attributions[0].method +
                      "' explain different tokens",
                  "evaluate attributions of one target together, or each on its own");
    }
  }
  const int64_t F = p.n_features();
  evaluate::MaskBank bank(p, options.removal, options.batch_size);
  std::vector<Faithfulness> out(attributions.size());
  std::vector<Plan> plans;
  std::vector<std::vector<double>> phis;
  for (size_t i = 0; i < attributions.size(); ++i) {
    phis.push_back(attributions[i].total());
    plans.push_back(plan_masks(bank, F, rank_order(phis[i]), options, out[i]));
  }
  bank.run();
  for (size_t i = 0; i < attributions.size(); ++i)
    finish(bank, F, phis[i], plans[i], options, out[i]);
  return out;
}

nlohmann::json faithfulness_to_json(const Faithfulness& f) {
  nlohmann::ordered_json j;
  j["full_value"] = f.full_value;
  j["empty_value"] = f.empty_value;
  if (!f.fractions.empty()) {
    j["fractions"] = f.fractions;
    j["counts"] = f.counts;
    j["comprehensiveness"] = f.comprehensiveness;
    j["sufficiency"] = f.sufficiency;
    j["comprehensiveness_aopc"] = f.comprehensiveness_aopc;
    j["sufficiency_aopc"] = f.sufficiency_aopc;
  }
  if (!f.deletion.fraction.empty()) {
    j["deletion"] = {
        {"fraction", f.deletion.fraction}, {"value", f.deletion.value}, {"area", f.deletion.area}};
    j["insertion"] = {{"fraction", f.insertion.fraction},
                      {"value", f.insertion.value},
                      {"area", f.insertion.area}};
  }
  j["infidelity"] = f.infidelity;
  if (!f.loo.empty()) {
    j["loo"] = f.loo;
    j["loo_kendall"] = f.loo_kendall;
  }
  j["forward_passes"] = f.forward_passes;
  j["masks_scored"] = f.masks_scored;
  return nlohmann::json(j);
}

}  // namespace candor
