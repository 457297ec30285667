// `candor explain` / `candor evaluate` with the options of issue 17's last items: a neuron as
// the target (--target neuron:L:POS:UNIT) and per-neuron layer scores in the JSON, and the
// tape budget (--tape-budget SIZE): a bad size refused naming the option, a tiny budget giving
// the default's scores.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;

const std::string kCli = CANDOR_CLI_PATH;
const std::string kBuiltin = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

int candor(const std::string& args, std::string* out) {
  return testing::run_command(kCli + " " + args + " 2>&1", out);
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

TEST(CliNeuronTape, ANeuronTargetAndPerNeuronScoresReachTheJson) {
  const std::string dir = testing::temp_dir();
  std::string out;
  ASSERT_EQ(candor("explain --model " + kBuiltin +
                       " --prompt 'Once upon a time' --target neuron:1:-1:7 --method "
                       "input_x_gradient --method integrated_gradients:n_steps=16 --no-progress "
                       "--json " + dir + "/n.json",
                   &out),
            0)
      << out;
  const nlohmann::json j = read_json(dir + "/n.json");
  EXPECT_THAT(j["target"].get<std::string>(), HasSubstr("layer 1 unit 7"));
  ASSERT_EQ(j["attributions"].size(), 2u);
  for (const auto& a : j["attributions"]) {
    EXPECT_EQ(a["target_function"], "neuron");
    EXPECT_EQ(a["extra"]["neuron"]["layer"], 1);
    EXPECT_EQ(a["extra"]["neuron"]["unit"], 7);
  }
  // Methods that score outputs, and a bad unit, are refused with the range.
  EXPECT_NE(candor("explain --model " + kBuiltin +
                       " --prompt 'Once upon a time' --target neuron:1:-1:7 --method occlusion "
                       "--no-progress",
                   &out),
            0);
  EXPECT_THAT(out, HasSubstr("neuron"));
  EXPECT_NE(candor("explain --model " + kBuiltin +
                       " --prompt 'Once upon a time' --target neuron:1:-1:96 --no-progress",
                   &out),
            0);
  EXPECT_THAT(out, HasSubstr("unit must be in [0, 95]"));
  EXPECT_NE(candor("explain --model " + kBuiltin +
                       " --prompt 'Once upon a time' --target neuron:1:x:3 --no-progress",
                   &out),
            0);
  EXPECT_THAT(out, HasSubstr("neuron:LAYER:POSITION:UNIT"));
  // Per-neuron layer scores.
  ASSERT_EQ(candor("explain --model " + kBuiltin +
                       " --prompt 'Once upon a time' --method "
                       "layer_gradient_x_activation:layer=2,per_neuron=true --no-progress --json " +
                       dir + "/l.json",
                   &out),
            0)
      << out;
  const nlohmann::json l = read_json(dir + "/l.json")["attributions"][0]["extra"]["neurons"];
  EXPECT_EQ(l["layer"], 2);
  EXPECT_EQ(l["units"], 96);
  ASSERT_EQ(l["scores"].size(), 1u);
  EXPECT_EQ(l["scores"][0].size(), l["positions"].get<size_t>());
  EXPECT_EQ(l["scores"][0][1].size(), 96u);
}

TEST(CliNeuronTape, TheTapeBudgetIsValidatedAndATinyOneGivesTheSameScores) {
  const std::string dir = testing::temp_dir();
  std::string out;
  for (const std::string& args : std::vector<std::string>{"explain --prompt 'A dog'", "evaluate --data none.csv --out " + dir + "/ev"}) {
    EXPECT_NE(candor(args + " --model " + kBuiltin + " --tape-budget 12Q --no-progress", &out), 0)
        << args;
    EXPECT_THAT(out, HasSubstr("--tape-budget takes a size in bytes, got '12Q'")) << args;
  }
  const std::string base = "explain --model " + kBuiltin +
                           " --prompt 'Once upon a time there was' --method "
                           "integrated_gradients:n_steps=16 --method saliency --no-progress";
  ASSERT_EQ(candor(base + " --json " + dir + "/a.json", &out), 0) << out;
  ASSERT_EQ(candor(base + " --tape-budget 1K --json " + dir + "/b.json", &out), 0) << out;
  const nlohmann::json a = read_json(dir + "/a.json"), b = read_json(dir + "/b.json");
  for (size_t m = 0; m < 2; ++m) {
    const auto& sa = a["attributions"][m]["steps"][0]["scores"];
    const auto& sb = b["attributions"][m]["steps"][0]["scores"];
    ASSERT_EQ(sa.size(), sb.size());
    double scale = 1e-30, diff = 0;
    for (size_t i = 0; i < sa.size(); ++i) {
      scale = std::max(scale, std::abs(sa[i].get<double>()));
      diff = std::max(diff, std::abs(sa[i].get<double>() - sb[i].get<double>()));
    }
    EXPECT_LE(diff / scale, 1e-5) << "method " << m;
  }
}

}  // namespace
}  // namespace candor
