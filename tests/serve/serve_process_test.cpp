// `candor serve` as a child process on 127.0.0.1 (a free port): start-up, SIGTERM under load,
// and durability: clients on loopback, `kill -9` mid-run, restart; every audit_id a client
// received is in the log and the chain verifies. Every loop is bounded in count and time.
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "candor/audit_log.h"
#include "serve/serve_child.h"
#include "test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using serve_test::Child;
using serve_test::missing_from_log;
using serve_test::read_file;

class ServeProcess : public ::testing::Test {
 protected:
  void SetUp() override { CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin"); }
  std::string model() const { return testing::shared_path("models/stories260K"); }
};

TEST_F(ServeProcess, StartsPrintsItsAddressAndStopsOnSigterm) {
  const std::string dir = testing::temp_dir();
  const auto t0 = Clock::now();
  Child c({"--model", model(), "--db", dir + "/audit.db", "--listen", "127.0.0.1:0"},
          dir + "/serve.log");
  ASSERT_TRUE(c.wait_ready()) << read_file(c.log);
  const double startup_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::cout << "[ startup ] ready in " << startup_s << " s\n";
  const std::string log = read_file(c.log);
  EXPECT_NE(log.find("no --api-keys"), std::string::npos) << log;
  // A request in flight when SIGTERM arrives is still answered: a stream that has begun runs to
  // its end ([DONE], after the candor block with its committed audit_id).
  std::atomic<bool> begun{false};
  std::string streamed;
  std::mutex mu;
  std::thread client([&] {
    httplib::Client h("127.0.0.1", c.port);
    h.set_read_timeout(60, 0);
    httplib::Request rq;
    rq.method = "POST";
    rq.path = "/v1/completions";
    rq.body =
        R"({"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, "stream": true})";
    rq.set_header("Content-Type", "application/json");
    rq.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      std::lock_guard<std::mutex> lock(mu);
      streamed.append(data, n);
      begun = true;
      return true;
    };
    h.send(rq);
  });
  for (int i = 0; i < 3000 && !begun; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(begun) << read_file(c.log);
  EXPECT_EQ(c.stop(SIGTERM), 0) << read_file(c.log);
  client.join();
  EXPECT_NE(streamed.find("data: [DONE]"), std::string::npos) << streamed;
  EXPECT_NE(streamed.find("\"audit_id\""), std::string::npos) << streamed;
  store::VerifyReport v = store::verify_audit_log(dir + "/audit.db");
  EXPECT_TRUE(v.ok) << v.to_json().dump();
  EXPECT_EQ(v.records, 1);
  const std::string after = read_file(c.log);
  EXPECT_NE(after.find("stopped; the audit log is closed"), std::string::npos) << after;
  // The request line is written when the stream ends: after the stop began.
  const size_t stopping = after.find("stopping (SIGTERM)"),
               line = after.find("POST /v1/completions 200");
  ASSERT_NE(line, std::string::npos) << after;
  EXPECT_LT(stopping, line) << "the stream was still running when SIGTERM arrived\n" << after;
}

