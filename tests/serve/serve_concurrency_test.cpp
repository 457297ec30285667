// The service's concurrency through HTTP: clients on several threads, streamed and not, through
// the real server on a free loopback port with --parallel 4 (batched decode), the real SQLite
// audit log (group commit), /metrics scraped and the policy reloaded (the SIGHUP path) while they
// run, and Server::stop (the SIGTERM path) while streams are in flight. These tests are also
// built with ThreadSanitizer over an instrumented candor (scripts/tsan.sh, the second build tree)
// and run there: any report fails ctest's ThreadSanitizer.ServiceConcurrency.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "candor/audit_log.h"
#include "candor/serve.h"
#include "test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using testing::stories260k;
using Clock = std::chrono::steady_clock;

std::shared_ptr<serve::Supervision> supervision(const std::string& hash) {
  auto s = std::make_shared<serve::Supervision>();
  s->policy.hash = hash;
  s->policy.explain.method = "occlusion";
  s->policy.explain.granularity = "word";
  s->policy.limits.max_tokens = 64;
  return s;
}

// A server over stories260K with the SQLite audit log in a fresh folder, started on a free port.
struct Service {
  std::string db = testing::temp_dir() + "/audit.db";
  std::shared_ptr<store::AuditLog> log;
  std::unique_ptr<serve::Server> server;
  std::mutex lines_mu;
  std::vector<std::string> lines;

  explicit Service(int parallel) {
    serve::ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.parallel = parallel;
    o.threads = 1;  // one intra-op thread per request: libtorch's pool stays out of the picture
    o.model_id = "stories260K";
    o.log = [this](const std::string& l) {
      std::lock_guard<std::mutex> lock(lines_mu);
      lines.push_back(l);
    };
    log = store::open_audit_log(db);
    server = std::make_unique<serve::Server>(o);
    server->set_supervision(supervision("policy-a"));
    server->bind();
    server->start();
    server->set_model(&stories260k(), log, serve::weights_hash(stories260k()));
  }
  ~Service() {
    server->stop();
    log->close();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(300, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
};

// What one request got back.
struct Outcome {
  bool answered = false;  // an HTTP response came back
  int status = 0;
  std::string body;
  std::string audit_id;  // "" when none was given
  std::string error;     // why the response is not a complete answer ("" when it is)
};

// Reads a completion's audit_id from a JSON body or an SSE stream; `error` says what is wrong
// with a response that is not a complete answer.
void read_answer(bool stream, Outcome& o) {
  if (o.status != 200) {
    o.error = "status " + std::to_string(o.status) + ": " + o.body;
    return;
  }
  if (!stream) {
    json j = json::parse(o.body, nullptr, false);
    if (j.is_discarded() || !j.contains("candor")) {
      o.error = "no candor block in " + o.body;
      return;
    }
    o.audit_id = j["candor"].value("audit_id", "");
    return;
  }
  // Events "data: {...}\n\n", the last before [DONE] carrying the candor block.
  json last;
  bool done = false;
  size_t pos = 0;
  while (pos < o.body.size()) {
    size_t end = o.body.find("\n\n", pos);
    if (end == std::string::npos) {
      o.error = "an event cut short: " + o.body.substr(pos);
      return;
    }
    std::string ev = o.body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) {
      o.error = "not an SSE data line: " + ev;
      return;
    }
    ev = ev.substr(6);
    if (ev == "[DONE]") {
      done = true;
      continue;
    }
    last = json::parse(ev, nullptr, false);
  }
  if (!done) {
    o.error = "the stream ended without [DONE]";
  } else if (last.contains("error")) {
    o.error = "an error event: " + last.dump();
  } else if (!last.contains("candor")) {
    o.error = "the last event has no candor block: " + last.dump();
  } else {
    o.audit_id = last["candor"].value("audit_id", "");
  }
}

// One completion (chat or not, streamed or not); `on_chunk` runs on each piece of the body.
Outcome complete(const Service& s, int i, bool chat, bool stream, int max_tokens,
                 const std::function<void()>& on_chunk = nullptr) {
  json q = {{"max_tokens", max_tokens}, {"temperature", 0.9}, {"seed", i}, {"stream", stream}};
  if (chat)
    q["messages"] = {{{"role", "user"}, {"content", "Tell me a story about a cat"}}};
  else
    q["prompt"] = "Once upon a time";
  httplib::Request req;
  req.method = "POST";
  req.path = chat ? "/v1/chat/completions" : "/v1/completions";
  req.body = q.dump();
  req.set_header("Content-Type", "application/json");
  Outcome o;
  std::string received;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    received.append(data, n);
    if (on_chunk) on_chunk();
    return true;
  };
  auto c = s.client();
  auto r = c.send(req);
  if (!r) {
    o.error = "no response: " + httplib::to_string(r.error());
    return o;
  }
  o.answered = true;
  o.status = r->status;
  o.body = received;
  read_answer(stream, o);
  return o;
}

