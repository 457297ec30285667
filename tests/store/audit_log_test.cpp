// The audit log: round trip, the chain, group commit under concurrency, back-pressure, commit
// failures, migration, crash durability (a child killed with SIGKILL) and tampering found by
// verify_audit_log. Needs only candor_store and SQLite (no libtorch), so that scripts/tsan.sh
// can build and run it under ThreadSanitizer.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "candor/audit_log.h"
#include "candor/error.h"

namespace candor::store {
namespace {

std::string temp_folder() {
  std::string pattern = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : "/tmp") +
                        "/candor_store_XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  return buf.data();
}

AuditRecord sample(int i) {
  AuditRecord r;
  r.endpoint = "/v1/completions";
  r.key_id = i % 2 ? "k1" : "k2";
  r.user = "user-" + std::to_string(i);
  r.model_id = i % 3 ? "stories260K" : "gpt2";
  r.weights_hash = std::string(64, 'a');
  r.policy_hash = std::string(64, 'b');
  r.parameters = {{"max_tokens", 16}, {"temperature", 0.7}, {"seed", i}};
  r.prompt = "Once upon a time " + std::to_string(i);
  r.answer = "there was a cat named \xc3\xa9mile";
  r.explanation = {{"method", "occlusion"}, {"top", {{{"feature", "time"}, {"score", 0.25}}}}};
  r.checks = nlohmann::json::array(
      {{{"name", "uncertainty"}, {"value", 1.5}, {"threshold", 2.0}, {"outcome", "pass"}},
       {{"name", "length"},
        {"value", 40},
        {"threshold", 32},
        {"outcome", i % 4 ? "pass" : "fail"}}});
  r.decision = i % 4 ? "allow" : "flag";
  r.reasons = i % 4 ? nlohmann::json::array() : nlohmann::json::array({"length: 40 > 32"});
  r.timings = {{"generate_ms", 12.5}, {"checks_ms", 0.25}};
  return r;
}

// A connection of the test's own, to tamper with the file or hold its write lock.
struct RawDb {
  sqlite3* db = nullptr;
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
  }
  ~RawDb() { sqlite3_close_v2(db); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string message = err ? err : "";
    sqlite3_free(err);
    ASSERT_EQ(rc, SQLITE_OK) << sql << ": " << message;
  }
  int64_t integer(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
    int64_t v = -1;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
  }
};

