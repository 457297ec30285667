// README.md's table of attribution methods agrees with the registry: every registered method has
// a row, every row names registered methods, and each row lists exactly its methods' options
// with their defaults (`key=default`), as declared once in src/explain/registry.cpp.
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "candor/explain.h"
#include "test_util.h"

namespace candor {
namespace {

struct Row {
  std::vector<std::string> methods;
  std::map<std::string, std::string> options;  // key -> default, as written
  std::string line;
};

// The rows of the table under "## Attribution methods".
std::vector<Row> readme_rows() {
  std::ifstream in(std::string(CANDOR_SOURCE_DIR) + "/README.md");
  EXPECT_TRUE(in.good()) << "README.md not found";
  std::vector<Row> rows;
  std::string line;
  bool section = false;
  const std::regex code("`([^`]*)`");
  const std::regex kv("^([a-z_]+)=(.*)$");
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) section = line == "## Attribution methods";
    if (!section || line.rfind("| `", 0) != 0) continue;
    // | methods | what it computes | options |
    std::vector<std::string> cells;
    std::stringstream ss(line.substr(1));
    std::string cell;
    while (std::getline(ss, cell, '|')) cells.push_back(cell);
    EXPECT_GE(cells.size(), 3u) << line;
    if (cells.size() < 3) continue;
    Row row;
    row.line = line;
    for (std::sregex_iterator it(cells[0].begin(), cells[0].end(), code), end; it != end; ++it)
      row.methods.push_back((*it)[1]);
    for (std::sregex_iterator it(cells[2].begin(), cells[2].end(), code), end; it != end; ++it) {
      const std::string span = (*it)[1];
      std::smatch m;
      if (std::regex_match(span, m, kv)) {
        EXPECT_FALSE(row.options.count(m[1])) << "option " << m[1] << " twice in: " << line;
        row.options[m[1]] = m[2];
      }
    }
    rows.push_back(row);
  }
  return rows;
}

TEST(ReadmeMethodTable, AgreesWithTheRegistry) {
  std::map<std::string, ExplainerInfo> registered;
  for (const ExplainerInfo& e : list_explainers()) registered[e.name] = e;
  const std::vector<Row> rows = readme_rows();
  ASSERT_FALSE(rows.empty()) << "no method table under '## Attribution methods' in README.md";
  std::set<std::string> listed;
  for (const Row& row : rows) {
    ASSERT_FALSE(row.methods.empty()) << row.line;
    std::map<std::string, std::string> want;
    for (const std::string& m : row.methods) {
      EXPECT_TRUE(listed.insert(m).second) << "method " << m << " has two rows";
      auto it = registered.find(m);
      if (it == registered.end()) {
        ADD_FAILURE() << "README.md lists method " << m << ", which is not registered";
        continue;
      }
      for (const auto& [k, v] : it->second.defaults) {
        auto [at, fresh] = want.emplace(k, v);
        EXPECT_TRUE(fresh || at->second == v)
            << "methods of one row differ in option " << k << "'s default: " << row.line;
      }
    }
    EXPECT_EQ(row.options, want) << "the options column of this row should list every option "
                                    "of its methods as `key=default` (registry.cpp): "
                                 << row.line;
  }
  for (const auto& [name, info] : registered)
    EXPECT_TRUE(listed.count(name)) << "registered method " << name << " has no README.md row";
}

TEST(ReadmeMethodTable, DeclarationsAreCompleteAndDefaultsValid) {
  for (const ExplainerInfo& e : list_explainers()) {
    EXPECT_EQ(e.options.size(), e.defaults.size()) << e.name;
    for (const OptionSpec& s : e.options) {
      EXPECT_FALSE(s.description.empty()) << e.name << "." << s.name;
      EXPECT_EQ(e.defaults.at(s.name), s.default_value);
      EXPECT_NO_THROW(s.check("method '" + e.name + "'", s.default_value))
          << e.name << "." << s.name;
    }
    // The defaults build the method, and so does each default given explicitly.
    std::string spec = e.name;
    for (size_t i = 0; i < e.options.size(); ++i)
      spec += (i == 0 ? ":" : ",") + e.options[i].name + "=" + e.options[i].default_value;
    EXPECT_NO_THROW(make_explainer(spec)) << spec;
    EXPECT_EQ(make_explainer(spec)->options(), make_explainer(e.name)->options()) << spec;
  }
}

TEST(ReadmeMethodTable, JsonDescribesEveryMethod) {
  nlohmann::json j = explainers_to_json();
  const auto infos = list_explainers();
  ASSERT_EQ(j.size(), infos.size());
  for (size_t i = 0; i < infos.size(); ++i) {
    EXPECT_EQ(j[i]["name"], infos[i].name);
    EXPECT_EQ(j[i]["options"].size(), infos[i].options.size());
  }
}

}  // namespace
}  // namespace candor
