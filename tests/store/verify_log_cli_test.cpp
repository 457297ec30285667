// `candor audit verify-log`: exit 0 on an intact log, 1 naming the broken record, --json.
#include <gtest/gtest.h>

#include "candor/audit_log.h"
#include "test_util.h"

namespace candor {
namespace {

using testing::run_cli;
using testing::temp_dir;

TEST(VerifyLogCli, IntactLogExitsZeroAndTamperedLogNamesTheRecord) {
  std::string path = temp_dir() + "/audit.db";
  std::vector<store::AuditRecord> stored;
  {
    auto log = store::open_audit_log(path);
    for (int i = 0; i < 5; ++i) {
      store::AuditRecord r;
      r.prompt = "prompt " + std::to_string(i);
      r.answer = "answer " + std::to_string(i);
      r.decision = "allow";
      stored.push_back(log->append(r));
    }
  }
  auto ok = run_cli("audit verify-log --db " + path);
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("ok: 5 records"), std::string::npos) << ok.out;
  auto ok_json = run_cli("audit verify-log --json --db " + path);
  EXPECT_EQ(ok_json.code, 0) << ok_json.out;
  nlohmann::json j = nlohmann::json::parse(ok_json.out.substr(ok_json.out.find('{')));
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_EQ(j["records"], 5);

  ASSERT_EQ(testing::run_command("sqlite3 " + path +
                                 " \"UPDATE records SET answer = 'forged' WHERE seq = 2\""),
            0)
      << "the sqlite3 command is needed (Debian package sqlite3)";
  auto bad = run_cli("audit verify-log --db " + path);
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("seq 2 id " + stored[1].id + ": edited"), std::string::npos) << bad.out;
  auto bad_json = run_cli("audit verify-log --db " + path + " --json");
  EXPECT_EQ(bad_json.code, 1);
  j = nlohmann::json::parse(bad_json.out.substr(bad_json.out.find('{')));
  EXPECT_FALSE(j["ok"].get<bool>());
  ASSERT_EQ(j["problems"].size(), 1u);
  EXPECT_EQ(j["problems"][0]["seq"], 2);
  EXPECT_EQ(j["problems"][0]["id"], stored[1].id);
  EXPECT_EQ(j["problems"][0]["what"], "edited");
}

TEST(VerifyLogCli, BadPathsSayWhatIsWrong) {
  std::string dir = temp_dir();
  auto missing = run_cli("audit verify-log --db " + dir + "/missing.db");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.out.find("does not exist"), std::string::npos) << missing.out;
  // (A folder, a non-SQLite file and a foreign database: tests/store/audit_log_test.cpp.)
  auto usage = run_cli("audit verify-log");
  EXPECT_EQ(usage.code, 2) << usage.out;
}

}  // namespace
}  // namespace candor
