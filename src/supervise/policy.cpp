// Policy files: YAML or JSON (parsed as YAML, so JSON errors carry lines too) into a Policy, with
// errors that name the file, the line and the field, and did-you-mean suggestions.
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "candor/error.h"
#include "candor/explain.h"
#include "candor/options.h"
#include "candor/supervise.h"
#include "supervise/internal.h"

namespace candor::supervise {

// ---------------------------------------------------------------------------------------------
// Actions, check types and their parameters
// ---------------------------------------------------------------------------------------------

const char* action_name(Action action) {
  switch (action) {
    case Action::kAllow:
      return "allow";
    case Action::kFlag:
      return "flag";
    case Action::kBlock:
      return "block";
    case Action::kRedact:
      return "redact";
    case Action::kRegenerate:
      return "regenerate";
  }
  return "flag";
}

namespace {
const std::vector<std::string> kActions = {"allow", "flag", "block", "redact", "regenerate"};
}

Action parse_action(const std::string& name) {
  for (size_t i = 0; i < kActions.size(); ++i)
    if (kActions[i] == name) return static_cast<Action>(i);
  std::string near = closest_match(name, kActions);
  throw Error(ErrorCode::kInvalidArgument, "unknown action '" + name + "'",
              (near.empty() ? std::string() : "did you mean " + near + "? ") +
                  "actions: allow, flag, block, redact, regenerate");
}

namespace {

enum class Kind { kNumber, kInt, kBool, kStrings };

struct ParamSpec {
  std::string name;
  Kind kind;
  double min = -1e300;
  double max = 1e300;
};

const std::vector<std::pair<std::string, std::vector<ParamSpec>>>& type_table() {
  static const std::vector<std::pair<std::string, std::vector<ParamSpec>>> kTable = {
      {"uncertainty",
       {{"max_mean_entropy", Kind::kNumber, 0},
        {"max_entropy", Kind::kNumber, 0},
        {"min_logprob", Kind::kNumber, -1e300, 0}}},
      {"explanation_quality",
       {{"min_comprehensiveness", Kind::kNumber},
        {"max_sufficiency", Kind::kNumber},
        {"beat_decoys", Kind::kBool}}},
      {"counterfactual",
       {{"threshold", Kind::kNumber, 0},
        {"max_swaps", Kind::kInt, 1, 64},
        {"attributes", Kind::kStrings}}},
      {"blocked_terms",
       {{"terms", Kind::kStrings},
        {"patterns", Kind::kStrings},
        {"case_sensitive", Kind::kBool},
        {"max_match", Kind::kInt, 1, 1 << 20}}},
      {"length", {{"max_tokens", Kind::kInt, 1}, {"min_tokens", Kind::kInt, 0}}},
      {"time", {{"max_ms", Kind::kNumber, 0}}},
  };
  return kTable;
}

const std::vector<ParamSpec>* params_of(const std::string& type) {
  for (const auto& [name, specs] : type_table())
    if (name == type) return &specs;
  return nullptr;
}

}  // namespace

const std::vector<std::string>& check_types() {
  static const std::vector<std::string> kTypes = [] {
    std::vector<std::string> v;
    for (const auto& [name, specs] : type_table()) v.push_back(name);
    return v;
  }();
  return kTypes;
}

std::vector<std::string> check_parameters(const std::string& type) {
  std::vector<std::string> names;
  if (const auto* specs = params_of(type))
    for (const auto& s : *specs) names.push_back(s.name);
  return names;
}

// ---------------------------------------------------------------------------------------------
// Reading the YAML tree
// ---------------------------------------------------------------------------------------------

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& field,
                         const std::string& message, const std::string& hint = {}) const {
    std::string where = source_;
    if (mark.line >= 0) where += ":" + std::to_string(mark.line + 1);
    throw Error(ErrorCode::kInvalidArgument,
                "policy " + where + ": " + (field.empty() ? "" : field + ": ") + message,
                hint.empty() ? "see docs/policy.md for the policy format" : hint);
  }

  // The keys of mapping `node` (at `field`), each checked against `allowed`.
  void check_keys(const YAML::Node& node, const std::string& field,
                  const std::vector<std::string>& allowed) const {
    if (!node.IsMap())
      fail(node.Mark(), field.empty() ? "(top level)" : field,
           "expected a mapping of keys to values");
    std::set<std::string> seen;
    for (const auto& kv : node) {
      std::string key = kv.first.Scalar();
      std::string path = field.empty() ? key : field + "." + key;
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string near = closest_match(key, allowed);
        fail(kv.first.Mark(), path, "unknown key '" + key + "'",
             (near.empty() ? std::string() : "did you mean " + near + "? ") +
                 "allowed here: " + join(allowed));
      }
      if (!seen.insert(key).second) fail(kv.first.Mark(), path, "given twice");
    }
  }

  std::string scalar(const YAML::Node& node, const std::string& field, const char* what) const {
    if (!node.IsScalar()) fail(node.Mark(), field, std::string("expected ") + what);
    return node.Scalar();
  }

  double number(const YAML::Node& node, const std::string& field, double min = -1e300,
                double max = 1e300) const {
    std::string text = scalar(node, field, "a number");
    double v = 0;
    try {
      v = node.as<double>();
    } catch (const YAML::Exception&) {
      fail(node.Mark(), field, "expected a number, not '" + text + "'");
    }
    if (!(v >= min) || !(v <= max)) {
      std::ostringstream range;
      if (min > -1e299 && max < 1e299)
        range << "from " << min << " to " << max;
      else if (min > -1e299)
        range << "at least " << min;
      else
        range << "at most " << max;
      fail(node.Mark(), field, text + " is out of range", "give a value " + range.str());
    }
    return v;
  }

  int64_t integer(const YAML::Node& node, const std::string& field, double min = -1e300,
                  double max = 1e300) const {
    std::string text = scalar(node, field, "a whole number");
    int64_t v = 0;
    try {
      v = node.as<int64_t>();
    } catch (const YAML::Exception&) {
      fail(node.Mark(), field, "expected a whole number, not '" + text + "'");
    }
    number(node, field, min, max);
    return v;
  }

  bool boolean(const YAML::Node& node, const std::string& field) const {
    std::string text = scalar(node, field, "true or false");
    try {
      return node.as<bool>();
    } catch (const YAML::Exception&) {
      fail(node.Mark(), field, "expected true or false, not '" + text + "'");
    }
  }

  std::string string(const YAML::Node& node, const std::string& field) const {
    return scalar(node, field, "a string");
  }

  std::vector<std::string> strings(const YAML::Node& node, const std::string& field) const {
    if (node.IsScalar()) return {node.Scalar()};
    if (!node.IsSequence()) fail(node.Mark(), field, "expected a list of strings");
    std::vector<std::string> out;
    for (size_t i = 0; i < node.size(); ++i)
      out.push_back(scalar(node[i], field + "[" + std::to_string(i) + "]", "a string"));
    return out;
  }

 private:
  std::string source_;
};

