// `candor audit check-policy` and `candor audit supervise` on the built-in LM.
#include <gtest/gtest.h>

#include <fstream>

#include "test_util.h"

namespace candor {
namespace {

using testing::run_cli;
using testing::temp_dir;

const std::string kBuiltin = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

nlohmann::json json_of(const std::string& out) {
  return nlohmann::json::parse(out.substr(out.find('{')));
}

TEST(SuperviseCli, CheckPolicyPrintsThePolicyOrItsErrorWithLineAndSuggestion) {
  std::string dir = temp_dir();
  std::ofstream(dir + "/good.yaml") << "checks:\n  - type: length\n    max_tokens: 4\n";
  auto good = run_cli("audit check-policy --json --policy " + dir + "/good.yaml");
  ASSERT_EQ(good.code, 0) << good.out;
  nlohmann::json j = json_of(good.out);
  EXPECT_EQ(j["checks"][0]["type"], "length");
  EXPECT_EQ(j["hash"].get<std::string>().size(), 64u);
  std::ofstream(dir + "/bad.yaml") << "checks:\n  - type: length\n    max_tokns: 4\n";
  auto bad = run_cli("audit check-policy --policy " + dir + "/bad.yaml");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("bad.yaml:3: checks[0].max_tokns: unknown key"), std::string::npos)
      << bad.out;
  EXPECT_NE(bad.out.find("did you mean max_tokens?"), std::string::npos) << bad.out;
}

TEST(SuperviseCli, SuperviseRunsThePolicyOnTheBuiltinModel) {
  std::string dir = temp_dir();
  std::ofstream(dir + "/policy.yaml")
      << "checks:\n"
         "  - type: length\n    max_tokens: 4\n    on_fail: block\n"
         "  - type: counterfactual\n    threshold: 100\n    async: true\n";
  auto run =
      run_cli("audit supervise --json -m " + kBuiltin +
              " -p \"Once upon a time, a little boy\" -n 8 --policy " + dir + "/policy.yaml");
  ASSERT_EQ(run.code, 0) << run.out;
  nlohmann::json j = json_of(run.out);
  EXPECT_FALSE(j["answer"].get<std::string>().empty());
  EXPECT_EQ(j["explanation"]["method"], "occlusion");
  EXPECT_FALSE(j["explanation"]["top"].empty());
  ASSERT_EQ(j["review"]["checks"].size(), 1u);
  EXPECT_EQ(j["review"]["checks"][0]["outcome"], "fail");  // 8 tokens > 4
  EXPECT_EQ(j["review"]["decision"], "block");
  ASSERT_EQ(j["async_review"]["checks"].size(), 1u);
  EXPECT_EQ(j["async_review"]["checks"][0]["type"], "counterfactual");
  EXPECT_EQ(j["async_review"]["checks"][0]["outcome"], "pass");
  EXPECT_EQ(j["async_review"]["decision"], "allow");
}

}  // namespace
}  // namespace candor
