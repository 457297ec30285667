// The policy keys the service reads for OpenTelemetry export and regeneration: export_content
// (default off) and limits.max_regenerations (default 2, 0..16), their errors and their JSON.
#include <gtest/gtest.h>

#include "candor/supervise.h"

namespace candor::supervise {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_policy(text, "p.yaml");
  } catch (const Error& e) {
    return std::string(e.what()) + " | " + e.hint();
  }
  return "(no error)";
}

TEST(PolicyServiceKeys, DefaultsReadValuesAndJson) {
  Policy d = parse_policy("", "p.yaml");
  EXPECT_FALSE(d.export_content) << "message content is not exported unless the policy says so";
  EXPECT_EQ(d.limits.max_regenerations, 2);
  EXPECT_FALSE(default_policy().export_content);

  Policy p = parse_policy("export_content: true\nlimits:\n  max_regenerations: 5\n", "p.yaml");
  EXPECT_TRUE(p.export_content);
  EXPECT_EQ(p.limits.max_regenerations, 5);
  nlohmann::json j = p.to_json();
  EXPECT_EQ(j["export_content"], true);
  EXPECT_EQ(j["limits"]["max_regenerations"], 5);
  // JSON policies read the same keys.
  Policy q =
      parse_policy(R"({"export_content": false, "limits": {"max_regenerations": 0}})", "p.json");
  EXPECT_FALSE(q.export_content);
  EXPECT_EQ(q.limits.max_regenerations, 0);
}

TEST(PolicyServiceKeys, BadValuesNameTheLineAndField) {
  std::string e = error_of("export_content: sometimes\n");
  EXPECT_NE(e.find("p.yaml:1: export_content"), std::string::npos) << e;
  e = error_of("limits:\n  max_regenerations: 17\n");
  EXPECT_NE(e.find("p.yaml:2: limits.max_regenerations"), std::string::npos) << e;
  e = error_of("limits:\n  max_regenerations: -1\n");
  EXPECT_NE(e.find("limits.max_regenerations"), std::string::npos) << e;
  e = error_of("limits:\n  max_regeneration: 3\n");
  EXPECT_NE(e.find("max_regenerations"), std::string::npos) << "a suggestion: " << e;
  e = error_of("export_contents: true\n");
  EXPECT_NE(e.find("export_content"), std::string::npos) << "a suggestion: " << e;
}

}  // namespace
}  // namespace candor::supervise
