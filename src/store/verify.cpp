// verify_audit_log: re-hashes the chain and names every record that was edited, deleted,
// inserted or moved since it was written.
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "candor/error.h"
#include "store/sqlite.h"

namespace candor::store {

nlohmann::json VerifyReport::to_json() const {
  nlohmann::json problems_json = nlohmann::json::array();
  for (const auto& p : problems)
    problems_json.push_back({{"seq", p.seq}, {"id", p.id}, {"what", p.what}, {"detail", p.detail}});
  return {{"ok", ok}, {"records", records}, {"problems", problems_json}};
}

namespace {

// The hash `r` would have if it had been written at `seq`.
std::string hash_at(AuditRecord r, int64_t seq) {
  r.seq = seq;
  return sha256_hex(r.prev_hash + r.canonical_json());
}

// How far a renumbered record may have moved and still be recognised.
constexpr int64_t kMaxShift = 16;

}  // namespace

VerifyReport verify_audit_log(const std::string& path) {
  sql::Db db;
  db.open(path, /*read_only=*/true, /*create=*/false);
  int version = sql::schema_version(db);
  VerifyReport report;
  if (version == 0)
    throw Error(ErrorCode::kInvalidArgument,
                "audit log " + path + " is an empty SQLite database, not a candor audit log",
                "give the path of the log that candor serve wrote (--db)");
  db.exec("BEGIN");  // one snapshot for both passes
  // Pass 1: where each stored hash stands.
  // Which hashes a later record was chained to: a record nothing was chained to is the last one
  // or was put in afterwards.
  std::unordered_map<std::string, int64_t> seq_of_hash;
  std::unordered_map<int64_t, std::string> hash_of_seq;
  std::unordered_set<std::string> chained_to;
  {
    sql::Stmt s(db, "SELECT seq, hash, prev_hash FROM records ORDER BY seq");
    while (s.step()) {
      seq_of_hash.emplace(s.text(1), s.integer(0));
      hash_of_seq.emplace(s.integer(0), s.text(1));
      chained_to.insert(s.text(2));
    }
  }
  // True when no record was chained to any of the rows from seq `first` to `last`.
  auto unchained = [&](int64_t first, int64_t last) {
    for (int64_t q = first; q <= last; ++q) {
      auto it = hash_of_seq.find(q);
      if (it != hash_of_seq.end() && chained_to.count(it->second)) return false;
    }
    return true;
  };
  auto add = [&](int64_t seq, std::string id, std::string what, std::string detail) {
    report.problems.push_back({seq, std::move(id), std::move(what), std::move(detail)});
  };
  // Pass 2: each record against itself and against the one before it.
  sql::Stmt s(db, std::string("SELECT ") + sql::kRecordColumns + " FROM records ORDER BY seq");
  AuditRecord prev, prev2;  // the rows one and two places before
  bool have_prev = false, have_prev2 = false;
  std::map<int64_t, std::string> ids_by_seq;  // rows seen, for naming inserted ones
  while (s.step()) {
    AuditRecord r = sql::read_record(s);
    ++report.records;
    ids_by_seq[r.seq] = r.id;
    int64_t expected = have_prev ? prev.seq + 1 : 1;
    bool gap = false;
    if (r.seq > expected) {
      gap = true;
      add(expected, "", "deleted",
          r.seq - expected == 1 ? "record seq " + std::to_string(expected) + " is missing"
                                : "records seq " + std::to_string(expected) + " to " +
                                      std::to_string(r.seq - 1) + " are missing");
    } else if (r.seq < expected) {
      add(r.seq, r.id, "inserted", "seq " + std::to_string(r.seq) + " is not a chain position");
    }
    const std::string& link = have_prev ? prev.hash : sql::zero_hash();
    bool links = r.prev_hash == link;
    bool explained = false;
    if (sha256_hex(r.prev_hash + r.canonical_json()) != r.hash) {
      // Written at another position and renumbered?
      int64_t shift = 0;
      for (int64_t d = 1; d <= kMaxShift && shift == 0; ++d) {
        if (hash_at(r, r.seq + d) == r.hash)
          shift = d;
        else if (r.seq - d >= 1 && hash_at(r, r.seq - d) == r.hash)
          shift = -d;
      }
      std::string written = "the record written as seq " + std::to_string(r.seq + shift) +
                            " stands at seq " + std::to_string(r.seq);
      if (shift == 0) {
        add(r.seq, r.id, "edited",
            "its content no longer matches its hash: fields were changed after it was written");
      } else if (links) {
        add(r.seq, r.id, shift > 0 ? "deleted" : "inserted",
            written + (shift > 0 ? ": records before it were deleted and the rest renumbered"
                                 : ": records were inserted before it and the rest renumbered"));
        explained = true;
      } else {
        auto it = seq_of_hash.find(r.prev_hash);
        if (shift < 0 && it != seq_of_hash.end() && it->second == r.seq + shift - 1 &&
            it->second < r.seq - 1 && unchained(it->second + 1, r.seq - 1)) {
          // Its predecessor is in place, but rows were put between them.
          for (int64_t q = it->second + 1; q < r.seq; ++q)
            add(q, ids_by_seq.count(q) ? ids_by_seq[q] : "", "inserted",
                "seq " + std::to_string(q) + " is not in the chain: " + written);
        } else if (shift > 0 && it == seq_of_hash.end()) {
          add(r.seq, r.id, "deleted",
              written + ": the record before it is missing and the rest renumbered");
        } else {
          add(r.seq, r.id, "reordered", written);
        }
        explained = true;
      }
    }
    if (!links && !explained && !gap) {
      auto it = seq_of_hash.find(r.prev_hash);
      if (it != seq_of_hash.end() && have_prev2 && it->second == prev2.seq &&
          unchained(prev.seq, prev.seq)) {
        add(prev.seq, prev.id, "inserted",
            "seq " + std::to_string(prev.seq) + " is not in the chain: seq " +
                std::to_string(r.seq) + " was written right after seq " +
                std::to_string(prev2.seq));
      } else if (it != seq_of_hash.end()) {
        add(r.seq, r.id, "reordered",
            "it was written after the record now at seq " + std::to_string(it->second) +
                ", not after seq " + std::to_string(have_prev ? prev.seq : 0));
      } else if (have_prev) {
        add(prev.seq, prev.id, "edited",
            "its hash is not the one seq " + std::to_string(r.seq) +
                " was chained to: it was changed and re-hashed after it was written");
      } else {
        add(r.seq, r.id, "deleted",
            "the first record is not chained to the start: the records before it were deleted");
      }
    }
    prev2 = std::move(prev);
    have_prev2 = have_prev;
    prev = std::move(r);
    have_prev = true;
  }
  // The tip: a deleted or appended tail.
  bool has_tip = false;
  {
    sql::Stmt t(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chain_tip'");
    has_tip = t.step();
  }
  if (has_tip) {
    sql::Stmt t(db, "SELECT seq, hash FROM chain_tip WHERE one = 1");
    if (!t.step()) {
      add(0, "", "edited", "the chain_tip row is missing");
    } else {
      int64_t tip_seq = t.integer(0);
      std::string tip_hash = t.text(1);
      int64_t last = have_prev ? prev.seq : 0;
      if (last < tip_seq) {
        add(last + 1, "", "deleted",
            "the log ends at seq " + std::to_string(last) + " but its tip was seq " +
                std::to_string(tip_seq) + ": the last records were deleted");
      } else if (last > tip_seq) {
        for (auto it = ids_by_seq.upper_bound(tip_seq); it != ids_by_seq.end(); ++it)
          add(it->first, it->second, "inserted",
              "seq " + std::to_string(it->first) + " lies beyond the chain's tip (seq " +
                  std::to_string(tip_seq) + ")");
      } else if (have_prev && prev.hash != tip_hash) {
        add(last, prev.id, "edited", "its hash differs from the one the chain's tip recorded");
      }
    }
  }
  db.exec("COMMIT");
  report.ok = report.problems.empty();
  return report;
}

}  // namespace candor::store
