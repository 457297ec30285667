// Inputs that used to give silent nonsense (issue 13, defect 8): a contrast of a token with
// itself, a data file with no rows, a compute dtype that can only fail. Each is now an error
// that names the input and says what to do.
#include <fstream>

#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::run_command;
using testing::shared_path;

const std::string kCli = CANDOR_CLI_PATH;

using CliResult = testing::CliRun;
CliResult candor(const std::string& args) { return testing::run_cli(args); }
std::string model_dir() { return shared_path("models/stories260K"); }

TEST(CliDegenerate, ContrastOfATokenWithItselfIsAnErrorNamingBoth) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  // " mom" and " mom" (and "mom", which resolves to the same piece " mom") are one token.
  for (const char* contrast : {" mom, mom", " mom,mom"}) {
    CliResult r = candor("explain --model " + model_dir() + " -p 'Lily saw her' --contrast '" +
                   contrast + "' --no-progress");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("error: --contrast"));
    EXPECT_THAT(r.out, HasSubstr("same token"));
    EXPECT_THAT(r.out, HasSubstr("' mom'"));
    EXPECT_THAT(r.out, HasSubstr("hint: give two different tokens"));
    EXPECT_THAT(r.out, Not(HasSubstr("==")));  // no attribution printed
  }
  // Two different tokens still work.
  CliResult ok = candor("explain --model " + model_dir() +
                  " -p 'Lily saw her' --contrast ' mom, friend' --no-progress");
  EXPECT_EQ(ok.code, 0) << ok.out;
}

TEST(CliDegenerate, EvaluateOfAHeaderOnlyCsvIsAnError) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir();
  { std::ofstream(dir + "/header.csv") << "text,label\n"; }
  CliResult r = candor("evaluate --model " + model_dir() + " --data " + dir +
                 "/header.csv --method occlusion --no-progress --out " + dir + "/out");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("error: " + dir + "/header.csv: no rows to evaluate"));
  EXPECT_THAT(r.out, HasSubstr("no data rows"));
  EXPECT_THAT(r.out, HasSubstr("hint: "));
  EXPECT_THAT(r.out, Not(HasSubstr("| method |")));  // no table of dashes
}

// The sibling: every row skipped as bad (--on-error skip) leaves nothing to evaluate either.
TEST(CliDegenerate, EvaluateWithEveryRowSkippedIsAnError) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir();
  { std::ofstream(dir + "/blank.csv") << "text,label\n\"\",1\n\"  \",0\n"; }
  CliResult r = candor("evaluate --model " + model_dir() + " --data " + dir +
                 "/blank.csv --method occlusion --on-error skip --no-progress --out " + dir +
                 "/out");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("no rows to evaluate (all 2 row(s) were skipped as bad)"));
  EXPECT_THAT(r.out, Not(HasSubstr("| method |")));
  // --limit 0 would evaluate nothing: refused as a usage error.
  CliResult z = candor("evaluate --model " + model_dir() + " --data " + dir +
                 "/blank.csv --limit 0 --no-progress --out " + dir + "/out2");
  EXPECT_EQ(z.code, 2) << z.out;
  EXPECT_THAT(z.out, HasSubstr("--limit must be at least 1"));
}

TEST(CliDegenerate, DtypeF16IsNotOfferedAndSaysWhatToUse) {
  for (const char* cmd : {"info", "generate", "explain"}) {
    CliResult help = candor(std::string(cmd) + " --help");
    ASSERT_EQ(help.code, 0) << help.out;
    const size_t at = help.out.find("--dtype");
    ASSERT_NE(at, std::string::npos) << cmd;
    const std::string line = help.out.substr(at, help.out.find('\n', at) - at);
    EXPECT_THAT(line, HasSubstr("bf16")) << cmd;
    // "f16" appears only inside "bf16".
    for (size_t p = line.find("f16"); p != std::string::npos; p = line.find("f16", p + 1))
      EXPECT_TRUE(p > 0 && line[p - 1] == 'b') << cmd << " offers f16: " << line;
  }
  // Refused while parsing (exit 2), before any model is read, saying what to use.
  CliResult r = candor("generate --model /no/such/model -p hi --dtype f16");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("use bf16"));
  EXPECT_THAT(r.out, Not(HasSubstr("does not exist")));
  CliResult bad = candor("info --model /no/such/model --dtype f64");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_THAT(bad.out, HasSubstr("use f32 or bf16"));
}

}  // namespace
}  // namespace candor
