// Tabular data: CSV (RFC 4180) and JSON Lines readers into a table of typed columns, and
// train / validation / test splits. Used by distillation (teachers, students, fidelity reports)
// and by `candor train` / `candor distill`.
//
// Errors name the file, the line (1-based, the line where the record starts) and the column.
// With ErrorPolicy::kSkip a bad record is left out and reported in Table::skipped(), never
// dropped silently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace candor::data {

enum class ColumnType {
  kNumeric,      // every present value parses as a finite number
  kCategorical,  // few distinct strings (labels, protected attributes, codes)
  kText,         // free text (many distinct strings)
};
const char* column_type_name(ColumnType type);  // "numeric", "categorical", "text"
// Parses "numeric" / "categorical" / "text"; throws Error(kInvalidArgument) otherwise.
ColumnType parse_column_type(const std::string& name);

// One column. `raw` always holds the field text as read (JSON values as their text); the typed
// views are filled according to `type`. Missing values: `missing[row] != 0`.
struct Column {
  std::string name;
  ColumnType type = ColumnType::kText;
  std::vector<std::string> raw;  // [rows] field text ("" when missing)
  std::vector<uint8_t> missing;  // [rows] 1 = missing value
  std::vector<double> numeric;   // [rows] kNumeric only; NaN when missing
  std::vector<int32_t> codes;    // [rows] kCategorical only; index into categories, -1 missing
  std::vector<std::string> categories;  // kCategorical only; in order of first appearance

  size_t size() const { return raw.size(); }
  bool is_missing(size_t row) const { return missing[row] != 0; }
  size_t n_missing() const;
};

enum class ErrorPolicy {
  kFail,  // the first bad record throws Error(kInvalidArgument) naming file, line and column
  kSkip,  // bad records are left out and listed in Table::skipped()
};
// Parses "fail" / "skip"; throws Error(kInvalidArgument) otherwise.
ErrorPolicy parse_error_policy(const std::string& name);

struct SkippedRecord {
  int64_t line = 0;    // 1-based line where the record starts
  std::string reason;  // e.g. "3 fields, header has 4"
};

struct ReadOptions {
  ErrorPolicy on_error = ErrorPolicy::kFail;
  // Types forced for named columns (the rest are inferred). Naming a column that the file
  // lacks is an error. A value that does not parse as a forced numeric type is a bad record.
  std::map<std::string, ColumnType> types;
  // Columns that must be present (error naming the file and the columns it has otherwise).
  std::vector<std::string> required;
  // Field texts read as missing values (exact match, after no trimming).
  std::vector<std::string> missing_values = {"", "NA", "NaN", "null"};
  char delimiter = ',';  // CSV only
  // Inference: a non-numeric column is categorical when it has at most this many distinct
  // values and at most max(50, rows / 10) of them; text otherwise.
  size_t max_categories = 1000;
  // Line number of the text's first line, for a part of a file read on its own (TableChunks):
  // rows, skipped records and errors then name the file's lines.
  int64_t first_line = 1;
};

// A table of typed columns, all of the same length.
class Table {
 public:
  Table() = default;
  Table(std::string source, std::vector<Column> columns, std::vector<int64_t> lines,
        std::vector<SkippedRecord> skipped = {});

  const std::string& source() const { return source_; }  // file name (or given name)
  size_t n_rows() const { return lines_.size(); }
  size_t n_columns() const { return columns_.size(); }
  const std::vector<Column>& columns() const { return columns_; }
  std::vector<std::string> column_names() const;
  bool has_column(const std::string& name) const;
  // Throws Error(kNotFound) naming the source and listing the columns it has.
  const Column& column(const std::string& name) const;
  size_t column_index(const std::string& name) const;
  // 1-based line of the file where each row starts (for error messages downstream).
  const std::vector<int64_t>& lines() const { return lines_; }
  int64_t line_of(size_t row) const { return lines_[row]; }
  // Records left out under ErrorPolicy::kSkip.
  const std::vector<SkippedRecord>& skipped() const { return skipped_; }
  // "file.csv line 12" for row `row`.
  std::string where(size_t row) const;

