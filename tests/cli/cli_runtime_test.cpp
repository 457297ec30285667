// The candor binary's runtime limits: thread counts, start-up, memory on long lines.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
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
  std::string escaped;  // a \" and a \u00e9 every 1000 bytes
  escaped.reserve(n + n / 100 + 16);
  for (size_t i = 0; i < n; ++i) {
    if (i % 1000 == 1)
      escaped += "\\\"";
    else if (i % 1000 == 2)
      escaped += "\\u00e9";
    else
      escaped += 'a';
  }
  std::ofstream(dir + "/escaped.jsonl")
      << "{\"label\": \"x\", \"text\": \"" << escaped << "\", \"n\": [1, {\"a\": 2}]}\n"
      << "{\"text\": \"short\", \"label\": \"y\"}\n";
}

// Reading a table with a 50 MB line costs a small multiple of the line (it cost 4 to 6 times
// the line, and 1.8 GB in all, before): the peak over the same command on a file with short
// lines stays under 3 x the line, for CSV (plain and quoted fields) and JSON Lines (plain and
// with escapes; JSON Lines cost 5 to 6 times the line before its records were scanned directly).
TEST(CliMemory, ALongLineCostsASmallMultipleOfItsSize) {
  const size_t line = 50u << 20;
  std::string big = testing::temp_dir(), small = testing::temp_dir();
  write_long_line_files(big, line);
  write_long_line_files(small, 10);
  for (const char* file : {"plain.csv", "quoted.csv", "rows.jsonl", "escaped.jsonl"}) {
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

// After reading, distill featurises the rows: a 50 MB text in a training row costs a small
// multiple of it there too (its words are copied once, at their size; a word over 256 bytes is
// in no n-gram; a value that long is text, never a category copied into the report). It cost 4
// times the line as text and 7 times as an inferred category before.
TEST(CliMemory, FeaturisingALongTextCostsASmallMultipleOfIt) {
  const size_t line = 50u << 20;
  auto write = [](const std::string& dir, size_t n) {
    std::ofstream f(dir + "/many.csv");
    f << "text,label,split\n" << std::string(n, 'a') << ",x,train\n";
    for (int i = 1; i < 40; ++i)
      f << "good food " << i << "," << (i % 2 ? "y" : "x") << "," << (i % 5 ? "train" : "test")
        << "\n";
  };
  std::string big = testing::temp_dir(), small = testing::temp_dir();
  write(big, line);
  write(small, 10);
  for (const std::string type : {"", " --type text=text"}) {
    auto cmd = [&](const std::string& dir) {
      return kCli + " distill --data " + dir + "/many.csv --teacher-column label --split-column " +
             "split --exclude split --min-count 1 --out " + dir + "/out" + type;
    };
    std::remove((big + "/out/report.json").c_str());
    long base = peak_rss_of(cmd(small)), peak = peak_rss_of(cmd(big));
    ASSERT_GT(base, 0);
    ASSERT_GT(peak, 0);
    EXPECT_TRUE(std::ifstream(big + "/out/report.json").good()) << "distill did not finish";
    EXPECT_LT(peak - base, static_cast<long>(3 * line))
        << "type" << type << ": peak " << peak / (1 << 20) << " MiB over a baseline of "
        << base / (1 << 20) << " MiB for a " << line / (1 << 20) << " MiB text";
  }
}

// Commands that run no model skip the re-execution that picks OpenBLAS's kernels, so libtorch is
// loaded (and its static initialisers run) once, not twice. Counted from the dynamic loader's own
// trace, not timed.
int libtorch_inits(const std::string& args, const std::string& cli = kCli) {
  std::string out;
  run_command(
      "env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY -u CANDOR_BLAS_REEXEC LD_DEBUG=files "
      "timeout 120 " +
          cli + " " + args,
      &out);
  int n = 0;
  for (size_t at = out.find("calling init: "); at != std::string::npos;
       at = out.find("calling init: ", at + 1)) {
    const size_t eol = out.find('\n', at);
    if (out.substr(at, eol - at).find("libtorch_cpu.so") != std::string::npos) ++n;
  }
  return n;
}

// The engine itself (started directly, as the launcher does not): commands without a model
// skip the re-execution; a model command re-executes once (two loads).
TEST(CliStartup, CommandsWithoutAModelLoadTheLibrariesOnce) {
  const std::string engine = CANDOR_ENGINE_PATH;
  for (const char* args : {"--version", "--help", "methods", "explain --help"}) {
    EXPECT_EQ(libtorch_inits(args, engine), 1) << "candor-engine " << args;
  }
  EXPECT_EQ(libtorch_inits("info --model /nonexistent", engine), 2);
  // Through the launcher: explain --help runs the engine, once.
  EXPECT_EQ(libtorch_inits("explain --help"), 1);
}

// The launcher `candor` links no libtorch: --version, --help and methods are answered without
// loading it (the loader's trace names no libtorch library), with the engine's own texts.
TEST(CliStartup, TheLauncherAnswersWithoutLoadingLibtorch) {
  const std::string engine = CANDOR_ENGINE_PATH;
  for (const char* args : {"--version", "--help", "-h", "methods", "methods --json"}) {
    std::string trace, out, want;
    ASSERT_EQ(
        run_command("LD_DEBUG=files timeout 60 " + kCli + " " + args + " 2>&1 >/dev/null", &trace),
        0)
        << args;
    EXPECT_THAT(trace, ::testing::Not(HasSubstr("libtorch"))) << "candor " << args;
    EXPECT_THAT(trace, ::testing::Not(HasSubstr("candor-engine"))) << "candor " << args;
    ASSERT_EQ(run_command("timeout 60 " + kCli + " " + args + " 2>/dev/null", &out), 0);
    ASSERT_EQ(run_command("timeout 120 " + engine + " " + args + " 2>/dev/null", &want), 0);
    EXPECT_EQ(out, want) << "candor " << args;
    EXPECT_FALSE(out.empty()) << args;
  }
  std::string out;
  run_command(kCli + " --version", &out);
  EXPECT_THAT(out, HasSubstr("candor 0.1.0"));
  run_command(kCli + " --help", &out);
  EXPECT_THAT(out, HasSubstr("predict"));  // generated from the engine's command line
}

// A model command through the launcher loads libtorch once: the launcher sets OPENBLAS_CORETYPE
// and OMP_WAIT_POLICY and execs the engine, which does not re-execute itself. The engine sees
// the environment it would have set itself.
TEST(CliStartup, AModelCommandThroughTheLauncherLoadsTheLibrariesOnce) {
  EXPECT_EQ(libtorch_inits("info --model /nonexistent"), 1);
  EXPECT_EQ(libtorch_inits("info --model " + kLm + " --json"), 1);
  std::string out;
  ASSERT_EQ(run_command("env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY -u CANDOR_BLAS_REEXEC " +
                            kCli + " info --json --model " + kLm,
                        &out),
            0)
      << out;
  const std::string core = preferred_openblas_core();
  if (!core.empty()) EXPECT_THAT(out, HasSubstr("\"openblas_coretype\": \"" + core + "\""));
  // A value the user set is kept.
  ASSERT_EQ(
      run_command("OPENBLAS_CORETYPE=Prescott " + kCli + " info --json --model " + kLm + " 2>&1",
                  &out),
      0);
  EXPECT_THAT(out, HasSubstr("\"openblas_coretype\": \"Prescott\""));
}

}  // namespace
}  // namespace candor
