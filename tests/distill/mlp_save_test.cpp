// The MLP candor trains: saved and loaded back it predicts the same; its split is distill's.
#include <fstream>

#include "candor/data.h"
#include "candor/distill.h"
#include "candor/error.h"
#include "candor/train.h"
#include "test_util.h"

namespace candor::distill {
namespace {

using candor::testing::error_of;
using ::testing::HasSubstr;

data::Table table() {
  std::string csv = "age,colour,text,label,split\n";
  const char* colours[] = {"red", "green", "blue"};
  const char* words[] = {"good film", "bad film", "so so"};
  for (int i = 0; i < 600; ++i)
    csv += std::to_string(i % 83) + ".5," + colours[i % 3] + "," + words[i % 3] + "," +
           (i % 83 > 40 ? "yes" : "no") + "," + (i % 4 == 0 ? "test" : "train") + "\n";
  data::ReadOptions ro;
  ro.types["text"] = data::ColumnType::kText;
  return data::parse_csv(csv, "mlp.csv", ro);
}

TEST(MlpSave, LoadedModelPredictsTheSame) {
  data::Table t = table();
  DistillOptions d;
  d.split_column = "split";
  data::Split s = distill_split(t, d);
  MlpOptions mo;
  mo.features.exclude = {"split"};
  mo.features.min_count = 1;
  train::TrainOptions to;
  to.epochs = 3;
  auto m = MlpClassifier::train(t, s.train, "label", mo, to);
  const std::string dir = testing::temp_dir() + "/m";
  m->save(dir, "label");
  EXPECT_TRUE(MlpClassifier::is_saved(dir));
  EXPECT_TRUE(MlpClassifier::is_saved(dir + "/mlp.json"));
  EXPECT_FALSE(MlpClassifier::is_saved(testing::temp_dir()));
  auto back = MlpClassifier::load(dir);
  EXPECT_EQ(back->classes(), m->classes());
  Probs a = m->predict(t, s.test), b = back->predict(t, s.test);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t c = 0; c < a[i].size(); ++c) EXPECT_NEAR(a[i][c], b[i][c], 1e-6) << i;
  EXPECT_FALSE(std::ifstream(dir + "/mlp.json.tmp").good());  // renamed into place
}

TEST(MlpSave, DistillSplitIsTheColumnsSplit) {
  data::Table t = table();
  DistillOptions d;
  d.split_column = "split";
  data::Split s = distill_split(t, d);
  EXPECT_EQ(s.test.size(), 150u);
  for (size_t r : s.test) EXPECT_EQ(r % 4, 0u);
  for (size_t r : s.train) EXPECT_NE(r % 4, 0u);
}

TEST(MlpSave, BadFilesAreNamed) {
  const std::string dir = testing::temp_dir();
  std::ofstream(dir + "/mlp.json") << "{\"format\": \"candor-mlp\", \"version\": 1}";
  EXPECT_THAT(error_of([&] { MlpClassifier::load(dir); }),
              HasSubstr(dir + "/mlp.json: not an MLP saved by candor"));
  EXPECT_THAT(error_of([&] { MlpClassifier::load(dir + "/none"); }), HasSubstr("no saved MLP"));
}

}  // namespace
}  // namespace candor::distill
