// Evaluator cost benchmark: the quality block of `candor explain --evaluate` (comprehensiveness
// and sufficiency at 5 fractions, embedding-space sensitivity with 4 samples) and the full
// faithfulness set, in forward-pass equivalents (time / one plain forward of the same input,
// same run) next to the forward passes they need in principle (one per masked input, no prefix
// reuse, no deduplication; sensitivity: n_samples explanations).
//
// Run: bench_evaluate [--models=stories260K,llama768] [--tokens=128] [--method=input_x_gradient]
// Environment: CANDOR_SHARED (the shared folder), CANDOR_BENCH_THREADS (intra-op threads).
#include <ATen/ATen.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "candor/evaluate.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "candor/runtime.h"

namespace candor {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(const std::function<void()>& f) {
  auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median_seconds(const std::function<void()>& f, int reps) {
  std::vector<double> v;
  for (int i = 0; i < reps; ++i) v.push_back(seconds(f));
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void run_model(const std::string& name, const Model& model, int64_t T, const std::string& spec) {
  std::vector<TokenId> ids = bench::make_prompt(model, name != "stories260K", T);
  ExplainRequest req;
  req.input_ids = ids;
  at::Tensor t = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, T});
  double fwd = median_seconds(
      [&] {
        at::NoGradGuard ng;
        model.forward_tokens(t);
      },
      5);
  auto ex = make_explainer(spec);
  Attribution a = ex->explain(model, req);
  const double F = static_cast<double>(a.n_features());
  std::printf(
      "\n%s, T = %lld (%lld features), %s; one plain forward %.1f ms; explanation %.1f "
      "FPE counted\n",
      name.c_str(), static_cast<long long>(T), static_cast<long long>(a.n_features()), spec.c_str(),
      fwd * 1e3, a.forward_passes);
  std::printf("  %-44s %10s %10s %12s %10s\n", "block", "time ms", "FPE(time)", "FPE(counted)",
              "principle");

  // The quality block, as `candor explain --evaluate` runs it.
  QualityOptions qo;
  std::vector<Attribution> as = {a};
  std::vector<const Explainer*> ptrs = {ex.get()};
  double tq = seconds([&] { attach_quality(model, req, ptrs, as, qo); });
  const auto& q = as[0].extra["quality"];
  // In principle: f(x) and one forward per comprehensiveness and sufficiency mask (5 + 5), and
  // n_samples explanations for the sensitivity.
  double principle_cs = 1 + 2.0 * 5;
  double principle_sens = qo.robustness.n_samples * a.forward_passes;
  std::printf("  %-44s %10.1f %10.1f %12.1f %10.1f\n", "quality block (comp+suff+sensitivity)",
              tq * 1e3, tq / fwd, q["forward_passes"].get<double>(), principle_cs + principle_sens);
  FaithfulnessOptions cs = qo.faithfulness;
  Faithfulness f;
  double tcs = seconds([&] { f = evaluate_faithfulness(model, req, a, cs); });
  std::printf("  %-44s %10.1f %10.1f %12.1f %10.1f\n", "  of which comp+suff (11 masks)", tcs * 1e3,
              tcs / fwd, f.forward_passes, principle_cs);
  RobustnessOptions ro = qo.robustness;
  Robustness r;
  double tr = seconds([&] { r = evaluate_robustness(model, req, *ex, a, ro); });
  std::printf("  %-44s %10.1f %10.1f %12.1f %10.1f\n", "  of which sensitivity (4 explanations)",
              tr * 1e3, tr / fwd, r.forward_passes, principle_sens);
  // All faithfulness metrics, curves on 21 points.
  FaithfulnessOptions all;
  all.curve_points = 21;
  double tall = seconds([&] { f = evaluate_faithfulness(model, req, a, all); });
  double principle_all = 1 + 1 + 10 + 2 * 21 + all.infidelity_samples + F;
  std::printf("  %-44s %10.1f %10.1f %12.1f %10.1f  (%lld distinct masks)\n",
              "all faithfulness (curves 21 pts, infid 32, LOO)", tall * 1e3, tall / fwd,
              f.forward_passes, principle_all, static_cast<long long>(f.masks_scored));
  FaithfulnessOptions del = all;
  del.removal = Removal::kDelete;
  double tdel = seconds([&] { f = evaluate_faithfulness(model, req, a, del); });
  std::printf("  %-44s %10.1f %10.1f %12.1f %10.1f\n", "  same with deletion removal", tdel * 1e3,
              tdel / fwd, f.forward_passes, principle_all);
}

}  // namespace
}  // namespace candor

int main(int argc, char** argv) {
  candor::prepare_process(argc, argv);
  std::string models = "stories260K,llama768", method = "input_x_gradient";
  int64_t T = 128;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--models=", 0) == 0)
      models = a.substr(9);
    else if (a.rfind("--tokens=", 0) == 0)
      T = std::stoll(a.substr(9));
    else if (a.rfind("--method=", 0) == 0)
      method = a.substr(9);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (const char* th = std::getenv("CANDOR_BENCH_THREADS")) candor::set_num_threads(std::atoi(th));
  try {
    if (models.find("stories260K") != std::string::npos) {
      std::string why;
      auto m = candor::bench::load_stories(&why);
      if (m)
        candor::run_model("stories260K", *m, T, method);
      else
        std::printf("stories260K skipped: %s\n", why.c_str());
    }
    if (models.find("llama768") != std::string::npos) {
      auto m = candor::bench::make_large();
      candor::run_model("llama768", *m, T, method);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
