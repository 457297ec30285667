// The real `candor serve` process under load from 4 clients (completions and chat, streamed and
// not): SIGHUP with a changed policy, SIGTERM mid-load, then a restart on the same log, kill -9
// mid-load, and another restart. Every audit_id a client received is committed, the chain
// verifies, every record carries one of the two policy hashes, and the server's output holds no
// ThreadSanitizer report. scripts/tsan.sh runs it against candor_serve_tsan (the server built with
// ThreadSanitizer, CANDOR_SERVE_PATH); the normal test_serve runs it against the CLI.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "candor/audit_log.h"
#include "serve/serve_child.h"
#include "test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using serve_test::Child;
using serve_test::missing_from_log;
using serve_test::read_file;
using Clock = std::chrono::steady_clock;

// Four clients sending requests until told to stop or the server is gone (at most 400 each).
class Load {
 public:
  explicit Load(int port) {
    for (int k = 0; k < 4; ++k) threads_.emplace_back([this, port, k] { client(port, k); });
  }
  ~Load() { stop(); }
  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  int answered() const { return answered_; }
  // Waits (at most `seconds`) until `n` more requests have been answered; false on timeout.
  bool wait_for_more(int n, int seconds) {
    const int target = answered_ + n;
    const auto until = Clock::now() + std::chrono::seconds(seconds);
    while (answered_ < target && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return answered_ >= target;
  }
  std::set<std::string> ids() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }
  int cut_streams() const { return cut_streams_; }

 private:
  void client(int port, int k) {
    httplib::Client h("127.0.0.1", port);
    h.set_read_timeout(120, 0);
    h.set_connection_timeout(2, 0);
    for (int i = 0; i < 400 && !stop_; ++i) {
      const bool chat = (i + k) % 2 == 1, stream = (i / 2 + k) % 2 == 1;
      json body = {{"max_tokens", 6}, {"seed", k * 1000 + i}, {"user", "c" + std::to_string(k)}};
      if (chat)
        body["messages"] = {{{"role", "user"}, {"content", "Tell me about the cat"}}};
      else
        body["prompt"] = "Once upon a time the cat";
      if (stream) body["stream"] = true;
      auto r = h.Post(chat ? "/v1/chat/completions" : "/v1/completions", body.dump(),
                      "application/json");
      if (!r) break;  // the server is gone
      if (r->status != 200) continue;
      std::string id;
      if (!stream) {
        json j = json::parse(r->body, nullptr, false);
        if (!j.is_discarded() && j.contains("candor")) id = j["candor"]["audit_id"];
      } else {
        // The final event carries the candor block; [DONE] ends a whole stream.
        const size_t done = r->body.find("data: [DONE]");
        const size_t last = r->body.rfind("data: {", done);
        if (done != std::string::npos && last != std::string::npos) {
          json j = json::parse(r->body.substr(last + 6, done - last - 6), nullptr, false);
          if (!j.is_discarded() && j.contains("candor")) id = j["candor"]["audit_id"];
        }
        if (id.empty()) ++cut_streams_;
      }
      if (id.empty()) continue;
      std::lock_guard<std::mutex> lock(mu_);
      ids_.insert(id);
      ++answered_;
    }
  }
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<int> answered_{0}, cut_streams_{0};
  mutable std::mutex mu_;
  std::set<std::string> ids_;
};