// Waits (bounded) until `pred` holds.
template <typename Pred>
bool eventually(Pred pred, int max_ms = 10000) {
  for (int waited = 0; waited < max_ms; waited += 2) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

// An append from a helper thread: a failure is a test failure, not std::terminate.
void append_or_fail(AuditLog& log, int i) {
  try {
    log.append(sample(i));
  } catch (const std::exception& e) {
    ADD_FAILURE() << "append failed: " << e.what();
  }
}

bool has_problem(const VerifyReport& report, const std::string& what, int64_t seq,
                 const std::string& id = "*") {
  for (const auto& p : report.problems)
    if (p.what == what && p.seq == seq && (id == "*" || p.id == id)) return true;
  return false;
}

std::string problems_text(const VerifyReport& report) { return report.to_json().dump(1); }

// ---------------------------------------------------------------------------------------------

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(AuditLog, RoundTripsEveryField) {
  std::string path = temp_folder() + "/audit.db";
  auto log = open_audit_log(path);
  AuditRecord in = sample(4);
  in.kind = "addendum";
  in.refers_to = "0123456789abcdef0123456789abcdef";
  AuditRecord stored = log->append(in);
  EXPECT_EQ(stored.id.size(), 32u);
  EXPECT_GT(stored.time_ms, 1600000000000);
  EXPECT_EQ(stored.seq, 1);
  EXPECT_EQ(stored.prev_hash, std::string(64, '0'));
  EXPECT_EQ(stored.hash, sha256_hex(stored.prev_hash + stored.canonical_json()));
  log->close();
  log = open_audit_log(path);  // read back after a reopen: from the file, not memory
  auto got = log->get(stored.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->to_json(), stored.to_json());
  EXPECT_EQ(got->kind, "addendum");
  EXPECT_EQ(got->refers_to, in.refers_to);
  EXPECT_EQ(got->endpoint, in.endpoint);
  EXPECT_EQ(got->key_id, in.key_id);
  EXPECT_EQ(got->user, in.user);
  EXPECT_EQ(got->model_id, in.model_id);
  EXPECT_EQ(got->weights_hash, in.weights_hash);
  EXPECT_EQ(got->policy_hash, in.policy_hash);
  EXPECT_EQ(got->parameters, in.parameters);
  EXPECT_EQ(got->prompt, in.prompt);
  EXPECT_EQ(got->answer, in.answer);
  EXPECT_EQ(got->explanation, in.explanation);
  EXPECT_EQ(got->checks, in.checks);
  EXPECT_EQ(got->decision, in.decision);
  EXPECT_EQ(got->reasons, in.reasons);
  EXPECT_EQ(got->timings, in.timings);
  EXPECT_EQ(got->hash, stored.hash);
  EXPECT_FALSE(log->get("no-such-id").has_value());
  // The canonical JSON covers every field but the hash, keys sorted.
  nlohmann::json canonical = nlohmann::json::parse(stored.canonical_json());
  EXPECT_EQ(canonical.size(), 20u);
  EXPECT_FALSE(canonical.contains("hash"));
  EXPECT_EQ(stored.to_json().size(), 21u);
}

TEST(AuditLog, ChainsRecordsAndContinuesAfterReopen) {
  std::string path = temp_folder() + "/audit.db";
  std::vector<AuditRecord> stored;
  for (int round = 0; round < 3; ++round) {
    auto log = open_audit_log(path);
    for (int i = 0; i < 4; ++i) stored.push_back(log->append(sample(i)));
  }
  for (size_t i = 0; i < stored.size(); ++i) {
    EXPECT_EQ(stored[i].seq, static_cast<int64_t>(i + 1));
    EXPECT_EQ(stored[i].prev_hash, i ? stored[i - 1].hash : std::string(64, '0'));
    EXPECT_EQ(stored[i].hash, sha256_hex(stored[i].prev_hash + stored[i].canonical_json()));
  }
  VerifyReport report = verify_audit_log(path);
  EXPECT_TRUE(report.ok) << problems_text(report);
  EXPECT_EQ(report.records, 12);
}

TEST(AuditLog, CallerIdsAreKeptAndDuplicatesRefused) {
  std::string path = temp_folder() + "/audit.db";
  auto log = open_audit_log(path);
  AuditRecord r = sample(1);
  r.id = "request-1";
  r.time_ms = 1234;
  AuditRecord stored = log->append(r);
  EXPECT_EQ(stored.id, "request-1");
  EXPECT_EQ(stored.time_ms, 1234);
  try {
    log->append(r);
    FAIL() << "a duplicate id was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("request-1"), std::string::npos);
  }
  AuditRecord next = log->append(sample(2));
  EXPECT_EQ(next.seq, 2);  // the refused record took no place in the chain
  EXPECT_TRUE(verify_audit_log(path).ok);
}

TEST(AuditLog, RefusesInvalidUtf8) {
  auto log = open_audit_log(temp_folder() + "/audit.db");
  AuditRecord r = sample(1);
  r.answer = "bad \xff byte";
  try {
    log->append(r);
    FAIL() << "invalid UTF-8 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}

TEST(AuditLog, QueriesFilterAndPage) {
  std::string path = temp_folder() + "/audit.db";
  auto log = open_audit_log(path);
  std::vector<AuditRecord> stored;
  for (int i = 0; i < 20; ++i) {
    AuditRecord r = sample(i);
    r.time_ms = 1000 + i;
    stored.push_back(log->append(r));
  }
  AuditQuery all;
  AuditPage page = log->query(all);
  EXPECT_EQ(page.total, 20);
  ASSERT_EQ(page.records.size(), 20u);
  EXPECT_EQ(page.records.front().seq, 1);
  AuditQuery q;
  q.decision = "flag";  // i % 4 == 0: 0, 4, 8, 12, 16
  page = log->query(q);
  EXPECT_EQ(page.total, 5);
  for (const auto& r : page.records) EXPECT_EQ(r.decision, "flag");
  q = {};
  q.check = "length";  // failed where i % 4 == 0
  EXPECT_EQ(log->query(q).total, 5);
  q.check = "uncertainty";  // always passed
  EXPECT_EQ(log->query(q).total, 0);
  q = {};
  q.from_ms = 1005;
  q.to_ms = 1010;
  page = log->query(q);
  EXPECT_EQ(page.total, 5);
  EXPECT_EQ(page.records.front().time_ms, 1005);
  q = {};
  q.model_id = "gpt2";  // i % 3 == 0: 0, 3, ..., 18 -> 7
  q.key_id = "k1";      // odd i: 3, 9, 15 -> 3
  EXPECT_EQ(log->query(q).total, 3);
  q = {};
  q.limit = 6;
  q.offset = 18;
  page = log->query(q);
  EXPECT_EQ(page.total, 20);
  ASSERT_EQ(page.records.size(), 2u);
  EXPECT_EQ(page.records[0].id, stored[18].id);
  // Addenda: the later results of a request's async checks, found by the request's id.
  AuditRecord addendum = sample(1);
  addendum.kind = "addendum";
  addendum.refers_to = stored[3].id;
  addendum = log->append(addendum);
  q = {};
  q.refers_to = stored[3].id;
  page = log->query(q);
  ASSERT_EQ(page.total, 1);
  EXPECT_EQ(page.records[0].id, addendum.id);
  EXPECT_EQ(page.records[0].kind, "addendum");
  q.limit = 0;
  EXPECT_THROW(log->query(q), Error);
  q.limit = 1001;
  EXPECT_THROW(log->query(q), Error);
}

TEST(AuditLog, ConcurrentAppendsAreAllCommittedInOneChain) {
  std::string path = temp_folder() + "/audit.db";
  auto log = open_audit_log(path);
  constexpr int kThreads = 8, kPerThread = 200;
  std::vector<std::vector<AuditRecord>> acked(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        acked[t].push_back(log->append(sample(t * 1000 + i)));
        // Readable as soon as it is acknowledged (the service answers GET /records/{id}).
        if (i % 10 == 0 && !log->get(acked[t].back().id)) ADD_FAILURE() << "not readable";
        if (i % 50 == 0) (void)log->query({});
      }
    });
  for (auto& th : threads) th.join();
  std::set<int64_t> seqs;
  std::set<std::string> ids;
  for (const auto& v : acked)
    for (const auto& r : v) {
      seqs.insert(r.seq);
      ids.insert(r.id);
      auto got = log->get(r.id);
      ASSERT_TRUE(got.has_value()) << r.id;
      EXPECT_EQ(got->hash, r.hash);
    }
  EXPECT_EQ(ids.size(), size_t{kThreads * kPerThread});
  ASSERT_EQ(seqs.size(), size_t{kThreads * kPerThread});
  EXPECT_EQ(*seqs.begin(), 1);
  EXPECT_EQ(*seqs.rbegin(), kThreads * kPerThread);  // contiguous: n distinct values in 1..n
  AuditLogStats stats = log->stats();
  EXPECT_EQ(stats.records, kThreads * kPerThread);
  EXPECT_LE(stats.transactions, stats.records);
  log->close();
  VerifyReport report = verify_audit_log(path);
  EXPECT_TRUE(report.ok) << problems_text(report);
  EXPECT_EQ(report.records, kThreads * kPerThread);
}

// While another connection holds the write lock, appends pile up in the queue; once it is
// released, the writer commits them together.
TEST(AuditLog, GroupCommitTakesEverythingQueuedIntoOneTransaction) {
  std::string path = temp_folder() + "/audit.db";
  AuditLogOptions options;
  options.max_batch = 6;
  options.busy_timeout_ms = 120000;  // the writer waits for the holder, however slow the machine
  auto log = open_audit_log(path, options);
  RawDb holder(path);
  holder.exec("BEGIN EXCLUSIVE");
  constexpr int kAppenders = 16;
  std::vector<std::thread> threads;
  std::atomic<int> done{0};
  auto start = [&](int t) {
    threads.emplace_back([&, t] {
      append_or_fail(*log, t);
      ++done;
    });
  };
  // The writer takes the first record and waits for the lock with it; the other 15 queue up.
  start(0);
  EXPECT_TRUE(eventually([&] { return log->stats().writing == 1; }));
  for (int t = 1; t < kAppenders; ++t) start(t);
  EXPECT_TRUE(eventually([&] { return log->queue_depth() == kAppenders - 1; }));
  EXPECT_EQ(done.load(), 0);
  holder.exec("COMMIT");
  for (auto& th : threads) th.join();
  AuditLogStats stats = log->stats();
  EXPECT_EQ(stats.records, kAppenders);
  // 1, then 15 queued in batches of at most 6: 6 + 6 + 3.
  EXPECT_EQ(stats.transactions, 4);
  EXPECT_EQ(stats.largest_batch, 6);
  EXPECT_TRUE(verify_audit_log(path).ok);
}

TEST(AuditLog, FullQueueRefusesAtOnce) {
  std::string path = temp_folder() + "/audit.db";
  AuditLogOptions options;
  options.queue_capacity = 2;
  options.busy_timeout_ms = 120000;
  options.max_batch = 1;
  auto log = open_audit_log(path, options);
  RawDb holder(path);
  holder.exec("BEGIN EXCLUSIVE");
  std::vector<std::thread> threads;
  threads.emplace_back([&] { append_or_fail(*log, 0); });
  EXPECT_TRUE(eventually([&] { return log->stats().writing == 1; }));  // the writer holds it
  for (int t = 1; t < 3; ++t) threads.emplace_back([&, t] { append_or_fail(*log, t); });
  EXPECT_TRUE(eventually([&] { return log->queue_depth() == 2; }));
  try {
    log->append(sample(9));
    ADD_FAILURE() << "a full queue accepted a record";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
    EXPECT_NE(std::string(e.what()).find("queue is full"), std::string::npos);
  }
  // Refused without waiting for the writer (which is blocked for as long as the lock is held).
  EXPECT_EQ(log->stats().transactions, 0);
  holder.exec("COMMIT");
  for (auto& th : threads) th.join();
  EXPECT_EQ(log->stats().records, 3);
}

TEST(AuditLog, FailedCommitAcknowledgesNothingAndTheChainGoesOn) {
  std::string path = temp_folder() + "/audit.db";
  AuditLogOptions options;
  options.busy_timeout_ms = 50;
  auto log = open_audit_log(path, options);
  AuditRecord first = log->append(sample(0));
  {
    RawDb holder(path);
    holder.exec("BEGIN EXCLUSIVE");
    std::vector<std::thread> threads;
    std::atomic<int> internal{0}, other{0};
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        try {
          log->append(sample(t));
          ++other;
        } catch (const Error& e) {
          ++(e.code() == ErrorCode::kInternal ? internal : other);
        }
      });
    for (auto& th : threads) th.join();
    EXPECT_EQ(internal.load(), 4);
    EXPECT_EQ(other.load(), 0);
    holder.exec("COMMIT");
  }
  EXPECT_GE(log->stats().failed_transactions, 1);
  AuditRecord next = log->append(sample(5));
  EXPECT_EQ(next.seq, 2);
  EXPECT_EQ(next.prev_hash, first.hash);
  EXPECT_EQ(log->query({}).total, 2);
  log->close();
  EXPECT_TRUE(verify_audit_log(path).ok);
}

