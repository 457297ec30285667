// The audit pages added for issue 15 (counterfactual swaps, generation probes, generation
// uncertainty), rendered from hand-made audit JSON: the shared frame, user text escaped, the
// figures shown, balanced SVG and tables; Markdown for the two audits.
#include <nlohmann/json.hpp>

#include <string>

#include "candor/report.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

void expect_frame(const std::string& html) {
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(count(html, "<style>"), 1u);
  EXPECT_EQ(count(html, "<h1>"), 1u) << "the frame's title only";
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>"));
  EXPECT_EQ(count(html, "<table"), count(html, "</table>"));
}

TEST(AuditPages, Counterfactual) {
  json a = {{"audit", "counterfactual"}, {"attribute", "gender"}, {"lexicon", "built-in"},
            {"groups", {"male", "female"}}, {"model_kind", "classifier"}, {"model", {{"path", "m"}}},
            {"n_texts", 3}, {"n_mentioning", 2}, {"n_pairs", 2}, {"flip_share", 0.5},
            {"flip_share_ci", {0.0, 1.0}}, {"mean_abs_delta", 0.35}, {"mean_abs_delta_ci", {0.0, 0.7}},
            {"max_abs_delta", 0.7}, {"per_target", {{{"to", "swapped"}, {"n", 2}, {"flip_share", 0.5}, {"mean_abs_delta", 0.35}}}},
            {"worst", {{{"record", 1}, {"original", "He said <script>"}, {"swapped", "She said <script>"},
                        {"to", ""}, {"label_before", "pos"}, {"label_after", "neg"}, {"p_before", 0.9},
                        {"p_after", 0.2}, {"delta", -0.7},
                        {"words", {{{"from", "He"}, {"to", "She"}, {"effect", -0.7}}}}}}}};
  const std::string html = render_audit_html(a, "counterfactual <gender>");
  expect_frame(html);
  EXPECT_THAT(html, Not(HasSubstr("<script>")));
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;"));
  EXPECT_THAT(html, HasSubstr("<mark"));
  EXPECT_THAT(html, HasSubstr("0.5"));
  const std::string md = render_audit_markdown(a);
  EXPECT_THAT(md, HasSubstr("| flip share | 0.5"));
  EXPECT_THAT(md, HasSubstr("He->She"));
}

TEST(AuditPages, GenerationProbesAndUncertainty) {
  json g = {{"audit", "generation"}, {"model", "lm"}, {"scorer", "lexicon"}, {"n_samples", 4}, {"n_scored", 3},
            {"groups", {{{"group", "a<b"}, {"n", 2}, {"mean", 0.5}, {"ci", {0.2, 0.8}}, {"share_negative", 0.0},
                         {"share_positive", 1.0}, {"examples", {{{"prompt", "The a"}, {"continuation", " was <b>good</b>"}, {"score", 0.6}}}}},
                        {{"group", "c"}, {"n", 2}, {"mean", -0.25}, {"ci", {-0.5, 0.0}}, {"share_negative", 0.5},
                         {"share_positive", 0.0}, {"examples", json::array()}}}},
            {"gap", {{"value", 0.75}, {"between", {"a<b", "c"}}, {"ci", {0.3, 1.2}}, {"p_value", 0.02}}}};
  std::string html = render_audit_html(g, "probes");
  expect_frame(html);
  EXPECT_THAT(html, HasSubstr("a&lt;b"));
  EXPECT_THAT(html, HasSubstr("&lt;b&gt;good"));
  EXPECT_THAT(html, HasSubstr("p = 0.02"));
  EXPECT_THAT(render_audit_markdown(g), HasSubstr("| c | 2 | -0.25"));
  json u = {{"audit", "uncertainty"}, {"model", "lm"}, {"prompt", "Once"},
            {"uncertainty",
             {{"answer", {{"n_tokens", 2}, {"mean_logprob", -0.5}, {"min_logprob", -0.9}, {"min_logprob_at", 1}}},
              {"tokens", {{{"text", " upon"}, {"entropy", 0.1}, {"margin", 0.9}, {"logprob", -0.1}, {"uncertain", false}},
                          {{"text", " <a"}, {"entropy", 2.0}, {"margin", 0.05}, {"logprob", -0.9}, {"uncertain", true}}}},
              {"n_uncertain", 1},
              {"rule", {{"entropy_at_least", 1.5}, {"margin_below", 0.1}}},
              {"self_consistency", {{"n_samples", 3}, {"temperature", 1.0}, {"agreement", 2.0 / 3}, {"entropy", 0.64},
                                    {"normalised_entropy", 0.58}, {"clusters", {{{"answer", "upon a"}, {"count", 2}}}}}}}}};
  html = render_audit_html(u, "uncertainty");
  expect_frame(html);
  EXPECT_EQ(count(html, "outline:2px"), 1u) << "one uncertain token outlined";
  EXPECT_THAT(html, HasSubstr("&lt;a"));
  EXPECT_THAT(html, HasSubstr("Self-consistency"));
}

}  // namespace
}  // namespace candor
