// Declared, typed options: parsing of method specifications, checking against the
// declarations, typed access and the JSON description.
#include "candor/options.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "candor/error.h"

namespace candor {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Numbers as the defaults are written: integers exactly, others with %g ("0.1", "1e-06").
std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

std::string bound_text(const OptionSpec& s, double v) {
  if (s.type == OptionType::kInt) return std::to_string(static_cast<int64_t>(v));
  return number_text(v);
}

bool parse_int(const std::string& v, int64_t* out) {
  if (v.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (*end != '\0' || errno != 0) return false;
  *out = x;
  return true;
}

bool parse_double(const std::string& v, double* out) {
  if (v.empty()) return false;
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(v.c_str(), &end);
  if (*end != '\0' || errno != 0 || !std::isfinite(x)) return false;
  *out = x;
  return true;
}

int parse_bool(const std::string& v) {  // 1 true, 0 false, -1 neither
  if (v == "true" || v == "1" || v == "yes") return 1;
  if (v == "false" || v == "0" || v == "no") return 0;
  return -1;
}

std::string list_with_defaults(const OptionSpecs& specs) {
  std::string out;
  for (const OptionSpec& s : specs)
    out += (out.empty() ? "" : ", ") + s.name + "=" + s.default_value;
  return out.empty() ? "(none)" : out;
}

std::string join(const std::vector<std::string>& v, const std::string& sep,
                 const std::string& last) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += i + 1 == v.size() ? last : sep;
    out += v[i];
  }
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

const char* option_type_name(OptionType type) {
  switch (type) {
    case OptionType::kInt:
      return "int";
    case OptionType::kDouble:
      return "double";
    case OptionType::kBool:
      return "bool";
    case OptionType::kString:
      return "string";
    case OptionType::kEnum:
      return "enum";
  }
  return "?";
}

OptionSpec OptionSpec::integer(std::string name, int64_t def, int64_t min, int64_t max,
                               std::string description) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = OptionType::kInt;
  s.default_value = std::to_string(def);
  s.description = std::move(description);
  s.min = min == INT64_MIN ? -std::numeric_limits<double>::infinity() : static_cast<double>(min);
  s.max = max == INT64_MAX ? std::numeric_limits<double>::infinity() : static_cast<double>(max);
  return s;
}

OptionSpec OptionSpec::real(std::string name, double def, double min, double max,
                            std::string description) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = OptionType::kDouble;
  s.default_value = number_text(def);
  s.description = std::move(description);
  s.min = min;
  s.max = max;
  return s;
}

OptionSpec OptionSpec::boolean(std::string name, bool def, std::string description) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = OptionType::kBool;
  s.default_value = def ? "true" : "false";
  s.description = std::move(description);
  return s;
}

OptionSpec OptionSpec::text(std::string name, std::string def, std::string description) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = OptionType::kString;
  s.default_value = std::move(def);
  s.description = std::move(description);
  return s;
}

OptionSpec OptionSpec::choice(std::string name, std::string def, std::vector<std::string> choices,
                              std::string description) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = OptionType::kEnum;
  s.default_value = std::move(def);
  s.description = std::move(description);
  s.choices = std::move(choices);
  if (std::find(s.choices.begin(), s.choices.end(), s.default_value) == s.choices.end()) {
    throw Error(ErrorCode::kInternal, "option " + s.name + " declares default '" + s.default_value +
                                          "' outside its choices");
  }
  return s;
}

OptionSpec& OptionSpec::or_word(const std::string& word, bool as_default) {
  choices.push_back(word);
  if (as_default) default_value = word;
  return *this;
}

OptionSpec& OptionSpec::above() {
  min_exclusive = true;
  return *this;
}

std::string OptionSpec::expects() const {
  std::string out;
  switch (type) {
    case OptionType::kBool:
      return "true or false";
    case OptionType::kString:
      return "a string";
    case OptionType::kEnum:
      return "one of " + join(choices, ", ", " or ");
    case OptionType::kInt:
      out = "an integer";
      break;
    case OptionType::kDouble:
      out = "a number";
      break;
  }
  const bool lo = std::isfinite(min), hi = std::isfinite(max);
  if (lo && hi && !min_exclusive) {
    out += " in [" + bound_text(*this, min) + ", " + bound_text(*this, max) + "]";
  } else {
    if (lo) out += std::string(min_exclusive ? " > " : " >= ") + bound_text(*this, min);
    if (hi) out += std::string(lo ? " and" : "") + " <= " + bound_text(*this, max);
  }
  if (!choices.empty()) out += " or " + join(choices, ", ", " or ");
  return out;
}

