// `candor distill` with teachers candor trains: the MLP teacher honours the split the students
// are measured on, and a model `candor train` wrote is a teacher.
#include <nlohmann/json.hpp>

#include <fstream>

#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using CliResult = testing::CliRun;
CliResult cli(const std::string& args) { return testing::run_cli(args); }

std::string write(const std::string& name, const std::string& text) {
  std::string path = testing::temp_dir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

// A planted table: training rows (split=train) have x in 0..9 and label a below 5, b above;
// every held-out row (split=test) has x = 20, a value no training row has, and label a. A
// teacher that never saw a held-out row puts x = 20 in the bin of x = 9 and says b (accuracy 0
// on held-out rows); one that trained on held-out rows learns their own bin and says a.
std::string planted_csv() {
  std::string csv = "x,split,label\n";
  for (int i = 0; i < 5000; ++i) {
    if (i % 4 == 0)
      csv += "20,test,a\n";
    else
      csv += std::to_string(i % 10) + ",train," + (i % 10 < 5 ? "a" : "b") + "\n";
  }
  return csv;
}

TEST(CliTeacher, MlpTeacherNeverSeesHeldOutRows) {
  const std::string data = write("planted.csv", planted_csv());
  const std::string out = testing::temp_dir() + "/report";
  CliResult r = cli("distill --teacher mlp --label label --split-column split --data " + data +
                    " --student tree --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  // It trains on the 3750 rows the split column marks train, not on a seeded 80% (4000).
  EXPECT_THAT(r.out, HasSubstr("training the MLP teacher on 3750 rows"));
  nlohmann::json rep = read_json(out + "/report.json");
  EXPECT_EQ(rep["fidelity"]["test"]["rows"], 1250);
  // Held-out labels contradict what the training rows teach: any leakage shows as accuracy.
  EXPECT_LT(rep["fidelity"]["test"]["teacher_accuracy"].get<double>(), 0.05) << rep.dump(2);
  EXPECT_GT(rep["fidelity"]["train"]["teacher_accuracy"].get<double>(), 0.9) << rep.dump(2);
}

TEST(CliTeacher, TrainHonoursTheSplitColumn) {
  const std::string data = write("planted.csv", planted_csv());
  const std::string out = testing::temp_dir() + "/mlp";
  CliResult r = cli("train --data " + data + " --label label --split-column split --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  nlohmann::json s = read_json(out + "/summary.json");
  EXPECT_EQ(s["train_rows"], 3750);
  EXPECT_EQ(s["test_rows"], 1250);
  EXPECT_LT(s["test_accuracy"].get<double>(), 0.05) << s.dump(2);
}

// A model `candor train` made is a teacher: its folder, its mlp.json and the checkpoint beside it.
TEST(CliTeacher, TrainedMlpIsATeacher) {
  const std::string data = write("planted.csv", planted_csv());
  const std::string dir = testing::temp_dir();
  const std::string model = dir + "/mlp";
  CliResult r = cli("train --data " + data + " --label label --split-column split --out " + model);
  ASSERT_EQ(r.code, 0) << r.out;
  for (const std::string& teacher : {model, model + "/mlp.json", model + "/model.ckpt"}) {
    const std::string out = dir + "/report";
    r = cli("distill --teacher " + teacher + " --label label --split-column split --data " +
            data + " --student tree --out " + out);
    ASSERT_EQ(r.code, 0) << teacher << ": " << r.out;
    EXPECT_THAT(r.out, Not(HasSubstr("needs --prompt")));
    nlohmann::json rep = read_json(out + "/report.json");
    // The trained model's predictions: right on its training rows.
    EXPECT_GT(rep["fidelity"]["train"]["teacher_accuracy"].get<double>(), 0.9) << teacher;
  }
}

// --teacher mlp offers the training options (declared once, checked, defaults shown).
TEST(CliTeacher, MlpTeacherTrainingOptions) {
  CliResult r = cli("distill --help");
  EXPECT_EQ(r.code, 0);
  for (const char* flag : {"--teacher-hidden", "--teacher-epochs", "--teacher-batch-size",
                           "--teacher-lr", "--teacher-seed"})
    EXPECT_THAT(r.out, HasSubstr(flag));
  EXPECT_THAT(r.out, HasSubstr("(default 64,32)"));
  const std::string data = write("planted.csv", planted_csv());
  const std::string out = testing::temp_dir() + "/report";
  r = cli("distill --teacher mlp --label label --split-column split --teacher-hidden 8 "
          "--teacher-epochs 2 --teacher-lr 0.01 --data " + data + " --out " + out);
  EXPECT_EQ(r.code, 0) << r.out;
  r = cli("distill --teacher mlp --label label --teacher-epochs 0 --data " + data + " --out " +
          out);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("epochs"));
  r = cli("distill --teacher mlp --label label --teacher-hidden 8,x --data " + data + " --out " +
          out);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("hidden"));
  r = cli("distill --teacher-column label --teacher-epochs 3 --data " + data + " --out " + out);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--teacher mlp"));
}

}  // namespace
}  // namespace candor
