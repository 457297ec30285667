// read_audit_data: a CSV / JSON Lines file streamed in chunks of records through the readers of
// data.h; only the columns an audit needs are kept, as codes and floats.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <unordered_map>

#include "candor/audit.h"
#include "candor/error.h"

namespace candor::audit {

int64_t CodedColumn::n_missing() const {
  int64_t n = 0;
  for (int32_t c : codes) n += c < 0;
  return n;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Splits a CSV header record into its field names (RFC 4180 quoting).
std::vector<std::string> split_header(const std::string& record, char delim) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < record.size(); ++i) {
    const char c = record[i];
    if (quoted) {
      if (c == '"' && i + 1 < record.size() && record[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == delim) {
      out.emplace_back();
    } else if (c != '\r' && c != '\n') {
      out.back() += c;
    }
  }
  return out;
}

// A dictionary-coding builder for one column.
struct Coder {
  CodedColumn* col;
  std::unordered_map<std::string, int32_t> index;
  int32_t code(const std::string& v) {
    auto it = index.find(v);
    if (it != index.end()) return it->second;
    const int32_t c = static_cast<int32_t>(col->values.size());
    col->values.push_back(v);
    index.emplace(v, c);
    return c;
  }
};

class Reader {
 public:
  Reader(const std::string& path, const AuditColumns& cols, data::ErrorPolicy policy,
         const RowScorer* scorer = nullptr)
      : path_(path), cols_(cols), policy_(policy), scorer_(scorer) {
    out_.source = path;
    out_.label.column = cols.label;
    out_.prediction.column = cols.prediction;
    out_.probability.resize(cols.probability.size());
    for (const std::string& g : cols.groups) {
      out_.groups.emplace_back();
      out_.groups.back().column = g;
    }
    label_.col = &out_.label;
    pred_.col = &out_.prediction;
    groups_.resize(out_.groups.size());
    for (size_t i = 0; i < groups_.size(); ++i) groups_[i].col = &out_.groups[i];
    if (scorer_) {
      out_.prediction.column = "model";
      out_.probability.resize(scorer_->classes.size());
      for (const std::string& c : scorer_->classes) pred_code_.push_back(pred_.code(c));
    }
  }

  void bad(int64_t line, const std::string& reason) {
    if (policy_ == data::ErrorPolicy::kFail)
      throw Error(ErrorCode::kInvalidArgument, path_ + " line " + std::to_string(line) + ": " + reason,
                  "fix the record, or pass --on-error skip to leave bad records out (they are "
                  "counted in the report)");
    ++out_.n_skipped;
    if (out_.skipped.size() < 100) out_.skipped.push_back({line, reason});
  }

  // Takes the rows of one parsed chunk; `line_of(L)` maps a chunk line to a file line.
  template <typename LineMap>
  void take(const data::Table& t, LineMap line_of) {
    for (const data::SkippedRecord& s : t.skipped()) bad(line_of(s.line), s.reason);
    auto find = [&](const std::string& name) -> const data::Column* {
      return t.has_column(name) ? &t.column(name) : nullptr;
    };
    const data::Column* label = find(cols_.label);
    const data::Column* pred = cols_.prediction.empty() ? nullptr : find(cols_.prediction);
    std::vector<const data::Column*> probs, groups;
    for (const std::string& p : cols_.probability) probs.push_back(find(p));
    for (const std::string& g : cols_.groups) groups.push_back(find(g));
    std::vector<float> pv(probs.size());
    std::vector<size_t> kept;
    std::vector<const data::Column*> model_cols;
    if (scorer_)
      for (const std::string& c : scorer_->columns) model_cols.push_back(find(c));
    for (size_t r = 0; r < t.n_rows(); ++r) {
      const int64_t line = line_of(t.line_of(r));
      if (!label || label->is_missing(r)) {
        bad(line, "column '" + cols_.label + "': the label is missing");
        continue;
      }
      if (!cols_.prediction.empty() && (!pred || pred->is_missing(r))) {
        bad(line, "column '" + cols_.prediction + "': the prediction is missing");
        continue;
      }
      bool ok = true;
      for (size_t j = 0; j < probs.size() && ok; ++j) {
        const std::string& name = cols_.probability[j];
        if (!probs[j] || probs[j]->is_missing(r)) {
          bad(line, "column '" + name + "': the probability is missing");
          ok = false;
          break;
        }
        const std::string& s = probs[j]->raw[r];
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0' || !std::isfinite(v)) {
          bad(line, "column '" + name + "': '" + s + "' is not a number");
          ok = false;
        } else if (v < 0 || v > 1) {
          bad(line, "column '" + name + "': probability " + s + " is outside [0, 1]");
          ok = false;
        } else {
          pv[j] = static_cast<float>(v);
        }
      }
      if (!ok) continue;
      if (scorer_) {
        for (size_t j = 0; j < model_cols.size() && ok; ++j)
          if (!model_cols[j] || model_cols[j]->is_missing(r)) {
            bad(line, "column '" + scorer_->columns[j] + "': the value the model reads is missing");
            ok = false;
          }
        if (ok) kept.push_back(r);
        continue;
      }
      out_.label.codes.push_back(label_.code(label->raw[r]));
      if (pred) out_.prediction.codes.push_back(pred_.code(pred->raw[r]));
      for (size_t j = 0; j < probs.size(); ++j) out_.probability[j].push_back(pv[j]);
      for (size_t g = 0; g < groups.size(); ++g) {
        const data::Column* c = groups[g];
        out_.groups[g].codes.push_back(!c || c->is_missing(r) ? -1 : groups_[g].code(c->raw[r]));
      }
      ++out_.n_rows;
    }
    if (scorer_ && !kept.empty()) take_scored(t, kept, label, groups, line_of);
  }

  // The kept rows of a chunk, scored by the model.
  template <typename LineMap>
  void take_scored(const data::Table& t, const std::vector<size_t>& kept, const data::Column* label,
                   const std::vector<const data::Column*>& groups, LineMap line_of) {
    const std::vector<std::vector<double>> p = scorer_->score(t, kept);
    const size_t k = scorer_->classes.size();
    if (p.size() != kept.size())
      throw Error(ErrorCode::kInternal,
                  "the model scored " + std::to_string(p.size()) + " rows of " + std::to_string(kept.size()),
                  "report this as a bug");
    for (size_t i = 0; i < kept.size(); ++i) {
      const size_t r = kept[i];
      if (p[i].size() != k)
        throw Error(ErrorCode::kInternal, "the model gave " + std::to_string(p[i].size()) +
                                              " probabilities for " + std::to_string(k) + " classes",
                    "report this as a bug");
      size_t best = 0;
      for (size_t c = 0; c < k; ++c) {
        if (!(p[i][c] >= 0 && p[i][c] <= 1))
          throw Error(ErrorCode::kInvalidArgument,
                      path_ + " line " + std::to_string(line_of(t.line_of(r))) + ": the model gave probability " +
                          std::to_string(p[i][c]) + " for class '" + scorer_->classes[c] + "'",
                      "check the model: its probabilities must lie in [0, 1]");
        if (p[i][c] > p[i][best]) best = c;
      }
      out_.label.codes.push_back(label_.code(label->raw[r]));
      out_.prediction.codes.push_back(pred_code_[best]);
      for (size_t c = 0; c < k; ++c) out_.probability[c].push_back(static_cast<float>(p[i][c]));
      for (size_t g = 0; g < groups.size(); ++g) {
        const data::Column* c = groups[g];
        out_.groups[g].codes.push_back(!c || c->is_missing(r) ? -1 : groups_[g].code(c->raw[r]));
      }
      ++out_.n_rows;
    }
  }

  void check_columns(const std::vector<std::string>& header) {
    std::vector<std::string> need = {cols_.label};
    if (!cols_.prediction.empty()) need.push_back(cols_.prediction);
    for (const std::string& p : cols_.probability) need.push_back(p);
    for (const std::string& g : cols_.groups) need.push_back(g);
    if (scorer_)
      for (const std::string& c : scorer_->columns) need.push_back(c);
    for (const std::string& n : need) {
      bool found = false;
      for (const std::string& h : header) found = found || h == n;
      if (!found)
        throw Error(ErrorCode::kNotFound,
                    path_ + ": missing column '" + n + "' (the columns are: " + join_names(header) + ")",
                    "name a column the file has");
    }
  }

  AuditData finish() {
    if (out_.n_rows == 0)
      throw Error(ErrorCode::kInvalidArgument,
                  path_ + ": no rows to audit" +
                      (out_.n_skipped ? " (all " + std::to_string(out_.n_skipped) +
                                            " records were bad; the first: line " +
                                            std::to_string(out_.skipped[0].line) + ": " +
                                            out_.skipped[0].reason + ")"
                                      : std::string()),
                  "give a file with a header row and at least one record");
    return std::move(out_);
  }

  const std::string& path() const { return path_; }
  bool scored() const { return scorer_ != nullptr; }

 private:
  std::string path_;
  AuditColumns cols_;
  data::ErrorPolicy policy_;
  const RowScorer* scorer_ = nullptr;
  AuditData out_;
  Coder label_, pred_;
  std::vector<int32_t> pred_code_;  // class index -> prediction code
  std::vector<Coder> groups_;
};

std::string read_record(std::istream& in, int64_t* lines) {
  std::string record, line;
  bool quoted = false;
  while (std::getline(in, line)) {
    ++*lines;
    for (char c : line)
      if (c == '"') quoted = !quoted;
    record += line;
    record += '\n';
    if (!quoted) break;
  }
  return record;
}

AuditData read_csv_chunks(std::istream& in, Reader& reader, data::ErrorPolicy, size_t chunk_rows) {
  int64_t line = 0;
  const std::string header = read_record(in, &line);
  if (header.empty() || header == "\n" || header == "\r\n")
    throw Error(ErrorCode::kInvalidArgument, reader.path() + ": the file is empty (no header row)",
                "give a CSV file with a header row naming the columns");
  const int64_t header_lines = line;
  const std::vector<std::string> names = split_header(header, ',');
  reader.check_columns(names);
  data::ReadOptions ro;
  ro.on_error = data::ErrorPolicy::kSkip;
  if (!reader.scored())
    for (const std::string& n : names) ro.types[n] = data::ColumnType::kText;
  std::string chunk;
  size_t in_chunk = 0;
  int64_t chunk_first = line + 1;
  auto flush = [&] {
    if (in_chunk == 0) return;
    data::Table t = data::parse_csv(header + chunk, reader.path(), ro);
    const int64_t base = chunk_first - (header_lines + 1);
    reader.take(t, [base](int64_t l) { return l + base; });
    chunk.clear();
    in_chunk = 0;
  };
  while (true) {
    if (in_chunk == 0) chunk_first = line + 1;
    std::string rec = read_record(in, &line);
    if (rec.empty()) break;
    chunk += rec;
    if (++in_chunk >= chunk_rows) flush();
  }
  flush();
  return reader.finish();
}

AuditData read_jsonl_chunks(std::istream& in, Reader& reader, size_t chunk_rows) {
  data::ReadOptions ro;
  ro.on_error = data::ErrorPolicy::kSkip;
  std::string chunk, line;
  size_t in_chunk = 0;
  int64_t lines = 0, chunk_first = 1;
  bool any = false;
  auto flush = [&] {
    if (in_chunk == 0) return;
    data::Table t = data::parse_jsonl(chunk, reader.path(), ro);
    const int64_t base = chunk_first - 1;
    reader.take(t, [base](int64_t l) { return l + base; });
    chunk.clear();
    in_chunk = 0;
  };
  while (std::getline(in, line)) {
    if (in_chunk == 0) chunk_first = lines + 1;
    ++lines;
    any = any || !line.empty();
    chunk += line;
    chunk += '\n';
    if (++in_chunk >= chunk_rows) flush();
  }
  if (!any)
    throw Error(ErrorCode::kInvalidArgument, reader.path() + ": the file is empty",
                "give a JSON Lines file with one object a line");
  flush();
  return reader.finish();
}

AuditData read_file(const std::string& path, const AuditColumns& columns, data::ErrorPolicy on_error,
                    size_t chunk_rows, const RowScorer* scorer) {
  if (columns.label.empty())
    throw Error(ErrorCode::kInvalidArgument, "no label column given", "pass --label COL");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::kNotFound, path + ": cannot open the file", "check the --data path");
  if (chunk_rows == 0) chunk_rows = 65536;
  Reader reader(path, columns, on_error, scorer);
  if (ends_with(path, ".jsonl") || ends_with(path, ".ndjson") || ends_with(path, ".json"))
    return read_jsonl_chunks(in, reader, chunk_rows);
  return read_csv_chunks(in, reader, on_error, chunk_rows);
}

}  // namespace

