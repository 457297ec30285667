// Private to candor_store: small RAII wrappers over the SQLite C API, the schema of the audit log
// and its migrations, and the row <-> AuditRecord mapping shared by the log and the verifier.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "candor/audit_log.h"

namespace candor::store::sql {

// An open connection; closes on destruction.
class Db {
 public:
  Db() = default;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();
  sqlite3* get() const { return db_; }
  const std::string& path() const { return path_; }
  // Opens `path` (read-only or read-write, creating it when `create`). Throws Error naming the
  // path: a folder, a missing parent folder, a file that is not a SQLite database.
  void open(const std::string& path, bool read_only, bool create);
  void close();
  // Runs `sql` (one or more statements). Throws Error(kInternal) naming the path.
  void exec(const std::string& sql) const;
  [[noreturn]] void fail(const std::string& what) const;

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

// A prepared statement; finalizes on destruction.
class Stmt {
 public:
  Stmt(const Db& db, const std::string& sql);
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();
  Stmt& bind(int index, const std::string& value);
  Stmt& bind(int index, int64_t value);
  // True while a row is available; throws Error(kInternal) on failure.
  bool step();
  void reset();
  std::string text(int column) const;
  int64_t integer(int column) const;
  bool is_null(int column) const;

 private:
  const Db& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// The schema version this build writes; older files are migrated at open.
constexpr int kSchemaVersion = 2;

// The version of the audit log schema in `db`: 0 for an empty database (no tables), else the
// value of schema_version. Throws Error(kInvalidArgument) naming the path when the database holds
// tables but is not a candor audit log, Error(kUnsupported) when it is newer than this build.
int schema_version(const Db& db);
// Creates the current schema in an empty database, or migrates an older one (each step in its
// own transaction).
void create_or_migrate(const Db& db);

// The columns of `records`, in the order read_record expects.
extern const char* const kRecordColumns;
AuditRecord read_record(const Stmt& stmt);

// 64 zeros: the prev_hash of the first record.
const std::string& zero_hash();

}  // namespace candor::store::sql
