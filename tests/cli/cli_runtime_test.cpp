// The candor binary's runtime limits: thread counts, start-up, memory on long lines.
#include <fstream>

#include "candor/runtime.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using testing::run_command;

const std::string kCli = CANDOR_CLI_PATH;
const std::string kLm = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

struct CliOutcome {
  int code;
  std::string out;
};

// Bounded by `timeout`, so that a hang fails the test instead of stalling the suite.
CliOutcome candor_cli(const std::string& args, int seconds = 120) {
  CliOutcome r;
  r.code = run_command("timeout " + std::to_string(seconds) + " " + kCli + " " + args, &r.out);
  return r;
}

std::string write_table(const std::string& dir) {
  std::string path = dir + "/t.csv";
  std::ofstream f(path);
  f << "text,label\n";
  for (int i = 0; i < 8; ++i) f << "once upon a time " << i << "," << (i % 2 ? "a" : "b") << "\n";
  return path;
}

// Every command that takes --threads rejects a count above 4 x the cores as a usage error before
// it loads or reads anything (100000 threads used never to finish).
TEST(CliThreads, TooManyThreadsIsAUsageErrorInEveryCommand) {
  std::string dir = testing::temp_dir();
  std::string csv = write_table(dir);
  const std::string too_many = " --threads 100000";
  for (const std::string& args : {
           "generate --model " + kLm + " -p 'Once' -n 4",
           "explain --model " + kLm + " -p 'Once upon a'",
           "evaluate --model " + kLm + " --data " + csv + " --out " + dir + "/ev",
           "info --model " + kLm,
           "convert --model " + kLm + " --out " + dir + "/conv",
           "distill --data " + csv + " --teacher-column label --out " + dir + "/di",
           "train --data " + csv + " --label label --out " + dir + "/tr",
           "train --data " + csv + " --label label --model transformer --out " + dir + "/tt",
           "train --data " + csv + " --model lm --out " + dir + "/lm",
       }) {
    CliOutcome r = candor_cli(args + too_many);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr("--threads 100000 is more than 4 x the")) << args;
    EXPECT_THAT(r.out, HasSubstr("at most " + std::to_string(max_threads()))) << args;
  }
}

// A count above the cores (but within 4 x) runs with one thread per core, not oversubscribed.
TEST(CliThreads, MoreThreadsThanCoresRunOnePerCore) {
  CliOutcome r = candor_cli("info --model " + kLm + " --json --threads " + std::to_string(max_threads()));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\"threads\": " + std::to_string(usable_cores())));
}

}  // namespace
}  // namespace candor
