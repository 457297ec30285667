// `candor serve` as a child process for the tests: started with its arguments on 127.0.0.1, its
// stdout and stderr to a file, stopped with a signal. The binary is CANDOR_SERVE_PATH when the
// build defines it (the ThreadSanitizer tree's candor_serve_tsan, scripts/tsan.sh), else the CLI.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "candor/audit_log.h"

namespace candor::serve_test {

inline const char* serve_path() {
#ifdef CANDOR_SERVE_PATH
  return CANDOR_SERVE_PATH;
#else
  return CANDOR_CLI_PATH;
#endif
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// One `candor serve` child: started with `args`, stdout and stderr to `log`.
struct Child {
  using Clock = std::chrono::steady_clock;
  pid_t pid = -1;
  int port = 0;
  std::string log;

  Child(const std::vector<std::string>& args, const std::string& log_path) : log(log_path) {
    pid = ::fork();
    if (pid == 0) {
      FILE* f = std::freopen(log_path.c_str(), "w", stderr);
      (void)f;
      ::dup2(::fileno(stderr), 1);
      std::vector<char*> argv;
      static std::string exe = serve_path();
      argv.push_back(exe.data());
      std::string serve = "serve";
      argv.push_back(serve.data());
      std::vector<std::string> copy = args;
      for (auto& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      ::_exit(127);
    }
  }
  // Waits (at most 60 s) for "listening on http://127.0.0.1:PORT" and /health 200.
  bool wait_ready() {
    const std::regex re(R"(listening on http://127\.0\.0\.1:(\d+))");
    const auto until = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < until) {
      std::smatch m;
      const std::string text = read_file(log);
      if (port == 0 && std::regex_search(text, m, re)) port = std::stoi(m[1]);
      if (port != 0) {
        httplib::Client c("127.0.0.1", port);
        c.set_connection_timeout(1, 0);
        auto r = c.Get("/health");
        if (r && r->status == 200) return true;
      }
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  // Sends `sig` and waits (at most 60 s) for the exit; returns the exit status or -1.
  int stop(int sig) {
    if (pid <= 0) return -1;
    ::kill(pid, sig);
    const auto until = Clock::now() + std::chrono::seconds(60);
    int status = 0;
    while (Clock::now() < until) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    pid = -1;
    return -1;
  }
  ~Child() {
    if (pid > 0) stop(SIGKILL);
  }
};

// Expects the audit log at `db` to verify and to hold at least as many records as `received`;
// returns how many of the received audit ids it lacks.
inline size_t missing_from_log(const std::string& db, const std::set<std::string>& received) {
  store::VerifyReport v = store::verify_audit_log(db);
  EXPECT_TRUE(v.ok) << v.to_json().dump(2);
  EXPECT_GE(v.records, static_cast<int64_t>(received.size()));
  auto log = store::open_audit_log(db);
  size_t missing = 0;
  for (const auto& id : received) missing += log->get(id) ? 0 : 1;
  log->close();
  return missing;
}

}  // namespace candor::serve_test
