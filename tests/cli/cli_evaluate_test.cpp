// `candor evaluate` and `candor explain --evaluate` end to end: the quality block, the table,
// resumption after an interruption, and bad data reported with line numbers.
#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "candor/evaluate.h"
#include "candor/explain.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::run_command;
using testing::shared_path;

const std::string kCli = CANDOR_CLI_PATH;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int candor(const std::string& args, std::string* out) {
  return run_command(kCli + " " + args + " 2>&1", out);
}

const char* kTexts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "Tom had a big red ball. He liked to play with it in the park.",
    "The sun was hot and the cat wanted to sleep.",
    "One day, a bird flew to the tree and sang a song.",
    "Mom made a cake for the party and everyone was happy.",
    "The dog ran fast to catch the stick.",
    "Sue and Ben went to the beach to build a sand castle.",
    "The little boat sailed on the blue sea.",
};

std::string write_jsonl(const std::string& dir) {
  std::string path = dir + "/texts.jsonl";
  std::ofstream f(path);
  for (const char* t : kTexts) f << nlohmann::json{{"text", t}, {"id", 1}}.dump() << "\n";
  return path;
}

std::string eval_args(const std::string& data, const std::string& out) {
  return "evaluate --model " + shared_path("models/stories260K") + " --data " + data +
         " --method occlusion --method integrated_gradients:n_steps=4 --metric faithfulness "
         "--metric sensitivity --sensitivity-samples 1 --max-tokens 12 --curve-points 5 "
         "--bootstrap 200 --decoys "
         "--no-progress --out " +
         out;
}

TEST(CliEvaluate, ExplainEvaluateAttachesTheQualityBlock) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir(), out;
  int code = candor("explain --model " + shared_path("models/stories260K") +
                        " --prompt 'Once upon a time, there was a' --method occlusion "
                        "--method integrated_gradients:n_steps=8 --evaluate --no-progress --json " +
                        dir + "/e.json --html " + dir + "/e.html",
                    &out);
  ASSERT_EQ(code, 0) << out;
  auto j = nlohmann::json::parse(slurp(dir + "/e.json"));
  ASSERT_EQ(j["attributions"].size(), 2u);
  for (const auto& a : j["attributions"]) {
    ASSERT_TRUE(a.contains("quality")) << a.dump();
    const auto& q = a["quality"];
    EXPECT_EQ(q["comprehensiveness"].size(), 5u);
    EXPECT_TRUE(q["comprehensiveness_aopc"].is_number());
    EXPECT_TRUE(q["sufficiency_aopc"].is_number());
    EXPECT_TRUE(q["sensitivity"]["max_sensitivity"].is_number());
    EXPECT_EQ(q["agreement_spearman"].size(), 1u);  // the other method
    EXPECT_GT(q["forward_passes"].get<double>(), 0);
  }
  EXPECT_TRUE(
      j["attributions"][0]["quality"]["agreement_spearman"].contains("integrated_gradients"));
  EXPECT_EQ(j["attributions"][0]["quality"]["removal"], "baseline");
  std::string html = slurp(dir + "/e.html");
  EXPECT_THAT(html, HasSubstr("<h2>Quality</h2>"));
  EXPECT_THAT(html, HasSubstr("comprehensiveness AOPC"));
  // --removal delete reaches the quality block; a view without scores gets none.
  code = candor("explain --model " + shared_path("models/stories260K") +
                    " --prompt 'Lily went to the' --method occlusion --method logit_lens "
                    "--method integrated_gradients:n_steps=4 --consensus --evaluate "
                    "--removal delete --no-progress --json " +
                    dir + "/d.json",
                &out);
  ASSERT_EQ(code, 0) << out;
  auto d = nlohmann::json::parse(slurp(dir + "/d.json"));
  EXPECT_EQ(d["attributions"][0]["quality"]["removal"], "delete");
  EXPECT_FALSE(d["attributions"][1].contains("quality"));
  ASSERT_EQ(d["attributions"].size(), 4u);
  const auto& c = d["attributions"][3];
  EXPECT_EQ(c["method"], "consensus");
  EXPECT_TRUE(c["quality"]["comprehensiveness_aopc"].is_number());
  EXPECT_EQ(c["quality"]["agreement_spearman"].size(), 2u);
  EXPECT_EQ(candor("explain --model " + shared_path("models/stories260K") +
                       " --prompt 'Lily' --evaluate --removal sideways",
                   &out),
            2);
}

