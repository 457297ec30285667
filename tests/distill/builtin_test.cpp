// The built-in sentiment classifier (models/builtin/sentiment, trained by `candor train --model
// transformer`): it loads from the repository alone, classifies obvious sentences, and the
// explainers explain it through the CLI with a class target.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "candor/model.h"
#include "candor/text_transformer.h"
#include "test_util.h"

namespace candor::train {
namespace {

const std::string kDir = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/sentiment";

TEST(BuiltinSentiment, LoadsAndClassifiesObviousSentences) {
  ASSERT_TRUE(std::filesystem::exists(kDir + "/config.json"));
  EXPECT_LT(std::filesystem::file_size(kDir + "/model.safetensors"), 5u << 20);
  std::shared_ptr<const Model> m = load_model(kDir);
  EXPECT_EQ(m->config().kind, ModelKind::kClassifier);
  EXPECT_EQ(m->config().labels, (std::vector<std::string>{"negative", "positive"}));
  auto clf = model_text_classifier(m);
  for (const char* s : {"The food was great.", "I love this phone, it works great.",
                        "An excellent movie with a wonderful cast.", "Highly recommended!"})
    EXPECT_EQ(clf->predict(s), 1) << s;
  for (const char* s : {"The food was awful.", "This is the worst phone I have ever bought.",
                        "A boring, terrible film.", "Waste of money."})
    EXPECT_EQ(clf->predict(s), 0) << s;
}

TEST(BuiltinSentiment, CandorExplainExplainsAClass) {
  const std::string json = testing::temp_dir() + "/explain.json";
  const std::string cmd = std::string(CANDOR_CLI_PATH) + " explain --model " + kDir +
                          " --prompt 'The food was great.' --target positive --method occlusion" +
                          " --target-function logit --json " + json + " > /dev/null 2>&1";
  ASSERT_EQ(testing::run_command(cmd), 0) << cmd;
  std::ifstream f(json);
  nlohmann::json j = nlohmann::json::parse(f);
  const auto& a = j["attributions"][0];
  const auto& feats = a["features"];
  const auto& total = a["total"];
  ASSERT_EQ(feats.size(), total.size());
  size_t best = 0;
  for (size_t i = 1; i < total.size(); ++i)
    if (total[i].get<double>() > total[best].get<double>()) best = i;
  // "great" carries the positive class.
  EXPECT_EQ(feats[best]["label"], "great");
  EXPECT_GT(total[best].get<double>(), 1.0);
  EXPECT_GT(a["steps"][0]["target_value"].get<double>(), 0.0);  // logit of 'positive'
  // A class the model does not have is refused with the classes named.
  std::string out;
  EXPECT_NE(testing::run_command(std::string(CANDOR_CLI_PATH) + " explain --model " + kDir +
                                     " --prompt 'fine' --target neutral 2>&1",
                                 &out),
            0);
  EXPECT_NE(out.find("negative"), std::string::npos) << out;
}

// A saved transformer is a teacher for `candor distill --teacher FOLDER` (here: a linear student
// of the built-in classifier on sentences made up for the test).
TEST(BuiltinSentiment, IsADistillationTeacher) {
  const std::string dir = testing::temp_dir();
  {
    std::ofstream f(dir + "/s.csv");
    f << "text\n";
    const char* good[] = {"great", "excellent", "wonderful", "good", "lovely"};
    const char* bad[] = {"awful", "terrible", "bad", "boring", "horrible"};
    const char* things[] = {"food", "movie", "phone", "service", "story", "screen"};
    for (int i = 0; i < 120; ++i)
      f << "The " << things[i % 6] << " was " << (i % 2 ? good[i % 5] : bad[i % 5]) << ".\n";
  }
  std::string out;
  ASSERT_EQ(testing::run_command(std::string(CANDOR_CLI_PATH) + " distill --teacher " + kDir +
                                     " --data " + dir + "/s.csv --student linear --min-count 1" +
                                     " --seed 1 --out " + dir + "/out 2>&1",
                                 &out),
            0)
      << out;
  EXPECT_NE(out.find("bert-classifier classifier on column 'text'"), std::string::npos) << out;
  std::ifstream j(dir + "/out/report.json");
  nlohmann::json rep = nlohmann::json::parse(j);
  EXPECT_GE(rep["fidelity"]["test"]["agreement"].get<double>(), 0.9);
}

}  // namespace
}  // namespace candor::train
