// CSV (RFC 4180) and JSON Lines readers.
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "candor/data.h"
#include "candor/error.h"
#include "candor/utf8.h"
#include "data/internal.h"

namespace candor::data {

namespace {

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(ErrorCode::kInvalidArgument, "'" + path + "' is a folder, not a data file",
                "give a CSV or JSON Lines file");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::kNotFound, "cannot open data file '" + path + "'",
                "check the path and its permissions");
  // One allocation of the file's size: a stream copy grows its buffer by doubling and then
  // copies it again (about 3x the file at the peak).
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size < 0) {  // not seekable (a pipe): read it as a stream
    in.clear();
    in.seekg(0);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  in.seekg(0);
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), size);
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

// "not valid UTF-8 (byte 0xFF at offset 4 of the field)" for a text that is not UTF-8.
std::string utf8_problem(std::string_view s, size_t at, const std::string& of) {
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02X", static_cast<unsigned char>(s[at]));
  return "not valid UTF-8 (byte " + std::string(hex) + " at offset " + std::to_string(at) +
         " of " + of + ")";
}

const char* kUtf8Hint =
    "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or read with the error policy "
    "'skip' to leave such records out (they are listed)";

// Rows collected by a reader before typing: for each row its fields (one per header column),
// which are missing, and the line where it starts.
struct Collected {
  std::string name;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> fields;  // [column][row]
  std::vector<std::vector<uint8_t>> missing;     // [column][row]
  std::vector<int64_t> lines;
  std::vector<SkippedRecord> skipped;
};

class BadRecords {
 public:
  BadRecords(const std::string& name, ErrorPolicy policy, std::vector<SkippedRecord>* out)
      : name_(name), policy_(policy), out_(out) {}
  void operator()(int64_t line, const std::string& reason, const std::string& hint = {}) const {
    if (policy_ == ErrorPolicy::kFail)
      throw Error(ErrorCode::kInvalidArgument,
                  name_ + " line " + std::to_string(line) + ": " + reason,
                  hint.empty() ? "fix the record, or read with the error policy 'skip' to leave "
                                 "bad records out (they are listed in the report)"
                               : hint);
    out_->push_back({line, reason});
  }

