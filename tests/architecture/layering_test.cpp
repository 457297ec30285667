// The library's layering, checked on the source tree: every #include in src/, include/ and tools/
// respects the libraries declared in the top-level CMakeLists.txt (read from the layers file that
// CMake writes at configure time: "name|folders|public headers|direct dependencies" per line).
//
// - a source includes a private header ("folder/x.h") only of a folder of its own library;
// - a source or public header includes a public header ("candor/x.h") only of its own library or
//   of one its library depends on (directly or not);
// - every public header belongs to exactly one library, and the dependency graph has no cycle;
// - only the CLI may depend on candor_train (a service links everything else);
// - tools/ include public headers only.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Library {
  std::string name;
  std::vector<std::string> folders, headers, depends;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep))
    if (!cur.empty()) out.push_back(cur);
  return out;
}

std::vector<Library> read_layers() {
  std::ifstream in(CANDOR_LAYERS_FILE);
  std::vector<Library> libs;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cols;
    size_t pos = 0;
    for (int i = 0; i < 4; ++i) {  // empty columns are kept
      size_t bar = line.find('|', pos);
      cols.push_back(line.substr(pos, bar == std::string::npos ? std::string::npos : bar - pos));
      pos = bar == std::string::npos ? line.size() : bar + 1;
    }
    libs.push_back({cols[0], split(cols[1], ','), split(cols[2], ','), split(cols[3], ',')});
  }
  return libs;
}

struct Include {
  int line;
  std::string path;
};

