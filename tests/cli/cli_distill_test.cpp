// `candor distill` and `candor train` end to end: reports written, bad input reported cleanly.
#include <nlohmann/json.hpp>

#include <fstream>

#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;

using CliResult = testing::CliRun;
CliResult cli(const std::string& args) { return testing::run_cli(args); }

std::string write(const std::string& name, const std::string& text) {
  std::string path = testing::temp_dir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::string table_csv() {
  std::string csv = "x,colour,teacher\n";
  for (int i = 0; i < 400; ++i)
    csv += std::to_string(i % 97) + "," + (i % 3 == 0 ? "red" : "blue") + "," +
           ((i % 97 > 40) ? "yes" : "no") + "\n";
  return csv;
}

TEST(CliDistill, TeacherColumnToGamReport) {
  const std::string data = write("t.csv", table_csv());
  const std::string out = testing::temp_dir() + "/report";
  CliResult r = cli("distill --teacher-column teacher --data " + data +
                    " --student gam --slice colour --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("agreement"));
  std::ifstream j(out + "/report.json");
  nlohmann::json rep = nlohmann::json::parse(j);
  EXPECT_GE(rep["fidelity"]["test"]["agreement"].get<double>(), 0.95);
  EXPECT_EQ(rep["student"]["kind"], "gam");
  EXPECT_TRUE(std::ifstream(out + "/report.html").good());
}

TEST(CliDistill, TrainWritesSummary) {
  const std::string data = write("t.csv", table_csv());
  const std::string out = testing::temp_dir() + "/mlp";
  CliResult r =
      cli("train --data " + data + " --label teacher --exclude colour --epochs 20 --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream j(out + "/summary.json");
  nlohmann::json s = nlohmann::json::parse(j);
  EXPECT_GT(s["test_accuracy"].get<double>(), 0.9);
  EXPECT_TRUE(std::ifstream(out + "/model.ckpt").good());
}

TEST(CliDistill, BadInputIsReportedCleanly) {
  const std::string ragged = write("ragged.csv", "a,b,label\n1,2,x\n3,y\n");
  CliResult r =
      cli("distill --teacher-column label --data " + ragged + " --out " + testing::temp_dir());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("ragged.csv line 3: 2 fields"));
  const std::string one = write("one.csv", "a,label\n1,x\n2,x\n3,x\n");
  r = cli("distill --teacher-column label --data " + one + " --out " + testing::temp_dir());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("has 1 class ('x')"));
  const std::string data = write("t.csv", table_csv());
  r = cli("distill --teacher-column nope --data " + data + " --out " + testing::temp_dir());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("no column 'nope'"));
  r = cli("distill --teacher-column teacher --data " + data + " --student forest --out " +
          testing::temp_dir());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("unknown student 'forest'"));
  r = cli("distill --data " + data + " --out " + testing::temp_dir());
  EXPECT_EQ(r.code, 2) << r.out;
  // Skip policy: the ragged row is left out and reported.
  r = cli("distill --teacher-column teacher --on-error skip --data " +
          write("r2.csv", table_csv() + "1,2\n") + " --out " + testing::temp_dir());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("skipped 1 bad records"));
  EXPECT_THAT(r.out, HasSubstr("line 402"));
}

}  // namespace
}  // namespace candor
