// The evaluate job: grade attribution methods over a data set. For every text of a CSV or JSONL
// file it explains the model's next token (or its greedy answer) with each method, adds decoys
// and attacks when asked, scores the explanations with the chosen metrics, and hands each
// finished example to a RecordStore; at the end the methods x metrics table (mean and bootstrap
// interval). A rerun with the same settings on the same store resumes where the last one stopped.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "candor/evaluate.h"
#include "candor/jobs_common.h"

namespace candor::jobs {

// One finished example: the data line it came from, and the record of every method and decoy.
struct ExampleRecord {
  int64_t line = 0;
  std::map<std::string, MethodRecord> methods;  // by method spec, then "decoy:NAME"
};
// {"line": .., "methods": {name: method_record_to_json, ...}} (keys sorted).
nlohmann::json example_record_to_json(const ExampleRecord& record);
// The inverse, keeping only `names` (each must be present); throws on a malformed record.
ExampleRecord example_record_from_json(const nlohmann::json& j,
                                       const std::vector<std::string>& names);

// Where an evaluate run keeps its settings, its finished examples and its table. The job calls
// begin, then done (once, to resume), then append for each example it finishes, in data order,
// then finish (also when interrupted). FileRecordStore is the one of `candor evaluate --out`.
class RecordStore {
 public:
  virtual ~RecordStore() = default;
  // Opens the run with these settings. Throws RequestError when the store holds a run with
  // other settings. Every record of the run holds exactly `names` (methods, then decoys).
  virtual void begin(const nlohmann::ordered_json& config,
                     const std::vector<std::string>& names) = 0;
  // The examples finished so far, by data line (each line once): after begin, those of an
  // earlier run with the same settings.
  virtual std::vector<ExampleRecord> done() const = 0;
  // A finished example; kept even if the run is interrupted after it.
  virtual void append(const ExampleRecord& record) = 0;
  // The run is over (summary["complete"] says whether it went through): the table.
  virtual void finish(const nlohmann::json& summary) = 0;
};

// The files of `candor evaluate --out DIR`: DIR/run.json (the settings), DIR/examples.jsonl (one
// ExampleRecord a line, appended and flushed as each finishes; lines cut off by an interruption
// are dropped and redone), and at the end table.json, table.md and report.html.
class FileRecordStore : public RecordStore {
 public:
  // `notice` gets a line about records that are redone ("note: ..."); may be empty.
  explicit FileRecordStore(std::string dir, std::function<void(const std::string&)> notice = {});
  ~FileRecordStore() override;
  void begin(const nlohmann::ordered_json& config, const std::vector<std::string>& names) override;
  std::vector<ExampleRecord> done() const override;
  void append(const ExampleRecord& record) override;
  void finish(const nlohmann::json& summary) override;
  const std::string& dir() const { return dir_; }

 private:
  struct Impl;
  std::string dir_;
  std::function<void(const std::string&)> notice_;
  std::unique_ptr<Impl> impl_;
};

struct EvaluateOptions {
  ModelSource model;
  std::string data;                  // .jsonl (one object a line) or .csv with a header
  std::string text_column = "text";  // column (or JSON key) holding the text
  std::vector<std::string> methods;  // specs; empty: {"integrated_gradients", "occlusion"}
  std::vector<std::string> metrics;  // parse_benchmark_metrics names; empty: faithfulness
  std::string removal = "baseline";  // baseline | delete
  std::string baseline = "unk";      // unk | pad | zero | a token id
  std::string on_error = "fail";     // bad rows: fail | skip (reported)
  int64_t limit = -1;                // evaluate only the first N texts (>= 1; -1: all)
  int64_t max_tokens = 64;           // keep the first N tokens of each text (>= 2)
  int64_t generate = 0;              // > 0: explain the greedy answer of N tokens (span target)
  int64_t curve_points = 0;          // deletion/insertion curve points (0: every feature count)
  int64_t sensitivity_samples = 4;   // perturbations per example
  int64_t bootstrap = 1000;          // bootstrap resamples of the intervals
  uint64_t seed = 0;
  bool decoys = false;  // also grade the decoys and rank the methods against them
  // With decoys: a VADER, AFINN or Bing lexicon (load_lexicon) for the "lexicon" decoy, the
  // |valence| of each feature's words; "" for none.
  std::string lexicon;
  std::string attack;   // "" or an attack spec (parse_attack): substitution | noise [:opts]
  int threads = 0;      // intra-op threads while the job runs (ThreadScope); 0: one per core
  // Bytes of the gradient tape a pass may keep before it turns lean (TapeBudgetScope while the
  // job runs; --tape-budget): -1: the process's budget (1 GiB unless set); 0: always lean.
  int64_t tape_budget = -1;
};

struct EvaluateProgress {
  size_t done = 0;         // examples through (finished or resumed)
  size_t total = 0;        // examples to go through
  int64_t computed = 0;    // of `done`, computed in this run
  int64_t to_compute = 0;  // examples this run computes when it goes through (not resumed)
};

// What a running evaluate job reports (every callback optional).
struct EvaluateEvents {
  // A line for the user: a skipped row ("warning: DATA line N: ... (skipped)"), resumption.
  std::function<void(const std::string& line)> notice;
  // The data is read, the model loaded and the store opened; the examples start.
  std::function<void()> started;
  // Asked before each example: true stops the run there (incomplete; a rerun resumes).
  std::function<bool()> stop;
  // After each example that goes through.
  std::function<void(const EvaluateProgress&)> progress;
};

struct EvaluateResult {
  nlohmann::json summary;  // the table (table.json of FileRecordStore)
  bool complete = true;    // false: stopped by events.stop
  size_t n_skipped = 0;    // rows left out (listed in summary["skipped"])
  int64_t n_computed = 0;  // examples computed in this run
  int64_t n_resumed = 0;   // examples the store already held
};

// Runs the job: checks every option before reading anything (RequestError), reads the data
// (bad rows fail the job or are skipped, by options.on_error; no row left to evaluate is
// Error(kInvalidArgument) naming the file), loads the model (unless
// borrowed), opens `store` with the settings and resumes from its records, evaluates the rest in
// order, and finishes the store with the table. Runs with options.threads intra-op threads,
// restored afterwards.
EvaluateResult run_evaluate(const EvaluateOptions& options, RecordStore& store,
                            const EvaluateEvents& events = {});

}  // namespace candor::jobs
