// TableChunks: a file read in chunks gives the rows, lines and bad records of the whole-file
// reader, whatever the chunk size.
#include <nlohmann/json.hpp>

#include <fstream>

#include "candor/data.h"
#include "candor/error.h"
#include "test_util.h"

namespace candor::data {
namespace {

using candor::testing::error_of;
using ::testing::HasSubstr;

std::string write(const std::string& name, const std::string& text) {
  const std::string path = testing::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The present values and lines of every row, and the skipped lines, over all chunks (a JSON Lines
// chunk has the keys its lines hold: a column absent from a chunk is missing in its rows).
struct Read {
  std::vector<std::vector<std::string>> rows;  // [row] column=value of the present values
  std::vector<int64_t> lines, skipped;
};

void take(const Table& t, Read* r) {
  for (size_t i = 0; i < t.n_rows(); ++i) {
    std::vector<std::string> row;
    for (const Column& c : t.columns())
      if (!c.is_missing(i)) row.push_back(c.name + "=" + c.raw[i]);
    r->rows.push_back(row);
    r->lines.push_back(t.line_of(i));
  }
  for (const SkippedRecord& s : t.skipped()) r->skipped.push_back(s.line);
}

Read chunked(const std::string& path, const ReadOptions& o, size_t n) {
  Read r;
  TableChunks chunks(path, o, n);
  Table t;
  int guard = 0;
  while (chunks.next(&t) && ++guard < 1000) take(t, &r);
  return r;
}

void expect_same(const std::string& path, const ReadOptions& o) {
  Read whole;
  take(read_table(path, o), &whole);
  for (size_t n : {1, 2, 3, 7, 1000}) {
    Read c = chunked(path, o, n);
    EXPECT_EQ(c.rows, whole.rows) << path << " in chunks of " << n;
    EXPECT_EQ(c.lines, whole.lines) << path << " in chunks of " << n;
    EXPECT_EQ(c.skipped, whole.skipped) << path << " in chunks of " << n;
  }
}

TEST(TableChunks, CsvChunksAreTheWholeFile) {
  // A BOM, a blank line before the header, a quoted field spanning lines, a quote inside an
  // unquoted field, doubled quotes, CRLF, blank lines between records and at the end.
  const std::string path = write(
      "t.csv",
      "\xEF\xBB\xBF\nid,text,x\n1,\"two\nlines, and \"\"quotes\"\"\",3\n2,a\"b,4\r\n\n3,plain,NA\n"
      "4,\"x\",5\n\n\n5,last,6\n\n");
  ReadOptions skip;  // the blank lines between records are bad records
  skip.on_error = ErrorPolicy::kSkip;
  expect_same(path, skip);
  Read r = chunked(path, skip, 2);
  ASSERT_EQ(r.lines, (std::vector<int64_t>{3, 5, 7, 8, 11}));
  EXPECT_EQ(r.skipped, (std::vector<int64_t>{6, 9, 10}));
  EXPECT_EQ(r.rows[0][1], "text=two\nlines, and \"quotes\"");
  EXPECT_EQ(r.rows[1][1], "text=a\"b");
  EXPECT_EQ(r.rows[2].size(), 2u);  // x is NA: missing
}

TEST(TableChunks, BadRecordsNameTheFileLine) {
  const std::string path = write("bad.csv", "a,b\n1,2\n3\n4,5\n6,7,8\n9,10\n");
  ReadOptions skip;
  skip.on_error = ErrorPolicy::kSkip;
  expect_same(path, skip);
  EXPECT_EQ(chunked(path, skip, 2).skipped, (std::vector<int64_t>{3, 5}));
  EXPECT_THAT(error_of([&] { chunked(path, {}, 2); }), HasSubstr("bad.csv line 3"));
  // A forced numeric type, checked in every chunk.
  const std::string num = write("num.csv", "x,y\n1,a\n2,b\nthree,c\n4,d\n");
  ReadOptions forced;
  forced.types["x"] = ColumnType::kNumeric;
  EXPECT_THAT(error_of([&] { chunked(num, forced, 2); }), HasSubstr("num.csv line 4"));
  forced.required = {"z"};
  EXPECT_THAT(error_of([&] { chunked(num, forced, 2); }), HasSubstr("missing column 'z'"));
}

TEST(TableChunks, JsonLinesChunksAreTheWholeFile) {
  const std::string path =
      write("t.jsonl",
            "{\"id\": 1, \"text\": \"a\"}\n\n{\"id\": 2, \"text\": null}\r\n{\"id\": 3}\n[1]\n"
            "{\"id\": 4, \"text\": \"d\"}\n\n");
  ReadOptions skip;
  skip.on_error = ErrorPolicy::kSkip;
  expect_same(path, skip);
  EXPECT_EQ(chunked(path, skip, 1).skipped, (std::vector<int64_t>{2, 5}));
  EXPECT_THAT(error_of([&] { chunked(path, {}, 3); }), HasSubstr("t.jsonl line 2"));
}

TEST(TableChunks, EmptyFilesAndFoldersAreErrors) {
  EXPECT_THAT(error_of([&] { chunked(write("e.csv", "\n\n"), {}, 2); }), HasSubstr("empty file"));
  EXPECT_THAT(error_of([&] { chunked(write("e.jsonl", "\n"), {}, 2); }), HasSubstr("empty file"));
  EXPECT_THAT(error_of([&] { chunked(testing::temp_dir(), {}, 2); }), HasSubstr("is a folder"));
  EXPECT_THAT(error_of([&] { chunked("/nonexistent/x.csv", {}, 2); }), HasSubstr("cannot open"));
  // A header alone: no rows, no error (as read_csv).
  EXPECT_TRUE(chunked(write("h.csv", "a,b\n"), {}, 2).rows.empty());
}

}  // namespace
}  // namespace candor::data

namespace candor::data {
namespace {

// The JSON Lines reader scans flat objects itself (a long string decoded once): every field is
// what a JSON parser reads (strings decoded, escapes and surrogate pairs included; numbers,
// arrays and objects as their JSON text; booleans; null as missing), and what it does not scan
// (duplicate keys, malformed lines) is still read or reported as before.
TEST(JsonLinesScan, FieldsAreWhatAJsonParserReads) {
  const std::vector<std::string> lines = {
      R"({"a": "plain", "b": 1, "c": -2.50, "d": true, "e": false, "f": null})",
      R"(  {"a":"esc \" \\ \/ \b\f\n\r\t end","b":1e3,"c":[1, 2, {"x": "]"}],"d":{"k": [true]}}  )",
      R"({"a": "\u00e9\u4e2d\ud83d\ude00", "b": 12345678901234567890, "c": "", "d": "NA"})",
      R"({"a": "x", "a": "y", "b": 0})",  // a duplicate key: the parser's reading
      R"({})",
      R"({"b": 0.1, "a": "unicode ünïcödé"})",
  };
  std::string text;
  for (const std::string& l : lines) text += l + "\n";
  Table t = parse_jsonl(text, "t.jsonl");
  ASSERT_EQ(t.n_rows(), lines.size());
  for (size_t r = 0; r < lines.size(); ++r) {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(lines[r]);
    for (const Column& c : t.columns()) {
      if (!j.contains(c.name) || j[c.name].is_null()) {
        EXPECT_TRUE(c.is_missing(r)) << "line " << r + 1 << " " << c.name;
        continue;
      }
      const nlohmann::ordered_json& v = j[c.name];
      const std::string want = v.is_string()    ? v.get<std::string>()
                               : v.is_boolean() ? (v.get<bool>() ? "true" : "false")
                                                : v.dump();
      EXPECT_EQ(c.raw[r], want) << "line " << r + 1 << " " << c.name;
      EXPECT_EQ(c.is_missing(r), want.empty() || want == "NA") << "line " << r + 1 << " " << c.name;
    }
  }
  // Malformed lines are reported as the parser reports them.
  for (const std::string bad : {R"({"a": "x",})", R"({"a": 01})", R"({"a": "\x"})",
                                R"({"a": "\ud800"})", R"({"a": "x"} trailing)", "[1, 2]"}) {
    ReadOptions skip;
    skip.on_error = ErrorPolicy::kSkip;
    Table s = parse_jsonl("{\"a\": \"ok\"}\n" + bad + "\n", "b.jsonl", skip);
    EXPECT_EQ(s.n_rows(), 1u) << bad;
    ASSERT_EQ(s.skipped().size(), 1u) << bad;
    EXPECT_EQ(s.skipped()[0].line, 2) << bad;
  }
}

}  // namespace
}  // namespace candor::data