std::vector<Include> includes_of(const fs::path& file) {
  static const std::regex re(R"re(^\s*#\s*include\s*"([^"]+)")re");
  std::ifstream in(file);
  std::vector<Include> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    if (std::regex_search(line, m, re)) out.push_back({n, m[1]});
  }
  return out;
}

bool is_source(const fs::path& p) {
  const auto e = p.extension();
  return e == ".cpp" || e == ".h" || e == ".hpp";
}

class Layering : public ::testing::Test {
 protected:
  void SetUp() override {
    libs_ = read_layers();
    ASSERT_FALSE(libs_.empty()) << "no libraries in " << CANDOR_LAYERS_FILE;
    for (const auto& l : libs_) {
      by_name_[l.name] = &l;
      for (const auto& f : l.folders) folder_owner_[f] = l.name;
      for (const auto& h : l.headers) {
        if (!h.empty() && h.back() == '/') folder_headers_[h].push_back(l.name);
        else header_owners_[h].push_back(l.name);
      }
    }
  }

  // The library itself and every library it depends on, directly or not.
  std::set<std::string> reach(const std::string& name) const {
    std::set<std::string> seen;
    std::function<void(const std::string&)> go = [&](const std::string& n) {
      if (!seen.insert(n).second) return;
      auto it = by_name_.find(n);
      if (it == by_name_.end()) return;
      for (const auto& d : it->second->depends) go(d);
    };
    go(name);
    return seen;
  }

  // Checks one file whose library is `lib` ("" for tools/: public headers only).
  void check_file(const fs::path& file, const std::string& lib, std::vector<std::string>* bad) {
    const auto allowed = lib.empty() ? std::set<std::string>() : reach(lib);
    const std::string rel = fs::relative(file, CANDOR_SOURCE_DIR).string();
    for (const auto& inc : includes_of(file)) {
      const auto slash = inc.path.find('/');
      if (slash == std::string::npos) continue;  // a header beside the file
      const std::string top = inc.path.substr(0, slash);
      const std::string where = rel + ":" + std::to_string(inc.line) + ": \"" + inc.path + "\"";
      if (top == "candor") {
        const std::string header = inc.path.substr(slash + 1);
        const auto owners = owners_of(header);
        if (owners.empty()) {
          bad->push_back(where + " is a public header that no library owns");
          continue;
        }
        if (lib.empty()) continue;
        if (!allowed.count(owners.front()))
          bad->push_back(where + " belongs to " + owners.front() + ", which " + lib +
                         " does not depend on");
        continue;
      }
      auto owner = folder_owner_.find(top);
      if (owner == folder_owner_.end()) continue;  // not a src/ folder (e.g. a system header)
      if (lib.empty())
        bad->push_back(where + " is a private header of " + owner->second +
                       "; tools/ may include public headers only");
      else if (owner->second != lib)
        bad->push_back(where + " is a private header of " + owner->second + ", not of " + lib +
                       ": use a public header of include/candor/ instead");
    }
  }

  std::vector<Library> libs_;
  std::map<std::string, const Library*> by_name_;
  std::map<std::string, std::string> folder_owner_;
  std::map<std::string, std::vector<std::string>> header_owners_;
  std::map<std::string, std::vector<std::string>> folder_headers_;  // "evaluate/" owns its files

  // The libraries owning a public header (relative to include/candor/), by name or by folder.
  std::vector<std::string> owners_of(const std::string& header) const {
    auto it = header_owners_.find(header);
    if (it != header_owners_.end()) return it->second;
    const auto slash = header.rfind('/');
    if (slash != std::string::npos) {
      auto f = folder_headers_.find(header.substr(0, slash + 1));
      if (f != folder_headers_.end()) return f->second;
    }
    return {};
  }
};

TEST_F(Layering, EverySrcFolderBelongsToOneLibrary) {
  std::vector<std::string> bad;
  for (const auto& e : fs::directory_iterator(fs::path(CANDOR_SOURCE_DIR) / "src")) {
    if (!e.is_directory()) continue;
    const std::string f = e.path().filename().string();
    if (!folder_owner_.count(f)) bad.push_back("src/" + f);
  }
  EXPECT_TRUE(bad.empty()) << "folders of no library (add them to a candor_library() call):\n"
                           << ::testing::PrintToString(bad);
}

TEST_F(Layering, EveryPublicHeaderHasOneOwner) {
  std::vector<std::string> bad;
  const fs::path inc = fs::path(CANDOR_SOURCE_DIR) / "include" / "candor";
  for (const auto& e : fs::recursive_directory_iterator(inc)) {
    if (!e.is_regular_file() || !is_source(e.path())) continue;
    const std::string h = fs::relative(e.path(), inc).string();
    const auto owners = owners_of(h);
    if (owners.empty())
      bad.push_back(h + ": owned by no library (list it in HEADERS of its candor_library())");
    else if (owners.size() > 1)
      bad.push_back(h + ": owned by " + ::testing::PrintToString(owners));
  }
  EXPECT_TRUE(bad.empty()) << ::testing::PrintToString(bad);
}

TEST_F(Layering, DependenciesFormNoCycleAndOnlyTheCliNeedsTraining) {
  for (const auto& l : libs_) {
    for (const auto& d : l.depends) {
      EXPECT_TRUE(by_name_.count(d)) << l.name << " depends on unknown library " << d;
      EXPECT_FALSE(reach(d).count(l.name)) << "cycle: " << l.name << " <-> " << d;
      if (l.name != "candor_train") EXPECT_FALSE(reach(d).count("candor_train")) << l.name << " needs candor_train";
    }
  }
}

TEST_F(Layering, IncludesRespectTheLibraries) {
  std::vector<std::string> bad;
  const fs::path root(CANDOR_SOURCE_DIR);
  for (const auto& e : fs::recursive_directory_iterator(root / "src")) {
    if (!e.is_regular_file() || !is_source(e.path())) continue;
    const auto rel = fs::relative(e.path(), root / "src");
    const std::string folder = rel.begin()->string();
    if (rel.string().find("/shim/") != std::string::npos) continue;  // its own shared object
    auto owner = folder_owner_.find(folder);
    if (owner == folder_owner_.end()) continue;  // reported by EverySrcFolderBelongsToOneLibrary
    check_file(e.path(), owner->second, &bad);
  }
  for (const auto& e : fs::recursive_directory_iterator(root / "include" / "candor")) {
    if (!e.is_regular_file() || !is_source(e.path())) continue;
    const std::string h = fs::relative(e.path(), root / "include" / "candor").string();
    const auto owners = owners_of(h);
    if (!owners.empty()) check_file(e.path(), owners.front(), &bad);
  }
  for (const auto& e : fs::recursive_directory_iterator(root / "tools")) {
    if (e.is_regular_file() && is_source(e.path())) check_file(e.path(), "", &bad);
  }
  std::string text;
  for (const auto& b : bad) text += "  " + b + "\n";
  EXPECT_TRUE(bad.empty()) << bad.size() << " includes break the layering:\n" << text;
}

// The check itself: a private header of another library, and a public header of a library not
// depended on, are both caught (on files written for the test, not on the tree).
TEST_F(Layering, CatchesAViolation) {
  const fs::path dir = fs::temp_directory_path() / ("candor-layering-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path f = dir / "x.cpp";
  std::ofstream(f) << "#include \"explain/common.h\"\n#include \"candor/distill.h\"\n"
                      "#include \"candor/error.h\"\n";
  std::vector<std::string> bad;
  check_file(f, "candor_models", &bad);
  fs::remove_all(dir);
  ASSERT_EQ(bad.size(), 2u) << ::testing::PrintToString(bad);
  EXPECT_NE(bad[0].find("private header of candor_xai"), std::string::npos) << bad[0];
  EXPECT_NE(bad[1].find("candor_train"), std::string::npos) << bad[1];
}

}  // namespace
