// Completeness of integrated gradients on stories260K over a fixed set of prompts and targets:
// for each rule (an integrated_gradients spec), the relative completeness error
// |sum of scores - (f(x) - f(baseline))| / |f(x) - f(baseline)| of every target step, its max and
// median, how many steps miss the bound 1e-3 |f(x) - f(baseline)| + 1e-4, and the
// gradient points spent per step. Unk baseline, log-probability targets (contrasts: a difference
// of log-probabilities), one thread.
//
// Run: bench_ig_completeness [--spec=integrated_gradients:...]... [--set=main|held-out|both]
//                             [--verbose]
//   default specs: the default rule, the probe-placed composite rule of before (rule=probed) and
//   one plain 64-point Gauss-Legendre rule (rule=plain).
// Environment: CANDOR_SHARED (the shared folder).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.h"
#include "candor/error.h"
#include "candor/explain.h"
#include "candor/generate.h"
#include "candor/runtime.h"

namespace candor {
namespace {

enum class Kind { kNext, kSpan, kContrast };

struct Case {
  std::string prompt;  // text; a "seed:N" prompt is sampled from the model (see below)
  Kind kind;
  int span = 0;  // tokens of a greedy continuation for kSpan
};

// The fixed set: the completeness test's three prompts with all three targets, the five longer
// prompts of its second test with 6-token spans, and 16 more prompts (12 written, 4 sampled from
// the model with fixed seeds) with next-token, contrast and 4-6-token span targets.
std::vector<Case> cases_of(const std::vector<const char*>& more);

std::vector<Case> cases() {
  std::vector<Case> c;
  for (const char* p : {"Once upon a time", "The little dog was happy because",
                        "Lily went to the park and saw a big"}) {
    c.push_back({p, Kind::kNext});
    c.push_back({p, Kind::kSpan, 4});
    c.push_back({p, Kind::kContrast});
  }
  for (const char* p :
       {"Tom had a red ball. He liked to throw it to his friend",
        "The sun was hot, so the children went to the",
        "She was sad because her toy was broken. Her mom said", "The boy ran to his mom and said",
        "Max and Mia played with the blocks. Then"})
    c.push_back({p, Kind::kSpan, 6});
  std::vector<Case> m =
      cases_of({"One day, a cat and a bird", "Sue found a shiny stone in the garden. She",
                "The old man sat on the bench and", "It was a rainy day. Tim wanted to",
                "Anna liked to draw pictures of", "The bird flew high in the sky and",
                "Mom made a big cake for", "The cat was hungry, so it",
                "Sam and his dad went fishing. They", "There was a little girl named",
                "The teddy bear was soft and", "Ben", "seed:1", "seed:2", "seed:3", "seed:4"});
  c.insert(c.end(), m.begin(), m.end());
  return c;
}

// A second set, written after the rule's constants were chosen on the first (a check that they
// were not fitted to it): 16 other prompts (12 written, 4 sampled with seeds 5-8) with the
// same mix of targets.
std::vector<Case> held_out_cases() {
  return cases_of(
      {"The frog jumped into the pond and", "Jack had a big box of toys. He gave one to",
       "Grandma baked cookies, and the kids", "A little fish swam in the blue sea. It",
       "The girl put on her red hat and", "Bob was tired after school, so he",
       "The dog barked at the", "Lucy and her brother built a sandcastle. Then a wave",
       "The moon was big and bright. Tim looked up and", "Kitty found a ball of yarn under the",
       "The farmer had many cows. One day", "Amy wanted a new doll, but her mom said", "seed:5",
       "seed:6", "seed:7", "seed:8"});
}

std::vector<Case> cases_of(const std::vector<const char*>& more) {
  std::vector<Case> c;
  int i = 0;
  for (const char* p : more) {
    switch (i % 4) {
      case 0:
        c.push_back({p, Kind::kSpan, 5});
        break;
      case 1:
        c.push_back({p, Kind::kNext});
        c.push_back({p, Kind::kSpan, 4});
        break;
      case 2:
        c.push_back({p, Kind::kContrast});
        c.push_back({p, Kind::kSpan, 6});
        break;
      default:
        c.push_back({p, Kind::kNext});
        c.push_back({p, Kind::kContrast});
        break;
    }
    ++i;
  }
  return c;
}

std::vector<TokenId> prompt_ids(const Model& m, const std::string& text) {
  if (text.rfind("seed:", 0) == 0) {
    // 12 tokens sampled at temperature 1 after "Once upon a time" with the given seed.
    GenerateOptions o;
    o.max_new_tokens = 12;
    o.temperature = 1.0f;
    o.seed = static_cast<uint64_t>(std::stoi(text.substr(5)));
    GenerateResult g = generate(m, "Once upon a time", o);
    std::vector<TokenId> ids = g.prompt_ids;
    ids.insert(ids.end(), g.generated_ids.begin(), g.generated_ids.end());
    return ids;
  }
  return m.tokenizer().encode(text, true, false);
}

std::vector<TokenId> greedy(const Model& m, std::vector<TokenId> ids, int n) {
  std::vector<TokenId> out;
  for (int i = 0; i < n; ++i) {
    TokenId t = static_cast<TokenId>(m.logits(ids)[-1].argmax().item<int64_t>());
    out.push_back(t);
    ids.push_back(t);
  }
  return out;
}

ExplainRequest request(const Model& m, const Case& c) {
  ExplainRequest r;
  r.input_ids = prompt_ids(m, c.prompt);
  r.baseline.kind = Baseline::Kind::kUnk;
  if (c.kind == Kind::kSpan) r.target.span = greedy(m, r.input_ids, c.span);
  if (c.kind == Kind::kContrast) {
    at::Tensor top = std::get<1>(m.logits(r.input_ids)[-1].topk(2));
    r.target.function = TargetFunction::kContrast;
    r.target.token = static_cast<TokenId>(top[0].item<int64_t>());
    r.target.contrast_token = static_cast<TokenId>(top[1].item<int64_t>());
  }
  return r;
}

std::string label(const Case& c) {
  std::string k = c.kind == Kind::kNext       ? "next"
                  : c.kind == Kind::kContrast ? "contrast"
                                              : "span" + std::to_string(c.span);
  return "'" + c.prompt + "' " + k;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run(int argc, char** argv) {
  std::vector<std::string> specs;
  bool verbose = false;
  std::string set = "main";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--spec=", 0) == 0) {
      specs.push_back(a.substr(7));
    } else if (a.rfind("--set=", 0) == 0 &&
               (a.substr(6) == "main" || a.substr(6) == "held-out" || a.substr(6) == "both")) {
      set = a.substr(6);
    } else if (a == "--verbose") {
      verbose = true;
    } else {
      std::fprintf(stderr,
                   "error: unknown argument '%s'\nhint: bench_ig_completeness "
                   "[--spec=integrated_gradients:...]... [--set=main|held-out|both] [--verbose]\n",
                   a.c_str());
      return 2;
    }
  }
  if (specs.empty()) {
    specs = {"integrated_gradients", "integrated_gradients:rule=probed",
             "integrated_gradients:rule=plain"};
  }
  const std::string dir = bench::shared_dir() + "/models/stories260K";
  std::unique_ptr<Model> model = load_model(dir);
  std::vector<Case> all;
  if (set != "held-out") all = cases();
  if (set != "main") {
    const std::vector<Case> h = held_out_cases();
    all.insert(all.end(), h.begin(), h.end());
  }
  std::vector<ExplainRequest> requests;
  for (const Case& c : all) {
    requests.push_back(request(*model, c));
    if (verbose && c.prompt.rfind("seed:", 0) == 0) {
      std::fprintf(stderr, "%s = '%s'\n", c.prompt.c_str(),
                   model->tokenizer().decode(requests.back().input_ids).c_str());
    }
  }
  int64_t n_steps = 0;
  for (const ExplainRequest& r : requests)
    n_steps += r.target.span.empty() ? 1 : static_cast<int64_t>(r.target.span.size());
  std::printf(
      "# integrated gradients completeness on stories260K\n\n%s set: %zu targets (%lld steps), "
      "unk baseline, threads %d\n\n",
      set.c_str(), all.size(), static_cast<long long>(n_steps), num_threads());
  std::printf(
      "| rule | max rel. error | median | steps over 1e-3·|Δ| + 1e-4 | worst target | "
      "gradient points per step | seconds |\n|---|---:|---:|---:|---|---:|---:|\n");
  for (const std::string& spec : specs) {
    std::unique_ptr<Explainer> ex = make_explainer(spec);
    std::vector<double> rel;
    int over = 0;
    double worst = -1, points = 0, steps = 0;
    std::string worst_case;
    const auto start = std::chrono::steady_clock::now();
    for (size_t k = 0; k < all.size(); ++k) {
      Attribution a = ex->explain(*model, requests[k]);
      double case_worst = 0;
      for (int64_t s = 0; s < a.n_steps(); ++s) {
        const double gap = a.target_values[s] - a.baseline_values[s];
        const double delta = a.convergence_delta[s];
        const double r = std::abs(delta) / std::max(std::abs(gap), 1e-12);
        rel.push_back(r);
        case_worst = std::max(case_worst, r);
        if (std::abs(delta) > 1e-3 * std::abs(gap) + 1e-4) {
          ++over;
          if (verbose) {
            std::fprintf(stderr, "  over: %s step %lld: %.2e relative, |f(x) - f(x')| = %.3g\n",
                         label(all[k]).c_str(), static_cast<long long>(s), r, std::abs(gap));
          }
        }
        if (r > worst) {
          worst = r;
          worst_case = label(all[k]) + " step " + std::to_string(s);
        }
      }
      steps += static_cast<double>(a.n_steps());
      // Gradient points per step: a rule's points (the first points of a span's rules are
      // evaluated once, with a backward per step, and count for every rule).
      if (a.extra.contains("rule_points")) {
        for (int64_t p : a.extra["rule_points"].get<std::vector<int64_t>>())
          points += static_cast<double>(p);
      } else if (a.extra.contains("gradient_points")) {
        points += a.extra["gradient_points"].get<double>();
      }
      if (verbose) {
        std::fprintf(stderr, "  %-70s %.2e%s\n", label(all[k]).c_str(), case_worst,
                     case_worst > 1e-3 ? "  over" : "");
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("| `%s` | %.2e | %.2e | %d of %zu | %s | %.1f | %.1f |\n", spec.c_str(), worst,
                median(rel), over, rel.size(), worst_case.c_str(), points / steps, secs);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace candor

int main(int argc, char** argv) {
  candor::prepare_process(argc, argv);
  candor::set_num_threads(1);
  try {
    return candor::run(argc, argv);
  } catch (const candor::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
