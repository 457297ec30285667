// Parsing of method specifications "name:key=value,key=value" and typed access to the options,
// checked against the method's known options and defaults. Internal header.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace candor {

class Options {
 public:
  Options() = default;
  // `given` is checked against `defaults`: an unknown key throws Error(kInvalidArgument) naming
  // `method` and listing its options.
  Options(const std::string& method, const std::map<std::string, std::string>& defaults,
          const std::map<std::string, std::string>& given);

  // Typed getters; a value that does not parse throws Error(kInvalidArgument) naming the option.
  std::string get(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t min = INT64_MIN, int64_t max = INT64_MAX) const;
  double get_double(const std::string& key, double min = -1e300, double max = 1e300) const;
  bool get_bool(const std::string& key) const;

  const std::map<std::string, std::string>& values() const { return values_; }
  const std::string& method() const { return method_; }

 private:
  std::string method_;
  std::map<std::string, std::string> values_;
};

// Splits "name:a=1,b=x" into the name and its key/value pairs. Throws Error(kInvalidArgument)
// for malformed text (empty name, missing '=', repeated key).
std::pair<std::string, std::map<std::string, std::string>> parse_spec(const std::string& spec);

}  // namespace candor
