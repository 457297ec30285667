// Typed options of a method (an explainer, an attack, a student): each option is declared once
// with its name, type, default, bounds and description; specifications "name:key=value,..." are
// parsed and checked against the declarations, read through typed getters, and described as
// JSON (for `candor methods --json` and request bodies).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace candor {

enum class OptionType { kInt, kDouble, kBool, kString, kEnum };

// "int", "double", "bool", "string", "enum".
const char* option_type_name(OptionType type);

// One declared option. Build it with the factories (the default is written once, typed):
//   OptionSpec::integer("n_steps", 64, 1, 1 << 20, "points on the path")
//   OptionSpec::real("stdev", 0.1, 0.0, 1e6, "noise scale").above()   // stdev > 0
//   OptionSpec::integer("per_panel", 0, 1, 64, "...").or_word("auto", true)  // default auto
//   OptionSpec::choice("norm", "l2", {"l2", "l1", "max"}, "...")
struct OptionSpec {
  std::string name;
  OptionType type = OptionType::kString;
  std::string default_value;  // as text, exactly as it appears in a method's options
  std::string description;
  // kInt / kDouble: inclusive bounds, unless min_exclusive (then value > min).
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;
  // kEnum: the accepted values. kInt / kDouble: words accepted besides numbers ("auto").
  std::vector<std::string> choices;

  static OptionSpec integer(std::string name, int64_t def, int64_t min, int64_t max,
                            std::string description);
  static OptionSpec real(std::string name, double def, double min, double max,
                         std::string description);
  static OptionSpec boolean(std::string name, bool def, std::string description);
  static OptionSpec text(std::string name, std::string def, std::string description);
  static OptionSpec choice(std::string name, std::string def, std::vector<std::string> choices,
                           std::string description);

  // kInt / kDouble: also accept `word` (read it with Options::is); as_default: it is the default.
  OptionSpec& or_word(const std::string& word, bool as_default = false);
  // kInt / kDouble: the lower bound is exclusive (value > min).
  OptionSpec& above();

  // The accepted values in words: "an integer in [1, 64] or auto", "one of l2, l1, max".
  std::string expects() const;
  // Throws Error(kInvalidArgument) naming the option, `owner` ("method 'lime'") and what it
  // expects when `value` is not a valid value of this option.
  void check(const std::string& owner, const std::string& value) const;
};

using OptionSpecs = std::vector<OptionSpec>;

// The values of a method's options: the given ones checked against the declarations, the
// others at their defaults. Values keep the text they were given in (values()), so a method's
// options are reported as written.
class Options {
 public:
  Options() = default;
  // `kind` and `name` name the owner in errors ("method 'occlusion'", "attack 'noise'"). An
  // unknown key throws Error(kInvalidArgument) with a did-you-mean suggestion and the list of
  // options with their defaults; a bad value throws Error(kInvalidArgument) naming the option
  // and its type/bounds.
  Options(const std::string& kind, std::string name, OptionSpecs specs,
          const std::map<std::string, std::string>& given);

  // Typed getters. Reading an undeclared option, or one of another type, is Error(kInternal).
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  // kString / kEnum values (and the raw text of any option).
  std::string get(const std::string& key) const;
  // Whether the option holds the word `word` (see OptionSpec::or_word).
  bool is(const std::string& key, const std::string& word) const;
  // Whether the option was given in the specification (not left at its default).
  bool given(const std::string& key) const { return given_.count(key) > 0; }

  const std::map<std::string, std::string>& values() const { return values_; }
  const OptionSpecs& specs() const { return specs_; }
  // The method's name ("occlusion") and "kind 'name'" ("method 'occlusion'").
  const std::string& name() const { return name_; }
  const std::string& owner() const { return owner_; }

 private:
  const OptionSpec& spec(const std::string& key, OptionType type) const;

  std::string name_;
  std::string owner_;
  OptionSpecs specs_;
  std::map<std::string, std::string> values_;
  std::map<std::string, std::string> given_;
};

// Splits "name:a=1,b=x" into the name and its key/value pairs. Throws Error(kInvalidArgument)
// for malformed text (empty name, missing '=', repeated key).
std::pair<std::string, std::map<std::string, std::string>> parse_spec(const std::string& spec);

// Option name -> default, for every declared option.
std::map<std::string, std::string> option_defaults(const OptionSpecs& specs);

// The declarations as JSON, in declaration order: [{"name", "type", "default", "description",
// "min"?, "max"?, "min_exclusive"?, "choices"?, "words"?}]. Numbers of kInt options are
// integers; bounds that are infinite are left out.
nlohmann::json options_to_json(const OptionSpecs& specs);

// The closest of `candidates` to `word` by edit distance, or "" when none is close enough to be
// a likely typo (for "did you mean" hints).
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace candor