bool log_has(const Child& c, const std::string& text, int seconds) {
  const auto until = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < until) {
    if (read_file(c.log).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(ServeSignals, HupTermAndKill9UnderLoadLoseNoAnsweredRecordAndRaceNothing) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string model = testing::shared_path("models/stories260K");
  const std::string dir = testing::temp_dir();
  const std::string db = dir + "/audit.db", policy = dir + "/policy.yaml";
  auto write_policy = [&](const std::string& text) {
    std::ofstream f(policy + ".tmp");
    f << text;
    f.close();
    std::rename((policy + ".tmp").c_str(), policy.c_str());
  };
  write_policy("limits: {max_tokens: 8}\nexplain: {method: occlusion, granularity: word}\n");
  const std::vector<std::string> args = {"--model",  model,    "--db",       db,
                                         "--listen", "127.0.0.1:0", "--policy", policy,
                                         "--parallel", "2",    "--threads",  "1"};
  std::set<std::string> received;
  std::vector<std::string> logs;

  // 1. Load; SIGHUP with a changed policy (a blocking term watched on every stream, an
  //    uncertainty check); more load; SIGTERM mid-load: in-flight requests finish, exit 0.
  {
    Child c(args, dir + "/serve1.log");
    logs.push_back(c.log);
    ASSERT_TRUE(c.wait_ready()) << read_file(c.log);
    Load load(c.port);
    EXPECT_TRUE(load.wait_for_more(8, 180)) << read_file(c.log);
    write_policy(
        "limits: {max_tokens: 8}\nexplain: {method: occlusion, granularity: word}\n"
        "checks:\n  - {name: terms, type: blocked_terms, terms: [dragon], on_fail: block}\n"
        "  - {name: unsure, type: uncertainty, max_entropy: 100, on_fail: flag}\n");
    ::kill(c.pid, SIGHUP);
    EXPECT_TRUE(log_has(c, "policy reloaded", 60)) << read_file(c.log);
    EXPECT_TRUE(load.wait_for_more(8, 180)) << read_file(c.log);
    EXPECT_EQ(c.stop(SIGTERM), 0) << read_file(c.log);
    load.stop();
    EXPECT_EQ(load.cut_streams(), 0) << "a stream in flight at SIGTERM was cut";
    for (const auto& id : load.ids()) received.insert(id);
    EXPECT_NE(read_file(c.log).find("stopped; the audit log is closed"), std::string::npos)
        << read_file(c.log);
  }
  // 2. Restart on the same log; kill -9 mid-load.
  {
    Child c(args, dir + "/serve2.log");
    logs.push_back(c.log);
    ASSERT_TRUE(c.wait_ready()) << read_file(c.log);
    Load load(c.port);
    EXPECT_TRUE(load.wait_for_more(8, 180)) << read_file(c.log);
    c.stop(SIGKILL);
    load.stop();
    for (const auto& id : load.ids()) received.insert(id);
  }
  // 3. Restart after the crash: it serves, and stops cleanly.
  {
    Child c(args, dir + "/serve3.log");
    logs.push_back(c.log);
    ASSERT_TRUE(c.wait_ready()) << read_file(c.log);
    httplib::Client h("127.0.0.1", c.port);
    h.set_read_timeout(120, 0);
    auto r = h.Post("/v1/completions", R"({"prompt": "Once", "max_tokens": 4})",
                    "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body, nullptr, false);
    if (!j.is_discarded() && j.contains("candor")) received.insert(j["candor"]["audit_id"]);
    EXPECT_EQ(c.stop(SIGTERM), 0) << read_file(c.log);
  }

  // Every answered request is committed; the chain verifies; two policies judged them.
  ASSERT_GE(received.size(), 25u);
  EXPECT_EQ(missing_from_log(db, received), 0u)
      << "of " << received.size() << " answered requests";
  auto log = store::open_audit_log(db);
  std::set<std::string> hashes;
  store::AuditQuery q;
  q.limit = 1000;
  for (const auto& rec : log->query(q).records) hashes.insert(rec.policy_hash);
  EXPECT_EQ(hashes.size(), 2u) << "the first policy's and the reloaded one's";
  log->close();
  for (const auto& path : logs) {
    const std::string text = read_file(path);
    EXPECT_EQ(text.find("WARNING: ThreadSanitizer"), std::string::npos) << path << "\n" << text;
    EXPECT_EQ(text.find("ThreadSanitizer:"), std::string::npos) << path << "\n" << text;
  }
}

}  // namespace
}  // namespace candor
