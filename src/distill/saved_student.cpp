// A glass-box student saved by `candor distill` (student.json) and read back as a classifier.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "candor/distill.h"
#include "candor/error.h"
#include "candor/files.h"

namespace candor::distill {

namespace {

namespace fs = std::filesystem;
constexpr const char* kStudentFile = "student.json";

// The student.json that `path` names: the file itself, the one in the folder, or the one beside
// a file in it. "" when there is none.
std::string saved_student_file(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) {
    fs::path f = p / kStudentFile;
    return fs::is_regular_file(f, ec) ? f.string() : "";
  }
  if (p.filename() == kStudentFile) return fs::is_regular_file(p, ec) ? p.string() : "";
  return "";
}

}  // namespace

Probs predict_rows(const Student& student, const Featurizer& f, const data::Table& table,
                   const std::vector<size_t>& rows) {
  if (student.fits_sparse()) return student.predict_sparse(f.transform_sparse(table, rows));
  return student.predict(f.transform(table, rows));
}

bool SavedStudent::save(const DistillResult& r, const std::string& dir,
                        const std::string& teacher) {
  if (!r.student || r.student->reads_text()) return false;
  nlohmann::json j;
  j["format"] = "candor-student";
  j["version"] = 1;
  j["teacher"] = teacher;
  j["classes"] = r.classes;
  j["featurizer"] = r.featurizer.state();
  j["student"] = r.student->state();
  write_file_atomic((fs::path(dir) / kStudentFile).string(), j.dump() + "\n");
  return true;
}

bool SavedStudent::is_saved(const std::string& path) { return !saved_student_file(path).empty(); }

std::unique_ptr<SavedStudent> SavedStudent::load(const std::string& path) {
  const std::string file = saved_student_file(path);
  if (file.empty())
    throw Error(ErrorCode::kNotFound, path + ": no saved student (student.json) here",
                "give the --out folder of candor distill");
  std::ifstream in(file, std::ios::binary);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  auto s = std::unique_ptr<SavedStudent>(new SavedStudent());
  s->file_ = file;
  try {
    if (j.is_discarded()) throw std::runtime_error("not JSON");
    if (j.at("format") != "candor-student")
      throw std::runtime_error("format is not candor-student");
    if (j.at("version").get<int>() != 1) throw std::runtime_error("unknown version");
    s->classes_ = j.at("classes").get<std::vector<std::string>>();
    s->teacher_ = j.value("teacher", std::string());
    if (s->classes_.size() < 2) throw std::runtime_error("fewer than two classes");
    if (j.at("student").at("classes").get<size_t>() != s->classes_.size())
      throw std::runtime_error("the student's classes do not match the file's");
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kInvalidArgument,
                file + ": not a student saved by candor (" + e.what() + ")",
                "distill the student again (candor distill ... --out DIR)");
  }
  s->featurizer_ = Featurizer::from_state(j.at("featurizer"), file);
  s->student_ = student_from_state(j.at("student"), s->featurizer_, file);
  return s;
}

std::string SavedStudent::describe() const {
  return student_->kind() + " student (" + file_ + ")" +
         (teacher_.empty() ? std::string() : " of " + teacher_);
}

Probs SavedStudent::predict(const data::Table& table, const std::vector<size_t>& rows) const {
  return predict_rows(*student_, featurizer_, table, rows);
}

}  // namespace candor::distill