const std::vector<std::string> kTopKeys = {"version",     "explain", "limits",
                                           "log_content", "checks",  "export_content"};
const std::vector<std::string> kExplainKeys = {"enabled",         "method",      "granularity",
                                               "allowed_methods", "max_methods", "evaluate",
                                               "top_features"};
const std::vector<std::string> kLimitKeys = {"max_tokens", "max_prompt_tokens", "max_body_bytes",
                                             "request_timeout_ms", "max_regenerations"};
const std::vector<std::string> kCheckKeys = {"name", "type", "on_fail", "async"};

void read_explain(const Reader& r, const YAML::Node& node, ExplainPolicy& e) {
  r.check_keys(node, "explain", kExplainKeys);
  for (const auto& kv : node) {
    std::string key = kv.first.Scalar(), field = "explain." + key;
    const YAML::Node& v = kv.second;
    if (key == "enabled") {
      e.enabled = r.boolean(v, field);
    } else if (key == "evaluate") {
      e.evaluate = r.boolean(v, field);
    } else if (key == "max_methods") {
      e.max_methods = r.integer(v, field, 1, 16);
    } else if (key == "top_features") {
      e.top_features = r.integer(v, field, 0, 1000);
    } else if (key == "allowed_methods") {
      e.allowed_methods = r.strings(v, field);
    } else if (key == "granularity") {
      e.granularity = r.string(v, field);
      try {
        parse_granularity(e.granularity);
      } catch (const Error& err) {
        r.fail(v.Mark(), field, err.what(), "granularity: token, word or sentence");
      }
    } else if (key == "method") {
      e.method = r.string(v, field);
    }
  }
  // Every method named must be one the registry can build.
  auto check_method = [&](const std::string& spec, const YAML::Mark& at, const std::string& field) {
    try {
      make_explainer(spec);
    } catch (const Error& err) {
      r.fail(at, field, err.what(), err.hint());
    }
  };
  if (node["method"]) check_method(e.method, node["method"].Mark(), "explain.method");
  if (node["allowed_methods"]) {
    const YAML::Node list = node["allowed_methods"];
    for (size_t i = 0; i < e.allowed_methods.size(); ++i)
      check_method(e.allowed_methods[i], list.IsSequence() ? list[i].Mark() : list.Mark(),
                   "explain.allowed_methods[" + std::to_string(i) + "]");
  }
}

