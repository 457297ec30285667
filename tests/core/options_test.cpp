// The typed options mechanism: declarations, checking of specifications against them, typed
// getters, errors that name the option and its type, and the JSON description.
#include "candor/options.h"

#include "candor/error.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;

OptionSpecs specs() {
  return {OptionSpec::integer("n_steps", 64, 1, 1 << 20, "points on the path"),
          OptionSpec::integer("per_panel", 0, 1, 64, "points per panel").or_word("auto", true),
          OptionSpec::real("width", 0.25, 0, 1e6, "kernel width").above(),
          OptionSpec::boolean("paired", true, "pair coalitions"),
          OptionSpec::choice("norm", "l2", {"l2", "l1", "max"}, "the norm"),
          OptionSpec::text("label", "x", "free text")};
}

Error error_of(const std::map<std::string, std::string>& given) {
  try {
    Options("method", "demo", specs(), given);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return Error(ErrorCode::kInternal, "none");
}

TEST(Options, DefaultsAreWrittenOnceAndReadTyped) {
  Options o("method", "demo", specs(), {});
  EXPECT_EQ(o.get_int("n_steps"), 64);
  EXPECT_TRUE(o.is("per_panel", "auto"));
  EXPECT_DOUBLE_EQ(o.get_double("width"), 0.25);
  EXPECT_TRUE(o.get_bool("paired"));
  EXPECT_EQ(o.get("norm"), "l2");
  EXPECT_FALSE(o.given("n_steps"));
  const std::map<std::string, std::string> want = {{"n_steps", "64"}, {"per_panel", "auto"},
                                                   {"width", "0.25"}, {"paired", "true"},
                                                   {"norm", "l2"},    {"label", "x"}};
  EXPECT_EQ(o.values(), want);
  EXPECT_EQ(option_defaults(specs()), want);
}

TEST(Options, GivenValuesAreCheckedAndKeepTheirText) {
  auto [name, given] = parse_spec("demo: n_steps=16, per_panel=3,width=1e-2,paired=no,norm=max");
  EXPECT_EQ(name, "demo");
  Options o("method", "demo", specs(), given);
  EXPECT_EQ(o.get_int("n_steps"), 16);
  EXPECT_EQ(o.get_int("per_panel"), 3);
  EXPECT_FALSE(o.is("per_panel", "auto"));
  EXPECT_DOUBLE_EQ(o.get_double("width"), 0.01);
  EXPECT_EQ(o.values().at("width"), "1e-2");
  EXPECT_FALSE(o.get_bool("paired"));
  EXPECT_EQ(o.get("norm"), "max");
  EXPECT_TRUE(o.given("norm"));
}

TEST(Options, UnknownKeySuggestsTheClosestAndListsTheOptions) {
  Error e = error_of({{"n_step", "3"}});
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(e.what(), HasSubstr("method 'demo' has no option 'n_step'"));
  EXPECT_THAT(e.hint(), HasSubstr("did you mean n_steps?"));
  EXPECT_THAT(e.hint(), HasSubstr("n_steps=64, per_panel=auto, width=0.25"));
  Error far = error_of({{"zzzzzzzz", "3"}});
  EXPECT_THAT(far.hint(), ::testing::Not(HasSubstr("did you mean")));
}

TEST(Options, BadValuesNameTheOptionAndItsTypeOrBounds) {
  EXPECT_THAT(error_of({{"n_steps", "0"}}).what(),
              HasSubstr("option n_steps of method 'demo' must be an integer in [1, 1048576], "
                        "got '0'"));
  EXPECT_THAT(error_of({{"n_steps", "2.5"}}).what(), HasSubstr("an integer"));
  EXPECT_THAT(error_of({{"per_panel", "many"}}).what(), HasSubstr("an integer in [1, 64] or auto"));
  EXPECT_THAT(error_of({{"width", "0"}}).what(), HasSubstr("a number > 0 and <= 1e+06"));
  EXPECT_THAT(error_of({{"width", "nan"}}).what(), HasSubstr("width"));
  EXPECT_THAT(error_of({{"paired", "maybe"}}).what(), HasSubstr("true or false"));
  EXPECT_THAT(error_of({{"norm", "l3"}}).what(), HasSubstr("one of l2, l1 or max"));
  EXPECT_THAT(error_of({{"norm", "l3"}}).hint(), HasSubstr("the norm"));
}

TEST(Options, ReadingAnOptionAsAnotherTypeIsABug) {
  Options o("method", "demo", specs(), {});
  EXPECT_THROW(o.get_double("n_steps"), Error);
  EXPECT_THROW(o.get_int("per_panel"), Error) << "holds the word auto";
  EXPECT_THROW(o.get_int("missing"), Error);
  try {
    o.get_bool("norm");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
  }
}

TEST(Options, MalformedSpecifications) {
  EXPECT_THROW(parse_spec(":a=1"), Error);
  EXPECT_THROW(parse_spec("m:a"), Error);
  EXPECT_THROW(parse_spec("m:a=1,a=2"), Error);
  EXPECT_EQ(parse_spec("m").second.size(), 0u);
}

TEST(Options, JsonDescribesEveryDeclaration) {
  nlohmann::json j = options_to_json(specs());
  ASSERT_EQ(j.size(), 6u);
  EXPECT_EQ(j[0]["name"], "n_steps");
  EXPECT_EQ(j[0]["type"], "int");
  EXPECT_EQ(j[0]["default"], 64);
  EXPECT_EQ(j[0]["min"], 1);
  EXPECT_EQ(j[0]["max"], 1 << 20);
  EXPECT_EQ(j[0]["description"], "points on the path");
  EXPECT_EQ(j[1]["default"], "auto");
  EXPECT_EQ(j[1]["words"], nlohmann::json::array({"auto"}));
  EXPECT_EQ(j[2]["default"], 0.25);
  EXPECT_EQ(j[2]["min_exclusive"], true);
  EXPECT_EQ(j[3]["default"], true);
  EXPECT_EQ(j[4]["type"], "enum");
  EXPECT_EQ(j[4]["choices"], nlohmann::json::array({"l2", "l1", "max"}));
  EXPECT_FALSE(j[5].contains("min"));
}

TEST(Options, ClosestMatch) {
  EXPECT_EQ(closest_match("windows", {"window", "stride"}), "window");
  EXPECT_EQ(closest_match("integrated_gradient", {"saliency", "integrated_gradients"}),
            "integrated_gradients");
  EXPECT_EQ(closest_match("qq", {"window", "stride"}), "");
}

}  // namespace
}  // namespace candor
