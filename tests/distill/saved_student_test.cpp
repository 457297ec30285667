// Glass-box students saved as student.json and read back: the loaded student predicts exactly
// what the fitted one did, on the rows it saw and on new ones; malformed files are named.
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>

#include "candor/data.h"
#include "candor/distill.h"
#include "candor/error.h"
#include "test_util.h"

namespace candor::distill {
namespace {

using candor::testing::error_of;
using ::testing::HasSubstr;

// Numeric, categorical and text columns (the linear student reads sparse rows, the others dense
// bins), three classes, missing values and an unseen category in the new rows.
std::string table_csv(size_t n, uint64_t seed, bool unseen) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 100);
  const char* colours[] = {"red", "green", "blue"};
  const char* words[] = {"good", "bad", "fine", "awful", "great", "meh"};
  std::string csv = "age,colour,review,teacher\n";
  for (size_t i = 0; i < n; ++i) {
    double age = u(rng);
    int c = static_cast<int>(rng() % 3);
    std::string review = std::string(words[rng() % 6]) + " " + words[rng() % 6] + " food";
    std::string label = age > 70                                               ? "high"
                        : (c == 2 || review.find("good") != std::string::npos) ? "mid"
                                                                               : "low";
    std::string colour = unseen && i % 7 == 0 ? "purple" : colours[c];
    csv += (i % 11 == 3 ? std::string() : std::to_string(age)) + "," + colour + "," +
           (i % 13 == 5 ? std::string() : review) + "," + label + "\n";
  }
  return csv;
}

data::Table parse(const std::string& csv, const std::string& name) {
  data::ReadOptions ro;
  ro.types["review"] = data::ColumnType::kText;
  ro.types["age"] = data::ColumnType::kNumeric;
  return data::parse_csv(csv, name, ro);
}

std::vector<size_t> all_rows(const data::Table& t) {
  std::vector<size_t> r(t.n_rows());
  for (size_t i = 0; i < r.size(); ++i) r[i] = i;
  return r;
}

class SavedStudents : public ::testing::TestWithParam<std::string> {};

TEST_P(SavedStudents, PredictExactlyAsTheFittedStudent) {
  data::Table table = parse(table_csv(600, 1, false), "train.csv");
  std::unique_ptr<Teacher> teacher = column_teacher(table, "teacher");
  DistillOptions o;
  o.student = parse_student(GetParam());
  o.features.exclude = {"teacher"};
  o.features.min_count = 1;
  DistillResult r = distill(table, *teacher, o);
  const std::string dir = testing::temp_dir();
  ASSERT_TRUE(SavedStudent::save(r, dir, teacher->describe()));
  for (const std::string& path : {dir, dir + "/student.json"}) {
    ASSERT_TRUE(SavedStudent::is_saved(path)) << path;
    std::unique_ptr<SavedStudent> s = SavedStudent::load(path);
    EXPECT_EQ(s->classes(), r.classes);
    EXPECT_EQ(s->student().kind(), o.student.kind);
    EXPECT_EQ(s->student().explain(), r.student->explain());
    // The rows it was fitted and measured on, and new rows with an unseen category.
    data::Table fresh = parse(table_csv(300, 2, true), "new.csv");
    for (const data::Table* t : {&table, &fresh}) {
      Probs want = predict_rows(*r.student, r.featurizer, *t, all_rows(*t));
      Probs got = s->predict(*t, all_rows(*t));
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i)
        for (size_t k = 0; k < got[i].size(); ++k)
          ASSERT_EQ(got[i][k], want[i][k]) << t->where(i) << " class " << k;
    }
  }
  // The held-out fidelity of the report is what the loaded student gives on those rows.
  std::unique_ptr<SavedStudent> s = SavedStudent::load(dir);
  data::Split split = distill_split(table, o);
  Probs got = s->predict(table, split.test);
  Probs teach = teacher->predict(table, split.test);
  size_t agree = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    auto arg = [](const std::vector<double>& p) {
      return std::max_element(p.begin(), p.end()) - p.begin();
    };
    agree += arg(got[i]) == arg(teach[i]);
  }
  EXPECT_DOUBLE_EQ(double(agree) / double(got.size()), r.test_fidelity.agreement);
}

INSTANTIATE_TEST_SUITE_P(Kinds, SavedStudents,
                         ::testing::Values("linear", "tree:max_depth=5", "gam:rounds=40"));

TEST(SavedStudent, MalformedFilesAreNamed) {
  const std::string dir = testing::temp_dir();
  EXPECT_FALSE(SavedStudent::is_saved(dir));
  EXPECT_THAT(error_of([&] { SavedStudent::load(dir); }), HasSubstr("no saved student"));
  data::Table table = parse(table_csv(200, 3, false), "train.csv");
  std::unique_ptr<Teacher> teacher = column_teacher(table, "teacher");
  DistillOptions o;
  o.student = parse_student("tree");
  o.features.exclude = {"teacher"};
  DistillResult r = distill(table, *teacher, o);
  ASSERT_TRUE(SavedStudent::save(r, dir, "t"));
  std::ifstream in(dir + "/student.json");
  nlohmann::json j = nlohmann::json::parse(in);
  auto write = [&](const nlohmann::json& v) { std::ofstream(dir + "/student.json") << v.dump(); };
  nlohmann::json bad = j;
  bad["student"]["nodes"][0]["left"] = 0;  // a cycle
  if (bad["student"]["nodes"][0]["feature"].get<int>() < 0)
    bad["student"]["nodes"][0]["feature"] = 0;
  write(bad);
  EXPECT_THAT(error_of([&] { SavedStudent::load(dir); }),
              ::testing::AllOf(HasSubstr(dir + "/student.json"), HasSubstr("malformed")));
  bad = j;
  bad["student"]["kind"] = "forest";
  write(bad);
  EXPECT_THAT(error_of([&] { SavedStudent::load(dir); }), HasSubstr("kind 'forest'"));
  std::ofstream(dir + "/student.json") << "{not json";
  EXPECT_THAT(error_of([&] { SavedStudent::load(dir); }),
              HasSubstr("not a student saved by candor"));
}

}  // namespace
}  // namespace candor::distill