void OptionSpec::check(const std::string& owner, const std::string& value) const {
  bool ok = false;
  switch (type) {
    case OptionType::kString:
      ok = true;
      break;
    case OptionType::kBool:
      ok = parse_bool(value) >= 0;
      break;
    case OptionType::kEnum:
      ok = std::find(choices.begin(), choices.end(), value) != choices.end();
      break;
    case OptionType::kInt:
    case OptionType::kDouble: {
      if (std::find(choices.begin(), choices.end(), value) != choices.end()) {
        ok = true;
        break;
      }
      double x = 0;
      int64_t i = 0;
      if (type == OptionType::kInt) {
        ok = parse_int(value, &i);
        x = static_cast<double>(i);
      } else {
        ok = parse_double(value, &x);
      }
      ok = ok && (min_exclusive ? x > min : x >= min) && x <= max;
      break;
    }
  }
  if (!ok) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "option " + name + " of " + owner + " must be " + expects() + ", got '" + value + "'",
        name + " (" + option_type_name(type) + ", default " + default_value + "): " + description);
  }
}

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

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const std::string& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // A likely typo: a few edits, fewer than half the word.
  const size_t allowed = std::max<size_t>(1, std::min<size_t>(3, word.size() / 2));
  return best_d <= allowed ? best : "";
}

Options::Options(const std::string& kind, std::string name, OptionSpecs specs,
                 const std::map<std::string, std::string>& given)
    : name_(std::move(name)), owner_(kind + " '" + name_ + "'"), specs_(std::move(specs)) {
  for (const OptionSpec& s : specs_) values_[s.name] = s.default_value;
  for (const auto& [k, v] : given) {
    auto it = std::find_if(specs_.begin(), specs_.end(),
                           [&](const OptionSpec& s) { return s.name == k; });
    if (it == specs_.end()) {
      std::vector<std::string> names;
      for (const OptionSpec& s : specs_) names.push_back(s.name);
      const std::string near = closest_match(k, names);
      throw Error(ErrorCode::kInvalidArgument, owner_ + " has no option '" + k + "'",
                  (near.empty() ? "" : "did you mean " + near + "? ") +
                      "its options (with defaults) are: " + list_with_defaults(specs_));
    }
    it->check(owner_, v);
    values_[k] = v;
    given_[k] = v;
  }
}

const OptionSpec& Options::spec(const std::string& key, OptionType type) const {
  for (const OptionSpec& s : specs_) {
    if (s.name != key) continue;
    if (s.type != type) {
      throw Error(ErrorCode::kInternal, owner_ + " reads option " + key + " (" +
                                            option_type_name(s.type) + ") as " +
                                            option_type_name(type));
    }
    return s;
  }
  throw Error(ErrorCode::kInternal, owner_ + " reads undeclared option " + key);
}

int64_t Options::get_int(const std::string& key) const {
  spec(key, OptionType::kInt);
  int64_t x = 0;
  if (!parse_int(values_.at(key), &x)) {
    throw Error(ErrorCode::kInternal, "option " + key + " of " + owner_ + " holds '" +
                                          values_.at(key) + "', not an integer (check is())");
  }
  return x;
}

double Options::get_double(const std::string& key) const {
  spec(key, OptionType::kDouble);
  double x = 0;
  if (!parse_double(values_.at(key), &x)) {
    throw Error(ErrorCode::kInternal, "option " + key + " of " + owner_ + " holds '" +
                                          values_.at(key) + "', not a number (check is())");
  }
  return x;
}

bool Options::get_bool(const std::string& key) const {
  spec(key, OptionType::kBool);
  return parse_bool(values_.at(key)) == 1;
}

std::string Options::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    throw Error(ErrorCode::kInternal, owner_ + " reads undeclared option " + key);
  }
  return it->second;
}

bool Options::is(const std::string& key, const std::string& word) const { return get(key) == word; }

std::map<std::string, std::string> option_defaults(const OptionSpecs& specs) {
  std::map<std::string, std::string> out;
  for (const OptionSpec& s : specs) out[s.name] = s.default_value;
  return out;
}

nlohmann::json options_to_json(const OptionSpecs& specs) {
  nlohmann::json out = nlohmann::json::array();
  for (const OptionSpec& s : specs) {
    nlohmann::ordered_json j;
    j["name"] = s.name;
    j["type"] = option_type_name(s.type);
    // The default typed where it is a value of the type (a word such as "auto" stays text).
    int64_t i = 0;
    double x = 0;
    const bool word =
        std::find(s.choices.begin(), s.choices.end(), s.default_value) != s.choices.end();
    if (s.type == OptionType::kInt && !word && parse_int(s.default_value, &i))
      j["default"] = i;
    else if (s.type == OptionType::kDouble && !word && parse_double(s.default_value, &x))
      j["default"] = x;
    else if (s.type == OptionType::kBool)
      j["default"] = parse_bool(s.default_value) == 1;
    else
      j["default"] = s.default_value;
    j["description"] = s.description;
    if (s.type == OptionType::kInt || s.type == OptionType::kDouble) {
      if (std::isfinite(s.min)) {
        if (s.type == OptionType::kInt)
          j["min"] = static_cast<int64_t>(s.min);
        else
          j["min"] = s.min;
        if (s.min_exclusive) j["min_exclusive"] = true;
      }
      if (std::isfinite(s.max)) {
        if (s.type == OptionType::kInt)
          j["max"] = static_cast<int64_t>(s.max);
        else
          j["max"] = s.max;
      }
      if (!s.choices.empty()) j["words"] = s.choices;
    }
    if (s.type == OptionType::kEnum) j["choices"] = s.choices;
    out.push_back(nlohmann::json(j));
  }
  return out;
}

}  // namespace candor
