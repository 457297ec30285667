// The embedded audit log: SQLite in WAL mode, one writer thread that commits the records waiting
// in its queue as one transaction (group commit), records chained by SHA-256.
#include "candor/audit_log.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "candor/error.h"
#include "store/sqlite.h"

namespace candor::store {

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

namespace {
nlohmann::json record_fields(const AuditRecord& r) {
  nlohmann::json j = nlohmann::json::object();  // std::map underneath: keys sorted
  j["kind"] = r.kind;
  j["refers_to"] = r.refers_to;
  j["endpoint"] = r.endpoint;
  j["key_id"] = r.key_id;
  j["user"] = r.user;
  j["model_id"] = r.model_id;
  j["weights_hash"] = r.weights_hash;
  j["policy_hash"] = r.policy_hash;
  j["parameters"] = r.parameters;
  j["prompt"] = r.prompt;
  j["answer"] = r.answer;
  j["explanation"] = r.explanation;
  j["checks"] = r.checks;
  j["decision"] = r.decision;
  j["reasons"] = r.reasons;
  j["timings"] = r.timings;
  j["id"] = r.id;
  j["time_ms"] = r.time_ms;
  j["seq"] = r.seq;
  j["prev_hash"] = r.prev_hash;
  return j;
}
}  // namespace

std::string AuditRecord::canonical_json() const { return record_fields(*this).dump(); }

nlohmann::json AuditRecord::to_json() const {
  nlohmann::json j = record_fields(*this);
  j["hash"] = hash;
  return j;
}

nlohmann::json AuditLogStats::to_json() const {
  return {{"transactions", transactions},
          {"records", records},
          {"failed_transactions", failed_transactions},
          {"largest_batch", largest_batch},
          {"writing", writing}};
}

// ---------------------------------------------------------------------------------------------
// The SQLite log
// ---------------------------------------------------------------------------------------------

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One append waiting for its transaction.
struct Pending {
  AuditRecord record;
  bool done = false;
  bool failed = false;
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string hint;
};

class SqliteAuditLog final : public AuditLog {
 public:
  SqliteAuditLog(const std::string& path, const AuditLogOptions& options) : options_(options) {
    if (options.queue_capacity < 1)
      throw Error(ErrorCode::kInvalidArgument, "audit log: queue_capacity must be at least 1");
    if (options.max_batch < 1)
      throw Error(ErrorCode::kInvalidArgument, "audit log: max_batch must be at least 1");
    writer_db_.open(path, /*read_only=*/false, /*create=*/true);
    sqlite3_busy_timeout(writer_db_.get(), options.busy_timeout_ms);
    // WAL first: the journal mode cannot change inside the migration's transaction.
    {
      sql::Stmt wal(writer_db_, "PRAGMA journal_mode = WAL");
      if (!wal.step() || wal.text(0) != "wal")
        throw Error(ErrorCode::kInternal, "audit log " + path + ": cannot switch to WAL mode",
                    "put the log on a local file system");
    }
    writer_db_.exec(options.durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    sql::create_or_migrate(writer_db_);
    {
      sql::Stmt tip(writer_db_, "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1");
      if (tip.step()) {
        tip_seq_ = tip.integer(0);
        tip_hash_ = tip.text(1);
      } else {
        tip_hash_ = sql::zero_hash();
      }
    }
    read_db_.open(path, /*read_only=*/true, /*create=*/false);
    sqlite3_busy_timeout(read_db_.get(), options.busy_timeout_ms);
    insert_ = std::make_unique<sql::Stmt>(
        writer_db_, std::string("INSERT INTO records (") + sql::kRecordColumns +
                        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    insert_check_ = std::make_unique<sql::Stmt>(
        writer_db_, "INSERT INTO record_checks (seq, name, outcome) VALUES (?, ?, ?)");
    update_tip_ = std::make_unique<sql::Stmt>(
        writer_db_, "UPDATE chain_tip SET seq = ?, hash = ? WHERE one = 1");
    id_exists_ = std::make_unique<sql::Stmt>(writer_db_, "SELECT 1 FROM records WHERE id = ?");
    std::random_device device;
    rng_.seed((static_cast<uint64_t>(device()) << 32) ^ device() ^ static_cast<uint64_t>(now_ms()));
    writer_ = std::thread([this] { writer_loop(); });
  }

  ~SqliteAuditLog() override {
    try {
      close();
    } catch (...) {
    }
  }

  AuditRecord append(AuditRecord record) override {
    try {
      (void)record.canonical_json();
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("audit record cannot be written: ") + e.what(),
                  "prompt, answer and every text field must be valid UTF-8");
    }
    Pending pending;
    pending.record = std::move(record);
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_)
      throw Error(ErrorCode::kInvalidArgument, "audit log " + writer_db_.path() + " is closed",
                  "append before close()");
    if (queue_.size() >= options_.queue_capacity)
      throw Error(
          ErrorCode::kResourceExhausted,
          "audit log write queue is full (" + std::to_string(queue_.size()) + " records waiting)",
          "retry later");
    queue_.push_back(&pending);
    work_cv_.notify_one();
    done_cv_.wait(lock, [&] { return pending.done; });
    if (pending.failed) throw Error(pending.code, pending.message, pending.hint);
    return std::move(pending.record);
  }

