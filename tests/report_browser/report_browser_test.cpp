// Every kind of report, rendered by the real CLI on the built-in models (models/builtin/lm and
// models/builtin/sentiment; nothing from ../shared), loaded in headless Chromium and checked from
// the DOM by check_page.js: charts with axis titles, colour legends with numbers, the summary,
// class names instead of #0, WCAG AA contrast of every text, nothing loaded from the network, no
// sideways overflow (issue 14). Screenshots go to <build>/test-artifacts/report_browser/ (or
// $CANDOR_TEST_ARTIFACTS/report_browser); the path is printed.
//
// Skips with a message when Debian's chromium, node or the npm package playwright-core
// (installed by scripts/fetch_browser_test_deps.sh from scripts/setup.sh) is absent.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "test_util.h"

namespace candor {
namespace {

namespace fs = std::filesystem;

const std::string kSource = CANDOR_SOURCE_DIR;
const std::string kLm = kSource + "/models/builtin/lm";
const std::string kSentiment = kSource + "/models/builtin/sentiment";

std::string npm_cache() {
  if (const char* c = std::getenv("CANDOR_NPM_CACHE")) return c;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/candor/npm";
}

std::string chromium() {
  if (const char* c = std::getenv("CANDOR_CHROMIUM")) return c;
  return "/usr/bin/chromium";
}

// Why the browser checks cannot run here, or "" when they can.
std::string missing_browser() {
  if (!fs::exists(chromium()))
    return chromium() + " is absent (install Debian's chromium: scripts/setup.sh)";
  if (testing::run_command("node --version") != 0) return "node is absent (Debian's nodejs)";
  if (!fs::exists(npm_cache() + "/node_modules/playwright-core/package.json"))
    return "playwright-core is absent from " + npm_cache() +
           " (run scripts/fetch_browser_test_deps.sh)";
  return "";
}

#define REQUIRE_BROWSER()                                               \
  do {                                                                  \
    const std::string why = missing_browser();                          \
    if (!why.empty()) GTEST_SKIP() << "skipped: " << why;               \
  } while (0)

std::string artifacts() {
  std::string dir;
  if (const char* a = std::getenv("CANDOR_TEST_ARTIFACTS"))
    dir = std::string(a) + "/report_browser";
  else
    dir = fs::path(CANDOR_CLI_PATH).parent_path().string() + "/test-artifacts/report_browser";
  fs::create_directories(dir);
  return dir;
}

std::string quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Runs the CLI (at most 5 minutes); fails the test with its output when it does not exit 0.
void cli(const std::string& args) {
  std::string out;
  const int code = testing::run_command("timeout 300 " + std::string(CANDOR_CLI_PATH) + " " + args, &out);
  ASSERT_EQ(code, 0) << "candor " << args << "\n" << out;
}

// Loads `page` in Chromium, checks it, and expects no problem; `expected`: texts that must
// appear (class names, column names).
void check_in_browser(const std::string& page, const std::string& name,
                      const std::vector<std::string>& expected,
                      std::vector<std::string>* problems = nullptr) {
  ASSERT_TRUE(fs::exists(page)) << page;
  const std::string dir = artifacts();
  fs::copy_file(page, dir + "/" + name + ".html", fs::copy_options::overwrite_existing);
  std::string cmd = "timeout 120 node " + quote(kSource + "/tests/report_browser/check_page.js") +
                    " " + quote(page) + " " + quote(dir + "/" + name + ".png");
  for (const auto& e : expected) cmd += " " + quote(e);
  std::string out;
  const int rc = testing::run_command(cmd + " 2>&1", &out);
  nlohmann::json j;
  const size_t brace = out.rfind("\n{") == std::string::npos ? out.find('{') : out.rfind("\n{") + 1;
  ASSERT_NE(brace, std::string::npos) << "no result from check_page.js (exit " << rc << "):\n" << out;
  try {
    j = nlohmann::json::parse(out.substr(brace));
  } catch (const std::exception& e) {
    FAIL() << "unreadable result from check_page.js (exit " << rc << "): " << e.what() << "\n" << out;
  }
  ASSERT_FALSE(j.contains("error")) << j["error"].get<std::string>();
  ASSERT_EQ(rc, 0) << out;
  std::cout << "[ screenshot ] " << j["screenshot"].get<std::string>() << "  " << j["stats"].dump()
            << "\n";
  for (const auto& p : j["problems"]) {
    if (problems)
      problems->push_back(p.get<std::string>());
    else
      ADD_FAILURE() << name << ": " << p.get<std::string>();
  }
}

class ReportBrowser : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::temp_dir(); }
  std::string dir_;
};

