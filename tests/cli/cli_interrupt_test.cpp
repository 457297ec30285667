// Ctrl-C (SIGINT) keeps the work that is done: `train` leaves a checkpoint that --resume
// continues from, `explain` writes the methods that finished and names the missing ones; both
// exit with 130. The CLI runs as a child; the test waits for a progress marker (bounded in time)
// before it sends the signal.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "test_util.h"

extern char** environ;

namespace candor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kCli = CANDOR_CLI_PATH;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A CLI run in the background with stdout and stderr in files.
struct Child {
  pid_t pid = -1;
  std::string out, err;

  Child(const std::vector<std::string>& args, const std::string& dir, const std::string& tag)
      : out(dir + "/" + tag + ".out"), err(dir + "/" + tag + ".err") {
    std::vector<std::string> all = {kCli};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (posix_spawn(&pid, kCli.c_str(), &fa, nullptr, argv.data(), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Child() {
    if (pid > 0) {  // a test that failed half-way leaves no process behind
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  // Waits (at most `seconds`) until stderr holds `marker` after offset `from`; false on timeout
  // or when the child ended first.
  bool wait_for(const std::string& marker, double seconds, size_t from = 0) {
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      std::string e = slurp(err);
      if (e.size() > from && e.find(marker, from) != std::string::npos) return true;
      int status;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Sends SIGINT and returns the exit code (128 + signal when killed by one; -1 when it did not
  // end within `seconds`, after which it is killed).
  int interrupt(double seconds = 120) {
    ::kill(pid, SIGINT);
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      int status;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
};

// The step of the last "N/TOTAL" progress entry in `text` (-1 when none).
int64_t last_step(const std::string& text, const std::string& total) {
  size_t at = text.rfind("/" + total);
  if (at == std::string::npos) return -1;
  size_t start = at;
  while (start > 0 && std::isdigit(static_cast<unsigned char>(text[start - 1]))) --start;
  return std::stoll(text.substr(start, at - start));
}

TEST(CliInterrupt, TrainWritesACheckpointOnCtrlCAndResumeContinuesFromIt) {
  const std::string dir = testing::temp_dir();
  {
    std::ofstream f(dir + "/d.csv");
    f << "a,b,label\n";
    for (int i = 0; i < 64; ++i)
      f << (i * 37 % 64) / 64.0 << "," << (i % 7) / 7.0 << "," << (i * 37 % 64 >= 32) << "\n";
  }
  // 7 batches an epoch x 20000 epochs: far longer than the test waits.
  const std::vector<std::string> args = {"train",  "--data",   dir + "/d.csv", "--label",
                                         "label",  "--out",    dir + "/m",     "--epochs",
                                         "20000",  "--batch-size", "8"};
  std::string total;  // the step count, as the progress bar draws it
  {
    Child c(args, dir, "first");
    ASSERT_GT(c.pid, 0);
    ASSERT_TRUE(c.wait_for(" loss", 120)) << slurp(c.err);
    EXPECT_EQ(c.interrupt(), 130) << slurp(c.err);
    const std::string err = slurp(c.err);
    const size_t loss = err.find(" loss"), slash = err.rfind('/', loss);
    ASSERT_NE(slash, std::string::npos) << err;
    total = err.substr(slash + 1, loss - slash - 1);
    EXPECT_THAT(err, HasSubstr("interrupted: training interrupted at step"));
    EXPECT_THAT(err, HasSubstr("--resume"));
  }
  ASSERT_TRUE(std::ifstream(dir + "/m/model.ckpt").good()) << "no checkpoint after Ctrl-C";
  std::vector<std::string> resume = args;
  resume.push_back("--resume");
  Child c(resume, dir, "second");
  ASSERT_GT(c.pid, 0);
  ASSERT_TRUE(c.wait_for("resuming from", 120)) << slurp(c.err);
  const std::string before = slurp(c.err);
  // The first step drawn after resuming, then Ctrl-C again.
  ASSERT_TRUE(c.wait_for(" loss", 120, before.find("resuming from"))) << slurp(c.err);
  EXPECT_EQ(c.interrupt(), 130);
  const std::string err = slurp(c.err);
  size_t at = err.find("at step ");
  ASSERT_NE(at, std::string::npos) << err;
  const int64_t resumed_at = std::stoll(err.substr(at + 8));
  EXPECT_GT(resumed_at, 0) << err;
  // Every step drawn in the second run is past the checkpoint: it did not start over.
  const std::string bar = err.substr(err.find('\n', at));
  const int64_t drawn = last_step(bar, total);
  EXPECT_GT(drawn, resumed_at) << err;
  EXPECT_EQ(bar.find("] 20/" + total), std::string::npos) << "the resumed run started over";
}

TEST(CliInterrupt, ExplainKeepsTheFinishedMethodsAndNamesTheMissingOnes) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string dir = testing::temp_dir();
  const std::string slow = "shapley_sampling:n_permutations=1000000";
  Child c({"explain", "--model", testing::shared_path("models/stories260K"), "--prompt",
           "Once upon a time there was a little girl named Lily who", "--method",
           "input_x_gradient", "--method", slow, "--method", "occlusion", "--json",
           dir + "/e.json"},
          dir, "explain");
  ASSERT_GT(c.pid, 0);
  ASSERT_TRUE(c.wait_for("input_x_gradient [####################] 100%", 120)) << slurp(c.err);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the slow method is running
  EXPECT_EQ(c.interrupt(), 130) << slurp(c.err);
  const std::string err = slurp(c.err), out = slurp(c.out);
  EXPECT_THAT(err, HasSubstr("interrupted: 1 method(s) finished"));
  EXPECT_THAT(err, HasSubstr("not done: " + slow + ", occlusion"));
  EXPECT_THAT(out, HasSubstr("input_x_gradient"));  // the console view of the finished one
  const std::string json = slurp(dir + "/e.json");
  ASSERT_FALSE(json.empty()) << "the finished method was not written";
  EXPECT_THAT(json, HasSubstr("\"method\": \"input_x_gradient\""));
  EXPECT_THAT(json, HasSubstr("\"interrupted\": true"));
  EXPECT_THAT(json, HasSubstr("\"" + slow + "\""));
  EXPECT_THAT(json, Not(HasSubstr("\"method\": \"occlusion\"")));
}

}  // namespace
}  // namespace candor