void read_limits(const Reader& r, const YAML::Node& node, Limits& l) {
  r.check_keys(node, "limits", kLimitKeys);
  for (const auto& kv : node) {
    std::string key = kv.first.Scalar(), field = "limits." + key;
    const YAML::Node& v = kv.second;
    if (key == "max_tokens")
      l.max_tokens = r.integer(v, field, 1, 1e9);
    else if (key == "max_prompt_tokens")
      l.max_prompt_tokens = r.integer(v, field, 1, 1e9);
    else if (key == "max_body_bytes")
      l.max_body_bytes = r.integer(v, field, 1, 1e12);
    else if (key == "request_timeout_ms")
      l.request_timeout_ms = r.number(v, field, 1e-3, 1e9);
    else if (key == "max_regenerations")
      l.max_regenerations = r.integer(v, field, 0, 16);
  }
}

CheckSpec read_check(const Reader& r, const YAML::Node& node, const std::string& field) {
  if (!node.IsMap()) r.fail(node.Mark(), field, "expected a mapping (type, on_fail, thresholds)");
  CheckSpec c;
  if (!node["type"])
    r.fail(node.Mark(), field + ".type", "missing",
           "every check needs a type: " + join(check_types()));
  const YAML::Node type_node = node["type"];
  c.type = r.string(type_node, field + ".type");
  const std::vector<ParamSpec>* specs = params_of(c.type);
  if (!specs) {
    std::string near = closest_match(c.type, check_types());
    r.fail(type_node.Mark(), field + ".type", "unknown check type '" + c.type + "'",
           (near.empty() ? std::string() : "did you mean " + near + "? ") +
               "check types: " + join(check_types()));
  }
  std::vector<std::string> allowed = kCheckKeys;
  for (const auto& s : *specs) allowed.push_back(s.name);
  r.check_keys(node, field, allowed);
  c.name = c.type;
  for (const auto& kv : node) {
    std::string key = kv.first.Scalar(), path = field + "." + key;
    const YAML::Node& v = kv.second;
    if (key == "type") continue;
    if (key == "name") {
      c.name = r.string(v, path);
      if (c.name.empty()) r.fail(v.Mark(), path, "is empty");
    } else if (key == "async") {
      c.async = r.boolean(v, path);
    } else if (key == "on_fail") {
      std::string action = r.string(v, path);
      try {
        c.on_fail = parse_action(action);
      } catch (const Error& err) {
        r.fail(v.Mark(), path, err.what(), err.hint());
      }
    } else {
      const ParamSpec& s = *std::find_if(specs->begin(), specs->end(),
                                         [&](const ParamSpec& p) { return p.name == key; });
      switch (s.kind) {
        case Kind::kNumber:
          c.params[key] = r.number(v, path, s.min, s.max);
          break;
        case Kind::kInt:
          c.params[key] = r.integer(v, path, s.min, s.max);
          break;
        case Kind::kBool:
          c.params[key] = r.boolean(v, path);
          break;
        case Kind::kStrings:
          c.params[key] = r.strings(v, path);
          break;
      }
    }
  }
  // What each type needs beyond its keys.
  auto need_one = [&](const std::vector<std::string>& keys) {
    for (const auto& k : keys)
      if (c.params.contains(k)) return;
    r.fail(node.Mark(), field,
           "a " + c.type + " check needs " +
               (keys.size() == 1 ? keys[0] : "at least one of " + join(keys)));
  };
  if (c.type == "uncertainty") need_one({"max_mean_entropy", "max_entropy", "min_logprob"});
  if (c.type == "blocked_terms") need_one({"terms", "patterns"});
  if (c.type == "length") need_one({"max_tokens"});
  if (c.type == "time") need_one({"max_ms"});
  if (c.type == "explanation_quality")
    need_one({"min_comprehensiveness", "max_sufficiency", "beat_decoys"});
  if (c.type == "blocked_terms" && c.params.contains("patterns")) {
    const YAML::Node list = node["patterns"];
    for (size_t i = 0; i < c.params["patterns"].size(); ++i) {
      std::string pattern = c.params["patterns"][i];
      try {
        std::regex re(pattern, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        r.fail(list.IsSequence() ? list[i].Mark() : list.Mark(),
               field + ".patterns[" + std::to_string(i) + "]",
               "invalid regular expression '" + pattern + "': " + e.what(),
               "patterns are ECMAScript regular expressions, e.g. '\\b\\d{3}-\\d{4}\\b'");
      }
    }
  }
  return c;
}

Policy read_policy(const YAML::Node& root, const Reader& r) {
  Policy p;
  if (root.IsNull()) return p;  // an empty file: every default, no checks
  r.check_keys(root, "", kTopKeys);
  for (const auto& kv : root) {
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "version") {
      int64_t version = r.integer(v, "version");
      if (version != 1)
        r.fail(v.Mark(), "version", "unknown policy version " + std::to_string(version),
               "this candor reads version 1");
    } else if (key == "explain") {
      read_explain(r, v, p.explain);
    } else if (key == "limits") {
      read_limits(r, v, p.limits);
    } else if (key == "log_content") {
      p.log_content = r.boolean(v, "log_content");
    } else if (key == "export_content") {
      p.export_content = r.boolean(v, "export_content");
    } else if (key == "checks") {
      if (v.IsNull()) continue;
      if (!v.IsSequence()) r.fail(v.Mark(), "checks", "expected a list of checks");
      std::set<std::string> names;
      for (size_t i = 0; i < v.size(); ++i) {
        std::string field = "checks[" + std::to_string(i) + "]";
        CheckSpec c = read_check(r, v[i], field);
        if (!names.insert(c.name).second)
          r.fail(v[i].Mark(), field + ".name", "a second check named '" + c.name + "'",
                 "give each check a unique name (name: ...)");
        p.checks.push_back(std::move(c));
      }
    }
  }
  return p;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1)
    throw Error(ErrorCode::kInternal, "SHA-256 failed in OpenSSL (EVP_Digest)");
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

