// SQLite plumbing of the audit log: connections, statements, the schema and its migrations.
#include "store/sqlite.h"

#include <sys/stat.h>

#include <vector>

#include "candor/error.h"

namespace candor::store::sql {

// ---------------------------------------------------------------------------------------------
// Connections and statements
// ---------------------------------------------------------------------------------------------

Db::~Db() { close(); }

void Db::close() {
  if (db_) sqlite3_close_v2(db_);
  db_ = nullptr;
}

void Db::open(const std::string& path, bool read_only, bool create) {
  close();
  path_ = path;
  if (path.empty())
    throw Error(ErrorCode::kInvalidArgument, "audit log: the database path is empty",
                "give a file path, e.g. --db audit.db");
  struct stat st {};
  bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode))
    throw Error(ErrorCode::kInvalidArgument, "audit log " + path + " is a folder, not a file",
                "give a file path inside it, e.g. " + path + "/audit.db");
  if (!exists && !create)
    throw Error(ErrorCode::kNotFound, "audit log " + path + " does not exist",
                "check the path given to --db");
  if (!exists) {
    auto slash = path.find_last_of('/');
    std::string parent = slash == std::string::npos ? "." : path.substr(0, slash);
    if (parent.empty()) parent = "/";
    struct stat pst {};
    if (::stat(parent.c_str(), &pst) != 0 || !S_ISDIR(pst.st_mode))
      throw Error(ErrorCode::kNotFound,
                  "audit log " + path + ": the folder " + parent + " does not exist",
                  "create the folder first or give another path");
  }
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_FULLMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    close();
    throw Error(ErrorCode::kInvalidArgument, "audit log " + path + " cannot be opened: " + message,
                "check the path and its permissions");
  }
  sqlite3_extended_result_codes(db_, 1);
  // The first read of the schema tells a SQLite file from anything else.
  rc = sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = sqlite3_errmsg(db_);
    bool not_db = (rc & 0xff) == SQLITE_NOTADB;
    close();
    if (not_db)
      throw Error(ErrorCode::kInvalidArgument,
                  "audit log " + path + " is not a SQLite database (" + message + ")",
                  "give the path of a candor audit log, or a new file name to start one");
    throw Error(ErrorCode::kInvalidArgument, "audit log " + path + " cannot be read: " + message,
                "check the path and its permissions");
  }
}

void Db::fail(const std::string& what) const {
  throw Error(ErrorCode::kInternal,
              "audit log " + path_ + ": " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "closed"));
}

void Db::exec(const std::string& sql) const {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : "unknown error";
    sqlite3_free(message);
    throw Error(ErrorCode::kInternal,
                "audit log " + path_ + ": " + text + " (in: " + sql.substr(0, 60) + ")");
  }
}

Stmt::Stmt(const Db& db, const std::string& sql) : db_(db) {
  if (sqlite3_prepare_v2(db.get(), sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK)
    db.fail("cannot prepare \"" + sql.substr(0, 60) + "\"");
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

Stmt& Stmt::bind(int index, const std::string& value) {
  if (sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK)
    db_.fail("cannot bind a value");
  return *this;
}

Stmt& Stmt::bind(int index, int64_t value) {
  if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) db_.fail("cannot bind a value");
  return *this;
}

bool Stmt::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.fail("statement failed");
}