TEST(AuditLog, CloseDrainsAndLaterAppendsThrow) {
  std::string path = temp_folder() + "/audit.db";
  auto log = open_audit_log(path);
  std::vector<std::thread> threads;
  std::atomic<int> acked{0}, refused{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        try {
          log->append(sample(t * 100 + i));
          ++acked;
        } catch (const Error&) {
          ++refused;
        }
      }
    });
  EXPECT_TRUE(eventually([&] { return acked.load() >= 20; }));
  log->close();
  log->close();  // idempotent
  for (auto& th : threads) th.join();
  EXPECT_EQ(acked.load() + refused.load(), 200);
  EXPECT_THROW(log->append(sample(1)), Error);
  VerifyReport report = verify_audit_log(path);
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.records, acked.load());  // every acknowledged record, nothing more
}

TEST(AuditLog, BadPathsGiveClearErrors) {
  std::string dir = temp_folder();
  auto message = [](const std::string& path) -> std::string {
    try {
      open_audit_log(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(message(dir).find("is a folder"), std::string::npos) << message(dir);
  EXPECT_NE(message(dir + "/missing/audit.db").find("does not exist"), std::string::npos);
  std::ofstream(dir + "/text.db") << "these are not the bytes of a SQLite database, but long "
                                     "enough to be read as a header of one................";
  EXPECT_NE(message(dir + "/text.db").find("not a SQLite database"), std::string::npos)
      << message(dir + "/text.db");
  {
    RawDb other(dir + "/other.db");
    other.exec("CREATE TABLE people (name TEXT)");
  }
  EXPECT_NE(message(dir + "/other.db").find("not a candor audit log"), std::string::npos)
      << message(dir + "/other.db");
  {
    RawDb future(dir + "/future.db");
    future.exec(
        "CREATE TABLE schema_version (version INTEGER); INSERT INTO schema_version "
        "VALUES (99); CREATE TABLE records (seq INTEGER PRIMARY KEY)");
  }
  try {
    open_audit_log(dir + "/future.db");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos);
  }
  try {
    verify_audit_log(dir + "/none.db");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
  EXPECT_THROW(verify_audit_log(dir + "/other.db"), Error);
}

// A file written by the first schema (no indexes, no check rows, no tip) is migrated at open:
// its records keep their hashes, the `check` filter finds them, the chain continues.
TEST(AuditLog, MigratesAVersion1File) {
  std::string path = temp_folder() + "/v1.db";
  std::vector<AuditRecord> old;
  {
    RawDb v1(path);
    v1.exec(R"sql(
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE records (
  seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, time_ms INTEGER NOT NULL,
  kind TEXT NOT NULL, refers_to TEXT NOT NULL, endpoint TEXT NOT NULL, key_id TEXT NOT NULL,
  user TEXT NOT NULL, model_id TEXT NOT NULL, weights_hash TEXT NOT NULL,
  policy_hash TEXT NOT NULL, parameters TEXT NOT NULL, prompt TEXT NOT NULL,
  answer TEXT NOT NULL, explanation TEXT NOT NULL, checks TEXT NOT NULL,
  decision TEXT NOT NULL, reasons TEXT NOT NULL, timings TEXT NOT NULL,
  prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
INSERT INTO schema_version (version) VALUES (1);
)sql");
    std::string prev(64, '0');
    for (int i = 0; i < 4; ++i) {
      AuditRecord r = sample(i);  // sample(0) failed its length check
      r.id = "v1-" + std::to_string(i);
      r.time_ms = 500 + i;
      r.seq = i + 1;
      r.prev_hash = prev;
      r.hash = sha256_hex(prev + r.canonical_json());
      prev = r.hash;
      sqlite3_stmt* s = nullptr;
      ASSERT_EQ(sqlite3_prepare_v2(v1.db,
                                   "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                                   "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                   -1, &s, nullptr),
                SQLITE_OK);
      std::vector<std::string> texts = {r.id,
                                        "",
                                        r.kind,
                                        r.refers_to,
                                        r.endpoint,
                                        r.key_id,
                                        r.user,
                                        r.model_id,
                                        r.weights_hash,
                                        r.policy_hash,
                                        r.parameters.dump(),
                                        r.prompt,
                                        r.answer,
                                        r.explanation.dump(),
                                        r.checks.dump(),
                                        r.decision,
                                        r.reasons.dump(),
                                        r.timings.dump(),
                                        r.prev_hash,
                                        r.hash};
      sqlite3_bind_int64(s, 1, r.seq);
      sqlite3_bind_text(s, 2, texts[0].c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 3, r.time_ms);
      for (size_t k = 2; k < texts.size(); ++k)
        sqlite3_bind_text(s, static_cast<int>(k + 2), texts[k].c_str(), -1, SQLITE_TRANSIENT);
      ASSERT_EQ(sqlite3_step(s), SQLITE_DONE) << sqlite3_errmsg(v1.db);
      sqlite3_finalize(s);
      old.push_back(r);
    }
  }
  EXPECT_TRUE(verify_audit_log(path).ok);  // the verifier reads a v1 file as it is
  auto log = open_audit_log(path);
  {
    RawDb check(path);
    EXPECT_EQ(check.integer("SELECT version FROM schema_version"), 2);
    EXPECT_EQ(check.integer("SELECT count(*) FROM record_checks"), 8);
    EXPECT_EQ(check.integer("SELECT seq FROM chain_tip"), 4);
  }
  AuditQuery q;
  q.check = "length";
  AuditPage page = log->query(q);
  ASSERT_EQ(page.total, 1);
  EXPECT_EQ(page.records[0].id, "v1-0");
  EXPECT_EQ(log->get("v1-2")->hash, old[2].hash);
  AuditRecord next = log->append(sample(7));
  EXPECT_EQ(next.seq, 5);
  EXPECT_EQ(next.prev_hash, old[3].hash);
  log->close();
  VerifyReport report = verify_audit_log(path);
  EXPECT_TRUE(report.ok) << problems_text(report);
  EXPECT_EQ(report.records, 5);
}

// ---------------------------------------------------------------------------------------------
// Tampering
// ---------------------------------------------------------------------------------------------

class Tampering : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = temp_folder() + "/audit.db";
    auto log = open_audit_log(path_);
    for (int i = 0; i < 8; ++i) records_.push_back(log->append(sample(i)));
    log->close();
    ASSERT_TRUE(verify_audit_log(path_).ok);
  }
  // A forged record for position `seq` after `prev_hash`, hashed correctly.
  AuditRecord forged(int64_t seq, const std::string& prev_hash) {
    AuditRecord r = sample(99);
    r.id = "forged";
    r.time_ms = records_[0].time_ms;
    r.seq = seq;
    r.prev_hash = prev_hash;
    r.hash = sha256_hex(prev_hash + r.canonical_json());
    return r;
  }
  void insert_row(RawDb& db, const AuditRecord& r) {
    db.exec("INSERT INTO records SELECT " + std::to_string(r.seq) + ", '" + r.id +
            "', time_ms, kind, refers_to, endpoint, key_id, user, model_id, weights_hash, "
            "policy_hash, parameters, prompt, answer, explanation, checks, decision, reasons, "
            "timings, '" +
            r.prev_hash + "', '" + r.hash + "' FROM records WHERE seq = 1");
    // The copied columns are seq 1's; set the forged record's own fields.
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db.db,
                       "UPDATE records SET user = ?, prompt = ?, parameters = ?, checks = ?, "
                       "decision = ?, reasons = ?, key_id = ?, model_id = ?, time_ms = ? "
                       "WHERE id = ?",
                       -1, &s, nullptr);
    std::vector<std::string> v = {r.user,          r.prompt,   r.parameters.dump(),
                                  r.checks.dump(), r.decision, r.reasons.dump(),
                                  r.key_id,        r.model_id};
    for (size_t k = 0; k < v.size(); ++k)
      sqlite3_bind_text(s, static_cast<int>(k + 1), v[k].c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 9, r.time_ms);
    sqlite3_bind_text(s, 10, r.id.c_str(), -1, SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
  }
  std::string path_;
  std::vector<AuditRecord> records_;
};

TEST_F(Tampering, EditedFieldIsNamed) {
  {
    RawDb db(path_);
    db.exec("UPDATE records SET answer = 'a different answer' WHERE seq = 3");
  }
  VerifyReport report = verify_audit_log(path_);
  EXPECT_FALSE(report.ok);
  EXPECT_TRUE(has_problem(report, "edited", 3, records_[2].id)) << problems_text(report);
  EXPECT_EQ(report.problems.size(), 1u) << problems_text(report);
}

TEST_F(Tampering, EditedAndRehashedRecordIsNamedByItsSuccessor) {
  AuditRecord r = records_[3];
  r.answer = "a kinder answer";
  r.hash = sha256_hex(r.prev_hash + r.canonical_json());
  {
    RawDb db(path_);
    db.exec("UPDATE records SET answer = 'a kinder answer', hash = '" + r.hash + "' WHERE seq = 4");
  }
  VerifyReport report = verify_audit_log(path_);
  EXPECT_TRUE(has_problem(report, "edited", 4, records_[3].id)) << problems_text(report);
}

TEST_F(Tampering, DeletedRecordIsNamed) {
  {
    RawDb db(path_);
    db.exec("DELETE FROM records WHERE seq = 5");
  }
  VerifyReport report = verify_audit_log(path_);
  EXPECT_TRUE(has_problem(report, "deleted", 5)) << problems_text(report);
}

TEST_F(Tampering, DeletedAndRenumberedRecordIsNamed) {
  {
    RawDb db(path_);
    db.exec("DELETE FROM records WHERE seq = 5");
    db.exec("UPDATE records SET seq = seq + 1000 WHERE seq > 5");
    db.exec("UPDATE records SET seq = seq - 1001 WHERE seq > 1000");
    db.exec("UPDATE chain_tip SET seq = 7, hash = (SELECT hash FROM records WHERE seq = 7)");
  }
  VerifyReport report = verify_audit_log(path_);
  EXPECT_TRUE(has_problem(report, "deleted", 5, records_[5].id)) << problems_text(report);
}

TEST_F(Tampering, DeletedTailIsFound) {
  {
    RawDb db(path_);
    db.exec("DELETE FROM records WHERE seq >= 7");
  }
  VerifyReport report = verify_audit_log(path_);
  EXPECT_TRUE(has_problem(report, "deleted", 7)) << problems_text(report);
}

TEST_F(Tampering, InsertedRecordIsNamed) {
  {
    RawDb db(path_);
    db.exec("UPDATE records SET seq = seq + 1000 WHERE seq >= 3");
    db.exec("UPDATE records SET seq = seq - 999 WHERE seq > 1000");
    insert_row(db, forged(3, records_[1].hash));
  }
  VerifyReport report = verify_audit_log(path_);
  EXPECT_TRUE(has_problem(report, "inserted", 3, "forged")) << problems_text(report);
}

TEST_F(Tampering, RecordAppendedBeyondTheTipIsNamed) {
  {
    RawDb db(path_);
    insert_row(db, forged(9, records_[7].hash));
  }
  VerifyReport report = verify_audit_log(path_);
  EXPECT_TRUE(has_problem(report, "inserted", 9, "forged")) << problems_text(report);
}

TEST_F(Tampering, ReorderedRecordsAreNamed) {
  {
    RawDb db(path_);
    db.exec("UPDATE records SET seq = 1003 WHERE seq = 3");
    db.exec("UPDATE records SET seq = 3 WHERE seq = 5");
    db.exec("UPDATE records SET seq = 5 WHERE seq = 1003");
  }
  VerifyReport report = verify_audit_log(path_);
  EXPECT_FALSE(report.ok);
  EXPECT_TRUE(has_problem(report, "reordered", 3, records_[4].id)) << problems_text(report);
  EXPECT_TRUE(has_problem(report, "reordered", 5, records_[2].id)) << problems_text(report);
}

// ---------------------------------------------------------------------------------------------
// Crash durability: a child process appends from 4 threads and prints each acknowledged id; it
// is killed with SIGKILL mid-run; every printed id must be in the log and the chain intact.
// ---------------------------------------------------------------------------------------------

// The child's body: runs only when the parent re-executes this binary with the variable set.
TEST(AuditLogCrashChild, AppendUntilKilled) {
  const char* path = std::getenv("CANDOR_AUDIT_CRASH_CHILD_DB");
  if (!path)
    GTEST_SKIP() << "runs only as the child of AuditLogCrash.KillNineLosesNoAcknowledgedRecord";
  auto log = open_audit_log(path);
  std::mutex out_mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100000; ++i) {
        AuditRecord r = log->append(sample(t * 100000 + i));
        std::string line = "ack " + r.id + "\n";
        std::lock_guard<std::mutex> lock(out_mu);
        if (::write(1, line.data(), line.size()) < 0) std::_Exit(3);
      }
    });
  for (auto& th : threads) th.join();  // the parent kills us long before
}

