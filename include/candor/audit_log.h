// The audit log: one tamper-evident record per supervised request. Records are chained (each
// holds the SHA-256 of the one before), appended by many threads and committed in groups (one
// transaction for the records that are waiting), and an append returns only once its record is
// durable, so an acknowledged request is never missing from the log.
//
// The interface is abstract so that other stores (PostgreSQL, a remote collector) can stand
// beside the embedded SQLite one that open_audit_log() returns.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace candor::store {

struct AuditRecord {
  // Filled by the caller.
  std::string kind = "request";  // "request", or "addendum": later results of async checks
  std::string refers_to;         // for an addendum: the id of the request record it completes
  std::string endpoint;          // "/v1/completions", "/v1/chat/completions", "/v1/explain", ...
  std::string key_id;            // the API key's id, never the key itself ("" without keys)
  std::string user;              // the request's `user` field
  std::string model_id;
  std::string weights_hash;      // hex SHA-256 of the model's weights
  std::string policy_hash;       // hex SHA-256 of the policy file's bytes
  nlohmann::json parameters = nlohmann::json::object();  // max_tokens, temperature, seed, ...
  std::string prompt;
  std::string answer;
  nlohmann::json explanation = nlohmann::json::object();  // method, top features and scores
  nlohmann::json checks = nlohmann::json::array();        // [{name, value, threshold, outcome, ...}]
  std::string decision;                                   // "allow" | "flag" | "block"
  nlohmann::json reasons = nlohmann::json::array();       // strings
  nlohmann::json timings = nlohmann::json::object();      // milliseconds per stage

  // Filled by the log on append.
  std::string id;          // unique, assigned when empty (32 hex digits)
  int64_t time_ms = 0;     // Unix time in milliseconds, assigned when 0
  int64_t seq = 0;         // position in the chain, 1 for the first record
  std::string prev_hash;   // hex SHA-256 of the previous record; 64 zeros for the first
  std::string hash;        // hex SHA-256 over prev_hash and canonical_json()

  // Every field but `hash`, as JSON with sorted keys: what the hash covers.
  std::string canonical_json() const;
  nlohmann::json to_json() const;  // every field, for the audit endpoints
};

struct AuditQuery {
  int64_t from_ms = 0;    // inclusive; 0: no lower bound
  int64_t to_ms = 0;      // exclusive; 0: no upper bound
  std::string decision;   // "" any
  std::string check;      // "" any; else records with a check of this name that did not pass
  std::string model_id;   // "" any
  std::string key_id;     // "" any
  std::string refers_to;  // "" any; else the addenda of this request id
  int64_t offset = 0;
  int64_t limit = 100;    // at most 1000
};

struct AuditPage {
  std::vector<AuditRecord> records;  // oldest first
  int64_t total = 0;                 // records matching the query, all pages together
};

struct AuditLogOptions {
  size_t queue_capacity = 4096;  // records waiting to be committed; beyond it append() refuses
  size_t max_batch = 512;        // records committed in one transaction at most
  bool durable = true;           // a committed record survives a power loss (fsync per commit)
  int busy_timeout_ms = 5000;    // how long a commit waits for another process holding the file
};

// What the writer has done since open: for the metrics and the group-commit tests.
struct AuditLogStats {
  int64_t transactions = 0;         // transactions attempted (committed or failed)
  int64_t records = 0;              // records committed
  int64_t failed_transactions = 0;  // transactions that failed (their records not acknowledged)
  int64_t largest_batch = 0;        // most records committed in one transaction
  int64_t writing = 0;              // records the writer holds now (taken from the queue)
  nlohmann::json to_json() const;
};

// Thread-safe.
class AuditLog {
 public:
  virtual ~AuditLog() = default;
  // Appends `record` and returns it as stored (id, time, seq and hashes filled) once it is
  // committed. Throws Error(kResourceExhausted) at once when the write queue is full (the service
  // answers 429), Error(kInternal) when the commit fails (then the record is not acknowledged).
  virtual AuditRecord append(AuditRecord record) = 0;
  virtual std::optional<AuditRecord> get(const std::string& id) const = 0;
  virtual AuditPage query(const AuditQuery& query) const = 0;
  virtual size_t queue_depth() const = 0;
  virtual AuditLogStats stats() const { return {}; }
  // Commits what is queued and closes; idempotent. append() after close throws.
  virtual void close() = 0;
};

// Opens the SQLite log at `path` (WAL mode), creating it or migrating an older schema, and
// continues the chain from its last committed record. One writer thread commits what is queued
// (up to max_batch records) in one transaction; with durable, PRAGMA synchronous=FULL. Throws
// Error naming the path when it is a folder, its folder is missing, the file is not a SQLite
// database or not a candor audit log (kInvalidArgument / kNotFound), or when its schema is newer
// than this build (kUnsupported). docs/audit-log.md describes the schema and the chain.
std::unique_ptr<AuditLog> open_audit_log(const std::string& path, const AuditLogOptions& options = {});

struct VerifyProblem {
  int64_t seq = 0;     // where the chain breaks
  std::string id;      // the record there ("" when a record is missing)
  std::string what;    // "edited", "deleted", "inserted", "reordered", ...
  std::string detail;  // a sentence for the auditor
};

struct VerifyReport {
  bool ok = true;
  int64_t records = 0;
  std::vector<VerifyProblem> problems;
  nlohmann::json to_json() const;
};

// Re-hashes the chain from the first record; finds any edited, deleted or inserted record.
VerifyReport verify_audit_log(const std::string& path);

// Hex SHA-256 of `bytes`.
std::string sha256_hex(std::string_view bytes);

}  // namespace candor::store
