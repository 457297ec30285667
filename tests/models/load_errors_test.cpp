// Loading and generation reject bad input with a candor::Error that names the file or option.
#include "candor/error.h"
#include "candor/generate.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using testing::shared_path;

// Runs `fn`, expects a candor::Error with `code` whose message contains every `parts`.
template <typename Fn>
void expect_error(Fn fn, ErrorCode code, std::initializer_list<std::string> parts) {
  try {
    fn();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& p : parts) EXPECT_THAT(e.what(), HasSubstr(p));
  }
}

TEST(LoadErrors, MissingFileNamesThePath) {
  expect_error([] { load_model("/nonexistent/model.bin"); }, ErrorCode::kNotFound,
               {"/nonexistent/model.bin", "does not exist"});
}

TEST(LoadErrors, TruncatedCheckpointSaysSo) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir();
  testing::copy_prefix(shared_path("models/stories260K/stories260K.bin"), dir + "/m.bin", 100000);
  testing::copy_prefix(shared_path("models/stories260K/tok512.bin"), dir + "/tokenizer.bin",
                       1L << 40);
  expect_error([&] { load_model(dir + "/m.bin"); }, ErrorCode::kInvalidArgument,
               {dir + "/m.bin", "truncated"});
  testing::copy_prefix(shared_path("models/stories260K/stories260K.bin"), dir + "/tiny.bin", 10);
  expect_error([&] { load_model(dir + "/tiny.bin"); }, ErrorCode::kInvalidArgument,
               {"tiny.bin", "header"});
}

TEST(LoadErrors, HeaderInconsistentWithFileSize) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir();
  testing::copy_prefix(shared_path("models/stories260K/stories260K.bin"), dir + "/m.bin", -64);
  expect_error([&] { load_model(dir + "/m.bin"); }, ErrorCode::kInvalidArgument,
               {"m.bin", "inconsistent with file size"});
  // A header with nonsense dimensions.
  std::string bad = testing::write_llama2c_checkpoint(dir + "/bad.bin", 64, 172, 5, 7, 4, 512, 512);
  expect_error([&] { load_model(bad); }, ErrorCode::kInvalidArgument, {"bad.bin", "n_heads"});
}

TEST(LoadErrors, TokenizerWhoseVocabularyDoesNotMatchTheModel) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.bin");
  std::string dir = testing::temp_dir();
  std::string ckpt = testing::write_llama2c_checkpoint(dir + "/m.bin", 16, 32, 1, 2, 2, 600, 32);
  testing::copy_prefix(shared_path("models/stories260K/tok512.bin"), dir + "/tokenizer.bin",
                       1L << 40);
  expect_error([&] { load_model(ckpt); }, ErrorCode::kInvalidArgument,
               {"tokenizer.bin", "512", "600"});
  LoadOptions lo;
  lo.tokenizer_path = shared_path("models/stories260K/tok512.model");
  expect_error([&] { load_model(ckpt, lo); }, ErrorCode::kInvalidArgument,
               {"tok512.model", "512", "600"});
}

TEST(LoadErrors, FolderWithoutCheckpointOrTokenizer) {
  std::string dir = testing::temp_dir();
  expect_error([&] { load_model(dir); }, ErrorCode::kNotFound, {dir, "no model checkpoint"});
  std::string ckpt = testing::write_llama2c_checkpoint(dir + "/m.bin", 16, 32, 1, 2, 2, 40, 32);
  expect_error([&] { load_model(dir); }, ErrorCode::kNotFound, {"no tokenizer"});
}

class GenerateErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    model_ = load_model(shared_path("models/stories260K"));
  }
  std::unique_ptr<Model> model_;
};

TEST_F(GenerateErrors, PromptLongerThanTheContext) {
  std::string prompt;
  for (int i = 0; i < 300; ++i) prompt += "the cat sat. ";
  expect_error([&] { generate(*model_, std::string_view(prompt), GenerateOptions{}); },
               ErrorCode::kResourceExhausted, {"prompt", "context of 512"});
}

TEST_F(GenerateErrors, InvalidUtf8Prompt) {
  expect_error([&] { generate(*model_, std::string_view("caf\xC3("), GenerateOptions{}); },
               ErrorCode::kInvalidArgument, {"UTF-8"});
}

TEST_F(GenerateErrors, ZeroOrNegativeTokenCount) {
  for (int64_t n : {0, -3}) {
    GenerateOptions o;
    o.max_new_tokens = n;
    expect_error([&] { generate(*model_, std::string_view("hi"), o); }, ErrorCode::kInvalidArgument,
                 {"-n", std::to_string(n)});
  }
}

TEST_F(GenerateErrors, TopPOutsideUnitInterval) {
  GenerateOptions o;
  o.top_p = 2.0f;
  expect_error([&] { generate(*model_, std::string_view("hi"), o); }, ErrorCode::kInvalidArgument,
               {"top-p", "(0, 1]"});
  o.top_p = 0.9f;
  o.temperature = -1.0f;
  expect_error([&] { generate(*model_, std::string_view("hi"), o); }, ErrorCode::kInvalidArgument,
               {"temperature"});
}

TEST_F(GenerateErrors, SamplingIsSeededAndRespectsStopAndCallback) {
  GenerateOptions o;
  o.max_new_tokens = 30;
  o.temperature = 1.0f;
  o.top_k = 20;
  o.top_p = 0.9f;
  o.seed = 123;
  GenerateResult a = generate(*model_, std::string_view("Once"), o);
  GenerateResult b = generate(*model_, std::string_view("Once"), o);
  EXPECT_EQ(a.generated_ids, b.generated_ids);
  o.seed = 124;
  GenerateResult c = generate(*model_, std::string_view("Once"), o);
  EXPECT_NE(a.generated_ids, c.generated_ids);
  int seen = 0;
  o.on_token = [&](TokenId, const std::string&) { return ++seen < 5; };
  GenerateResult d = generate(*model_, std::string_view("Once"), o);
  EXPECT_EQ(d.generated_ids.size(), 5u);
  EXPECT_EQ(d.stop_reason, "callback");
}

}  // namespace
}  // namespace candor
