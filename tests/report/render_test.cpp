// The report pages rendered directly (no CLI): the explanation page from the explain job on the
// built-in LM, the evaluation page from the evaluate job's summary, and the distillation page from
// a student's report JSON. Each page must be one self-contained document in the shared frame:
// one stylesheet, no script or network reference, user text escaped, balanced SVG. The pages are
// written under $CANDOR_TEST_ARTIFACTS (default: a temporary folder) for a person to open.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>
#include <string>

#include "candor/distill.h"
#include "candor/jobs.h"
#include "candor/report.h"
#include "report/html_page.h"
#include "test_util.h"

namespace candor {
namespace {

const std::string kBuiltin = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

const Model& builtin_lm() {
  static std::unique_ptr<Model> m = load_model(kBuiltin);
  return *m;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

void save_artifact(const std::string& name, const std::string& html) {
  const char* dir = std::getenv("CANDOR_TEST_ARTIFACTS");
  const std::string d = dir ? dir : testing::temp_dir();
  std::ofstream(d + "/" + name) << html;
}

// What every page of candor shares.
void expect_page(const std::string& html, const std::string& title) {
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u) << "a page starts with its doctype";
  EXPECT_EQ(count(html, "<style>"), 1u) << "one stylesheet";
  EXPECT_NE(html.find(report::stylesheet()), std::string::npos) << "the shared stylesheet";
  EXPECT_NE(html.find("<h1>" + report::html_escape(title) + "</h1>"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos) << "no scripts";
  EXPECT_EQ(std::regex_search(html, std::regex(R"re((src|href)\s*=\s*['"]?https?:)re")), false)
      << "self-contained: nothing loaded from the network";
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>")) << "balanced SVG";
  EXPECT_EQ(count(html, "<table"), count(html, "</table>")) << "balanced tables";
  EXPECT_NE(html.find("</body></html>"), std::string::npos);
}

TEST(HtmlPage, EscapesAndFormats) {
  EXPECT_EQ(report::html_escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
  EXPECT_EQ(report::html_escape("a\nb"), "a\nb");
  EXPECT_EQ(report::html_escape("a\nb", true), "a&#x21B5;b");
  EXPECT_EQ(report::fmt_num(0.123456), "0.1235");
  EXPECT_EQ(report::fmt_num(1234567.0, 3), "1.23e+06");
  EXPECT_EQ(report::fmt_pct(0.875), "87.5%");
  EXPECT_EQ(report::fmt_signed(-0.25, 2), "\xE2\x88\x92" "0.25");
  EXPECT_EQ(report::fmt_signed(0.5), "+0.5");
  EXPECT_EQ(report::diverging_colour(0, 1), "#ffffff");
  EXPECT_EQ(report::diverging_colour(1, 1), "#b2182b");   // the positive end: red
  EXPECT_EQ(report::diverging_colour(-5, 1), "#2166ac");  // clamped to the negative end: blue
  EXPECT_EQ(report::diverging_colour(0.5, 1), "#f4a582");  // orange half-way, no green
  EXPECT_EQ(report::sequential_colour(0), "#ffffff");
  EXPECT_EQ(report::sequential_colour(1), "#08306b");
  EXPECT_EQ(report::diverging_colour(3, 0), "#ffffff");   // no scale: no colour
}

// WCAG 2 contrast: the reference values of the definition, and text on every colour of both
// scales reaching AA (4.5:1).
TEST(HtmlPage, TextOnEveryScaleColourReachesWcagAa) {
  EXPECT_NEAR(report::contrast_ratio("#000000", "#ffffff"), 21.0, 1e-9);
  EXPECT_NEAR(report::contrast_ratio("#777777", "#ffffff"), 4.48, 0.01);
  EXPECT_NEAR(report::relative_luminance("#ff0000"), 0.2126, 1e-9);
  EXPECT_EQ(report::text_colour_on("#ffffff"), "#000000");
  EXPECT_EQ(report::text_colour_on("#08306b"), "#ffffff");
  for (int i = -50; i <= 50; ++i) {
    const std::string d = report::diverging_colour(i / 50.0, 1), s = report::sequential_colour((i + 50) / 100.0);
    EXPECT_GE(report::contrast_ratio(d, report::text_colour_on(d)), 4.5) << d;
    EXPECT_GE(report::contrast_ratio(s, report::text_colour_on(s)), 4.5) << s;
  }
}

TEST(HtmlPage, LegendsTicksAndAxes) {
  const std::string legend = report::diverging_legend(2, "score");
  EXPECT_NE(legend.find("class='legend'"), std::string::npos);
  for (const char* tick : {">\xE2\x88\x92" "2<", ">\xE2\x88\x92" "1<", ">0<", ">+1<", ">+2<"})
    EXPECT_NE(legend.find(tick), std::string::npos) << tick << " in " << legend;
  EXPECT_NE(report::sequential_legend(0, 1, "p").find(">0.5<"), std::string::npos);
  EXPECT_EQ(report::nice_ticks(0, 1, 5), (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
  EXPECT_EQ(report::nice_ticks(-3, 7, 5), (std::vector<double>{-2, 0, 2, 4, 6}));
  report::Axes ax;
  ax.x_title = "fraction removed";
  ax.y_title = "f";
  const std::string svg = ax.open("a chart") + "</svg>";
  EXPECT_NE(svg.find("class='chart'"), std::string::npos);
  EXPECT_NE(svg.find("<text class='axis-title' x='"), std::string::npos);
  EXPECT_NE(svg.find(">fraction removed</text>"), std::string::npos);
  EXPECT_DOUBLE_EQ(ax.px(0), ax.left);
  EXPECT_DOUBLE_EQ(ax.py(0), ax.height - ax.bottom);
  EXPECT_EQ(report::shorten("abcdef", 3), "abc\xE2\x80\xA6");
  EXPECT_EQ(report::shorten("\xE2\x90\xA3" "ab", 2), "\xE2\x90\xA3" "a\xE2\x80\xA6");
}

TEST(Reports, ExplanationPage) {
  jobs::ExplainOptions o;
  o.model.model = &builtin_lm();
  o.model.path = "builtin <lm>";
  o.prompt = "Tom & Lily <went> to the";
  o.methods = {"occlusion", "integrated_gradients:n_steps=8"};
  const jobs::ExplainResult r = jobs::run_explain(o);
  ReportContext c = r.context;
  c.title = "why <this> & that";
  const std::string html = render_html(r.attributions, c);
  save_artifact("explanation.html", html);
  expect_page(html, c.title);
  EXPECT_NE(html.find("occlusion"), std::string::npos);
  EXPECT_NE(html.find("integrated_gradients"), std::string::npos);
  EXPECT_NE(html.find("class='legend'"), std::string::npos) << "the colour scale is drawn";
  EXPECT_NE(html.find("class=summary"), std::string::npos) << "a person's summary on top";
  EXPECT_EQ(html.find("<went>"), std::string::npos) << "the prompt is escaped";
  EXPECT_NE(html.find("&lt;"), std::string::npos);
  EXPECT_EQ(html.find("builtin <lm>"), std::string::npos);
}

TEST(Reports, EvaluationPage) {
  const std::string dir = testing::temp_dir();
  {
    std::ofstream f(dir + "/texts.jsonl");
    for (const char* t : {"Once upon a time there was a girl.", "The dog ran to the <park>.",
                          "Tom had a red ball."})
      f << nlohmann::json{{"text", t}}.dump() << "\n";
  }
  jobs::EvaluateOptions o;
  o.model.model = &builtin_lm();
  o.model.path = "builtin-lm";
  o.data = dir + "/texts.jsonl";
  o.methods = {"occlusion", "input_x_gradient"};
  o.metrics = {"comprehensiveness", "deletion"};
  o.max_tokens = 10;
  o.curve_points = 4;
  o.bootstrap = 20;
  o.decoys = true;
  jobs::FileRecordStore store(dir + "/out");
  const jobs::EvaluateResult r = jobs::run_evaluate(o, store);
  const std::string html = render_benchmark_html(r.summary);
  save_artifact("evaluation.html", html);
  expect_page(html, "candor evaluate");
  EXPECT_NE(html.find("occlusion"), std::string::npos);
  EXPECT_NE(html.find("comprehensiveness"), std::string::npos);
  EXPECT_GE(count(html, "<polyline"), 2u) << "a deletion curve per method";
  EXPECT_GE(count(html, "stroke-dasharray="), 2u) << "lines told apart without colour";
  EXPECT_NE(html.find(">fraction of features removed (most important first)</text>"),
            std::string::npos) << "axis titles";
  EXPECT_NE(html.find("class=summary"), std::string::npos);
  EXPECT_NE(html.find("<dt>comprehensiveness ↑</dt><dd>How much the target drops"), std::string::npos)
      << "a sentence per metric with its direction";
  EXPECT_NE(html.find("Decoys: win and catch rates"), std::string::npos);
  // The page the store wrote is the same page.
  std::ifstream written(dir + "/out/report.html");
  std::stringstream ss;
  ss << written.rdbuf();
  EXPECT_EQ(ss.str(), html);
  const std::string md = render_benchmark_markdown(r.summary);
  EXPECT_NE(md.find("| occlusion"), std::string::npos) << md;
}

TEST(Reports, DistillationPageOfEachStudent) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0, 100);
  std::string csv = "age,colour,teacher\n";
  const char* colours[] = {"red", "green", "<blue>"};
  for (int i = 0; i < 400; ++i) {
    const double age = u(rng);
    const int c = static_cast<int>(rng() % 3);
    csv += std::to_string(age) + "," + colours[c] + "," + ((age > 40 && c != 2) ? "yes" : "no") +
           "\n";
  }
  const data::Table t = data::parse_csv(csv, "ages.csv");
  auto teacher = distill::column_teacher(t, "teacher");
  for (const char* spec : {"linear", "tree:max_depth=3", "gam"}) {
    distill::DistillOptions o;
    o.student = distill::parse_student(spec);
    o.label_column = "teacher";
    const distill::DistillResult d = distill::distill(t, *teacher, o);
    const std::string title = std::string("student ") + spec;
    const std::string html = render_distill_html(d.to_json(), title);
    save_artifact(std::string("distill-") + std::string(spec).substr(0, 4) + ".html", html);
    expect_page(html, title);
    EXPECT_NE(html.find("yes"), std::string::npos) << spec << ": class names appear";
    EXPECT_NE(html.find("age"), std::string::npos) << spec << ": feature names appear";
    EXPECT_EQ(html.find("<blue>"), std::string::npos) << spec << ": category values escaped";
    const std::string text = std::regex_replace(
        std::regex_replace(html, std::regex("<style>[^<]*</style>"), ""), std::regex("<[^>]*>|&#[0-9]+;"), " ");
    EXPECT_FALSE(std::regex_search(text, std::regex("#[0-9]"))) << spec << ": class names, not indices";
    EXPECT_NE(html.find("class=summary"), std::string::npos) << spec;
    EXPECT_NE(html.find("held-out rows it agrees with the teacher"), std::string::npos) << spec;
    if (std::string(spec) != "tree:max_depth=3")
      EXPECT_NE(html.find("log-odds of &#8216;yes&#8217; against &#8216;no&#8217;"), std::string::npos) << spec;
    else
      EXPECT_NE(html.find("<th>p(yes)</th>"), std::string::npos) << spec;
  }
}

// The fields the cross-validated students add to report.json (the grid and the chosen strength,
// coefficients per unit, bootstrap bands, monotone shapes, class names in rules): each shown.
TEST(Reports, DistillationPageShowsCrossValidationUnitsAndBands) {
  std::ifstream f(std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/report/distill_students.json");
  ASSERT_TRUE(f.good());
  const nlohmann::json doc = nlohmann::json::parse(f);
  for (const char* kind : {"linear", "tree", "gam"}) {
    nlohmann::json r = doc["report"];
    r["student"] = doc["students"][kind];
    const std::string html = render_distill_html(r, std::string("fields ") + kind);
    save_artifact(std::string("distill-fields-") + kind + ".html", html);
    expect_page(html, std::string("fields ") + kind);
    EXPECT_NE(html.find("-fold cross-validation on the training rows only"), std::string::npos) << kind;
    EXPECT_NE(html.find(" &#10003;</td>"), std::string::npos) << kind << ": the chosen value is marked";
    EXPECT_EQ(html.find(">cv<"), std::string::npos) << kind << ": cv is a table, not a setting";
    if (std::string(kind) == "linear") {
      EXPECT_NE(html.find("<th>weight per unit</th>"), std::string::npos);
      EXPECT_NE(html.find("per SD (13.89)"), std::string::npos);
      EXPECT_NE(html.find("in the original units"), std::string::npos);
      EXPECT_NE(html.find("log-odds of &#8216;healthy&#8217; against &#8216;diabetic&#8217;"), std::string::npos);
    }
    if (std::string(kind) == "tree") {
      EXPECT_NE(html.find("<b>class 'diabetic'</b>"), std::string::npos);
      EXPECT_NE(html.find("<th>p(healthy)</th>"), std::string::npos);
    }
    if (std::string(kind) == "gam") {
      EXPECT_NE(html.find("whiskers: shape +- 1.96 SD of 10 bootstrap refits"), std::string::npos);
      EXPECT_NE(html.find("<th>lower</th><th>upper</th><th>training rows</th>"), std::string::npos);
      EXPECT_EQ(count(html, "class='chart'"), 2u) << "one chart per shape";
    }
  }
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// Issue 13 (items 9 and 13): the console view says what the top-8 cut leaves out, shows a
// word's leading space, the quality block and the warnings; the benchmark table shows the decoys.
TEST(ConsoleView, TopCutLeadingSpacesQualityAndWarnings) {
  Attribution a;
  a.method = "occlusion";
  a.target_function = "prob";
  a.tokens = {1};
  a.token_texts = {"<s>"};
  for (int i = 0; i < 10; ++i) {
    a.tokens.push_back(10 + i);
    a.token_texts.push_back(i == 0 ? "the" : " w" + std::to_string(i));
    a.features.push_back({i == 0 ? "the" : "w" + std::to_string(i), i + 1, i + 2});
    a.scores.push_back(10.0 - i);
  }
  a.step_tokens = {5};
  a.step_texts = {" cat"};
  a.step_positions = {10};
  a.target_values = {0.995};
  a.baseline_values = {0.9};
  a.warnings = saturation_warnings(a);
  ASSERT_EQ(a.warnings.size(), 1u);
  a.extra["quality"] = {{"comprehensiveness_aopc", 0.25},
                        {"sufficiency_aopc", 0.125},
                        {"agreement_spearman", {{"integrated_gradients", 0.5}}}};
  const std::string c = render_console(a, false);
  EXPECT_THAT(c, ::testing::HasSubstr("target prob(\xE2\x90\xA3" "cat)"));
  EXPECT_THAT(c, ::testing::HasSubstr("warning: saturated target: p(' cat') = 0.995"));
  EXPECT_THAT(c, ::testing::HasSubstr("  \xE2\x90\xA3w1\n"));
  EXPECT_THAT(c, ::testing::HasSubstr("  the\n"));
  EXPECT_THAT(c, ::testing::HasSubstr("... and 2 more features"));
  EXPECT_THAT(c, ::testing::HasSubstr("quality: comprehensiveness AOPC 0.25"));
  EXPECT_THAT(c, ::testing::HasSubstr("sufficiency AOPC 0.125"));
  EXPECT_THAT(c, ::testing::HasSubstr("agreement (Spearman): integrated_gradients 0.500"));
  const std::string html = render_html({a}, ReportContext{});
  EXPECT_THAT(html, ::testing::HasSubstr("warning: saturated target"));
  // No warning for a target that does not saturate.
  a.target_function = "logodds";
  EXPECT_TRUE(saturation_warnings(a).empty());
}

// A step x feature matrix too large to print whole (40 steps x 60 features): the page prints the
// 16 steps and 24 features with the largest sums of |score| with their values, says how many are
// left out and names the CSV beside it; the CSV holds every cell.
TEST(Reports, LargeStepMatrixPrintsItsStrongestCellsAndNamesTheCsv) {
  Attribution a;
  a.method = "input_x_gradient";
  a.target_function = "logprob";
  a.tokens = {1};
  a.token_texts = {"<s>"};
  for (int f = 0; f < 60; ++f) {
    a.tokens.push_back(10 + f);
    a.token_texts.push_back(" w" + std::to_string(f));
    a.features.push_back({"w" + std::to_string(f), f + 1, f + 2});
  }
  for (int s = 0; s < 40; ++s) {
    a.tokens.push_back(100 + s);
    a.token_texts.push_back(" g" + std::to_string(s));
    a.step_tokens.push_back(100 + s);
    a.step_texts.push_back(" g" + std::to_string(s));
    a.step_positions.push_back(60 + s);
    a.target_values.push_back(-1);
    a.baseline_values.push_back(-2);
  }
  a.n_input_tokens = 61;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-0.01, 0.01);
  for (int s = 0; s < 40; ++s)
    for (int f = 0; f < 60; ++f) a.scores.push_back(u(rng));
  a.scores[7 * 60 + 33] = 9.87;          // the strongest cell: printed
  a.scores[8 * 60 + 50] = 0.000123456;  // feature 50 is weak everywhere: left out
  for (int s = 0; s < 40; ++s) a.scores[s * 60 + 50] = s == 8 ? 0.000123456 : 1e-7;
  ASSERT_TRUE(step_matrix_too_large({a}));
  ReportContext c;
  c.scores_csv = "page.scores.csv";
  const std::string html = render_html({a}, c);
  expect_page(html, c.title);
  EXPECT_THAT(html, ::testing::HasSubstr("the 16 steps and 24 features with the largest sums of |score|"));
  EXPECT_THAT(html, ::testing::HasSubstr("the other 24 steps and 36 features are left out here"));
  EXPECT_THAT(html, ::testing::HasSubstr("<b>page.scores.csv</b> beside this page"));
  EXPECT_THAT(html, ::testing::HasSubstr(">9.9</td>"));
  EXPECT_EQ(html.find(">0.00012</td>"), std::string::npos);
  const std::string csv = step_matrix_csv({a});
  EXPECT_EQ(csv.rfind("method,step,step_token,feature,feature_text,score\n", 0), 0u);
  EXPECT_EQ(count(csv, "\n"), 1u + 40 * 60);
  // The step token as generated, the feature as the page labels it.
  EXPECT_NE(csv.find("\"input_x_gradient\",7,\" g7\",33,\"\xE2\x90\xA3w33\",9.87\n"), std::string::npos);
  EXPECT_NE(csv.find(",8,\" g8\",50,\"\xE2\x90\xA3w50\",0.000123456\n"), std::string::npos);
  // A small matrix is printed whole and needs no CSV.
  Attribution small = a;
  small.features.resize(10);
  small.step_tokens.resize(5);
  small.step_texts.resize(5);
  small.step_positions.resize(5);
  small.target_values.resize(5);
  small.baseline_values.resize(5);
  small.scores.assign(50, 0.5);
  EXPECT_FALSE(step_matrix_too_large({small}));
  EXPECT_EQ(render_html({small}, ReportContext{}).find("left out here"), std::string::npos);
}

TEST(BenchmarkPages, DecoyWinAndCaughtRatesInMarkdownAndHtml) {
  nlohmann::json s = {{"metrics", {"comprehensiveness"}},
                      {"methods", {"occlusion"}},
                      {"table", {{"occlusion", {{"comprehensiveness", {{"mean", 0.5}}}}}}},
                      {"n_examples", 2},
                      {"interval", "95%"},
                      {"bootstrap", 10},
                      {"curves", nlohmann::json::object()}};
  s["decoy_ranking"]["comprehensiveness"]["win_rate"]["occlusion"]["decoy:random"] = 0.75;
  s["decoy_ranking"]["comprehensiveness"]["caught_rate"]["decoy:random"] = 0.625;
  const std::string md = render_benchmark_markdown(s);
  EXPECT_THAT(md, ::testing::HasSubstr("## Decoys: comprehensiveness"));
  EXPECT_THAT(md, ::testing::HasSubstr("| occlusion | 0.75 |"));
  EXPECT_THAT(md, ::testing::HasSubstr("| caught | 0.625 |"));
  const std::string html = render_benchmark_html(s);
  EXPECT_THAT(html, ::testing::HasSubstr("<h3>Decoys: comprehensiveness</h3>"));
  EXPECT_THAT(html, ::testing::HasSubstr("<td>0.625</td>"));
}

}  // namespace
}  // namespace candor