  // The rows `rows` (in that order) as a new table; categorical columns keep their categories.
  Table select_rows(const std::vector<size_t>& rows) const;
  // Adds or replaces a column (must have n_rows() values).
  void set_column(Column column);

 private:
  std::string source_;
  std::vector<Column> columns_;
  std::vector<int64_t> lines_;
  std::vector<SkippedRecord> skipped_;
};

// Builds a typed column from raw field texts (`missing` marks missing values; empty = none).
// `forced` = nullptr infers the type. Throws Error(kInvalidArgument) naming `where(row)` when a
// forced numeric value does not parse.
Column make_column(const std::string& name, std::vector<std::string> raw,
                   std::vector<uint8_t> missing, const ColumnType* forced,
                   size_t max_categories = 1000);

// Reads a CSV file with a header row. RFC 4180: fields may be quoted with '"', quotes inside
// are doubled, quoted fields may hold delimiters and line breaks; CRLF or LF line ends.
// Throws Error(kNotFound) when the file cannot be opened, Error(kInvalidArgument) for an empty
// file, a duplicate or empty header name, ragged rows, empty rows, unterminated quotes and
// text after a closing quote (kFail; kSkip leaves the record out and reports it).
Table read_csv(const std::string& path, const ReadOptions& options = {});
// The same over text in memory; `name` stands for the file in messages.
Table parse_csv(const std::string& text, const std::string& name, const ReadOptions& options = {});

// Reads JSON Lines: one JSON object per line; the columns are the union of the keys in order of
// first appearance; a key absent from a line, or null, is missing. Numbers and strings are kept,
// booleans become "true"/"false", nested arrays and objects their JSON text. A malformed line, a
// line that is not an object, or an empty line is a bad record.
Table read_jsonl(const std::string& path, const ReadOptions& options = {});
Table parse_jsonl(const std::string& text, const std::string& name,
                  const ReadOptions& options = {});

// read_jsonl for ".jsonl" / ".ndjson" / ".json", read_csv for anything else.
Table read_table(const std::string& path, const ReadOptions& options = {});

// A CSV or JSON Lines file read as a stream of tables of at most `chunk_rows` records each, so
// that a file of any length is processed in bounded memory (one chunk and one record at a
// time). The format is chosen as read_table does. Each chunk is parsed by parse_csv /
// parse_jsonl with `options` (types, required columns, error policy): rows, skipped records and
// errors name the file and its lines. Types are inferred per chunk unless forced, so force the
// types of the columns a consumer needs typed. A JSON Lines chunk has the keys its lines hold;
// ReadOptions::required is checked per chunk. Throws as the readers do; the first next() throws
// for a missing file, a folder, or an empty file.
class TableChunks {
 public:
  TableChunks(const std::string& path, const ReadOptions& options, size_t chunk_rows = 4096);
  ~TableChunks();
  TableChunks(const TableChunks&) = delete;
  TableChunks& operator=(const TableChunks&) = delete;
  // The next chunk (rows in file order) into *out; false when the file is done.
  bool next(Table* out);
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::string path_;
  std::unique_ptr<Impl> impl_;
};

// The rows of `a` followed by the rows of `b`, with the columns of `a` (a column `b` lacks is
// missing in its rows; `b`'s extra columns are dropped). Columns keep `a`'s types; throws
// Error(kInvalidArgument) naming `b`'s file and line when a value does not fit a numeric column.
Table concat(const Table& a, const Table& b);

// Row indices of a train / validation / test split.
struct Split {
  std::vector<size_t> train, validation, test;
};

// A seeded random split (the same seed gives the same split on every platform: a Fisher-Yates
// shuffle driven by std::mt19937_64). Fractions must be in [0, 1) with a sum below 1.
Split split_by_seed(size_t n_rows, double validation_fraction, double test_fraction, uint64_t seed);
// A split given by a column whose values are "train", "validation" (or "valid", "val", "dev")
// and "test". Throws Error(kInvalidArgument) naming the line of the first other or missing value.
Split split_by_column(const Table& table, const std::string& column);

}  // namespace candor::data