class ServeConcurrency : public ::testing::Test {
 protected:
  void SetUp() override { CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin"); }
};

// Every audit_id a client received is in the log, and the chain verifies.
void expect_all_logged(const std::string& db, const std::vector<std::string>& ids) {
  const store::VerifyReport v = store::verify_audit_log(db);
  EXPECT_TRUE(v.ok) << v.to_json().dump();
  EXPECT_GE(v.records, static_cast<int64_t>(ids.size()));
  auto log = store::open_audit_log(db);
  for (const auto& id : ids) {
    auto r = log->get(id);
    ASSERT_TRUE(r.has_value()) << "audit_id " << id << " was acknowledged but is not in the log";
    EXPECT_EQ(r->kind, "request");
  }
  log->close();
}

TEST_F(ServeConcurrency, ParallelClientsWithMetricsAndPolicyReloadsAreAllCommittedInTheChain) {
  std::vector<std::string> ids;
  std::string db;
  int64_t committed = 0, transactions = 0;
  {
    Service s(4);
    db = s.db;
    constexpr int kClients = 4, kEach = 4;
    std::mutex mu;
    std::vector<Outcome> outcomes;
    std::atomic<int> clients_left{kClients};
    std::vector<std::thread> threads;
    for (int t = 0; t < kClients; ++t)
      threads.emplace_back([&, t] {
        for (int k = 0; k < kEach; ++k) {
          const int i = t * kEach + k;
          Outcome o = complete(s, i, /*chat=*/(i / 2) % 2 == 1, /*stream=*/i % 2 == 1, 12);
          std::lock_guard<std::mutex> lock(mu);
          outcomes.push_back(std::move(o));
        }
        --clients_left;
      });
    // /metrics scraped while the clients run.
    std::atomic<int> scrapes{0}, bad_scrapes{0};
    threads.emplace_back([&] {
      for (int n = 0; n < 400 && clients_left > 0; ++n) {
        auto c = s.client();
        auto r = c.Get("/metrics");
        if (!r || r->status != 200) ++bad_scrapes;
        ++scrapes;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
    // The policy reloaded while they run: what `candor serve` does on SIGHUP.
    std::atomic<int> reloads{0};
    threads.emplace_back([&] {
      for (int n = 0; n < 400 && clients_left > 0; ++n) {
        s.server->set_supervision(supervision(n % 2 == 0 ? "policy-b" : "policy-a"));
        ++reloads;
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
      }
    });
    for (auto& th : threads) th.join();

    ASSERT_EQ(outcomes.size(), static_cast<size_t>(kClients * kEach));
    for (const auto& o : outcomes) {
      EXPECT_TRUE(o.error.empty()) << o.error;
      EXPECT_FALSE(o.audit_id.empty()) << o.body;
      if (!o.audit_id.empty()) ids.push_back(o.audit_id);
    }
    EXPECT_GT(scrapes.load(), 0);
    EXPECT_EQ(bad_scrapes.load(), 0);
    EXPECT_GT(reloads.load(), 0);
    // Each record was checked under one of the two policies, whole.
    for (const auto& id : ids) {
      auto r = s.log->get(id);
      ASSERT_TRUE(r.has_value()) << id;
      EXPECT_TRUE(r->policy_hash == "policy-a" || r->policy_hash == "policy-b") << r->policy_hash;
    }
    // The metrics agree with what the clients saw.
    auto c = s.client();
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_NE(m->body.find("candor_policy_reloads_total"), std::string::npos);
    EXPECT_NE(m->body.find("candor_requests_total"), std::string::npos);
    s.server->stop();
    const store::AuditLogStats st = s.log->stats();
    committed = st.records;
    transactions = st.transactions;
    EXPECT_EQ(st.failed_transactions, 0);
  }
  EXPECT_EQ(committed, static_cast<int64_t>(ids.size()));
  EXPECT_LE(transactions, committed);
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), ids.size()) << "every request has its own audit_id";
  expect_all_logged(db, ids);
}

TEST_F(ServeConcurrency, StopWhileStreamsAreInFlightFinishesThemAndLosesNoRecord) {
  std::vector<std::string> ids;
  std::string db;
  {
    Service s(4);
    db = s.db;
    constexpr int kClients = 4, kMaxRequests = 50;
    std::atomic<int> streaming{0};
    std::mutex mu;
    std::vector<Outcome> outcomes;
    std::vector<std::thread> threads;
    // Each client streams answers one after another until the server is gone.
    for (int t = 0; t < kClients; ++t)
      threads.emplace_back([&, t] {
        for (int k = 0; k < kMaxRequests; ++k) {
          bool counted = false;
          Outcome o = complete(s, 100 * t + k, /*chat=*/t % 2 == 1, /*stream=*/true, 48, [&] {
            if (!counted && k == 0) ++streaming;
            counted = true;
          });
          const bool answered = o.answered;
          {
            std::lock_guard<std::mutex> lock(mu);
            outcomes.push_back(std::move(o));
          }
          if (!answered) return;  // the server has stopped: a clean refusal
        }
      });
    // Stop (what `candor serve` does on SIGTERM) once every client has a stream under way.
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    while (streaming < kClients && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ASSERT_EQ(streaming.load(), kClients) << "the streams did not start";
    s.server->stop();
    s.log->close();  // as the CLI does after stop: nothing is acknowledged after this
    for (auto& th : threads) th.join();

    int completed = 0, refused = 0;
    for (const auto& o : outcomes) {
      if (!o.answered) {
        ++refused;  // no connection (the listening socket is closed): a clean error
        continue;
      }
      // Every response that came back is whole: an answer with its audit_id, or an error event
      // / error status (never a stream cut in the middle).
      if (o.error.empty()) {
        ++completed;
        EXPECT_FALSE(o.audit_id.empty()) << o.body;
        ids.push_back(o.audit_id);
      } else {
        EXPECT_EQ(o.error.find("cut short"), std::string::npos) << o.error;
        EXPECT_EQ(o.error.find("without [DONE]"), std::string::npos) << o.error;
      }
    }
    EXPECT_GE(completed, kClients) << "the streams in flight at stop are finished";
    EXPECT_EQ(refused, kClients) << "each client is refused once the server is gone";
    // After stop, nobody answers.
    auto c = s.client();
    c.set_connection_timeout(1, 0);
    EXPECT_FALSE(c.Get("/health"));
  }
  expect_all_logged(db, ids);
}

}  // namespace
}  // namespace candor
