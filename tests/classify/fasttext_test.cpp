// fastText classifier: predictions against the fastText library's own CLI, exact attributions,
// bad files.
#include <cmath>
#include <fstream>
#include <sstream>

#include "candor/classifier.h"
#include "candor/data.h"
#include "candor/error.h"
#include "test_util.h"

namespace candor {
namespace {

const char* kModel = "models/fasttext_amazon/amazon_review_polarity.ftz";
const char* kData = "data/text/sentiment_labelled_sentences.csv";

std::vector<std::string> sentences() {
  data::Table t = data::read_csv(testing::shared_path(kData));
  std::vector<std::string> out;
  for (std::string s : t.column("text").raw) {
    for (char& c : s)
      if (c == '\n' || c == '\r') c = ' ';
    out.push_back(s);
  }
  return out;
}

// The reference: fastText 0.9.2's own `fasttext predict-prob` (Debian package `fasttext`), run
// at test time over the same sentences, one per line.
TEST(FastText, AgreesWithFastTextLibraryOnEverySentence) {
  CANDOR_REQUIRE_SHARED(kModel);
  CANDOR_REQUIRE_SHARED(kData);
  if (testing::run_command("command -v fasttext >/dev/null") != 0)
    GTEST_SKIP() << "skipped: the fastText CLI (Debian package fasttext, installed by "
                    "scripts/setup.sh) is absent";
  auto clf = load_fasttext(testing::shared_path(kModel));
  ASSERT_EQ(clf->labels(), (std::vector<std::string>{"__label__2", "__label__1"}));
  const std::vector<std::string> texts = sentences();
  const std::string dir = testing::temp_dir();
  {
    std::ofstream f(dir + "/in.txt");
    for (const auto& s : texts) f << s << "\n";
  }
  std::string out;
  ASSERT_EQ(testing::run_command("fasttext predict-prob " + testing::shared_path(kModel) + " " +
                                     dir + "/in.txt 2 > " + dir + "/ref.txt",
                                 &out),
            0)
      << out;
  std::ifstream ref(dir + "/ref.txt");
  std::string line;
  size_t row = 0, disagreements = 0;
  double max_diff = 0;
  while (std::getline(ref, line)) {
    ASSERT_LT(row, texts.size());
    std::istringstream ss(line);
    std::string l1, l2;
    double p1 = 0, p2 = 0;
    ss >> l1 >> p1 >> l2 >> p2;
    std::vector<double> p = clf->predict_proba(texts[row]);
    const int top = clf->predict(texts[row]);
    if (clf->labels()[top] != l1 && std::fabs(p[0] - p[1]) > 1e-5) ++disagreements;
    // predict-prob prints exp(log(p + 1e-5)).
    max_diff = std::max(max_diff, std::fabs(p[clf->label_index(l1)] + 1e-5 - p1));
    max_diff = std::max(max_diff, std::fabs(p[clf->label_index(l2)] + 1e-5 - p2));
    ++row;
  }
  EXPECT_EQ(row, texts.size());
  EXPECT_EQ(disagreements, 0u);
  EXPECT_LT(max_diff, 2e-5);
}

TEST(FastText, AttributionsSumToTheLogitDifference) {
  CANDOR_REQUIRE_SHARED(kModel);
  auto clf = load_fasttext(testing::shared_path(kModel));
  for (const std::string text :
       {"this product is great , i love it", "terrible quality . broke after two days",
        "not bad at all", "zzzunknownword"}) {
    std::vector<double> p = clf->predict_proba(text);
    for (int target : {0, 1}) {
      ClassifierExplanation ex = clf->explain(text, target);
      EXPECT_EQ(ex.contrast, 1 - target);
      double sum = 0;
      for (const auto& f : ex.features) sum += f.value;
      EXPECT_NEAR(sum, ex.explained, 1e-9);
      EXPECT_NEAR(ex.explained, std::log(p[target] / p[1 - target]), 1e-4) << text;
      EXPECT_EQ(ex.tokens.back(), "</s>");
    }
  }
  ClassifierExplanation ex = clf->explain("i love it", 0);
  // Words and word bigrams (the model has wordNgrams 2): "i love", "love it", "it </s>".
  int words = 0, ngrams = 0;
  for (const auto& f : ex.features) {
    words += f.kind == "word";
    ngrams += f.kind == "ngram";
    if (f.kind == "ngram") EXPECT_EQ(f.token_end - f.token_begin, 2);
  }
  EXPECT_GE(words, 3);  // i, love, it, </s> when all are in the pruned vocabulary
  EXPECT_GE(ngrams, 1);
  EXPECT_THROW(clf->explain("x", 2), Error);
  EXPECT_THROW(clf->label_index("__label__3"), Error);
}

TEST(FastText, BadFiles) {
  const std::string dir = testing::temp_dir();
  try {
    load_fasttext(dir + "/missing.ftz");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
  {
    std::ofstream f(dir + "/bad.bin", std::ios::binary);
    f << "definitely not a fasttext model";
  }
  try {
    load_fasttext(dir + "/bad.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("wrong magic"), std::string::npos) << e.what();
  }
  if (!testing::shared_has(kModel)) return;
  testing::copy_prefix(testing::shared_path(kModel), dir + "/trunc.ftz", 100000);
  try {
    load_fasttext(dir + "/trunc.ftz");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("trunc.ftz"), std::string::npos);
  }
}

}  // namespace
}  // namespace candor