// The checker itself: a page with each fault it looks for gets each one reported.
TEST_F(ReportBrowser, TheCheckerFindsEachFault) {
  REQUIRE_BROWSER();
  const std::string page = dir_ + "/faulty.html";
  write(page,
        "<!DOCTYPE html><html><body><h1>faulty</h1>"
        "<p style='color:#999'>grey on white: 2.8:1</p>"
        "<svg class='chart' width='100' height='50'><text class='tick' x='1' y='9'>0</text>"
        "<text class='tick' x='1' y='19'>1</text></svg>"
        "<svg width='10' height='10'></svg>"
        "<div class=fig><table data-colour=value><tr><td style='background:#2166ac;color:#fff'>"
        "x</td></tr></table></div>"
        "<p>Logit of class #1</p>"
        "<p><span title='score 0.4242'>hover me</span></p>"
        "<div style='width:3000px'>too wide</div>"
        "<img src='http://127.0.0.1:9/x.png'></body></html>");
  std::vector<std::string> problems;
  check_in_browser(page, "faulty", {"a class name that is not there"}, &problems);
  std::string all;
  for (const auto& p : problems) all += p + "\n";
  for (const char* want : {"contrast 2.8", "has 0 axis titles", "neither a chart nor a legend",
                           "without a legend with numbers", "no summary", "expected text missing",
                           "placeholder", "px wide", "loads from the network",
                           "only on hover: \"score 0.4242\""})
    EXPECT_NE(all.find(want), std::string::npos) << "not reported: " << want << "\n" << all;
}

TEST_F(ReportBrowser, ExplanationOfTheLanguageModelWithFourMethods) {
  REQUIRE_BROWSER();
  const std::string html = dir_ + "/explain_lm.html";
  cli("explain --model " + kLm +
      " -p 'Once upon a time there was a little girl named Lily. She' --method occlusion "
      "--method integrated_gradients:n_steps=16 --method attention --method logit_lens "
      "--evaluate --no-progress --html " + html);
  check_in_browser(html, "explain_lm", {"Logit lens", "Attention maps", "occlusion"});
}

TEST_F(ReportBrowser, ExplanationOfAGeneratedSpan) {
  REQUIRE_BROWSER();
  const std::string html = dir_ + "/explain_span.html";
  cli("explain --model " + kLm + " -p 'Once upon a time there was a little' --generate 6 "
      "--method occlusion --method input_x_gradient --method logit_lens --no-progress --html " +
      html);
  check_in_browser(html, "explain_span", {"per generated step", "Logit lens"});
}

TEST_F(ReportBrowser, ExplanationOfTheSentimentClassifier) {
  REQUIRE_BROWSER();
  const std::string html = dir_ + "/explain_sentiment.html";
  cli("explain --model " + kSentiment +
      " -p 'The food was great but the service was painfully slow.' --target positive "
      "--method occlusion --method integrated_gradients:n_steps=16 --method attention "
      "--no-progress --html " + html);
  check_in_browser(html, "explain_sentiment", {"positive", "Attention maps"});
}

TEST_F(ReportBrowser, EvaluationWithDecoys) {
  REQUIRE_BROWSER();
  const std::string data = dir_ + "/stories.csv";
  write(data,
        "text\n\"Once upon a time there was a little girl named Lily.\"\n"
        "\"Tom had a big red ball and he loved to play.\"\n"
        "\"The dog ran to the park with his friend.\"\n"
        "\"One day the sun was shining and the birds sang.\"\n"
        "\"Mom made a cake for the party.\"\n");
  cli("evaluate --model " + kLm + " --data " + data +
      " --text-column text --method occlusion --method integrated_gradients:n_steps=8 "
      "--method input_x_gradient --metric faithfulness --metric infidelity --decoys "
      "--max-tokens 12 --curve-points 10 --bootstrap 200 --no-progress --out " + dir_ + "/eval");
  check_in_browser(dir_ + "/eval/report.html", "evaluate",
                   {"Decoys", "comprehensiveness", "infidelity", "occlusion"});
}

