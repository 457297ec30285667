// TableChunks: a CSV or JSON Lines file read a chunk of records at a time through parse_csv /
// parse_jsonl, each chunk numbered with the file's lines (ReadOptions::first_line).
#include <filesystem>
#include <fstream>

#include "candor/data.h"
#include "candor/error.h"

namespace candor::data {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool blank(const std::string& line) {
  return line.find_first_not_of(" \t\r\n") == std::string::npos;
}

}  // namespace

struct TableChunks::Impl {
  std::ifstream in;
  ReadOptions options;
  size_t chunk_rows = 4096;
  bool jsonl = false, started = false, done = false;
  int64_t line = 0;           // lines read so far
  std::string header;         // CSV: the header record, as read (with its line ends)
  int64_t header_lines = 0;   // CSV: lines the header record spans
  std::string carried;        // blank lines read after the last record of the previous chunk
  int64_t carried_first = 0;  // the line of the first of them

  // Reads one line with its line end ('\n' appended unless the file ended without one). False at
  // the end of the file.
  bool read_line(std::string* out) {
    out->clear();
    if (!std::getline(in, *out)) return false;
    ++line;
    if (!in.eof()) out->push_back('\n');
    if (line == 1 && out->compare(0, 3, "\xEF\xBB\xBF") == 0) out->erase(0, 3);  // UTF-8 BOM
    return true;
  }

  // CSV: the rest of a record whose first line is `text` (RFC 4180: a quote opens a quoted field
  // only at the start of a field; quoted fields may span lines). Appends lines to `text`.
  void complete_csv_record(std::string* text) {
    bool quoted = false, field_start = true;
    size_t i = 0;
    while (true) {
      for (; i < text->size(); ++i) {
        const char c = (*text)[i];
        if (quoted) {
          if (c == '"') {
            if (i + 1 < text->size() && (*text)[i + 1] == '"')
              ++i;
            else
              quoted = false;
          }
        } else if (field_start && c == '"') {
          quoted = true;
          field_start = false;
        } else {
          field_start = c == options.delimiter;
        }
      }
      if (!quoted) return;
      std::string more;
      if (!read_line(&more)) return;  // unterminated: parse_csv reports it
      *text += more;
    }
  }
};

TableChunks::TableChunks(const std::string& path, const ReadOptions& options, size_t chunk_rows)
    : path_(path), impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  impl_->chunk_rows = chunk_rows == 0 ? 1 : chunk_rows;
  impl_->jsonl =
      ends_with(path, ".jsonl") || ends_with(path, ".ndjson") || ends_with(path, ".json");
}

TableChunks::~TableChunks() = default;

bool TableChunks::next(Table* out) {
  Impl& m = *impl_;
  if (!m.started) {
    m.started = true;
    std::error_code ec;
    if (std::filesystem::is_directory(path_, ec))
      throw Error(ErrorCode::kInvalidArgument, "'" + path_ + "' is a folder, not a data file",
                  "give a CSV or JSON Lines file");
    m.in.open(path_, std::ios::binary);
    if (!m.in)
      throw Error(ErrorCode::kNotFound, "cannot open data file '" + path_ + "'",
                  "check the path and its permissions");
    if (!m.jsonl) {
      // The header: the first record that is not blank (blank lines before it are ignored, as
      // parse_csv does).
      std::string rec;
      while (m.read_line(&rec)) {
        if (blank(rec)) continue;
        const int64_t first = m.line;
        m.complete_csv_record(&rec);
        m.header = std::move(rec);
        m.header_lines = m.line - first + 1;
        m.carried_first = m.line + 1;
        break;
      }
      if (m.header.empty()) parse_csv("", path_, m.options);  // throws: empty file
    } else {
      m.carried_first = 1;
    }
  }
  while (!m.done) {
    // One chunk: the blank lines carried over, then lines up to chunk_rows records (a chunk
    // ends after a record, so blank lines between records stay in the chunk that reports them).
    std::string text = m.jsonl ? std::string() : m.header;
    const int64_t first = m.carried_first;
    text += m.carried;
    m.carried.clear();
    size_t records = 0;
    std::string line, pending;  // pending: blank lines after the chunk's last record
    int64_t pending_first = 0;
    while (records < m.chunk_rows) {
      if (!m.read_line(&line)) {
        m.done = true;
        break;
      }
      if (blank(line)) {
        if (pending.empty()) pending_first = m.line;
        pending += line;
        continue;
      }
      if (!m.jsonl) m.complete_csv_record(&line);
      text += pending;
      pending.clear();
      if (text.empty())
        text.swap(line);  // no copy of a long first line
      else
        text += line;
      ++records;
    }
    m.carried = std::move(pending);
    m.carried_first = m.carried.empty() ? m.line + 1 : pending_first;
    if (records == 0) {
      // Only blank lines are left. A file with no record at all is an empty file, reported as
      // the readers report it; after records, trailing blank lines mean nothing (CSV: a
      // one-column file reads them as missing values, as parse_csv does).
      if (first == 1 && m.jsonl) parse_jsonl(text + m.carried, path_, m.options);  // throws
      if (m.jsonl || m.header_lines == 0) return false;
      text += m.carried;
      m.carried.clear();
    }
    ReadOptions o = m.options;
    o.first_line = m.jsonl ? first : first - m.header_lines;
    Table t = m.jsonl ? parse_jsonl(text, path_, o) : parse_csv(text, path_, o);
    if (t.n_rows() > 0 || !t.skipped().empty()) {
      *out = std::move(t);
      return true;
    }
  }
  return false;
}

}  // namespace candor::data