 private:
  const std::string& name_;
  ErrorPolicy policy_;
  std::vector<SkippedRecord>* out_;
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

bool is_missing_text(const std::string& s, const ReadOptions& o) {
  for (const std::string& m : o.missing_values)
    if (s == m) return true;
  return false;
}

// Checks the header against the options, types the columns and builds the table. Rows with a
// value that does not parse under a forced numeric type are bad records.
Table finish(Collected c, const ReadOptions& o) {
  for (const std::string& r : o.required) {
    bool found = false;
    for (const std::string& h : c.header) found = found || h == r;
    if (!found)
      throw Error(ErrorCode::kNotFound,
                  c.name + ": missing column '" + r + "' (the columns are: " + join(c.header) + ")",
                  "name a column the file has");
  }
  std::vector<const ColumnType*> forced(c.header.size(), nullptr);
  for (const auto& [col, type] : o.types) {
    bool found = false;
    for (size_t j = 0; j < c.header.size(); ++j) {
      if (c.header[j] == col) {
        forced[j] = &type;
        found = true;
      }
    }
    if (!found)
      throw Error(ErrorCode::kNotFound,
                  c.name + ": a type is given for column '" + col +
                      "', which the file lacks (the columns are: " + join(c.header) + ")",
                  "name a column the file has");
  }
  // Forced numeric columns: rows with a non-number are bad records.
  const size_t n = c.lines.size();
  std::vector<uint8_t> keep(n, 1);
  BadRecords bad(c.name, o.on_error, &c.skipped);
  bool dropped = false;
  for (size_t j = 0; j < c.header.size(); ++j) {
    if (!forced[j] || *forced[j] != ColumnType::kNumeric) continue;
    for (size_t r = 0; r < n; ++r) {
      double v;
      if (keep[r] && !c.missing[j][r] && !internal::parse_number(c.fields[j][r], &v)) {
        bad(c.lines[r], "column '" + c.header[j] + "': '" + c.fields[j][r] + "' is not a number",
            "the column is declared numeric; fix the value or declare it categorical or text");
        keep[r] = 0;
        dropped = true;
      }
    }
  }
  std::vector<Column> columns;
  std::vector<int64_t> lines;
  for (size_t r = 0; r < n; ++r)
    if (keep[r]) lines.push_back(c.lines[r]);
  for (size_t j = 0; j < c.header.size(); ++j) {
    std::vector<std::string> raw;
    std::vector<uint8_t> miss;
    if (dropped) {
      for (size_t r = 0; r < n; ++r) {
        if (!keep[r]) continue;
        raw.push_back(std::move(c.fields[j][r]));
        miss.push_back(c.missing[j][r]);
      }
    } else {
      raw = std::move(c.fields[j]);
      miss = std::move(c.missing[j]);
    }
    columns.push_back(
        make_column(c.header[j], std::move(raw), std::move(miss), forced[j], o.max_categories));
  }
  std::sort(c.skipped.begin(), c.skipped.end(),
            [](const SkippedRecord& a, const SkippedRecord& b) { return a.line < b.line; });
  return Table(c.name, std::move(columns), std::move(lines), std::move(c.skipped));
}

// One CSV record as read.
struct CsvRecord {
  int64_t line = 0;
  std::vector<std::string> fields;
  bool blank = false;
  std::string error;  // set when the record is malformed
};

// Reads the record starting at `pos`; advances `pos` and `line` past it. False at the end.
bool next_csv_record(const std::string& t, size_t& pos, int64_t& line, char delim, CsvRecord& rec) {
  if (pos >= t.size()) return false;
  rec = CsvRecord();
  rec.line = line;
  auto at_eol = [&](size_t p) {
    return p >= t.size() || t[p] == '\n' || (t[p] == '\r' && p + 1 < t.size() && t[p + 1] == '\n');
  };
  auto skip_eol = [&]() {
    if (pos < t.size() && t[pos] == '\r') ++pos;
    if (pos < t.size() && t[pos] == '\n') {
      ++pos;
      ++line;
    }
  };
  if (at_eol(pos)) {
    rec.blank = true;
    skip_eol();
    return true;
  }
  while (true) {
    std::string field;
    if (t[pos] == '"') {
      const int64_t start_line = line;
      ++pos;
      bool closed = false, doubled = false;
      const size_t start = pos;
      size_t stop = t.size();
      while (pos < t.size()) {
        char ch = t[pos];
        if (ch == '"') {
          if (pos + 1 < t.size() && t[pos + 1] == '"') {
            doubled = true;
            pos += 2;
            continue;
          }
          stop = pos++;
          closed = true;
          break;
        }
        if (ch == '\n') ++line;
        ++pos;
      }
      // Copied once at its final size (appending a character at a time doubles the peak).
      field.assign(t, start, stop - start);
      if (doubled) {
        size_t w = 0;
        for (size_t r = 0; r < field.size(); ++r, ++w) {
          field[w] = field[r];
          if (field[r] == '"') ++r;  // the second quote of a doubled pair
        }
        field.resize(w);
      }
      if (!closed) {
        rec.error = "unterminated quoted field (column " + std::to_string(rec.fields.size() + 1) +
                    ", opened on line " + std::to_string(start_line) +
                    "); the rest of the file is part of it";
        return true;
      }
      if (!(at_eol(pos) || t[pos] == delim)) {
        rec.error = "text after the closing quote of column " +
                    std::to_string(rec.fields.size() + 1) +
                    " (a quote inside a quoted field must be doubled)";
        while (!at_eol(pos)) ++pos;
        skip_eol();
        return true;
      }
    } else {
      const size_t start = pos;
      while (!at_eol(pos) && t[pos] != delim) ++pos;
      field.assign(t, start, pos - start);
    }
    rec.fields.push_back(std::move(field));
    if (pos < t.size() && t[pos] == delim) {
      ++pos;
      if (at_eol(pos)) {  // trailing delimiter: one more empty field
        rec.fields.emplace_back();
        skip_eol();
        return true;
      }
      continue;
    }
    skip_eol();
    return true;
  }
}

// One value of a JSON Lines record as the table keeps it: a string's text, another value's JSON
// text (booleans "true"/"false"), or null.
struct JsonField {
  std::string text;
  bool null = false, is_string = false;
};
using JsonRecord = std::vector<std::pair<std::string, JsonField>>;

bool json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the JSON string starting at s[*i] == '"' into *out (allocated once, at most the size of
// its source text) and moves *i past the closing quote. False when it is not a valid string.
bool scan_json_string(std::string_view s, size_t* i, std::string* out) {
  size_t j = *i + 1;
  bool escaped = false;
  for (; j < s.size() && s[j] != '"'; ++j) {
    if (static_cast<unsigned char>(s[j]) < 0x20) return false;
    if (s[j] == '\\') {
      escaped = true;
      ++j;
    }
  }
  if (j >= s.size()) return false;
  const std::string_view body = s.substr(*i + 1, j - *i - 1);
  *i = j + 1;
  if (!escaped) {
    out->assign(body.data(), body.size());
    return true;
  }
  out->clear();
  out->reserve(body.size());
  auto hex4 = [&](size_t at, uint32_t* v) {
    if (at + 4 > body.size()) return false;
    *v = 0;
    for (size_t k = 0; k < 4; ++k) {
      const int h = hex_value(body[at + k]);
      if (h < 0) return false;
      *v = *v * 16 + static_cast<uint32_t>(h);
    }
    return true;
  };
  for (size_t k = 0; k < body.size(); ++k) {
    const char c = body[k];
    if (c != '\\') {
      out->push_back(c);
      continue;
    }
    if (++k >= body.size()) return false;
    switch (body[k]) {
      case '"':
        out->push_back('"');
        break;
      case '\\':
        out->push_back('\\');
        break;
      case '/':
        out->push_back('/');
        break;
      case 'b':
        out->push_back('\b');
        break;
      case 'f':
        out->push_back('\f');
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'u': {
        uint32_t cp = 0;
        if (!hex4(k + 1, &cp)) return false;
        k += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a lone low surrogate
        if (cp >= 0xD800 && cp <= 0xDBFF) {              // a pair
          uint32_t lo = 0;
          if (k + 2 >= body.size() || body[k + 1] != '\\' || body[k + 2] != 'u' ||
              !hex4(k + 3, &lo) || lo < 0xDC00 || lo > 0xDFFF)
            return false;
          k += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        utf8::append(static_cast<char32_t>(cp), out);
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

// The end of the array or object starting at s[i] ('[' or '{'), strings skipped; npos if none.
size_t json_nested_end(std::string_view s, size_t i) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      for (++i; i < s.size() && s[i] != '"'; ++i)
        if (s[i] == '\\') ++i;
      if (i >= s.size()) return std::string::npos;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string::npos;
}

// Reads a JSON Lines record that is a flat JSON object straight into its fields: string values
// are decoded once into strings of their final size (a general JSON parser holds a long string
// twice: its token buffer, grown by doubling, and the value). Numbers and nested values are
// parsed by nlohmann (they are short) and kept as its JSON text. False for anything else (not an
// object, malformed, a duplicate key): the caller then parses the line with nlohmann, which says
// what is wrong.
bool scan_json_object(std::string_view s, JsonRecord* out) {
  out->clear();
  size_t i = 0;
  auto ws = [&] {
    while (i < s.size() && json_space(s[i])) ++i;
  };
  ws();
  if (i >= s.size() || s[i] != '{') return false;
  ++i;
  ws();
  if (i < s.size() && s[i] == '}') {
    ++i;
    ws();
    return i == s.size();
  }
  while (true) {
    ws();
    if (i >= s.size() || s[i] != '"') return false;
    std::string key;
    if (!scan_json_string(s, &i, &key)) return false;
    for (const auto& [k, v] : *out)
      if (k == key) return false;
    ws();
    if (i >= s.size() || s[i] != ':') return false;
    ++i;
    ws();
    if (i >= s.size()) return false;
    JsonField f;
    const char c = s[i];
    if (c == '"') {
      f.is_string = true;
      if (!scan_json_string(s, &i, &f.text)) return false;
    } else if (s.compare(i, 4, "true") == 0) {
      f.text = "true";
      i += 4;
    } else if (s.compare(i, 5, "false") == 0) {
      f.text = "false";
      i += 5;
    } else if (s.compare(i, 4, "null") == 0) {
      f.null = true;
      i += 4;
    } else {
      size_t end = i;
      if (c == '[' || c == '{') {
        end = json_nested_end(s, i);
        if (end == std::string::npos) return false;
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        while (end < s.size() &&
               (std::isdigit(static_cast<unsigned char>(s[end])) || s[end] == '-' ||
                s[end] == '+' || s[end] == '.' || s[end] == 'e' || s[end] == 'E'))
          ++end;
      } else {
        return false;
      }
      nlohmann::ordered_json v =
          nlohmann::ordered_json::parse(s.begin() + i, s.begin() + end, nullptr, false);
      if (v.is_discarded()) return false;
      f.text = v.dump();
      i = end;
    }
    out->emplace_back(std::move(key), std::move(f));
    ws();
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    if (i < s.size() && s[i] == '}') {
      ++i;
      ws();
      return i == s.size();
    }
    return false;
  }
}

}  // namespace

Table parse_csv(const std::string& text_in, const std::string& name, const ReadOptions& o) {
  size_t pos = 0;
  if (text_in.compare(0, 3, "\xEF\xBB\xBF") == 0) pos = 3;  // UTF-8 byte-order mark
  const std::string& t = text_in;
  int64_t line = o.first_line;
  CsvRecord rec;
  Collected c;
  c.name = name;
  // Header: the first non-blank record.
  bool have_header = false;
  while (next_csv_record(t, pos, line, o.delimiter, rec)) {
    if (rec.blank) continue;
    if (!rec.error.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  name + " line " + std::to_string(rec.line) + " (header): " + rec.error);
    have_header = true;
    break;
  }
  if (!have_header)
    throw Error(ErrorCode::kInvalidArgument, name + ": empty file (no header row)",
                "a CSV file needs a header row naming its columns");
  c.header = rec.fields;
  for (size_t j = 0; j < c.header.size(); ++j) {
    const size_t at = utf8::invalid_at(c.header[j]);
    if (at != std::string::npos)
      throw Error(ErrorCode::kInvalidArgument,
                  name + " line " + std::to_string(rec.line) + ": header column " +
                      std::to_string(j + 1) + " is " + utf8_problem(c.header[j], at, "the name"),
                  "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)");
    if (c.header[j].empty())
      throw Error(ErrorCode::kInvalidArgument, name + " line " + std::to_string(rec.line) +
                                                   ": header column " + std::to_string(j + 1) +
                                                   " has no name");
    for (size_t k = 0; k < j; ++k)
      if (c.header[k] == c.header[j])
        throw Error(ErrorCode::kInvalidArgument, name + " line " + std::to_string(rec.line) +
                                                     ": duplicate column name '" + c.header[j] +
                                                     "'");
  }
  const size_t m = c.header.size();
  c.fields.resize(m);
  c.missing.resize(m);
  BadRecords bad(name, o.on_error, &c.skipped);
  std::vector<int64_t> pending_blank;  // blank lines: errors only when data follows them
  while (next_csv_record(t, pos, line, o.delimiter, rec)) {
    if (rec.blank) {
      if (m == 1) {
        rec.fields.assign(1, std::string());
      } else {
        pending_blank.push_back(rec.line);
        continue;
      }
    }
    for (int64_t b : pending_blank) bad(b, "empty row");
    pending_blank.clear();
    if (!rec.error.empty()) {
      bad(rec.line, rec.error);
      continue;
    }
    if (rec.fields.size() != m) {
      bad(rec.line,
          std::to_string(rec.fields.size()) + " fields, the header has " + std::to_string(m) +
              " (" + join(c.header) + ")",
          "every row needs one field per header column; quote fields that contain '" +
              std::string(1, o.delimiter) + "'");
      continue;
    }
    bool utf8_ok = true;
    for (size_t j = 0; j < m && utf8_ok; ++j) {
      const size_t at = utf8::invalid_at(rec.fields[j]);
      if (at == std::string::npos) continue;
      bad(rec.line, "column '" + c.header[j] + "': " + utf8_problem(rec.fields[j], at, "the field"),
          kUtf8Hint);
      utf8_ok = false;
    }
    if (!utf8_ok) continue;
    for (size_t j = 0; j < m; ++j) {
      c.missing[j].push_back(is_missing_text(rec.fields[j], o));
      c.fields[j].push_back(std::move(rec.fields[j]));
    }
    c.lines.push_back(rec.line);
  }
  return finish(std::move(c), o);
}

Table read_csv(const std::string& path, const ReadOptions& options) {
  return parse_csv(read_file(path), path, options);
}

Table parse_jsonl(const std::string& t, const std::string& name, const ReadOptions& o) {
  Collected c;
  c.name = name;
  std::unordered_map<std::string, size_t> index;
  BadRecords bad(name, o.on_error, &c.skipped);
  std::vector<int64_t> pending_blank;
  size_t pos = 0;
  if (t.compare(0, 3, "\xEF\xBB\xBF") == 0) pos = 3;
  int64_t line = o.first_line - 1;
  size_t rows = 0;
  while (pos < t.size()) {
    size_t end = t.find('\n', pos);
    if (end == std::string::npos) end = t.size();
    ++line;
    std::string_view text(t.data() + pos, end - pos);  // no copy of the line
    pos = end + 1;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.find_first_not_of(" \t") == std::string::npos) {
      pending_blank.push_back(line);
      continue;
    }
    for (int64_t b : pending_blank) bad(b, "empty line");
    pending_blank.clear();
    const size_t bad_at = utf8::invalid_at(text);
    if (bad_at != std::string::npos) {
      bad(line, utf8_problem(text, bad_at, "the line"), kUtf8Hint);
      continue;
    }
    JsonRecord record;
    if (!scan_json_object(text, &record)) {
      // Not a flat object read by the scanner: nlohmann parses it and says what is wrong.
      nlohmann::ordered_json j;
      try {
        j = nlohmann::ordered_json::parse(text.begin(), text.end());
      } catch (const std::exception& e) {
        std::string what = e.what();
        bad(line, "malformed JSON: " + what, "each line must hold one JSON object");
        continue;
      }
      if (!j.is_object()) {
        bad(line, std::string("a JSON ") + j.type_name() + ", not an object",
            "each line must hold one JSON object");
        continue;
      }
      record.clear();
      for (auto it = j.begin(); it != j.end(); ++it) {
        JsonField f;
        nlohmann::ordered_json& v = it.value();
        if (v.is_null()) {
          f.null = true;
        } else if (v.is_string()) {
          f.is_string = true;
          f.text = std::move(v.get_ref<std::string&>());  // moved out, not copied
        } else if (v.is_boolean()) {
          f.text = v.get<bool>() ? "true" : "false";
        } else {
          f.text = v.dump();
        }
        record.emplace_back(it.key(), std::move(f));
      }
    }
    for (auto& [key, f] : record) {
      auto found = index.find(key);
      size_t col;
      if (found == index.end()) {
        col = c.header.size();
        index.emplace(key, col);
        c.header.push_back(key);
        c.fields.emplace_back(rows, std::string());
        c.missing.emplace_back(rows, 1);
      } else {
        col = found->second;
      }
      const bool miss = f.null || (f.is_string && is_missing_text(f.text, o));
      c.fields[col].push_back(std::move(f.text));
      c.missing[col].push_back(miss);
    }
    ++rows;
    for (size_t col = 0; col < c.header.size(); ++col) {
      if (c.fields[col].size() < rows) {
        c.fields[col].emplace_back();
        c.missing[col].push_back(1);
      }
    }
    c.lines.push_back(line);
  }
  if (c.lines.empty() && c.skipped.empty())
    throw Error(ErrorCode::kInvalidArgument, name + ": empty file (no JSON lines)");
  return finish(std::move(c), o);
}

Table read_jsonl(const std::string& path, const ReadOptions& options) {
  return parse_jsonl(read_file(path), path, options);
}

Table read_table(const std::string& path, const ReadOptions& options) {
  auto ends = [&](const std::string& suffix) {
    return path.size() >= suffix.size() &&
           path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends(".jsonl") || ends(".ndjson") || ends(".json")) return read_jsonl(path, options);
  return read_csv(path, options);
}

}  // namespace candor::data