// kill -9 under load from 4 clients, restart, several rounds: every audit_id a client received
// is in the log, and the chain verifies. The middle round runs with --audit-sync normal
// (synchronous=NORMAL: no fsync per commit), which must survive kill -9 as well.
TEST_F(ServeProcess, EveryAnsweredRequestSurvivesKill9) {
  const std::string dir = testing::temp_dir();
  const std::string db = dir + "/audit.db";
  std::set<std::string> received;
  std::mutex mu;
  for (int round = 0; round < 3; ++round) {
    std::vector<std::string> args = {"--model",     model(),      "--db", db,          "--listen",
                                     "127.0.0.1:0", "--parallel", "2",    "--threads", "1"};
    if (round == 1) args.insert(args.end(), {"--audit-sync", "normal"});
    Child c(args, dir + "/serve" + std::to_string(round) + ".log");
    ASSERT_TRUE(c.wait_ready()) << read_file(c.log);
    if (round == 1)
      EXPECT_NE(read_file(c.log).find("synchronous=NORMAL"), std::string::npos) << read_file(c.log);
    std::atomic<int> answered{0};
    std::atomic<bool> dead{false};
    std::vector<std::thread> clients;
    for (int k = 0; k < 4; ++k) {
      clients.emplace_back([&, k] {
        httplib::Client h("127.0.0.1", c.port);
        h.set_read_timeout(30, 0);
        h.set_connection_timeout(2, 0);
        for (int i = 0; i < 200 && !dead; ++i) {
          json body = {{"prompt", "Once upon a time"},
                       {"max_tokens", 8},
                       {"seed", k * 1000 + i},
                       {"user", "client" + std::to_string(k)}};
          auto r = h.Post("/v1/completions", body.dump(), "application/json");
          if (!r) break;  // the server is gone
          if (r->status != 200) continue;
          json j = json::parse(r->body, nullptr, false);
          if (j.is_discarded()) continue;
          std::lock_guard<std::mutex> lock(mu);
          received.insert(j["candor"]["audit_id"].get<std::string>());
          ++answered;
        }
      });
    }
    const auto until = Clock::now() + std::chrono::seconds(60);
    while (answered < 12 && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_GE(answered.load(), 12) << "round " << round;
    c.stop(SIGKILL);
    dead = true;
    for (auto& t : clients) t.join();
  }
  ASSERT_FALSE(received.empty());
  // Every acknowledged id is in the log; the chain verifies.
  EXPECT_EQ(missing_from_log(db, received), 0u)
      << "of " << received.size() << " acknowledged records";
  // And through the CLI.
  auto cli = testing::run_cli("audit verify-log --db " + db);
  EXPECT_EQ(cli.code, 0) << cli.out;
}

TEST_F(ServeProcess, RefusesAPublicAddressWithoutKeys) {
  const std::string dir = testing::temp_dir();
  auto r =
      testing::run_cli("serve --model " + model() + " --db " + dir + "/a.db --listen 0.0.0.0:0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("without API keys"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// SIGHUP reloads the policy: requests afterwards carry the new hash; a broken file keeps the old.
TEST_F(ServeProcess, SighupReloadsThePolicy) {
  const std::string dir = testing::temp_dir();
  const std::string policy = dir + "/policy.json";
  auto write = [&](const std::string& text) {
    std::ofstream f(policy);
    f << text;
  };
  write(R"({"limits": {"max_tokens": 8}, "explain": {"method": "occlusion"}})");
  Child c({"--model", model(), "--db", dir + "/audit.db", "--listen", "127.0.0.1:0", "--policy",
           policy},
          dir + "/serve.log");
  ASSERT_TRUE(c.wait_ready()) << read_file(c.log);
  httplib::Client h("127.0.0.1", c.port);
  h.set_read_timeout(60, 0);
  auto ask = [&](int max_tokens) {
    json b = {{"prompt", "Once"}, {"max_tokens", max_tokens}};
    auto r = h.Post("/v1/completions", b.dump(), "application/json");
    return r ? std::make_pair(r->status, json::parse(r->body, nullptr, false))
             : std::make_pair(-1, json());
  };
  auto [s1, a] = ask(8);
  ASSERT_EQ(s1, 200) << a.dump();
  EXPECT_EQ(ask(9).first, 400) << "over the first policy's max_tokens";
  const std::string hash_a = a["candor"]["policy_hash"];

  write(R"({"limits": {"max_tokens": 16}, "explain": {"method": "occlusion"}})");
  ::kill(c.pid, SIGHUP);
  auto wait_for = [&](const std::string& text, int count) {
    const auto until = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < until) {
      const std::string log = read_file(c.log);
      int n = 0;
      for (size_t p = log.find(text); p != std::string::npos; p = log.find(text, p + 1)) ++n;
      if (n >= count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  ASSERT_TRUE(wait_for("policy reloaded", 1)) << read_file(c.log);
  auto [s2, b] = ask(12);
  ASSERT_EQ(s2, 200) << b.dump();
  EXPECT_NE(b["candor"]["policy_hash"], hash_a);

  write("limits: {max_tokenz: 3}\n");  // misspelt: refused, the old policy stays
  ::kill(c.pid, SIGHUP);
  ASSERT_TRUE(wait_for("policy NOT reloaded", 1)) << read_file(c.log);
  EXPECT_NE(read_file(c.log).find("max_tokens"), std::string::npos) << "the suggestion";
  EXPECT_EQ(ask(12).first, 200);
  EXPECT_EQ(c.stop(SIGTERM), 0);
  // The records carry the hash of the policy each request saw.
  auto log = store::open_audit_log(dir + "/audit.db");
  store::AuditQuery q;
  auto page = log->query(q);
  ASSERT_EQ(page.records.size(), 3u);
  EXPECT_EQ(page.records[0].policy_hash, hash_a);
  EXPECT_EQ(page.records[1].policy_hash, b["candor"]["policy_hash"]);
  EXPECT_EQ(page.records[2].policy_hash, b["candor"]["policy_hash"]);
  log->close();
}

}  // namespace
}  // namespace candor