AuditData read_audit_data(const std::string& path, const AuditColumns& columns, const RowScorer& scorer,
                          data::ErrorPolicy on_error, size_t chunk_rows) {
  if (!columns.prediction.empty() || !columns.probability.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "a model under audit makes the predictions: --prediction / --probability cannot be given with it",
                "drop --prediction and --probability, or drop --model");
  if (scorer.classes.size() < 2 || !scorer.score)
    throw Error(ErrorCode::kInvalidArgument, "the model under audit has fewer than two classes",
                "audit a classifier (two or more classes)");
  return read_file(path, columns, on_error, chunk_rows, &scorer);
}

void relabel(CodedColumn* column, const std::map<std::string, std::string>& map) {
  std::vector<std::string> values;
  std::vector<int32_t> remap(column->values.size());
  for (size_t i = 0; i < column->values.size(); ++i) {
    auto it = map.find(column->values[i]);
    const std::string& v = it == map.end() ? column->values[i] : it->second;
    auto at = std::find(values.begin(), values.end(), v);
    remap[i] = static_cast<int32_t>(at - values.begin());
    if (at == values.end()) values.push_back(v);
  }
  for (int32_t& c : column->codes)
    if (c >= 0) c = remap[c];
  column->values = std::move(values);
}

AuditData read_audit_data(const std::string& path, const AuditColumns& columns,
                          data::ErrorPolicy on_error, size_t chunk_rows) {
  return read_file(path, columns, on_error, chunk_rows, nullptr);
}

}  // namespace candor::audit