// 240 reviews made from phrases, labelled by the built-in sentiment model (the teacher).
std::string review_table(const std::string& dir) {
  const char* subjects[] = {"The food", "The service", "This phone", "The film", "The hotel room",
                            "The battery", "Our waiter", "The plot"};
  const char* verdicts[] = {"was great", "was terrible", "was fine", "was awful",
                            "was wonderful", "was boring", "was excellent", "was disappointing"};
  const char* tails[] = {"", " and I would come back", " but too expensive", " overall",
                         " to be honest"};
  std::mt19937 rng(7);
  std::string csv = "text,channel\n";
  for (int i = 0; i < 240; ++i)
    csv += std::string("\"") + subjects[rng() % 8] + " " + verdicts[rng() % 8] + tails[rng() % 5] +
           ".\"," + (i % 3 == 0 ? "web" : "shop") + "\n";
  const std::string path = dir + "/reviews.csv";
  write(path, csv);
  return path;
}

// 400 patients with numeric and categorical columns; the teacher is candor's MLP.
std::string patient_table(const std::string& dir) {
  std::mt19937 rng(11);
  std::normal_distribution<double> age(52, 14), bmi(28, 5), glucose(110, 28);
  const char* smoker[] = {"never", "former", "current"};
  std::string csv = "age,bmi,glucose,smoker,outcome\n";
  for (int i = 0; i < 400; ++i) {
    const double a = age(rng), b = bmi(rng), g = glucose(rng);
    const int s = static_cast<int>(rng() % 3);
    const double risk = 0.04 * (a - 52) + 0.12 * (b - 28) + 0.035 * (g - 110) + 0.6 * s;
    const bool at_risk = risk + std::normal_distribution<double>(0, 0.8)(rng) > 0.5;
    char line[160];
    std::snprintf(line, sizeof(line), "%.0f,%.1f,%.0f,%s,%s\n", a, b, g, smoker[s],
                  at_risk ? "diabetic" : "healthy");
    csv += line;
  }
  const std::string path = dir + "/patients.csv";
  write(path, csv);
  return path;
}

TEST_F(ReportBrowser, DistillationOfEachGlassBoxStudentFromTheSentimentModel) {
  REQUIRE_BROWSER();
  const std::string data = review_table(dir_);
  for (const std::string student : {"linear", "tree:max_depth=3", "gam"}) {
    SCOPED_TRACE(student);
    const std::string name = "distill_text_" + student.substr(0, student.find(':'));
    const std::string out = dir_ + "/" + name;
    cli("distill --teacher " + kSentiment + " --text-column text --data " + data +
        " --student " + student + " --slice channel --seed 1 --out " + out);
    check_in_browser(out + "/report.html", name, {"positive", "negative"});
  }
}

TEST_F(ReportBrowser, DistillationOfEachGlassBoxStudentFromAnMlpOnATable) {
  REQUIRE_BROWSER();
  const std::string data = patient_table(dir_);
  for (const std::string student : {"linear", "tree:max_depth=3", "gam"}) {
    SCOPED_TRACE(student);
    const std::string name = "distill_table_" + student.substr(0, student.find(':'));
    const std::string out = dir_ + "/" + name;
    cli("distill --teacher mlp --label outcome --data " + data + " --student " + student +
        " --seed 1 --out " + out);
    check_in_browser(out + "/report.html", name, {"diabetic", "healthy", "glucose"});
  }
}

// 600 scored decisions in two groups, the second scored a little lower.
std::string decisions_table(const std::string& dir) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  std::string csv = "label,p_yes,p_no,sex,age_band\n";
  const char* bands[] = {"18-30", "31-50", "51+"};
  for (int i = 0; i < 600; ++i) {
    const bool female = i % 2 == 0;
    const double p = std::clamp(u(rng) * (female ? 0.9 : 1.0), 0.01, 0.99);
    const bool yes = u(rng) < p;
    char line[128];
    std::snprintf(line, sizeof(line), "%s,%.3f,%.3f,%s,%s\n", yes ? "yes" : "no", p, 1 - p,
                  female ? "female" : "male", bands[rng() % 3]);
    csv += line;
  }
  const std::string path = dir + "/decisions.csv";
  write(path, csv);
  return path;
}