TEST(AuditLogCrash, KillNineLosesNoAcknowledgedRecord) {
  std::string path = temp_folder() + "/audit.db";
  std::set<std::string> acknowledged;
  for (int round = 0; round < 3; ++round) {
    // The child's environment, made before fork (the child only dups and execs).
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    env_strings.push_back("CANDOR_AUDIT_CRASH_CHILD_DB=" + path);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    char arg0[] = "audit_crash_child";
    char arg1[] = "--gtest_filter=AuditLogCrashChild.*";
    char* argv[] = {arg0, arg1, nullptr};
    int pipe_fd[2];
    ASSERT_EQ(pipe(pipe_fd), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      dup2(pipe_fd[1], 1);
      close(pipe_fd[0]);
      close(pipe_fd[1]);
      execve("/proc/self/exe", argv, envp.data());
      std::_Exit(127);
    }
    close(pipe_fd[1]);
    // Read acknowledged ids until enough have come (bounded in count and time), then kill.
    std::string buffer;
    size_t lines = 0;
    size_t target = 150 + 100 * static_cast<size_t>(round);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    char chunk[4096];
    while (lines < target && std::chrono::steady_clock::now() < deadline) {
      ssize_t n = read(pipe_fd[0], chunk, sizeof chunk);
      if (n <= 0) break;
      buffer.append(chunk, static_cast<size_t>(n));
      lines = 0;
      for (size_t at = 0; (at = buffer.find("ack ", at)) != std::string::npos; at += 4) ++lines;
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status)) << "the child ended before it was killed";
    for (ssize_t n; (n = read(pipe_fd[0], chunk, sizeof chunk)) > 0;)
      buffer.append(chunk, static_cast<size_t>(n));
    close(pipe_fd[0]);
    ASSERT_GE(lines, target) << "the child acknowledged too few records in time";
    size_t start = 0;
    for (size_t end; (end = buffer.find('\n', start)) != std::string::npos; start = end + 1)
      if (buffer.compare(start, 4, "ack ") == 0)
        acknowledged.insert(buffer.substr(start + 4, end - start - 4));
    VerifyReport report = verify_audit_log(path);
    EXPECT_TRUE(report.ok) << "round " << round << ": " << problems_text(report);
    EXPECT_GE(report.records, static_cast<int64_t>(acknowledged.size()));
  }
  auto log = open_audit_log(path);
  for (const auto& id : acknowledged) EXPECT_TRUE(log->get(id).has_value()) << id;
  AuditRecord after = log->append(sample(1));
  EXPECT_EQ(after.seq, log->query({}).total);
  log->close();
  EXPECT_TRUE(verify_audit_log(path).ok);
}

}  // namespace
}  // namespace candor::store