Policy parse_policy(std::string_view text, const std::string& source_name) {
  Reader r(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    r.fail(e.mark, "", "not valid YAML or JSON: " + e.msg);
  }
  Policy p = read_policy(root, r);
  p.source = source_name;
  p.hash = sha256_hex(text);
  return p;
}

Policy load_policy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::kNotFound, "policy file " + path + " cannot be read",
                "check the path given to --policy");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return parse_policy(bytes.str(), path);
}

Policy default_policy() {
  Policy p;
  CheckSpec uncertainty;
  uncertainty.name = uncertainty.type = "uncertainty";
  uncertainty.params = {{"max_mean_entropy", 4.0}, {"min_logprob", -12.0}};
  CheckSpec length;
  length.name = length.type = "length";
  length.params = {{"max_tokens", p.limits.max_tokens}};
  CheckSpec time;
  time.name = time.type = "time";
  time.params = {{"max_ms", p.limits.request_timeout_ms}};
  p.checks = {uncertainty, length, time};
  p.hash = sha256_hex(p.to_json().dump());
  return p;
}

nlohmann::json Policy::to_json() const {
  nlohmann::json checks_json = nlohmann::json::array();
  for (const auto& c : checks) {
    nlohmann::json j = c.params;
    j["name"] = c.name;
    j["type"] = c.type;
    j["on_fail"] = action_name(c.on_fail);
    j["async"] = c.async;
    checks_json.push_back(j);
  }
  return {{"source", source},
          {"hash", hash},
          {"explain",
           {{"enabled", explain.enabled},
            {"method", explain.method},
            {"granularity", explain.granularity},
            {"allowed_methods", explain.allowed_methods},
            {"max_methods", explain.max_methods},
            {"evaluate", explain.evaluate},
            {"top_features", explain.top_features}}},
          {"limits",
           {{"max_tokens", limits.max_tokens},
            {"max_prompt_tokens", limits.max_prompt_tokens},
            {"max_body_bytes", limits.max_body_bytes},
            {"request_timeout_ms", limits.request_timeout_ms},
            {"max_regenerations", limits.max_regenerations}}},
          {"log_content", log_content},
          {"export_content", export_content},
          {"checks", checks_json}};
}

}  // namespace candor::supervise
