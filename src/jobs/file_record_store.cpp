// FileRecordStore: an evaluate run as files in one folder (run.json, examples.jsonl, table.json,
// table.md, report.html), the format `candor evaluate --out` has always written.
#include <fstream>
#include <map>
#include <sstream>

#include "candor/evaluate.h"
#include "candor/files.h"
#include "candor/jobs_evaluate.h"
#include "candor/report.h"

namespace candor::jobs {
namespace {

void write_text(const std::string& path, const std::string& content) {
  write_file_atomic(path, content);
}

}  // namespace

struct FileRecordStore::Impl {
  std::map<int64_t, ExampleRecord> done;  // by data line
  std::ofstream examples;                 // examples.jsonl, appended to
};

FileRecordStore::FileRecordStore(std::string dir, std::function<void(const std::string&)> notice)
    : dir_(std::move(dir)), notice_(std::move(notice)), impl_(std::make_unique<Impl>()) {}

FileRecordStore::~FileRecordStore() = default;

void FileRecordStore::begin(const nlohmann::ordered_json& config,
                            const std::vector<std::string>& names) {
  prepare_output_dir(dir_);
  const std::string run_path = dir_ + "/run.json", ex_path = dir_ + "/examples.jsonl";
  {
    std::ifstream in(run_path);
    if (in) {
      nlohmann::json prev;
      try {
        prev = nlohmann::json::parse(in);
      } catch (const std::exception&) {
      }
      if (prev != nlohmann::json(config)) {
        throw RequestError("'" + dir_ + "' holds a run with other settings (" + run_path + ")",
                           "use another --out folder, or delete that one to start again");
      }
    } else {
      write_text(run_path, config.dump(2) + "\n");
    }
  }
  impl_->done.clear();
  std::map<int64_t, std::string> done_lines;  // the line of examples.jsonl holding each
  {
    std::ifstream in(ex_path);
    std::string line;
    int64_t dropped = 0;
    while (std::getline(in, line)) {
      try {
        ExampleRecord r = example_record_from_json(nlohmann::json::parse(line), names);
        done_lines[r.line] = line;
        impl_->done[r.line] = std::move(r);
      } catch (const std::exception&) {
        ++dropped;  // an example cut off by an interruption: done again
      }
    }
    if (dropped > 0) {
      if (notice_)
        notice_("note: " + std::to_string(dropped) + " unfinished record(s) in " + ex_path +
                " are redone");
      std::string kept;
      for (const auto& [l, text] : done_lines) kept += text + "\n";
      write_text(ex_path, kept);
    }
  }
  // An append-only log (a record cut off by an interruption is redone on resumption).
  impl_->examples = std::ofstream(ex_path, std::ios::app);
  if (!impl_->examples)
    throw Error(ErrorCode::kInvalidArgument, "cannot append to '" + ex_path + "'",
                "check that the file is writable");
}

std::vector<ExampleRecord> FileRecordStore::done() const {
  std::vector<ExampleRecord> out;
  for (const auto& [line, r] : impl_->done) out.push_back(r);
  return out;
}

void FileRecordStore::append(const ExampleRecord& record) {
  impl_->examples << example_record_to_json(record).dump() << "\n" << std::flush;
  impl_->done[record.line] = record;
}

void FileRecordStore::finish(const nlohmann::json& summary) {
  write_text(dir_ + "/table.json",
             summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  write_text(dir_ + "/table.md", render_benchmark_markdown(summary));
  write_text(dir_ + "/report.html", render_benchmark_html(summary));
}

}  // namespace candor::jobs
