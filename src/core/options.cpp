// Method specification strings and typed option access.
#include "core/options.h"

#include <cerrno>
#include <cstdlib>

#include "candor/error.h"

namespace candor {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string list_keys(const std::map<std::string, std::string>& m) {
  std::string out;
  for (const auto& [k, v] : m) out += (out.empty() ? "" : ", ") + k + "=" + v;
  return out.empty() ? "(none)" : out;
}

}  // namespace

std::pair<std::string, std::map<std::string, std::string>> parse_spec(const std::string& spec) {
  size_t colon = spec.find(':');
  std::string name = trim(spec.substr(0, colon));
  if (name.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "method specification '" + spec + "' has no name",
                "write it as name or name:key=value,key=value");
  }
  std::map<std::string, std::string> kv;
  if (colon != std::string::npos) {
    std::string rest = spec.substr(colon + 1);
    size_t start = 0;
    while (start <= rest.size()) {
      size_t comma = rest.find(',', start);
      std::string item =
          trim(rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (!item.empty()) {
        size_t eq = item.find('=');
        if (eq == std::string::npos || trim(item.substr(0, eq)).empty()) {
          throw Error(ErrorCode::kInvalidArgument,
                      "option '" + item + "' in '" + spec + "' is not key=value",
                      "write options as name:key=value,key=value");
        }
        std::string key = trim(item.substr(0, eq));
        if (kv.count(key)) {
          throw Error(ErrorCode::kInvalidArgument,
                      "option '" + key + "' is given twice in '" + spec + "'");
        }
        kv[key] = trim(item.substr(eq + 1));
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return {name, kv};
}

Options::Options(const std::string& method, const std::map<std::string, std::string>& defaults,
                 const std::map<std::string, std::string>& given)
    : method_(method), values_(defaults) {
  for (const auto& [k, v] : given) {
    if (!defaults.count(k)) {
      throw Error(ErrorCode::kInvalidArgument, "method '" + method + "' has no option '" + k + "'",
                  "its options (with defaults) are: " + list_keys(defaults));
    }
    values_[k] = v;
  }
}

std::string Options::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    throw Error(ErrorCode::kInternal, "method '" + method_ + "' reads undeclared option " + key);
  }
  return it->second;
}

int64_t Options::get_int(const std::string& key, int64_t min, int64_t max) const {
  std::string v = get(key);
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || x < min || x > max) {
    throw Error(ErrorCode::kInvalidArgument,
                "option " + key + " of method '" + method_ + "' must be an integer" +
                    (min > INT64_MIN ? " >= " + std::to_string(min) : "") +
                    (max < INT64_MAX ? " and <= " + std::to_string(max) : "") + ", got '" + v +
                    "'");
  }
  return x;
}

double Options::get_double(const std::string& key, double min, double max) const {
  std::string v = get(key);
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno != 0 || !(x >= min && x <= max)) {
    throw Error(ErrorCode::kInvalidArgument, "option " + key + " of method '" + method_ +
                                                 "' must be a number in [" + std::to_string(min) +
                                                 ", " + std::to_string(max) + "], got '" + v + "'");
  }
  return x;
}

bool Options::get_bool(const std::string& key) const {
  std::string v = get(key);
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  throw Error(ErrorCode::kInvalidArgument, "option " + key + " of method '" + method_ +
                                               "' must be true or false, got '" + v + "'");
}

}  // namespace candor
