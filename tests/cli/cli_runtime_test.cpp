// The candor binary's runtime limits: thread counts, start-up, memory on long lines.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "candor/runtime.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using testing::run_command;

const std::string kCli = CANDOR_CLI_PATH;
const std::string kLm = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

using CliOutcome = testing::CliRun;

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

// Peak resident memory (bytes) of `command` run in a child process of its own.
long peak_rss_of(const std::string& command) {
  pid_t pid = fork();
  if (pid == 0) {
    std::string line = "exec " + command + " >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  struct rusage ru {};
  if (pid < 0 || wait4(pid, &status, 0, &ru) != pid) return -1;
  return ru.ru_maxrss * 1024L;
}

void write_long_line_files(const std::string& dir, size_t n) {
  std::string body(n, 'a');
  std::string quoted = body;
  for (size_t i = 0; i < quoted.size(); i += 1000) quoted[i] = '"';  // doubled below
  std::string doubled;
  doubled.reserve(quoted.size() + quoted.size() / 1000 + 2);
  for (char ch : quoted) {
    doubled += ch;
    if (ch == '"') doubled += '"';
  }
  std::ofstream(dir + "/plain.csv") << "text,label\n" << body << ",x\nshort,y\n";
  std::ofstream(dir + "/quoted.csv") << "text,label\n\"" << doubled << "\",x\nshort,y\n";
  std::ofstream(dir + "/rows.jsonl") << "{\"text\": \"" << body << "\", \"label\": \"x\"}\n"
                                     << "{\"text\": \"short\", \"label\": \"y\"}\n";
}

// Reading a table with a 50 MB line costs a small multiple of the line (it cost 4 to 6 times
// the line, and 1.8 GB in all, before): the peak over the same command on a file with short
// lines stays under 3 x the line, for CSV (plain and quoted fields).
TEST(CliMemory, ALongLineCostsASmallMultipleOfItsSize) {
  const size_t line = 50u << 20;
  std::string big = testing::temp_dir(), small = testing::temp_dir();
  write_long_line_files(big, line);
  write_long_line_files(small, 10);
  // JSON Lines (rows.jsonl, written too) still peaks at about 6 x the line: not yet bounded.
  for (const char* file : {"plain.csv", "quoted.csv"}) {
    // distill reads the whole table, then stops: two rows leave no test split.
    auto cmd = [&](const std::string& dir) {
      return kCli + " distill --data " + dir + "/" + file + " --teacher-column label --out " + dir +
             "/out";
    };
    long base = peak_rss_of(cmd(small)), peak = peak_rss_of(cmd(big));
    ASSERT_GT(base, 0);
    ASSERT_GT(peak, 0);
    EXPECT_LT(peak - base, static_cast<long>(3 * line))
        << file << ": peak " << peak / (1 << 20) << " MiB over a baseline of " << base / (1 << 20)
        << " MiB for a " << line / (1 << 20) << " MiB line";
  }
}


// Commands that run no model skip the re-execution that picks OpenBLAS's kernels, so libtorch is
// loaded (and its static initialisers run) once, not twice. Counted from the dynamic loader's own
// trace, not timed.
int libtorch_inits(const std::string& args) {
  std::string out;
  run_command("env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY -u CANDOR_BLAS_REEXEC LD_DEBUG=files "
              "timeout 120 " + kCli + " " + args, &out);
  int n = 0;
  for (size_t at = out.find("calling init: "); at != std::string::npos;
       at = out.find("calling init: ", at + 1)) {
    const size_t eol = out.find('\n', at);
    if (out.substr(at, eol - at).find("libtorch_cpu.so") != std::string::npos) ++n;
  }
  return n;
}

TEST(CliStartup, CommandsWithoutAModelLoadTheLibrariesOnce) {
  for (const char* args : {"--version", "--help", "methods", "explain --help"}) {
    EXPECT_EQ(libtorch_inits(args), 1) << "candor " << args;
  }
}

}  // namespace
}  // namespace candor