  std::optional<AuditRecord> get(const std::string& id) const override {
    std::lock_guard<std::mutex> lock(read_mu_);
    check_open_for_reading();
    sql::Stmt s(read_db_,
                std::string("SELECT ") + sql::kRecordColumns + " FROM records WHERE id = ?");
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return sql::read_record(s);
  }

  AuditPage query(const AuditQuery& q) const override {
    if (q.limit < 1 || q.limit > 1000)
      throw Error(ErrorCode::kInvalidArgument,
                  "audit query: limit " + std::to_string(q.limit) + " is out of range",
                  "give a limit from 1 to 1000 and page with offset");
    if (q.offset < 0)
      throw Error(ErrorCode::kInvalidArgument,
                  "audit query: offset " + std::to_string(q.offset) + " is negative",
                  "give an offset of 0 or more");
    std::string where = " WHERE 1 = 1";
    if (q.from_ms > 0) where += " AND time_ms >= ?";
    if (q.to_ms > 0) where += " AND time_ms < ?";
    if (!q.decision.empty()) where += " AND decision = ?";
    if (!q.model_id.empty()) where += " AND model_id = ?";
    if (!q.key_id.empty()) where += " AND key_id = ?";
    if (!q.refers_to.empty()) where += " AND refers_to = ?";
    if (!q.check.empty())
      where +=
          " AND seq IN (SELECT seq FROM record_checks WHERE name = ? AND outcome NOT IN "
          "('pass', 'skipped'))";
    auto bind_all = [&](sql::Stmt& s) {
      int i = 1;
      if (q.from_ms > 0) s.bind(i++, q.from_ms);
      if (q.to_ms > 0) s.bind(i++, q.to_ms);
      if (!q.decision.empty()) s.bind(i++, q.decision);
      if (!q.model_id.empty()) s.bind(i++, q.model_id);
      if (!q.key_id.empty()) s.bind(i++, q.key_id);
      if (!q.refers_to.empty()) s.bind(i++, q.refers_to);
      if (!q.check.empty()) s.bind(i++, q.check);
      return i;
    };
    std::lock_guard<std::mutex> lock(read_mu_);
    check_open_for_reading();
    AuditPage page;
    // One read transaction: the count and the page see the same snapshot.
    read_db_.exec("BEGIN");
    try {
      sql::Stmt count(read_db_, "SELECT count(*) FROM records" + where);
      bind_all(count);
      count.step();
      page.total = count.integer(0);
      sql::Stmt rows(read_db_, std::string("SELECT ") + sql::kRecordColumns + " FROM records" +
                                   where + " ORDER BY seq LIMIT ? OFFSET ?");
      int i = bind_all(rows);
      rows.bind(i, q.limit).bind(i + 1, q.offset);
      while (rows.step()) page.records.push_back(sql::read_record(rows));
    } catch (...) {
      sqlite3_exec(read_db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    read_db_.exec("COMMIT");
    return page;
  }

  size_t queue_depth() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size();
  }

  AuditLogStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void close() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
      work_cv_.notify_all();
    }
    if (writer_.joinable()) writer_.join();  // drains the queue first
    insert_.reset();
    insert_check_.reset();
    update_tip_.reset();
    id_exists_.reset();
    writer_db_.close();
    std::lock_guard<std::mutex> lock(read_mu_);
    read_db_.close();
  }

 private:
  void check_open_for_reading() const {
    if (!read_db_.get())
      throw Error(ErrorCode::kInvalidArgument, "audit log " + writer_db_.path() + " is closed",
                  "read before close()");
  }

