// Rendering cost of the largest reports (issue 14): a 512-token explanation with 64 generated
// steps and four scored methods plus the logit lens (step x feature matrices of 64 x 448), and
// the distillation page of a GAM over 60 features. Prints the median render time of 5 runs, the
// page size, and the ratio to writing the same result as JSON (attribution_to_json /
// report.json) in the same run.
//
// The explanation's scores are seeded random numbers of the real shapes (rendering depends on
// the shapes, not the values); the GAM is fitted for real on a seeded 2,000-row table.
//
// Run: build/bench/bench_report
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "candor/data.h"
#include "candor/distill.h"
#include "candor/explain.h"
#include "candor/report.h"

namespace candor {
namespace {

using Clock = std::chrono::steady_clock;

double median_ms(const std::function<size_t()>& f, size_t* bytes) {
  std::vector<double> t;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    *bytes = f();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[2];
}

std::vector<Attribution> big_explanation() {
  const int64_t n_input = 448, n_steps = 64, n_tokens = n_input + n_steps - 1;
  std::mt19937 rng(1);
  std::normal_distribution<double> z(0, 1);
  const char* words[] = {" the", " girl", " Lily", " was", " happy", ".", " She", " saw",
                         " a", " big", " red", " ball", "\n", " and", " ran", " to"};
  Attribution base;
  base.target_function = "logprob";
  for (int64_t t = 0; t < n_tokens; ++t) {
    base.tokens.push_back(static_cast<TokenId>(t % 16 + 3));
    base.token_texts.push_back(words[t % 16]);
  }
  base.n_input_tokens = n_input;
  for (int64_t t = 0; t < n_input; ++t) base.features.push_back({"", t, t + 1});
  for (int64_t s = 0; s < n_steps; ++s) {
    base.step_tokens.push_back(static_cast<TokenId>((n_input + s) % 16 + 3));
    base.step_texts.push_back(words[(n_input + s) % 16]);
    base.step_positions.push_back(n_input - 1 + s);
    base.target_values.push_back(-1 - 0.01 * s);
    base.baseline_values.push_back(-4);
  }
  std::vector<Attribution> out;
  for (const char* m : {"occlusion", "integrated_gradients", "input_x_gradient", "attention"}) {
    Attribution a = base;
    a.method = m;
    a.options = {{"n_steps", "64"}};
    for (int64_t s = 0; s < n_steps; ++s)
      for (int64_t f = 0; f < n_input; ++f) a.scores.push_back(z(rng) / (1 + 0.05 * (n_input - f)));
    out.push_back(std::move(a));
  }
  Attribution lens = base;
  lens.method = "logit_lens";
  nlohmann::json layers = nlohmann::json::array();
  for (int l = 0; l < 5; ++l) {
    nlohmann::json steps = nlohmann::json::array();
    for (int64_t s = 0; s < n_steps; ++s) {
      nlohmann::json top = nlohmann::json::array();
      for (int k = 0; k < 5; ++k) top.push_back({{"text", words[(s + k) % 16]}, {"prob", 0.3 / (k + 1)}});
      steps.push_back({{"target_prob", 0.2 * l}, {"target_rank", 5 - l}, {"top", top}});
    }
    layers.push_back({{"name", l ? "layer " + std::to_string(l) : "embeddings"}, {"steps", steps}});
  }
  lens.extra["logit_lens"] = {{"top_k", 5}, {"layers", layers}};
  out.push_back(std::move(lens));
  return out;
}

nlohmann::json gam_report() {
  std::mt19937 rng(2);
  std::normal_distribution<double> z(0, 1);
  std::string csv;
  for (int c = 0; c < 60; ++c) csv += "x" + std::to_string(c) + ",";
  csv += "teacher\n";
  for (int i = 0; i < 2000; ++i) {
    double s = 0;
    for (int c = 0; c < 60; ++c) {
      const double v = z(rng);
      s += (c < 10 ? 1.0 : 0.1) * (c % 2 ? v : v * v - 1);
      csv += std::to_string(v) + ",";
    }
    csv += s > 0 ? "yes\n" : "no\n";
  }
  const data::Table t = data::parse_csv(csv, "sixty.csv");
  auto teacher = distill::column_teacher(t, "teacher");
  distill::DistillOptions o;
  o.student = distill::parse_student("gam");
  o.features.exclude = {"teacher"};
  const auto t0 = Clock::now();
  const distill::DistillResult r = distill::distill(t, *teacher, o);
  std::printf("gam fitted on 2000 rows x 60 features in %.1f s\n",
              std::chrono::duration<double>(Clock::now() - t0).count());
  return r.to_json();
}

}  // namespace
}  // namespace candor

int main() {
  using namespace candor;
  const std::vector<Attribution> as = big_explanation();
  ReportContext c;
  c.title = "512-token explanation";
  c.model = "synthetic shapes";
  c.prompt = "Once upon a time";
  size_t html_bytes = 0, json_bytes = 0;
  const double html_ms = median_ms([&] { return render_html(as, c).size(); }, &html_bytes);
  const double json_ms = median_ms(
      [&] {
        size_t n = 0;
        for (const auto& a : as) n += attribution_to_json(a).dump().size();
        return n;
      },
      &json_bytes);
  // The matrices too large for the page go to a CSV beside it (candor explain --html).
  size_t csv_bytes = 0;
  const double csv_ms = median_ms([&] { return step_matrix_csv(as).size(); }, &csv_bytes);
  std::printf("explanation 512 tokens (448 input features, 64 steps), 4 methods + logit lens:\n"
              "  html %.1f ms, %.2f MB; json %.1f ms, %.2f MB; html/json time %.2fx\n"
              "  step x feature CSV beside the page: %.1f ms, %.2f MB; (html + csv)/json time %.2fx\n",
              html_ms, html_bytes / 1e6, json_ms, json_bytes / 1e6, html_ms / json_ms, csv_ms,
              csv_bytes / 1e6, (html_ms + csv_ms) / json_ms);
  const nlohmann::json g = gam_report();
  const double gam_ms =
      median_ms([&] { return render_distill_html(g, "gam over 60 features").size(); }, &html_bytes);
  const double gjson_ms = median_ms([&] { return g.dump(2).size(); }, &json_bytes);
  std::printf("gam over 60 features: html %.1f ms, %.2f MB; report.json %.1f ms, %.2f MB; "
              "html/json time %.2fx\n",
              gam_ms, html_bytes / 1e6, gjson_ms, json_bytes / 1e6, gam_ms / gjson_ms);
  return 0;
}