TEST_F(ReportBrowser, AuditsOfFairnessCalibrationAndConformalSets) {
  REQUIRE_BROWSER();
  const std::string data = decisions_table(dir_);
  cli("audit fairness --data " + data + " --label label --label-positive yes --probability p_yes "
      "--group sex,age_band --n-boot 200 --out " + dir_ + "/fair");
  check_in_browser(dir_ + "/fair/report.html", "audit_fairness", {"female", "male", "age_band"});
  cli("audit calibration --data " + data + " --label label --label-positive yes "
      "--probability p_yes --group sex --out " + dir_ + "/cal");
  check_in_browser(dir_ + "/cal/report.html", "audit_calibration", {"female"});
  cli("audit conformal --data " + data + " --label label --probability p_yes,p_no "
      "--classes yes,no --group sex --out " + dir_ + "/conf");
  check_in_browser(dir_ + "/conf/report.html", "audit_conformal", {"female"});
}

TEST_F(ReportBrowser, AuditOfCounterfactualSwaps) {
  REQUIRE_BROWSER();
  std::string csv = "text\n";
  const char* lines[] = {"He said the film was great.", "She thought the food was awful.",
                         "My brother loved the hotel.", "Her mother hated the service.",
                         "The man was kind and the meal was fine.", "His sister found it boring."};
  for (int i = 0; i < 24; ++i) csv += std::string("\"") + lines[i % 6] + "\"\n";
  write(dir_ + "/cf.csv", csv);
  cli("audit counterfactual --model " + kSentiment + " --data " + dir_ +
      "/cf.csv --attribute gender --names none --n-boot 50 --out " + dir_ + "/cf");
  check_in_browser(dir_ + "/cf/report.html", "audit_counterfactual", {"By target group", "flip share"});
  // A causal LM read as a prompt: the next token's Jensen-Shannon divergence.
  cli("audit counterfactual --model " + kLm + " --data " + dir_ +
      "/cf.csv --attribute gender --names none --n-boot 20 --worst 2 --out " + dir_ + "/cf_lm");
  check_in_browser(dir_ + "/cf_lm/report.html", "audit_counterfactual_lm", {"Jensen"});
}

TEST_F(ReportBrowser, AuditOfGenerationProbes) {
  REQUIRE_BROWSER();
  write(dir_ + "/t.txt", "The {group} was very\nEveryone said the {group} is\n");
  write(dir_ + "/g.csv", "boy,boy\ngirl,girl\nman,man\n");
  cli("audit generation --model " + kLm + " --templates " + dir_ + "/t.txt --groups " + dir_ +
      "/g.csv --samples 4 --max-new-tokens 8 --n-boot 50 --permutations 99 --out " + dir_ + "/gen");
  check_in_browser(dir_ + "/gen/report.html", "audit_generation", {"boy", "girl", "Largest gap"});
}

TEST_F(ReportBrowser, GenerationUncertainty) {
  REQUIRE_BROWSER();
  cli("generate --model " + kLm + " --prompt 'Once upon a time' -n 16 --samples 4 --html " + dir_ +
      "/u.html");
  check_in_browser(dir_ + "/u.html", "generate_uncertainty", {"Self-consistency", "entropy (nats)"});
}

// A step x feature matrix too large to print whole (40 steps x 60 features) and attention maps
// too large to print values in: the page prints the strongest part with its values, says how
// much is left out, and the full matrix is in the CSV beside the page.
TEST_F(ReportBrowser, LargeMatricesPrintTheirStrongestCellsAndSayWhereTheRestIs) {
  REQUIRE_BROWSER();
  std::string prompt;
  const char* words[] = {"Once", "upon", "a", "time", "there", "was", "a", "little", "girl",
                         "named", "Lily", "who", "loved", "her", "red", "ball", "and", "the"};
  for (int i = 0; i < 60; ++i) prompt += std::string(i ? " " : "") + words[i % 18];
  const std::string html = dir_ + "/large.html";
  cli("explain --model " + kLm + " -p '" + prompt + "' --generate 40 --method input_x_gradient "
      "--method attention --no-progress --html " + html);
  check_in_browser(html, "explain_large", {"are left out here", "large.scores.csv", "largest of"});
  std::ifstream f(dir_ + "/large.scores.csv");
  ASSERT_TRUE(f.good()) << "no CSV beside the page";
  std::string line;
  size_t rows = 0;
  std::getline(f, line);
  EXPECT_EQ(line, "method,step,step_token,feature,feature_text,score");
  while (std::getline(f, line)) ++rows;
  EXPECT_GT(rows, 600u);  // more cells than the page prints
}

}  // namespace
}  // namespace candor
