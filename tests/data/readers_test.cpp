// CSV / JSONL readers, typing, error policy and splits.
#include <cmath>
#include <fstream>

#include "candor/data.h"
#include "candor/error.h"
#include "test_util.h"

namespace candor::data {
namespace {

// Runs `f`, expects a candor::Error whose message contains every string in `parts`.
template <typename F>
void expect_error(F f, std::initializer_list<const char*> parts,
                  ErrorCode code = ErrorCode::kInvalidArgument) {
  try {
    f();
    FAIL() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const char* p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message '" << e.what() << "' lacks '" << p << "'";
  }
}

TEST(Readers, TextThatIsNotUtf8IsABadRecordNamingTheLine) {
  const std::string csv = "text,label\nfine,1\nbad \xff byte,0\nover\xc0\xaflong,1\nok \xc3\xa9,0\n";
  expect_error([&] { parse_csv(csv, "t.csv"); },
               {"t.csv line 3", "column 'text'", "not valid UTF-8", "0xFF"});
  ReadOptions skip;
  skip.on_error = ErrorPolicy::kSkip;
  Table t = parse_csv(csv, "t.csv", skip);
  ASSERT_EQ(t.n_rows(), 2u);  // "fine" and the well-formed "ok é"
  ASSERT_EQ(t.skipped().size(), 2u);
  EXPECT_EQ(t.skipped()[0].line, 3);
  EXPECT_EQ(t.skipped()[1].line, 4);  // an overlong form is not UTF-8 either
  expect_error([&] { parse_csv("te\xffxt,label\na,1\n", "h.csv"); },
               {"h.csv line 1", "header column 1", "not valid UTF-8"});
  const std::string jsonl = "{\"text\": \"a\"}\n{\"text\": \"b\xfe\"}\n";
  expect_error([&] { parse_jsonl(jsonl, "t.jsonl"); }, {"t.jsonl line 2", "not valid UTF-8"});
  EXPECT_EQ(parse_jsonl(jsonl, "t.jsonl", skip).n_rows(), 1u);
}

TEST(Readers, AFolderIsNotADataFile) {
  const std::string dir = testing::temp_dir();
  expect_error([&] { read_table(dir); }, {"is a folder, not a data file"});
  expect_error([&] { read_table(dir + ".jsonl"); }, {"cannot open"}, ErrorCode::kNotFound);
}

TEST(Csv, QuotingAndTypes) {
  const std::string text =
      "id,name,score,comment\r\n"
      "1,\"Smith, John\",3.5,\"said \"\"hi\"\"\"\r\n"
      "2,Ann,,\"two\nlines\"\r\n"
      "3,Ann,-1e2,\r\n";
  Table t = parse_csv(text, "mem.csv");
  ASSERT_EQ(t.n_rows(), 3u);
  ASSERT_EQ(t.n_columns(), 4u);
  EXPECT_EQ(t.column("name").raw[0], "Smith, John");
  EXPECT_EQ(t.column("comment").raw[0], "said \"hi\"");
  EXPECT_EQ(t.column("comment").raw[1], "two\nlines");
  EXPECT_TRUE(t.column("comment").is_missing(2));
  EXPECT_EQ(t.column("id").type, ColumnType::kNumeric);
  EXPECT_EQ(t.column("score").type, ColumnType::kNumeric);
  EXPECT_TRUE(std::isnan(t.column("score").numeric[1]));
  EXPECT_DOUBLE_EQ(t.column("score").numeric[2], -100.0);
  EXPECT_EQ(t.column("name").type, ColumnType::kCategorical);
  EXPECT_EQ(t.column("name").categories.size(), 2u);
  EXPECT_EQ(t.column("name").codes[2], 1);
  // Line numbers are where each record starts; the quoted line break counts.
  EXPECT_EQ(t.line_of(0), 2);
  EXPECT_EQ(t.line_of(1), 3);
  EXPECT_EQ(t.line_of(2), 5);
}

TEST(Csv, TypeOverrideAndInference) {
  std::string text = "code,label\n";
  for (int i = 0; i < 300; ++i) text += std::to_string(i % 3) + ",word" + std::to_string(i) + "\n";
  ReadOptions o;
  o.types["code"] = ColumnType::kCategorical;
  Table t = parse_csv(text, "mem.csv", o);
  EXPECT_EQ(t.column("code").type, ColumnType::kCategorical);
  EXPECT_EQ(t.column("code").categories, (std::vector<std::string>{"0", "1", "2"}));
  // 300 distinct strings over 300 rows: free text.
  EXPECT_EQ(t.column("label").type, ColumnType::kText);
  o.types.clear();
  o.types["label"] = ColumnType::kNumeric;
  expect_error([&] { parse_csv(text, "mem.csv", o); }, {"mem.csv line 2", "'label'", "word0"});
  o.on_error = ErrorPolicy::kSkip;
  Table skipped = parse_csv(text, "mem.csv", o);
  EXPECT_EQ(skipped.n_rows(), 0u);
  EXPECT_EQ(skipped.skipped().size(), 300u);
  o.types.clear();
  o.types["nope"] = ColumnType::kText;
  expect_error([&] { parse_csv(text, "mem.csv", o); }, {"mem.csv", "'nope'", "code, label"},
               ErrorCode::kNotFound);
}

TEST(Csv, RaggedRowsNamedWithLine) {
  const std::string text = "a,b,c\n1,2,3\n4,5\n6,7,8\n9,10,11,12\n";
  expect_error([&] { parse_csv(text, "rag.csv"); }, {"rag.csv line 3", "2 fields", "header has 3"});
  ReadOptions o;
  o.on_error = ErrorPolicy::kSkip;
  Table t = parse_csv(text, "rag.csv", o);
  EXPECT_EQ(t.n_rows(), 2u);
  ASSERT_EQ(t.skipped().size(), 2u);
  EXPECT_EQ(t.skipped()[0].line, 3);
  EXPECT_EQ(t.skipped()[1].line, 5);
  EXPECT_NE(t.skipped()[1].reason.find("4 fields"), std::string::npos);
  EXPECT_EQ(t.column("a").numeric, (std::vector<double>{1, 6}));
}

TEST(Csv, EmptyRowsQuotesAndEmptyFiles) {
  expect_error([&] { parse_csv("a,b\n1,2\n\n3,4\n", "e.csv"); }, {"e.csv line 3", "empty row"});
  // Blank lines at the end of a file are not rows.
  EXPECT_EQ(parse_csv("a,b\n1,2\n\n\n", "e.csv").n_rows(), 1u);
  expect_error([&] { parse_csv("a,b\n1,\"x\ny\n", "q.csv"); },
               {"q.csv line 2", "unterminated", "column 2"});
  expect_error([&] { parse_csv("a,b\n1,\"x\"y\n", "q.csv"); },
               {"q.csv line 2", "after the closing quote"});
  expect_error([&] { parse_csv("", "empty.csv"); }, {"empty.csv", "empty file"});
  expect_error([&] { parse_csv("a,a\n1,2\n", "d.csv"); }, {"d.csv line 1", "duplicate", "'a'"});
  ReadOptions o;
  o.required = {"label"};
  expect_error([&] { parse_csv("a,b\n1,2\n", "m.csv", o); }, {"m.csv", "missing column 'label'"},
               ErrorCode::kNotFound);
  Table t = parse_csv("a,b\n1,2\n", "m.csv");
  expect_error([&] { t.column("zzz"); }, {"m.csv", "no column 'zzz'"}, ErrorCode::kNotFound);
  expect_error([&] { read_csv("/nonexistent/file.csv"); }, {"/nonexistent/file.csv"},
               ErrorCode::kNotFound);
}

TEST(Jsonl, ObjectsUnionOfKeysAndErrors) {
  const std::string text =
      "{\"text\": \"good\", \"label\": 1}\n"
      "{\"label\": 0, \"text\": \"bad\", \"extra\": true}\n"
      "{\"text\": null, \"label\": 1, \"nested\": [1, 2]}\n";
  Table t = parse_jsonl(text, "m.jsonl");
  ASSERT_EQ(t.n_rows(), 3u);
  EXPECT_EQ(t.column_names(), (std::vector<std::string>{"text", "label", "extra", "nested"}));
  EXPECT_EQ(t.column("label").type, ColumnType::kNumeric);
  EXPECT_TRUE(t.column("text").is_missing(2));
  EXPECT_TRUE(t.column("extra").is_missing(0));
  EXPECT_EQ(t.column("extra").raw[1], "true");
  EXPECT_EQ(t.column("nested").raw[2], "[1,2]");

  const std::string bad = "{\"a\": 1}\n{\"a\": 2,}\n[1]\n\n{\"a\": 3}\n";
  expect_error([&] { parse_jsonl(bad, "b.jsonl"); }, {"b.jsonl line 2", "malformed JSON"});
  ReadOptions o;
  o.on_error = ErrorPolicy::kSkip;
  Table s = parse_jsonl(bad, "b.jsonl", o);
  EXPECT_EQ(s.column("a").numeric, (std::vector<double>{1, 3}));
  ASSERT_EQ(s.skipped().size(), 3u);
  EXPECT_EQ(s.skipped()[0].line, 2);
  EXPECT_EQ(s.skipped()[1].line, 3);
  EXPECT_NE(s.skipped()[1].reason.find("not an object"), std::string::npos);
  EXPECT_EQ(s.skipped()[2].line, 4);
  EXPECT_NE(s.skipped()[2].reason.find("empty line"), std::string::npos);
}

TEST(Jsonl, ReadTableByExtension) {
  const std::string dir = testing::temp_dir();
  {
    std::ofstream(dir + "/x.jsonl") << "{\"a\": \"p\"}\n{\"a\": \"q\"}\n";
    std::ofstream(dir + "/x.csv") << "a\np\nq\n";
  }
  Table j = read_table(dir + "/x.jsonl");
  Table c = read_table(dir + "/x.csv");
  EXPECT_EQ(j.column("a").raw, c.column("a").raw);
  EXPECT_EQ(c.source(), dir + "/x.csv");
}

TEST(Split, BySeedIsDeterministicAndPartitions) {
  Split a = split_by_seed(1000, 0.1, 0.2, 7);
  Split b = split_by_seed(1000, 0.1, 0.2, 7);
  Split c = split_by_seed(1000, 0.1, 0.2, 8);
  EXPECT_EQ(a.test, b.test);
  EXPECT_EQ(a.train, b.train);
  EXPECT_NE(a.test, c.test);
  EXPECT_EQ(a.test.size(), 200u);
  EXPECT_EQ(a.validation.size(), 100u);
  EXPECT_EQ(a.train.size(), 700u);
  std::vector<int> seen(1000, 0);
  for (auto* part : {&a.train, &a.validation, &a.test})
    for (size_t r : *part) seen[r]++;
  for (int s : seen) EXPECT_EQ(s, 1);
  expect_error([] { split_by_seed(10, 0.6, 0.5, 1); }, {"sum below 1"});
}

TEST(Split, ByColumn) {
  Table t = parse_csv("x,split\n1,train\n2,test\n3,valid\n4,train\n", "s.csv");
  Split s = split_by_column(t, "split");
  EXPECT_EQ(s.train, (std::vector<size_t>{0, 3}));
  EXPECT_EQ(s.validation, (std::vector<size_t>{2}));
  EXPECT_EQ(s.test, (std::vector<size_t>{1}));
  Table bad = parse_csv("x,split\n1,train\n2,holdout\n", "s.csv");
  expect_error([&] { split_by_column(bad, "split"); }, {"s.csv line 3", "'holdout'"});
  Table sel = t.select_rows({3, 1});
  EXPECT_EQ(sel.column("x").numeric, (std::vector<double>{4, 2}));
  EXPECT_EQ(sel.line_of(0), 5);
}

TEST(SharedData, AdultAndSentimentTypes) {
  CANDOR_REQUIRE_SHARED("data/fairness/adult_train.csv");
  Table adult = read_csv(testing::shared_path("data/fairness/adult_train.csv"));
  EXPECT_EQ(adult.n_rows(), 32561u);
  EXPECT_EQ(adult.column("age").type, ColumnType::kNumeric);
  EXPECT_EQ(adult.column("sex").type, ColumnType::kCategorical);
  EXPECT_EQ(adult.column("income").categories.size(), 2u);
  EXPECT_TRUE(adult.skipped().empty());
  CANDOR_REQUIRE_SHARED("data/text/sentiment_labelled_sentences.csv");
  Table s = read_csv(testing::shared_path("data/text/sentiment_labelled_sentences.csv"));
  EXPECT_EQ(s.n_rows(), 3000u);
  EXPECT_EQ(s.column("text").type, ColumnType::kText);
  EXPECT_EQ(s.column("source").type, ColumnType::kCategorical);
  EXPECT_EQ(s.column("label").type, ColumnType::kNumeric);
}

}  // namespace
}  // namespace candor::data
