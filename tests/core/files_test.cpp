// Atomic output files and output folder checks (candor/files.h).
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "candor/error.h"
#include "candor/files.h"
#include "test_util.h"

namespace candor {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

size_t entries(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.path().empty() ? 0 : 1;
  return n;
}

TEST(Files, AnAtomicFileAppearsWholeOnCommitAndNotAtAllOtherwise) {
  const std::string dir = testing::temp_dir();
  write_file_atomic(dir + "/a.txt", "first");
  EXPECT_EQ(slurp(dir + "/a.txt"), "first");
  {
    AtomicFile f(dir + "/a.txt");
    f.stream() << "second, half";
    // destroyed without commit: an error or an interruption while writing
  }
  EXPECT_EQ(slurp(dir + "/a.txt"), "first");
  EXPECT_EQ(entries(dir), 1u) << "a temporary file was left behind";
  AtomicFile g(dir + "/a.txt");
  g.stream() << "second";
  g.commit();
  EXPECT_EQ(slurp(dir + "/a.txt"), "second");
  EXPECT_EQ(entries(dir), 1u);
}

TEST(Files, ErrorsNameThePathAndWhatIsWrong) {
  const std::string dir = testing::temp_dir();
  write_file_atomic(dir + "/plain", "x");
  EXPECT_THAT(testing::error_of([&] { write_file_atomic(dir + "/none/a.txt", "x"); }),
              ::testing::HasSubstr("the folder '" + dir + "/none' does not exist"));
  EXPECT_THAT(testing::error_of([&] { write_file_atomic(dir + "/plain/a.txt", "x"); }),
              ::testing::HasSubstr("'" + dir + "/plain' is a file, not a folder"));
  EXPECT_THAT(testing::error_of([&] { prepare_output_dir(dir + "/plain/sub/x", "--out"); }),
              ::testing::HasSubstr("'" + dir + "/plain' is a file, not a folder"));
  EXPECT_THAT(testing::error_of([&] { prepare_output_dir(dir + "/plain", "--out"); }),
              ::testing::HasSubstr("--out '" + dir + "/plain' is a file, not a folder"));
  EXPECT_THAT(testing::error_of([&] { check_output_file(dir, "--json"); }),
              ::testing::HasSubstr("is a folder"));
  prepare_output_dir(dir + "/made/deep", "--out");
  struct stat st;
  EXPECT_EQ(::stat((dir + "/made/deep").c_str(), &st), 0);
  EXPECT_EQ(entries(dir + "/made/deep"), 0u) << "the writability probe was left behind";
  check_output_file(dir + "/made/deep/x.json", "--json");
  EXPECT_EQ(entries(dir + "/made/deep"), 0u);
}

}  // namespace
}  // namespace candor