void Stmt::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string Stmt::text(int column) const {
  const unsigned char* p = sqlite3_column_text(stmt_, column);
  if (!p) return {};
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

int64_t Stmt::integer(int column) const { return sqlite3_column_int64(stmt_, column); }

bool Stmt::is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

// ---------------------------------------------------------------------------------------------
// Schema and migrations
// ---------------------------------------------------------------------------------------------

namespace {

// Version 1: the records, one row each, JSON fields as text.
const char* kSchemaV1 = R"sql(
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE records (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  time_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  refers_to TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  key_id TEXT NOT NULL,
  user TEXT NOT NULL,
  model_id TEXT NOT NULL,
  weights_hash TEXT NOT NULL,
  policy_hash TEXT NOT NULL,
  parameters TEXT NOT NULL,
  prompt TEXT NOT NULL,
  answer TEXT NOT NULL,
  explanation TEXT NOT NULL,
  checks TEXT NOT NULL,
  decision TEXT NOT NULL,
  reasons TEXT NOT NULL,
  timings TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO schema_version (version) VALUES (1);
)sql";

// Version 2: indexes for the query filters, the checks of each record as rows (for the `check`
// filter; filled from the records already there), and the chain's tip (seq and hash of the last
// record, updated in the same transaction), so that a deleted tail is found by the verifier.
const char* kMigrateV1ToV2 = R"sql(
CREATE INDEX records_time ON records (time_ms);
CREATE INDEX records_decision ON records (decision, time_ms);
CREATE INDEX records_model ON records (model_id, time_ms);
CREATE INDEX records_key ON records (key_id, time_ms);
CREATE INDEX records_refers_to ON records (refers_to) WHERE refers_to <> '';
CREATE TABLE record_checks (
  seq INTEGER NOT NULL,
  name TEXT NOT NULL,
  outcome TEXT NOT NULL
);
CREATE INDEX record_checks_name ON record_checks (name, outcome, seq);
INSERT INTO record_checks (seq, name, outcome)
  SELECT records.seq, json_extract(c.value, '$.name'),
         coalesce(json_extract(c.value, '$.outcome'), '')
  FROM records, json_each(CASE WHEN json_valid(records.checks) THEN records.checks ELSE '[]' END) AS c
  WHERE json_type(c.value, '$.name') = 'text';
CREATE TABLE chain_tip (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL,
                        hash TEXT NOT NULL);
INSERT INTO chain_tip (one, seq, hash)
  SELECT 1, coalesce(max(seq), 0),
         coalesce((SELECT hash FROM records ORDER BY seq DESC LIMIT 1),
                  '0000000000000000000000000000000000000000000000000000000000000000')
  FROM records;
UPDATE schema_version SET version = 2;
)sql";

bool has_table(const Db& db, const std::string& name) {
  Stmt s(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
  s.bind(1, name);
  return s.step();
}

}  // namespace

int schema_version(const Db& db) {
  Stmt count(db, "SELECT count(*) FROM sqlite_master");
  count.step();
  if (count.integer(0) == 0) return 0;
  if (!has_table(db, "schema_version") || !has_table(db, "records"))
    throw Error(ErrorCode::kInvalidArgument,
                "audit log " + db.path() +
                    " is a SQLite database but not a candor audit log (it has no schema_version "
                    "and records tables)",
                "give the path of a candor audit log, or a new file name to start one");
  Stmt s(db, "SELECT version FROM schema_version");
  if (!s.step())
    throw Error(ErrorCode::kInvalidArgument,
                "audit log " + db.path() + " has an empty schema_version table",
                "the file is damaged; restore it from a copy");
  int version = static_cast<int>(s.integer(0));
  if (version > kSchemaVersion)
    throw Error(ErrorCode::kUnsupported,
                "audit log " + db.path() + " has schema version " + std::to_string(version) +
                    ", newer than this candor knows (" + std::to_string(kSchemaVersion) + ")",
                "open it with a newer candor");
  if (version < 1)
    throw Error(
        ErrorCode::kInvalidArgument,
        "audit log " + db.path() + " has an invalid schema version " + std::to_string(version),
        "the file is damaged; restore it from a copy");
  return version;
}

void create_or_migrate(const Db& db) {
  // Steps from version i to i + 1; index 0 creates version 1 in an empty database.
  static const std::vector<const char*> kSteps = {kSchemaV1, kMigrateV1ToV2};
  db.exec("BEGIN IMMEDIATE");
  try {
    int version = schema_version(db);  // read inside the transaction: one migrator at a time
    for (int v = version; v < kSchemaVersion; ++v) db.exec(kSteps[static_cast<size_t>(v)]);
    db.exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

const char* const kRecordColumns =
    "seq, id, time_ms, kind, refers_to, endpoint, key_id, user, model_id, weights_hash, "
    "policy_hash, parameters, prompt, answer, explanation, checks, decision, reasons, timings, "
    "prev_hash, hash";

namespace {
// A JSON column as stored; text that is not JSON (a tampered row) is kept as a JSON string so
// that the record can still be shown and its hash no longer matches.
nlohmann::json json_column(const Stmt& s, int column) {
  std::string text = s.text(column);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return nlohmann::json(text);
  return j;
}
}  // namespace

AuditRecord read_record(const Stmt& s) {
  AuditRecord r;
  r.seq = s.integer(0);
  r.id = s.text(1);
  r.time_ms = s.integer(2);
  r.kind = s.text(3);
  r.refers_to = s.text(4);
  r.endpoint = s.text(5);
  r.key_id = s.text(6);
  r.user = s.text(7);
  r.model_id = s.text(8);
  r.weights_hash = s.text(9);
  r.policy_hash = s.text(10);
  r.parameters = json_column(s, 11);
  r.prompt = s.text(12);
  r.answer = s.text(13);
  r.explanation = json_column(s, 14);
  r.checks = json_column(s, 15);
  r.decision = s.text(16);
  r.reasons = json_column(s, 17);
  r.timings = json_column(s, 18);
  r.prev_hash = s.text(19);
  r.hash = s.text(20);
  return r;
}

const std::string& zero_hash() {
  static const std::string kZero(64, '0');
  return kZero;
}

}  // namespace candor::store::sql