  void writer_loop() {
    std::vector<Pending*> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [&] { return !queue_.empty() || closed_; });
        if (queue_.empty()) return;  // closed and drained
        batch.clear();
        while (!queue_.empty() && batch.size() < options_.max_batch) {
          batch.push_back(queue_.front());
          queue_.pop_front();
        }
        stats_.writing = static_cast<int64_t>(batch.size());
      }
      int outcome = commit(batch);
      std::lock_guard<std::mutex> lock(mu_);
      if (outcome != 0) ++stats_.transactions;
      if (outcome < 0) ++stats_.failed_transactions;
      int64_t n = 0;
      for (Pending* p : batch) n += p->failed ? 0 : 1;
      stats_.records += n;
      stats_.largest_batch = std::max<int64_t>(stats_.largest_batch, n);
      stats_.writing = 0;
      for (Pending* p : batch) p->done = true;
      done_cv_.notify_all();
    }
  }

  std::string new_id() {
    static const char* kHex = "0123456789abcdef";
    std::string id(32, '0');
    uint64_t a = rng_(), b = rng_();
    for (int i = 0; i < 16; ++i) {
      id[i] = kHex[(a >> (4 * i)) & 15];
      id[16 + i] = kHex[(b >> (4 * i)) & 15];
    }
    return id;
  }

  static void fail(Pending* p, ErrorCode code, std::string message, std::string hint = {}) {
    p->failed = true;
    p->code = code;
    p->message = std::move(message);
    p->hint = std::move(hint);
  }

  // Writes the batch in one transaction. Returns 1 when it committed, 0 when no record was left
  // to write (every one refused before the transaction), -1 when the transaction failed (then
  // every record of the batch is failed and the tip is unchanged).
  int commit(const std::vector<Pending*>& batch) {
    std::vector<Pending*> todo;
    int64_t seq = tip_seq_;
    std::string prev = tip_hash_;
    try {
      std::set<std::string> ids;
      for (Pending* p : batch) {
        AuditRecord& r = p->record;
        if (!r.id.empty()) {
          id_exists_->reset();
          id_exists_->bind(1, r.id);
          bool taken = id_exists_->step();
          id_exists_->reset();
          if (taken || ids.count(r.id)) {
            fail(p, ErrorCode::kInvalidArgument,
                 "audit record id " + r.id + " is already in the log",
                 "leave the id empty and the log assigns a unique one");
            continue;
          }
        } else {
          do r.id = new_id();
          while (ids.count(r.id));
        }
        ids.insert(r.id);
        todo.push_back(p);
      }
      if (todo.empty()) return 0;
      writer_db_.exec("BEGIN IMMEDIATE");
      for (Pending* p : todo) {
        AuditRecord& r = p->record;
        if (r.time_ms == 0) r.time_ms = now_ms();
        r.seq = ++seq;
        r.prev_hash = prev;
        r.hash = sha256_hex(prev + r.canonical_json());
        prev = r.hash;
        sql::Stmt& s = *insert_;
        s.reset();
        s.bind(1, r.seq).bind(2, r.id).bind(3, r.time_ms).bind(4, r.kind).bind(5, r.refers_to);
        s.bind(6, r.endpoint).bind(7, r.key_id).bind(8, r.user).bind(9, r.model_id);
        s.bind(10, r.weights_hash).bind(11, r.policy_hash).bind(12, r.parameters.dump());
        s.bind(13, r.prompt).bind(14, r.answer).bind(15, r.explanation.dump());
        s.bind(16, r.checks.dump()).bind(17, r.decision).bind(18, r.reasons.dump());
        s.bind(19, r.timings.dump()).bind(20, r.prev_hash).bind(21, r.hash);
        s.step();
        s.reset();
        if (r.checks.is_array()) {
          for (const auto& c : r.checks) {
            if (!c.is_object() || !c.contains("name") || !c["name"].is_string()) continue;
            std::string outcome = c.contains("outcome") && c["outcome"].is_string()
                                      ? c["outcome"].get<std::string>()
                                      : "";
            insert_check_->reset();
            insert_check_->bind(1, r.seq).bind(2, c["name"].get<std::string>()).bind(3, outcome);
            insert_check_->step();
            insert_check_->reset();
          }
        }
      }
      update_tip_->reset();
      update_tip_->bind(1, seq).bind(2, prev);
      update_tip_->step();
      update_tip_->reset();
      writer_db_.exec("COMMIT");
    } catch (const std::exception& e) {
      sqlite3_exec(writer_db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      for (Pending* p : todo)
        fail(p, ErrorCode::kInternal, std::string("audit record was not committed: ") + e.what(),
             "the request is not acknowledged; retry it");
      for (Pending* p : batch)
        if (!p->failed) fail(p, ErrorCode::kInternal, e.what());
      return -1;
    }
    tip_seq_ = seq;
    tip_hash_ = prev;
    return 1;
  }

  AuditLogOptions options_;
  sql::Db writer_db_;  // used by the writer thread only (and the constructor / close)
  mutable sql::Db read_db_;
  mutable std::mutex read_mu_;
  std::unique_ptr<sql::Stmt> insert_, insert_check_, update_tip_, id_exists_;
  int64_t tip_seq_ = 0;
  std::string tip_hash_;
  std::mt19937_64 rng_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<Pending*> queue_;
  bool closed_ = false;
  AuditLogStats stats_;
  std::thread writer_;
};

}  // namespace

std::unique_ptr<AuditLog> open_audit_log(const std::string& path, const AuditLogOptions& options) {
  return std::make_unique<SqliteAuditLog>(path, options);
}

}  // namespace candor::store