TEST(CliEvaluate, ResumedRunGivesTheSameTable) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir(), out;
  std::string data = write_jsonl(dir);
  ASSERT_EQ(candor(eval_args(data, dir + "/full"), &out), 0) << out;
  const std::string full_md = slurp(dir + "/full/table.md");
  const std::string full_json = slurp(dir + "/full/table.json");
  EXPECT_THAT(full_md, HasSubstr("| occlusion |"));
  EXPECT_THAT(full_md, HasSubstr("comprehensiveness"));
  EXPECT_THAT(slurp(dir + "/full/report.html"), HasSubstr("<polyline"));
  auto summary = nlohmann::json::parse(full_json);
  EXPECT_EQ(summary["n_examples"], 8);
  EXPECT_TRUE(summary["table"]["occlusion"]["comprehensiveness"].contains("ci_low"));
  // Decoys are rows of the table, and each method's win rate against them is reported.
  EXPECT_THAT(full_md, HasSubstr("| decoy:inverted |"));
  const auto& win = summary["decoy_ranking"]["comprehensiveness"]["win_rate"];
  EXPECT_GE(win["occlusion"]["decoy:inverted"].get<double>(), 0.5);
  EXPECT_TRUE(
      summary["decoy_ranking"]["comprehensiveness"]["caught_rate"].contains("decoy:random"));

  // Interrupted after 3 examples (--limit), then the last record cut in half as by a crash.
  ASSERT_EQ(candor(eval_args(data, dir + "/part") + " --limit 3", &out), 0) << out;
  {
    std::string ex = slurp(dir + "/part/examples.jsonl");
    std::ofstream(dir + "/part/examples.jsonl", std::ios::trunc) << ex.substr(0, ex.size() - 40);
  }
  ASSERT_EQ(candor(eval_args(data, dir + "/part"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("resuming: 2 example(s)"));
  EXPECT_THAT(out, HasSubstr("1 unfinished record(s)"));
  EXPECT_EQ(slurp(dir + "/part/table.md"), full_md);
  EXPECT_EQ(slurp(dir + "/part/table.json"), full_json);
  // Nothing left to do: a third run computes nothing and still writes the same table.
  ASSERT_EQ(candor(eval_args(data, dir + "/part"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("resuming: 8 example(s)"));
  EXPECT_EQ(slurp(dir + "/part/table.json"), full_json);
  // Other settings in the same folder are refused.
  EXPECT_EQ(candor(eval_args(data, dir + "/part") + " --removal delete", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("other settings"));
}

// --generate N explains the model's greedy answer of N tokens (a span target): a different
// quantity from the next token, graded with the same metrics and decoys; the setting is part of
// what a resumed run must match.
TEST(CliEvaluate, GeneratedAnswerTarget) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir(), out;
  std::string data = write_jsonl(dir);
  ASSERT_EQ(candor(eval_args(data, dir + "/next") + " --limit 3", &out), 0) << out;
  ASSERT_EQ(candor(eval_args(data, dir + "/answer") + " --limit 3 --generate 4", &out), 0) << out;
  auto next = nlohmann::json::parse(slurp(dir + "/next/table.json"));
  auto answer = nlohmann::json::parse(slurp(dir + "/answer/table.json"));
  EXPECT_EQ(answer["n_examples"], 3);
  EXPECT_THAT(slurp(dir + "/answer/table.md"), HasSubstr("| decoy:other_target |"));
  const double c_next = next["table"]["occlusion"]["comprehensiveness"]["mean"].get<double>();
  const double c_answer = answer["table"]["occlusion"]["comprehensiveness"]["mean"].get<double>();
  // The answer's summed log-prob falls by more than one token's when its context is removed.
  EXPECT_GT(c_answer, c_next);
  EXPECT_EQ(candor(eval_args(data, dir + "/answer") + " --limit 3 --generate 5", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("other settings"));
  EXPECT_EQ(candor(eval_args(data, dir + "/x") + " --generate -1", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("--generate must be 0 or more"));
}

TEST(CliEvaluate, BadDataIsReportedWithLineNumbers) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir(), out;
  {
    std::ofstream f(dir + "/bad.jsonl");
    f << "{\"text\": \"The cat sat on the mat.\"}\n"
      << "{\"text\": \"A dog ran in the park.\"}\n"
      << "{\"text\": \"broken\n"  // line 3: malformed JSON
      << "{\"text\": \"Lily had a doll.\"}\n"
      << "{\"text\": \"   \"}\n"  // line 5: empty text
      << "{\"label\": 1}\n";      // line 6: no text
  }
  std::string base = "evaluate --model " + shared_path("models/stories260K") + " --data " + dir +
                     "/bad.jsonl --method occlusion --metric comprehensiveness --no-progress "
                     "--max-tokens 12 --bootstrap 50 --out " +
                     dir;
  EXPECT_EQ(candor(base + "/fail", &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("line 3"));
  EXPECT_THAT(out, HasSubstr("hint: "));
  ASSERT_EQ(candor(base + "/skip --on-error skip", &out), 0) << out;
  for (const char* l : {"line 3", "line 5", "line 6"}) EXPECT_THAT(out, HasSubstr(l)) << l;
  auto s = nlohmann::json::parse(slurp(dir + "/skip/table.json"));
  EXPECT_EQ(s["n_examples"], 3);
  ASSERT_EQ(s["skipped"].size(), 3u);
  std::vector<int64_t> lines;
  for (const auto& k : s["skipped"]) lines.push_back(k["line"].get<int64_t>());
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<int64_t>{3, 5, 6}));

  // A CSV without the text column: the error names the columns the file has.
  std::ofstream(dir + "/nocol.csv") << "sentence,label\nhello there,1\n";
  EXPECT_EQ(candor("evaluate --model " + shared_path("models/stories260K") + " --data " + dir +
                       "/nocol.csv --out " + dir + "/nc --no-progress",
                   &out),
            1)
      << out;
  EXPECT_THAT(out, HasSubstr("text"));
  EXPECT_THAT(out, HasSubstr("sentence"));
  // Usage errors: unknown metric, bad policy.
  EXPECT_EQ(candor(base + "/u --metric nonsense", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("unknown metric 'nonsense'"));
  EXPECT_EQ(candor(base + "/u --on-error maybe", &out), 2) << out;
}

// `--attack substitution`: per method the success rate, the top-k intersection reached and the
// changes found, in examples.jsonl, table.md/json and the HTML report. Every reported perturbed
// input is checked here with the model: it keeps the top next token, its probability moves by at
// most the bound, it differs from the input exactly at the reported substitutions (each by one of
// the 5 nearest tokens), and the explanation of it has the reported top-k intersection.
TEST(CliEvaluate, AttackReportsChangesThatKeepTheOutput) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir(), out;
  std::string data = write_jsonl(dir);
  const std::string common = "evaluate --model " + shared_path("models/stories260K") + " --data " +
                             data +
                             " --method occlusion --method integrated_gradients:n_steps=4 "
                             "--metric comprehensiveness --max-tokens 12 --limit 5 --bootstrap 50 "
                             "--no-progress --out " +
                             dir + "/a --attack ";
  const std::string args =
      common + "substitution:n_candidates=6,n_rounds=2,max_prob_change=0.1,top_k=3";
  ASSERT_EQ(candor(args, &out), 0) << out;
  auto s = nlohmann::json::parse(slurp(dir + "/a/table.json"));
  ASSERT_TRUE(s.contains("attacks")) << s.dump();
  EXPECT_EQ(s["attacks"]["options"]["attack"], "substitution");
  EXPECT_EQ(s["attacks"]["options"]["top_k"], 3);
  for (const char* m : {"occlusion", "integrated_gradients:n_steps=4"}) {
    const auto& a = s["attacks"]["methods"][m];
    ASSERT_EQ(a["n"], 5) << m;
    EXPECT_EQ(a["examples"].size(), 5u);
    EXPECT_DOUBLE_EQ(a["success_rate"].get<double>(), a["successes"].get<double>() / 5.0);
    // The table's attack columns are the same figures with bootstrap intervals.
    EXPECT_DOUBLE_EQ(s["table"][m]["attack_success"]["mean"].get<double>(),
                     a["success_rate"].get<double>());
    EXPECT_NEAR(s["table"][m]["attack_topk"]["mean"].get<double>(),
                a["mean_topk_intersection"].get<double>(), 1e-12);
    EXPECT_LE(a["candidates_valid"].get<int64_t>(), a["candidates_tried"].get<int64_t>());
  }
  const std::string md = slurp(dir + "/a/table.md");
  EXPECT_THAT(md, HasSubstr("## Attack: substitution"));
  EXPECT_THAT(md, HasSubstr("attack_success"));
  EXPECT_THAT(slurp(dir + "/a/report.html"), HasSubstr("<h2>Attack: substitution"));

  const Model& model = testing::stories260k();
  auto occlusion = make_explainer("occlusion");
  int64_t checked = 0, substitutions = 0;
  std::istringstream lines(slurp(dir + "/a/examples.jsonl"));
  std::string line;
  while (std::getline(lines, line)) {
    auto ex = nlohmann::json::parse(line);
    for (const auto& [method, rec] : ex["methods"].items()) {
      const auto& at = rec["attack"];
      auto in = at["input_ids"].get<std::vector<TokenId>>();
      auto pert = at["perturbed_ids"].get<std::vector<TokenId>>();
      const TokenId top = at["top_token"].get<TokenId>();
      at::Tensor p0 = at::softmax(model.logits(in)[-1], -1);
      at::Tensor p1 = at::softmax(model.logits(pert)[-1], -1);
      EXPECT_EQ(p0.argmax().item<int64_t>(), top) << line;
      EXPECT_EQ(p1.argmax().item<int64_t>(), top) << line;  // the output is kept
      const double dp = std::fabs(p1[top].item<double>() - p0[top].item<double>());
      EXPECT_LE(dp, 0.1 + 1e-6) << line;
      EXPECT_NEAR(dp, at["prob_change"].get<double>(), 1e-5) << line;
      ASSERT_EQ(pert.size(), in.size());
      std::vector<TokenId> rebuilt = in;
      for (const auto& sub : at["substitutions"]) {
        const int64_t pos = sub["position"].get<int64_t>();
        const TokenId from = sub["from"].get<TokenId>(), to = sub["to"].get<TokenId>();
        EXPECT_EQ(in[pos], from);
        auto nn = nearest_tokens(model, from, 5);
        EXPECT_NE(std::find(nn.begin(), nn.end(), to), nn.end()) << line;
        rebuilt[pos] = to;
        ++substitutions;
      }
      EXPECT_EQ(rebuilt, pert) << line;
      EXPECT_EQ(at["changes"].size(), at["substitutions"].size());
      const double ti = at["topk_intersection"].get<double>();
      EXPECT_EQ(at["success"].get<bool>(), ti < 0.5);
      EXPECT_EQ(rec["metrics"]["attack_topk"].get<double>(), ti);
      if (method == "occlusion") {
        // Occlusion is deterministic: the perturbed input's explanation gives the intersection.
        ExplainRequest r0, r1;
        r0.input_ids = in;
        r1.input_ids = pert;
        r1.target.token = top;
        EXPECT_NEAR(topk_intersection(occlusion->explain(model, r0).total(),
                                      occlusion->explain(model, r1).total(), 3),
                    ti, 1e-12)
            << line;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 10);
  EXPECT_GT(substitutions, 0);  // some change was found and verified above

  // Resumption keeps the attack results: a rerun computes nothing and writes the same table.
  const std::string table = slurp(dir + "/a/table.json");
  ASSERT_EQ(candor(args, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("resuming: 5 example(s)"));
  EXPECT_EQ(slurp(dir + "/a/table.json"), table);
  // Another attack in the same folder is refused (other settings).
  EXPECT_EQ(candor(common + "noise", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("other settings"));

  // Embedding noise: the noise kept stays within the radius (x std of the embedding matrix).
  ASSERT_EQ(candor("evaluate --model " + shared_path("models/stories260K") + " --data " + data +
                       " --method occlusion --metric comprehensiveness --max-tokens 10 --limit 2 "
                       "--bootstrap 10 --no-progress --attack noise:radius=0.1,n_candidates=4 "
                       "--out " +
                       dir + "/n",
                   &out),
            0)
      << out;
  auto n = nlohmann::json::parse(slurp(dir + "/n/table.json"));
  EXPECT_EQ(n["attacks"]["options"]["radius"], 0.1);
  const double sigma = model.embedding_matrix().to(at::kFloat).std().item<double>();
  for (const auto& e : n["attacks"]["methods"]["occlusion"]["examples"]) {
    EXPECT_LE(e.value("noise_linf", 0.0), 0.1 * sigma * (1 + 1e-5)) << e.dump();
    EXPECT_LE(e["prob_change"].get<double>(), 0.05 + 1e-9);
  }

  // Bad specifications are usage errors that name the problem.
  const std::string base = "evaluate --model " + shared_path("models/stories260K") + " --data " +
                           data + " --no-progress --out " + dir + "/bad --attack ";
  EXPECT_EQ(candor(base + "swap", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("unknown attack 'swap'"));
  EXPECT_THAT(out, HasSubstr("substitution"));
  EXPECT_EQ(candor(base + "substitution:radius=0.1", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("no option 'radius'"));
  EXPECT_THAT(out, HasSubstr("neighbours"));
  EXPECT_EQ(candor(base + "noise:radius=-1", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("radius"));
  EXPECT_EQ(candor(base + "substitution:top_k=0", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("top_k"));
  EXPECT_EQ(candor(base + "substitution:n_rounds", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("key=value"));
}

}  // namespace
}  // namespace candor
